"""Receipt intake: settle each receipt on its recipient, remember what was sent, count once."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

from providers.base import AttemptResult, DeliveryReport, DeliveryStatus, Verdict
from router.clock import Clock
from router.events import EventBus, ReceiptReceived
from router.receipts import ReceiptBook, SentBatch, SentMemory, Settled, match
from router.runtime import ProviderRuntime

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
    ) -> None:
        self.runtimes = runtimes
        self.receipts = book
        self.events = events
        self.clock = clock
        self.default_region = default_region
        self._sent = SentMemory(clock, max_ids=SENT_MEMORY)

    def ingest(self, reports: Sequence[DeliveryReport], *, count: bool = True) -> list[Settled]:
        """Settle receipts (pushed or pulled) per recipient; feeds reconciliation and delivery
        rates. Returns the new ones: a recipient's second receipt (pushed twice, or pushed and
        pulled) settles nothing. ``count=False`` leaves counting to the caller, which counts
        only what the shared store says is new everywhere (:meth:`count_receipt`)."""
        region = self.default_region
        fresh: list[Settled] = []
        for report in reports:
            sent = self._sent.get(report.provider, report.provider_message_id)
            settled = self.receipts.settle(report, match(report, sent, region))
            if settled is None:
                continue
            fresh.append(settled)
            if count:
                self.count_receipt(settled)
        return fresh

    def count_receipt(self, settled: Settled) -> None:
        """Count one settled receipt, once: delivery rates, metrics, the receipt span."""
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
                sent.send_id if sent is not None else None,
                matched=settled.matched,
            )
        )

    def remember_sent(self, send_id: str, result: AttemptResult) -> None:
        """When, in which send and to which numbers each provider message id went out:
        receipt delay, trace links, and matching masked pulled receipts to their recipient."""
        now = self.clock.now().timestamp()
        by_id: dict[str, list[str]] = defaultdict(list)
        for r in result.recipients:
            if r.provider_message_id is not None and r.verdict is Verdict.ACCEPTED:
                by_id[r.provider_message_id].append(r.mobile.e164)
        for message_id, mobiles in by_id.items():
            batch = SentBatch(now, send_id, tuple(mobiles))
            self._sent.remember(result.provider, message_id, batch)
