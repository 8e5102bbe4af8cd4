"""Provider quality and spend shared by two router instances through a real Redis: a spend
budget is the account's (not one per instance), and a receipt counted on one instance moves
the delivery rate the other routes on. The per-process control shows what sharing changes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from router.engine import Router
from router.model import Message
from router.state.base import StatsCounts
from router.state.redis import RedisStateStore
from tests.redis_server import redis_url
from tests.sandbox import RunningSandbox

pytestmark = pytest.mark.anyio
BUDGET = 0.35  # ten v1 parts at 0.035


def _router(sandbox: RunningSandbox, state: dict[str, Any]) -> Router:
    base = sandbox.settings()
    providers = {name: dict(raw) for name, raw in base.providers.items()}
    providers["v1platform"]["spend_limit"] = BUDGET  # v1 is the cheapest: cost routing's pick
    router = Router(sandbox.settings(policy="cost", state=state, providers=providers))
    router.set_enabled("baofoo", False)
    return router


async def _send(router: Router, i: int) -> str | None:
    result = await router.send(Message([f"1360000{i:04d}"], "login_code", {"code": "1"}))
    return result.recipients[0].provider


@pytest.mark.parametrize("shared", [True, False], ids=["shared", "per-process"])
async def test_two_instances_share_one_spend_budget_and_delivery_rate(
    sandbox: RunningSandbox, tmp_path: Path, shared: bool
) -> None:
    sandbox.reset()
    with redis_url(tmp_path) as (url, prefix):
        state = {
            "backend": "redis",
            "redis_url": url,
            "prefix": prefix,
            "stats_sync_s": 0.05 if shared else 0,
        }
        async with _router(sandbox, state) as a, _router(sandbox, state) as b:
            picks = [await _send(a, i) for i in range(6)] + [
                await _send(b, i) for i in range(6, 12)
            ]
            assert picks == ["v1platform"] * 12  # each instance alone is within its budget
            for _ in range(5):
                b.runtimes["v1platform"].stats.receipt(False)  # receipts that landed on B
            await anyio.sleep(0.3)  # a few sync periods
            left = a.runtimes["v1platform"].stats.spend_left(BUDGET)
            delivery = a.runtimes["v1platform"].stats.rates()[1]
            after = await _send(a, 12)
    assert left is not None
    if shared:
        assert left < 0.035  # 12 parts spent between the two: the budget is used up
        assert delivery == 0.0  # B's receipts count on A
        assert after == "ronglian"  # v1 is now filtered out by its spend budget
    else:
        assert left == pytest.approx(BUDGET - 6 * 0.035)  # each instance counts only its own
        assert delivery is None
        assert after == "v1platform"


async def test_sync_adds_once_and_windows_expire(tmp_path: Path) -> None:
    with redis_url(tmp_path) as (url, prefix):
        store = RedisStateStore.from_url(url, prefix=prefix)
        try:
            windows = {"p": (1.2, 600.0)}  # quality buckets of 20 ms, spend buckets of 10 s
            delta = StatsCounts(accepted=2, attempts=3, latency_s=0.3, spend=0.5)
            first = await store.sync_stats({"p": delta}, windows)
            assert first["p"] == delta
            again = await store.sync_stats({}, windows)  # nothing new: the same sums
            assert again["p"] == delta
            both = await store.sync_stats({"p": StatsCounts(delivered=1, receipts=1)}, windows)
            assert (both["p"].delivered, both["p"].receipts, both["p"].accepted) == (1, 1, 2)
            await anyio.sleep(1.5)  # the quality window passed; the spend period has not
            later = await store.sync_stats({}, windows)
            assert later["p"] == StatsCounts(spend=0.5)
        finally:
            await store.aclose()
