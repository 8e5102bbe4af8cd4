"""A real Celery worker (solo and prefork pools, Redis broker) sends through the router to the
emulators; a redelivered task with the same idempotency key sends nothing twice."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.redis_server import redis_server
from tests.sandbox import RunningSandbox
from tests.sidecar_process import CONFIG


@pytest.mark.parametrize("pool", ["solo", "prefork"])
def test_a_celery_task_sends_through_the_router(
    sandbox: RunningSandbox, tmp_path: Path, pool: str
) -> None:
    sandbox.reset()
    config = tmp_path / "router.toml"
    with redis_server(tmp_path) as redis:
        # Worker processes share idempotency records through Redis: one SMS per key.
        shared = f'\n[state]\nbackend = "redis"\nredis_url = "{redis.url}"\n'
        text = CONFIG.format(receipt_poll_s=0, **sandbox.box.urls)
        config.write_text(
            text.replace("\n[providers.v1platform]", shared + "\n[providers.v1platform]", 1),
            encoding="utf-8",
        )
        env = {
            **os.environ,
            "SMS_ROUTER_CELERY_BROKER": redis.url,
            "SMS_ROUTER_CONFIG": str(config),
            "PYTHONPATH": os.getcwd(),
        }
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "tests.celery_app",
                "worker",
                f"--pool={pool}",
                "--concurrency=2",
                "--loglevel=WARNING",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            os.environ["SMS_ROUTER_CELERY_BROKER"] = redis.url
            os.environ["SMS_ROUTER_CONFIG"] = str(config)
            # A fresh app module per test: it reads the broker URL when imported.
            sys.modules.pop("tests.celery_app", None)
            celery_app = importlib.import_module("tests.celery_app")

            first = celery_app.send_otp.delay("13800000021", "4242", "user-1:otp")
            again = celery_app.send_otp.delay("13800000021", "4242", "user-1:otp")
            one = first.get(timeout=30)
            two = again.get(timeout=30)
        finally:
            worker.terminate()
            out = worker.communicate(timeout=30)[0].decode()
            os.environ.pop("SMS_ROUTER_CELERY_BROKER", None)
            os.environ.pop("SMS_ROUTER_CONFIG", None)
    assert one["status"] == "accepted", out
    assert two == one  # the same key: the recorded result, not a second SMS
    sent = [m for p in ("v1platform", "ronglian") for b in sandbox.mobiles_sent(p) for m in b]
    assert sent == ["13800000021"]
    assert "sandbox-pass" not in out and "sandbox-token" not in out
