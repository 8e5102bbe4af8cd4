"""The errors provider adapters raise, at the bottom of the layers: the root of the
hierarchy and the kinds an adapter can hit (bad config or credentials, a message it cannot
render, a response it cannot read). :mod:`router.errors` re-exports them with the rest of the
tree; import them from there.
"""

from __future__ import annotations


class RouterError(Exception):
    """Root of every error raised by sms-router."""


class ConfigError(RouterError):
    """The configuration is invalid. ``key`` names the offending setting (dotted path)."""

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        self.problem = problem
        super().__init__(f"config key {key!r}: {problem}")


class CredentialsError(ConfigError):
    """A provider's credentials are missing or unusable. The message never contains a secret."""


class MessageError(RouterError):
    """The message itself is at fault; sending it elsewhere would not help."""


class InvalidMobileError(MessageError):
    """A mobile number could not be parsed or is not a valid mobile number."""

    def __init__(self, mobile: str, reason: str) -> None:
        self.mobile = mobile
        self.reason = reason
        super().__init__(f"invalid mobile {mobile!r}: {reason}")


class MissingParamError(MessageError):
    """A template placeholder has no value in the message's params."""

    def __init__(self, scene: str, param: str) -> None:
        self.scene = scene
        self.param = param
        super().__init__(f"scene {scene!r} needs parameter {param!r}; add it to Message.params")


class ProviderResponseError(RouterError):
    """A provider response could not be understood (internal; classified as unknown)."""
