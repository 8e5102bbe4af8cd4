"""Background pulls: delivery receipts (so a missed push is recovered) and balances.

Each loop survives provider errors (logged, retried next period) and stops when cancelled.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol, runtime_checkable

import anyio

from policies.base import BreakerState
from providers.base import DeliveryReport
from router.clock import Clock
from router.errors import RouterError, StateStoreError
from router.events import BalanceUpdated, EventBus
from router.runtime import ProviderRuntime
from router.state.base import StateStore, StatsCounts
from router.state.outbox import Outbox

log = logging.getLogger("router.pollers")


async def poll_receipts(
    runtimes: Mapping[str, ProviderRuntime],
    interval_s: float,
    record: Callable[[list[DeliveryReport]], Awaitable[list[DeliveryReport]]],
) -> None:
    """Pull receipts so a missed push is recovered; ``record`` stores them (Router)."""
    pullers = [rt for rt in runtimes.values() if rt.puller is not None]
    while pullers:
        for rt in pullers:
            try:
                fresh = await record(await rt.pull_reports())
            except RouterError as exc:
                log.warning("receipt pull from %s failed: %s", rt.name, exc)
                continue
            if fresh:
                log.debug("pulled %d receipts from %s", len(fresh), rt.name)
        await anyio.sleep(interval_s)


async def poll_balances(
    runtimes: list[ProviderRuntime], interval_s: float, events: EventBus | None = None
) -> None:
    queried = [rt for rt in runtimes if rt.balance_query is not None]
    while queried:
        for rt in queried:
            await refresh_balance(rt)
            if events is not None and rt.stats.balance is not None:
                events.emit(BalanceUpdated(rt.name, rt.stats.balance))
        await anyio.sleep(interval_s)


async def refresh_balance(rt: ProviderRuntime) -> None:
    try:
        balance = await rt.query_balance()
    except RouterError as exc:
        log.warning("balance query to %s failed: %s", rt.name, exc)
        return
    if balance is not None:
        rt.stats.balance = balance


async def sync_breakers(
    store: StateStore, runtimes: Mapping[str, ProviderRuntime], interval_s: float, clock: Clock
) -> None:
    """Share breaker cool-downs between instances: publish ours, adopt theirs (epoch times,
    so instances' clocks must roughly agree)."""
    names = list(runtimes)
    while True:
        now = clock.now().timestamp()
        try:
            for name, rt in runtimes.items():
                if rt.breaker.state is BreakerState.OPEN and rt.breaker.open_remaining_s > 0:
                    await store.publish_open(name, now + rt.breaker.open_remaining_s)
            for name, until in (await store.open_until(names)).items():
                runtimes[name].breaker.open_for(until - now)
        except StateStoreError as exc:
            log.warning("breaker sync skipped: %s", exc)
        await anyio.sleep(interval_s)


@runtime_checkable
class StatsStore(Protocol):
    async def sync_stats(
        self, deltas: Mapping[str, StatsCounts], windows: Mapping[str, tuple[float, float]]
    ) -> dict[str, StatsCounts]: ...


async def sync_stats(
    store: StatsStore, runtimes: Mapping[str, ProviderRuntime], interval_s: float
) -> None:
    """Share provider quality and spend with the other instances (one round trip per period,
    never one per send); until the first sync each instance routes on its own windows."""
    windows = {n: (rt.stats.window_s, rt.stats.spend_period_s) for n, rt in runtimes.items()}
    failing = False
    while True:
        deltas = {name: rt.stats.take_pending() for name, rt in runtimes.items()}
        try:
            totals = await store.sync_stats(deltas, windows)
        except StateStoreError as exc:
            for name, rt in runtimes.items():
                rt.stats.give_back(deltas[name])
            if not failing:
                log.warning("provider stats not shared (routing on stale sums): %s", exc)
            failing = True
        else:
            failing = False
            for name, counts in totals.items():
                runtimes[name].stats.share(counts)
        await anyio.sleep(interval_s)


async def replay_outbox(outbox: Outbox, interval_s: float) -> None:
    """Replay queued state writes (records, compensations) once the store answers again."""
    while True:
        await outbox.flush_quietly()
        await anyio.sleep(interval_s)
