"""The public data of a send: :class:`Message` in, :class:`SendResult` out."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from providers.base import Fault


@dataclass(frozen=True, slots=True)
class Message:
    """One logical SMS for one or many mobiles.

    Give either ``scene`` (a template key from config, filled with ``params``) or free
    ``content``. Providers that cannot render the message (Ronglian has templates only) are not
    candidates for it.
    """

    mobiles: Sequence[str]
    scene: str | None = None
    params: Mapping[str, str | int] = field(default_factory=dict)
    content: str | None = None
    idempotency_key: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.scene is None) == (self.content is None):
            from router.errors import MessageError

            raise MessageError("a Message needs exactly one of scene= or content=")
        if isinstance(self.mobiles, str):
            from router.errors import MessageError

            raise MessageError("Message.mobiles must be a list of numbers, not one string")


class RecipientStatus(enum.StrEnum):
    ACCEPTED = "accepted"  # a provider took it
    REJECTED = "rejected"  # every candidate provably refused it
    UNKNOWN = "unknown"  # may have been sent; not re-sent (at-most-once)
    INVALID = "invalid"  # the mobile failed validation; never sent
    THROTTLED = "throttled"  # per-mobile frequency limit; not sent
    UNROUTABLE = "unroutable"  # no provider can reach or render it


@dataclass(frozen=True, slots=True)
class Attempt:
    """One provider attempt as a recipient saw it."""

    provider: str
    verdict: str  # providers.base.Verdict value
    fault: Fault | None = None
    request_id: str | None = None  # our correlation id at the provider (taskId, reqId, ...)


@dataclass(frozen=True, slots=True)
class RecipientOutcome:
    mobile: str  # as the caller gave it
    normalised: str | None  # E.164, None if invalid
    status: RecipientStatus
    provider: str | None = None  # the provider that took it (or last tried)
    provider_message_id: str | None = None
    attempts: tuple[Attempt, ...] = ()
    error: str | None = None  # why it is not accepted, safe to show


@dataclass(frozen=True, slots=True)
class SendResult:
    message_id: str
    recipients: tuple[RecipientOutcome, ...]
    idempotent_replay: bool = False
    panic: bool = False  # sent with every breaker open (panic rule)

    @property
    def ok(self) -> bool:
        """True when every recipient was accepted by a provider."""
        return all(r.status is RecipientStatus.ACCEPTED for r in self.recipients)

    def by_status(self, status: RecipientStatus) -> list[RecipientOutcome]:
        return [r for r in self.recipients if r.status is status]
