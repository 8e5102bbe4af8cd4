"""Metrics and traces from real sends through the emulators."""

from __future__ import annotations

import anyio
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest

from providers.emulators._common import FaultSettings
from router import Message, Router
from router.events import EventBus
from router.telemetry import LoggingSink, MetricsSink, TracingSink
from tests.redis_server import require
from tests.sandbox import RunningSandbox

pytestmark = pytest.mark.anyio
PRIMARY, BACKUP = "baofoo", "v1platform"


@pytest.fixture(autouse=True)
def _clean(sandbox: RunningSandbox) -> None:
    sandbox.reset()


def failing_over_router(sandbox: RunningSandbox, *sinks: object) -> Router:
    base = sandbox.settings()
    providers = {
        n: {**raw, "weight": 1 if n == PRIMARY else 0} for n, raw in base.providers.items()
    }
    router = Router(sandbox.settings(providers=providers), events=EventBus(list(sinks)))  # type: ignore[arg-type]
    router.set_enabled("ronglian", False)
    sandbox.state(PRIMARY).set_faults(FaultSettings(error_rate=1.0))
    return router


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    got = registry.get_sample_value(name, labels)
    return 0.0 if got is None else got


async def test_metrics_count_a_failed_over_send(sandbox: RunningSandbox) -> None:
    registry = CollectorRegistry()
    settings = sandbox.settings()
    sink = MetricsSink(
        registry, providers=list(settings.providers), scenes=list(settings.templates)
    )
    async with failing_over_router(sandbox, sink, LoggingSink()) as router:
        await router.send(
            Message(
                mobiles=["13800000001", "13800000002", "1"],
                scene="login_code",
                params={"code": "1"},
            )
        )

    def v(name: str, **labels: str) -> float:
        return value(registry, name, **labels)

    assert (
        v(
            "smsrouter_provider_attempts_total",
            provider=PRIMARY,
            outcome="rejected",
            error_class="refused",
        )
        == 1
    )
    assert (
        v(
            "smsrouter_provider_attempts_total",
            provider=BACKUP,
            outcome="accepted",
            error_class="none",
        )
        == 1
    )
    assert v("smsrouter_failovers_total", from_provider=PRIMARY, to_provider=BACKUP) == 2
    assert v("smsrouter_send_recipients_total", scene="login_code", status="accepted") == 2
    assert v("smsrouter_send_recipients_total", scene="login_code", status="invalid") == 1
    # One recipient was invalid: not "ok" (the API says "ok": false), but nothing the router
    # could send failed either.
    assert v("smsrouter_send_requests_total", scene="login_code", outcome="excluded") == 1
    assert v("smsrouter_send_requests_total", scene="login_code", outcome="ok") == 0
    assert v("smsrouter_message_parts_total", provider=BACKUP) == 2
    assert v("smsrouter_inflight_sends") == 0
    # Pre-created combinations read 0, not "no data".
    assert (
        registry.get_sample_value(
            "smsrouter_provider_attempts_total",
            {"provider": "ronglian", "outcome": "unknown", "error_class": "timeout"},
        )
        == 0
    )
    text = generate_latest(registry).decode()
    assert "13800000001" not in text
    promtool = require("promtool")
    checked = await anyio.run_process(
        [promtool, "check", "metrics"], input=text.encode(), check=False
    )
    assert checked.returncode == 0, checked.stdout.decode() + checked.stderr.decode()


async def test_span_tree_of_a_failed_over_send(sandbox: RunningSandbox) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing = TracingSink(provider.get_tracer("test"))
    registry = CollectorRegistry()
    settings = sandbox.settings()
    metrics = MetricsSink(
        registry,
        providers=list(settings.providers),
        scenes=list(settings.templates),
        trace_id_for=tracing.trace_id_for,
    )
    async with failing_over_router(sandbox, metrics, tracing) as router:
        result = await router.send(
            Message(mobiles=["13800000003"], scene="login_code", params={"code": "1"})
        )
    spans = exporter.get_finished_spans()
    [root] = [s for s in spans if s.name == "sms.send"]
    assert (root.attributes or {}).get("messaging.message.id") == result.message_id
    assert (root.attributes or {}).get("messaging.operation.name") == "send"
    attempts = sorted(
        (s for s in spans if s.name == "sms.attempt"), key=lambda s: s.start_time or 0
    )
    assert [a.parent.span_id for a in attempts if a.parent] == [root.context.span_id] * 2
    assert [(a.attributes or {}).get("sms.provider") for a in attempts] == [PRIMARY, BACKUP]
    assert [(a.attributes or {}).get("sms.outcome") for a in attempts] == ["rejected", "accepted"]
    assert (attempts[0].attributes or {}).get("sms.error_class") == "refused"
    assert (attempts[0].attributes or {}).get("sms.provider_code")  # the provider's own code
    assert (attempts[1].attributes or {}).get("http.response.status_code") == 200
    assert [e.name for e in root.events] == ["sms.failover"]
    for span in spans:
        assert "13800000003" not in str(span.to_json())
        assert "sandbox-pass" not in str(span.to_json())
    # The latency histogram carries the trace id as an exemplar (OpenMetrics).
    exposition = openmetrics_latest(registry).decode()  # type: ignore[no-untyped-call, unused-ignore]
    assert format(root.context.trace_id, "032x") in exposition


async def test_a_receipt_span_links_to_its_send(sandbox: RunningSandbox) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing = TracingSink(provider.get_tracer("test"))
    base = sandbox.settings()
    providers = {n: {**raw, "weight": 1 if n == BACKUP else 0} for n, raw in base.providers.items()}
    router = Router(
        sandbox.settings(providers=providers, receipt_poll_s=0), events=EventBus([tracing])
    )
    async with router:
        await router.send(
            Message(mobiles=["13800000004"], scene="login_code", params={"code": "1"})
        )
        pulled = await router.runtimes[BACKUP].pull_reports()
        router.intake.ingest(pulled)
    [root] = [s for s in exporter.get_finished_spans() if s.name == "sms.send"]
    [receipt] = [s for s in exporter.get_finished_spans() if s.name == "sms.receipt"]
    assert [link.context.span_id for link in receipt.links] == [root.context.span_id]


def test_the_exposition_says_which_build_runs_and_how_the_process_does() -> None:
    registry = CollectorRegistry()
    MetricsSink(registry, providers=["v1platform"], scenes=["login_code"])
    text = generate_latest(registry).decode()
    assert 'smsrouter_build_info{python="' in text and 'version="' in text
    for family in (
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "python_gc_collections_total",
        "python_info",
    ):
        assert f"\n{family}" in text, family
