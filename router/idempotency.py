"""One provider request per idempotency key, also across router instances.

The first sender takes a lease on the key, sends, and commits the result; concurrent senders
with the same key wait for that result; later ones get it replayed. A lease expires, so a
process that dies mid-send does not block the key for ever (the price: a send that crashed
after reaching a provider may be repeated once the lease is gone; the lease defaults to the
send deadline plus 5 s, so a live sender always commits first).

Store faults never become false statements:

* reserve fails: nothing was sent, and the error says so. The reserve may still be applied
  late (a frozen Redis resumes), so its release is queued in the outbox, to run once the
  store's fence has passed: a retry is not blocked for the whole lease.
* anything raised before the send reached a provider releases the key (or queues the release).
* commit fails after the send: the write is retried within the send deadline, then queued in
  the outbox; the real outcomes are returned with ``recorded=False``. Never raised: the caller
  would retry and the recipient would get a second SMS.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio

from router.clock import Clock
from router.errors import IdempotencyConflictError, IdempotencyPendingError, StateStoreError
from router.ids import new_id
from router.model import Message, SendResult
from router.state.base import Acquired, Conflict, Done, StateStore, fingerprint
from router.state.codec import decode_result, encode_result
from router.state.memory import MemoryStateStore
from router.state.outbox import Outbox, PendingWrite

log = logging.getLogger("router.idempotency")
WAIT_STEP_S = (0.01, 0.25)  # first and largest pause while another sender holds the key
COMMIT_STEP_S = (0.05, 0.5)  # first and largest pause between commit retries
LEASE_LOST = "idempotency lease for a key was taken by another sender before commit"
NOTHING_SENT = "Nothing was sent; retry with the same idempotency key once the store is back."


@dataclass(slots=True)
class Progress:
    """Set by the sender once a request may have reached a provider."""

    reached_provider: bool = False


@dataclass(frozen=True, slots=True)
class KeyPolicy:
    lease_s: float
    ttl_s: float
    wait_s: float  # how long to wait for another sender holding the key
    commit_retry_s: float  # how long to retry a failed commit before queueing it


async def send_idempotent(
    store: StateStore,
    outbox: Outbox,
    message: Message,
    send_once: Callable[[Message, Progress], Awaitable[SendResult]],
    *,
    clock: Clock,
    policy: KeyPolicy,
    on_check: Callable[[str], None] = lambda _: None,
) -> SendResult:
    """``on_check`` hears "new", "replay" or "conflict" (for metrics)."""
    key = message.idempotency_key
    assert key is not None
    fp = fingerprint(message)
    token = await _acquire(store, outbox, key, fp, clock, policy)
    if isinstance(token, SendResult):
        on_check("replay")
        return token
    if token is None:
        on_check("conflict")
        raise IdempotencyConflictError(key)
    on_check("new")
    progress = Progress()
    try:
        result = await send_once(message, progress)
    except BaseException as exc:
        # The sender settles every recipient once a request may have left, so what is raised
        # here was raised before anything reached a provider, unless we were cancelled
        # mid-send: then the lease is left to expire (something may have been sent).
        if not progress.reached_provider:
            # A store write that failed may still land (a frozen Redis resumes): hold the key
            # until its fence has passed and its compensation ran, else another instance
            # taking the key would meet our late throttle marks and report a mobile throttled
            # that got no SMS.
            late = exc.settles_at if isinstance(exc, StateStoreError) else None
            with anyio.CancelScope(shield=True):
                await _release(store, outbox, key, token, settles_at=late)
        raise
    recorded = await _commit(store, outbox, key, token, fp, result, policy)
    return result if recorded else dataclasses.replace(result, recorded=False)


async def _acquire(
    store: StateStore, outbox: Outbox, key: str, fp: str, clock: Clock, policy: KeyPolicy
) -> str | SendResult | None:
    """The lease token, the committed result of an earlier send, or None on a conflict."""
    deadline = clock.monotonic() + policy.wait_s
    pause = WAIT_STEP_S[0]
    while True:
        token = new_id()  # unique per attempt; the key, not the token, is what callers know
        try:
            reservation = await store.reserve(key, fp, policy.lease_s, token=token)
        except StateStoreError as exc:
            await _release(store, outbox, key, token, settles_at=exc.settles_at)
            raise exc.known(NOTHING_SENT) from None
        if isinstance(reservation, Acquired):
            return reservation.token
        if isinstance(reservation, Done):
            return decode_result(reservation.payload)
        if isinstance(reservation, Conflict):
            return None
        if clock.monotonic() >= deadline:
            raise IdempotencyPendingError(key)
        await anyio.sleep(pause)
        pause = min(WAIT_STEP_S[1], pause * 2)
        # A late-applied reservation of ours may hold the key: its queued release comes due.
        await outbox.flush_quietly()


async def _release(
    store: StateStore, outbox: Outbox, key: str, token: str, *, settles_at: float | None
) -> None:
    """Give the key back; if that fails (or the failed call may still be applied), queue it."""
    write = PendingWrite("release", lambda s: s.release(key, token), settles_at or 0.0)
    if settles_at is None:
        try:
            await store.release(key, token)
            return
        except StateStoreError as exc:
            log.warning("idempotency key not released yet, queued: %s", exc)
    outbox.add(write)


async def _commit(
    store: StateStore,
    outbox: Outbox,
    key: str,
    token: str,
    fp: str,
    result: SendResult,
    policy: KeyPolicy,
) -> bool:
    """Store the result: retried for ``commit_retry_s``, then queued. True once stored."""
    payload = encode_result(result)
    if isinstance(store, MemoryStateStore):
        # No I/O, no suspension point: nothing can cancel it, so no shield (the shield's
        # bookkeeping costs a few us a send) and nothing to retry.
        if not store.commit_now(key, token, payload, policy.ttl_s, fingerprint=fp):
            log.error(LEASE_LOST)
        return True

    async def commit(s: StateStore) -> object:
        if not await s.commit(key, token, payload, policy.ttl_s, fingerprint=fp):
            log.error(LEASE_LOST)
        return None

    # Real time, not the injected clock: this bounds real waiting on real I/O.
    give_up = time.monotonic() + policy.commit_retry_s
    pause = COMMIT_STEP_S[0]
    stored = False
    with anyio.CancelScope(shield=True):  # the send happened: its record must not be dropped
        while not stored:
            try:
                await commit(store)
                stored = True
            except StateStoreError as exc:
                if time.monotonic() + pause > give_up:
                    log.error(
                        "send result not recorded (%s); returned with recorded=false and "
                        "queued for replay",
                        exc,
                    )
                    outbox.add(PendingWrite("commit", commit, size=len(payload) + 256))
                    break
                await anyio.sleep(pause)
                pause = min(COMMIT_STEP_S[1], pause * 2)
    return stored
