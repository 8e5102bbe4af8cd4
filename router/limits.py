"""Traffic limits on an injected clock: the failover budget and a per-provider rate limiter."""

from __future__ import annotations

import logging

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
