"""Telemetry plug-ins: each is an :class:`router.events.EventSink`.

The engine imports none of these; the sidecar (or an embedding service) installs them::

    from router.telemetry import standard_sinks
    router = Router(settings, events=EventBus(standard_sinks(settings, registry)))
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry

from router.config import RouterSettings
from router.events import EventSink
from router.telemetry.logs import LoggingSink
from router.telemetry.metrics import MetricsSink
from router.telemetry.tracing import TracingSink


def standard_sinks(
    settings: RouterSettings,
    registry: CollectorRegistry,
    *,
    tracing: bool = True,
    trace_sample_ratio: float | None = None,
) -> Sequence[EventSink]:
    """Metrics on ``registry``, traces on the global OpenTelemetry tracer, logs.
    ``trace_sample_ratio``: see :class:`TracingSink` (``sample_ratio``)."""
    tracer = TracingSink(sample_ratio=trace_sample_ratio) if tracing else None
    metrics = MetricsSink(
        registry,
        providers=list(settings.providers),
        scenes=list(settings.templates),
        trace_id_for=tracer.trace_id_for if tracer else None,
    )
    # Metrics first: they read the send span's trace id before tracing ends the span.
    return [metrics, LoggingSink(), *([tracer] if tracer else [])]


__all__ = ["LoggingSink", "MetricsSink", "TracingSink", "standard_sinks"]
