"""Two router instances sharing Redis: a breaker that trips in one is open in the other within
about a second, and a receipt one of them took is the other's to report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from policies.base import BreakerState
from providers.base import DeliveryReport, DeliveryStatus
from providers.emulators._common import FaultSettings
from router import Message, Router
from router.events import EventBus
from tests.redis_server import redis_url
from tests.sandbox import RunningSandbox

pytestmark = pytest.mark.anyio


def shared(sandbox: RunningSandbox, primary: str, state: dict[str, Any], **kw: Any) -> Any:
    """Settings with ``primary`` the only weighted provider and a Redis state store."""
    providers = {
        n: {**raw, "weight": 1 if n == primary else 0}
        for n, raw in sandbox.settings().providers.items()
    }
    return sandbox.settings(providers=providers, state={"backend": "redis", **state}, **kw)


async def test_a_trip_is_shared(sandbox: RunningSandbox, tmp_path: Path) -> None:
    sandbox.reset()
    sandbox.state("baofoo").set_faults(FaultSettings(error_rate=1.0))
    with redis_url(tmp_path) as (url, prefix):
        settings = shared(
            sandbox,
            "baofoo",
            {"redis_url": url, "prefix": prefix, "breaker_sync_s": 0.2},
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


async def test_a_receipt_on_another_instance_links_to_its_send(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    """Instance A sends (traced); the receipt reaches instance B (a push through a load
    balancer): B's sms.receipt span links to A's sms.send span, through the shared store."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from router.telemetry.tracing import TracingSink

    def traced() -> tuple[InMemorySpanExporter, EventBus]:
        exporter, provider = InMemorySpanExporter(), TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        return exporter, EventBus([TracingSink(provider.get_tracer("test"))])

    sandbox.reset()
    (sent_a, bus_a), (sent_b, bus_b) = traced(), traced()
    with redis_url(tmp_path) as (url, prefix):
        settings = shared(
            sandbox, "v1platform", {"redis_url": url, "prefix": prefix}, receipt_poll_s=0
        )
        async with Router(settings, events=bus_a) as a:
            result = await a.send(
                Message(mobiles=["13800000201"], scene="login_code", params={"code": "1"})
            )
        # A has left (its last links flushed on the way out); B never saw the send.
        [r] = result.recipients
        assert r.provider == "v1platform" and r.provider_message_id
        report = DeliveryReport(
            "v1platform", r.provider_message_id, "13800000201", DeliveryStatus.DELIVERED, "OK"
        )
        async with Router(settings, events=bus_b) as b:
            assert await b.record_receipts([report]) == [report]
    [send] = [s for s in sent_a.get_finished_spans() if s.name == "sms.send"]
    [receipt] = [s for s in sent_b.get_finished_spans() if s.name == "sms.receipt"]
    assert [link.context.span_id for link in receipt.links] == [send.context.span_id]
    assert receipt.links[0].context.trace_id == send.context.trace_id
