"""Background pulls: delivery receipts (so a missed push is recovered) and balances.

Each loop survives provider errors (logged, retried next period) and stops when cancelled.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol, runtime_checkable

import anyio
import httpx

from policies.base import BreakerState
from providers.base import DeliveryReport
from router.dispatch import Dispatcher, ProviderRuntime
from router.errors import RouterError, StateStoreError
from router.events import BalanceUpdated, EventBus
from router.state.base import StateStore
from router.state.outbox import Outbox

log = logging.getLogger("router.pollers")


@runtime_checkable
class BalanceQuery(Protocol):
    def build_balance_request(self) -> httpx.Request: ...

    def parse_balance(self, response: httpx.Response) -> object: ...


async def poll_receipts(
    dispatcher: Dispatcher,
    interval_s: float,
    record: Callable[[list[DeliveryReport]], Awaitable[list[DeliveryReport]]],
) -> None:
    """Pull receipts so a missed push is recovered; ``record`` stores them (Router)."""
    pullers = [rt for rt in dispatcher.runtimes.values() if rt.pulls_reports]
    while pullers:
        for rt in pullers:
            try:
                fresh = await record(await rt.pull_reports())
            except (httpx.HTTPError, RouterError) as exc:
                log.warning("receipt pull from %s failed: %s", rt.provider.name, exc)
                continue
            if fresh:
                log.debug("pulled %d receipts from %s", len(fresh), rt.provider.name)
        await anyio.sleep(interval_s)


async def poll_balances(
    runtimes: list[ProviderRuntime], interval_s: float, events: EventBus | None = None
) -> None:
    queried = [rt for rt in runtimes if isinstance(rt.provider, BalanceQuery)]
    while queried:
        for rt in queried:
            await refresh_balance(rt)
            if events is not None and rt.stats.balance is not None:
                events.emit(BalanceUpdated(rt.provider.name, rt.stats.balance))
        await anyio.sleep(interval_s)


async def refresh_balance(rt: ProviderRuntime) -> None:
    provider = rt.provider
    if not isinstance(provider, BalanceQuery) or rt.client is None:
        return
    try:
        response = await rt.client.send(provider.build_balance_request())
        await response.aread()
        balance = provider.parse_balance(response)
    except (httpx.HTTPError, RouterError) as exc:
        log.warning("balance query to %s failed: %s", provider.name, exc)
        return
    value = getattr(balance, "balance", None)
    if isinstance(value, int | float):
        rt.stats.balance = float(value)


async def sync_breakers(
    store: StateStore, runtimes: Mapping[str, ProviderRuntime], interval_s: float
) -> None:
    """Share breaker cool-downs between instances: publish ours, adopt theirs."""
    names = list(runtimes)
    while True:
        now = time.time()
        try:
            for name, rt in runtimes.items():
                if rt.breaker.state is BreakerState.OPEN and rt.breaker.open_remaining_s > 0:
                    await store.publish_open(name, now + rt.breaker.open_remaining_s)
            for name, until in (await store.open_until(names)).items():
                runtimes[name].breaker.open_for(until - now)
        except StateStoreError as exc:
            log.warning("breaker sync skipped: %s", exc)
        await anyio.sleep(interval_s)


async def replay_outbox(outbox: Outbox, interval_s: float) -> None:
    """Replay queued state writes (records, compensations) once the store answers again."""
    while True:
        await outbox.flush_quietly()
        await anyio.sleep(interval_s)
