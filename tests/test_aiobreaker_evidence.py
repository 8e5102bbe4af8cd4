"""Evidence for docs/decisions.md: why the router has its own breaker instead of aiobreaker.

Each test drives a real ``aiobreaker.CircuitBreaker`` (1.2.0, pinned in the ``dev`` extra) and,
side by side, ``router.breaker.CircuitBreaker`` on a ``FakeClock``, and asserts what each one
actually does. aiobreaker cannot be given a clock, so its tests wait for real, with reset
timeouts of at most 150 ms.
"""

from __future__ import annotations

import inspect
import os
import random
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any, ClassVar, Self

import aiobreaker
import aiobreaker.circuitbreaker
import aiobreaker.state
import anyio
import pytest
from aiobreaker import CircuitBreakerError, CircuitBreakerState

from policies.base import BreakerState
from router.breaker import BreakerSettings, CircuitBreaker
from router.clock import FakeClock

RESET = timedelta(milliseconds=150)  # aiobreaker's open period; the only real waiting here
OPEN, HALF, CLOSED = BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.CLOSED


class ProviderFault(Exception):
    pass


async def fails() -> None:
    raise ProviderFault("503")


async def succeeds() -> str:
    return "ok"


def ours(
    clock: FakeClock,
    on_change: Callable[[BreakerState, BreakerState], None] | None = None,
    **kw: float,
) -> CircuitBreaker:
    settings = BreakerSettings(**{"jitter": 0.0, "open_s": 5.0, **kw})  # type: ignore[arg-type]
    return CircuitBreaker(settings, clock, rng=random.Random(1), on_change=on_change)


def theirs(fail_max: int = 5, listeners: list[object] | None = None) -> Any:
    return aiobreaker.CircuitBreaker(
        fail_max=fail_max, timeout_duration=RESET, listeners=listeners or []
    )


async def call(breaker: Any, func: Callable[[], Awaitable[object]]) -> object:
    """One call through aiobreaker; its refusals and our fault come back as values."""
    try:
        return await breaker.call_async(func)
    except (ProviderFault, CircuitBreakerError) as exc:
        return exc


async def open_then_expire(breaker: Any) -> None:
    """Trip aiobreaker and wait (for real: it has no clock) until its open period is over."""
    for _ in range(breaker.fail_max):
        await call(breaker, fails)
    assert breaker.current_state is CircuitBreakerState.OPEN
    await anyio.sleep(RESET.total_seconds() * 1.3)


def open_then_expire_ours(breaker: CircuitBreaker, clock: FakeClock) -> None:
    permit = breaker.allow()
    assert permit is not None
    breaker.record(permit, failed=True)
    assert breaker.state is OPEN
    clock.advance(5.0)
    assert breaker.state is HALF


def test_the_pinned_version_is_the_one_measured() -> None:
    assert version("aiobreaker") == "1.2.0"


@pytest.mark.anyio
async def test_a_steady_50_percent_fault_rate_never_opens_aiobreaker() -> None:
    breaker = theirs(fail_max=5)
    for i in range(100):
        await call(breaker, fails if i % 2 else succeeds)
    assert breaker.current_state is CircuitBreakerState.CLOSED
    assert breaker.fail_counter == 1  # every success resets it: only a run of faults counts

    clock = FakeClock()
    mine = ours(clock, min_requests=20, failure_rate=0.5, consecutive_failures=5)
    for i in range(100):
        permit = mine.allow()
        if permit is None:
            break
        mine.record(permit, failed=bool(i % 2))
    assert mine.state is OPEN
    assert i == 20  # opened on the 10th fault of 20 calls; call 21 was refused


@pytest.mark.anyio
async def test_half_open_aiobreaker_lets_every_concurrent_caller_through() -> None:
    breaker = theirs(fail_max=1)
    await open_then_expire(breaker)
    entered = 0
    release = anyio.Event()

    async def slow_probe() -> str:
        nonlocal entered
        entered += 1
        await release.wait()
        return "ok"

    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(call, breaker, slow_probe)
        await anyio.wait_all_tasks_blocked()
        assert entered == 10  # ten "trial" calls in flight at once
        assert breaker.current_state is CircuitBreakerState.HALF_OPEN
        release.set()
    assert breaker.current_state is CircuitBreakerState.CLOSED

    clock = FakeClock()
    mine = ours(clock, consecutive_failures=1)
    open_then_expire_ours(mine, clock)
    permits = [mine.allow() for _ in range(10)]
    granted = [p for p in permits if p is not None]
    assert len(granted) == 1 and granted[0].trial  # one trial; nine callers refused


