"""Receipt intake: settle each receipt on its recipient, remember what was sent, count once."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence

from providers.base import (
    AttemptResult,
    DeliveryReport,
    DeliveryStatus,
    RecipientResult,
    Verdict,
)
from providers.errors import InvalidMobileError
from router.clock import Clock
from router.errors import StateStoreError
from router.events import EventBus, ReceiptReceived
from router.links import TraceLinks
from router.receipts import (
    Delivery,
    DeliveryState,
    ReceiptBook,
    Settled,
    from_shared,
    masked_candidates,
    match,
    recipient_key,
    shared_value,
)
from router.runtime import ProviderRuntime
from router.sent import SentBatch, SentMemory, decode_sent, encode_sent
from router.state.base import StateStore

log = logging.getLogger("router.intake")
SENT_MEMORY = 100_000  # provider message ids remembered for receipt delay and trace links


class ReceiptIntake:
    def __init__(
        self,
        runtimes: Mapping[str, ProviderRuntime],
        book: ReceiptBook,
        events: EventBus,
        clock: Clock,
        *,
        default_region: str,
        status_ttl_s: float,
    ) -> None:
        self.runtimes = runtimes
        self.receipts = book
        self.events = events
        self.clock = clock
        self.default_region = default_region
        self.status_ttl_s = status_ttl_s
        self._sent = SentMemory(clock, max_ids=SENT_MEMORY)
        self.links: TraceLinks | None = None  # set by the Router while tracing is on
        # Set by the Router when the store is shared: each sent batch's numbers, for the
        # instance that pulls its masked receipts or is asked its delivery (it may not have
        # sent it).
        self.shared_sent: TraceLinks | None = None
        self._with_receipts = {name for name, rt in runtimes.items() if rt.provider.receipts}

    @property
    def has_receipts(self) -> bool:
        """Whether any provider gives delivery receipts (else nothing sent is worth sharing)."""
        return bool(self._with_receipts)

    def ingest(
        self,
        reports: Sequence[DeliveryReport],
        *,
        count: bool = True,
        shared: Mapping[tuple[str, str], SentBatch] | None = None,
    ) -> list[Settled]:
        """Settle receipts (pushed or pulled) per recipient; feeds reconciliation and delivery
        rates. Returns the new ones: a recipient's second receipt (pushed twice, or pushed and
        pulled) settles nothing. ``count=False`` leaves counting to the caller, which counts
        only what the shared store says is new everywhere (:meth:`count_receipt`).
        ``shared``: batches another instance sent, read from the store (:meth:`record`)."""
        region = self.default_region
        fresh: list[Settled] = []
        for report in reports:
            batch = (report.provider, report.provider_message_id)
            sent = self._sent.get(*batch)
            if sent is None and shared:
                sent = shared.get(batch)
            settled = self.receipts.settle(report, match(report, sent, region))
            if settled is None:
                continue
            fresh.append(settled)
            if count:
                self.count_receipt(settled)
        return fresh

    def count_receipt(self, settled: Settled, send_trace: str | None = None) -> None:
        """Count one settled receipt, once: delivery rates, metrics, the receipt span
        (``send_trace``: the send's trace context when another instance sent it)."""
        report = settled.report
        delivered = report.status is DeliveryStatus.DELIVERED
        rt = self.runtimes.get(report.provider)
        if rt is not None:
            rt.stats.receipt(delivered)
        sent = self._sent.get(report.provider, report.provider_message_id)
        delay = None
        if sent is not None and report.at is not None:
            delay = max(0.0, report.at.timestamp() - sent.at)
        self.events.emit(
            ReceiptReceived(
                report.provider,
                delivered,
                report.status_code,
                delay if settled.matched else None,
                sent.send_for(settled.recipient) if sent is not None else None,
                matched=settled.matched,
                send_trace=send_trace,
            )
        )

    def remember_sent(
        self, send_id: str | Mapping[str, str], result: AttemptResult, request_id: str
    ) -> None:
        """When, in which send and to which numbers each provider message id went out:
        receipt delay, trace links, and matching masked pulled receipts to their recipient.
        ``send_id``: the send, or for a request that carried several (coalescing) the send
        of each number (E.164), so one message id remembers all of its numbers at once.
        Numbers of an unknown outcome are remembered under ``request_id`` (the id the v1
        platform's receipts name): the receipts that prove such a request taken are matched
        to their recipients like any other. Rejected numbers were not sent: not remembered."""
        now = self.clock.now().timestamp()
        if len(result.recipients) == 1 and isinstance(send_id, str):  # most sends: one number
            [r] = result.recipients
            message_id = _sent_under(r, request_id)
            if message_id is not None:
                self._remember(
                    result.provider, message_id, SentBatch(now, send_id, (r.mobile.e164,))
                )
            return
        by_id: dict[str, list[str]] = defaultdict(list)
        for r in result.recipients:
            message_id = _sent_under(r, request_id)
            if message_id is not None:
                by_id[message_id].append(r.mobile.e164)
        for message_id, mobiles in by_id.items():
            if isinstance(send_id, str):
                batch = SentBatch(now, send_id, tuple(mobiles))
            else:
                sends = tuple(send_id[m] for m in mobiles)
                several = len(set(sends)) > 1
                batch = SentBatch(now, sends[0], tuple(mobiles), sends if several else ())
            self._remember(result.provider, message_id, batch)

    def _remember(self, provider: str, message_id: str, batch: SentBatch) -> None:
        self._sent.remember(provider, message_id, batch)
        if self.shared_sent is not None and provider in self._with_receipts:
            self.shared_sent.put(provider, message_id, encode_sent(batch, with_sends=False))

    async def _sent_anywhere(self, provider: str, message_id: str) -> SentBatch | None:
        """The batch behind ``message_id``: remembered here, else shared by the instance that
        sent it (with a shared store)."""
        sent = self._sent.get(provider, message_id)
        return sent if sent is not None else await self._sent_shared(provider, message_id)

    async def _sent_shared(self, provider: str, message_id: str) -> SentBatch | None:
        """The batch behind ``message_id`` as the instance that sent it shared it, if any."""
        if self.shared_sent is None:
            return None
        value = await self.shared_sent.get(provider, message_id)
        if value is None:
            return None
        shared = decode_sent(value)
        if shared is None:
            log.warning("unreadable shared batch for %s %s", provider, message_id)
        return shared

    async def _shared_batches(
        self, reports: Sequence[DeliveryReport]
    ) -> dict[tuple[str, str], SentBatch]:
        """The batches of masked receipts this instance did not send, from the store."""
        found: dict[tuple[str, str], SentBatch] = {}
        if self.shared_sent is None:
            return found
        for report in reports:
            batch = (report.provider, report.provider_message_id)
            if "*" not in report.mobile or batch in found or self._sent.get(*batch) is not None:
                continue
            sent = await self._sent_shared(*batch)
            if sent is not None:
                found[batch] = sent
        return found

    async def record(
        self, reports: list[DeliveryReport], store: StateStore
    ) -> list[DeliveryReport]:
        """Settle each receipt on its recipient, share the first final status through the
        store, and count it once. Returns those counted here: a duplicate, the other path's
        receipt or one another instance took first counts nothing."""
        counted: list[DeliveryReport] = []
        shared = await self._shared_batches(reports)
        for settled in self.ingest(reports, count=False, shared=shared):
            report = settled.report
            try:
                first = await store.put_status(
                    report.provider,
                    report.provider_message_id,
                    shared_value(report),
                    self.status_ttl_s,
                    recipient=settled.recipient,
                )
            except StateStoreError as exc:
                # Settled (and deduplicated) here already: counting it beats losing it.
                log.warning("delivery status not shared: %s", exc)
                first = True
            if first:
                send_trace = None
                known = self._sent.get(report.provider, report.provider_message_id)
                if known is None and self.links is not None:
                    send_trace = await self.links.get(report.provider, report.provider_message_id)
                self.count_receipt(settled, send_trace)
                counted.append(report)
        return counted

    async def delivery(
        self, provider: str, message_id: str, mobile: str, store: StateStore
    ) -> Delivery:
        """One recipient's delivery: the first final status any instance recorded, else what
        this instance knows, or ``not_supported`` for a provider without receipts."""
        rt = self.runtimes.get(provider)
        if rt is None or not rt.provider.receipts:
            return Delivery(
                DeliveryState.NOT_SUPPORTED, reason=f"{provider} gives no delivery receipts"
            )
        recipient = recipient_key(mobile, self.default_region)
        local = self.receipts.delivery(provider, message_id, recipient)
        try:
            shared = await store.get_status(provider, message_id, recipient=recipient)
        except StateStoreError:
            shared = None
        found = from_shared(shared) if shared is not None else None
        if found is not None:
            return found
        if local.status is not DeliveryState.PENDING:
            return local
        return await self._no_receipt(provider, message_id, recipient)

    async def _no_receipt(self, provider: str, message_id: str, recipient: str) -> Delivery:
        """No receipt settled ``recipient``: pending if the id went to it (sent here, or by
        another instance sharing the store), else unknown; ambiguous when a masked receipt of
        the id fits it but could not be matched."""
        for report, why in self.receipts.unmatched(provider, message_id):
            if "*" in report.mobile and recipient.startswith("+"):
                try:
                    fits = masked_candidates(report.mobile.strip(), (recipient,))
                except InvalidMobileError:
                    fits = ()
                if fits:
                    return Delivery(
                        DeliveryState.AMBIGUOUS,
                        reason=f"a masked receipt ({report.mobile}: {report.status.value}) "
                        f"fits this number but was not matched to it: {why}",
                    )
        sent = await self._sent_anywhere(provider, message_id)
        if sent is None:
            where = "any instance sharing the store" if self.shared_sent else "this instance"
            return Delivery(
                DeliveryState.UNKNOWN,
                reason=f"no receipt recorded, and no record of sending this message id on {where} "
                "(it is older than the record of sent ids keeps, was sent by an instance not "
                "sharing this store, or the id is wrong)",
            )
        if recipient not in sent.mobiles:
            return Delivery(
                DeliveryState.UNKNOWN,
                reason=f"message id {message_id} did not go to this number (its batch has "
                f"{len(sent.mobiles)} other number(s))",
            )
        return Delivery(DeliveryState.PENDING)


def _sent_under(r: RecipientResult, request_id: str) -> str | None:
    """The message id ``r``'s number went out under (or may have), None if it was not sent."""
    if r.verdict is Verdict.ACCEPTED:
        return r.provider_message_id
    if r.verdict is Verdict.UNKNOWN:
        return r.provider_message_id or request_id
    return None
