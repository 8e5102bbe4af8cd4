"""Delivery receipts the router has seen (pushed or pulled), and waiting for one.

Used to reconcile an *unknown* attempt: any receipt for the attempt's correlation id (the
v1 platform's ``taskId``) proves the provider took the batch, so its recipients are accepted
rather than left unknown or re-sent. Bounded: the oldest receipts are dropped first.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

import anyio

from providers.base import DeliveryReport


class ReceiptBook:
    def __init__(self, max_ids: int = 100_000) -> None:
        self._max_ids = max_ids
        self._by_id: OrderedDict[tuple[str, str], list[DeliveryReport]] = OrderedDict()
        self._waiters: dict[tuple[str, str], tuple[anyio.Event, int]] = {}

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
            waiter = self._waiters.pop(key, None)
            if waiter is not None:
                waiter[0].set()
        while len(self._by_id) > self._max_ids:
            self._by_id.popitem(last=False)
        return added

    def get(self, provider: str, provider_message_id: str) -> list[DeliveryReport]:
        return list(self._by_id.get((provider, provider_message_id), ()))

    async def wait(self, provider: str, provider_message_id: str, timeout_s: float) -> bool:
        """Whether any receipt for the id arrives within ``timeout_s``."""
        key = (provider, provider_message_id)
        if key in self._by_id:
            return True
        event, count = self._waiters.get(key, (anyio.Event(), 0))
        self._waiters[key] = (event, count + 1)
        try:
            with anyio.move_on_after(timeout_s):
                await event.wait()
        finally:
            entry = self._waiters.get(key)
            if entry is not None and entry[0] is event:  # still registered: nobody set it
                if entry[1] <= 1:
                    del self._waiters[key]
                else:
                    self._waiters[key] = (event, entry[1] - 1)
        return key in self._by_id
