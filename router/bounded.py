"""A map bounded by entries, by bytes and by age: what a long-lived router may keep per send.

An entry count alone is no bound: 100,000 results of 1-recipient sends and 100,000 results of
3,000-recipient broadcasts differ by three orders of magnitude, and under sustained load every
retained object is walked again by the garbage collector. Every per-send structure the router
keeps (recent results, sent message ids, receipts, trace links) is one of these, with a size
estimate per value and a time to live; the oldest entries leave first.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from router.clock import Clock

K = TypeVar("K")
V = TypeVar("V")


class BoundedCache(Generic[K, V]):
    """Insertion-ordered (a re-put moves to the end); evicts the oldest past any bound."""

    __slots__ = ("_bytes", "_clock", "_items", "_max_bytes", "_max_entries", "_size_of", "_ttl")

    def __init__(
        self,
        clock: Clock,
        *,
        max_entries: int,
        max_bytes: int,
        ttl_s: float,
        size_of: Callable[[V], int],
    ) -> None:
        """``size_of`` estimates a value's retained bytes (key and entry overhead included)."""
        self._clock = clock
        self._max_entries, self._max_bytes, self._ttl = max_entries, max_bytes, ttl_s
        self._size_of = size_of
        self._items: OrderedDict[K, tuple[float, int, V]] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return self.get(key) is not None  # type: ignore[arg-type]

    @property
    def bytes(self) -> int:
        """The estimated bytes retained."""
        return self._bytes

    def put(self, key: K, value: V) -> None:
        self.pop(key)
        size = self._size_of(value)
        self._items[key] = (self._clock.monotonic() + self._ttl, size, value)
        self._bytes += size
        self._evict()

    def get(self, key: K) -> V | None:
        item = self._items.get(key)
        if item is None:
            return None
        if item[0] <= self._clock.monotonic():
            self.pop(key)
            return None
        return item[2]

    def pop(self, key: K) -> V | None:
        item = self._items.pop(key, None)
        if item is None:
            return None
        self._bytes -= item[1]
        return item[2]

    def values(self) -> Iterator[V]:
        now = self._clock.monotonic()
        return (v for deadline, _, v in self._items.values() if deadline > now)

    def _evict(self) -> None:
        items, now = self._items, self._clock.monotonic()
        while items and (
            len(items) > self._max_entries
            or self._bytes > self._max_bytes
            or next(iter(items.values()))[0] <= now
        ):
            _, (_, size, _) = items.popitem(last=False)
            self._bytes -= size
