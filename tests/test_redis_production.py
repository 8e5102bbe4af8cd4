"""Redis for production: the settings the guarantees need are checked at start-up, and the
master can be found through Redis Sentinel. Real redis-server and redis-sentinel processes."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

from providers.emulators.server import free_port
from router.errors import ConfigError
from router.state.base import Acquired
from router.state.redis import RedisStateStore
from tests.redis_server import redis_server, require

pytestmark = pytest.mark.anyio


async def test_start_up_says_what_breaks_the_guarantees(tmp_path: Path) -> None:
    with redis_server(tmp_path) as server:  # no persistence, the default eviction policy
        store = RedisStateStore.from_url(server.url)
        try:
            [disk] = await store.production_warnings()
            assert "keeps nothing on disk" in disk
            redis.Redis.from_url(server.url).config_set("maxmemory-policy", "allkeys-lru")
            warnings = await store.production_warnings()
            assert any("allkeys-lru" in w and "noeviction" in w for w in warnings)
        finally:
            await store.aclose()
    (tmp_path / "aof").mkdir()
    with redis_server(tmp_path / "aof", persistent=True) as server:
        store = RedisStateStore.from_url(server.url)
        try:
            assert await store.production_warnings() == []  # AOF on, noeviction (default)
        finally:
            await store.aclose()


@contextmanager
def sentinel_for(master_port: int, workdir: Path) -> Iterator[int]:
    port = free_port()
    conf = workdir / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {workdir}\n"
        f"sentinel monitor mymaster 127.0.0.1 {master_port} 1\n",
        encoding="utf-8",
    )
    proc = subprocess.Popen(
        [require("redis-server"), str(conf), "--sentinel"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                client = redis.Redis(port=port, socket_timeout=1)
                if client.execute_command(  # type: ignore[no-untyped-call, unused-ignore]
                    "SENTINEL", "get-master-addr-by-name", "mymaster"
                ):
                    break
            except redis.RedisError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("redis sentinel did not start")
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


async def test_the_master_is_found_through_sentinel(tmp_path: Path) -> None:
    (tmp_path / "master").mkdir()
    with redis_server(tmp_path / "master") as master, sentinel_for(master.port, tmp_path) as port:
        url = f"redis+sentinel://127.0.0.1:{port}/mymaster/0"
        store = RedisStateStore.from_url(url, prefix="sentinel-test:")
        try:
            taken = await store.reserve("k", "fp", lease_s=5)
            assert isinstance(taken, Acquired)
            assert redis.Redis(port=master.port).exists("sentinel-test:idem:k") == 1
        finally:
            await store.aclose()


@pytest.mark.parametrize(
    "url",
    [
        "redis+sentinel://127.0.0.1:26379",
        "redis+sentinel://127.0.0.1:x/m",
        "redis+sentinel://h/m/db",
    ],
)
def test_a_sentinel_url_without_a_master_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        RedisStateStore.from_url(url)
    assert info.value.key == "state.redis_url"
