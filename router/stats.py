"""Recent per-provider quality, on an injected clock: what cost-aware routing trades price for.

Accepted rate and latency come from attempts; delivery rate from receipts; spend from the
parts sent. All are bucketed rolling windows (:mod:`router.windows`, fixed memory), so an old
outage stops counting against a provider.
"""

from __future__ import annotations

from router.clock import Clock
from router.windows import Window

SNAPSHOT_TTL_S = 0.1  # rates are recomputed at most ten times a second, not per message


class ProviderStats:
    def __init__(
        self, clock: Clock, *, window_s: float = 300.0, spend_period_s: float = 86_400.0
    ) -> None:
        self._clock = clock
        self._snapshot: tuple[float, tuple[float | None, float | None, float | None]] | None = None
        self.accepted = Window(clock, window_s)
        self.latency = Window(clock, window_s)
        self.delivered = Window(clock, window_s)
        self.spend = Window(clock, spend_period_s)
        self._balance: float | None = None
        self.version = 0  # bumped when spend or balance changes: health snapshots rebuild

    @property
    def balance(self) -> float | None:
        return self._balance

    @balance.setter
    def balance(self, value: float | None) -> None:
        self._balance = value
        self.version += 1

    def rates(self) -> tuple[float | None, float | None, float | None]:
        """(accepted rate, delivery rate, mean latency), cached for ``SNAPSHOT_TTL_S``."""
        now = self._clock.monotonic()
        if self._snapshot is None or now - self._snapshot[0] > SNAPSHOT_TTL_S:
            rates = (self.accepted.mean(), self.delivered.mean(), self.latency.mean())
            self._snapshot = (now, rates)
        return self._snapshot[1]

    def attempt(self, accepted: bool, latency_s: float) -> None:
        self.accepted.add(1.0 if accepted else 0.0)
        self.latency.add(latency_s)

    def receipt(self, delivered: bool) -> None:
        self.delivered.add(1.0 if delivered else 0.0)

    def spent(self, amount: float, *, limited: bool = True) -> None:
        """Count spend; ``limited`` False (no spend limit) counts it without invalidating
        health snapshots: nothing a policy reads has changed."""
        if amount:
            self.spend.add(amount)
            if limited:
                self.version += 1

    def spend_left(self, limit: float | None) -> float | None:
        return None if limit is None else max(0.0, limit - self.spend.total)
