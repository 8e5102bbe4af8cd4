"""Added latency of a send while one of three providers is hard down, against all healthy.

    python -m benchmarks.bench_failover [--smoke]

Both runs in one process: the same router settings and workload (single-recipient OTP sends
at a fixed concurrency), the emulators in a subprocess. In the "down" run the primary
(Baofoo, weight 2 of 4) refuses connections; its breaker opens after a few failed attempts and
the rest of the run routes around it.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import anyio

from benchmarks.emulators import emulators
from benchmarks.stats import percentile, table, write_result
from router import Message, Router, RouterSettings
from router.sidecar.sandbox import Sandbox, sandbox_settings


def settings_for(urls: dict[str, str]) -> RouterSettings:
    box = Sandbox(apps={}, urls=urls)
    return sandbox_settings(box)


async def run(settings: RouterSettings, sends: int, concurrency: int) -> list[float]:
    latencies: list[float] = []
    counter = iter(range(sends))

    async def worker(router: Router) -> None:
        for i in counter:
            started = time.perf_counter()
            await router.send(
                Message(mobiles=[f"138{i:08d}"], scene="login_code", params={"code": "1"})
            )
            latencies.append(time.perf_counter() - started)

    async with Router(settings) as router, anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(worker, router)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="a few seconds, for CI")
    args = parser.parse_args()
    sends, concurrency = (200, 10) if args.smoke else (3000, 20)
    rows: list[dict[str, Any]] = []
    for label, down in (("all healthy", ()), ("baofoo down", ("baofoo",))):
        with emulators(down=down) as urls:
            lat = anyio.run(run, settings_for(urls), sends, concurrency)
        rows.append(
            {
                "case": label,
                "sends": len(lat),
                "p50_ms": percentile(lat, 50) * 1000,
                "p99_ms": percentile(lat, 99) * 1000,
                "max_ms": max(lat) * 1000,
            }
        )
    rows.append(
        {
            "case": "added by the outage",
            "sends": 0,
            "p50_ms": rows[1]["p50_ms"] - rows[0]["p50_ms"],
            "p99_ms": rows[1]["p99_ms"] - rows[0]["p99_ms"],
            "max_ms": rows[1]["max_ms"] - rows[0]["max_ms"],
        }
    )
    print(table(rows))
    path = write_result(
        "failover" + ("-smoke" if args.smoke else ""),
        {"sends": sends, "concurrency": concurrency, "rows": rows},
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
