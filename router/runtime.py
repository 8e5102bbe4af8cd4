"""What the engine keeps per provider account, and what each provider can do.

Capabilities are decided once per provider (an ``isinstance`` against a runtime-checkable
Protocol costs ~10 us: never on the per-message path). Every provider HTTP exchange goes
through :mod:`providers.http`, which turns transport errors into ``ProviderIOError``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import anyio

from providers.base import (
    BalanceQuery,
    BatchKeyed,
    DeliveryReport,
    Mobile,
    Provider,
    PushReceiver,
    Rendered,
    ReplaySafe,
    ReportPuller,
    SendQuery,
    SentRecord,
)
from providers.frozen import fast_init
from providers.http import HttpClient, pull_reports, query_balance
from router.breaker import CircuitBreaker
from router.coalesce import Coalescer
from router.limits import RateLimiter
from router.recipients import Tracker, chunked
from router.stats import ProviderStats

# A send query reads at most this many pages per number (Aliyun: 50 records a page).
MAX_QUERY_PAGES = 4
# A provider's concurrency limit: `async with` holds one request slot (router.limits.Concurrency,
# or router.limits.SharedConcurrency for the account across instances).
Slots = AbstractAsyncContextManager[Any]
# (provider, request id, E.164 mobiles) -> may the request be sent
Journal = Callable[[str, str, tuple[str, ...]], Awaitable[bool]]


@dataclass(slots=True)
class ProviderRuntime:
    """Everything the engine keeps per provider account."""

    provider: Provider
    client: HttpClient
    breaker: CircuitBreaker
    limiter: Slots
    rate: RateLimiter | None
    stats: ProviderStats
    enabled: bool = True
    credentials_parked_until: float = 0.0  # monotonic; credentials refused: out of routing
    trial_done: anyio.Event | None = None  # set when the current half-open trial ends
    # Capabilities, decided once from the adapter's declared protocols.
    batch_key: Callable[[Mobile], str] | None = field(init=False, default=None)
    puller: ReportPuller | None = field(init=False, default=None)
    balance_query: BalanceQuery | None = field(init=False, default=None)
    pushes: PushReceiver | None = field(init=False, default=None)
    replay: ReplaySafe | None = field(init=False, default=None)  # refuses a reused request id
    query: SendQuery | None = field(init=False, default=None)  # lists what it took per number
    coalescer: Coalescer | None = field(init=False, default=None)  # coalesce_ms > 0

    def __post_init__(self) -> None:
        p = self.provider
        self.batch_key = p.batch_key if isinstance(p, BatchKeyed) else None
        self.puller = p if isinstance(p, ReportPuller) else None
        self.balance_query = p if isinstance(p, BalanceQuery) else None
        self.pushes = p if isinstance(p, PushReceiver) else None
        self.query = p if isinstance(p, SendQuery) else None
        window_ms = p.settings.coalesce_ms
        # A coalesced request id is shared by several messages: resending one message's part
        # under it would let a duplicate refusal "prove" the others' numbers were sent.
        self.replay = p if isinstance(p, ReplaySafe) and window_ms == 0 else None
        if window_ms > 0:
            self.coalescer = Coalescer(
                p, self.client, self.limiter, self.rate, window_ms / 1000, self.batch_key
            )

    @property
    def name(self) -> str:
        return self.provider.name

    async def pull_reports(self) -> list[DeliveryReport]:
        """Pending delivery reports (v1 platform ``/report``); [] if the provider has no pull.
        Raises ``ProviderIOError`` or ``ProviderResponseError`` (both ``RouterError``)."""
        if self.puller is None:
            return []
        return await pull_reports(self.puller, self.client)

    async def sent_records(self, mobile: Mobile, sent_at: datetime) -> list[SentRecord]:
        """What the provider says it took for ``mobile`` on ``sent_at``'s day (every page, at
        most ``MAX_QUERY_PAGES``); [] without a query. Raises as :meth:`pull_reports` does."""
        if self.query is None:
            return []
        records: list[SentRecord] = []
        for page in range(1, MAX_QUERY_PAGES + 1):
            answer = await self.client.exchange(
                self.query.build_send_query(mobile, sent_at, page), None
            )
            found, total = self.query.parse_send_query(answer)
            records += found
            if not found or len(records) >= total:
                break
        return records

    async def query_balance(self) -> float | None:
        """The balance in message parts, or None if the provider cannot say. Raises as
        :meth:`pull_reports` does."""
        if self.balance_query is None:
            return None
        return float((await query_balance(self.balance_query, self.client)).balance)

    def batches(self, trackers: list[Tracker]) -> list[list[Tracker]]:
        """Chunks of at most ``max_batch``, never mixing recipients the provider must split
        (e.g. Baofoo's one ``areaCode`` per request)."""
        limit = self.provider.max_batch
        if self.batch_key is None:
            return list(chunked(trackers, limit))
        by_key: dict[str, list[Tracker]] = defaultdict(list)
        for t in trackers:
            by_key[self.batch_key(t.mobile)].append(t)
        return [c for group in by_key.values() for c in chunked(group, limit)]


@fast_init
@dataclass(frozen=True, slots=True)
class RouteJob:
    """One message's routing inputs."""

    send_id: str
    scene: str
    renders: Mapping[str, Rendered]
    draw: float
    deadline: float  # monotonic time by which the send must be finished
    parts: tuple[int, int] = (1, 1)  # SMS parts per recipient: (mainland, international)
    started_at: datetime | None = None  # wall clock when routing began (before any attempt)
    # A broadcast chunk's write-ahead journal: called with (provider, request id, E.164
    # mobiles) right before each request is sent; False means "do not send it".
    journal: Journal | None = None


def route_groups(
    trackers: Sequence[Tracker], runtimes: Mapping[str, ProviderRuntime]
) -> list[list[Tracker]]:
    """Recipients that the same providers can reach are ranked together."""
    if len(trackers) == 1:  # one recipient (most sends): one group, nothing to compare
        return [list(trackers)]
    groups: dict[tuple[bool, ...], list[Tracker]] = defaultdict(list)
    for t in trackers:
        groups[tuple(rt.provider.can_reach(t.mobile) for rt in runtimes.values())].append(t)
    return list(groups.values())
