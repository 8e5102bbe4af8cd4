"""OpenTelemetry traces from engine events (the library needs only ``opentelemetry-api``).

One ``sms.send`` span per send; one child ``sms.attempt`` span per provider request with
provider, batch size, outcome and error class; failovers and panic sends as span events.
A receipt that arrives later gets its own ``sms.receipt`` span *linked* to the send span
(it is not a child: the send finished long before). Attributes never carry a mobile number,
a credential or a provider URL.
"""

from __future__ import annotations

import os
import random
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode

from router.errors import ConfigError
from router.events import (
    AttemptFinished,
    AttemptStarted,
    Event,
    FailoverTaken,
    PanicSend,
    ReceiptReceived,
    SendFinished,
    SendStarted,
)
from router.links import TraceLinks

MAX_OPEN_SPANS = 10_000  # a finish that never comes cannot leak memory
MAX_LINKS = 100_000  # finished sends whose receipts may still arrive


class TracingSink:
    def __init__(
        self, tracer: trace.Tracer | None = None, *, sample_ratio: float | None = None
    ) -> None:
        """A send whose context holds a span (the sidecar's server span, an embedding
        service's own) follows that span's sampling decision, as the SDK's default
        ``ParentBased`` sampler does: under a parent that is not sampled nothing is created.
        ``sample_ratio``: the share of root sends (no parent span) this sink traces, drawn
        here so the others create no span object at all (~3 us each); pair it with the SDK's
        default sampler (``parentbased_always_on``), which then keeps what the sink starts.
        ``None``: every root send goes to the SDK's sampler."""
        if sample_ratio is not None and not 0.0 <= sample_ratio <= 1.0:
            raise ConfigError("sample_ratio", f"use a share from 0 to 1, not {sample_ratio}")
        self._tracer = tracer or trace.get_tracer("sms-router")
        self._ratio = sample_ratio
        self._draw = random.random
        self._by_type: dict[type, Callable[[Any], None]] = {
            SendStarted: self._send_started,
            AttemptStarted: self._attempt_started,
            AttemptFinished: self._attempt_finished,
            FailoverTaken: self._send_event,
            PanicSend: self._send_event,
            SendFinished: self._send_finished,
            ReceiptReceived: self._receipt,
        }
        self.handles = frozenset(self._by_type)  # the bus hands this sink nothing else
        self._sends: OrderedDict[str, Span] = OrderedDict()
        self._attempts: OrderedDict[str, Span] = OrderedDict()
        self._finished: OrderedDict[str, trace.SpanContext] = OrderedDict()
        # Set by the Router: shares each sampled send's context by provider message id.
        self.links: TraceLinks | None = None

    def trace_id_for(self, send_id: str) -> str | None:
        """The hex trace id of a send in progress (for metric exemplars), if sampled."""
        span = self._sends.get(send_id)
        if span is None or not span.get_span_context().trace_flags.sampled:
            return None
        return format(span.get_span_context().trace_id, "032x")

    def handle(self, event: Event) -> None:
        handler = self._by_type.get(type(event))
        if handler is not None:
            handler(event)

    def _send_started(self, event: SendStarted) -> None:
        parent = trace.get_current_span().get_span_context()
        if parent.is_valid:
            if not parent.trace_flags.sampled:
                return
        elif self._ratio is not None and self._draw() >= self._ratio:
            return
        span = self._tracer.start_span(
            "sms.send",
            kind=SpanKind.INTERNAL,
            attributes={
                "sms.scene": event.scene,
                "sms.recipients": event.recipients,
                # OpenTelemetry messaging semantic conventions
                "messaging.system": "sms",
                "messaging.operation.name": "send",
                "messaging.operation.type": "send",
                "messaging.message.id": event.send_id,
                "messaging.destination.name": event.scene,
                "messaging.batch.message_count": event.recipients,
            },
        )
        # Unsampled sends keep nothing: no entry, no attempt spans, no receipt link. At 1%
        # sampling that is 99% of sends retaining nothing for tracing.
        if span.is_recording():
            _put(self._sends, event.send_id, span, MAX_OPEN_SPANS)

    def _attempt_started(self, event: AttemptStarted) -> None:
        parent = self._sends.get(event.send_id)
        if parent is None:  # an unsampled send: its attempts are not traced either
            return
        span = self._tracer.start_span(
            "sms.attempt",
            context=trace.set_span_in_context(parent),
            kind=SpanKind.CLIENT,
            attributes={
                "sms.provider": event.provider,
                "sms.batch_size": event.batch_size,
                "messaging.system": "sms",
                "messaging.destination.name": event.provider,
                "messaging.message.id": event.attempt_id,
            },
        )
        _put(self._attempts, event.attempt_id, span, MAX_OPEN_SPANS)

    def _attempt_finished(self, event: AttemptFinished) -> None:
        if self.links is not None and event.message_ids:
            send = self._sends.get(event.send_id)
            if send is not None:  # sampled: worth a link wherever its receipts land
                traceparent = _traceparent(send.get_span_context())
                for message_id in event.message_ids:
                    self.links.put(event.provider, message_id, traceparent)
        span = self._attempts.pop(event.attempt_id, None)
        if span is None:
            return
        span.set_attribute("sms.outcome", event.verdict.value)
        span.set_attribute("sms.accepted", event.accepted)
        if event.error_class is not None:
            span.set_attribute("sms.error_class", event.error_class.value)
        if event.code is not None:
            span.set_attribute("sms.provider_code", event.code)
        if event.http_status is not None:
            span.set_attribute("http.response.status_code", event.http_status)
        if event.verdict.value != "accepted":
            span.set_status(Status(StatusCode.ERROR, event.verdict.value))
        span.end()

    def _send_event(self, event: FailoverTaken | PanicSend) -> None:
        span = self._sends.get(event.send_id)
        if span is None:
            return
        attributes: dict[str, Any]
        if isinstance(event, FailoverTaken):
            attributes = {
                "from": event.from_provider,
                "to": event.to_provider,
                "recipients": event.recipients,
            }
            span.add_event("sms.failover", attributes)
        else:
            attributes = {"provider": event.provider, "recipients": event.recipients}
            span.add_event("sms.panic_send", attributes)

    def _send_finished(self, event: SendFinished) -> None:
        span = self._sends.pop(event.send_id, None)
        if span is None:
            return
        counts = dict(event.by_status)
        for status, n in counts.items():
            span.set_attribute(f"sms.recipients.{status}", n)
        if set(counts) - {"accepted", "invalid", "throttled", "unroutable"}:
            span.set_status(Status(StatusCode.ERROR, "not every recipient was accepted"))
        span.end()
        _put(self._finished, event.send_id, span.get_span_context(), MAX_LINKS)

    def _receipt(self, event: ReceiptReceived) -> None:
        links = []
        if event.send_id is not None and event.send_id in self._finished:
            links.append(Link(self._finished[event.send_id]))
        elif event.send_trace is not None and (remote := _parse_traceparent(event.send_trace)):
            links.append(Link(remote))  # the send was made by another instance
        span = self._tracer.start_span(
            "sms.receipt",
            links=links,
            attributes={
                "sms.provider": event.provider,
                "sms.delivered": event.delivered,
                "sms.status_code": event.status_code,
            },
        )
        span.end()


