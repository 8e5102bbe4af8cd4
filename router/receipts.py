"""Delivery receipts, settled per recipient: one final status per (provider, provider message
id, recipient E.164), whatever path (push, pull) or order the receipts come by.

A provider message id names a *batch* (the v1 platform's ``taskId`` covers up to 3000
numbers), so a receipt is matched to its recipient by number. Pushes give the full number;
the v1 ``/report`` pull masks it (``138****8000``), so it is matched against the batch's own
numbers, which :class:`SentMemory` keeps per accepted message id. A masked receipt that fits no
number of the batch, or several (two numbers sharing prefix and suffix), is *unmatched*: kept
once under its own key, shown as such, and never applied to a recipient.

The book also serves reconciliation: any receipt for an attempt's correlation id proves the
provider took the batch. Everything here is bounded; the oldest ids are dropped first.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, field

from providers.base import DeliveryReport
from providers.errors import InvalidMobileError
from providers.frozen import fast_init
from providers.mobile import normalise
from router.bounded import BoundedCache, warn_when_full
from router.clock import Clock
from router.sent import RECEIPT_MEMORY_BYTES, RECEIPT_TTL_S, SentBatch

log = logging.getLogger("router.receipts")

UNMATCHED = "?"  # prefix of the key of a receipt that names no single recipient


class DeliveryState(enum.StrEnum):
    DELIVERED = "delivered"
    FAILED = "failed"
    # No receipt yet, and a record of sending the id to this number (this instance's, or with a
    # shared store another's; for an attempt whose outcome is unknown: possibly sent, which a
    # receipt would prove).
    PENDING = "pending"
    # No receipt recorded, and no record of sending the id to this number (sent by an instance
    # not sharing the store, too long ago to be remembered, or not to this number): not
    # "pending". The reason says which.
    UNKNOWN = "unknown"
    AMBIGUOUS = "ambiguous"  # a masked receipt fits this and another recipient
    NOT_SUPPORTED = "not_supported"  # the provider gives no receipts at all


@dataclass(frozen=True, slots=True)
class Delivery:
    """One recipient's delivery, as far as the router knows it."""

    status: DeliveryState
    code: str | None = None  # the provider's code of the settling receipt ("DELIVRD")
    reason: str | None = None  # why ambiguous or not supported; safe to show


@dataclass(frozen=True, slots=True)
class Settled:
    """A receipt that settled something new: its recipient's first final status, or (with a
    ``reason``) an unmatched receipt seen for the first time."""

    report: DeliveryReport
    recipient: str  # E.164; for an unmatched receipt, UNMATCHED + the provider's own form
    reason: str | None = None

    @property
    def matched(self) -> bool:
        return self.reason is None


@fast_init
@dataclass(frozen=True, slots=True)
class Match:
    recipient: str
    reason: str | None = None  # set when the receipt names no single recipient
    candidates: tuple[str, ...] = ()  # the recipients an ambiguous masked receipt fits


def recipient_key(mobile: str, default_region: str) -> str:
    """The E.164 form of a full number; the text itself when it is not a valid number."""
    try:
        return normalise(mobile, default_region).e164
    except InvalidMobileError:
        return mobile


def match(report: DeliveryReport, sent: SentBatch | None, default_region: str) -> Match:
    """Which recipient ``report`` belongs to."""
    raw = report.mobile.strip()
    own = f"{UNMATCHED}{raw} {report.status_code} {report.at.isoformat() if report.at else ''}"
    if not raw:
        if sent is not None and len(sent.mobiles) == 1:
            return Match(sent.mobiles[0])
        return Match(own, "the receipt names no mobile")
    if "*" not in raw:
        try:
            return Match(normalise(raw, default_region).e164)
        except InvalidMobileError:
            return Match(own, "the receipt's mobile is not a valid number")
    if sent is None:
        return Match(own, "masked number, and this instance does not remember the batch's numbers")
    fits = masked_candidates(raw, sent.mobiles)
    if len(fits) == 1:
        return Match(fits[0])
    if not fits:
        return Match(own, "masked number fits no recipient of the batch")
    return Match(own, f"masked number fits {len(fits)} recipients of the batch", fits)


def masked_candidates(masked: str, mobiles: tuple[str, ...]) -> tuple[str, ...]:
    """The numbers of ``mobiles`` (E.164) that ``masked`` (``138****8000``) can stand for."""
    head, tail = masked[: masked.index("*")], masked[masked.rindex("*") + 1 :]
    head_digits = head.lstrip("+")
    fits = []
    for e164 in mobiles:
        if not e164.endswith(tail):  # cheap filter first: a batch may hold 3000 numbers
            continue
        national = normalise(e164).national
        if len(national) < len(head) + len(tail):
            continue
        if national.startswith(head) or (head.startswith("+") and e164[1:].startswith(head_digits)):
            fits.append(e164)
    return tuple(fits)


