"""Weighted failover: pick the primary by weight, then the rest by weight; open breakers last."""

from __future__ import annotations

from collections.abc import Sequence

from policies.base import (
    BreakerState,
    Excluded,
    ProviderHealth,
    Ranked,
    Ranking,
    RouteContext,
    hard_filter,
)


class WeightedFailover:
    """The primary is drawn with probability proportional to its weight (``context.draw``);
    the others follow by descending weight. A provider whose breaker is open goes last, so it
    is tried only when everything else has refused (the engine's panic rule decides whether).
    """

    name = "weighted"

    def rank(self, context: RouteContext, providers: Sequence[ProviderHealth]) -> Ranking:
        excluded: list[Excluded] = []
        usable: list[ProviderHealth] = []
        for p in providers:
            reason = hard_filter(p, context)
            if reason is None:
                usable.append(p)
            else:
                excluded.append(Excluded(p.name, reason))
        healthy = [p for p in usable if p.breaker is not BreakerState.OPEN]
        broken = [p for p in usable if p.breaker is BreakerState.OPEN]
        ordered = _weighted_order(healthy, context.draw)
        ranked = [Ranked(p.name, p.weight, reason) for p, reason in ordered]
        ranked += [
            Ranked(p.name, 0.0, "breaker open: last resort")
            for p in sorted(broken, key=lambda p: -p.weight)
        ]
        return Ranking(tuple(ranked), tuple(excluded))


def _weighted_order(
    providers: list[ProviderHealth], draw: float
) -> list[tuple[ProviderHealth, str]]:
    by_weight = sorted(providers, key=lambda p: (-p.weight, p.name))
    total = sum(p.weight for p in by_weight)
    if not by_weight:
        return []
    if total <= 0:
        return [(p, "weight 0: failover only") for p in by_weight]
    point, primary = draw * total, by_weight[0]
    for p in by_weight:
        if point < p.weight:
            primary = p
            break
        point -= p.weight
    share = primary.weight / total
    rest = [p for p in by_weight if p is not primary]
    return [(primary, f"primary (weight share {share:.0%})")] + [
        (p, f"failover (weight {p.weight:g})") for p in rest
    ]
