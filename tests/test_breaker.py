"""The circuit breaker's state machine, on a fake clock (no sleeping)."""

from __future__ import annotations

import itertools
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from policies.base import BreakerState
from router.breaker import BreakerSettings, CircuitBreaker
from router.clock import FakeClock

OPEN, HALF, CLOSED = BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.CLOSED


def make(
    clock: FakeClock, **kw: float
) -> tuple[CircuitBreaker, list[tuple[BreakerState, BreakerState]]]:
    changes: list[tuple[BreakerState, BreakerState]] = []
    settings_ = BreakerSettings(**{"jitter": 0.0, **kw})  # type: ignore[arg-type]
    breaker = CircuitBreaker(
        settings_, clock, rng=random.Random(1), on_change=lambda a, b: changes.append((a, b))
    )
    return breaker, changes


def fail(breaker: CircuitBreaker, n: int = 1) -> None:
    for _ in range(n):
        permit = breaker.allow()
        assert permit is not None
        breaker.record(permit, failed=True)


def succeed(breaker: CircuitBreaker, n: int = 1) -> None:
    for _ in range(n):
        permit = breaker.allow()
        assert permit is not None
        breaker.record(permit, failed=False)


def test_consecutive_failures_open_it() -> None:
    breaker, changes = make(FakeClock(), consecutive_failures=3)
    fail(breaker, 2)
    assert breaker.state is CLOSED
    fail(breaker)
    assert breaker.state is OPEN
    assert breaker.allow() is None
    assert changes == [(CLOSED, OPEN)]


def test_a_steady_fault_rate_opens_it_once_volume_is_reached() -> None:
    # aiobreaker never opens on alternating failures; this breaker does.
    breaker, _ = make(FakeClock(), min_requests=20, failure_rate=0.5, consecutive_failures=99)
    for _ in range(9):
        fail(breaker)
        succeed(breaker)
    assert breaker.state is CLOSED  # 18 requests: below the minimum volume
    fail(breaker)
    succeed(breaker)
    assert breaker.state is CLOSED  # 20 requests but the last one succeeded: not a trip point
    fail(breaker)
    assert breaker.state is OPEN


def test_old_outcomes_leave_the_window() -> None:
    clock = FakeClock()
    breaker, _ = make(clock, min_requests=4, failure_rate=0.5, window_s=10, consecutive_failures=9)
    fail(breaker, 3)
    clock.advance(11)
    succeed(breaker, 3)
    fail(breaker)  # 1 of 4 in the window
    assert breaker.state is CLOSED


def test_half_open_lets_a_single_trial_through() -> None:
    clock = FakeClock()
    breaker, _ = make(clock, consecutive_failures=1, open_s=5)
    fail(breaker)
    clock.advance(4.9)
    assert breaker.state is OPEN
    clock.advance(0.2)
    assert breaker.state is HALF
    trial = breaker.allow()
    assert trial is not None and trial.trial
    assert breaker.allow() is None  # a second concurrent caller is refused
    breaker.record(trial, failed=False)
    assert breaker.state is CLOSED
    assert breaker.allow() is not None


def test_a_cancelled_trial_frees_the_gate() -> None:
    clock = FakeClock()
    breaker, _ = make(clock, consecutive_failures=1, open_s=1)
    fail(breaker)
    clock.advance(1.5)
    trial = breaker.allow()
    assert trial is not None
    breaker.release(trial)
    assert breaker.state is HALF
    assert breaker.allow() is not None


def test_the_open_period_grows_on_repeated_trips_and_is_capped() -> None:
    clock = FakeClock()
    breaker, _ = make(clock, consecutive_failures=1, open_s=1, open_max_s=4)
    fail(breaker)
    periods = []
    for _ in range(4):
        periods.append(breaker.open_remaining_s)
        clock.advance(breaker.open_remaining_s)
        trial = breaker.allow()
        assert trial is not None and trial.trial
        breaker.record(trial, failed=True)
    assert periods == [1, 2, 4, 4]


def test_jitter_stays_within_its_fraction() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(BreakerSettings(consecutive_failures=1, open_s=10, jitter=0.2), clock)
    fail(breaker)
    assert 8 <= breaker.open_remaining_s <= 12


def test_forcing_overrides_and_returns_to_automatic() -> None:
    breaker, changes = make(FakeClock())
    breaker.force(OPEN)
    assert breaker.state is OPEN and breaker.allow() is None
    breaker.force(None)
    assert breaker.state is CLOSED
    assert changes == [(CLOSED, OPEN), (OPEN, CLOSED)]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["ok", "fail", "cancel"]), st.floats(0, 3)), max_size=80))
def test_transitions_follow_the_state_machine(steps: list[tuple[str, float]]) -> None:
    clock = FakeClock()
    breaker, changes = make(clock, consecutive_failures=3, min_requests=5, open_s=1, open_max_s=8)
    allowed = {(CLOSED, OPEN), (OPEN, HALF), (HALF, CLOSED), (HALF, OPEN)}
    for action, dt in steps:
        clock.advance(dt)
        permit = breaker.allow()
        if permit is None:
            assert breaker.state is not CLOSED  # closed never refuses
            continue
        assert permit.trial == (breaker.state is HALF)
        if action == "cancel":
            breaker.release(permit)
        else:
            breaker.record(permit, failed=action == "fail")
    assert set(changes) <= allowed
    for (_, new), (old, _) in itertools.pairwise(changes):
        assert new is old  # transitions chain
