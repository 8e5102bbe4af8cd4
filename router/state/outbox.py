"""State writes that must not be lost while the store is unreachable: a bounded outbox.

Once any attempt may have reached a provider, a failing store must not turn into "nothing was
sent". The router returns the real outcomes and queues what it could not write here: the
idempotency record (so a retry with the key replays instead of sending again), and the
compensations for writes that failed but may be applied late by a frozen store (release a
lease, remove throttle marks nobody earned). Every write is idempotent by token, so replaying
one twice, or after the store applied it late, leaves no false state.

Replayed in order by :meth:`Outbox.flush`: periodically in the background, and before this
instance sends anything new that needs the store. Bounded by entries and by bytes; a full
outbox refuses new entries (logged as an error): the router then refuses keyed sends until the
store is back, instead of forgetting records.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio

from router.errors import StateStoreError
from router.state.base import StateStore

log = logging.getLogger("router.outbox")
ENTRY_OVERHEAD = 256  # bytes per entry besides its payload: keys, tokens, closures


@dataclass(frozen=True, slots=True)
class PendingWrite:
    what: str  # "commit", "release", "unthrottle": for logs
    apply: Callable[[StateStore], Awaitable[object]]
    # Epoch seconds (wall time, as the store's fence): a compensation for a call that may still
    # be applied late waits until that can no longer happen.
    not_before: float = 0.0
    size: int = ENTRY_OVERHEAD


class Outbox:
    def __init__(self, store: StateStore, *, max_entries: int, max_bytes: int) -> None:
        self._store = store
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._queue: deque[PendingWrite] = deque()
        self._bytes = 0
        self._lock = anyio.Lock()  # one replay at a time: entries leave the queue in order

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def full(self) -> bool:
        return len(self._queue) >= self._max_entries or self._bytes >= self._max_bytes

    def add(self, write: PendingWrite) -> bool:
        """Queue ``write``; False (and an error log line) when the outbox is full."""
        if self.full:
            log.error(
                "state outbox full (%d writes, %d bytes): a %s is lost; the state store has "
                "been unreachable too long",
                len(self._queue),
                self._bytes,
                write.what,
            )
            return False
        self._queue.append(write)
        self._bytes += write.size
        return True

    def settle_wait_s(self) -> float:
        """Seconds until every queued write may be applied (0 when all are due)."""
        if not self._queue:
            return 0.0
        return max(0.0, max(w.not_before for w in self._queue) - time.time())

    def due(self) -> bool:
        """Whether some queued write may be applied now."""
        now = time.time()
        return any(w.not_before <= now for w in self._queue)

    async def flush(self) -> None:
        """Apply every due write in order; raises :class:`StateStoreError` (keeping the rest)
        when the store still fails. Writes not yet due stay queued."""
        async with self._lock:
            await self._flush()

    async def _flush(self) -> None:
        now = time.time()
        waiting: deque[PendingWrite] = deque()
        try:
            while self._queue:
                write = self._queue[0]
                if write.not_before > now:
                    waiting.append(self._queue.popleft())
                    continue
                await write.apply(self._store)
                self._queue.popleft()
                self._bytes -= write.size
        finally:
            self._queue.extendleft(reversed(waiting))

    async def flush_quietly(self) -> bool:
        """:meth:`flush`, logging instead of raising; True when nothing due is left."""
        if not self._queue:
            return True
        try:
            await self.flush()
        except StateStoreError as exc:
            log.warning("state outbox: %d writes still pending: %s", len(self._queue), exc)
            return False
        return not self.due()
