"""Traffic limits on an injected clock: the failover budget and a per-provider rate limiter."""

from __future__ import annotations

from collections import deque

import anyio

from router.clock import Clock


class FailoverBudget:
    """Failovers may be at most ``ratio`` of recent first attempts (like Envoy's retry budget).

    Counted in recipients over a rolling ``window_s``; ``minimum`` recipients may always fail
    over, so a quiet router still recovers single failures. Without the cap, a primary outage
    would push every recipient onto the backup twice as fast as normal traffic does.
    """

    def __init__(self, clock: Clock, *, ratio: float, minimum: int, window_s: float) -> None:
        self._clock = clock
        self.ratio, self.minimum, self.window_s = ratio, minimum, window_s
        self._first: deque[tuple[float, int]] = deque()
        self._failover: deque[tuple[float, int]] = deque()
        self._first_total = 0
        self._failover_total = 0

    def record_first(self, recipients: int) -> None:
        self._first.append((self._clock.monotonic(), recipients))
        self._first_total += recipients

    def try_spend(self, recipients: int) -> int:
        """Take up to ``recipients`` failovers from the budget; returns how many were granted."""
        self._expire()
        allowed = max(self.minimum, int(self.ratio * self._first_total))
        granted = max(0, min(recipients, allowed - self._failover_total))
        if granted:
            self._failover.append((self._clock.monotonic(), granted))
            self._failover_total += granted
        return granted

    def _expire(self) -> None:
        horizon = self._clock.monotonic() - self.window_s
        while self._first and self._first[0][0] < horizon:
            self._first_total -= self._first.popleft()[1]
        while self._failover and self._failover[0][0] < horizon:
            self._failover_total -= self._failover.popleft()[1]


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
