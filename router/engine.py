"""The routing engine's public face: validate, render, then hand over to the dispatcher.

One :class:`Router` per process (or per Celery worker) holds one long-lived HTTP client per
provider. A send never raises for provider failures: every recipient gets exactly one final
status in the :class:`SendResult`. It raises only for faults of the message itself (unknown
scene, missing params, invalid mobiles in strict mode) or of the configuration.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter, defaultdict
from collections.abc import Mapping
from types import TracebackType

import anyio
import httpx

from policies.base import Policy
from providers.base import (
    DeliveryReport,
    InboundMessage,
    Provider,
)
from providers.http import HttpClient
from router.bounded import BoundedCache
from router.breaker import CircuitBreaker
from router.broadcasts import Broadcasts
from router.clock import Clock, SystemClock
from router.config import RouterSettings
from router.dispatch import Dispatcher
from router.errors import (
    IdempotencyConflictError,
    IdempotencyPendingError,
    MessageError,
    RouterError,
    StateStoreError,
)
from router.events import (
    BreakerChanged,
    DedupeChecked,
    EventBus,
    InboundDelivered,
    SendFinished,
    SendRefused,
    SendStarted,
)
from router.explain import Explanation, explain
from router.health import DRAWS, HealthView
from router.idempotency import KeyPolicy, Progress, send_idempotent
from router.ids import new_id
from router.inbound import InboundDelivery, InboundDeliveryError
from router.intake import ReceiptIntake
from router.lifecycle import SharedWriters, start_background
from router.model import Message, SendResult
from router.prepare import Prepared, parts, prepare
from router.receipts import (
    Delivery,
    ReceiptBook,
)
from router.reconcile import Reconciler
from router.runtime import Journal, RouteJob
from router.state.base import StateStore
from router.state.jobs import job_store_for
from router.state.outbox import Outbox
from router.throttle import Throttles
from router.transport import as_client
from router.wiring import (
    build_client,
    build_policy,
    build_providers,
    build_runtimes,
    build_store,
)

log = logging.getLogger("router.engine")
# Recent results for GET /v1/messages/{id}: bounded by count, bytes (a broadcast result holds
# one outcome per recipient, ~300 bytes each) and age.
RECENT_RESULTS = 10_000
RECENT_BYTES = 32 * 1024 * 1024
RECENT_TTL_S = 3600.0


def result_size(result: SendResult) -> int:
    """Bytes a kept result holds (tracemalloc-measured: ~460 plus ~335 per recipient with one
    attempt; tests/test_bounded_bytes.py)."""
    return 460 + 335 * len(result.recipients)


class Router:
    """Routes messages across the configured providers. Use as an async context manager::

    async with Router(load_settings("router.toml")) as router:
        result = await router.send(Message(mobiles=["13800138000"], scene="login_code",
                                           params={"code": "123456"}))
    """

    def __init__(
        self,
        settings: RouterSettings,
        *,
        providers: Mapping[str, Provider] | None = None,
        policy: Policy | None = None,
        events: EventBus | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        clients: Mapping[str, HttpClient | httpx.AsyncClient] | None = None,
        store: StateStore | None = None,
    ) -> None:
        """``providers``, ``policy`` and ``clients`` default to what ``settings`` describes;
        pass them to embed custom adapters or HTTP clients (an ``httpx.AsyncClient`` is one;
        the caller then closes its clients).
        """
        self.settings = settings
        self.clock = clock or SystemClock()
        self.events = events or EventBus()
        self._rng = rng or random.Random()
        self.providers = dict(providers or build_providers(settings, self.clock))
        given = {name: as_client(client) for name, client in (clients or {}).items()}
        self._owned_clients = {
            n: build_client(settings, p) for n, p in self.providers.items() if n not in given
        }
        self.store: StateStore = store or build_store(settings, self.clock)
        self.runtimes = build_runtimes(
            settings,
            self.providers,
            {**self._owned_clients, **given},
            self.clock,
            self._rng,
            lambda name, old, new: self.events.emit(BreakerChanged(name, old.value, new.value)),
            store=self.store,
        )
        state = settings.state
        self.outbox = Outbox(
            self.store, max_entries=state.outbox_max, max_bytes=state.outbox_max_bytes
        )
        self.throttles = Throttles(settings, self.store, self.outbox)
        self.inbound = InboundDelivery(settings.inbound, self.store)
        self._key_policy = KeyPolicy(
            lease_s=state.lease_s or settings.send_deadline_s + 5,
            ttl_s=state.idempotency_ttl_s,
            wait_s=settings.send_deadline_s + 5,
            commit_retry_s=min(state.commit_retry_s, settings.send_deadline_s),
        )
        self.receipts = ReceiptBook(self.clock)
        self._background: anyio.abc.TaskGroup | None = None
        self._shared = SharedWriters()
        self._recent: BoundedCache[str, SendResult] = BoundedCache(
            self.clock,
            max_entries=RECENT_RESULTS,
            max_bytes=RECENT_BYTES,
            ttl_s=RECENT_TTL_S,
            # No warning when it drops the oldest: "recent" is all it promises (a look-up
            # past it answers "not in the recent results"), and under steady load it would
            # fire every minute, hiding the warnings that mean a loss.
            size_of=result_size,
        )
        self.health = HealthView(self.runtimes, policy or build_policy(settings), self.clock)
        self.intake = ReceiptIntake(
            self.runtimes,
            self.receipts,
            self.events,
            self.clock,
            default_region=settings.default_region,
            status_ttl_s=settings.state.idempotency_ttl_s,
        )
        reconciler = Reconciler(
            settings,
            self.runtimes,
            self.receipts,
            self.clock,
            record=self.record_receipts,
            events=self.events,
        )
        self.dispatcher = Dispatcher(
            settings, self.runtimes, self.health, reconciler, self.intake, self.events, self.clock
        )
        # Broadcast jobs live where the state store lives (Redis: shared with every instance).
        self.broadcasts = Broadcasts(self, job_store_for(self.store))

    async def __aenter__(self) -> Router:
        # Background pulls live as long as the router; entered and left in the same task
        # (the sidecar's lifespan, SyncRouter's holder task, or the caller's async with).
        self._background = anyio.create_task_group()
        await self._background.__aenter__()
        self._shared = await start_background(self, self._background)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        background, self._background = self._background, None
        if background is not None:
            background.cancel_scope.cancel()
            await background.__aexit__(None, None, None)
        await self.inbound.aclose()
        with anyio.move_on_after(self.settings.state.redis_timeout_s * 4, shield=True):
            await self.flush_shared()
        if len(self.outbox):
            with anyio.move_on_after(self.settings.state.redis_timeout_s * 4, shield=True):
                await self.outbox.flush_quietly()
        if len(self.outbox):
            log.error(
                "closing with %d state writes not stored (idempotency records or throttle "
                "marks); the state store was unreachable",
                len(self.outbox),
            )
        await self.store.aclose()
        for client in self._owned_clients.values():
            # The aiohttp client reopens its session on next use; an httpx client cannot be
            # reused once closed, so a Router with an httpx transport is entered once.
            await client.aclose()

    # -- public API -------------------------------------------------------------------------

    async def send(self, message: Message) -> SendResult:
        """Send ``message`` to every valid recipient; never raises for provider failures.

        With an ``idempotency_key``, a key seen before returns the recorded result
        (``idempotent_replay``) and concurrent sends with it make one provider request.

        Raises only documented :class:`RouterError` subclasses, and only while nothing has
        been sent; once a request may have reached a provider the result says what happened
        (``recorded=False`` when the state store could not record it yet).
        """
        return await self._send(message, None)

    async def send_journaled(self, message: Message, journal: Journal) -> SendResult:
        """:meth:`send` for one chunk of a broadcast job (:mod:`router.broadcasts`): every
        provider request is first written by ``journal``, and not sent if it answers False.
        The job's claim on the chunk replaces the idempotency key (give none)."""
        if message.idempotency_key is not None:
            raise MessageError("a journaled send takes no idempotency key (the job dedupes)")
        return await self._send(message, journal)

    async def _send(self, message: Message, journal: Journal | None) -> SendResult:
        scene = message.scene or "content"
        try:
            await self._replay_outbox(message)
            if message.idempotency_key is None:
                return await self._send_once(message, Progress(), journal)
            return await send_idempotent(
                self.store,
                self.outbox,
                message,
                self._send_once,
                clock=self.clock,
                policy=self._key_policy,
                on_check=lambda result: self.events.emit(DedupeChecked(scene, result)),
            )
        except RouterError as exc:
            self.events.emit(SendRefused(scene, _refusal(exc), len(message.mobiles)))
            raise
        except Exception as exc:
            # A bug of ours, raised before anything was sent (after that, _send_once settles
            # every recipient instead of raising): report it as a RouterError, never a bare one.
            log.exception("send refused by an internal error; nothing was sent")
            self.events.emit(SendRefused(scene, "internal", len(message.mobiles)))
            raise RouterError(
                f"internal error before sending ({type(exc).__name__}); nothing was sent. "
                "This is a bug in sms-router: please report it with the log line above."
            ) from exc

    async def _replay_outbox(self, message: Message) -> None:
        """Queued state writes go first: a keyed or throttled send needs the store caught up
        (a retry must find the record its first send could not store, and must not find a
        throttle mark or lease left by a call that timed out and was applied late)."""
        if not len(self.outbox):
            return
        if message.idempotency_key is None and not self.throttles.window(message):
            if self.outbox.due():
                await self.outbox.flush_quietly()
            return
        wait = self.outbox.settle_wait_s()
        if wait > 0:
            # A compensation waits for its store fence (about timeout + 2 x clock skew).
            state = self.settings.state
            await anyio.sleep(min(wait, state.redis_timeout_s + 2 * state.clock_skew_s))
        try:
            await self.outbox.flush()
        except StateStoreError as exc:
            raise exc.known(
                f"{len(self.outbox)} earlier state writes are still queued; nothing was "
                "sent. Retry once the store is back."
            ) from None

    async def _send_once(
        self, message: Message, progress: Progress, journal: Journal | None = None
    ) -> SendResult:
        started = self.clock.monotonic()
        prepared = self._prepare(message)
        send_id = new_id()
        deadline_s = self.settings.send_deadline_s
        job = RouteJob(
            send_id,
            prepared.scene,
            prepared.renders,
            self._rng.randrange(DRAWS) / DRAWS,
            started + deadline_s,
            parts=parts(prepared.renders.values()),
            started_at=self.clock.now(),
            journal=journal,
        )
        trackers = prepared.recipients.trackers
        window = self.throttles.window(message)
        if window:
            await self.throttles.take(prepared.scene, trackers, window, send_id)
        if self.events.active:
            self.events.emit(SendStarted(send_id, prepared.scene, len(trackers)))
        recorded = True
        try:
            progress.reached_provider = True
            # The send deadline. anyio's clock on asyncio is the loop's: read directly
            # (move_on_after looks the backend up on every call, ~8 us a send).
            with anyio.CancelScope(deadline=asyncio.get_running_loop().time() + deadline_s):
                await self.dispatcher.route(job, trackers)
        except Exception:
            # Never raise once a request may have left: settle every recipient truthfully
            # (in flight: unknown; never sent: rejected) and return.
            log.exception("send %s stopped by an internal error; outcomes settled", send_id)
        finally:
            for tracker in trackers:
                if tracker.status is None:
                    tracker.deadline_passed()
            if window:
                recorded = await self.throttles.release_unsent(prepared.scene, trackers, send_id)
            result = SendResult(
                send_id,
                prepared.recipients.outcomes(),
                panic=any(t.panic for t in trackers),
                recorded=recorded,
            )
            self._emit_finished(prepared.scene, result, self.clock.monotonic() - started)
        self._remember(result)
        return result

    def _remember(self, result: SendResult) -> None:
        self._recent.put(result.message_id, result)

    async def deliver_inbound(self, messages: list[InboundMessage]) -> None:
        """Hand inbound replies (MO) to ``inbound.destination``; raises
        :class:`router.inbound.InboundDeliveryError` when they could not be stored (the
        caller must not acknowledge them to the provider)."""
        destination = self.settings.inbound.destination
        by_provider = Counter(m.provider for m in messages)
        try:
            await self.inbound.deliver(messages)
        except InboundDeliveryError as exc:
            for provider, n in by_provider.items():
                self.events.emit(InboundDelivered(provider, n, "failed", destination, str(exc)))
            raise
        for provider, n in by_provider.items():
            self.events.emit(InboundDelivered(provider, n, "delivered", destination))

    def inbound_messages(self) -> list[InboundMessage]:
        """Replies kept in memory (``inbound.destination = "memory"``), oldest first."""
        return list(self.inbound.kept)

    async def record_receipts(self, reports: list[DeliveryReport]) -> list[DeliveryReport]:
        """Take receipts (pushed or pulled): settle each on its recipient, share the first
        final status through the store, and count it once. Returns those counted here: a
        duplicate, the other path's receipt or one another instance took first counts nothing.
        """
        return await self.intake.record(reports, self.store)

    async def flush_shared(self) -> None:
        """Write the queued cross-instance records now (trace links, and the numbers of sent
        batches whose pulled receipts are masked); a background task does it every 0.5 s."""
        await self._shared.flush()

    async def delivery_status(
        self, provider: str, provider_message_id: str, mobile: str
    ) -> Delivery:
        """One recipient's delivery: the first final status any instance recorded, else what
        this instance knows (pending, or ambiguous when a masked receipt fits it and another
        recipient), or ``not_supported`` for a provider without receipts. ``mobile`` is the
        recipient's number (E.164 or any form the router accepts)."""
        return await self.intake.delivery(provider, provider_message_id, mobile, self.store)

    def recent_result(self, message_id: str) -> SendResult | None:
        """A result of this process's last sends (bounded), for status look-ups."""
        return self._recent.get(message_id)

    def explain(self, message: Message) -> Explanation:
        """The ranking the router would use for ``message``, with reasons; sends nothing."""
        prepared = self._prepare(message, require_route=False)
        return explain(prepared, self.settings, self.runtimes, self.health)

    def set_enabled(self, provider: str, enabled: bool) -> None:
        """Operator switch: a disabled provider is never a candidate."""
        self.runtimes[provider].enabled = enabled

    def is_enabled(self, provider: str) -> bool:
        return self.runtimes[provider].enabled

    def breaker(self, provider: str) -> CircuitBreaker:
        return self.runtimes[provider].breaker

    def _prepare(self, message: Message, *, require_route: bool = True) -> Prepared:
        return prepare(message, self.settings, self.providers, require_route=require_route)

    def _emit_finished(self, scene: str, result: SendResult, duration_s: float) -> None:
        if not self.events.active:
            return
        counts: dict[str, int] = defaultdict(int)
        for r in result.recipients:
            counts[r.status.value] += 1
        self.events.emit(
            SendFinished(
                send_id=result.message_id,
                scene=scene,
                duration_s=duration_s,
                recipients=len(result.recipients),
                by_status=tuple(sorted(counts.items())),
                replay=result.idempotent_replay,
                panic=result.panic,
            )
        )


def _refusal(exc: RouterError) -> str:
    """The bounded reason label of a refused send."""
    if isinstance(exc, StateStoreError):
        return "store"
    if isinstance(exc, MessageError):
        return "bad_message"
    if isinstance(exc, IdempotencyConflictError):
        return "conflict"
    if isinstance(exc, IdempotencyPendingError):
        return "pending"
    return "internal"


__all__ = ["Explanation", "Router"]
