"""Reconciliation of unknown attempts: turn "may have been sent" into a known outcome where the
provider offers a way, within the send's deadline.

* Pull (v1 platform ``/report``): pull receipts until each attempt is proven taken or the
  window ends. Any receipt for an attempt's correlation id proves the provider took the batch.
* Query (Aliyun ``QuerySendDetails``, ``SendQuery``): ask what the provider took for each
  number that day; a record echoing the attempt's request id proves it was taken (with the
  provider's message id). No record proves nothing: the attempt stays unknown.
* Replay (Ronglian, ``ReplaySafe``): the provider refuses a request id it has already taken
  (``reqId``, unique per account per China day), so the unknown request is resent under the
  same id after ``replay_delay_s``: refused as a duplicate -> the first reached it (accepted);
  accepted -> the first had not, this one went; anything else -> still unknown. Never after
  ``replay_until`` (China midnight, with a margin), where the id would be new again.

Each attempt settled or not is counted (``UnknownResolved``)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping

import anyio

from providers.base import AttemptResult, Batch, DeliveryReport, Verdict
from providers.http import send_batch
from router.clock import Clock
from router.config import RouterSettings
from router.errors import RouterError
from router.events import EventBus, UnknownResolved
from router.receipts import ReceiptBook
from router.recipients import Tracker
from router.runtime import ProviderRuntime, RouteJob

log = logging.getLogger("router.reconcile")
RECONCILE_POLL_S = 0.2
Recorder = Callable[[list[DeliveryReport]], Awaitable[list[DeliveryReport]]]


async def resend_same_id(
    rt: ProviderRuntime, batch: Batch, timeout_s: float
) -> tuple[AttemptResult, bool]:
    """Resend ``batch`` under its own request id at a ``ReplaySafe`` provider, within its
    concurrency and rate limit: the result, and whether it was refused as a reused id (then
    the first request was taken). No breaker permit: a resend is reconciliation, not routing."""
    assert rt.replay is not None
    async with rt.limiter:
        if rt.rate is not None:
            await rt.rate.acquire()
        result = await send_batch(rt.provider, rt.client, batch, timeout_s=timeout_s)
    return result, rt.replay.already_taken(result)


class Reconciler:
    def __init__(
        self,
        settings: RouterSettings,
        runtimes: Mapping[str, ProviderRuntime],
        book: ReceiptBook,
        clock: Clock,
        record: Recorder,
        events: EventBus | None = None,
    ) -> None:
        """``record`` takes pulled receipts the way pushed ones are taken (shared, counted)."""
        self.settings = settings
        self.runtimes = runtimes
        self.receipts = book
        self.clock = clock
        self.record = record
        self.events = events or EventBus()
        r = settings.resilience
        self._replays = {
            name for name, rt in runtimes.items() if rt.replay is not None and r.replay_unknown
        }
        self._pulls = {
            name
            for name, rt in runtimes.items()
            if rt.puller is not None and r.reconcile_window_s > 0
        }
        self._queries = {
            name
            for name, rt in runtimes.items()
            if rt.query is not None and r.reconcile_window_s > 0
        }

    def settles(self, provider: str) -> bool:
        """Whether an unknown attempt at ``provider`` waits here for a known outcome."""
        return provider in self._replays or provider in self._pulls or provider in self._queries

    async def reconcile(self, job: RouteJob, waiting: list[Tracker]) -> None:
        """Settle unknown attempts, by resending under the same id or by pulling receipts."""
        if not waiting:  # every send passes here: nothing to settle costs nothing
            return
        replaying = [
            t for t in waiting if t.awaiting is not None and t.awaiting[0] in self._replays
        ]
        if replaying:
            await self._replay(job, replaying)
        querying = [t for t in waiting if t.awaiting is not None and t.awaiting[0] in self._queries]
        if querying:
            await self._query(job, querying)
        pulling = [t for t in waiting if t.awaiting is not None]
        if pulling:
            await self._pull(job, pulling)

    async def _query(self, job: RouteJob, waiting: list[Tracker]) -> None:
        """Ask the provider what it took (Aliyun QuerySendDetails) until each unknown
        request's id shows up or the window ends. A request is taken or refused as a whole, so
        one number per request is asked (one query per request per round, not per number).
        Found: its numbers are accepted. Not found proves nothing (the records may lag)."""
        requests: dict[tuple[str, str], list[Tracker]] = {}
        for tracker in waiting:
            assert tracker.awaiting is not None
            requests.setdefault(tracker.awaiting, []).append(tracker)
        window = self.settings.resilience.reconcile_window_s
        end = min(self.clock.monotonic() + window, job.deadline)
        sent_at = job.started_at or self.clock.now()
        found: dict[tuple[str, str], str | None] = {}  # request -> the provider's message id
        while True:
            for key, trackers in requests.items():
                if key in found:
                    continue
                provider, request_id = key
                try:
                    records = await self.runtimes[provider].sent_records(
                        trackers[0].mobile, sent_at
                    )
                except RouterError as exc:
                    log.warning("send query at %s failed: %s", provider, type(exc).__name__)
                    continue
                for record in records:
                    if record.request_id == request_id:
                        found[key] = record.provider_message_id
                        break
            remaining = end - self.clock.monotonic()
            if len(found) == len(requests) or remaining <= 0:
                break
            await anyio.sleep(min(RECONCILE_POLL_S, remaining))
        for key, trackers in requests.items():
            provider = key[0]
            taken = key in found
            reason = "" if taken else "not in the provider's send records"
            outcome = "taken" if taken else "unknown"
            self.events.emit(UnknownResolved(provider, "query", outcome, len(trackers), reason))
            resend = self.settings.resends_unknown(provider)
            for tracker in trackers:
                tracker.reconciled(
                    taken,
                    resend_unknown=resend,
                    why=f"{provider} did not answer; its send records do not show it",
                    message_id=found.get(key),
                )

    async def _pull(self, job: RouteJob, waiting: list[Tracker]) -> None:
        """Pull receipts until each attempt has one or the window ends."""
        keys = {t.awaiting for t in waiting if t.awaiting is not None}
        window = self.settings.resilience.reconcile_window_s
        end = min(self.clock.monotonic() + window, job.deadline)
        found: set[tuple[str, str]] = set()
        # (provider, our request id) -> {mobile as written: the provider's message id}, from
        # receipts that echo the request id (Tencent SessionContext) under their own id
        echoed: dict[tuple[str, str], dict[str, str]] = {}
        while True:
            for provider in {p for p, _ in keys - found}:
                try:
                    reports = await self.runtimes[provider].pull_reports()
                    await self.record(reports)
                except RouterError as exc:
                    log.warning("receipt pull from %s failed: %s", provider, type(exc).__name__)
                    continue
                for r in reports:
                    if r.request_id is not None:
                        key = (r.provider, r.request_id)
                        echoed.setdefault(key, {})[r.mobile] = r.provider_message_id
            found = {k for k in keys if self.receipts.get(*k) or k in echoed}
            remaining = end - self.clock.monotonic()
            if found == keys or remaining <= 0:
                break
            await anyio.sleep(min(RECONCILE_POLL_S, remaining))
        for key in keys:
            n = sum(t.awaiting == key for t in waiting)
            outcome = "taken" if key in found else "unknown"
            reason = "" if key in found else "no receipt within the reconcile window"
            self.events.emit(UnknownResolved(key[0], "receipts", outcome, n, reason))
        for tracker in waiting:
            assert tracker.awaiting is not None
            resend = self.settings.resends_unknown(tracker.awaiting[0])
            ids = echoed.get(tracker.awaiting, {})
            own = ids.get(tracker.mobile.e164) or ids.get(tracker.mobile.national)
            tracker.reconciled(tracker.awaiting in found, resend_unknown=resend, message_id=own)

    # -- replay under the same request id ---------------------------------------------------

    async def _replay(self, job: RouteJob, waiting: list[Tracker]) -> None:
        groups: dict[tuple[str, str], list[Tracker]] = {}
        for tracker in waiting:
            assert tracker.awaiting is not None
            groups.setdefault(tracker.awaiting, []).append(tracker)
        delay = self.settings.resilience.replay_delay_s
        if job.deadline - self._now() <= delay + 0.05:
            # A resend right after the first may overtake it at the provider: no resend.
            for (provider, _), trackers in groups.items():
                why = "too little of the send deadline left for a safe resend"
                resend = self.settings.resends_unknown(provider)
                self._unresolved(provider, trackers, why, resend)
            return
        await anyio.sleep(delay)
        async with anyio.create_task_group() as tg:
            for (provider, request_id), trackers in groups.items():
                tg.start_soon(self._replay_one, job, provider, request_id, trackers)

    async def _replay_one(
        self, job: RouteJob, provider: str, request_id: str, trackers: list[Tracker]
    ) -> None:
        resend = self.settings.resends_unknown(provider)
        rt = self.runtimes[provider]
        assert rt.replay is not None
        # No breaker permit: a resend is reconciliation, not routing. It is bounded by the
        # unknown attempts themselves (one resend each), and an open breaker (likely, after
        # the timeouts that made them unknown) must not keep them unknown. Nor does its
        # outcome feed the breaker: it says little about the provider's health now.
        why = self._cannot_replay(job, provider)
        if why is not None:
            self._unresolved(provider, trackers, why, resend)
            return
        mobiles = tuple(t.mobile for t in trackers)
        batch = Batch(request_id, mobiles, job.renders[provider])
        timeout = max(0.001, min(rt.provider.settings.timeout_s, job.deadline - self._now()))
        for tracker in trackers:
            tracker.in_flight = provider
        result, taken = await resend_same_id(rt, batch, timeout)
        for tracker in trackers:
            tracker.in_flight = None
        self._settle_replayed(provider, request_id, trackers, result, taken, resend)

    def _settle_replayed(
        self,
        provider: str,
        request_id: str,
        trackers: list[Tracker],
        result: AttemptResult,
        taken: bool,
        resend: bool,
    ) -> None:
        by_mobile = {r.mobile.e164: r for r in result.recipients}
        counts: dict[str, int] = {}
        for tracker in trackers:
            rr = None if taken else by_mobile[tracker.mobile.e164]
            tracker.replayed(provider, request_id, rr, resend_unknown=resend)
            if rr is None:
                outcome = "taken"
            else:
                outcome = "sent" if rr.verdict is Verdict.ACCEPTED else "unknown"
            counts[outcome] = counts.get(outcome, 0) + 1
        for outcome, n in counts.items():
            reason = "the resend proved nothing" if outcome == "unknown" else ""
            self.events.emit(UnknownResolved(provider, "replay", outcome, n, reason))

    def _cannot_replay(self, job: RouteJob, provider: str) -> str | None:
        rt = self.runtimes[provider]
        assert rt.replay is not None
        if job.started_at is None:
            return "no start time for this send"
        if self.clock.now() >= rt.replay.replay_until(job.started_at):
            return f"too close to {provider}'s day boundary to resend under the same id"
        if job.deadline - self._now() <= 0.001:
            return "send deadline reached"
        return None

    def _unresolved(self, provider: str, trackers: list[Tracker], why: str, resend: bool) -> None:
        self.events.emit(UnknownResolved(provider, "replay", "unknown", len(trackers), why))
        for tracker in trackers:
            tracker.reconciled(False, resend_unknown=resend, why=f"unknown at {provider}: {why}")

    def _now(self) -> float:
        return self.clock.monotonic()
