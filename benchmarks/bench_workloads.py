"""Broadcasts and a mixed workload through the router, against the emulators.

    python -m benchmarks.bench_workloads [--smoke]

* Broadcast: n recipients (100,000; smoke: 3,000) to each provider alone; the router must
  issue exactly ceil(n / limit) requests (limits 200, 3000, 200). Each broadcast runs in a
  fresh child process so its peak memory is its own.
* Mixed: single-recipient OTP sends at concurrency 100 with Baofoo refusing 30% of requests
  and the v1 platform healthy: throughput, outcomes, failovers, requests per provider.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from typing import Any

import anyio
import httpx

from benchmarks.emulators import emulators
from benchmarks.stats import cpu_seconds, peak_rss_mb, percentile, table, write_result
from router import Message, RecipientStatus, Router, RouterSettings
from router.sidecar.sandbox import Sandbox, sandbox_settings

LIMITS = {"baofoo": 200, "v1platform": 3000, "ronglian": 200}
SEND_PATHS = {"baofoo": "/sendSms", "v1platform": "/api/v1/send", "ronglian": "/TemplateSMS"}


def only(urls: dict[str, str], provider: str, **extra: Any) -> RouterSettings:
    base = sandbox_settings(Sandbox(apps={}, urls=urls))
    providers = {
        n: {
            **raw,
            "enabled": n == provider,
            "concurrency": 8,
            "timeout_s": 60,
            **({"encoding": "form"} if n == "baofoo" else {}),
        }
        for n, raw in base.providers.items()
    }
    return sandbox_settings(
        Sandbox(apps={}, urls=urls),
        providers=providers,
        receipt_poll_s=0,
        balance_poll_s=0,
        send_deadline_s=600,
        **extra,
    )


async def broadcast(urls: dict[str, str], provider: str, n: int) -> dict[str, Any]:
    settings = only(urls, provider)
    mobiles = [f"138{i:08d}" for i in range(n)]
    rss_before = peak_rss_mb()
    async with Router(settings) as router:
        cpu0, t0 = cpu_seconds(), time.perf_counter()
        result = await router.send(
            Message(mobiles=mobiles, scene="login_code", params={"code": "9"})
        )
        wall, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
    accepted = sum(r.status is RecipientStatus.ACCEPTED for r in result.recipients)
    return {
        "provider": provider,
        "recipients": n,
        "accepted": accepted,
        "seconds": wall,
        "msgs_per_s": n / wall,
        "cpu_s": cpu,
        "peak_rss_mb": peak_rss_mb(),
        "rss_before_mb": rss_before,
    }


def child_broadcast(urls: dict[str, str], provider: str, n: int) -> dict[str, Any]:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.bench_workloads",
            "--child",
            json.dumps(urls),
            provider,
            str(n),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=900,
    )
    row: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return row


def requests_at(url: str, provider: str) -> int:
    recorded = httpx.get(f"{url}/_emulator/requests", timeout=60).json()
    return sum(1 for r in recorded if r["path"].endswith(SEND_PATHS[provider]))


async def mixed(urls: dict[str, str], n: int, concurrency: int) -> dict[str, Any]:
    base = sandbox_settings(Sandbox(apps={}, urls=urls))
    providers = {
        name: {
            **raw,
            "concurrency": concurrency,
            "enabled": name != "ronglian",
            **({"encoding": "form"} if name == "baofoo" else {}),
        }
        for name, raw in base.providers.items()
    }
    settings = sandbox_settings(
        Sandbox(apps={}, urls=urls),
        providers=providers,
        receipt_poll_s=0,
        balance_poll_s=0,
        resilience={"failover_budget_ratio": 0.5},
    )
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    counter = iter(range(n))
    async with Router(settings) as router:

        async def worker() -> None:
            for i in counter:
                start = time.perf_counter()
                result = await router.send(Message(mobiles=[f"139{i:08d}"], content="code 1"))
                latencies.append(time.perf_counter() - start)
                for r in result.recipients:
                    statuses[r.status.value] = statuses.get(r.status.value, 0) + 1

        t0 = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(concurrency):
                tg.start_soon(worker)
        wall = time.perf_counter() - t0
    return {
        "sends": n,
        "msgs_per_s": n / wall,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        **statuses,
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        urls, provider, n = json.loads(sys.argv[2]), sys.argv[3], int(sys.argv[4])
        print(json.dumps(anyio.run(broadcast, urls, provider, n)))
        return
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    n = 3_000 if args.smoke else 100_000
    rows = []
    for provider, limit in LIMITS.items():
        with emulators() as urls:
            row = child_broadcast(urls, provider, n)
            issued = requests_at(urls[provider], provider)
        row.update(requests=issued, expected=math.ceil(n / limit))
        rows.append(row)
        print(table(rows[-1:]), flush=True)
    with emulators() as urls:
        httpx.put(
            f"{urls['baofoo']}/_emulator/faults", json={"error_rate": 0.3, "seed": 1}, timeout=10
        )
        mixed_row = anyio.run(mixed, urls, 300 if args.smoke else 5000, 100)
        mixed_row["baofoo_requests"] = requests_at(urls["baofoo"], "baofoo")
        mixed_row["v1platform_requests"] = requests_at(urls["v1platform"], "v1platform")
    print(table(rows))
    print(table([mixed_row]))
    name = "workloads" + ("-smoke" if args.smoke else "")
    print(f"wrote {write_result(name, {'broadcast': rows, 'mixed': mixed_row})}")


if __name__ == "__main__":
    main()