@pytest.mark.anyio
async def test_a_cancelled_trial_leaves_aiobreaker_half_open_with_no_gate() -> None:
    breaker = theirs(fail_max=1)
    await open_then_expire(breaker)

    async with anyio.create_task_group() as tg:
        tg.start_soon(call, breaker, anyio.sleep_forever)
        await anyio.wait_all_tasks_blocked()
        assert breaker.current_state is CircuitBreakerState.HALF_OPEN
        tg.cancel_scope.cancel()  # CancelledError is a BaseException: aiobreaker sees nothing
    assert breaker.current_state is CircuitBreakerState.HALF_OPEN
    await anyio.sleep(RESET.total_seconds() * 1.3)
    assert breaker.current_state is CircuitBreakerState.HALF_OPEN  # no timer moves it on
    # It is not stuck: half-open has no gate, so the next completed call decides.
    assert await call(breaker, succeeds) == "ok"
    assert breaker.current_state is CircuitBreakerState.CLOSED

    clock = FakeClock()
    mine = ours(clock, consecutive_failures=1)
    open_then_expire_ours(mine, clock)
    trial = mine.allow()
    assert trial is not None and trial.trial
    assert mine.allow() is None
    mine.release(trial)  # what the engine does when the attempt is cancelled
    assert mine.state is HALF
    again = mine.allow()
    assert again is not None and again.trial  # the gate is free for exactly one new trial
    assert mine.allow() is None


class CountingDatetime(datetime):
    utcnow_calls: ClassVar[int] = 0

    @classmethod
    def utcnow(cls) -> Self:
        cls.utcnow_calls += 1
        return super().utcnow()


@pytest.mark.anyio
async def test_aiobreaker_reads_utcnow_itself_so_its_tests_must_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    params = list(inspect.signature(aiobreaker.CircuitBreaker).parameters)
    assert params == [
        "fail_max",
        "timeout_duration",
        "exclude",
        "listeners",
        "state_storage",
        "name",
    ]
    # No clock parameter; the only way to steer its time is to patch its module globals.
    monkeypatch.setattr(aiobreaker.circuitbreaker, "datetime", CountingDatetime)
    monkeypatch.setattr(aiobreaker.state, "datetime", CountingDatetime)

    breaker = theirs(fail_max=1)
    await call(breaker, fails)
    assert CountingDatetime.utcnow_calls == 1  # open() stamps opened_at = datetime.utcnow()
    assert isinstance(await call(breaker, succeeds), CircuitBreakerError)
    assert CountingDatetime.utcnow_calls == 2  # the open state compares against utcnow()
    started = time.monotonic()
    await anyio.sleep(RESET.total_seconds() * 1.3)
    assert await call(breaker, succeeds) == "ok"  # only real time passing let it through
    assert time.monotonic() - started >= RESET.total_seconds()

    clock = FakeClock()
    mine = ours(clock, consecutive_failures=1, open_s=60.0)
    permit = mine.allow()
    assert permit is not None
    mine.record(permit, failed=True)
    assert mine.allow() is None
    clock.advance(60.0)  # a minute of breaker time, no sleeping
    assert mine.state is HALF
    assert mine.allow() is not None


def test_aiobreaker_open_warns_on_python_312_and_later() -> None:
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        theirs().open()
    utcnow_warnings = [
        w for w in seen if issubclass(w.category, DeprecationWarning) and "utcnow" in str(w.message)
    ]
    if sys.version_info >= (3, 12):
        assert utcnow_warnings
    else:
        assert not utcnow_warnings  # this interpreter predates the deprecation


