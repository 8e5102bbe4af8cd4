"""One provider request per idempotency key, also across router instances.

The first sender takes a lease on the key, sends, and commits the result; concurrent senders
with the same key wait for that result; later ones get it replayed. A lease expires, so a
process that dies mid-send does not block the key for ever (the price: a send that crashed
after reaching a provider may be repeated once the lease is gone; the lease defaults to the
send deadline plus 5 s, so a live sender always commits first).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import anyio

from router.clock import Clock
from router.errors import IdempotencyConflictError, IdempotencyPendingError, MessageError
from router.model import Message, SendResult
from router.state.base import Acquired, Conflict, Done, StateStore, fingerprint
from router.state.codec import decode_result, encode_result

log = logging.getLogger("router.idempotency")
WAIT_STEP_S = (0.01, 0.25)  # first and largest pause while another sender holds the key


async def send_idempotent(
    store: StateStore,
    message: Message,
    send_once: Callable[[Message], Awaitable[SendResult]],
    *,
    clock: Clock,
    lease_s: float,
    ttl_s: float,
    wait_s: float,
    on_check: Callable[[str], None] = lambda _: None,
) -> SendResult:
    """``on_check`` hears "new", "replay" or "conflict" (for metrics)."""
    key = message.idempotency_key
    assert key is not None
    try:
        token = await _acquire(store, key, fingerprint(message), clock, lease_s, wait_s)
    except IdempotencyConflictError:
        on_check("conflict")
        raise
    if isinstance(token, SendResult):
        on_check("replay")
        return token
    on_check("new")
    try:
        result = await send_once(message)
    except MessageError:
        # Raised before anything was sent: give the key back so a corrected retry can go.
        with anyio.CancelScope(shield=True):
            await store.release(key, token)
        raise
    # Any other failure leaves the lease to expire: something may have reached a provider.
    if not await store.commit(key, token, encode_result(result), ttl_s):
        log.error("idempotency lease for a key expired before commit; raise state.lease_s")
    return result


async def _acquire(
    store: StateStore, key: str, fp: str, clock: Clock, lease_s: float, wait_s: float
) -> str | SendResult:
    """The lease token, or the committed result of an earlier send with this key."""
    deadline = clock.monotonic() + wait_s
    pause = WAIT_STEP_S[0]
    while True:
        reservation = await store.reserve(key, fp, lease_s)
        if isinstance(reservation, Acquired):
            return reservation.token
        if isinstance(reservation, Done):
            return decode_result(reservation.payload)
        if isinstance(reservation, Conflict):
            raise IdempotencyConflictError(key)
        if clock.monotonic() >= deadline:
            raise IdempotencyPendingError(key)
        await anyio.sleep(pause)
        pause = min(WAIT_STEP_S[1], pause * 2)
