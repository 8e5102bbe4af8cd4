"""Reconciliation of unknown attempts: pull receipts until each is proven taken or the window
ends. Any receipt for an attempt's correlation id proves the provider took the batch."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping

import anyio

from providers.base import DeliveryReport
from router.clock import Clock
from router.config import RouterSettings
from router.errors import RouterError
from router.receipts import ReceiptBook
from router.recipients import Tracker
from router.runtime import ProviderRuntime, RouteJob

log = logging.getLogger("router.reconcile")
RECONCILE_POLL_S = 0.2
Recorder = Callable[[list[DeliveryReport]], Awaitable[list[DeliveryReport]]]


class Reconciler:
    def __init__(
        self,
        settings: RouterSettings,
        runtimes: Mapping[str, ProviderRuntime],
        book: ReceiptBook,
        clock: Clock,
        record: Recorder,
    ) -> None:
        """``record`` takes pulled receipts the way pushed ones are taken (shared, counted)."""
        self.settings = settings
        self.runtimes = runtimes
        self.receipts = book
        self.clock = clock
        self.record = record

    async def reconcile(self, job: RouteJob, waiting: list[Tracker]) -> None:
        """Settle unknown attempts by pulling receipts until each has one or the window ends."""
        if not waiting:
            return
        keys = {t.awaiting for t in waiting if t.awaiting is not None}
        window = self.settings.resilience.reconcile_window_s
        end = min(self.clock.monotonic() + window, job.deadline)
        found: set[tuple[str, str]] = set()
        while True:
            for provider in {p for p, _ in keys - found}:
                try:
                    await self.record(await self.runtimes[provider].pull_reports())
                except RouterError as exc:
                    log.warning("receipt pull from %s failed: %s", provider, type(exc).__name__)
            found = {k for k in keys if self.receipts.get(*k)}
            remaining = end - self.clock.monotonic()
            if found == keys or remaining <= 0:
                break
            await anyio.sleep(min(RECONCILE_POLL_S, remaining))
        resend = self.settings.unknown_outcomes == "at_least_once"
        for tracker in waiting:
            tracker.reconciled(tracker.awaiting in found, resend_unknown=resend)
