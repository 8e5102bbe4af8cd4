"""Unknown outcomes at Ronglian settled by resending under the same ``reqId`` (unique per account
per China day): a duplicate refusal proves the first request was taken; an acceptance proves it
was not. Never a second SMS, never across China midnight. Real emulators over loopback."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import anyio
import pytest
from prometheus_client import CollectorRegistry

from providers.clock import FakeClock
from providers.emulators._common import FaultSettings
from router import Message, RecipientStatus, SendResult
from router.events import EventBus
from router.telemetry.metrics import MetricsSink
from tests.sandbox import RunningSandbox, only, plain_providers

pytestmark = pytest.mark.anyio
RL = "ronglian"


def otp(mobile: str) -> Message:
    return Message(mobiles=[mobile], scene="login_code", params={"code": "4242"})


def ronglian_router(sandbox: RunningSandbox, registry: CollectorRegistry, **kw: Any) -> Any:
    raw = plain_providers(sandbox.settings().providers)[RL]
    sink = MetricsSink(registry, providers=["baofoo", "v1platform", RL], scenes=["login_code"])
    router_kw = {"events": EventBus([sink]), **kw.pop("router_kw", {})}
    resilience = {"replay_delay_s": 0.3, **kw.pop("resilience", {})}
    providers = kw.pop("providers", {RL: {**raw, "timeout_s": 0.4}})
    return only(
        sandbox,
        RL,
        "v1platform",
        providers=providers,
        resilience=resilience,
        router_kw=router_kw,
        **kw,
    )


def resolved(registry: CollectorRegistry, outcome: str) -> float:
    labels = {"provider": RL, "method": "replay", "outcome": outcome}
    return registry.get_sample_value("smsrouter_unknown_resolutions_total", labels) or 0.0


def taken(sandbox: RunningSandbox) -> list[Any]:
    accepted: list[Any] = sandbox.state(RL).accepted  # type: ignore[attr-defined]
    return accepted


async def test_a_request_taken_before_the_timeout_is_accepted_by_its_duplicate_refusal(
    sandbox: RunningSandbox,
) -> None:
    sandbox.reset()
    sandbox.state(RL).set_faults(
        FaultSettings(timeout_rate=1.0, timeout_after_accept=True, hang_s=2)
    )
    registry = CollectorRegistry()
    try:
        async with ronglian_router(sandbox, registry) as router:
            result = await router.send(otp("13800138000"))
    finally:
        sandbox.state(RL).set_faults(FaultSettings())
    [r] = result.recipients
    assert r.status is RecipientStatus.ACCEPTED and r.provider == RL
    assert [a.verdict for a in r.attempts] == ["unknown", "accepted"]
    assert r.attempts[0].request_id == r.attempts[1].request_id  # the same reqId
    assert len(sandbox.sends(RL)) == 2 and len(taken(sandbox)) == 1  # one SMS
    assert sandbox.sends("v1platform") == []  # never failed over
    assert resolved(registry, "taken") == 1


async def test_a_request_lost_before_ronglian_took_it_is_sent_by_the_resend(
    sandbox: RunningSandbox,
) -> None:
    sandbox.reset()
    sandbox.state(RL).set_faults(FaultSettings(timeout_rate=1.0, hang_s=1))  # never taken
    registry = CollectorRegistry()
    result: list[SendResult] = []

    async def send(router: Any) -> None:
        result.append(await router.send(otp("13800138001")))

    async with ronglian_router(sandbox, registry) as router, anyio.create_task_group() as tg:
        tg.start_soon(send, router)
        with anyio.fail_after(5):
            while not sandbox.sends(RL):  # noqa: ASYNC110 - filled by the emulator thread
                await anyio.sleep(0.01)
        sandbox.state(RL).set_faults(FaultSettings())  # the resend meets a healthy provider
    [r] = result[0].recipients
    assert r.status is RecipientStatus.ACCEPTED
    assert [a.verdict for a in r.attempts] == ["unknown", "accepted"]
    assert len(taken(sandbox)) == 1 and r.provider_message_id == taken(sandbox)[0].sms_message_sid
    assert resolved(registry, "sent") == 1


async def test_no_resend_close_to_china_midnight(sandbox: RunningSandbox) -> None:
    """After midnight the same reqId would be a new request: a double send. Stay unknown."""
    sandbox.reset()
    sandbox.state(RL).set_faults(
        FaultSettings(timeout_rate=1.0, timeout_after_accept=True, hang_s=2)
    )
    registry = CollectorRegistry()
    late = FakeClock(datetime(2026, 12, 3, 15, 59, 30, tzinfo=UTC))  # 23:59:30 in Beijing
    try:
        async with ronglian_router(sandbox, registry, router_kw={"clock": late}) as router:
            result = await router.send(otp("13800138002"))
    finally:
        sandbox.state(RL).set_faults(FaultSettings())
    [r] = result.recipients
    assert r.status is RecipientStatus.UNKNOWN
    assert "day boundary" in (r.error or "")
    assert len(sandbox.sends(RL)) == 1  # no resend
    assert resolved(registry, "unknown") == 1


@pytest.mark.parametrize("why", ["replay off", "coalesced"])
async def test_replay_off_leaves_the_unknown_as_it_was(sandbox: RunningSandbox, why: str) -> None:
    """Off by configuration, or for a coalesced provider: its request id is shared by several
    messages, and a duplicate refusal of one message's resend would "prove" the others sent."""
    sandbox.reset()
    sandbox.state(RL).set_faults(
        FaultSettings(timeout_rate=1.0, timeout_after_accept=True, hang_s=2)
    )
    registry = CollectorRegistry()
    raw = plain_providers(sandbox.settings().providers)[RL]
    kw: dict[str, Any] = (
        {"resilience": {"replay_unknown": False}}
        if why == "replay off"
        else {"providers": {RL: {**raw, "timeout_s": 0.4, "coalesce_ms": 5}}}
    )
    try:
        router = ronglian_router(sandbox, registry, **kw)
        async with router:
            result = await router.send(otp("13800138003"))
    finally:
        sandbox.state(RL).set_faults(FaultSettings())
    assert result.recipients[0].status is RecipientStatus.UNKNOWN
    assert len(sandbox.sends(RL)) == 1


async def test_chaos_ronglian_unknowns_mostly_settled_and_never_sent_twice(
    sandbox: RunningSandbox,
) -> None:
    """Half of Ronglian's requests time out, half of those after taking the message: with
    replay most unknowns become known; without it they stay unknown. Zero double sends."""
    unknown: dict[bool, int] = {}
    for replay in (False, True):
        sandbox.reset()
        sandbox.state(RL).set_faults(
            FaultSettings(timeout_rate=0.5, timeout_after_accept=True, hang_s=1, seed=7)
        )
        registry = CollectorRegistry()
        router = ronglian_router(sandbox, registry, resilience={"replay_unknown": replay})
        results: list[SendResult] = []

        async def one(i: int, router: Any = router, results: list[SendResult] = results) -> None:
            results.append(await router.send(otp(f"1390000{i:04d}")))

        try:
            async with router, anyio.create_task_group() as tg:
                for i in range(30):
                    tg.start_soon(one, i)
        finally:
            sandbox.state(RL).set_faults(FaultSettings())
        statuses = [r.recipients[0].status for r in results]
        unknown[replay] = statuses.count(RecipientStatus.UNKNOWN)
        numbers = [n for sent in taken(sandbox) for n in sent.to]
        assert len(numbers) == len(set(numbers))  # nobody got two SMS
        assert statuses.count(RecipientStatus.ACCEPTED) == len(set(numbers)) or replay is False
    assert unknown[False] >= 5
    assert unknown[True] == 0
