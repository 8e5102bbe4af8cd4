"""A map bounded by entries, by bytes and by age: what a long-lived router may keep per send.

An entry count alone is no bound: 100,000 results of 1-recipient sends and 100,000 results of
3,000-recipient broadcasts differ by three orders of magnitude, and under sustained load every
retained object is walked again by the garbage collector. Every per-send structure the router
keeps (recent results, sent message ids, receipts, trace links) is one of these, with a size
estimate per value and a time to live; the oldest entries leave first. An entry that leaves
before its time (a bound was reached) is reported through ``on_full``: the operator must learn
that the router forgets early (:func:`warn_when_full` logs it at most once a minute).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from router.clock import Clock

K = TypeVar("K")
V = TypeVar("V")


class BoundedCache(Generic[K, V]):
    """Insertion-ordered (a re-put moves to the end); evicts the oldest past any bound."""

    __slots__ = (
        "_bytes",
        "_clock",
        "_items",
        "_max_bytes",
        "_max_entries",
        "_on_full",
        "_size_of",
        "_ttl",
    )

    def __init__(
        self,
        clock: Clock,
        *,
        max_entries: int,
        max_bytes: int,
        ttl_s: float,
        size_of: Callable[[V], int],
        on_full: Callable[[V], object] | None = None,
    ) -> None:
        """``size_of`` estimates a value's retained bytes (key and entry overhead included;
        tests/test_bounded_bytes.py holds each estimate to tracemalloc). ``on_full`` is called
        with an entry dropped before its time to live because a bound was reached (values
        with an expiry of their own check it there)."""
        self._clock = clock
        self._on_full = on_full
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
            _, (deadline, size, value) = items.popitem(last=False)
            self._bytes -= size
            if deadline > now and self._on_full is not None:
                self._on_full(value)


def warn_when_full(
    clock: Clock, log: logging.Logger, what: str, consequence: str
) -> Callable[[object], None]:
    """An ``on_full`` that logs a warning naming ``what`` forgets early and what that breaks,
    at most once a minute (a full cache evicts on every put)."""
    last = float("-inf")

    def warn(_: object) -> None:
        nonlocal last
        now = clock.monotonic()
        if now - last >= 60:
            last = now
            log.warning("%s is full: forgetting entries before they expire; %s", what, consequence)

    return warn