def _python_312_or_later() -> str | None:
    candidates = [shutil.which(f"python3.{minor}") for minor in range(12, 16)]
    candidates += [
        str(p) for p in sorted(Path.home().glob(".pyenv/versions/3.1[2-9]*/bin/python3"))
    ]
    for exe in filter(None, candidates):
        probe = subprocess.run(
            [exe, "-c", "import sys; print(sys.version_info >= (3, 12))"],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.returncode == 0 and probe.stdout.strip() == "True":
            return exe
    return None


def test_aiobreaker_open_warns_under_a_real_python_312(tmp_path: Path) -> None:
    exe = _python_312_or_later()
    if exe is None:
        pytest.skip("no Python >= 3.12 interpreter on this machine")
    package = Path(inspect.getfile(aiobreaker)).parent
    shutil.copytree(package, tmp_path / "aiobreaker", ignore=shutil.ignore_patterns("__pycache__"))
    script = (
        "import sys, warnings; sys.path.insert(0, sys.argv[1])\n"
        "from aiobreaker import CircuitBreaker\n"
        "with warnings.catch_warnings(record=True) as seen:\n"
        "    warnings.simplefilter('always')\n"
        "    CircuitBreaker().open()\n"
        "print(sys.version.split()[0]); [print(w.category.__name__, w.message) for w in seen]\n"
    )
    run = subprocess.run(
        [exe, "-I", "-S", "-c", script, str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    assert "DeprecationWarning datetime.datetime.utcnow() is deprecated" in run.stdout


class AsyncStateListener:
    """aiobreaker's listener protocol, with the state hook written as a coroutine."""

    def __init__(self) -> None:
        self.ran = False

    def before_call(self, breaker: Any, func: Any, *args: Any, **kwargs: Any) -> None:
        pass

    def failure(self, breaker: Any, exception: BaseException) -> None:
        pass

    def success(self, breaker: Any) -> None:
        pass

    async def state_change(self, breaker: Any, old: Any, new: Any) -> None:
        self.ran = True


class RaisingStateListener(AsyncStateListener):
    def state_change(self, breaker: Any, old: Any, new: Any) -> None:  # type: ignore[override]
        raise RuntimeError("metrics sink down")


@pytest.mark.anyio
async def test_aiobreaker_listeners_are_sync_only() -> None:
    listener = AsyncStateListener()
    breaker = theirs(fail_max=1, listeners=[listener])
    with pytest.warns(RuntimeWarning, match="was never awaited"):
        await call(breaker, fails)
    assert breaker.current_state is CircuitBreakerState.OPEN
    assert not listener.ran  # the coroutine was created, dropped, never run
    # Ours is a plain sync callback too (router.breaker.Listener returns None): no difference
    # here; the router keeps its listener sync and cheap (it only emits an event).


@pytest.mark.anyio
async def test_an_exception_in_a_listener_reaches_the_caller() -> None:
    breaker = theirs(fail_max=2, listeners=[RaisingStateListener()])
    await call(breaker, fails)
    for _ in range(3):
        with pytest.raises(RuntimeError, match="metrics sink down"):
            await breaker.call_async(fails)  # the caller gets the listener's error, not its own
    # ...and the breaker never opens: the listener raises before the state is stored.
    assert breaker.current_state is CircuitBreakerState.CLOSED
    assert breaker.fail_counter == 4
    assert await call(breaker, succeeds) == "ok"

    changes: list[tuple[BreakerState, BreakerState]] = []

    def raising(old: BreakerState, new: BreakerState) -> None:
        changes.append((old, new))
        raise RuntimeError("metrics sink down")

    mine = ours(FakeClock(), on_change=raising, consecutive_failures=2)
    first, second = mine.allow(), mine.allow()
    assert first is not None and second is not None
    mine.record(first, failed=True)
    with pytest.raises(RuntimeError, match="metrics sink down"):
        mine.record(second, failed=True)  # ours lets it reach record()'s caller too...
    assert changes == [(CLOSED, OPEN)]
    assert mine.state is OPEN  # ...but only after the state moved: the breaker is open
    assert mine.allow() is None


@pytest.fixture
def beijing_time() -> Iterator[None]:
    saved = os.environ.get("TZ")
    os.environ["TZ"] = "CST-8"  # POSIX spelling of UTC+8, needs no tzdata
    time.tzset()
    try:
        yield
    finally:
        if saved is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = saved
        time.tzset()


@pytest.mark.usefixtures("beijing_time")
def test_aiobreaker_mixes_utc_and_local_time_in_its_reopen_time() -> None:
    # Not in the docstring: a further finding. opened_at is utcnow(), opens_at compares it with
    # datetime.now() (local), so east of UTC the reopen time of an open breaker is None.
    breaker = aiobreaker.CircuitBreaker(fail_max=1, timeout_duration=timedelta(seconds=60))
    breaker.open()
    assert breaker.current_state is CircuitBreakerState.OPEN
    assert breaker.opens_at is None
    with pytest.raises(CircuitBreakerError) as refused:
        breaker.call(lambda: "ok")
    assert refused.value.reopen_time is None
    with pytest.raises(TypeError):
        _ = breaker.time_until_open
