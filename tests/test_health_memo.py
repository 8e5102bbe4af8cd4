"""The routing decision is memoised (health snapshots, rankings per draw): whatever happens to
the providers between two decisions, a memoised ranking equals what the policy says on a fresh
snapshot. No network: the router is never entered."""

from __future__ import annotations

from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from policies.base import BreakerState, RouteContext
from providers.clock import FakeClock
from router import Message, Router
from router.health import DRAWS
from router.runtime import RouteJob
from router.sidecar.sandbox import Sandbox, sandbox_settings
from router.stats import SNAPSHOT_TTL_S
from tests.sandbox import plain_providers

NAMES = ("baofoo", "v1platform", "ronglian")
URLS = {name: "http://127.0.0.1:9" for name in NAMES}

step = st.one_of(
    st.tuples(st.just("enable"), st.sampled_from(NAMES), st.booleans()),
    st.tuples(st.just("breaker"), st.sampled_from(NAMES), st.sampled_from([*BreakerState, None])),
    st.tuples(st.just("balance"), st.sampled_from(NAMES), st.sampled_from([None, 0.0, 5e6])),
    st.tuples(st.just("attempt"), st.sampled_from(NAMES), st.booleans()),
    st.tuples(st.just("receipt"), st.sampled_from(NAMES), st.booleans()),
    st.tuples(st.just("spend"), st.sampled_from(NAMES), st.floats(0, 1e6)),
)


def apply(router: Router, clock: FakeClock, action: tuple[Any, ...]) -> None:
    kind, name, value = action
    rt = router.runtimes[name]
    if kind == "enable":
        router.set_enabled(name, value)
    elif kind == "breaker":
        rt.breaker.force(value)
    elif kind == "balance":
        rt.stats.balance = value
    elif kind == "attempt":
        rt.stats.attempt(value, latency_s=0.01 if value else 2.0)
    elif kind == "receipt":
        rt.stats.receipt(value)
    else:
        rt.stats.spent(value)
    clock.advance(SNAPSHOT_TTL_S * 1.5)  # what a snapshot may lag by design has passed


@settings(max_examples=100, deadline=None)
@example(  # a provider's quality moves after its snapshot was memoised
    "cost",
    [(("attempt", "v1platform", True), 0, True), (("attempt", "v1platform", False), 0, True)],
)
@given(
    st.sampled_from(["weighted", "cost"]),
    st.lists(st.tuples(step, st.integers(0, DRAWS - 1), st.booleans()), max_size=25),
)
def test_a_memoised_ranking_is_what_the_policy_says_now(
    policy: str, steps: list[tuple[tuple[Any, ...], int, bool]]
) -> None:
    clock = FakeClock()
    config = sandbox_settings(Sandbox(apps={}, urls=URLS), policy=policy)
    spend = {
        n: {**raw, "spend_limit": 1e6, "price_per_part": 0.04}
        for n, raw in plain_providers(config.providers).items()
    }
    config = sandbox_settings(Sandbox(apps={}, urls=URLS), policy=policy, providers=spend)
    router = Router(config, clock=clock)
    for action, draw, mainland in steps:
        apply(router, clock, action)
        mobile = "13800138000" if mainland else "+14155550100"
        prepared = router._prepare(
            Message(mobiles=[mobile], scene="login_code", params={"code": "1"}),
            require_route=False,
        )
        job = RouteJob("s", prepared.scene, prepared.renders, draw / DRAWS, 1e9)
        group = prepared.recipients.trackers
        if not group:
            continue
        for _ in range(2):  # the second look is a memo hit
            memoised = router.health.rank(job, group)
            context = RouteContext(job.scene, recipients=1, parts=1, draw=job.draw)
            fresh = router.health.policy.rank(context, router.health._build_health(job, group[0]))
            assert memoised == fresh
