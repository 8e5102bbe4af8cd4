"""Builds the concrete objects (adapters) from validated settings: the one wiring module."""

from __future__ import annotations

from policies.base import Policy
from policies.cost import CostAwarePolicy, QualityWeights
from policies.weighted import WeightedFailover
from providers.base import Provider
from providers.registry import ADAPTERS
from router.clock import Clock
from router.config import RouterSettings
from router.state.base import StateStore
from router.state.memory import MemoryStateStore


def build_providers(settings: RouterSettings, clock: Clock) -> dict[str, Provider]:
    """One adapter per configured provider account, by instance name."""
    return {
        name: ADAPTERS[provider_settings.type].factory(name, provider_settings, clock)
        for name, provider_settings in settings.provider_settings.items()
    }


def build_policy(settings: RouterSettings) -> Policy:
    if settings.policy == "cost":
        w = settings.cost_weights
        return CostAwarePolicy(QualityWeights(w.price, w.accepted, w.delivery, w.latency))
    return WeightedFailover()


def build_store(settings: RouterSettings, clock: Clock) -> StateStore:
    state = settings.state
    if state.backend == "redis":
        from router.state.redis import RedisStateStore

        assert state.redis_url is not None  # validated by StateSettings
        return RedisStateStore.from_url(
            state.redis_url,
            prefix=state.prefix,
            timeout_s=state.redis_timeout_s,
            clock_skew_s=state.clock_skew_s,
        )
    return MemoryStateStore(clock)
