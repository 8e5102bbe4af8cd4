"""The send loop: assign recipients to providers, batch, send concurrently, fail over.

Each round gives every unfinished recipient the best provider it has not tried (by the
policy's ranking), sends all batches of the round concurrently, and records the outcomes.
Rejected recipients come back for the next round; accepted, unknown (at-most-once) and
message-fault recipients are final. The loop ends because every round either finishes a
recipient or adds a provider to its tried set.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

import anyio
import httpx

from policies.base import BreakerState, Policy, ProviderHealth, Ranking, RouteContext
from providers.base import (
    AttemptResult,
    Batch,
    DeliveryReport,
    DeliveryStatus,
    ErrorClass,
    Provider,
    Rendered,
    ReportPuller,
    Verdict,
)
from providers.http import HttpClient, send_batch
from router.breaker import CircuitBreaker, Permit
from router.clock import Clock
from router.config import RouterSettings
from router.errors import RouterError
from router.events import (
    AttemptFinished,
    AttemptStarted,
    EventBus,
    FailoverTaken,
    PanicSend,
    ReceiptReceived,
)
from router.limits import FailoverBudget, RateLimiter
from router.receipts import ReceiptBook, SentBatch, SentMemory, Settled, match
from router.recipients import Tracker, chunked, unfinished
from router.stats import SNAPSHOT_TTL_S, ProviderStats

log = logging.getLogger("router.dispatch")
RECONCILE_POLL_S = 0.2
SENT_MEMORY = 100_000  # provider message ids remembered for receipt delay and trace links


@dataclass(slots=True)
class ProviderRuntime:
    """Everything the engine keeps per provider account."""

    provider: Provider
    breaker: CircuitBreaker
    limiter: anyio.CapacityLimiter
    rate: RateLimiter | None
    stats: ProviderStats
    enabled: bool = True
    client: HttpClient | None = None
    pulls_reports: bool = False
    trial_done: anyio.Event | None = None  # set when the current half-open trial ends

    def __post_init__(self) -> None:
        # isinstance against a runtime Protocol costs ~10 us: decide once.
        self.pulls_reports = isinstance(self.provider, ReportPuller)

    async def pull_reports(self) -> list[DeliveryReport]:
        """Fetch pending delivery reports (v1 platform ``/report``); [] if unsupported."""
        if not isinstance(self.provider, ReportPuller) or self.client is None:
            return []
        response = await self.client.send(self.provider.build_report_request())
        await response.aread()
        return self.provider.parse_report(response)


@dataclass(frozen=True, slots=True)
class RouteJob:
    """One message's routing inputs."""

    send_id: str
    scene: str
    renders: Mapping[str, Rendered]
    draw: float
    deadline: float  # monotonic time by which the send must be finished
    parts: tuple[int, int] = (1, 1)  # SMS parts per recipient: (mainland, international)


