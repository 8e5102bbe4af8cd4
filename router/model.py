"""The public data of a send: :class:`Message` in, :class:`SendResult` out."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from providers.base import Fault
from providers.errors import MessageError
from providers.frozen import fast_init


@dataclass(frozen=True, slots=True, init=False)
class Message:
    """One logical SMS for one or many mobiles.

    Give either ``scene`` (a template key from config, filled with ``params``) or free
    ``content``. Providers that cannot render the message (Ronglian has templates only) are not
    candidates for it. ``mobiles`` may be any iterable of strings (a generator too): it is read
    exactly once, here, and kept as a tuple.
    """

    mobiles: tuple[str, ...]
    scene: str | None
    params: Mapping[str, str | int]
    content: str | None
    idempotency_key: str | None
    tags: Mapping[str, str]

    # A hand-written __init__ so that the argument can be any iterable while the attribute
    # is typed (and is) a tuple; dataclasses cannot convert a field on the way in.
    def __init__(
        self,
        mobiles: Iterable[str],
        scene: str | None = None,
        params: Mapping[str, str | int] | None = None,
        content: str | None = None,
        idempotency_key: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        if (scene is None) == (content is None):
            raise MessageError("a Message needs exactly one of scene= or content=")
        if isinstance(mobiles, str | bytes):
            raise MessageError("Message.mobiles must be a list of numbers, not one string")
        # Read exactly once: a generator consumed by the idempotency fingerprint would
        # otherwise reach the send empty and its recipients would silently be lost.
        numbers = tuple(mobiles)
        for i, mobile in enumerate(numbers):
            if not isinstance(mobile, str):
                raise MessageError(
                    f"Message.mobiles[{i}] is a {type(mobile).__name__}; give every number "
                    "as a string"
                )
        for name, value in (
            ("mobiles", numbers),
            ("scene", scene),
            ("params", {} if params is None else params),
            ("content", content),
            ("idempotency_key", idempotency_key),
            ("tags", {} if tags is None else tags),
        ):
            object.__setattr__(self, name, value)


class RecipientStatus(enum.StrEnum):
    ACCEPTED = "accepted"  # a provider took it
    REJECTED = "rejected"  # every candidate provably refused it
    UNKNOWN = "unknown"  # may have been sent; not re-sent (at-most-once)
    INVALID = "invalid"  # the mobile failed validation; never sent
    THROTTLED = "throttled"  # per-mobile frequency limit; not sent
    UNROUTABLE = "unroutable"  # no provider can reach or render it


@fast_init
@dataclass(frozen=True, slots=True)
class Attempt:
    """One provider attempt as a recipient saw it."""

    provider: str
    verdict: str  # providers.base.Verdict value
    fault: Fault | None = None
    request_id: str | None = None  # our correlation id at the provider (taskId, reqId, ...)


@fast_init
@dataclass(frozen=True, slots=True)
class RecipientOutcome:
    mobile: str  # as the caller gave it
    normalised: str | None  # E.164, None if invalid
    status: RecipientStatus
    provider: str | None = None  # the provider that took it (or last tried)
    provider_message_id: str | None = None
    attempts: tuple[Attempt, ...] = ()
    error: str | None = None  # why it is not accepted, safe to show


@fast_init
@dataclass(frozen=True, slots=True)
class SendResult:
    message_id: str
    recipients: tuple[RecipientOutcome, ...]
    idempotent_replay: bool = False
    panic: bool = False  # sent with every breaker open (panic rule)
    # False when a state write of this send (its idempotency record, or removing throttle marks
    # of recipients that got nothing) failed and is queued for replay: the outcomes are true,
    # the shared record is not stored yet.
    recorded: bool = True

    @property
    def ok(self) -> bool:
        """True when every recipient was accepted by a provider."""
        return all(r.status is RecipientStatus.ACCEPTED for r in self.recipients)

    def by_status(self, status: RecipientStatus) -> list[RecipientOutcome]:
        return [r for r in self.recipients if r.status is status]
