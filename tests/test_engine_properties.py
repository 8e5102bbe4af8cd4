"""Property: whatever the recipients, limits and per-provider refusals, every valid recipient
ends in exactly one final outcome, nobody is sent to two providers unless the first provably
refused, and no batch exceeds its provider's limit. Checked against the real emulators."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import anyio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from providers.emulators._common import FaultSettings
from router import Message, RecipientStatus, Router
from tests.sandbox import RunningSandbox, assert_attempts_true

PROVIDERS = ("baofoo", "v1platform", "ronglian")
FINAL = {
    RecipientStatus.ACCEPTED,
    RecipientStatus.REJECTED,
    RecipientStatus.UNKNOWN,
    RecipientStatus.UNROUTABLE,
}


behaviour = st.sampled_from(["healthy", "refuse_all", "refuse_some", "bad_numbers", "5xx"])
pool = [f"139{i:08d}" for i in range(40)]


def faults(kind: str, mobiles: list[str], seed: int) -> FaultSettings:
    if kind == "refuse_all":
        return FaultSettings(error_rate=1.0)
    if kind == "refuse_some":
        return FaultSettings(error_rate=0.5, seed=seed)
    if kind == "bad_numbers":
        return FaultSettings(reject_mobiles=mobiles[::3])
    if kind == "5xx":
        return FaultSettings(http_5xx_rate=1.0)
    return FaultSettings()


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    mobiles=st.lists(st.sampled_from([*pool, "12345", "+852 9123 4567"]), min_size=1, max_size=30),
    limits=st.tuples(st.integers(1, 7), st.integers(1, 7), st.integers(1, 7)),
    behaviours=st.tuples(behaviour, behaviour, behaviour),
    enabled=st.tuples(st.booleans(), st.booleans(), st.booleans()),
    at_least_once=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_every_recipient_has_one_final_outcome(
    sandbox: RunningSandbox,
    mobiles: list[str],
    limits: tuple[int, int, int],
    behaviours: tuple[str, str, str],
    enabled: tuple[bool, bool, bool],
    at_least_once: bool,
    seed: int,
) -> None:
    sandbox.reset()
    base = sandbox.settings()
    providers: dict[str, Any] = {
        name: {**base.providers[name], "max_batch": limit}
        for name, limit in zip(PROVIDERS, limits, strict=True)
    }
    for name, kind in zip(PROVIDERS, behaviours, strict=True):
        sandbox.state(name).set_faults(faults(kind, pool, seed))
    router_settings = sandbox.settings(
        providers=providers,
        unknown_outcomes="at_least_once" if at_least_once else "at_most_once",
        resilience={"replay_delay_s": 0.05},  # a Ronglian 5xx is replayed: keep examples quick
    )

    async def run() -> list[Any]:
        async with Router(router_settings, rng=random.Random(seed)) as router:
            for name, on in zip(PROVIDERS, enabled, strict=True):
                router.set_enabled(name, on)
            result = await router.send(
                Message(mobiles=mobiles, scene="login_code", params={"code": "4242"})
            )
            return list(result.recipients)

    recipients = anyio.run(run)

    # One outcome per entry given, and every valid unique mobile is final.
    assert [r.mobile for r in recipients] != [] and len(recipients) == len(mobiles)
    assert Counter(r.mobile for r in recipients) == Counter(mobiles)
    for r in recipients:
        if r.normalised is None:
            assert r.status is RecipientStatus.INVALID
        else:
            assert r.status in FINAL, r

    # Batches never exceed their provider's limit.
    for name, limit in zip(PROVIDERS, limits, strict=True):
        for batch in sandbox.mobiles_sent(name):
            assert 1 <= len(batch) <= limit

    # Nobody reaches two providers unless the earlier attempt was a provable refusal
    # (or an unknown, where at_least_once allows it).
    reached: dict[str, list[str]] = {}
    for name in PROVIDERS:
        for batch in sandbox.mobiles_sent(name):
            for m in batch:
                reached.setdefault(m, []).append(name)
    seen: set[str] = set()
    for r in recipients:
        if r.normalised is None or not r.normalised.startswith("+86") or r.normalised in seen:
            continue  # invalid, international (unreachable here) or a repeated entry
        seen.add(r.normalised)
        national = r.normalised[3:]
        got = reached.get(national, [])
        assert_attempts_true(r, got, at_least_once=at_least_once)
        if r.status is RecipientStatus.ACCEPTED:
            assert r.attempts[-1].verdict == "accepted"
