"""The transports alone: client CPU per provider request, each transport against the others.

    python -m benchmarks.bench_transport [--sends 50000] [--runs 3] [--smoke]

The stand-in v1 platform (``benchmarks/standin.py``) answers in its own process. Each case
runs in a fresh subprocess: one client made by ``router.transport.make_client`` (what the
router builds per provider) sends the same pre-encoded ``WireRequest`` (a v1 platform send,
as the adapter builds it) ``--sends`` times from 100 concurrent workers after a warm-up.
Cases: ``http1`` (the router's own client, the default), ``aiohttp`` (one shared aiohttp
session, the default until 2026-12-04), ``httpx-aiohttp`` (httpx's client over aiohttp).
Figures: process CPU per request, requests/s, and the ratio of each to http1 within each run.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any, cast

import anyio

from benchmarks.bench_soak import in_subprocess, router_settings, standin
from benchmarks.stats import peak_rss_mb, spread, table, write_result
from providers.base import Batch, Rendered
from providers.mobile import normalise
from providers.wire import WireRequest
from router.clock import SystemClock
from router.config import TransportKind
from router.transport import make_client
from router.wiring import build_providers

CONCURRENCY = 100
# Plain httpx is left out: its pool costs ~5 ms of CPU per request at concurrency 100
# (bench_load's raw httpx row; encode/httpx#3215), a run of its own would take minutes.
CASES = ["http1", "aiohttp", "httpx-aiohttp"]


def v1_request(url: str) -> WireRequest:
    """A v1 platform send to the stand-in, built by the router's own adapter."""
    provider = build_providers(router_settings(url), SystemClock())["v1platform"]
    batch = Batch("bench-1", (normalise("13800138000"),), Rendered(content="code 1234"))
    return provider.build_request(batch)


async def case(kind: str, url: str, warmup: int, n: int) -> dict[str, Any]:
    client = make_client(
        cast(TransportKind, kind),
        connect_timeout_s=3,
        timeout_s=10,
        max_connections=CONCURRENCY,
    )
    request = v1_request(url)
    failed = 0

    async def drive(count: int) -> None:
        nonlocal failed
        remaining = iter(range(count))

        async def worker() -> None:
            nonlocal failed
            for _ in remaining:
                response = await client.exchange(request, None)
                failed += response.status_code != 200

        async with anyio.create_task_group() as tg:
            for _ in range(CONCURRENCY):
                tg.start_soon(worker)

    await drive(warmup)
    cpu, wall = time.process_time(), time.perf_counter()
    await drive(n)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    await client.aclose()
    return {"cpu_us_per_request": cpu / n * 1e6, "requests_per_s": n / wall, "failed": failed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="1,000 requests, 1 run (CI)")
    parser.add_argument("--sends", type=int, default=None, help="timed requests (50000)")
    parser.add_argument("--runs", type=int, default=None, help="runs per case (3)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed requests (2000)")
    parser.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    n = args.sends or (1000 if args.smoke else 50_000)
    runs = args.runs or (1 if args.smoke else 3)
    warmup = args.warmup if args.warmup is not None else (200 if args.smoke else 2000)
    if args.case:
        figures = anyio.run(case, args.case, args.url, warmup, n)
        figures["peak_rss_mb"] = peak_rss_mb()
        print(json.dumps(figures), flush=True)
        return
    results: list[dict[str, dict[str, Any]]] = []
    rows = []
    with standin() as url:
        for run in range(1, runs + 1):
            results.append({})
            for kind in CASES:
                f = in_subprocess(kind, url, warmup, n, module="benchmarks.bench_transport")
                results[-1][kind] = f
                rows.append(
                    {
                        "run": run,
                        "transport": kind,
                        "CPU us/request": f["cpu_us_per_request"],
                        "requests/s": f["requests_per_s"],
                        "failed": f["failed"],
                        "requests": f"{f['provider_requests']}/{f['expected_requests']}",
                    }
                )
                print(table(rows[-1:]), flush=True)
    print(table(rows))
    spread_rows = []
    for kind in CASES:
        cpu = [r[kind]["cpu_us_per_request"] for r in results]
        spread_rows.append(spread(kind, "CPU us/request", cpu))
    for kind in CASES[1:]:
        ratio = [r[kind]["cpu_us_per_request"] / r["http1"]["cpu_us_per_request"] for r in results]
        spread_rows.append(spread(f"{kind} / http1", "CPU per request", ratio))
    print(f"\n{n:,} requests per case after {warmup:,}, concurrency {CONCURRENCY}, {runs} runs")
    print(table(spread_rows))
    name = "transport" + ("-smoke" if args.smoke else "")
    payload = {"requests": n, "warmup": warmup, "runs": results, "summary": spread_rows}
    print(f"wrote {write_result(name, payload)}")


if __name__ == "__main__":
    main()
