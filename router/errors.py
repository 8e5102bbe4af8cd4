"""The exception hierarchy of sms-router.

Every error the library raises derives from :class:`RouterError`, and every message says what
the caller should fix. Errors are sorted by what the router must do about them::

    RouterError
    ├── ConfigError                 bad or missing configuration; names the bad key
    │   └── CredentialsError        a provider's credentials are missing (never shows them)
    ├── MessageError                the caller's message is at fault: no failover, no breaker count
    │   ├── InvalidMobileError      a mobile number phonenumbers cannot validate
    │   ├── UnknownTemplateError    a scene/template key not in the config
    │   ├── MissingParamError       a template parameter the message did not supply
    │   ├── EmptyContentError       the content, or the template as rendered, is blank
    │   ├── MessageTooLargeError    a param or the rendered text is over its configured limit
    │   └── NoRouteError            no enabled provider can render or reach the message
    ├── IdempotencyConflictError    an idempotency key reused with a different payload
    ├── IdempotencyPendingError     the first send with this key is still running
    ├── StateStoreError             the state store (Redis) failed; the text says what is known
    └── ProviderResponseError       internal: a provider answered in a shape we cannot read

Provider faults themselves (connect errors, 5xx, refusals) are not raised: adapters classify
them into :class:`providers.base.Fault` values carried in the result, because a batch can fail
for one provider and succeed on the next.
"""

from __future__ import annotations

from providers.errors import (
    ConfigError,
    CredentialsError,
    InvalidMobileError,
    MessageError,
    MissingParamError,
    ProviderResponseError,
    RouterError,
)

__all__ = [
    "ConfigError",
    "CredentialsError",
    "EmptyContentError",
    "IdempotencyConflictError",
    "IdempotencyPendingError",
    "InvalidMobileError",
    "MessageError",
    "MessageTooLargeError",
    "MissingParamError",
    "NoRouteError",
    "ProviderResponseError",
    "RouterError",
    "StateStoreError",
    "UnknownTemplateError",
]


class UnknownTemplateError(MessageError):
    """The message names a scene/template key the configuration does not define."""

    def __init__(self, scene: str, known: list[str]) -> None:
        self.scene = scene
        super().__init__(
            f"unknown scene/template {scene!r}; configured scenes are: "
            f"{', '.join(sorted(known)) or '(none)'}"
        )


class EmptyContentError(MessageError):
    """The message would be sent blank: empty or whitespace-only content or rendering."""


class MessageTooLargeError(MessageError):
    """A parameter value or the rendered message is longer than the configured limit
    (``limits.max_param_chars`` / ``limits.max_rendered_chars``)."""


class NoRouteError(MessageError):
    """No enabled provider can carry this message (rendering, region or filters)."""


class IdempotencyConflictError(RouterError):
    """The idempotency key was already used for a different message payload."""

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(
            f"idempotency key {key!r} was already used for a different message; "
            "use a new key for a new message"
        )


class IdempotencyPendingError(RouterError):
    """Another send with the same idempotency key did not finish within the deadline."""

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(
            f"a send with idempotency key {key!r} is still in progress; retry later with the "
            "same key to get its result"
        )


class StateStoreError(RouterError):
    """The state store could not be reached or did not answer in time.

    The message says what failed and what is known: raised by :meth:`Router.send` only while
    nothing has been sent (then it says so); once any attempt may have reached a provider the
    router returns the real outcomes instead and queues the record (``SendResult.recorded``).

    ``settles_at`` (epoch seconds), when set, is the time after which a call that timed out
    can no longer be applied late by the store (its write was fenced).
    """

    def __init__(
        self, message: str, *, operation: str = "", settles_at: float | None = None
    ) -> None:
        self.operation = operation
        self.settles_at = settles_at
        super().__init__(message)

    def known(self, statement: str) -> StateStoreError:
        """The same failure, with what the caller of the store knows added to the text."""
        return StateStoreError(
            f"{self} {statement}", operation=self.operation, settles_at=self.settles_at
        )
