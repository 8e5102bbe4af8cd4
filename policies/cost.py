"""Cost-aware routing: the cheapest healthy provider first, traded off against quality.

Score in [0, 1] per candidate (higher is better)::

    score = (w.price * cheapness + w.accepted * accepted_rate
             + w.delivery * delivery_rate + w.latency * speed) / sum(w)

``cheapness`` is 1 for the cheapest candidate and falls linearly to 0 at twice its price;
``speed`` is 1 at or under ``fast_s`` and 0 at ``slow_s``. Unknown rates take a neutral
prior (``prior``) so a new provider is neither favoured nor punished. Half-open breakers lose
``half_open_penalty``; open breakers go last regardless of score (the engine's panic rule
decides whether they are used at all). Ties break by name, so the output is deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from policies.base import (
    BreakerState,
    Excluded,
    ProviderHealth,
    Ranked,
    Ranking,
    RouteContext,
    hard_filter,
)
from policies.parts import batch_cost


@dataclass(frozen=True, slots=True)
class QualityWeights:
    price: float = 0.5
    accepted: float = 0.25
    delivery: float = 0.15
    latency: float = 0.10

    def __post_init__(self) -> None:
        values = (self.price, self.accepted, self.delivery, self.latency)
        if any(v < 0 for v in values):
            raise ValueError("quality weights must be >= 0")
        if sum(values) == 0:
            raise ValueError("at least one quality weight must be > 0")

    @property
    def total(self) -> float:
        return self.price + self.accepted + self.delivery + self.latency


@dataclass(frozen=True, slots=True)
class CostAwarePolicy:
    weights: QualityWeights = QualityWeights()
    prior: float = 0.9
    fast_s: float = 0.2
    slow_s: float = 2.0
    half_open_penalty: float = 0.25
    name: str = "cost"

    def rank(self, context: RouteContext, providers: Sequence[ProviderHealth]) -> Ranking:
        excluded: list[Excluded] = []
        usable: list[ProviderHealth] = []
        for p in providers:
            reason = hard_filter(p, context) or self._over_budget(p, context)
            if reason is None:
                usable.append(p)
            else:
                excluded.append(Excluded(p.name, reason))
        priced = [p.price_per_part for p in usable if p.breaker is not BreakerState.OPEN]
        cheapest = min(priced) if priced else 0.0
        scored = [(self._score(p, cheapest), p) for p in usable]
        scored.sort(key=lambda sp: (sp[1].breaker is BreakerState.OPEN, -sp[0][0], sp[1].name))
        ranked = tuple(Ranked(p.name, score, reason) for (score, reason), p in scored)
        return Ranking(ranked, tuple(excluded))

    def _over_budget(self, p: ProviderHealth, context: RouteContext) -> str | None:
        if p.spend_left is None:
            return None
        cost = batch_cost(p.price_per_part, context.parts, context.recipients)
        if cost > p.spend_left:
            return f"spend budget left {p.spend_left:g} is below this batch's cost {cost:g}"
        return None

    def _score(self, p: ProviderHealth, cheapest: float) -> tuple[float, str]:
        w = self.weights
        cheapness = _cheapness(p.price_per_part, cheapest)
        accepted = self.prior if p.accepted_rate is None else p.accepted_rate
        delivery = self.prior if p.delivery_rate is None else p.delivery_rate
        speed = self.prior if p.latency_s is None else self._speed(p.latency_s)
        score = (
            w.price * cheapness + w.accepted * accepted + w.delivery * delivery + w.latency * speed
        ) / w.total
        notes = [
            f"price {p.price_per_part:g}/part" + (" (cheapest)" if cheapness == 1.0 else ""),
            f"accepted {_pct(p.accepted_rate)}",
            f"delivery {_pct(p.delivery_rate)}",
            "latency " + ("unknown" if p.latency_s is None else f"{p.latency_s * 1000:.0f} ms"),
        ]
        if p.breaker is BreakerState.HALF_OPEN:
            score = max(0.0, score - self.half_open_penalty)
            notes.append("breaker half-open")
        if p.breaker is BreakerState.OPEN:
            notes.append("breaker open: last resort")
        return score, ", ".join(notes) + f" -> score {score:.2f}"

    def _speed(self, latency_s: float) -> float:
        if latency_s <= self.fast_s:
            return 1.0
        if latency_s >= self.slow_s:
            return 0.0
        return 1.0 - (latency_s - self.fast_s) / (self.slow_s - self.fast_s)


def _cheapness(price: float, cheapest: float) -> float:
    if price <= cheapest:
        return 1.0
    if cheapest <= 0:
        return 0.0
    return max(0.0, 1.0 - (price - cheapest) / cheapest)


def _pct(rate: float | None) -> str:
    return "unknown" if rate is None else f"{rate:.0%}"
