"""Cost per message of metrics and tracing, against telemetry off, in one run.

    python -m benchmarks.bench_telemetry [--smoke]

A single-recipient send emits four events (SendStarted, AttemptStarted, AttemptFinished,
SendFinished); this drives that sequence through the EventBus with each sink set, so the
figure is exactly what telemetry adds to a send (the send itself is the same in every case).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, TraceIdRatioBased
from opentelemetry.trace import NoOpTracer
from prometheus_client import CollectorRegistry

from benchmarks.stats import table, write_result
from providers.base import Verdict
from router.events import (
    AttemptFinished,
    AttemptStarted,
    EventBus,
    EventSink,
    SendFinished,
    SendStarted,
)
from router.telemetry import MetricsSink, TracingSink

PROVIDERS = ["baofoo", "v1platform", "ronglian"]
SCENES = ["login_code", "register_code", "password_reset"]


def messages(n: int) -> list[tuple[Any, ...]]:
    out = []
    for i in range(n):
        send, attempt = f"s{i}", f"a{i}"
        out.append(
            (
                SendStarted(send, "login_code", 1),
                AttemptStarted(send, attempt, "baofoo", 1),
                AttemptFinished(
                    send,
                    attempt,
                    "baofoo",
                    "login_code",
                    1,
                    Verdict.ACCEPTED,
                    None,
                    0.02,
                    1,
                    0,
                    0,
                    1,
                    0.04,
                ),
                SendFinished(send, "login_code", 0.021, 1, (("accepted", 1),), False, False),
            )
        )
    return out


def tracing(sampler: Any) -> TracingSink:
    return TracingSink(TracerProvider(sampler=sampler).get_tracer("bench"))


def cases() -> dict[str, Sequence[EventSink]]:
    def metrics(trace_sink: TracingSink | None = None) -> MetricsSink:
        return MetricsSink(
            CollectorRegistry(),
            providers=PROVIDERS,
            scenes=SCENES,
            trace_id_for=trace_sink.trace_id_for if trace_sink else None,
        )

    one_percent = tracing(TraceIdRatioBased(0.01))
    return {
        "telemetry off (baseline)": [],
        "metrics": [metrics()],
        "tracing, no-op tracer": [TracingSink(NoOpTracer())],
        "tracing, SDK sampled off": [tracing(ALWAYS_OFF)],
        "tracing, SDK sampled 1%": [tracing(TraceIdRatioBased(0.01))],
        "tracing, SDK always on": [tracing(ALWAYS_ON)],
        "metrics + tracing 1%": [metrics(one_percent), one_percent],
    }


def per_message_us(sinks: Sequence[EventSink], batch: list[tuple[Any, ...]]) -> float:
    bus = EventBus(sinks)
    start = time.perf_counter()
    for events in batch:
        for event in events:
            bus.emit(event)
    return (time.perf_counter() - start) / len(batch) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    n, repeats = (1_000, 2) if args.smoke else (20_000, 5)
    rows = []
    baseline = 0.0
    for name, sinks in cases().items():
        runs = [per_message_us(sinks, messages(n)) for _ in range(repeats)]
        best = min(runs)
        baseline = baseline or best
        rows.append(
            {
                "case": name,
                "us_per_message": best,
                "median_us": statistics.median(runs),
                "added_us": best - baseline,
            }
        )
    print(table(rows))
    name = "telemetry" + ("-smoke" if args.smoke else "")
    print(f"wrote {write_result(name, {'n': n, 'rows': rows})}")


if __name__ == "__main__":
    main()
