"""Policies are pure: filtered providers are never ranked, cheaper wins at equal quality,
open breakers go last, and the weighted primary follows the weights."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policies.base import BreakerState, ProviderHealth, RouteContext
from policies.cost import CostAwarePolicy, QualityWeights
from policies.weighted import WeightedFailover

POLICIES = [WeightedFailover(), CostAwarePolicy()]

health = st.builds(
    ProviderHealth,
    name=st.sampled_from(["a", "b", "c", "d", "e"]),
    weight=st.floats(0, 10),
    enabled=st.booleans(),
    breaker=st.sampled_from(list(BreakerState)),
    can_render=st.booleans(),
    region_ok=st.booleans(),
    price_per_part=st.floats(0, 1),
    accepted_rate=st.none() | st.floats(0, 1),
    delivery_rate=st.none() | st.floats(0, 1),
    latency_s=st.none() | st.floats(0, 5),
    balance=st.none() | st.floats(0, 100),
    spend_left=st.none() | st.floats(0, 10),
)
snapshots = st.lists(health, max_size=5, unique_by=lambda p: p.name)
contexts = st.builds(
    RouteContext,
    scene=st.just("otp"),
    recipients=st.integers(1, 50),
    parts=st.integers(1, 3),
    draw=st.floats(0, 1, exclude_max=True),
)


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p.name)
@given(context=contexts, providers=snapshots)
def test_every_provider_is_ranked_or_excluded_once(
    policy: WeightedFailover | CostAwarePolicy,
    context: RouteContext,
    providers: list[ProviderHealth],
) -> None:
    ranking = policy.rank(context, providers)
    names = [r.name for r in ranking.ranked] + [e.name for e in ranking.excluded]
    assert Counter(names) == Counter(p.name for p in providers)
    by_name = {p.name: p for p in providers}
    for r in ranking.ranked:
        p = by_name[r.name]
        assert p.enabled and p.can_render and p.region_ok
        assert p.balance is None or p.balance >= context.recipients * context.parts
        assert r.reason
    states = [by_name[n].breaker is BreakerState.OPEN for n in ranking.order]
    assert states == sorted(states), "an open breaker ranks after every non-open one"
    assert policy.rank(context, providers) == ranking  # pure: same input, same output


@given(context=contexts, providers=snapshots)
def test_cost_policy_respects_spend_budgets(
    context: RouteContext, providers: list[ProviderHealth]
) -> None:
    ranking = CostAwarePolicy().rank(context, providers)
    by_name = {p.name: p for p in providers}
    for name in ranking.order:
        p = by_name[name]
        if p.spend_left is not None:
            assert p.price_per_part * context.parts * context.recipients <= p.spend_left


@given(st.floats(0.01, 1), st.floats(0.01, 1), st.none() | st.floats(0, 1))
def test_cheaper_wins_when_quality_is_equal(
    price_a: float, price_b: float, rate: float | None
) -> None:
    if price_a == price_b:
        return
    a = ProviderHealth("a", price_per_part=price_a, accepted_rate=rate, delivery_rate=rate)
    b = ProviderHealth("b", price_per_part=price_b, accepted_rate=rate, delivery_rate=rate)
    order = CostAwarePolicy().rank(RouteContext("otp", 1), [a, b]).order
    assert order[0] == ("a" if price_a < price_b else "b")


def test_quality_can_outweigh_price() -> None:
    cheap_bad = ProviderHealth("cheap", price_per_part=0.03, accepted_rate=0.2)
    dear_good = ProviderHealth("dear", price_per_part=0.04, accepted_rate=1.0)
    policy = CostAwarePolicy(QualityWeights(price=0.2, accepted=0.8, delivery=0, latency=0))
    assert policy.rank(RouteContext("otp", 1), [cheap_bad, dear_good]).order[0] == "dear"
    reason = policy.rank(RouteContext("otp", 1), [cheap_bad, dear_good]).ranked[0].reason
    assert "accepted 100%" in reason


def test_bad_weights_are_refused_clearly() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        QualityWeights(price=-1)
    with pytest.raises(ValueError, match="at least one"):
        QualityWeights(0, 0, 0, 0)


def test_weighted_primary_follows_the_weights() -> None:
    providers = [
        ProviderHealth("a", weight=2),
        ProviderHealth("b", weight=1),
        ProviderHealth("c", weight=1),
    ]
    n = 1000
    primaries = Counter(
        WeightedFailover().rank(RouteContext("otp", 1, draw=i / n), providers).order[0]
        for i in range(n)
    )
    assert primaries == {"a": 500, "b": 250, "c": 250}


def test_zero_weights_are_failover_only() -> None:
    providers = [ProviderHealth("a", weight=0), ProviderHealth("b", weight=1)]
    for draw in (0.0, 0.5, 0.99):
        assert WeightedFailover().rank(RouteContext("otp", 1, draw=draw), providers).order == (
            "b",
            "a",
        )