@dataclass(slots=True)
class _Entry:
    final: dict[str, DeliveryReport] = field(default_factory=dict)  # recipient -> first receipt
    reasons: dict[str, str] = field(default_factory=dict)  # unmatched key -> why
    ambiguous: dict[str, str] = field(default_factory=dict)  # recipient -> why (until settled)


class ReceiptBook:
    """Receipts this instance has settled, per provider message id (bounded by ids, bytes and
    age, like :class:`SentMemory`)."""

    def __init__(
        self,
        clock: Clock,
        max_ids: int = 100_000,
        max_bytes: int = RECEIPT_MEMORY_BYTES,
        ttl_s: float = RECEIPT_TTL_S,
    ) -> None:
        self._by_id: BoundedCache[tuple[str, str], _Entry] = BoundedCache(
            clock,
            max_entries=max_ids,
            max_bytes=max_bytes,
            ttl_s=ttl_s,
            size_of=lambda e: 690 + 230 * (len(e.final) + len(e.ambiguous)),
            on_full=warn_when_full(
                clock,
                log,
                "the book of settled receipts",
                "a duplicate receipt of a forgotten id may be counted again where no shared "
                "store deduplicates it, and its recipients' delivery reads unknown here",
            ),
        )

    @property
    def bytes(self) -> int:
        """The bytes retained (measured estimate)."""
        return self._by_id.bytes

    def settle(self, report: DeliveryReport, found: Match) -> Settled | None:
        """Record ``report`` for its recipient; None when that recipient is already final
        (a duplicate, or the other path's receipt): the first final status stays."""
        batch = (report.provider, report.provider_message_id)
        entry = self._by_id.get(batch) or _Entry()
        # A masked receipt fitting n recipients may be any of n distinct receipts that read
        # the same (the pull hands each out once): n slots, so none is lost as a duplicate.
        slots = [found.recipient]
        slots += [f"{found.recipient}#{i}" for i in range(2, len(found.candidates) + 1)]
        key = next((k for k in slots if k not in entry.final), None)
        if key is None:
            return None
        entry.final[key] = report
        if found.reason is not None:
            entry.reasons[key] = found.reason
            for candidate in found.candidates:
                if candidate not in entry.final:
                    entry.ambiguous[candidate] = found.reason
        else:
            entry.ambiguous.pop(found.recipient, None)
        self._by_id.put(batch, entry)  # re-put: newest last, its size counted again
        return Settled(report, key, found.reason)

    def get(self, provider: str, provider_message_id: str) -> list[DeliveryReport]:
        """Every receipt seen for the id, matched or not (any one proves acceptance)."""
        entry = self._by_id.get((provider, provider_message_id))
        return list(entry.final.values()) if entry is not None else []

    def receipts_for(self, provider: str, message_id: str, recipient: str) -> list[DeliveryReport]:
        entry = self._by_id.get((provider, message_id))
        report = entry.final.get(recipient) if entry is not None else None
        return [report] if report is not None else []

    def unmatched(self, provider: str, message_id: str) -> list[tuple[DeliveryReport, str]]:
        entry = self._by_id.get((provider, message_id))
        if entry is None:
            return []
        return [(entry.final[k], why) for k, why in entry.reasons.items()]

    def delivery(self, provider: str, message_id: str, recipient: str) -> Delivery:
        """What this instance knows of one recipient's delivery."""
        entry = self._by_id.get((provider, message_id))
        if entry is not None:
            report = entry.final.get(recipient)
            if report is not None:
                return Delivery(DeliveryState(report.status.value), report.status_code)
            why = entry.ambiguous.get(recipient)
            if why is not None:
                return Delivery(DeliveryState.AMBIGUOUS, reason=why)
        return Delivery(DeliveryState.PENDING)


def shared_value(report: DeliveryReport) -> str:
    """What the state store keeps for a settled recipient: status and code."""
    return f"{report.status.value}|{report.status_code}"


def from_shared(value: str) -> Delivery | None:
    """The store's value back as a Delivery (None for a value this version cannot read)."""
    status, _, code = value.partition("|")
    if status not in (DeliveryState.DELIVERED, DeliveryState.FAILED):
        return None
    return Delivery(DeliveryState(status), code or None)
