"""Trace links that cross instances: the trace context of the send behind each provider message
id, written to the shared store in batches, so a receipt that reaches another instance (a
push through a load balancer, a pull by whichever instance polls) still links its
``sms.receipt`` span to the ``sms.send`` span that caused it.

Written off the hot path: the tracing sink queues (bounded; the oldest is dropped and counted
when the store cannot keep up) and a background task flushes every ``FLUSH_S`` in one round
trip. Read only for a receipt this instance did not send, and only while tracing is on.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Protocol, runtime_checkable

import anyio

from router.errors import StateStoreError
from router.state.base import StateStore

log = logging.getLogger("router.links")
FLUSH_S = 0.5
MAX_PENDING = 10_000


@runtime_checkable
class LinksConsumer(Protocol):
    """An event sink that shares send trace contexts (the tracing sink)."""

    links: TraceLinks | None


class TraceLinks:
    def __init__(
        self,
        store: StateStore,
        ttl_s: float,
        max_pending: int = MAX_PENDING,
        *,
        prefix: str = "",
        what: str = "trace links",
    ) -> None:
        """``prefix`` and ``what`` let another kind of cross-instance record (the numbers of a
        sent batch) use the same batched writer under keys of its own."""
        self.store = store
        self.ttl_s = ttl_s
        self.prefix = prefix
        self.what = what
        self._pending: deque[tuple[str, str]] = deque(maxlen=max_pending)
        self.dropped = 0

    def key(self, provider: str, message_id: str) -> str:
        return f"{self.prefix}{provider}:{message_id}"

    def put(self, provider: str, message_id: str, traceparent: str) -> None:
        """Queue one link (sync: called by the tracing sink inside the send path)."""
        if len(self._pending) == self._pending.maxlen:
            self.dropped += 1
        self._pending.append((self.key(provider, message_id), traceparent))

    async def get(self, provider: str, message_id: str) -> str | None:
        """The send's trace context for ``message_id`` (queued here, or in the store)."""
        key = self.key(provider, message_id)
        for queued, value in reversed(self._pending):
            if queued == key:
                return value
        try:
            return await self.store.get_link(key)
        except StateStoreError as exc:
            log.debug("%s not read: %s", self.what, exc)
            return None

    async def flush(self) -> None:
        if not self._pending:
            return
        batch = dict(self._pending)
        self._pending.clear()
        try:
            await self.store.put_links(batch, self.ttl_s)
        except StateStoreError as exc:  # a lost link loses no message
            log.warning("%d %s not shared: %s", len(batch), self.what, exc)

    async def run(self, interval_s: float = FLUSH_S) -> None:
        while True:
            await anyio.sleep(interval_s)
            await self.flush()
