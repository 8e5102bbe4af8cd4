"""Dedupe cost per message for each state backend (memory, Redis on loopback), in one run.

    python -m benchmarks.bench_dedupe [--smoke]

Per message: a new key (reserve + commit) and a replay hit (reserve -> Done); per mobile: the
throttle check for a 100-mobile list, pipelined (the store's way) against one call per mobile.
Redis is a private redis-server on a free loopback port (or REDIS_URL).
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

from benchmarks.stats import table, write_result
from router.state import Acquired, MemoryStateStore, StateStore
from router.state.redis import RedisStateStore


async def per_op_us(op: Callable[[int], Awaitable[Any]], n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        await op(i)
    return (time.perf_counter() - start) / n * 1e6


async def measure(store: StateStore, n: int) -> dict[str, float]:
    run = uuid.uuid4().hex

    async def new_key(i: int) -> None:
        lease = await store.reserve(f"{run}:{i}", "fp", 30)
        assert isinstance(lease, Acquired)
        await store.commit(f"{run}:{i}", lease.token, b"x" * 400, 60)

    async def replay(i: int) -> None:
        await store.reserve(f"{run}:{i}", "fp", 30)

    mobiles = [f"+86138{i:08d}" for i in range(100)]

    async def pipelined(i: int) -> None:
        await store.throttle(mobiles, f"{run}:p{i}", 60)

    async def one_by_one(i: int) -> None:
        for m in mobiles:
            await store.throttle([m], f"{run}:o{i}", 60)

    rounds = max(1, n // 100)
    return {
        "new_key_us": await per_op_us(new_key, n),
        "replay_us": await per_op_us(replay, n),
        "throttle_per_mobile_pipelined_us": await per_op_us(pipelined, rounds) / 100,
        "throttle_per_mobile_one_by_one_us": await per_op_us(one_by_one, rounds) / 100,
    }


async def run(n: int, redis_url: str) -> list[dict[str, Any]]:
    rows = []
    stores: dict[str, StateStore] = {
        "memory": MemoryStateStore(),
        "redis": RedisStateStore.from_url(redis_url, prefix="smsrouter-bench:"),
    }
    for name, store in stores.items():
        rows.append({"backend": name, **await measure(store, n)})
        await store.aclose()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    n = 300 if args.smoke else 5000
    import os

    if os.environ.get("REDIS_URL"):
        rows = anyio.run(run, n, os.environ["REDIS_URL"])
    else:
        from providers.emulators.server import free_port
        from tests.redis_server import RedisServer

        with tempfile.TemporaryDirectory() as tmp:
            server = RedisServer(free_port(), Path(tmp), persistent=False)
            server.start()
            try:
                rows = anyio.run(run, n, server.url)
            finally:
                server.stop()
    print(table(rows))
    print(
        f"wrote {write_result('dedupe' + ('-smoke' if args.smoke else ''), {'n': n, 'rows': rows})}"
    )


if __name__ == "__main__":
    main()
