"""The state store contract shared by the memory and Redis backends.

Idempotency is a lease: ``reserve`` takes a key for ``lease_s`` (so a process that dies
between reserve and commit cannot block the key for ever), ``commit`` stores the result for
``ttl_s`` (only the lease holder, by token), ``release`` gives the key back when nothing was
sent. The same key with a different payload fingerprint is a :class:`Conflict`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import orjson

from providers.frozen import fast_init
from router.model import Message


@fast_init
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


@dataclass(frozen=True, slots=True)
class StatsCounts:
    """One provider's quality and spend counters: what an instance adds to the shared
    windows, and the windows' sums it reads back (every instance's together)."""

    accepted: float = 0.0  # accepted attempts
    attempts: float = 0.0
    latency_s: float = 0.0  # summed over attempts
    delivered: float = 0.0  # delivered receipts
    receipts: float = 0.0
    spend: float = 0.0  # over the provider's spend period

    def __add__(self, other: StatsCounts) -> StatsCounts:
        return StatsCounts(
            self.accepted + other.accepted,
            self.attempts + other.attempts,
            self.latency_s + other.latency_s,
            self.delivered + other.delivered,
            self.receipts + other.receipts,
            self.spend + other.spend,
        )


class StateStore(Protocol):
    async def reserve(
        self, key: str, fingerprint: str, lease_s: float, *, token: str = ""
    ) -> Reservation:
        """Take the key for ``lease_s``; ``token`` (random if empty) proves the lease later.
        A reserve that failed may still be applied late: release it with the same token."""
        ...

    async def commit(
        self, key: str, token: str, payload: bytes, ttl_s: float, *, fingerprint: str = ""
    ) -> bool:
        """Store the result; False if the lease was lost to another sender. Idempotent: a
        commit retried (from the outbox) after it was applied, or after the lease expired with
        nobody else taking the key (``fingerprint`` given), still stores it and returns True.
        """
        ...

    async def release(self, key: str, token: str) -> None:
        """Give the key back, only if ``token`` still holds it (a late release is harmless)."""
        ...

    async def throttle(
        self,
        mobiles: Sequence[str],
        scope: str,
        window_s: float,
        *,
        token: str = "1",  # noqa: S107
    ) -> set[str]:
        """Mark each mobile as sent in ``scope`` for ``window_s`` (the mark holds ``token``);
        return those already marked (throttled). Atomic per mobile across instances."""
        ...

    async def unthrottle(self, mobiles: Sequence[str], scope: str, *, token: str = "") -> None:
        """Undo marks for mobiles that were finally not sent, so a retry is not blocked: only
        marks holding ``token`` (all marks when it is empty)."""
        ...

    async def put_status(
        self, provider: str, message_id: str, status: str, ttl_s: float, *, recipient: str = ""
    ) -> bool:
        """Record the delivery status of one recipient (E.164) of a provider message; only
        moves forward: the first final status stays, a receipt pushed twice, pulled after its
        push or out of order changes nothing. True only for the one call, across instances,
        that set it (that caller counts the receipt). ``status`` is opaque here (the router
        stores ``"delivered|DELIVRD"``); ``recipient`` "" is a whole-message status."""
        ...

    async def get_status(
        self, provider: str, message_id: str, *, recipient: str = ""
    ) -> str | None: ...

    async def take_rate(self, key: str, rate: float, burst: float) -> float:
        """Reserve one request of the rate limit ``key`` (``rate`` per second, bursts of
        ``burst``), shared by every instance using this store: GCRA on the store's clock.
        Returns how long to wait before sending (0: now)."""
        ...

    async def take_slot(self, key: str, token: str, limit: int, lease_s: float) -> bool:
        """Hold one of ``limit`` concurrency slots of ``key`` (shared by every instance using
        this store) as ``token`` for at most ``lease_s``; False when all are held."""
        ...

    async def give_slot(self, key: str, token: str) -> None:
        """Give back a slot taken by :meth:`take_slot` (a lost one expires with its lease)."""
        ...

    async def append_stream(
        self, stream: str, entries: Sequence[Mapping[str, str]], maxlen: int
    ) -> None:
        """Append entries to a stream the service reads (Redis: XADD, approximately trimmed
        to ``maxlen``); returns once all are stored."""
        ...

    async def put_links(self, links: Mapping[str, str], ttl_s: float) -> None:
        """Remember small values by key for ``ttl_s`` (one round trip for all): the trace
        context of the send behind each provider message id, so a receipt that reaches
        another instance links to its send."""
        ...

    async def get_link(self, key: str) -> str | None: ...

    async def publish_open(self, provider: str, until_epoch_s: float) -> None:
        """Share a breaker cool-down with the other instances."""
        ...

    async def open_until(self, providers: Sequence[str]) -> dict[str, float]:
        """Shared cool-downs still running, by provider (epoch seconds)."""
        ...

    async def aclose(self) -> None: ...


def text(value: object) -> str:
    """A store reply (bytes or str) as text."""
    return value.decode() if isinstance(value, bytes) else str(value)


def fingerprint(message: Message) -> str:
    """A stable hash of what the message says: the same key must mean the same message."""
    canonical = {
        "scene": message.scene,
        "content": message.content,
        "params": {k: str(v) for k, v in sorted(message.params.items())},
        "mobiles": sorted(message.mobiles),
        "tags": dict(sorted(message.tags.items())),
    }
    try:
        encoded = orjson.dumps(canonical, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        # Text orjson refuses (a lone surrogate): still one stable hash per payload, so the
        # send goes on and that batch is refused as a message fault, not as an internal error.
        encoded = json.dumps(canonical, sort_keys=True, ensure_ascii=True).encode()
    return hashlib.sha256(encoded).hexdigest()
