"""Mobile number validation (the engine's name for :mod:`providers.mobile`)."""

from providers.mobile import normalise

__all__ = ["normalise"]
