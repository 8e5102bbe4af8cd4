"""Every Prometheus metric of the router, in one place (prefix ``smsrouter_``, base units).

Labels are bounded: provider (from config), scene (from config, plus "content" and "other"),
outcome/status/error_class (enums). Never a mobile number or an id. Every label combination
is created at start, so a rate reads 0 rather than "no data", and the hot path updates a
pre-bound child. Counters, histograms and the in-flight gauge are the lock-free families of
:mod:`router.telemetry.families` (plain numbers, exposed at scrape time).

SLOs the dashboard and alerts read:
* availability: accepted recipients / recipients the router is answerable for (accepted,
  rejected, unknown, and "refused" for the router's own refusals; ``invalid``, ``throttled``
  and ``unroutable`` are the caller's);
* latency: sends finished within ``SLO_SEND_LATENCY_S``; attempts within ``SLO_ATTEMPT_S``.
Histogram buckets include both thresholds exactly, so the SLI needs no interpolation.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Gauge,
    GCCollector,
    Info,
    PlatformCollector,
    ProcessCollector,
)

from policies.base import BreakerState
from providers.base import ErrorClass, Verdict
from router.events import (
    AttemptFinished,
    BalanceUpdated,
    BreakerChanged,
    CallbackRejected,
    CoalescedRequest,
    CredentialsRefused,
    DedupeChecked,
    Event,
    FailoverBudgetExhausted,
    FailoverTaken,
    InboundDelivered,
    PanicSend,
    ReceiptReceived,
    SendFinished,
    SendRefused,
    SendStarted,
    UnknownResolved,
)
from router.model import RecipientStatus
from router.telemetry.families import FastCounter, FastGauge, FastHistogram

SLO_SEND_LATENCY_S = 1.0
SLO_ATTEMPT_S = 0.5
SEND_BUCKETS = (0.05, 0.1, 0.25, 0.5, SLO_SEND_LATENCY_S, 2.5, 5.0, 10.0, 30.0)
ATTEMPT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, SLO_ATTEMPT_S, 1.0, 2.5, 5.0, 10.0)
RECEIPT_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
BATCH_BUCKETS = (1, 10, 50, 100, 200, 500, 1000, 3000)
BREAKER_VALUE = {
    BreakerState.CLOSED.value: 0,
    BreakerState.HALF_OPEN.value: 1,
    BreakerState.OPEN.value: 2,
}
ERROR_CLASSES = ("none", *(e.value for e in ErrorClass))
DEDUPE_RESULTS = ("new", "replay", "conflict")
# ok: every recipient accepted (the API's "ok": true); excluded: every recipient the router
# could send was accepted, others were the caller's own (invalid, throttled, unroutable).
SEND_OUTCOMES = ("ok", "excluded", "partial", "failed", "refused")
CALLBACK_REJECTIONS = ("token", "address", "unreadable", "unknown_kind", "not_configured")
REFUSAL_REASONS = ("store", "internal", "bad_message", "conflict", "pending")
# Refusals that are the router's fault count their recipients as "refused" in the
# availability SLI; the caller's own (bad message, key conflict) do not burn the budget.
ROUTER_REFUSALS = frozenset({"store", "internal"})
# Recipient statuses that are the caller's doing: outside the availability SLI (good or bad).
CALLERS_OWN = frozenset({"invalid", "throttled", "unroutable"})
RECIPIENT_STATUSES = (*(s.value for s in RecipientStatus), "refused")


def _version() -> str:
    try:
        return version("sms-router")
    except PackageNotFoundError:  # run from a checkout without installing
        return "unknown"


class Metrics:
    """The metric families on one registry (a fresh one per test, the global in production)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry
        self._send_families()
        self._provider_families()
        self._histograms()
        self._gauges_and_process()

    def _counter(self, name: str, doc: str, labels: Sequence[str]) -> FastCounter:
        return FastCounter(f"smsrouter_{name}", doc, labels, self._registry)

    def _histogram(
        self, name: str, doc: str, labels: Sequence[str], buckets: Sequence[float]
    ) -> FastHistogram:
        return FastHistogram(f"smsrouter_{name}", doc, labels, self._registry, buckets)

    def _send_families(self) -> None:
        counter = self._counter
        self.sends = counter(
            "send_requests_total", "Sends by overall outcome.", ["scene", "outcome"]
        )
        self.recipients = counter(
            "send_recipients_total",
            "Recipients by final status (refused: the router refused the send for its own "
            "fault, e.g. the state store was unreachable).",
            ["scene", "status"],
        )
        self.refusals = counter(
            "send_refusals_total",
            "Sends refused before anything was sent, by reason.",
            ["scene", "reason"],
        )
        self.dedupe = counter(
            "dedupe_total", "Idempotency look-ups by result.", ["scene", "result"]
        )

    def _provider_families(self) -> None:
        counter = self._counter
        self.attempts = counter(
            "provider_attempts_total",
            "Provider requests by outcome.",
            ["provider", "outcome", "error_class"],
        )
        self.attempt_recipients = counter(
            "provider_attempt_recipients_total",
            "Recipients in provider requests by outcome.",
            ["provider", "outcome"],
        )
        self.failovers = counter(
            "failovers_total",
            "Recipients moved to another provider.",
            ["from_provider", "to_provider"],
        )
        self.budget_exhausted = counter(
            "failover_budget_exhausted_total",
            "Recipients finished instead of failing over: the failover budget was spent.",
            ["provider"],
        )
        self.callback_rejections = counter(
            "callback_rejections_total",
            "Provider pushes refused, by reason.",
            ["provider", "reason"],
        )
        self.panics = counter(
            "panic_sends_total", "Batches sent with every breaker open.", ["provider"]
        )
        self.inbound = counter(
            "inbound_messages_total",
            "Inbound replies (MO) handed to inbound.destination: delivered, or failed (then "
            "not acknowledged to the provider).",
            ["provider", "outcome"],
        )
        self.credentials_refusals = counter(
            "credentials_refusals_total",
            "Times a provider refused our credentials (each parks it for "
            "resilience.credentials_park_s): a configuration error, not an outage.",
            ["provider"],
        )
        self.unknown_resolutions = counter(
            "unknown_resolutions_total",
            "Recipients of unknown attempts after a way to know was tried (replay under the "
            "same request id, or pulled receipts): taken, sent, or still unknown.",
            ["provider", "method", "outcome"],
        )
        self.coalesced_requests = counter(
            "coalesced_requests_total",
            "Provider requests that carried several messages with the same text.",
            ["provider"],
        )
        self.coalesced_messages = counter(
            "coalesced_messages_total",
            "Messages sent inside coalesced provider requests.",
            ["provider"],
        )
        self.transitions = counter(
            "breaker_transitions_total", "Breaker state changes.", ["provider", "state"]
        )
        self.parts = counter(
            "message_parts_total", "SMS parts accepted by providers.", ["provider"]
        )
        self.cost = counter(
            "cost_total", "Billed cost of accepted parts (config currency).", ["provider"]
        )
        self.receipts = counter(
            "receipts_total",
            "Delivery receipts, one per recipient (unmatched: a masked receipt fitting no single "
            "recipient).",
            ["provider", "status"],
        )

    def _histograms(self) -> None:
        histogram = self._histogram
        self.send_latency = histogram(
            "send_duration_seconds", "End-to-end send latency.", ["scene"], SEND_BUCKETS
        )
        self.attempt_latency = histogram(
            "provider_attempt_duration_seconds",
            "Provider request latency.",
            ["provider"],
            ATTEMPT_BUCKETS,
        )
        self.batch_size = histogram(
            "batch_size_recipients", "Recipients per provider request.", ["provider"], BATCH_BUCKETS
        )
        self.receipt_delay = histogram(
            "receipt_delay_seconds",
            "From acceptance to delivery receipt.",
            ["provider"],
            RECEIPT_BUCKETS,
        )

    def _gauges_and_process(self) -> None:
        registry = self._registry
        self.breaker = Gauge(
            "smsrouter_breaker_state",
            "Breaker state: 0 closed, 1 half-open, 2 open.",
            ["provider"],
            registry=registry,
        )
        self.balance = Gauge(
            "smsrouter_provider_balance",
            "Balance the provider reports.",
            ["provider"],
            registry=registry,
        )
        self.inflight = FastGauge("smsrouter_inflight_sends", "Sends in progress.", registry)
        # Which build is running (a dashboard annotates deploys with it), and the process's
        # own CPU, memory and GC figures: the router keeps its own registry, so the default
        # collectors are added here.
        Info("smsrouter_build", "The running build.", registry=registry).info(
            {"version": _version(), "python": platform.python_version()}
        )
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)