class Dispatcher:
    def __init__(
        self,
        settings: RouterSettings,
        runtimes: Mapping[str, ProviderRuntime],
        policy: Policy,
        events: EventBus,
        clock: Clock,
        receipts: ReceiptBook,
    ) -> None:
        self.settings = settings
        self.receipts = receipts
        self._sent = SentMemory(max_ids=SENT_MEMORY)
        self._health_cache: dict[tuple[object, ...], tuple[float, list[ProviderHealth]]] = {}
        # Where pulled receipts go; the Router points this at its own recorder, which also
        # shares the status through the state store.
        self.record: Callable[[list[DeliveryReport]], Awaitable[list[DeliveryReport]]] = (
            self._ingest_async
        )
        self.runtimes = runtimes
        self.policy = policy
        self.events = events
        self.clock = clock
        r = settings.resilience
        self.budget = FailoverBudget(
            clock,
            ratio=r.failover_budget_ratio,
            minimum=r.failover_budget_min,
            window_s=r.failover_budget_window_s,
        )

    # -- ranking ------------------------------------------------------------------------------

    def health(self, job: RouteJob, sample: Tracker) -> list[ProviderHealth]:
        """The policy's input. Rebuilt when anything it shows changes (breakers, switches,
        what can carry this message), else at most every ``ProviderStats`` snapshot period:
        it is on the per-message path."""
        key = tuple(
            (
                rt.enabled,
                rt.breaker.state,
                rt.stats.version,
                name in job.renders,
                rt.provider.can_reach(sample.mobile),
            )
            for name, rt in self.runtimes.items()
        )
        now = self.clock.monotonic()
        cached = self._health_cache.get(key)
        if cached is not None and now - cached[0] <= SNAPSHOT_TTL_S:
            return cached[1]
        health = self._build_health(job, sample)
        if len(self._health_cache) > 64:
            self._health_cache.clear()
        self._health_cache[key] = (now, health)
        return health

    def _build_health(self, job: RouteJob, sample: Tracker) -> list[ProviderHealth]:
        out = []
        for name, rt in self.runtimes.items():
            s, stats = rt.provider.settings, rt.stats
            accepted, delivered, latency = stats.rates()
            out.append(
                ProviderHealth(
                    name=name,
                    weight=s.weight,
                    enabled=rt.enabled and s.enabled,
                    breaker=rt.breaker.state,
                    can_render=name in job.renders,
                    region_ok=rt.provider.can_reach(sample.mobile),
                    price_per_part=s.price_per_part,
                    accepted_rate=accepted,
                    delivery_rate=delivered,
                    latency_s=latency,
                    balance=stats.balance,
                    spend_left=stats.spend_left(s.spend_limit),
                )
            )
        return out

    def rank(self, job: RouteJob, group: Sequence[Tracker]) -> Ranking:
        parts = job.parts[0] if group[0].mobile.is_mainland else job.parts[1]
        context = RouteContext(job.scene, recipients=len(group), parts=parts, draw=job.draw)
        return self.policy.rank(context, self.health(job, group[0]))

    def ingest(self, reports: Sequence[DeliveryReport], *, count: bool = True) -> list[Settled]:
        """Settle receipts (pushed or pulled) per recipient; feeds reconciliation and delivery
        rates. Returns the new ones: a recipient's second receipt (pushed twice, or pushed and
        pulled) settles nothing. ``count=False`` leaves counting to the caller, which counts
        only what the shared store says is new everywhere (:meth:`count_receipt`)."""
        region = self.settings.default_region
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

    async def _ingest_async(self, reports: list[DeliveryReport]) -> list[DeliveryReport]:
        return [s.report for s in self.ingest(reports)]

    # -- the loop -----------------------------------------------------------------------------

    async def route(self, job: RouteJob, trackers: Sequence[Tracker]) -> None:
        pending = unfinished(trackers)
        while pending:
            assignments = self._assign(job, pending)
            if not assignments:
                break
            async with anyio.create_task_group() as tg:
                for name, assigned in assignments.items():
                    for chunk in _batches(self.runtimes[name].provider, assigned):
                        tg.start_soon(self._attempt, job, name, chunk)
            await self._reconcile(job, [t for t in trackers if t.awaiting is not None])
            pending = unfinished(trackers)

    async def _reconcile(self, job: RouteJob, waiting: list[Tracker]) -> None:
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
                except (httpx.HTTPError, RouterError) as exc:
                    log.warning("receipt pull from %s failed: %s", provider, type(exc).__name__)
            found = {k for k in keys if self.receipts.get(*k)}
            remaining = end - self.clock.monotonic()
            if found == keys or remaining <= 0:
                break
            await anyio.sleep(min(RECONCILE_POLL_S, remaining))
        resend = self.settings.unknown_outcomes == "at_least_once"
        for tracker in waiting:
            tracker.reconciled(tracker.awaiting in found, resend_unknown=resend)

    def _assign(self, job: RouteJob, pending: list[Tracker]) -> dict[str, list[Tracker]]:
        """Give each pending recipient the best provider it has not tried yet."""
        assignments: dict[str, list[Tracker]] = defaultdict(list)
        moves: dict[tuple[str, str], list[Tracker]] = defaultdict(list)
        for group in route_groups(pending, self.runtimes):
            ranking = self.rank(job, group)
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
        while True:
            async with rt.limiter:
                permit = rt.breaker.force_permit() if panic else rt.breaker.allow()
                if permit is not None:
                    if panic:
                        self.events.emit(PanicSend(job.send_id, name, job.scene, len(chunk)))
                    request_id, result = await self._send(job, rt, permit, chunk)
                    break
            # Refused: open, or a half-open trial is in flight. Batches behind a trial wait for
            # it (within the send deadline, which cancels this wait) rather than being given up:
            # a trial that succeeds closes the breaker for them too.
            trial = rt.trial_done
            if trial is None or trial.is_set() or rt.breaker.state is not BreakerState.HALF_OPEN:
                for tracker in chunk:
                    tracker.skipped.add(name)
                return
            await trial.wait()
        resend_unknown = self.settings.unknown_outcomes == "at_least_once"
        reconcile = rt.pulls_reports and self.settings.resilience.reconcile_window_s > 0
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
    ) -> tuple[str, AttemptResult]:
        name = rt.provider.name
        batch = Batch(uuid.uuid4().hex, tuple(t.mobile for t in chunk), job.renders[name])
        assert rt.client is not None, "the Router is entered (async with) before sending"
        if permit.trial:
            rt.trial_done = anyio.Event()
        started: float | None = None
        try:
            if rt.rate is not None:
                await rt.rate.acquire()
            started = self.clock.monotonic()
            for tracker in chunk:
                tracker.in_flight = name
            self.events.emit(AttemptStarted(job.send_id, batch.request_id, name, len(chunk)))
            timeout = max(0.001, min(rt.provider.settings.timeout_s, job.deadline - started))
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
        if accepted:
            self._remember_sent(job, result)
        self._emit_attempt(job, batch, result, duration, parts, cost)
        return batch.request_id, result

    def _remember_sent(self, job: RouteJob, result: AttemptResult) -> None:
        """When, in which send and to which numbers each provider message id went out:
        receipt delay, trace links, and matching masked pulled receipts to their recipient."""
        now = self.clock.now().timestamp()
        by_id: dict[str, list[str]] = defaultdict(list)
        for r in result.recipients:
            if r.provider_message_id is not None and r.verdict is Verdict.ACCEPTED:
                by_id[r.provider_message_id].append(r.mobile.e164)
        for message_id, mobiles in by_id.items():
            batch = SentBatch(now, job.send_id, tuple(mobiles))
            self._sent.remember(result.provider, message_id, batch)

    def _emit_cut(self, job: RouteJob, provider: str, batch: Batch, duration_s: float) -> None:
        """An attempt cut short after it started: it may have reached the provider."""
        n = len(batch.mobiles)
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
        counts = dict.fromkeys(Verdict, 0)
        for r in result.recipients:
            counts[r.verdict] += 1
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
                accepted=counts[Verdict.ACCEPTED],
                rejected=counts[Verdict.REJECTED],
                unknown=counts[Verdict.UNKNOWN],
                parts=parts,
                cost=cost,
            )
        )


