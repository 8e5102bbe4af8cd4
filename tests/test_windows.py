"""Bucketed windows: O(1) per event and fixed memory, and still right to within one bucket."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from router.clock import FakeClock
from router.limits import FailoverBudget
from router.windows import Window

EVENTS = st.lists(
    st.tuples(st.floats(0, 5, allow_nan=False), st.floats(-100, 100, allow_nan=False)),
    max_size=200,
)


@settings(max_examples=300, deadline=None)
@given(
    events=EVENTS, window_s=st.floats(0.5, 60), buckets=st.integers(1, 120), tail=st.floats(0, 90)
)
def test_a_window_holds_every_recent_event_and_none_older_than_the_window(
    events: list[tuple[float, float]], window_s: float, buckets: int, tail: float
) -> None:
    clock = FakeClock()
    window = Window(clock, window_s, buckets)
    added: list[tuple[float, float]] = []
    for gap, value in events:
        clock.advance(gap)
        window.add(value)
        added.append((clock.monotonic(), value))
    clock.advance(tail)
    now, bucket = clock.monotonic(), window_s / buckets
    surely_in = [v for t, v in added if now - t < window_s - bucket]
    maybe_in = [v for t, v in added if window_s - bucket <= now - t < window_s + 1e-9]
    assert len(surely_in) <= window.count <= len(surely_in) + len(maybe_in)
    if not maybe_in:
        assert abs(window.total - sum(surely_in)) < 1e-6 * (1 + sum(map(abs, surely_in)))


def test_memory_is_fixed_however_many_events() -> None:
    clock = FakeClock()
    window = Window(clock, 86_400, buckets=96)
    for _ in range(100_000):
        clock.advance(0.5)
        window.add(0.04)
    assert len(window._sums) == len(window._counts) == 96
    assert window.count == 100_000  # 50,000 s of events, all inside the day
    assert abs(window.total - 4_000) < 1e-6
    clock.advance(86_400)
    assert window.count == 0 and window.total == 0


def test_the_failover_budget_forgets_first_attempts_without_failovers() -> None:
    clock = FakeClock()
    budget = FailoverBudget(clock, ratio=0.2, minimum=0, window_s=10)
    budget.record_first(100)
    assert budget.try_spend(50) == 20
    clock.advance(11)
    assert budget.try_spend(50) == 0  # the first attempts aged out with the window
