"""Builds the concrete objects (adapters) from validated settings: the one wiring module."""

from __future__ import annotations

from providers.base import Provider
from providers.registry import ADAPTERS
from router.clock import Clock
from router.config import RouterSettings


def build_providers(settings: RouterSettings, clock: Clock) -> dict[str, Provider]:
    """One adapter per configured provider account, by instance name."""
    return {
        name: ADAPTERS[provider_settings.type].factory(name, provider_settings, clock)
        for name, provider_settings in settings.provider_settings.items()
    }