def route_groups(
    trackers: Sequence[Tracker], runtimes: Mapping[str, ProviderRuntime]
) -> list[list[Tracker]]:
    """Recipients that the same providers can reach are ranked together."""
    groups: dict[tuple[bool, ...], list[Tracker]] = defaultdict(list)
    for t in trackers:
        groups[tuple(rt.provider.can_reach(t.mobile) for rt in runtimes.values())].append(t)
    return list(groups.values())


def _unroutable_reason(ranking: Ranking) -> str:
    """Why no provider can carry a recipient, from the policy's exclusions."""
    if not ranking.excluded:
        return "no enabled provider can carry it"
    reasons = "; ".join(f"{e.name}: {e.reason}" for e in ranking.excluded)
    return f"no provider can carry it ({reasons})"


def _batches(provider: Provider, trackers: list[Tracker]) -> list[list[Tracker]]:
    """Chunks of at most ``max_batch``, never mixing recipients the provider must split
    (e.g. Baofoo's one ``areaCode`` per request)."""
    key_of: Callable[..., str] | None = getattr(provider, "batch_key", None)
    if key_of is None:
        return list(chunked(trackers, provider.max_batch))
    by_key: dict[str, list[Tracker]] = defaultdict(list)
    for t in trackers:
        by_key[key_of(t.mobile)].append(t)
    return [c for group in by_key.values() for c in chunked(group, provider.max_batch)]
