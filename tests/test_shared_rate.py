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

from tests.redis_server import redis_url
from tests.sandbox import RunningSandbox, plain_providers

RATE = 40.0  # requests per second for the v1 account (burst = rate: 40)
PER_WORKER = 60


def run_workers(sandbox: RunningSandbox, state: dict[str, Any]) -> list[float]:
    sandbox.reset()
    base = sandbox.settings()
    providers = plain_providers(base.providers)
    # A generous timeout: three busy processes and the emulator share two cores here.
    providers["v1platform"] = {**providers["v1platform"], "rate_limit_rps": RATE, "timeout_s": 20}
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
            [sys.executable, "-m", "tests.rate_worker", payload, str(PER_WORKER), str(k * 1000)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for k in range(3)
    ]
    outputs = [w.communicate(timeout=120) for w in workers]
    for worker, (out, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err.decode()
        report = orjson.loads(out.splitlines()[-1])
        assert report["sent"] == PER_WORKER, report["errors"]
    arrivals = sorted(r.at for r in sandbox.sends("v1platform"))
    assert len(arrivals) == 3 * PER_WORKER
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
