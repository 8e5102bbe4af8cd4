"""Two router instances sharing Redis: a breaker that trips in one is open in the other within
about a second, and a receipt one of them took is the other's to report."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from policies.base import BreakerState
from providers.base import DeliveryReport, DeliveryStatus
from providers.emulators._common import FaultSettings
from router import Message, Router
from tests.redis_server import redis_url
from tests.sandbox import RunningSandbox

pytestmark = pytest.mark.anyio


async def test_a_trip_is_shared(sandbox: RunningSandbox, tmp_path: Path) -> None:
    sandbox.reset()
    sandbox.state("baofoo").set_faults(FaultSettings(error_rate=1.0))
    with redis_url(tmp_path) as (url, prefix):
        base = sandbox.settings()
        providers = {
            n: {**raw, "weight": 1 if n == "baofoo" else 0} for n, raw in base.providers.items()
        }
        settings = sandbox.settings(
            providers=providers,
            state={"backend": "redis", "redis_url": url, "prefix": prefix, "breaker_sync_s": 0.2},
            resilience={"breaker": {"consecutive_failures": 2, "open_s": 30}},
        )
        async with Router(settings) as first, Router(settings) as second:
            for i in range(2):
                await first.send(
                    Message(mobiles=[f"1380000010{i}"], scene="login_code", params={"code": "1"})
                )
            assert first.breaker("baofoo").state is BreakerState.OPEN
            with anyio.fail_after(3):
                while second.breaker("baofoo").state is not BreakerState.OPEN:  # noqa: ASYNC110
                    await anyio.sleep(0.05)
            before = len(sandbox.sends("baofoo"))
            result = await second.send(
                Message(mobiles=["13800000109"], scene="login_code", params={"code": "1"})
            )
    assert result.ok
    assert len(sandbox.sends("baofoo")) == before  # the second instance skipped baofoo


async def test_a_receipt_is_shared(sandbox: RunningSandbox, tmp_path: Path) -> None:
    sandbox.reset()
    with redis_url(tmp_path) as (url, prefix):
        settings = sandbox.settings(
            state={"backend": "redis", "redis_url": url, "prefix": prefix}, receipt_poll_s=0
        )
        async with Router(settings) as first, Router(settings) as second:
            report = DeliveryReport(
                "v1platform", "task-9", "13800000001", DeliveryStatus.DELIVERED, "DELIVRD"
            )
            assert await first.record_receipts([report]) == [report]
            assert await first.record_receipts([report]) == []  # pushed twice: once
            late = DeliveryReport(
                "v1platform", "task-9", "13800000001", DeliveryStatus.FAILED, "UNDELIV"
            )
            assert await second.record_receipts([late]) == []  # the first instance counted it
            shared = await second.delivery_status("v1platform", "task-9", "+8613800000001")
            assert (shared.status, shared.code) == ("delivered", "DELIVRD")
