"""Chaos against the emulators: outages, recovery, slowness, flapping, panic, bad bodies.

Each test is bounded: a fake clock drives breaker periods, so nothing sleeps for them.
"""

from __future__ import annotations

from typing import Any

import pytest

from policies.base import BreakerState
from providers.emulators._common import FaultSettings
from router import Message, RecipientStatus, Router
from router.clock import FakeClock
from router.events import BreakerChanged, Event, EventBus, FailoverBudgetExhausted, PanicSend
from tests.sandbox import RunningSandbox

pytestmark = pytest.mark.anyio
OTP = {"code": "2468"}
A, B = "baofoo", "v1platform"


class Recorder:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def handle(self, event: Event) -> None:
        self.events.append(event)

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


@pytest.fixture(autouse=True)
def _clean(sandbox: RunningSandbox) -> None:
    sandbox.reset()


def make_router(
    sandbox: RunningSandbox, clock: FakeClock, recorder: Recorder, **overrides: Any
) -> Router:
    """A is the primary, B the failover, Ronglian disabled; breaker opens after 3 faults."""
    base = sandbox.settings()
    providers = {n: {**raw, "weight": 1 if n == A else 0} for n, raw in base.providers.items()}
    resilience = {"breaker": {"consecutive_failures": 3, "open_s": 10, "jitter": 0.0}}
    resilience.update(overrides.pop("resilience", {}))
    settings = sandbox.settings(providers=providers, resilience=resilience, **overrides)
    router = Router(settings, clock=clock, events=EventBus([recorder]))
    router.set_enabled("ronglian", False)
    return router


async def otp(router: Router, n: int = 1, start: int = 0) -> list[Any]:
    mobiles = [f"136{start + i:08d}" for i in range(n)]
    result = await router.send(Message(mobiles=mobiles, scene="login_code", params=OTP))
    return list(result.recipients)


async def test_a_down_b_takes_everything_and_a_gets_nothing_while_open(
    sandbox: RunningSandbox,
) -> None:
    clock, rec = FakeClock(), Recorder()
    sandbox.state(A).set_faults(FaultSettings(error_rate=1.0))
    async with make_router(sandbox, clock, rec) as router:
        for i in range(3):  # three refusals trip A's breaker
            [r] = await otp(router, start=i)
            assert (r.status, r.provider) == (RecipientStatus.ACCEPTED, B)
        assert router.breaker(A).state is BreakerState.OPEN
        seen_by_a = len(sandbox.sends(A))
        for i in range(3, 20):
            [r] = await otp(router, start=i)
            assert (r.status, r.provider) == (RecipientStatus.ACCEPTED, B)
            assert [a.provider for a in r.attempts] == [B]
        assert len(sandbox.sends(A)) == seen_by_a == 3
    assert [(e.old_state, e.new_state) for e in rec.of(BreakerChanged)] == [("closed", "open")]


async def test_a_recovers_through_a_single_half_open_probe(sandbox: RunningSandbox) -> None:
    clock, rec = FakeClock(), Recorder()
    sandbox.state(A).set_faults(FaultSettings(error_rate=1.0))
    async with make_router(sandbox, clock, rec) as router:
        for i in range(3):
            await otp(router, start=i)
        sandbox.state(A).set_faults(FaultSettings())  # A is healthy again
        clock.advance(10.5)
        assert router.breaker(A).state is BreakerState.HALF_OPEN
        [probe] = await otp(router, start=100)
        assert (probe.status, probe.provider) == (RecipientStatus.ACCEPTED, A)
        assert router.breaker(A).state is BreakerState.CLOSED
        later = await otp(router, n=5, start=200)
        assert {r.provider for r in later} == {A}
    transitions = [(e.old_state, e.new_state) for e in rec.of(BreakerChanged)]
    assert transitions == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]


async def test_a_failed_probe_reopens_for_longer(sandbox: RunningSandbox) -> None:
    clock, rec = FakeClock(), Recorder()
    sandbox.state(A).set_faults(FaultSettings(error_rate=1.0))
    async with make_router(sandbox, clock, rec) as router:
        for i in range(3):
            await otp(router, start=i)
        clock.advance(10.5)
        [probe] = await otp(router, start=50)
        assert probe.provider == B  # the probe went to A, was refused, then B took it
        assert [a.provider for a in probe.attempts] == [A, B]
        assert router.breaker(A).state is BreakerState.OPEN
        assert router.breaker(A).open_remaining_s == pytest.approx(20)


async def test_slow_provider_no_double_send_and_reconciled_by_pull(
    sandbox: RunningSandbox,
) -> None:
    rec = Recorder()
    base = sandbox.settings()
    providers = {
        n: {**raw, "weight": 1 if n == B else 0, "timeout_s": 0.3}
        for n, raw in base.providers.items()
    }
    settings = sandbox.settings(providers=providers, resilience={"reconcile_window_s": 3})
    # v1platform takes the message, then hangs past our timeout.
    sandbox.state(B).set_faults(
        FaultSettings(timeout_rate=1.0, timeout_after_accept=True, hang_s=1.5)
    )
    async with Router(settings, events=EventBus([rec])) as router:
        router.set_enabled("ronglian", False)
        recipients = await otp(router, n=3)
        # The pulled receipts that proved it taken mask the numbers (138****0001): each is
        # still settled on its own recipient, as for an attempt answered in time.
        deliveries = [
            await router.delivery_status(B, r.provider_message_id or "", r.mobile)
            for r in recipients
        ]
    assert [d.status for d in deliveries] == ["delivered"] * 3
    assert {r.status for r in recipients} == {RecipientStatus.ACCEPTED}
    assert {r.provider for r in recipients} == {B}
    assert [a.verdict for a in recipients[0].attempts] == ["unknown"]
    assert sandbox.sends(A) == []  # never re-sent elsewhere
    assert len(sandbox.sends(B)) == 1


