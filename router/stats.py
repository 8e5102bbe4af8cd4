"""Recent per-provider quality, on an injected clock: what cost-aware routing trades price for.

Accepted rate and latency come from attempts; delivery rate from receipts; spend from the
parts sent. All are bucketed rolling windows (:mod:`router.windows`, fixed memory), so an old
outage stops counting against a provider. With the Redis store they are shared: every
``state.stats_sync_s`` an instance adds what it saw to bucketed counters in Redis and reads
back every instance's sums (:func:`router.pollers.sync_stats`), so a receipt that lands on
another instance moves the delivery rate here, and a spend budget is the account's.
"""

from __future__ import annotations

from router.clock import Clock
from router.state.base import StatsCounts
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
        self.window_s, self.spend_period_s = window_s, spend_period_s
        # Shared across instances (Redis): what this instance saw since its last sync, and
        # every instance's sums as of that sync. None: this process's own windows only.
        self.shared: StatsCounts | None = None
        self._pending = [0.0] * 6

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
            if self.shared is None:
                rates = (self.accepted.mean(), self.delivered.mean(), self.latency.mean())
            else:
                t, p = self.shared, self._pending
                attempts, receipts = t.attempts + p[1], t.receipts + p[4]
                rates = (
                    (t.accepted + p[0]) / attempts if attempts else None,
                    (t.delivered + p[3]) / receipts if receipts else None,
                    (t.latency_s + p[2]) / attempts if attempts else None,
                )
            self._snapshot = (now, rates)
        return self._snapshot[1]

    def attempt(self, accepted: bool, latency_s: float) -> None:
        self.accepted.add(1.0 if accepted else 0.0)
        self.latency.add(latency_s)
        p = self._pending
        p[0] += accepted
        p[1] += 1
        p[2] += latency_s

    def receipt(self, delivered: bool) -> None:
        self.delivered.add(1.0 if delivered else 0.0)
        self._pending[3] += delivered
        self._pending[4] += 1

    def take_pending(self) -> StatsCounts:
        """What this instance saw since the last call (for the shared windows)."""
        taken, self._pending = StatsCounts(*self._pending), [0.0] * 6
        return taken

    def give_back(self, pending: StatsCounts) -> None:
        """A sync that failed: its deltas go out with the next one."""
        p = self._pending
        for i, value in enumerate(
            (
                pending.accepted,
                pending.attempts,
                pending.latency_s,
                pending.delivered,
                pending.receipts,
                pending.spend,
            )
        ):
            p[i] += value

    def share(self, totals: StatsCounts) -> None:
        """Every instance's sums as of this sync (this instance's deltas included)."""
        if self.shared is None or self.shared.spend != totals.spend:
            self.version += 1  # a spend budget may have moved: rebuild health snapshots
        self.shared = totals
        self._snapshot = None

    def spent(self, amount: float, *, limited: bool = True) -> None:
        """Count spend; ``limited`` False (no spend limit) counts it without invalidating
        health snapshots: nothing a policy reads has changed."""
        if amount:
            self.spend.add(amount)
            self._pending[5] += amount
            if limited:
                self.version += 1

    def spend_left(self, limit: float | None) -> float | None:
        if limit is None:
            return None
        spent = self.spend.total if self.shared is None else self.shared.spend + self._pending[5]
        return max(0.0, limit - spent)
