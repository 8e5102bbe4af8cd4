"""A provider that refuses our credentials is misconfigured, not down: its recipients fail over
(a refusal proves nothing was sent), the breaker is left alone, the provider is parked for
``resilience.credentials_park_s`` and an operator is told (log line, metric, alert). Real
emulators over loopback."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from policies.base import BreakerState
from router import Message, RecipientStatus
from router.clock import FakeClock
from router.events import EventBus
from router.telemetry.logs import LoggingSink
from router.telemetry.metrics import MetricsSink
from tests.sandbox import RunningSandbox, only, plain_providers

pytestmark = pytest.mark.anyio
V1 = "v1platform"
WRONG = "not-the-password"


def otp(i: int) -> Message:
    return Message(mobiles=[f"1370000{i:04d}"], scene="login_code", params={"code": "1"})


def misconfigured(
    sandbox: RunningSandbox, clock: FakeClock, registry: CollectorRegistry, park_s: float = 300
) -> Any:
    raw = plain_providers(sandbox.settings().providers)[V1]
    # The v1 document lists no error codes: the operator maps the vendor's credentials code.
    v1 = {**raw, "password": WRONG, "error_codes": {"01": "credentials"}}
    sink = MetricsSink(registry, providers=["baofoo", V1, "ronglian"], scenes=["login_code"])
    return only(
        sandbox,
        V1,
        "baofoo",
        providers={V1: v1},
        resilience={"credentials_park_s": park_s, "breaker": {"consecutive_failures": 1}},
        router_kw={"clock": clock, "events": EventBus([sink, LoggingSink()])},
    )


def refusals(registry: CollectorRegistry) -> float:
    value = registry.get_sample_value("smsrouter_credentials_refusals_total", {"provider": V1})
    return value or 0.0


async def test_a_credentials_refusal_fails_over_and_parks_the_provider_not_the_breaker(
    sandbox: RunningSandbox, caplog: pytest.LogCaptureFixture
) -> None:
    sandbox.reset()
    clock, registry = FakeClock(), CollectorRegistry()
    caplog.set_level(logging.ERROR)
    async with misconfigured(sandbox, clock, registry) as router:
        [first] = (await router.send(otp(1))).recipients
        assert first.status is RecipientStatus.ACCEPTED and first.provider == "baofoo"
        assert [(a.provider, a.verdict) for a in first.attempts] == [
            (V1, "rejected"),
            ("baofoo", "accepted"),
        ]
        # One failure opens this breaker (consecutive_failures = 1), had it been counted.
        assert router.breaker(V1).state is BreakerState.CLOSED
        assert refusals(registry) == 1
        explained = router.explain(otp(2))
        assert "refused our credentials" in str(explained)

        # Parked: the next sends go straight to the others.
        for i in range(2, 6):
            [r] = (await router.send(otp(i))).recipients
            assert [a.provider for a in r.attempts] == ["baofoo"]
        assert len(sandbox.sends(V1)) == 1

        # After the park period it is tried again (still wrong: parked again, counted again).
        clock.advance(301)
        [again] = (await router.send(otp(9))).recipients
        assert [a.provider for a in again.attempts] == [V1, "baofoo"]
        assert refusals(registry) == 2
        assert router.breaker(V1).state is BreakerState.CLOSED

    lines = [r.getMessage() for r in caplog.records if "refused our credentials" in r.getMessage()]
    assert len(lines) == 2
    assert f"provider={V1}" in lines[0] and f"providers.{V1}" in lines[0]
    assert all(WRONG not in line for line in caplog.messages)


async def test_park_zero_keeps_trying_and_still_never_trips_the_breaker(
    sandbox: RunningSandbox,
) -> None:
    sandbox.reset()
    clock, registry = FakeClock(), CollectorRegistry()
    async with misconfigured(sandbox, clock, registry, park_s=0) as router:
        for i in range(3):
            [x] = (await router.send(otp(20 + i))).recipients
            assert x.status is RecipientStatus.ACCEPTED
        assert router.breaker(V1).state is BreakerState.CLOSED
    assert len(sandbox.sends(V1)) == 3
    assert refusals(registry) == 3  # not parked: every refusal is told


# -- unknown outcomes per provider ----------------------------------------------------------


async def test_one_provider_at_least_once_while_the_others_stay_at_most_once(
    sandbox: RunningSandbox,
) -> None:
    """Baofoo has no way to know (no query API): an operator opts it alone into at-least-once.
    A Baofoo unknown is then sent elsewhere; a v1 unknown still never is."""
    from providers.emulators._common import FaultSettings

    sandbox.reset()
    raw = plain_providers(sandbox.settings().providers)
    hang = FaultSettings(timeout_rate=1.0, timeout_after_accept=True, hang_s=1)
    for primary, fails_over in (("baofoo", True), (V1, False)):
        sandbox.reset()
        sandbox.state(primary).set_faults(hang)
        other = V1 if primary == "baofoo" else "baofoo"
        weights = {primary: 1, other: 0}
        providers = {
            "baofoo": {**raw["baofoo"], "timeout_s": 0.2, "unknown_outcomes": "at_least_once"},
            V1: {**raw[V1], "timeout_s": 0.2},
        }
        providers = {n: {**p, "weight": weights[n]} for n, p in providers.items()}
        async with only(sandbox, primary, other, providers=providers) as router:
            [r] = (await router.send(otp(40 if fails_over else 41))).recipients
            fate = router.explain(otp(42)).unknowns
        assert r.attempts[0].verdict == "unknown"
        if fails_over:
            assert [a.provider for a in r.attempts] == ["baofoo", V1]
            assert r.status is RecipientStatus.ACCEPTED
        else:
            assert [a.provider for a in r.attempts] == [V1]
            assert r.status is RecipientStatus.UNKNOWN
        assert "no way to query" in fate["baofoo"] and "at_least_once" in fate["baofoo"]
        assert "at_most_once" in fate[V1]
        assert "same request id" in fate["ronglian"]
