"""Delivery receipts the router has seen (pushed or pulled), in a bounded book.

Used to reconcile an *unknown* attempt: any receipt for the attempt's correlation id (the
v1 platform's ``taskId``) proves the provider took the batch, so its recipients are accepted
rather than left unknown or re-sent. Bounded: the oldest ids are dropped first.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from providers.base import DeliveryReport


class ReceiptBook:
    def __init__(self, max_ids: int = 100_000) -> None:
        self._max_ids = max_ids
        self._by_id: OrderedDict[tuple[str, str], list[DeliveryReport]] = OrderedDict()

    def add(self, reports: Iterable[DeliveryReport]) -> list[DeliveryReport]:
        """Record reports; returns the new ones (a duplicate push is ignored)."""
        added: list[DeliveryReport] = []
        for report in reports:
            key = (report.provider, report.provider_message_id)
            known = self._by_id.setdefault(key, [])
            if report in known:
                continue
            known.append(report)
            self._by_id.move_to_end(key)
            added.append(report)
        while len(self._by_id) > self._max_ids:
            self._by_id.popitem(last=False)
        return added

    def get(self, provider: str, provider_message_id: str) -> list[DeliveryReport]:
        return list(self._by_id.get((provider, provider_message_id), ()))
