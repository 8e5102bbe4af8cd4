"""Small frozen events the engine emits; metrics, traces and logs are plug-ins receiving them.

The engine imports neither prometheus_client nor opentelemetry. A sink must be cheap and must not
raise: :class:`EventBus` swallows (and logs) a failing sink so telemetry never breaks a send.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from providers.base import ErrorClass, Verdict
from providers.frozen import fast_init

log = logging.getLogger("router.events")


@fast_init
@dataclass(frozen=True, slots=True)
class SendStarted:
    send_id: str
    scene: str
    recipients: int


@fast_init
@dataclass(frozen=True, slots=True)
class AttemptStarted:
    send_id: str
    attempt_id: str  # the batch's request id (requestId / taskId / reqId at the provider)
    provider: str
    batch_size: int


@fast_init
@dataclass(frozen=True, slots=True)
class AttemptFinished:
    send_id: str
    attempt_id: str
    provider: str
    scene: str
    batch_size: int
    verdict: Verdict
    error_class: ErrorClass | None
    duration_s: float
    accepted: int
    rejected: int
    unknown: int
    parts: int = 1  # SMS parts per recipient
    cost: float = 0.0  # billed for the accepted recipients
    code: str | None = None  # the provider's own error code, when it gave one
    http_status: int | None = None
    message_ids: tuple[str, ...] = ()  # the provider's ids of the accepted recipients


@fast_init
@dataclass(frozen=True, slots=True)
class FailoverTaken:
    send_id: str
    from_provider: str
    to_provider: str
    scene: str
    recipients: int


@fast_init
@dataclass(frozen=True, slots=True)
class CredentialsRefused:
    """A provider refused our credentials: a configuration error. It is left out of routing
    for ``park_s`` seconds; the breaker is not involved."""

    provider: str
    code: str | None
    detail: str  # the provider's own words, secrets cut (Fault.detail)
    park_s: float


@fast_init
@dataclass(frozen=True, slots=True)
class PanicSend:
    """Every candidate's breaker was open; this batch went to the least bad one anyway."""

    send_id: str
    provider: str
    scene: str
    recipients: int


@fast_init
@dataclass(frozen=True, slots=True)
class CoalescedRequest:
    """One provider request carried several messages with the same text (``coalesce_ms``)."""

    provider: str
    request_id: str
    messages: int
    recipients: int


@fast_init
@dataclass(frozen=True, slots=True)
class UnknownResolved:
    """Recipients of an unknown attempt, after a way to know was tried: ``method`` is
    ``replay`` (resent under the same request id), ``receipts`` (pulled reports) or
    ``query`` (the provider's send records, Aliyun QuerySendDetails);
    ``outcome`` is ``taken`` (the first attempt reached the provider), ``sent`` (it had not;
    the resend went), or ``unknown`` (still not known; ``reason`` says why)."""

    provider: str
    method: str
    outcome: str
    recipients: int
    reason: str = ""


@fast_init
@dataclass(frozen=True, slots=True)
class SendFinished:
    send_id: str
    scene: str
    duration_s: float
    recipients: int
    by_status: tuple[tuple[str, int], ...]  # (RecipientStatus value, count)
    replay: bool
    panic: bool


@fast_init
@dataclass(frozen=True, slots=True)
class SendRefused:
    """A send refused before anything reached a provider (no SendStarted/SendFinished pair).

    ``reason``: ``store`` (state store unreachable), ``internal`` (a bug of ours), both the
    router's fault; ``bad_message``, ``conflict``, ``pending`` (the caller's)."""

    scene: str
    reason: str
    recipients: int


@fast_init
@dataclass(frozen=True, slots=True)
class FailoverBudgetExhausted:
    """Recipients that would have failed over were finished instead: the budget was spent."""

    send_id: str
    from_provider: str
    scene: str
    recipients: int


@fast_init
@dataclass(frozen=True, slots=True)
class InboundDelivered:
    """Inbound replies handed to their destination (``outcome``: ``delivered`` or ``failed``;
    a failed one was not acknowledged to the provider)."""

    provider: str
    messages: int
    outcome: str
    destination: str
    reason: str = ""


@fast_init
@dataclass(frozen=True, slots=True)
class CallbackRejected:
    """A provider push was refused. ``reason``: ``token``, ``address``, ``unreadable``,
    ``unknown_kind``, ``not_configured``."""

    provider: str
    reason: str


@fast_init
@dataclass(frozen=True, slots=True)
class BreakerChanged:
    provider: str
    old_state: str
    new_state: str


@fast_init
@dataclass(frozen=True, slots=True)
class DedupeChecked:
    """An idempotency key was looked up: ``result`` is new, replay or conflict."""

    scene: str
    result: str


@fast_init
@dataclass(frozen=True, slots=True)
class ReceiptReceived:
    provider: str
    delivered: bool
    status_code: str
    delay_s: float | None  # from the accepted attempt to the receipt, when known
    send_id: str | None  # the send it belongs to, when this instance made it
    # False: a masked receipt that fits no single recipient. Counted apart, so a later receipt
    # that does name the recipient is not a second count of one delivery.
    matched: bool = True
    # The send span's trace context when another instance made the send (router.links).
    send_trace: str | None = None


@fast_init
@dataclass(frozen=True, slots=True)
class BalanceUpdated:
    provider: str
    balance: float


Event = (
    SendStarted
    | AttemptStarted
    | AttemptFinished
    | FailoverTaken
    | PanicSend
    | CredentialsRefused
    | InboundDelivered
    | CoalescedRequest
    | UnknownResolved
    | SendFinished
    | SendRefused
    | FailoverBudgetExhausted
    | CallbackRejected
    | BreakerChanged
    | DedupeChecked
    | ReceiptReceived
    | BalanceUpdated
)


class EventSink(Protocol):
    """Receives the engine's events. A sink may also have ``handles``: the event types it
    acts on (a frozenset of classes); the bus then never hands it the others (on the send path
    a sink is called only for what it uses)."""

    def handle(self, event: Event) -> None: ...


class EventBus:
    """Fans events out to sinks; a failing sink is logged, never raised to the sender."""

    __slots__ = ("_routes", "_sinks")

    def __init__(self, sinks: Sequence[EventSink] = ()) -> None:
        self._sinks = tuple(sinks)
        self._routes: dict[type, tuple[EventSink, ...]] = {}  # event type -> its sinks

    def add(self, sink: EventSink) -> None:
        self._sinks = (*self._sinks, sink)
        self._routes = {}

    @property
    def sinks(self) -> tuple[EventSink, ...]:
        return self._sinks

    @property
    def active(self) -> bool:
        """Whether anyone listens: the per-send path builds no events for nobody."""
        return bool(self._sinks)

    def _route(self, kind: type) -> tuple[EventSink, ...]:
        sinks = tuple(
            s
            for s in self._sinks
            if (wanted := getattr(s, "handles", None)) is None
            or any(issubclass(kind, w) for w in wanted)
        )
        self._routes[kind] = sinks
        return sinks

    def emit(self, event: Event) -> None:
        sinks = self._routes.get(type(event))
        if sinks is None:
            sinks = self._route(type(event))
        for sink in sinks:
            try:
                sink.handle(event)
            except Exception:
                log.exception("event sink %r failed on %s", sink, type(event).__name__)
