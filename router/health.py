"""The policy's view of the providers: health snapshots, cached, and the ranking of a group.

Both are on the per-message path, so both are memoised. A snapshot is rebuilt when anything it
shows changes (breakers, switches, spend or balance, what can carry the message), else at most
every ``ProviderStats`` snapshot period (to equal content, rates to two significant digits,
unless a provider's quality really moved). Policies are pure (same inputs, same ranking), and the
engine's draw takes one of ``DRAWS`` values, so a ranking is memoised per snapshot, scene,
batch size, parts and draw: after warm-up a message's decision is a few dictionary look-ups.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from policies.base import Policy, ProviderHealth, Ranking, RouteContext
from router.clock import Clock
from router.recipients import Tracker
from router.runtime import ProviderRuntime, RouteJob
from router.stats import SNAPSHOT_TTL_S

DRAWS = 256  # the engine's draw is k / DRAWS: weights resolve to 0.4%, rankings memoise
MAX_RANKINGS = 4096


class HealthView:
    def __init__(
        self, runtimes: Mapping[str, ProviderRuntime], policy: Policy, clock: Clock
    ) -> None:
        self.runtimes = runtimes
        self.policy = policy
        self.clock = clock
        self._health_cache: dict[tuple[object, ...], tuple[float, int, list[ProviderHealth]]] = {}
        self._generation = 0  # of the snapshots: a memoised ranking names the one it ranked
        self._rankings: dict[tuple[object, ...], Ranking] = {}

    def health(self, job: RouteJob, sample: Tracker) -> list[ProviderHealth]:
        """The policy's input for ``sample``'s recipients."""
        return self._snapshot(job, sample)[1]

    def _snapshot(self, job: RouteJob, sample: Tracker) -> tuple[int, list[ProviderHealth]]:
        """(generation, health): rebuilt when anything it shows changes, else at most every
        ``ProviderStats`` snapshot period."""
        now = self.clock.monotonic()
        key = tuple(
            (
                rt.enabled,
                rt.credentials_parked_until > now,
                rt.breaker.state,
                rt.stats.version,
                name in job.renders,
                rt.provider.can_reach(sample.mobile),
            )
            for name, rt in self.runtimes.items()
        )
        cached = self._health_cache.get(key)
        if cached is not None and now - cached[0] <= SNAPSHOT_TTL_S:
            return cached[1], cached[2]
        health = self._build_health(job, sample)
        if cached is not None and cached[2] == health:  # nothing moved: rankings still hold
            self._health_cache[key] = (now, cached[1], cached[2])
            return cached[1], cached[2]
        if len(self._health_cache) > 64:
            self._health_cache.clear()
        self._generation += 1
        self._health_cache[key] = (now, self._generation, health)
        return self._generation, health

    def _build_health(self, job: RouteJob, sample: Tracker) -> list[ProviderHealth]:
        out, now = [], self.clock.monotonic()
        for name, rt in self.runtimes.items():
            s, stats = rt.provider.settings, rt.stats
            accepted, delivered, latency = (_coarse(r) for r in stats.rates())
            out.append(
                ProviderHealth(
                    name=name,
                    weight=s.weight,
                    enabled=rt.enabled and s.enabled,
                    credentials_refused=rt.credentials_parked_until > now,
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
        generation, health = self._snapshot(job, group[0])
        key = (generation, job.scene, len(group), parts, job.draw)
        ranking = self._rankings.get(key)
        if ranking is None:
            context = RouteContext(job.scene, recipients=len(group), parts=parts, draw=job.draw)
            ranking = self.policy.rank(context, health)
            if len(self._rankings) >= MAX_RANKINGS:
                self._rankings.clear()
            self._rankings[key] = ranking
        return ranking


def _coarse(value: float | None) -> float | None:
    """A rate or latency to two significant digits: finer than any policy weighs it, and
    coarse enough that a steady provider's snapshot stays equal (its rankings memoised)."""
    return None if value is None else float(f"{value:.2g}")
