"""Recent per-provider quality, on an injected clock: what cost-aware routing trades price for.

Accepted rate and latency come from attempts; delivery rate from receipts; spend from the
parts sent. All are rolling windows, so an old outage stops counting against a provider.
"""

from __future__ import annotations

from collections import deque

from router.clock import Clock


class Rolling:
    """Sum and count of values over the last ``window_s`` seconds."""

    def __init__(self, clock: Clock, window_s: float) -> None:
        self._clock, self._window = clock, window_s
        self._items: deque[tuple[float, float]] = deque()
        self._sum = 0.0

    def add(self, value: float) -> None:
        self._items.append((self._clock.monotonic(), value))
        self._sum += value

    def _expire(self) -> None:
        horizon = self._clock.monotonic() - self._window
        while self._items and self._items[0][0] < horizon:
            self._sum -= self._items.popleft()[1]

    @property
    def count(self) -> int:
        self._expire()
        return len(self._items)

    @property
    def total(self) -> float:
        self._expire()
        return self._sum

    def mean(self) -> float | None:
        self._expire()
        return self._sum / len(self._items) if self._items else None


SNAPSHOT_TTL_S = 0.1  # rates are recomputed at most ten times a second, not per message


class ProviderStats:
    def __init__(
        self, clock: Clock, *, window_s: float = 300.0, spend_period_s: float = 86_400.0
    ) -> None:
        self._clock = clock
        self._snapshot: tuple[float, tuple[float | None, float | None, float | None]] | None = None
        self.accepted = Rolling(clock, window_s)
        self.latency = Rolling(clock, window_s)
        self.delivered = Rolling(clock, window_s)
        self.spend = Rolling(clock, spend_period_s)
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

    def spent(self, amount: float) -> None:
        if amount:
            self.spend.add(amount)
            self.version += 1

    def spend_left(self, limit: float | None) -> float | None:
        return None if limit is None else max(0.0, limit - self.spend.total)
