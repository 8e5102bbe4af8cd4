"""Traffic limits: the failover budget, per-provider rate limits and concurrency (the shared
ones through the state store, for the provider account across instances)."""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections import deque

import anyio

from router.clock import Clock
from router.errors import StateStoreError
from router.state.base import StateStore
from router.windows import Window

log = logging.getLogger("router.limits")


class FailoverBudget:
    """Failovers may be at most ``ratio`` of recent first attempts (like Envoy's retry budget).

    Counted in recipients over a rolling ``window_s``; ``minimum`` recipients may always fail
    over, so a quiet router still recovers single failures. Without the cap, a primary outage
    would push every recipient onto the backup twice as fast as normal traffic does.
    """

    def __init__(self, clock: Clock, *, ratio: float, minimum: int, window_s: float) -> None:
        self.ratio, self.minimum, self.window_s = ratio, minimum, window_s
        # Bucketed: fixed memory however long the router runs without a failover.
        self._first = Window(clock, window_s)
        self._failover = Window(clock, window_s)

    def record_first(self, recipients: int) -> None:
        self._first.add(recipients)

    def try_spend(self, recipients: int) -> int:
        """Take up to ``recipients`` failovers from the budget; returns how many were granted."""
        allowed = max(self.minimum, int(self.ratio * self._first.total))
        granted = max(0, min(recipients, allowed - int(self._failover.total)))
        if granted:
            self._failover.add(granted)
        return granted


class RateLimiter:
    """Token bucket: at most ``rate`` requests per second, bursts up to ``burst``."""

    def __init__(self, clock: Clock, rate: float, burst: float | None = None) -> None:
        self._clock = clock
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate)
        self._tokens = self.burst
        self._updated = clock.monotonic()

    def delay(self) -> float:
        """Take a token; return how long the caller must wait before using it (0 if none)."""
        now = self._clock.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now
        self._tokens -= 1
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    async def acquire(self) -> None:
        wait = self.delay()
        if wait > 0:
            await anyio.sleep(wait)


class SharedRateLimiter(RateLimiter):
    """``rate_limit_rps`` for the provider account, not per process: every instance takes its
    slots from one GCRA in the state store (one round trip per provider request). If the
    store does not answer, this instance falls back to its own bucket at the full rate (the
    account may then see up to N times the rate from N instances) and says so once."""

    def __init__(
        self, clock: Clock, rate: float, store: StateStore, key: str, burst: float | None = None
    ) -> None:
        super().__init__(clock, rate, burst)
        self._store, self._key = store, key
        self._warned = False

    async def acquire(self) -> None:
        try:
            wait = await self._store.take_rate(self._key, self.rate, self.burst)
        except StateStoreError as exc:
            if not self._warned:
                log.warning(
                    "shared rate limit %s: store unreachable, local limit: %s", self._key, exc
                )
                self._warned = True
            wait = self.delay()
        else:
            self._warned = False
        if wait > 0:
            await anyio.sleep(wait)


class Concurrency:
    """At most ``limit`` requests in flight: ``async with`` holds one slot, first come first
    served. What ``anyio.CapacityLimiter`` does, without its per-call task bookkeeping and
    checkpoint (~3% of a send's CPU in a profile): a free slot is taken without awaiting; a
    waiter is handed the slot of the request that ends."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("a concurrency limit is at least 1")
        self.limit = limit
        self._free = limit
        self._waiters: deque[anyio.Event] = deque()

    @property
    def in_flight(self) -> int:
        return self.limit - self._free

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *exc_info: object) -> None:
        self.release()

    async def acquire(self) -> None:
        if self._free and not self._waiters:
            self._free -= 1
            return
        handed = anyio.Event()
        self._waiters.append(handed)
        try:
            await handed.wait()
        except BaseException:
            if handed.is_set():  # given a slot as it was cancelled: pass it on
                self.release()
            else:
                self._waiters.remove(handed)
            raise

    def release(self) -> None:
        if self._waiters:
            self._waiters.popleft().set()  # the slot goes to the first waiter, not the pool
        else:
            self._free += 1


class SharedConcurrency:
    """``concurrency`` for the provider account, not per process: an async context manager
    (like the ``anyio.CapacityLimiter`` it wraps) that also holds one of ``limit`` slots in
    the state store while a request is in flight. Slots are leases (``lease_s``, above the
    provider's timeout), so a crashed instance's slots free themselves. Two store round trips
    per provider request; while all slots are held, it polls (2 ms doubling to 50 ms). If
    the store does not answer, this instance keeps its own limit only and says so once."""

    def __init__(self, limit: int, store: StateStore, key: str, lease_s: float) -> None:
        self.limit, self.lease_s = limit, lease_s
        self._local = Concurrency(limit)
        self._store, self._key = store, key
        self._held: dict[int, str] = {}  # task id -> slot token
        self._warned = False

    async def __aenter__(self) -> None:
        await self._local.acquire()
        try:
            token = await self._take()
        except BaseException:
            self._local.release()
            raise
        if token is not None:
            self._held[anyio.get_current_task().id] = token

    async def __aexit__(self, *exc_info: object) -> None:
        token = self._held.pop(anyio.get_current_task().id, None)
        try:
            if token is not None:
                with anyio.CancelScope(shield=True), contextlib.suppress(StateStoreError):
                    await self._store.give_slot(self._key, token)  # else: its lease ends
        finally:
            self._local.release()

    async def _take(self) -> str | None:
        token, pause = secrets.token_hex(8), 0.002
        while True:
            try:
                taken = await self._store.take_slot(self._key, token, self.limit, self.lease_s)
            except StateStoreError as exc:
                if not self._warned:
                    log.warning(
                        "shared concurrency %s: store unreachable, local limit: %s", self._key, exc
                    )
                    self._warned = True
                return None
            self._warned = False
            if taken:
                return token
            await anyio.sleep(pause)
            pause = min(0.05, pause * 2)
