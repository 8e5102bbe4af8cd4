"""Rolling windows as bucketed counters: O(1) per event, fixed memory whatever the traffic.

A deque of every event in the window grows with traffic (the spend window used to keep one
entry per accepted send for 24 hours) and makes the garbage collector walk it again and again.
A :class:`Window` keeps ``buckets`` (sum, count) pairs instead: an event leaves the window
between ``window_s - window_s / buckets`` and ``window_s`` after it was added, which is all the
precision a breaker, a budget or a price trade-off needs.
"""

from __future__ import annotations

from router.clock import Clock


class Window:
    """Sum and count of values added over the last ``window_s`` seconds (bucketed)."""

    __slots__ = ("_bucket_s", "_clock", "_count", "_counts", "_head", "_n", "_sum", "_sums")

    def __init__(self, clock: Clock, window_s: float, buckets: int = 60) -> None:
        if window_s <= 0 or buckets < 1:
            raise ValueError("a window needs window_s > 0 and at least one bucket")
        self._clock = clock
        self._n = buckets
        self._bucket_s = window_s / buckets
        self._sums = [0.0] * buckets
        self._counts = [0] * buckets
        self._head = self._index()  # the bucket the current time falls in
        self._sum = 0.0
        self._count = 0

    def _index(self) -> int:
        return int(self._clock.monotonic() // self._bucket_s)

    def _advance(self) -> None:
        now = self._index()
        steps = now - self._head
        if steps <= 0:
            return
        if steps >= self._n:
            self.clear()
        else:
            for i in range(1, steps + 1):
                slot = (self._head + i) % self._n
                self._sum -= self._sums[slot]
                self._count -= self._counts[slot]
                self._sums[slot] = 0.0
                self._counts[slot] = 0
            if not self._count:
                self._sum = 0.0  # no float drift left behind by an empty window
        self._head = now

    def add(self, value: float = 1.0) -> None:
        self._advance()
        slot = self._head % self._n
        self._sums[slot] += value
        self._counts[slot] += 1
        self._sum += value
        self._count += 1

    def clear(self) -> None:
        self._sums = [0.0] * self._n
        self._counts = [0] * self._n
        self._sum = 0.0
        self._count = 0

    @property
    def count(self) -> int:
        self._advance()
        return self._count

    @property
    def total(self) -> float:
        self._advance()
        return self._sum

    def mean(self) -> float | None:
        self._advance()
        return self._sum / self._count if self._count else None
