"""Failover budget and rate limiter on a fake clock."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.clock import FakeClock
from router.limits import Concurrency, FailoverBudget, RateLimiter


def test_failovers_are_capped_at_a_fraction_of_first_attempts() -> None:
    clock = FakeClock()
    budget = FailoverBudget(clock, ratio=0.2, minimum=5, window_s=10)
    budget.record_first(1000)
    assert budget.try_spend(150) == 150
    assert budget.try_spend(100) == 50  # 200 in all
    assert budget.try_spend(1) == 0


def test_the_minimum_lets_a_quiet_router_fail_over() -> None:
    budget = FailoverBudget(FakeClock(), ratio=0.2, minimum=5, window_s=10)
    budget.record_first(3)
    assert budget.try_spend(10) == 5


def test_the_budget_refills_as_the_window_moves() -> None:
    clock = FakeClock()
    budget = FailoverBudget(clock, ratio=0.5, minimum=0, window_s=10)
    budget.record_first(10)
    assert budget.try_spend(10) == 5
    clock.advance(11)
    budget.record_first(10)
    assert budget.try_spend(10) == 5


def test_rate_limiter_spaces_requests() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock, rate=10, burst=2)
    assert limiter.delay() == 0
    assert limiter.delay() == 0
    assert abs(limiter.delay() - 0.1) < 1e-9
    clock.advance(1)
    assert limiter.delay() == 0


@settings(max_examples=60, deadline=None)
@given(
    limit=st.integers(1, 4),
    jobs=st.lists(
        st.tuples(st.integers(0, 3), st.booleans()),  # (loop turns held, cancelled while waiting)
        min_size=1,
        max_size=25,
    ),
)
def test_concurrency_never_exceeds_its_limit_and_loses_no_slot(
    limit: int, jobs: list[tuple[int, bool]]
) -> None:
    """Whatever mix of holders and waiters cancelled mid-wait: never more than ``limit`` in
    flight, waiters served in arrival order, and every slot back at the end."""

    async def scenario() -> None:
        slots = Concurrency(limit)
        in_flight, peak, order = 0, 0, []

        async def job(i: int, turns: int) -> None:
            nonlocal in_flight, peak
            async with slots:
                order.append(i)
                in_flight += 1
                peak = max(peak, in_flight)
                try:
                    for _ in range(turns):
                        await anyio.lowlevel.checkpoint()
                finally:
                    in_flight -= 1

        async with anyio.create_task_group() as tg:
            scopes = []
            for i, (turns, cancel) in enumerate(jobs):
                scope = anyio.CancelScope()
                scopes.append((scope, cancel))

                async def run(
                    i: int = i, turns: int = turns, scope: anyio.CancelScope = scope
                ) -> None:
                    with scope:
                        await job(i, turns)

                tg.start_soon(run)
            await anyio.lowlevel.checkpoint()  # every job has taken a slot or queued
            for scope, cancel in scopes:
                if cancel:
                    scope.cancel()
        assert peak <= limit
        assert order == sorted(order)  # first come, first served
        assert slots.in_flight == 0
        async with slots:  # and the limiter still works
            assert slots.in_flight == 1

    anyio.run(scenario)


def test_concurrency_refuses_a_limit_below_one() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Concurrency(0)
