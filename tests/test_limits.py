"""Failover budget and rate limiter on a fake clock."""

from __future__ import annotations

from router.clock import FakeClock
from router.limits import FailoverBudget, RateLimiter


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
