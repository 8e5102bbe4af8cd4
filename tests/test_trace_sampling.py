"""Which sends are traced: a parent span's decision is followed, and a sink that draws for root
sends creates no span object for the ones it leaves out."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from router import Message
from router.errors import ConfigError
from router.events import EventBus
from router.telemetry.tracing import TracingSink
from tests.sandbox import RunningSandbox, only

pytestmark = pytest.mark.anyio
TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736


class CountingTracer(trace.Tracer):
    """The SDK's tracer, counting every span it is asked to start."""

    def __init__(self, inner: trace.Tracer) -> None:
        self.inner, self.started = inner, 0

    def start_span(self, *args: Any, **kwargs: Any) -> trace.Span:
        self.started += 1
        return self.inner.start_span(*args, **kwargs)

    def start_as_current_span(self, *args: Any, **kwargs: Any) -> Any:
        self.started += 1
        return self.inner.start_as_current_span(*args, **kwargs)


def sink(ratio: float | None) -> tuple[TracingSink, CountingTracer, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()  # the SDK's default sampler: parentbased_always_on
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = CountingTracer(provider.get_tracer("test"))
    return TracingSink(tracer, sample_ratio=ratio), tracer, exporter


async def send_n(sandbox: RunningSandbox, tracing: TracingSink, n: int, parent: Any = None) -> None:
    sandbox.reset()
    async with only(sandbox, "v1platform", router_kw={"events": EventBus([tracing])}) as router:
        for i in range(n):
            message = Message(mobiles=[f"1380013{i:04d}"], content="code 1234")
            if parent is None:
                await router.send(message)
            else:
                with trace.use_span(parent):
                    await router.send(message)


@pytest.mark.parametrize(("ratio", "traced"), [(0.0, 0), (1.0, 20), (None, 20)])
async def test_root_sends_are_drawn_by_the_sink_and_the_rest_create_nothing(
    sandbox: RunningSandbox, ratio: float | None, traced: int
) -> None:
    tracing, tracer, exporter = sink(ratio)
    await send_n(sandbox, tracing, 20)
    sends = [s for s in exporter.get_finished_spans() if s.name == "sms.send"]
    attempts = [s for s in exporter.get_finished_spans() if s.name == "sms.attempt"]
    assert (len(sends), len(attempts)) == (traced, traced)
    assert tracer.started == 2 * traced  # not one span object for an untraced send


async def test_a_share_of_root_sends_is_traced(sandbox: RunningSandbox) -> None:
    tracing, _, exporter = sink(0.5)
    await send_n(sandbox, tracing, 80)
    sends = [s for s in exporter.get_finished_spans() if s.name == "sms.send"]
    assert 15 <= len(sends) <= 65  # 40 expected; p(outside) < 1e-7


@pytest.mark.parametrize("sampled", [False, True])
async def test_a_send_follows_its_parents_decision_whatever_the_ratio(
    sandbox: RunningSandbox, sampled: bool
) -> None:
    parent_context = SpanContext(
        TRACE_ID, 0x00F067AA0BA902B7, is_remote=True, trace_flags=TraceFlags(int(sampled))
    )
    tracing, tracer, exporter = sink(0.0 if sampled else 1.0)
    await send_n(sandbox, tracing, 3, parent=NonRecordingSpan(parent_context))
    sends = [s for s in exporter.get_finished_spans() if s.name == "sms.send"]
    if sampled:
        assert [s.context.trace_id for s in sends] == [TRACE_ID] * 3
        assert {s.parent.span_id for s in sends if s.parent} == {parent_context.span_id}
    else:
        assert sends == [] and tracer.started == 0


@pytest.mark.parametrize("ratio", [-0.1, 1.5])
def test_a_ratio_outside_zero_to_one_is_refused(ratio: float) -> None:
    with pytest.raises(ConfigError, match="sample_ratio"):
        TracingSink(sample_ratio=ratio)
