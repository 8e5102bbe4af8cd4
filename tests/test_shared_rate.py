"""``rate_limit_rps`` is the provider account's limit, not each process's: three router
processes sharing Redis against one emulator, which records arrival times. The provider never
sees more than the limit allows, and the three together send at the limit, not three times it.
(A per-process limiter, the memory-store fallback, is the control: it sends ~3x as fast.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from providers.emulators._common import FaultSettings
from tests.redis_server import redis_url
from tests.sandbox import RunningSandbox, plain_providers

RATE = 40.0  # requests per second for the v1 account (burst = rate: 40)
PER_WORKER = 60


def run_workers(
    sandbox: RunningSandbox,
    state: dict[str, Any],
    v1: dict[str, Any] | None = None,
    per_worker: int = PER_WORKER,
    faults: FaultSettings | None = None,
) -> list[float]:
    """Arrival times at the v1 emulator of three router processes' sends; ``v1`` replaces
    the rate limit in v1's settings."""
    sandbox.reset()
    if faults is not None:
        sandbox.state("v1platform").set_faults(faults)
    base = sandbox.settings()
    providers = plain_providers(base.providers)
    # A generous timeout: three busy processes and the emulator share two cores here.
    providers["v1platform"] = {
        **providers["v1platform"],
        **(v1 if v1 is not None else {"rate_limit_rps": RATE}),
        "timeout_s": 20,
    }
    payload = orjson.dumps(
        {
            "providers": providers,
            "templates": {k: v.model_dump() for k, v in base.templates.items()},
            "state": state,
            "receipt_poll_s": 0,
            "balance_poll_s": 0,
        }
    ).decode()
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.rate_worker", payload, str(per_worker), str(k * 1000)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for k in range(3)
    ]
    try:
        outputs = [w.communicate(timeout=120) for w in workers]
    finally:
        sandbox.state("v1platform").set_faults(FaultSettings())
    for worker, (out, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err.decode()
        report = orjson.loads(out.splitlines()[-1])
        assert report["sent"] == per_worker, report["errors"]
    arrivals = sorted(r.at for r in sandbox.sends("v1platform"))
    assert len(arrivals) == 3 * per_worker
    return arrivals


def most_in_one_second(arrivals: list[float]) -> int:
    best, j = 0, 0
    for i, t in enumerate(arrivals):
        while arrivals[j] < t - 1.0:
            j += 1
        best = max(best, i - j + 1)
    return best


@pytest.mark.parametrize("shared", [True, False], ids=["redis", "per-process"])
def test_three_processes_share_one_rate_limit(
    sandbox: RunningSandbox, tmp_path: Path, shared: bool
) -> None:
    with redis_url(tmp_path) as (url, prefix):
        state = {"backend": "redis", "redis_url": url, "prefix": prefix}
        arrivals = run_workers(sandbox, state if shared else {"backend": "memory"})
    span = arrivals[-1] - arrivals[0]
    n = len(arrivals)
    # GCRA with a burst of RATE: at most burst + RATE * t requests in any t seconds.
    burst = RATE
    if shared:
        assert most_in_one_second(arrivals) <= burst + RATE + 2  # +2: clock granularity
        # ...and the three together still reach the limit: (n - burst) / RATE seconds.
        assert span >= (n - burst) / RATE * 0.9
        assert span <= (n - burst) / RATE * 2 + 2
    else:
        # The control: each process spends the account's limit on its own.
        assert most_in_one_second(arrivals) > burst + RATE + 2
        assert span < (n - burst) / RATE * 0.9


LATENCY_S = 0.2  # each request is in flight at least this long
CONCURRENCY = 2


def most_within(arrivals: list[float], span_s: float) -> int:
    """The most arrivals within ``span_s`` of each other: all in flight at once when every
    request lasts longer than ``span_s``."""
    best, j = 0, 0
    for i, t in enumerate(arrivals):
        while t - arrivals[j] >= span_s:
            j += 1
        best = max(best, i - j + 1)
    return best


@pytest.mark.parametrize("shared", [True, False], ids=["redis", "per-process"])
def test_three_processes_share_one_concurrency_limit(
    sandbox: RunningSandbox, tmp_path: Path, shared: bool
) -> None:
    with redis_url(tmp_path) as (url, prefix):
        state = {"backend": "redis", "redis_url": url, "prefix": prefix}
        v1 = {"concurrency": CONCURRENCY, "share_concurrency": shared}
        arrivals = run_workers(
            sandbox, state, v1, per_worker=12, faults=FaultSettings(latency_s=LATENCY_S)
        )
    most = most_within(arrivals, LATENCY_S * 0.9)
    if shared:
        assert most <= CONCURRENCY  # the account's limit, whatever the instance count
    else:
        assert most > CONCURRENCY + 1  # the control: each process has its own 2


def test_an_unreachable_store_falls_back_to_the_local_limit() -> None:
    """The limit never blocks sending on a store outage: this instance limits itself."""
    import anyio

    from providers.emulators.server import free_port
    from router.clock import SystemClock
    from router.limits import SharedRateLimiter
    from router.state.redis import RedisStateStore

    async def run() -> float:
        store = RedisStateStore.from_url(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.2)
        limiter = SharedRateLimiter(SystemClock(), 10, store, key="v1", burst=1)
        started = anyio.current_time()
        for _ in range(3):
            await limiter.acquire()
        await store.aclose()
        return anyio.current_time() - started

    elapsed = anyio.run(run)
    assert 0.15 <= elapsed < 5  # three slots at 10/s locally: ~0.2 s (plus connect refusals)


def test_shared_concurrency_survives_an_outage_and_frees_a_crashed_holders_slot(
    tmp_path: Path,
) -> None:
    import anyio

    from providers.emulators.server import free_port
    from router.limits import SharedConcurrency
    from router.state.memory import MemoryStateStore
    from router.state.redis import RedisStateStore

    async def run() -> float:
        down = RedisStateStore.from_url(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.2)
        async with SharedConcurrency(1, down, "v1", lease_s=5):
            pass  # an unreachable store never blocks a send: the local limit only
        await down.aclose()
        with redis_url(tmp_path) as (url, prefix):
            live = RedisStateStore.from_url(url, prefix=prefix)
            assert await live.take_slot("v1", "crashed", 1, 0.3)  # held, never given back
            assert not await live.take_slot("v1", "other", 1, 5)
            started = anyio.current_time()
            async with SharedConcurrency(1, live, "v1", lease_s=5):
                waited = anyio.current_time() - started
                assert not await live.take_slot("v1", "other", 1, 5)  # ours now
            assert await live.take_slot("v1", "next", 1, 5)  # given back on exit
            await live.aclose()
        memory = MemoryStateStore()
        assert await memory.take_slot("k", "a", 1, 5)
        assert not await memory.take_slot("k", "b", 1, 5)
        await memory.give_slot("k", "a")
        assert await memory.take_slot("k", "b", 1, 5)
        return waited

    waited = anyio.run(run)
    assert 0.2 <= waited < 2  # until the crashed holder's lease ended
