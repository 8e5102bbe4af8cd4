"""The policy's view of the providers: health snapshots, cached, and the ranking of a group."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from policies.base import Policy, ProviderHealth, Ranking, RouteContext
from router.clock import Clock
from router.recipients import Tracker
from router.runtime import ProviderRuntime, RouteJob
from router.stats import SNAPSHOT_TTL_S


class HealthView:
    def __init__(
        self, runtimes: Mapping[str, ProviderRuntime], policy: Policy, clock: Clock
    ) -> None:
        self.runtimes = runtimes
        self.policy = policy
        self.clock = clock
        self._health_cache: dict[tuple[object, ...], tuple[float, list[ProviderHealth]]] = {}

    def health(self, job: RouteJob, sample: Tracker) -> list[ProviderHealth]:
        """The policy's input. Rebuilt when anything it shows changes (breakers, switches,
        what can carry this message), else at most every ``ProviderStats`` snapshot period:
        it is on the per-message path."""
        key = tuple(
            (
                rt.enabled,
                rt.breaker.state,
                rt.stats.version,
                name in job.renders,
                rt.provider.can_reach(sample.mobile),
            )
            for name, rt in self.runtimes.items()
        )
        now = self.clock.monotonic()
        cached = self._health_cache.get(key)
        if cached is not None and now - cached[0] <= SNAPSHOT_TTL_S:
            return cached[1]
        health = self._build_health(job, sample)
        if len(self._health_cache) > 64:
            self._health_cache.clear()
        self._health_cache[key] = (now, health)
        return health

    def _build_health(self, job: RouteJob, sample: Tracker) -> list[ProviderHealth]:
        out = []
        for name, rt in self.runtimes.items():
            s, stats = rt.provider.settings, rt.stats
            accepted, delivered, latency = stats.rates()
            out.append(
                ProviderHealth(
                    name=name,
                    weight=s.weight,
                    enabled=rt.enabled and s.enabled,
                    breaker=rt.breaker.state,
                    can_render=name in job.renders,
                    region_ok=rt.provider.can_reach(sample.mobile),
                    price_per_part=s.price_per_part,
                    accepted_rate=accepted,
                    delivery_rate=delivered,
                    latency_s=latency,
                    balance=stats.balance,
                    spend_left=stats.spend_left(s.spend_limit),
                )
            )
        return out

    def rank(self, job: RouteJob, group: Sequence[Tracker]) -> Ranking:
        parts = job.parts[0] if group[0].mobile.is_mainland else job.parts[1]
        context = RouteContext(job.scene, recipients=len(group), parts=parts, draw=job.draw)
        return self.policy.rank(context, self.health(job, group[0]))
