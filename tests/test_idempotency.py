"""Idempotency keys and per-mobile limits through the engine, in one process and across two
processes sharing a real Redis."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest

from router import (
    IdempotencyConflictError,
    Message,
    RecipientStatus,
    Router,
    StateStoreError,
)
from tests.redis_server import redis_server, redis_url
from tests.sandbox import RunningSandbox, plain_providers

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
def _clean(sandbox: RunningSandbox) -> None:
    sandbox.reset()


def requests_for(sandbox: RunningSandbox) -> int:
    return sum(len(sandbox.sends(p)) for p in ("baofoo", "v1platform", "ronglian"))


def otp(code: str, key: str | None, mobiles: list[str] | None = None) -> Message:
    return Message(
        mobiles=mobiles or ["13800000001"],
        scene="login_code",
        params={"code": code},
        idempotency_key=key,
    )


async def test_a_seen_key_replays_without_sending(sandbox: RunningSandbox) -> None:
    async with Router(sandbox.settings()) as router:
        first = await router.send(otp("1", "k-1"))
        again = await router.send(otp("1", "k-1"))
    assert not first.idempotent_replay
    assert again.idempotent_replay
    assert again.message_id == first.message_id
    assert again.recipients == first.recipients
    assert requests_for(sandbox) == 1


async def test_concurrent_sends_with_one_key_make_one_request(sandbox: RunningSandbox) -> None:
    results = []
    async with Router(sandbox.settings()) as router:

        async def send() -> None:
            results.append(await router.send(otp("2", "k-2")))

        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(send)
    assert len({r.message_id for r in results}) == 1
    assert sum(not r.idempotent_replay for r in results) == 1
    assert requests_for(sandbox) == 1


async def test_a_reused_key_with_another_payload_is_a_conflict(sandbox: RunningSandbox) -> None:
    async with Router(sandbox.settings()) as router:
        await router.send(otp("3", "k-3"))
        with pytest.raises(IdempotencyConflictError, match="k-3"):
            await router.send(otp("4", "k-3"))
    assert requests_for(sandbox) == 1


async def test_a_message_error_gives_the_key_back(sandbox: RunningSandbox) -> None:
    async with Router(sandbox.settings()) as router:
        bad = Message(mobiles=["13800000001"], scene="login_code", idempotency_key="k-5")
        with pytest.raises(Exception, match="code"):
            await router.send(bad)  # missing param: nothing sent
        # The same key with the same (still bad) payload may be retried, not blocked.
        with pytest.raises(Exception, match="code"):
            await router.send(bad)
    assert requests_for(sandbox) == 0


def throttled_settings(sandbox: RunningSandbox, **extra: Any) -> Any:
    base = sandbox.settings()
    templates = {k: v.model_dump() for k, v in base.templates.items()}
    templates["login_code"]["throttle_s"] = 60
    return sandbox.settings(templates=templates, **extra)


async def test_one_sms_per_mobile_per_window(sandbox: RunningSandbox) -> None:
    async with Router(throttled_settings(sandbox)) as router:
        first = await router.send(otp("6", None, ["13800000001", "13800000002"]))
        second = await router.send(otp("7", None, ["13800000001", "13800000003"]))
    assert first.ok
    statuses = {r.mobile: r.status for r in second.recipients}
    assert statuses == {
        "13800000001": RecipientStatus.THROTTLED,
        "13800000003": RecipientStatus.ACCEPTED,
    }
    assert "60 s" in (second.recipients[0].error or "")
    assert requests_for(sandbox) == 2


async def test_a_refused_recipient_is_not_throttled(sandbox: RunningSandbox) -> None:
    from providers.emulators._common import FaultSettings

    for name in ("baofoo", "v1platform", "ronglian"):
        sandbox.state(name).set_faults(FaultSettings(error_rate=1.0))
    async with Router(throttled_settings(sandbox)) as router:
        refused = await router.send(otp("8", None))
        for name in ("baofoo", "v1platform", "ronglian"):
            sandbox.state(name).set_faults(FaultSettings())
        retried = await router.send(otp("9", None))
    assert refused.recipients[0].status is RecipientStatus.REJECTED
    assert retried.recipients[0].status is RecipientStatus.ACCEPTED


def test_two_processes_one_request_per_key(sandbox: RunningSandbox, tmp_path: Path) -> None:
    with redis_url(tmp_path) as (url, prefix):
        base = sandbox.settings()
        overrides = {
            "providers": {
                n: {**p, "user_pass": "sandbox-pass"} if n == "baofoo" else p
                for n, p in plain_providers(base.providers).items()
            },
            "templates": {k: v.model_dump() for k, v in base.templates.items()},
            "state": {"backend": "redis", "redis_url": url, "prefix": prefix},
        }
        payload = orjson.dumps(overrides).decode()
        workers = [
            subprocess.Popen(
                [sys.executable, "-m", "tests.idem_worker", payload, "20"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            for _ in range(2)
        ]
        outputs = [w.communicate(timeout=60) for w in workers]
    for worker, (_, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err.decode()
    lines = [orjson.loads(line) for out, _ in outputs for line in out.splitlines()]
    by_key: dict[int, set[str]] = {}
    for line in lines:
        by_key.setdefault(line["key"], set()).add(line["id"])
    assert len(lines) == 40
    assert all(len(ids) == 1 for ids in by_key.values())  # both processes saw one result
    assert sum(not line["replay"] for line in lines) == 20
    sent = Counter(
        m
        for p in ("baofoo", "v1platform", "ronglian")
        for batch in sandbox.mobiles_sent(p)
        for m in batch
    )
    assert sent == {"13800000001": 20, "13800000002": 20}  # once per key and recipient


async def test_redis_restart_keeps_commits_and_fails_closed_while_down(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    with redis_server(tmp_path, persistent=True) as server:
        settings = sandbox.settings(
            state={"backend": "redis", "redis_url": server.url, "breaker_sync_s": 0}
        )
        async with Router(settings) as router:
            first = await router.send(otp("10", "persist-1"))
            server.stop()
            with pytest.raises(StateStoreError, match=r"127\.0\.0\.1:\d+.*Nothing was sent"):
                await router.send(otp("11", "while-down"))
            assert requests_for(sandbox) == 1
            server.start()
            replay = await router.send(otp("10", "persist-1"))
    assert replay.idempotent_replay
    assert replay.message_id == first.message_id
    assert requests_for(sandbox) == 1
