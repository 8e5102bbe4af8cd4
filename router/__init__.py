"""sms-router: a resilient multi-provider SMS routing engine.

Embed it::

    from router import Message, Router, load_settings

    async with Router(load_settings("router.toml")) as router:
        result = await router.send(
            Message(mobiles=["13800138000"], scene="login_code", params={"code": "123456"})
        )

or run it as a sidecar: ``python -m router serve --config router.toml``.
"""

from router.config import RouterSettings, load_settings
from router.engine import Explanation, Router
from router.errors import (
    ConfigError,
    CredentialsError,
    EmptyContentError,
    IdempotencyConflictError,
    IdempotencyPendingError,
    InvalidMobileError,
    MessageError,
    MessageTooLargeError,
    MissingParamError,
    NoRouteError,
    RouterError,
    StateStoreError,
    UnknownTemplateError,
)
from router.model import Attempt, Message, RecipientOutcome, RecipientStatus, SendResult
from router.receipts import Delivery, DeliveryState

__all__ = [
    "Attempt",
    "ConfigError",
    "CredentialsError",
    "Delivery",
    "DeliveryState",
    "EmptyContentError",
    "Explanation",
    "IdempotencyConflictError",
    "IdempotencyPendingError",
    "InvalidMobileError",
    "Message",
    "MessageError",
    "MessageTooLargeError",
    "MissingParamError",
    "NoRouteError",
    "RecipientOutcome",
    "RecipientStatus",
    "Router",
    "RouterError",
    "RouterSettings",
    "SendResult",
    "StateStoreError",
    "UnknownTemplateError",
    "load_settings",
]
