"""Cost-aware routing in the engine: cheapest first, balances and spend budgets as filters,
and explain() reasons, against the emulators."""

from __future__ import annotations

from typing import Any

import pytest

from router import Message, Router
from router.pollers import refresh_balance
from tests.sandbox import RunningSandbox

pytestmark = pytest.mark.anyio
OTP = {"code": "777"}


@pytest.fixture(autouse=True)
def _clean(sandbox: RunningSandbox) -> None:
    sandbox.reset()
    sandbox.state("v1platform").balance = 1_000_000  # type: ignore[attr-defined]


def cost_router(sandbox: RunningSandbox, **provider_overrides: Any) -> Router:
    base = sandbox.settings()
    providers = {n: {**raw, **provider_overrides.get(n, {})} for n, raw in base.providers.items()}
    return Router(sandbox.settings(policy="cost", providers=providers, balance_poll_s=0))


async def test_the_cheapest_provider_takes_the_traffic(sandbox: RunningSandbox) -> None:
    async with cost_router(sandbox) as router:
        result = await router.send(Message(mobiles=["13700000001"], scene="login_code", params=OTP))
        explanation = router.explain(
            Message(mobiles=["13700000001"], scene="login_code", params=OTP)
        )
    assert result.recipients[0].provider == "v1platform"  # 0.035/part, the cheapest
    ranked = explanation.rankings["mainland"].ranked
    assert [r.name for r in ranked] == ["v1platform", "baofoo", "ronglian"]
    assert "(cheapest)" in ranked[0].reason
    assert "0.045/part" in ranked[2].reason


async def test_a_low_balance_excludes_a_provider(sandbox: RunningSandbox) -> None:
    sandbox.state("v1platform").balance = 3  # type: ignore[attr-defined]
    async with cost_router(sandbox) as router:
        await refresh_balance(router.runtimes["v1platform"])
        message = Message(
            mobiles=[f"1370000000{i}" for i in range(5)], scene="login_code", params=OTP
        )
        explanation = router.explain(message)
        result = await router.send(message)
    excluded = {e.name: e.reason for e in explanation.rankings["mainland"].excluded}
    assert "balance 3" in excluded["v1platform"]
    assert {r.provider for r in result.recipients} == {"baofoo"}
    assert sandbox.sends("v1platform") == []


async def test_a_spent_budget_moves_traffic_on(sandbox: RunningSandbox) -> None:
    # Two OTPs fit v1platform's budget (0.035 each); the third goes to the next cheapest.
    async with cost_router(sandbox, v1platform={"spend_limit": 0.08}) as router:
        providers = []
        for i in range(3):
            result = await router.send(
                Message(mobiles=[f"1370000001{i}"], scene="login_code", params=OTP)
            )
            providers.append(result.recipients[0].provider)
    assert providers == ["v1platform", "v1platform", "baofoo"]


async def test_long_content_counts_parts_in_the_cost(sandbox: RunningSandbox) -> None:
    long_text = "长" * 140  # 3 parts with v1platform's signature
    async with cost_router(sandbox, v1platform={"spend_limit": 0.1}) as router:
        result = await router.send(Message(mobiles=["13700000020"], content=long_text))
    # 3 parts x 0.035 = 0.105 > 0.1: over budget, so the next cheapest took it.
    assert result.recipients[0].provider == "baofoo"
