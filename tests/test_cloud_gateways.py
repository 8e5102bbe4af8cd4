"""The cloud gateways (Aliyun, Tencent) in the sandbox and in routing: weighted shares,
failover from one to the other re-chunked at the other's own limit."""

from __future__ import annotations

from collections import Counter

import pytest

from providers.emulators._common import FaultSettings
from router import Message, Router
from router.sidecar.sandbox import running_sandbox, sandbox_settings, start_sandbox

pytestmark = pytest.mark.anyio
CLOUDS = ("aliyun", "tencent")


def numbers(n: int) -> list[str]:
    return [f"1370000{i:04d}" for i in range(n)]


async def test_the_sandbox_routes_login_codes_over_both_cloud_gateways() -> None:
    with running_sandbox(receipt_poll_s=0, balance_poll_s=0) as settings:
        assert {"aliyun", "tencent"} <= set(settings.providers)
        async with Router(settings) as router:
            for name in router.providers:
                router.set_enabled(name, name in CLOUDS)
            used: Counter[str] = Counter()
            for i in range(40):
                result = await router.send(
                    Message(mobiles=[f"1380000{i:04d}"], scene="login_code", params={"code": "7"})
                )
                [outcome] = result.recipients
                assert outcome.status.value == "accepted", outcome
                assert outcome.provider is not None
                used[outcome.provider] += 1
    assert set(used) == set(CLOUDS)  # equal weights: both take a share
    assert min(used.values()) >= 8


async def test_a_refusing_aliyun_fails_over_to_tencent_in_chunks_of_200() -> None:
    box, servers = start_sandbox()
    try:
        box.state("aliyun").set_faults(FaultSettings(error_rate=1.0))
        settings = sandbox_settings(
            box,
            receipt_poll_s=0,
            balance_poll_s=0,
            resilience={"failover_budget_min": 1000},
            providers={
                **sandbox_settings(box).providers,
                "aliyun": {**sandbox_settings(box).providers["aliyun"], "weight": 100},
            },
        )
        async with Router(settings) as router:
            for name in router.providers:
                router.set_enabled(name, name in CLOUDS)
            result = await router.send(
                Message(mobiles=numbers(450), scene="login_code", params={"code": "7"})
            )
    finally:
        for server in servers:
            server.stop()
    assert Counter(r.status.value for r in result.recipients) == {"accepted": 450}
    assert {r.provider for r in result.recipients} == {"tencent"}
    aliyun_sends = [r for r in box.state("aliyun").requests if r.query.get("PhoneNumbers")]
    tencent_sends = [
        r for r in box.state("tencent").requests if r.headers.get("x-tc-action") == "SendSms"
    ]
    assert len(aliyun_sends) == 1  # 450 <= 1000: one request, refused
    assert len(tencent_sends) == 3  # ceil(450 / 200)


async def test_cost_routing_sends_to_the_cheaper_cloud_gateway() -> None:
    box, servers = start_sandbox()
    try:
        base = sandbox_settings(box).providers
        settings = sandbox_settings(
            box,
            policy="cost",
            receipt_poll_s=0,
            balance_poll_s=0,
            providers={**base, "tencent": {**base["tencent"], "price_per_part": 0.02}},
        )
        async with Router(settings) as router:
            for name in router.providers:
                router.set_enabled(name, name in CLOUDS)
            used: Counter[str | None] = Counter()
            for i in range(10):
                result = await router.send(
                    Message(mobiles=[f"1390000{i:04d}"], scene="login_code", params={"code": "7"})
                )
                used.update(r.provider for r in result.recipients)
    finally:
        for server in servers:
            server.stop()
    assert used == {"tencent": 10}  # 0.02 against Aliyun's 0.045 a part
