"""Real Celery workers (Redis broker) running ``router.celery``'s tasks against the emulators:
a redelivered send with the same idempotency key sends nothing twice (solo and prefork
pools), the producer needs no router config, and a broadcast survives a worker killed with
SIGKILL mid-way: no number sent twice, none left without a status, progress monotonic."""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import anyio
import pytest

from providers.emulators._common import FaultSettings
from router.config import load_settings
from router.engine import Router
from router.model import Message
from tests.redis_server import redis_server
from tests.sandbox import RunningSandbox
from tests.sidecar_process import CONFIG


def _config(sandbox: RunningSandbox, path: Path, redis_url: str, extra: str = "") -> Path:
    # Worker processes share idempotency records and jobs through Redis.
    shared = f'\n[state]\nbackend = "redis"\nredis_url = "{redis_url}"\n{extra}'
    text = CONFIG.format(receipt_poll_s=0, **sandbox.box.urls)
    path.write_text(
        text.replace("\n[providers.v1platform]", shared + "\n[providers.v1platform]", 1),
        encoding="utf-8",
    )
    return path


def _worker(env: dict[str, str], pool: str, concurrency: int = 2) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "tests.celery_app",
            "worker",
            "-Q",
            "sms_router",
            f"--pool={pool}",
            f"--concurrency={concurrency}",
            "--loglevel=WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


@contextmanager
def _producer(broker: str) -> Iterator[ModuleType]:
    """The app module imported as a producer: a broker, and no router config at all."""
    os.environ["SMS_ROUTER_CELERY_BROKER"] = broker
    os.environ.pop("SMS_ROUTER_CONFIG", None)
    sys.modules.pop("tests.celery_app", None)  # it reads the broker URL when imported
    try:
        yield importlib.import_module("tests.celery_app")
    finally:
        os.environ.pop("SMS_ROUTER_CELERY_BROKER", None)


@pytest.mark.parametrize("pool", ["solo", "prefork"])
def test_a_celery_task_sends_through_the_router(
    sandbox: RunningSandbox, tmp_path: Path, pool: str
) -> None:
    sandbox.reset()
    with redis_server(tmp_path) as redis:
        config = _config(sandbox, tmp_path / "router.toml", redis.url)
        env = {
            **os.environ,
            "SMS_ROUTER_CELERY_BROKER": redis.url,
            "SMS_ROUTER_CONFIG": str(config),
            "PYTHONPATH": os.getcwd(),
        }
        worker = _worker(env, pool)
        try:
            with _producer(redis.url) as app:
                body = {
                    "mobiles": ["13800000021"],
                    "scene": "login_code",
                    "params": {"code": "4242"},
                    "idempotency_key": "user-1:otp",
                }
                one = app.sms.send.delay(body).get(timeout=30)
                two = app.sms.send.delay(body).get(timeout=30)
        finally:
            worker.terminate()
            out = worker.communicate(timeout=30)[0].decode()
    assert one["recipients"][0]["status"] == "accepted", out
    assert two["message_id"] == one["message_id"] and two["idempotent_replay"]
    sent = [m for p in ("v1platform", "ronglian") for b in sandbox.mobiles_sent(p) for m in b]
    assert sent == ["13800000021"]  # the same key: the recorded result, not a second SMS
    assert "sandbox-pass" not in out and "sandbox-token" not in out


@pytest.mark.anyio
async def test_a_broadcast_survives_a_worker_killed_mid_way(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    sandbox.reset()
    numbers = [f"1390000{i:04d}" for i in range(4000)]
    for name in ("v1platform", "ronglian"):
        sandbox.state(name).set_faults(FaultSettings(latency_s=0.25))
    with redis_server(tmp_path) as redis:
        extra = (
            f'\n[broadcasts]\nexecutor = "celery"\ncelery_broker = "{redis.url}"\n'
            "chunk_size = 200\nclaim_s = 3\n"
        )
        config = _config(sandbox, tmp_path / "router.toml", redis.url, extra)
        env = {
            **os.environ,
            "SMS_ROUTER_CELERY_BROKER": redis.url,
            "SMS_ROUTER_CONFIG": str(config),
            "SMS_ROUTER_VISIBILITY_S": "4",
            "PYTHONPATH": os.getcwd(),
        }
        workers = [_worker(env, "solo", 1), _worker(env, "solo", 1)]
        seen: list[int] = []
        try:
            async with Router(load_settings(str(config))) as router:
                job = await router.broadcasts.submit(
                    Message(numbers, "login_code", {"code": "1"}, idempotency_key="notice:kill")
                )
                job_id = job.spec.job_id
                with anyio.fail_after(120):
                    while True:
                        progress = await router.broadcasts.progress(job_id)
                        assert progress is not None
                        seen.append(progress.chunks_done)
                        if progress.chunks_done >= 5 and workers[0].poll() is None:
                            workers[0].send_signal(signal.SIGKILL)  # mid-chunk: 0.25 s requests
                        if progress.finished:
                            break
                        await anyio.sleep(0.05)
                found = await router.broadcasts.results(job_id, 0, 10_000)
        finally:
            for name in ("v1platform", "ronglian"):
                sandbox.state(name).set_faults(FaultSettings())
            for worker in workers:
                worker.kill()
            out = workers[1].communicate(timeout=30)[0].decode()
    assert workers[0].returncode == -signal.SIGKILL
    assert found is not None
    progress, rows = found
    assert seen == sorted(seen)  # progress never goes back
    statuses = {r["mobile"]: r["status"] for r in rows}
    assert len(statuses) == 4000 and set(statuses.values()) <= {"accepted", "unknown"}, out
    # What the providers took (a Ronglian resend under a reused reqId is received, refused as
    # a reuse, and takes nothing: it is how a takeover proves the first was taken).
    taken = Counter(m for p in ("v1platform", "ronglian") for m in sandbox.state(p).taken)
    assert max(taken.values()) == 1  # no number sent twice
    accepted = {m for m, s in statuses.items() if s == "accepted"}
    assert accepted <= set(taken)  # every accepted number really reached a provider
    assert set(taken) <= set(numbers)
    # Only the killed worker's in-flight chunk may be unknown; nothing else is lost.
    assert len(statuses) - len(accepted) <= 200
    requests = len(sandbox.sends("v1platform")) + len(sandbox.sends("ronglian"))
    # ceil(4000 / 200) = 20, plus at most the killed chunk's one request resent under its own
    # reqId at Ronglian (refused as a reuse: nothing taken twice)
    assert requests <= 21
    assert progress.counts.get("accepted", 0) == len(accepted)
    print("killed-worker broadcast:", dict(progress.counts), "requests", requests)