def _traceparent(context: trace.SpanContext) -> str:
    """``trace_id-span_id-flags`` in hex (W3C traceparent's fields, without the version)."""
    return f"{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def _parse_traceparent(text: str) -> trace.SpanContext | None:
    try:
        trace_id, span_id, flags = text.split("-")
        return trace.SpanContext(
            int(trace_id, 16),
            int(span_id, 16),
            is_remote=True,
            trace_flags=trace.TraceFlags(int(flags, 16)),
        )
    except ValueError:
        return None


def _put(cache: OrderedDict[str, Any], key: str, value: Any, limit: int) -> None:
    cache[key] = value
    while len(cache) > limit:
        _, old = cache.popitem(last=False)
        if isinstance(old, Span):
            old.end()


def configure_sdk_from_env() -> None:
    """The sidecar's tracing set-up from the standard ``OTEL_*`` variables.

    The SDK reads the sampler (``OTEL_TRACES_SAMPLER`` / ``_ARG``) and the resource
    (``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``) itself; ``service.name`` defaults to
    ``sms-router`` only when neither sets it. ``OTEL_TRACES_EXPORTER``: ``otlp`` (OTLP/HTTP),
    ``console`` or ``none``; unset, spans are exported over OTLP only when an OTLP endpoint
    variable is set, so a sidecar without a collector does not log connection errors.
    """
    from opentelemetry.sdk.trace import TracerProvider

    trace.set_tracer_provider(TracerProvider(resource=_resource()))
    exporter = _exporter(os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower())
    if exporter is not None:
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider = trace.get_tracer_provider()
        assert isinstance(provider, TracerProvider)
        provider.add_span_processor(BatchSpanProcessor(exporter))


def _resource() -> Any:
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource

    detected = Resource.create()
    if "OTEL_SERVICE_NAME" in os.environ or "service.name=" in os.environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    ):
        return detected
    return detected.merge(Resource({SERVICE_NAME: "sms-router"}))


def _exporter(kind: str) -> Any:
    """The span exporter ``OTEL_TRACES_EXPORTER`` names, or None (nothing exported)."""
    if kind == "none" or (not kind and not _otlp_endpoint_set()):
        return None
    if kind == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if kind not in ("", "otlp"):
        raise ConfigError("OTEL_TRACES_EXPORTER", f"use otlp, console or none, not {kind!r}")
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def _otlp_endpoint_set() -> bool:
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )
