"""Per-recipient bookkeeping for one send: every valid mobile ends in exactly one final status."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from providers.base import FaultKind, Mobile, RecipientResult, Verdict
from providers.frozen import fast_init
from router.errors import InvalidMobileError
from router.mobile import normalise
from router.model import Attempt, RecipientOutcome, RecipientStatus


@dataclass(slots=True)
class Tracker:
    """The routing state of one unique recipient within one send."""

    mobile: Mobile
    raw: str
    # Immutable and shared while empty: a 100,000-recipient broadcast keeps one tracker per
    # recipient, and an empty list plus an empty set each cost more than the tracker's fields.
    attempts: tuple[Attempt, ...] = ()
    status: RecipientStatus | None = None
    provider: str | None = None
    provider_message_id: str | None = None
    error: str | None = None
    in_flight: str | None = None  # provider name while its request may be on the wire
    skipped: frozenset[str] = frozenset()  # refused by a breaker: not an attempt
    panic: bool = False  # routed by the panic rule (every breaker open)
    awaiting: tuple[str, str] | None = None  # (provider, request id): unknown, reconciling

    @property
    def tried(self) -> set[str]:
        """Providers this recipient may not be routed to again."""
        return {a.provider for a in self.attempts} | self.skipped

    def skip(self, provider: str) -> None:
        """``provider``'s breaker refused this recipient (not an attempt: nothing was sent)."""
        self.skipped = self.skipped | {provider}

    @property
    def last_provider(self) -> str | None:
        return self.attempts[-1].provider if self.attempts else None

    def record(
        self,
        provider: str,
        request_id: str,
        result: RecipientResult,
        *,
        resend_unknown: bool,
        reconcile: bool = False,
    ) -> None:
        """Apply one attempt's outcome; decides whether the recipient may fail over."""
        self.in_flight = None
        self.attempts += (Attempt(provider, result.verdict.value, result.fault, request_id),)
        self.provider = provider
        if result.verdict is Verdict.ACCEPTED:
            self._finish(RecipientStatus.ACCEPTED, None)
            self.provider_message_id = result.provider_message_id
        elif result.verdict is Verdict.UNKNOWN:
            if reconcile:
                self.awaiting = (provider, request_id)
            elif not resend_unknown:
                self._finish(RecipientStatus.UNKNOWN, _why(result))
        elif result.fault is not None and result.fault.kind is FaultKind.MESSAGE:
            # The message itself is refused: another provider would refuse it too.
            self._settle(_why(result))

    def reconciled(
        self,
        found: bool,
        *,
        resend_unknown: bool,
        why: str | None = None,
        message_id: str | None = None,
    ) -> None:
        """Settle an unknown attempt: a receipt for its request id (or the provider's own
        record of it, with its ``message_id``) proves the provider took it."""
        assert self.awaiting is not None
        provider, request_id = self.awaiting
        self.awaiting = None
        if found:
            self.provider_message_id = message_id or request_id
            self._finish(RecipientStatus.ACCEPTED, None)
        elif not resend_unknown:
            self._finish(
                RecipientStatus.UNKNOWN,
                why or f"{provider} did not answer and sent no receipt in time",
            )

    def replayed(
        self,
        provider: str,
        request_id: str,
        result: RecipientResult | None,
        *,
        resend_unknown: bool,
    ) -> None:
        """Settle an unknown attempt by its resend under the same request id. ``None``: the
        resend was refused as a duplicate, so the first request reached the provider
        (accepted; its message id comes with the receipt). An accepted resend went itself.
        Anything else proves nothing about the first: still unknown."""
        assert self.awaiting is not None
        if result is None:
            self.awaiting = None
            self.attempts += (Attempt(provider, Verdict.ACCEPTED.value, None, request_id),)
            self.provider = provider
            self._finish(RecipientStatus.ACCEPTED, None)
        elif result.verdict is Verdict.ACCEPTED:
            self.awaiting = None
            self.record(provider, request_id, result, resend_unknown=resend_unknown)
        else:
            self.attempts += (Attempt(provider, result.verdict.value, result.fault, request_id),)
            why = f"{provider} did not answer, and a resend under the same id proved nothing"
            self.reconciled(False, resend_unknown=resend_unknown, why=why)

    def throttle(self, window_s: float) -> None:
        self._finish(
            RecipientStatus.THROTTLED,
            f"this mobile already got this scene within the last {window_s:g} s",
        )

    def unroutable(self, why: str) -> None:
        """No provider can carry this recipient at all (region, rendering, switches)."""
        self._finish(RecipientStatus.UNROUTABLE, why)

    def exhausted(self, why: str = "") -> None:
        """No provider is left to try (``why`` says what stopped the failover, if anything)."""
        if not self.attempts and not why and not self.skipped:
            self.unroutable("no enabled provider can carry it")
            return
        if not why and self.skipped and not self.attempts:
            why = f"circuit breaker refused it at {', '.join(sorted(self.skipped))}"
        if not why:
            last = self.attempts[-1]
            detail = last.fault.detail or last.fault.error_class.value if last.fault else "refused"
            why = f"every candidate failed; last {last.provider}: {detail}"
        self._settle(why)

    def deadline_passed(self) -> None:
        """The send's deadline (or an internal failure) cut this recipient off."""
        if self.in_flight is not None:
            # The request may have been written: never claim it was not sent.
            self.attempts += (Attempt(self.in_flight, Verdict.UNKNOWN.value, None),)
            self.provider = self.in_flight
            self.in_flight = None
            self._finish(RecipientStatus.UNKNOWN, "send deadline passed while in flight")
            return
        self.awaiting = None
        self._settle("send deadline passed before it was sent")

    def _settle(self, why: str) -> None:
        """Final status from every attempt, never only the last one: an attempt that may have
        been sent keeps the recipient ``unknown`` whatever later attempts said (truth rule:
        ``rejected`` only when every attempt provably sent nothing)."""
        maybe_sent = [a for a in self.attempts if a.verdict == Verdict.UNKNOWN.value]
        if maybe_sent:
            where = maybe_sent[-1].provider
            self.provider = where
            self._finish(RecipientStatus.UNKNOWN, f"may have been sent by {where}; then: {why}")
            return
        self._finish(RecipientStatus.REJECTED, why)

    def _finish(self, status: RecipientStatus, error: str | None) -> None:
        self.status, self.error = status, error

    def outcome(self) -> RecipientOutcome:
        assert self.status is not None, "every recipient is finished before results are built"
        return RecipientOutcome(
            mobile=self.raw,
            normalised=self.mobile.e164,
            status=self.status,
            provider=self.provider,
            provider_message_id=self.provider_message_id,
            attempts=self.attempts,
            error=self.error,
        )


def _why(result: RecipientResult) -> str:
    fault = result.fault
    if fault is None:
        return result.verdict.value
    code = f" {fault.code}" if fault.code else ""
    return f"{fault.error_class.value}{code}: {fault.detail}".rstrip(": ")


@fast_init
@dataclass(frozen=True, slots=True)
class Recipients:
    """The mobiles of a message after validation and per-send de-duplication."""

    trackers: tuple[Tracker, ...]  # one per unique valid mobile
    invalid: tuple[RecipientOutcome, ...]
    duplicates: tuple[tuple[str, Tracker], ...]  # (raw as given, the tracker it shares)
    # Which of the three each entry of the request was, in request order (b"" when all were
    # unique and valid): outcomes come back in the order the caller gave the numbers.
    order: bytes = b""

    def outcomes(self) -> tuple[RecipientOutcome, ...]:
        unique = (t.outcome() for t in self.trackers)
        if not self.order:
            return tuple(unique)
        duplicates = (self._duplicate(raw, tracker) for raw, tracker in self.duplicates)
        invalid = iter(self.invalid)
        sources = {UNIQUE: unique, DUPLICATE: duplicates, INVALID: invalid}
        return tuple(next(sources[kind]) for kind in self.order)

    @staticmethod
    def _duplicate(raw: str, tracker: Tracker) -> RecipientOutcome:
        first = tracker.outcome()
        return RecipientOutcome(
            raw,
            first.normalised,
            first.status,
            first.provider,
            first.provider_message_id,
            (),
            "duplicate of an earlier entry in this message; sent once",
        )


UNIQUE, DUPLICATE, INVALID = 0, 1, 2


def prepare_recipients(raw_mobiles: Sequence[str], region: str, *, strict: bool) -> Recipients:
    """Validate and de-duplicate; an invalid mobile is reported (or raised when ``strict``)."""
    trackers: dict[str, Tracker] = {}
    invalid: list[RecipientOutcome] = []
    duplicates: list[tuple[str, Tracker]] = []
    order = bytearray()
    for raw in raw_mobiles:
        try:
            mobile = normalise(raw, region)
        except InvalidMobileError as exc:
            if strict:
                raise
            invalid.append(RecipientOutcome(raw, None, RecipientStatus.INVALID, error=exc.reason))
            order.append(INVALID)
            continue
        if mobile.e164 in trackers:
            duplicates.append((raw, trackers[mobile.e164]))
            order.append(DUPLICATE)
        else:
            trackers[mobile.e164] = Tracker(mobile, raw)
            order.append(UNIQUE)
    kept = bytes(order) if invalid or duplicates else b""  # all unique: the trackers' order
    return Recipients(tuple(trackers.values()), tuple(invalid), tuple(duplicates), kept)


def chunked(items: Sequence[Tracker], size: int) -> Iterator[list[Tracker]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def unfinished(trackers: Iterable[Tracker]) -> list[Tracker]:
    """Recipients still to route (not final, not waiting for reconciliation)."""
    return [t for t in trackers if t.status is None and t.awaiting is None]
