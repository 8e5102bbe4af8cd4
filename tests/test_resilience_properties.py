"""Property over random fault schedules: across a run of sends with faults changing between
them, no recipient is lost or sent twice (unless at_least_once allows it after an unknown),
and every provider's breaker moves only along the state machine's edges."""

from __future__ import annotations

import random
from collections import defaultdict
from itertools import pairwise
from typing import Any

import anyio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from providers.emulators._common import FaultSettings
from router import Message, RecipientStatus, Router
from router.clock import FakeClock
from router.events import BreakerChanged, Event, EventBus
from tests.sandbox import RunningSandbox, assert_attempts_true

PROVIDERS = ("baofoo", "v1platform", "ronglian")
EDGES = {("closed", "open"), ("open", "half_open"), ("half_open", "closed"), ("half_open", "open")}
FAULTS = {
    "healthy": FaultSettings(),
    "refusing": FaultSettings(error_rate=1.0),
    "flaky": FaultSettings(error_rate=0.5, seed=3),
    "5xx": FaultSettings(http_5xx_rate=1.0),
    "garbled": FaultSettings(malformed_rate=1.0),
    "down": FaultSettings(outage=True),
}


step = st.tuples(
    st.tuples(*(st.sampled_from(sorted(FAULTS)) for _ in PROVIDERS)),
    st.integers(1, 12),  # recipients in this send
    st.floats(0, 30),  # seconds the clock moves before the send
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    schedule=st.lists(step, min_size=1, max_size=5),
    at_least_once=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_no_loss_no_double_send_valid_breaker_moves(
    sandbox: RunningSandbox, schedule: list[Any], at_least_once: bool, seed: int
) -> None:
    sandbox.reset()
    events: list[Event] = []

    class Sink:
        def handle(self, event: Event) -> None:
            events.append(event)

    router_settings = sandbox.settings(
        unknown_outcomes="at_least_once" if at_least_once else "at_most_once",
        resilience={
            "breaker": {"consecutive_failures": 2, "open_s": 5, "min_requests": 4},
            "replay_delay_s": 0.05,  # real seconds (the clock is fake): keep examples quick
        },
    )
    clock = FakeClock()
    outcomes: list[Any] = []

    async def run() -> None:
        router = Router(
            router_settings, clock=clock, events=EventBus([Sink()]), rng=random.Random(seed)
        )
        async with router:
            start = 0
            for faults, n, dt in schedule:
                for name, kind in zip(PROVIDERS, faults, strict=True):
                    sandbox.state(name).set_faults(FAULTS[kind])
                clock.advance(dt)
                mobiles = [f"135{start + i:08d}" for i in range(n)]
                start += n
                result = await router.send(
                    Message(mobiles=mobiles, scene="login_code", params={"code": "1"})
                )
                assert len(result.recipients) == n
                outcomes.extend(result.recipients)

    anyio.run(run)

    reached: dict[str, list[str]] = defaultdict(list)
    for name in PROVIDERS:
        for batch in sandbox.mobiles_sent(name):
            for mobile in batch:
                reached[mobile].append(name)
    for r in outcomes:
        assert r.status in {
            RecipientStatus.ACCEPTED,
            RecipientStatus.REJECTED,
            RecipientStatus.UNKNOWN,
        }, r
        got = reached[r.normalised[3:]]
        assert_attempts_true(r, got, at_least_once=at_least_once)
        if r.status is RecipientStatus.ACCEPTED:
            assert r.attempts[-1].verdict in {"accepted", "unknown"}

    moves: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for e in events:
        if isinstance(e, BreakerChanged):
            moves[e.provider].append((e.old_state, e.new_state))
    for chain in moves.values():
        assert set(chain) <= EDGES
        assert chain[0][0] == "closed"
        for (_, new), (old, _) in pairwise(chain):
            assert new == old