async def test_slow_provider_without_reconciliation_stays_unknown(
    sandbox: RunningSandbox,
) -> None:
    clock = FakeClock()
    sandbox.state(A).set_faults(FaultSettings(timeout_rate=1.0, hang_s=1.5))
    base = sandbox.settings()
    providers = {
        n: {**raw, "weight": 1 if n == A else 0, "timeout_s": 0.3}
        for n, raw in base.providers.items()
    }
    async with Router(sandbox.settings(providers=providers), clock=clock) as router:
        router.set_enabled("ronglian", False)
        recipients = await otp(router, n=2)
    assert {r.status for r in recipients} == {RecipientStatus.UNKNOWN}
    assert all("timeout" in (r.error or "") for r in recipients)
    assert sandbox.sends(B) == []


async def test_flapping_provider_loses_nothing_and_sends_nothing_twice(
    sandbox: RunningSandbox,
) -> None:
    clock, rec = FakeClock(), Recorder()
    sandbox.state(A).set_faults(FaultSettings(error_rate=0.5, seed=7))
    async with make_router(sandbox, clock, rec, resilience={"failover_budget_min": 1000}) as r:
        recipients = []
        for i in range(30):
            recipients += await otp(r, start=i)
            clock.advance(4)
    assert {x.status for x in recipients} == {RecipientStatus.ACCEPTED}
    for x in recipients:
        assert [a.verdict for a in x.attempts][:-1] in ([], ["rejected"])
    national = [m for batch in sandbox.mobiles_sent(B) for m in batch]
    assert len(national) == len(set(national))


async def test_all_down_panic_sends_to_the_least_bad(sandbox: RunningSandbox) -> None:
    clock, rec = FakeClock(), Recorder()
    async with make_router(sandbox, clock, rec) as router:
        router.breaker(A).force(BreakerState.OPEN)
        router.breaker(B).force(BreakerState.OPEN)
        result = await router.send(Message(mobiles=["13600000001"], scene="login_code", params=OTP))
    assert result.panic
    assert result.recipients[0].status is RecipientStatus.ACCEPTED
    assert [e.provider for e in rec.of(PanicSend)] == [result.recipients[0].provider]


async def test_all_down_without_panic_refuses_clearly(sandbox: RunningSandbox) -> None:
    clock, rec = FakeClock(), Recorder()
    async with make_router(sandbox, clock, rec, resilience={"panic": False}) as router:
        router.breaker(A).force(BreakerState.OPEN)
        router.breaker(B).force(BreakerState.OPEN)
        [r] = await otp(router)
    assert r.status is RecipientStatus.REJECTED
    assert "circuit breaker open" in (r.error or "")
    assert sandbox.sends(A) == sandbox.sends(B) == []


@pytest.mark.parametrize(
    "faults", [FaultSettings(malformed_rate=1.0), FaultSettings(http_5xx_rate=1.0)]
)
async def test_bad_bodies_and_5xx_bursts_are_unknown_and_open_the_breaker(
    sandbox: RunningSandbox, faults: FaultSettings
) -> None:
    clock, rec = FakeClock(), Recorder()
    sandbox.state(A).set_faults(faults)
    async with make_router(sandbox, clock, rec) as router:
        first = [(await otp(router, start=i))[0] for i in range(3)]
        assert {r.status for r in first} == {RecipientStatus.UNKNOWN}  # never re-sent
        assert sandbox.sends(B) == []
        assert router.breaker(A).state is BreakerState.OPEN
        [after] = await otp(router, start=10)
    assert (after.status, after.provider) == (RecipientStatus.ACCEPTED, B)


async def test_the_failover_budget_caps_failovers(sandbox: RunningSandbox) -> None:
    clock, rec = FakeClock(), Recorder()
    sandbox.state(A).set_faults(FaultSettings(error_rate=1.0))
    overrides = {
        "failover_budget_min": 5,
        "failover_budget_ratio": 0.2,
        "breaker": {"consecutive_failures": 1000, "min_requests": 1000},
    }
    async with make_router(sandbox, clock, rec, resilience=overrides) as router:
        recipients = await otp(router, n=50)
    statuses = [r.status for r in recipients]
    assert statuses.count(RecipientStatus.ACCEPTED) == 10  # 20% of 50 first attempts
    assert statuses.count(RecipientStatus.REJECTED) == 40
    assert all(
        "failover budget" in (r.error or "")
        for r in recipients
        if r.status is RecipientStatus.REJECTED
    )
    # Said, not only applied: one event (log line, metric) with the recipients it cost.
    [exhausted] = rec.of(FailoverBudgetExhausted)
    assert (exhausted.from_provider, exhausted.recipients) == (A, 40)
