"""The state store contract shared by the memory and Redis backends.

Idempotency is a lease: ``reserve`` takes a key for ``lease_s`` (so a process that dies
between reserve and commit cannot block the key for ever), ``commit`` stores the result for
``ttl_s`` (only the lease holder, by token), ``release`` gives the key back when nothing was
sent. The same key with a different payload fingerprint is a :class:`Conflict`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import orjson

from router.model import Message


@dataclass(frozen=True, slots=True)
class Acquired:
    token: str  # proves the lease when committing or releasing


@dataclass(frozen=True, slots=True)
class Done:
    payload: bytes  # the committed, encoded SendResult


@dataclass(frozen=True, slots=True)
class InProgress:
    """Another sender holds the lease; wait and ask again."""


@dataclass(frozen=True, slots=True)
class Conflict:
    """The key was used for a different payload."""


Reservation = Acquired | Done | InProgress | Conflict


class StateStore(Protocol):
    async def reserve(self, key: str, fingerprint: str, lease_s: float) -> Reservation: ...

    async def commit(self, key: str, token: str, payload: bytes, ttl_s: float) -> bool:
        """Store the result; False if the lease was lost (expired and taken by another)."""
        ...

    async def release(self, key: str, token: str) -> None: ...

    async def throttle(self, mobiles: Sequence[str], scope: str, window_s: float) -> set[str]:
        """Mark each mobile as sent in ``scope`` for ``window_s``; return those already
        marked (throttled). Atomic per mobile across instances."""
        ...

    async def unthrottle(self, mobiles: Sequence[str], scope: str) -> None:
        """Undo marks for mobiles that were finally not sent, so a retry is not blocked."""
        ...

    async def put_status(self, provider: str, message_id: str, status: str, ttl_s: float) -> bool:
        """Record a delivery status; only moves forward: the first final status (delivered or
        failed) stays, a receipt pushed twice or out of order changes nothing. True if new."""
        ...

    async def get_status(self, provider: str, message_id: str) -> str | None: ...

    async def publish_open(self, provider: str, until_epoch_s: float) -> None:
        """Share a breaker cool-down with the other instances."""
        ...

    async def open_until(self, providers: Sequence[str]) -> dict[str, float]:
        """Shared cool-downs still running, by provider (epoch seconds)."""
        ...

    async def aclose(self) -> None: ...


def fingerprint(message: Message) -> str:
    """A stable hash of what the message says: the same key must mean the same message."""
    canonical = {
        "scene": message.scene,
        "content": message.content,
        "params": {k: str(v) for k, v in sorted(message.params.items())},
        "mobiles": sorted(message.mobiles),
        "tags": dict(sorted(message.tags.items())),
    }
    return hashlib.sha256(orjson.dumps(canonical, option=orjson.OPT_SORT_KEYS)).hexdigest()
