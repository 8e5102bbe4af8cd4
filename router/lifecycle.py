"""What runs beside a router for as long as it is open: receipt pulls, shared-state syncs, the
outbox, balance polls, the local broadcast executor and the cross-instance record writers."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from anyio.abc import TaskGroup

from router.broadcasts import LocalExecutor
from router.links import LinksConsumer, TraceLinks
from router.pollers import (
    StatsStore,
    poll_balances,
    poll_receipts,
    replay_outbox,
    sync_breakers,
    sync_stats,
)
from router.state.memory import MemoryStateStore

if TYPE_CHECKING:
    from router.engine import Router

log = logging.getLogger("router.engine")


class SharedWriters:
    """The batched writers of cross-instance records (with a shared store)."""

    def __init__(self) -> None:
        self.links: TraceLinks | None = None  # trace contexts of sampled sends
        self.sent: TraceLinks | None = None  # the numbers of each sent batch

    async def flush(self) -> None:
        for writer in (self.links, self.sent):
            if writer is not None:
                await writer.flush()


async def start_background(router: Router, tasks: TaskGroup) -> SharedWriters:
    """Start everything ``router``'s settings ask for in ``tasks``; the writers it set up."""
    settings, state = router.settings, router.settings.state
    if settings.receipt_poll_s:
        tasks.start_soon(
            poll_receipts, router.runtimes, settings.receipt_poll_s, router.record_receipts
        )
    if state.breaker_sync_s:
        tasks.start_soon(
            sync_breakers, router.store, router.runtimes, state.breaker_sync_s, router.clock
        )
    tasks.start_soon(replay_outbox, router.outbox, state.outbox_flush_s)
    # Shared provider quality and spend: with a store that can (Redis).
    if state.stats_sync_s and isinstance(router.store, StatsStore):
        tasks.start_soon(sync_stats, router.store, router.runtimes, state.stats_sync_s)
    if settings.broadcasts.executor == "local":
        await tasks.start(LocalExecutor(router.broadcasts).run)
    else:
        from router.celery import CeleryEnqueue

        router.broadcasts.executing_with(CeleryEnqueue(settings.broadcasts).enqueue)
    check = getattr(router.store, "production_warnings", None)
    if check is not None:
        for warning in await check():
            log.warning("%s", warning)
    writers = SharedWriters()
    tracing = [s for s in router.events.sinks if isinstance(s, LinksConsumer)]
    if tracing:  # receipts that land on another instance still link to their send
        writers.links = TraceLinks(router.store, state.idempotency_ttl_s)
        for sink in tracing:
            sink.links = writers.links
        router.intake.links = writers.links
        tasks.start_soon(writers.links.run)
    if router.intake.has_receipts and not isinstance(router.store, MemoryStateStore):
        # Receipts and delivery questions reach whichever instance polls or is asked: each
        # sent batch's numbers are shared (batched, off the send path) so that instance can
        # match masked pulls and tell "pending" from "never sent".
        writers.sent = TraceLinks(
            router.store, state.idempotency_ttl_s, prefix="sent:", what="sent batches"
        )
        router.intake.shared_sent = writers.sent
        tasks.start_soon(writers.sent.run)
    if settings.balance_poll_s:
        tasks.start_soon(
            poll_balances, list(router.runtimes.values()), settings.balance_poll_s, router.events
        )
    return writers
