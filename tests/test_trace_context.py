"""A caller's W3C traceparent is the parent of the sidecar's server span and of sms.send."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from router.events import EventBus
from router.sidecar.app import create_app
from router.telemetry.tracing import TracingSink
from tests.sandbox import RunningSandbox, only

pytestmark = pytest.mark.anyio
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


@pytest.fixture(scope="module")
def exporter() -> InMemorySpanExporter:
    """The process-wide tracer provider (OpenTelemetry allows setting it once)."""
    memory = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    return memory


async def test_the_sidecar_continues_the_callers_trace(
    sandbox: RunningSandbox, serve: Any, exporter: InMemorySpanExporter
) -> None:
    router = only(sandbox, "v1platform", router_kw={"events": EventBus([TracingSink()])})
    url = f"http://127.0.0.1:{serve(create_app(router)).port}"
    headers = {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"}
    body = {"mobiles": ["13800138011"], "scene": "login_code", "params": {"code": "1"}}
    async with httpx.AsyncClient(timeout=10) as client:
        answer = await client.post(f"{url}/v1/messages", json=body, headers=headers)
    assert answer.status_code == 200, answer.text
    spans = {s.name: s for s in exporter.get_finished_spans()}
    server, send = spans["POST /v1/messages"], spans["sms.send"]
    assert format(server.context.trace_id, "032x") == TRACE_ID
    assert server.parent is not None and format(server.parent.span_id, "016x") == PARENT_ID
    assert send.parent is not None and send.parent.span_id == server.context.span_id
    assert (server.attributes or {}).get("messaging.message.id") == answer.json()["message_id"]
