"""Cost per message of telemetry, event construction included, against no telemetry at all.

    python -m benchmarks.bench_telemetry [--smoke]

A single-recipient send (no idempotency key) emits four events: SendStarted, AttemptStarted
(built inline by the engine and the dispatcher), AttemptFinished and SendFinished (built by
``Dispatcher._emit_attempt`` and ``Router._emit_finished``, which also count outcomes). Each
timed message runs exactly that code, the engine's own methods on a real ``Router``, so the
figure includes building the events and the bus fan-out, not only the sinks. What a send
produces anyway (its ids, the rendered batch, the provider's result, the ``SendResult``) is
built before the clock starts. Cases, in one process, repeats interleaved across cases:
  * no events (baseline): the same loop over the same objects, emitting nothing;
  * events built, no sinks: what a send pays with telemetry off (the engine always builds
    its events);
  * each sink set on top.
Figures: process CPU us per message (not wall time: the benchmark host is shared), best and
median over the repeats, and the best minus the baseline.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, TraceIdRatioBased
from opentelemetry.trace import NoOpTracer
from prometheus_client import CollectorRegistry

from benchmarks.stats import table, write_result
from providers.base import AttemptResult, Batch, Mobile, Rendered, Verdict
from router import Message, Router
from router.events import AttemptStarted, EventBus, EventSink, SendStarted
from router.ids import new_id
from router.model import RecipientOutcome, RecipientStatus, SendResult
from router.runtime import RouteJob
from router.sidecar.sandbox import Sandbox, sandbox_settings
from router.telemetry import MetricsSink, TracingSink

PROVIDER = "baofoo"
URLS = {name: "http://127.0.0.1:9" for name in ("baofoo", "v1platform", "ronglian")}
BASELINE = "no events (baseline)"

# A prepared message: (raw mobile, normalised mobile, renderings by provider).
Prepared = tuple[str, Mobile, Mapping[str, Rendered]]
# One send's objects: (job, batch, provider result, send result).
Send = tuple[RouteJob, Batch, AttemptResult, SendResult]


def material(router: Router, n: int) -> list[Prepared]:
    """Prepared messages (validated, rendered): ``(raw mobile, Mobile, renders)``."""
    out = []
    for i in range(n):
        raw = f"137{i:08d}"
        prepared = router._prepare(Message(mobiles=[raw], content="code 1234"))
        tracker = prepared.recipients.trackers[0]
        out.append((raw, tracker.mobile, prepared.renders))
    return out


def sends(prepared: list[Prepared]) -> list[Send]:
    """What each send produces whatever telemetry does, with fresh ids (outside the clock)."""
    out = []
    for raw, mobile, renders in prepared:
        send_id = new_id()
        job = RouteJob(send_id, "content", renders, 0.3, 0.0)
        batch = Batch(new_id(), (mobile,), renders[PROVIDER])
        result = AttemptResult.uniform(PROVIDER, batch, Verdict.ACCEPTED, message_id=new_id())
        outcome = RecipientOutcome(
            raw,
            mobile.e164,
            RecipientStatus.ACCEPTED,
            PROVIDER,
            result.recipients[0].provider_message_id,
        )
        out.append((job, batch, result, SendResult(send_id, (outcome,))))
    return out


def per_message_us(router: Router, bus: EventBus | None, batch: list[Send]) -> float:
    """The engine's telemetry code for each send; ``bus=None``: the loop alone, no events."""
    emit_attempt, emit_finished = router.dispatcher._emit_attempt, router._emit_finished
    if bus is None:
        start = time.process_time()
        for job, request, result, _ in batch:
            _ = (job.send_id, request.request_id, result)
        return (time.process_time() - start) / len(batch) * 1e6
    router.events = router.dispatcher.events = bus
    emit = bus.emit
    start = time.process_time()
    for job, request, result, finished in batch:
        emit(SendStarted(job.send_id, job.scene, 1))  # Router._send_once
        emit(AttemptStarted(job.send_id, request.request_id, PROVIDER, 1))  # Dispatcher._send
        emit_attempt(job, request, result, 0.02, 1, 0.04)
        emit_finished(job.scene, finished, 0.021)
    return (time.process_time() - start) / len(batch) * 1e6


def tracing(sampler: Any) -> TracingSink:
    return TracingSink(TracerProvider(sampler=sampler).get_tracer("bench"))


def cases(router: Router) -> dict[str, Sequence[EventSink] | None]:
    providers, scenes = list(router.settings.providers), list(router.settings.templates)

    def metrics(trace_sink: TracingSink | None = None) -> MetricsSink:
        return MetricsSink(
            CollectorRegistry(),
            providers=providers,
            scenes=scenes,
            trace_id_for=trace_sink.trace_id_for if trace_sink else None,
        )

    one_percent = tracing(TraceIdRatioBased(0.01))
    drawn = TracingSink(TracerProvider().get_tracer("bench"), sample_ratio=0.01)
    return {
        BASELINE: None,
        "events built, no sinks (telemetry off)": [],
        "metrics": [metrics()],
        "tracing, no-op tracer": [TracingSink(NoOpTracer())],
        "tracing, SDK sampled off": [tracing(ALWAYS_OFF)],
        "tracing, SDK sampled 1%": [tracing(TraceIdRatioBased(0.01))],
        "tracing, SDK always on": [tracing(ALWAYS_ON)],
        "metrics + tracing 1%": [metrics(one_percent), one_percent],
        # The documented embedded set-up: the sink draws, unsampled sends create no span.
        "tracing, sink draws 1%": [
            TracingSink(TracerProvider().get_tracer("bench"), sample_ratio=0.01)
        ],
        "metrics + tracing, sink draws 1%": [metrics(drawn), drawn],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    n, repeats = (1_000, 2) if args.smoke else (20_000, 5)
    router = Router(sandbox_settings(Sandbox(apps={}, urls=URLS)))
    prepared = material(router, n)
    buses = {
        name: None if sinks is None else EventBus(sinks) for name, sinks in cases(router).items()
    }
    for bus in buses.values():  # warm-up: first calls, metric children, span machinery
        per_message_us(router, bus, sends(prepared[: min(n, 2_000)]))
    runs: dict[str, list[float]] = {name: [] for name in buses}
    for _ in range(repeats):
        for name, bus in buses.items():
            runs[name].append(per_message_us(router, bus, sends(prepared)))
    baseline = min(runs[BASELINE])
    rows = [
        {
            "case": name,
            "us_per_message": min(values),
            "median_us": statistics.median(values),
            "added_us": min(values) - baseline,
        }
        for name, values in runs.items()
    ]
    print(f"{n:,} single-recipient sends (4 events each) per case, best of {repeats}")
    print(table(rows))
    name = "telemetry" + ("-smoke" if args.smoke else "")
    print(f"wrote {write_result(name, {'n': n, 'repeats': repeats, 'rows': rows})}")


if __name__ == "__main__":
    main()
