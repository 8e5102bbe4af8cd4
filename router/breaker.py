"""Per-provider circuit breaker on an injected clock.

Why not aiobreaker 1.2.0 (shown by tests/test_aiobreaker_evidence.py, see docs/decisions.md):
it counts only consecutive failures (a steady 50% error rate never opens it), its half-open
state lets every concurrent caller through, a cancelled trial leaves it half-open with no timer
and no gate, and it reads ``datetime.utcnow()`` itself, so tests would have to sleep. A wrapper
fixing all four would replace everything but its state names, so this module is the whole
breaker (~150 lines).

State machine::

    CLOSED --(failure rate >= threshold over >= min_requests in the window,
              or >= consecutive_failures in a row)--> OPEN
    OPEN --(open period elapsed)--> HALF_OPEN
    HALF_OPEN --(the single trial succeeds)--> CLOSED
    HALF_OPEN --(the trial fails)--> OPEN, with a longer period (doubling, capped, jittered)
    HALF_OPEN --(the trial is cancelled)--> HALF_OPEN, gate released for another trial

Only provider faults are fed in (connect errors, 5xx, timeouts, unreadable bodies, refusals
that are the provider's fault); a bad number or unapproved template never counts.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from policies.base import BreakerState
from providers.frozen import fast_init
from router.clock import Clock
from router.windows import Window


class BreakerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    failure_rate: float = Field(default=0.5, gt=0, le=1, description="open at this fault rate")
    min_requests: int = Field(default=20, ge=1, description="volume needed before rate counts")
    window_s: float = Field(default=30.0, gt=0, description="rolling window of the rate")
    consecutive_failures: int = Field(default=5, ge=1, description="open after this many in a row")
    open_s: float = Field(default=5.0, gt=0, description="first open period")
    open_max_s: float = Field(default=120.0, gt=0, description="cap of the growing open period")
    jitter: float = Field(default=0.2, ge=0, lt=1, description="+/- fraction of the open period")


@fast_init
@dataclass(frozen=True, slots=True)
class Permit:
    """Leave to send one batch; ``trial`` marks the single half-open probe."""

    trial: bool
    forced: bool = False  # sent despite an open breaker (panic rule or operator)


Listener = Callable[[BreakerState, BreakerState], None]


class CircuitBreaker:
    def __init__(
        self,
        settings: BreakerSettings,
        clock: Clock,
        *,
        rng: random.Random | None = None,
        on_change: Listener | None = None,
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._rng = rng or random.Random()
        self._on_change = on_change
        self._state = BreakerState.CLOSED
        # Sum = failures, count = outcomes, over the window: O(1) per call, fixed memory.
        self._outcomes = Window(clock, settings.window_s)
        self._consecutive = 0
        self._trips = 0
        self._open_until = 0.0
        self._trial_in_flight = False
        self._forced: BreakerState | None = None

    @property
    def state(self) -> BreakerState:
        if self._forced is not None:
            return self._forced
        if self._state is BreakerState.OPEN and self._clock.monotonic() >= self._open_until:
            self._move(BreakerState.HALF_OPEN)
        return self._state

    @property
    def open_remaining_s(self) -> float:
        return max(0.0, self._open_until - self._clock.monotonic())

    def failure_rate(self) -> float:
        rate = self._outcomes.mean()
        return 0.0 if rate is None else rate

    def allow(self) -> Permit | None:
        """A permit to send, or None when the breaker refuses (open, or a trial in flight)."""
        state = self.state
        if state is BreakerState.CLOSED:
            return Permit(trial=False)
        if state is BreakerState.HALF_OPEN and not self._trial_in_flight and self._forced is None:
            self._trial_in_flight = True
            return Permit(trial=True)
        return None

    def force_permit(self) -> Permit:
        """Send regardless of state (panic rule); the outcome is recorded in the window."""
        return Permit(trial=False, forced=True)

    def record(self, permit: Permit, failed: bool) -> None:
        """Feed the outcome of a permitted attempt (provider faults only as ``failed``)."""
        self._outcomes.add(1.0 if failed else 0.0)
        self._consecutive = self._consecutive + 1 if failed else 0
        if permit.trial:
            self._trial_in_flight = False
            if failed:
                self._trip()
            else:
                self._trips = 0
                self._reset_window()
                self._move(BreakerState.CLOSED)
            return
        # A forced (panic) send never moves the state: recovery goes through the timer and a
        # half-open trial, so the state machine keeps its four edges.
        if failed and self._state is BreakerState.CLOSED and self._should_trip():
            self._trip()

    def release(self, permit: Permit) -> None:
        """The attempt was cancelled or never sent: free the half-open gate, count nothing."""
        if permit.trial:
            self._trial_in_flight = False

    def open_for(self, seconds: float) -> None:
        """Another instance's breaker tripped: share its cool-down (no growth, no trip count)."""
        if self.state is BreakerState.CLOSED and seconds > 0:
            self._open_until = self._clock.monotonic() + seconds
            self._move(BreakerState.OPEN)

    def force(self, state: BreakerState | None) -> None:
        """Operator override: pin OPEN or CLOSED; None returns to automatic."""
        old = self.state
        self._forced = state
        new = self.state
        if new is not old and self._on_change is not None:
            self._on_change(old, new)

    def _should_trip(self) -> bool:
        s = self.settings
        if self._consecutive >= s.consecutive_failures:
            return True
        return self._outcomes.count >= s.min_requests and self.failure_rate() >= s.failure_rate

    def _trip(self) -> None:
        s = self.settings
        self._trips += 1
        period = min(s.open_max_s, s.open_s * 2 ** (self._trips - 1))
        period *= 1 + self._rng.uniform(-s.jitter, s.jitter)
        self._open_until = self._clock.monotonic() + period
        self._consecutive = 0
        self._move(BreakerState.OPEN)

    def _reset_window(self) -> None:
        self._outcomes.clear()
        self._consecutive = 0

    def _move(self, new: BreakerState) -> None:
        old, self._state = self._state, new
        if old is not new and self._on_change is not None and self._forced is None:
            self._on_change(old, new)