class MetricsSink:
    """Turns engine events into metric updates; all label children are bound up front."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        providers: Sequence[str],
        scenes: Sequence[str],
        trace_id_for: Callable[[str], str | None] | None = None,
    ) -> None:
        """``trace_id_for(send_id)`` (from :class:`TracingSink`) adds exemplars that link
        latency buckets to traces; OpenMetrics exposition shows them."""
        self._trace_id_for = trace_id_for
        m = self.metrics = Metrics(registry)
        self._scenes = {*scenes, "content"}
        for scene in (*self._scenes, "other"):
            for outcome in SEND_OUTCOMES:
                m.sends.labels(scene, outcome)
            for status in RECIPIENT_STATUSES:
                m.recipients.labels(scene, status)
            for reason in REFUSAL_REASONS:
                m.refusals.labels(scene, reason)
            for result in DEDUPE_RESULTS:
                m.dedupe.labels(scene, result)
            m.send_latency.labels(scene)
        self._attempts = {
            (p, v.value, e): m.attempts.labels(p, v.value, e)
            for p in providers
            for v in Verdict
            for e in ERROR_CLASSES
        }
        for p in providers:
            for v in Verdict:
                m.attempt_recipients.labels(p, v.value)
            for state in BREAKER_VALUE:
                m.transitions.labels(p, state)
            for receipt_status in ("delivered", "failed", "unmatched"):
                m.receipts.labels(p, receipt_status)
            for other in providers:
                if other != p:
                    m.failovers.labels(p, other)
            m.panics.labels(p)
            m.coalesced_requests.labels(p)
            m.coalesced_messages.labels(p)
            m.credentials_refusals.labels(p)
            for outcome in ("delivered", "failed"):
                m.inbound.labels(p, outcome)
            for method in ("replay", "receipts", "query"):
                for resolution in ("taken", "sent", "unknown"):
                    m.unknown_resolutions.labels(p, method, resolution)
            m.budget_exhausted.labels(p)
            for reason in CALLBACK_REJECTIONS:
                m.callback_rejections.labels(p, reason)
            m.parts.labels(p)
            m.cost.labels(p)
            m.breaker.labels(p).set(0)
            m.attempt_latency.labels(p)
            m.batch_size.labels(p)
            m.receipt_delay.labels(p)

        # Hot-path children, bound once (a label look-up per update would cost more).
        self._per_provider = {p: _ProviderChildren(m, p) for p in providers}
        self._per_scene = {s: _SceneChildren(m, s) for s in (*self._scenes, "other")}
        self._by_type = self._handlers()
        self.handles = frozenset(self._by_type)  # the bus hands this sink nothing else

    def _scene(self, scene: str) -> str:
        return scene if scene in self._scenes else "other"

    def _provider(self, provider: str) -> _ProviderChildren:
        children = self._per_provider.get(provider)
        if children is None:
            children = self._per_provider[provider] = _ProviderChildren(self.metrics, provider)
        return children

    def _handlers(self) -> dict[type, Callable[[Any], None]]:
        """Each event type's update (one look-up per event, not a chain of type tests)."""
        m = self.metrics
        return {
            AttemptFinished: self._attempt_finished,
            SendStarted: lambda e: m.inflight.inc(),
            SendFinished: self._send_finished,
            SendRefused: self._send_refused,
            DedupeChecked: lambda e: self._per_scene[self._scene(e.scene)].dedupe[e.result].inc(),
            FailoverTaken: lambda e: m.failovers.labels(e.from_provider, e.to_provider).inc(
                e.recipients
            ),
            PanicSend: lambda e: m.panics.labels(e.provider).inc(),
            InboundDelivered: lambda e: m.inbound.labels(e.provider, e.outcome).inc(e.messages),
            CredentialsRefused: lambda e: m.credentials_refusals.labels(e.provider).inc(),
            UnknownResolved: lambda e: m.unknown_resolutions.labels(
                e.provider, e.method, e.outcome
            ).inc(e.recipients),
            CoalescedRequest: self._coalesced,
            FailoverBudgetExhausted: lambda e: m.budget_exhausted.labels(e.from_provider).inc(
                e.recipients
            ),
            CallbackRejected: lambda e: m.callback_rejections.labels(e.provider, e.reason).inc(),
            BreakerChanged: self._breaker_changed,
            ReceiptReceived: self._receipt,
            BalanceUpdated: lambda e: m.balance.labels(e.provider).set(e.balance),
        }

    def handle(self, event: Event) -> None:
        handler = self._by_type.get(type(event))
        if handler is not None:
            handler(event)

    def _coalesced(self, event: CoalescedRequest) -> None:
        self.metrics.coalesced_requests.labels(event.provider).inc()
        self.metrics.coalesced_messages.labels(event.provider).inc(event.messages)

    def _breaker_changed(self, event: BreakerChanged) -> None:
        self.metrics.transitions.labels(event.provider, event.new_state).inc()
        self.metrics.breaker.labels(event.provider).set(BREAKER_VALUE[event.new_state])

    def _receipt(self, event: ReceiptReceived) -> None:
        status = "unmatched" if not event.matched else "delivered" if event.delivered else "failed"
        self.metrics.receipts.labels(event.provider, status).inc()
        if event.delay_s is not None:
            self.metrics.receipt_delay.labels(event.provider).observe(event.delay_s)

    def _attempt_finished(self, event: AttemptFinished) -> None:
        error = event.error_class.value if event.error_class else "none"
        key = (event.provider, event.verdict.value, error)
        child = self._attempts.get(key)
        if child is None:
            child = self._attempts[key] = self.metrics.attempts.labels(*key)
        child.inc()
        c = self._provider(event.provider)
        c.latency.observe(event.duration_s, self._exemplar(event.send_id))
        c.batch.observe(event.batch_size)
        if event.accepted:
            c.recipients[Verdict.ACCEPTED].inc(event.accepted)
            c.parts.inc(event.parts * event.accepted)
            c.cost.inc(event.cost)
        if event.rejected:
            c.recipients[Verdict.REJECTED].inc(event.rejected)
        if event.unknown:
            c.recipients[Verdict.UNKNOWN].inc(event.unknown)

    def _send_finished(self, event: SendFinished) -> None:
        c = self._per_scene[self._scene(event.scene)]
        self.metrics.inflight.dec()
        answerable = accepted = excluded = 0
        for status, n in event.by_status:
            c.recipients[status].inc(n)
            if status == "accepted":
                accepted = n
            if status in CALLERS_OWN:
                excluded += n
            else:
                answerable += n
        if accepted < answerable:
            outcome = "partial" if accepted else "failed"
        else:  # every recipient the router could send was accepted: "ok" only if that is all
            outcome = "excluded" if excluded else "ok"
        c.sends[outcome].inc()
        c.latency.observe(event.duration_s, self._exemplar(event.send_id))

    def _send_refused(self, event: SendRefused) -> None:
        c = self._per_scene[self._scene(event.scene)]
        c.sends["refused"].inc()
        c.refusals[event.reason].inc()
        if event.reason in ROUTER_REFUSALS and event.recipients:
            c.recipients["refused"].inc(event.recipients)

    def _exemplar(self, send_id: str) -> dict[str, str] | None:
        if self._trace_id_for is None:
            return None
        trace_id = self._trace_id_for(send_id)
        return {"trace_id": trace_id} if trace_id else None


class _ProviderChildren:
    __slots__ = ("batch", "cost", "latency", "parts", "recipients")

    def __init__(self, m: Metrics, provider: str) -> None:
        self.latency = m.attempt_latency.labels(provider)
        self.batch = m.batch_size.labels(provider)
        self.parts = m.parts.labels(provider)
        self.cost = m.cost.labels(provider)
        self.recipients = {v: m.attempt_recipients.labels(provider, v.value) for v in Verdict}


class _SceneChildren:
    __slots__ = ("dedupe", "latency", "recipients", "refusals", "sends")

    def __init__(self, m: Metrics, scene: str) -> None:
        self.dedupe = {r: m.dedupe.labels(scene, r) for r in DEDUPE_RESULTS}
        self.latency = m.send_latency.labels(scene)
        self.sends = {o: m.sends.labels(scene, o) for o in SEND_OUTCOMES}
        self.recipients = {s: m.recipients.labels(scene, s) for s in RECIPIENT_STATUSES}
        self.refusals = {r: m.refusals.labels(scene, r) for r in REFUSAL_REASONS}
