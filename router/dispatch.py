"""The send loop: assign recipients to providers, batch, send concurrently, fail over.

Each round gives every unfinished recipient the best provider it has not tried (by the
policy's ranking), sends all batches of the round concurrently, and records the outcomes.
Rejected recipients come back for the next round; accepted, unknown (at-most-once) and
message-fault recipients are final. The loop ends because every round either finishes a
recipient or adds a provider to its tried set.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from functools import partial

import anyio

from policies.base import BreakerState, Ranking
from providers.base import AttemptResult, Batch, ErrorClass, Fault, FaultKind, Verdict
from providers.http import send_batch
from router.breaker import Permit
from router.clock import Clock
from router.coalesce import Member
from router.config import RouterSettings
from router.events import (
    AttemptFinished,
    AttemptStarted,
    CoalescedRequest,
    CredentialsRefused,
    EventBus,
    FailoverBudgetExhausted,
    FailoverTaken,
    PanicSend,
)
from router.health import HealthView
from router.ids import new_id
from router.intake import ReceiptIntake
from router.limits import FailoverBudget
from router.recipients import Tracker, unfinished
from router.reconcile import Reconciler
from router.runtime import ProviderRuntime, RouteJob, route_groups

log = logging.getLogger("router.dispatch")
JOURNAL_REFUSED = "not sent: the broadcast chunk's journal refused the request (claim lost)"


class Dispatcher:
    def __init__(
        self,
        settings: RouterSettings,
        runtimes: Mapping[str, ProviderRuntime],
        health: HealthView,
        reconciler: Reconciler,
        intake: ReceiptIntake,
        events: EventBus,
        clock: Clock,
    ) -> None:
        self.settings = settings
        self.runtimes = runtimes
        self.health = health
        self.reconciler = reconciler
        self.intake = intake
        self.events = events
        self.clock = clock
        r = settings.resilience
        self.budget = FailoverBudget(
            clock,
            ratio=r.failover_budget_ratio,
            minimum=r.failover_budget_min,
            window_s=r.failover_budget_window_s,
        )
        # Per provider, read once: settings do not change under a running router.
        self._resends_unknown = {name: settings.resends_unknown(name) for name in runtimes}
        for name, rt in runtimes.items():
            if rt.coalescer is not None:
                rt.coalescer.on_flush = partial(self._coalesced, name)

    # -- the loop -----------------------------------------------------------------------------

    async def route(self, job: RouteJob, trackers: Sequence[Tracker]) -> None:
        pending = unfinished(trackers)
        while pending:
            assignments = self._assign(job, pending)
            if not assignments:
                break
            batches = [
                (name, chunk)
                for name, assigned in assignments.items()
                for chunk in self.runtimes[name].batches(assigned)
            ]
            if len(batches) == 1:  # the common case: no task group, no extra task (~40 us)
                await self._attempt(job, *batches[0])
            else:
                async with anyio.create_task_group() as tg:
                    for name, chunk in batches:
                        tg.start_soon(self._attempt, job, name, chunk)
            await self.reconciler.reconcile(job, [t for t in trackers if t.awaiting is not None])
            pending = unfinished(trackers)

    def _assign(self, job: RouteJob, pending: list[Tracker]) -> dict[str, list[Tracker]]:
        """Give each pending recipient the best provider it has not tried yet."""
        if len(pending) == 1 and pending[0].last_provider is None:  # most sends: one number
            tracker = pending[0]
            target = self._target(self.health.rank(job, pending), tracker)
            if target is None:
                return {}
            self.budget.record_first(1)
            return {target: [tracker]}
        assignments: dict[str, list[Tracker]] = defaultdict(list)
        moves: dict[tuple[str, str], list[Tracker]] = defaultdict(list)
        for group in route_groups(pending, self.runtimes):
            ranking = self.health.rank(job, group)
            for tracker in group:
                target = self._target(ranking, tracker)
                if target is None:
                    continue
                if tracker.last_provider is None:
                    assignments[target].append(tracker)
                else:
                    moves[(tracker.last_provider, target)].append(tracker)
        first = sum(len(v) for v in assignments.values())
        if first:
            self.budget.record_first(first)
        for (source, target), trackers in moves.items():
            granted = self.budget.try_spend(len(trackers))
            for tracker in trackers[granted:]:
                tracker.exhausted("failover budget exhausted: too many failovers recently")
            if granted < len(trackers):
                self.events.emit(
                    FailoverBudgetExhausted(job.send_id, source, job.scene, len(trackers) - granted)
                )
            if granted:
                assignments[target].extend(trackers[:granted])
                self.events.emit(FailoverTaken(job.send_id, source, target, job.scene, granted))
        return assignments

    def _target(self, ranking: Ranking, tracker: Tracker) -> str | None:
        """The provider for this recipient now, or None (and the recipient is finished)."""
        tried = tracker.tried
        remaining = [n for n in ranking.order if n not in tried]
        for name in remaining:
            if self.runtimes[name].breaker.state is not BreakerState.OPEN:
                return name
        if not ranking.order and not tried:
            tracker.unroutable(_unroutable_reason(ranking))
            return None
        if not remaining:
            tracker.exhausted()
            return None
        everything_open = all(
            self.runtimes[n].breaker.state is BreakerState.OPEN for n in ranking.order
        )
        if everything_open and self.settings.resilience.panic and not tracker.panic:
            tracker.panic = True
            # Least bad: the breaker that will half-open soonest.
            return min(remaining, key=lambda n: self.runtimes[n].breaker.open_remaining_s)
        tracker.exhausted(f"circuit breaker open for {', '.join(remaining)}")
        return None

    async def _attempt(self, job: RouteJob, name: str, chunk: list[Tracker]) -> None:
        rt = self.runtimes[name]
        panic = any(t.panic for t in chunk)
        # A coalesced provider takes its concurrency slot per merged request, not per message.
        slot = rt.limiter if rt.coalescer is None else nullcontext()
        while True:
            async with slot:
                permit = rt.breaker.force_permit() if panic else rt.breaker.allow()
                if permit is not None:
                    if panic:
                        self.events.emit(PanicSend(job.send_id, name, job.scene, len(chunk)))
                    sent = await self._send(job, rt, permit, chunk)
                    if sent is None:  # the broadcast journal refused it: nothing was sent
                        for tracker in chunk:
                            tracker.exhausted(JOURNAL_REFUSED)
                        return
                    request_id, result = sent
                    break
            # Refused: open, or a half-open trial is in flight. Batches behind a trial wait for
            # it (within the send deadline, which cancels this wait) rather than being given up:
            # a trial that succeeds closes the breaker for them too.
            trial = rt.trial_done
            if trial is None or trial.is_set() or rt.breaker.state is not BreakerState.HALF_OPEN:
                for tracker in chunk:
                    tracker.skip(name)
                return
            await trial.wait()
        resend_unknown = self._resends_unknown[name]
        reconcile = self.reconciler.settles(name)
        by_mobile = {r.mobile.e164: r for r in result.recipients}
        for tracker in chunk:
            tracker.record(
                name,
                request_id,
                by_mobile[tracker.mobile.e164],
                resend_unknown=resend_unknown,
                reconcile=reconcile,
            )

    async def _send(
        self, job: RouteJob, rt: ProviderRuntime, permit: Permit, chunk: list[Tracker]
    ) -> tuple[str, AttemptResult] | None:
        name = rt.provider.name
        mobiles, rendered = tuple(t.mobile for t in chunk), job.renders[name]
        # Coalesced: the batch joins a request shared with other messages (its id is theirs).
        coalescer = rt.coalescer
        journal = job.journal  # broadcast chunks only: no await on the single-send path
        if (
            journal is not None
            and coalescer is not None
            and not await self._journaled(job, name, Batch("", mobiles, rendered))
        ):
            rt.breaker.release(permit)  # journaled before joining: a joined request must go
            return None
        joined = coalescer.join(job.send_id, mobiles, rendered) if coalescer else None
        batch = Batch(joined.request_id if joined else new_id(), mobiles, rendered)
        if permit.trial:
            rt.trial_done = anyio.Event()
        started: float | None = None
        try:
            if rt.rate is not None and joined is None:
                await rt.rate.acquire()
            if (
                journal is not None
                and joined is None
                and not await self._journaled(job, name, batch)
            ):
                rt.breaker.release(permit)
                return None
            started = self.clock.monotonic()
            for tracker in chunk:
                tracker.in_flight = name
            if self.events.active:
                self.events.emit(AttemptStarted(job.send_id, batch.request_id, name, len(chunk)))
            timeout = max(0.001, min(rt.provider.settings.timeout_s, job.deadline - started))
            if joined is not None:
                assert rt.coalescer is not None
                request_id, result = await rt.coalescer.send(joined, batch, timeout)
                batch = Batch(request_id, mobiles, rendered)
            else:
                result = await send_batch(rt.provider, rt.client, batch, timeout_s=timeout)
        except BaseException:
            # Cancelled (deadline) or broken: nothing to count against the provider, but an
            # attempt that started ends in telemetry as what it is, an unknown outcome.
            rt.breaker.release(permit)
            if started is not None:
                self._emit_cut(job, name, batch, self.clock.monotonic() - started)
            raise
        finally:
            if permit.trial and rt.trial_done is not None:
                rt.trial_done.set()
        duration = self.clock.monotonic() - started
        if result.fault is not None and result.fault.error_class is ErrorClass.INVALID_REQUEST:
            # The request could not be built: it never left, so it says nothing about the
            # provider either way (neither a failure nor a success in its windows).
            rt.breaker.release(permit)
        elif result.fault is not None and result.fault.kind is FaultKind.CREDENTIALS:
            # A configuration error, not an outage: no breaker record (a half-open cycle
            # would keep probing with the same bad credentials and hide the cause behind
            # "open"); the provider is parked instead, and an operator told.
            rt.breaker.release(permit)
            self._park(rt, result.fault)
        else:
            failed = (
                result.verdict is not Verdict.ACCEPTED
                and result.fault is not None
                and result.fault.counts_against_breaker
            )
            rt.breaker.record(permit, failed=failed)
            rt.stats.attempt(result.verdict is Verdict.ACCEPTED, duration)
        accepted = sum(r.verdict is Verdict.ACCEPTED for r in result.recipients)
        parts = job.parts[0] if chunk[0].mobile.is_mainland else job.parts[1]
        cost = rt.provider.settings.price_per_part * parts * accepted
        rt.stats.spent(cost, limited=rt.provider.settings.spend_limit is not None)
        if joined is None:  # a coalesced request remembers all its sends at once (_coalesced)
            self.intake.remember_sent(job.send_id, result, batch.request_id)
        self._emit_attempt(job, batch, result, duration, parts, cost)
        return batch.request_id, result

    @staticmethod
    async def _journaled(job: RouteJob, provider: str, batch: Batch) -> bool:
        """A broadcast chunk writes each request to its journal before sending it."""
        assert job.journal is not None
        return await job.journal(provider, batch.request_id, tuple(m.e164 for m in batch.mobiles))

    def _park(self, rt: ProviderRuntime, fault: Fault) -> None:
        park_s = self.settings.resilience.credentials_park_s
        now = self.clock.monotonic()
        first = rt.credentials_parked_until <= now  # one event per park (park_s 0: each one)
        if park_s > 0:
            rt.credentials_parked_until = now + park_s
        if first:
            self.events.emit(CredentialsRefused(rt.provider.name, fault.code, fault.detail, park_s))

    def _coalesced(
        self, provider: str, request_id: str, members: Sequence[Member], result: AttemptResult
    ) -> None:
        """One coalesced request's result, before its members wake."""
        send_of = {m.e164: send_id for send_id, mobiles in members for m in mobiles}
        self.intake.remember_sent(send_of, result, request_id)
        if len(members) > 1 and self.events.active:
            numbers = sum(len(mobiles) for _, mobiles in members)
            self.events.emit(CoalescedRequest(provider, request_id, len(members), numbers))

    def _emit_cut(self, job: RouteJob, provider: str, batch: Batch, duration_s: float) -> None:
        """An attempt cut short after it started: it may have reached the provider (its
        numbers are remembered for the receipts that would prove it)."""
        n = len(batch.mobiles)
        self.intake.remember_sent(
            job.send_id, AttemptResult.uniform(provider, batch, Verdict.UNKNOWN), batch.request_id
        )
        self.events.emit(
            AttemptFinished(
                send_id=job.send_id,
                attempt_id=batch.request_id,
                provider=provider,
                scene=job.scene,
                batch_size=n,
                verdict=Verdict.UNKNOWN,
                error_class=ErrorClass.TIMEOUT,
                duration_s=duration_s,
                accepted=0,
                rejected=0,
                unknown=n,
            )
        )

    def _emit_attempt(
        self,
        job: RouteJob,
        batch: Batch,
        result: AttemptResult,
        duration_s: float,
        parts: int,
        cost: float,
    ) -> None:
        if not self.events.active:
            return
        accepted = rejected = unknown = 0
        message_ids: set[str] = set()
        for r in result.recipients:
            if r.verdict is Verdict.ACCEPTED:
                accepted += 1
                if r.provider_message_id is not None:
                    message_ids.add(r.provider_message_id)
            elif r.verdict is Verdict.REJECTED:
                rejected += 1
            else:
                unknown += 1
        self.events.emit(
            AttemptFinished(
                send_id=job.send_id,
                attempt_id=batch.request_id,
                provider=result.provider,
                scene=job.scene,
                batch_size=len(batch.mobiles),
                verdict=result.verdict,
                error_class=result.fault.error_class if result.fault else None,
                duration_s=duration_s,
                accepted=accepted,
                rejected=rejected,
                unknown=unknown,
                parts=parts,
                cost=cost,
                code=result.fault.code if result.fault else None,
                http_status=result.http_status,
                message_ids=tuple(message_ids),
            )
        )


def _unroutable_reason(ranking: Ranking) -> str:
    """Why no provider can carry a recipient, from the policy's exclusions."""
    if not ranking.excluded:
        return "no enabled provider can carry it"
    reasons = "; ".join(f"{e.name}: {e.reason}" for e in ranking.excluded)
    return f"no provider can carry it ({reasons})"
