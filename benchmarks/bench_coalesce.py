"""Coalescing: same-text single-recipient sends, router with ``coalesce_ms`` against raw aiohttp.

    python -m benchmarks.bench_coalesce [--sends 20000] [--runs 3] [--smoke]

Traffic: many concurrent single-recipient messages with one text (a notice sent to each user
by its own call, each with its own idempotency key), to the v1 platform stand-in
(``benchmarks/standin.py``, its own process, a few us of CPU per request). Cases, each in a
fresh subprocess, the same concurrency (``--concurrency``, 1000):
  A. router, ``coalesce_ms = 5``: full features (in-memory dedupe with a key per message,
     Prometheus metrics, 1% tracing);
  B. router without coalescing (same features);
  C. raw aiohttp: one request per message, one shared session (the baseline).
Figures: messages/s, client CPU per message, provider requests (counted by the stand-in) and
messages per request. Target (issue 13): A >= 5 x C in messages/s; one provider request per
window (requests ~= sends / messages-per-window, never one per message).
"""

from __future__ import annotations

import argparse
import json
import uuid
from typing import Any

import anyio

from benchmarks.bench_load import full_telemetry
from benchmarks.bench_soak import drive, in_subprocess, mobile, router_settings, rss_now_mb, standin
from benchmarks.bench_soak import v1_fields as soak_v1_fields
from benchmarks.stats import peak_rss_mb, spread, table, write_result
from router import Message, Router

PROVIDER = "v1platform"
TEXT = "Scheduled maintenance tonight 02:00-04:00; sending may be delayed."
WINDOW_MS = 5.0
CASES = {
    "coalesced": f"router, coalesce_ms={WINDOW_MS:g}",
    "router": "router, no coalescing",
    "aiohttp": "raw aiohttp, one request per message",
}


async def case_router(url: str, warmup: int, n: int, concurrency: int, window_ms: float) -> Any:
    settings = router_settings(url, coalesce_ms=window_ms)
    async with Router(settings, events=full_telemetry(settings)) as router:
        for name in router.providers:
            router.set_enabled(name, name == PROVIDER)

        async def one(i: int) -> bool:
            message = Message(mobiles=[mobile(i)], content=TEXT, idempotency_key=uuid.uuid4().hex)
            return (await router.send(message)).ok

        await drive(0, warmup, one, concurrency)
        rss = rss_now_mb()
        return {**await drive(warmup, n, one, concurrency), "rss_after_warmup_mb": rss}


async def case_aiohttp(url: str, warmup: int, n: int, concurrency: int, _: float) -> Any:
    fields = soak_v1_fields(router_settings(url))
    content = fields["signature"] + TEXT
    send_url = f"{url}/api/v1/send"
    import aiohttp  # here: the router's cases must not load it (the default needs none)

    connector = aiohttp.TCPConnector(limit=100)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(i: int) -> bool:
            body = {
                "account": fields["account"],
                "pwd": fields["pwd"],
                "taskId": uuid.uuid4().hex,
                "mobiles": mobile(i),
                "content": content,
            }
            async with session.post(send_url, data=body) as response:
                answer = await response.json(content_type=None)
                return isinstance(answer, dict) and answer.get("code") == "00"

        await drive(0, warmup, one, concurrency)
        rss = rss_now_mb()
        return {**await drive(warmup, n, one, concurrency), "rss_after_warmup_mb": rss}


def run_case(case: str, url: str, warmup: int, n: int, concurrency: int) -> None:
    if case == "aiohttp":
        figures = anyio.run(case_aiohttp, url, warmup, n, concurrency, 0.0)
    else:
        window = WINDOW_MS if case == "coalesced" else 0.0
        figures = anyio.run(case_router, url, warmup, n, concurrency, window)
    figures["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(figures), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="1,000 sends, 1 run (CI)")
    parser.add_argument("--sends", type=int, default=None, help="timed sends (20000)")
    parser.add_argument("--runs", type=int, default=None, help="runs per case (3)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed sends first (2000)")
    parser.add_argument("--concurrency", type=int, default=1000)
    parser.add_argument("--case", choices=sorted(CASES), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    n = args.sends or (1000 if args.smoke else 20_000)
    runs = args.runs or (1 if args.smoke else 3)
    warmup = args.warmup if args.warmup is not None else (200 if args.smoke else 2000)
    if args.case:
        run_case(args.case, args.url, warmup, n, args.concurrency)
        return
    results: list[dict[str, dict[str, Any]]] = []
    rows = []
    with standin() as url:
        for run in range(1, runs + 1):
            results.append({})
            for case, label in CASES.items():
                concurrency = ("--concurrency", str(args.concurrency))
                f = in_subprocess(
                    case, url, warmup, n, *concurrency, module="benchmarks.bench_coalesce"
                )
                results[-1][case] = f
                rows.append(
                    {
                        "run": run,
                        "case": label,
                        "msgs/s": f["sends_per_s"],
                        "CPU us/msg": f["cpu_us_per_send"],
                        "provider requests": f["provider_requests"],
                        "msgs/request": f["expected_requests"] / max(1, f["provider_requests"]),
                        "failed": f["failed"],
                        "peak RSS MB": f["peak_rss_mb"],
                    }
                )
                print(table(rows[-1:]), flush=True)
    print(table(rows))
    spread_rows = [
        spread(
            "coalesced / aiohttp",
            "msgs/s",
            [r["coalesced"]["sends_per_s"] / r["aiohttp"]["sends_per_s"] for r in results],
        ),
        spread(
            "router / aiohttp",
            "msgs/s",
            [r["router"]["sends_per_s"] / r["aiohttp"]["sends_per_s"] for r in results],
        ),
        spread(
            "coalesced",
            "msgs/request",
            [
                r["coalesced"]["expected_requests"] / r["coalesced"]["provider_requests"]
                for r in results
            ],
        ),
    ]
    print(f"\n{n:,} sends per case after {warmup:,} warm-up, concurrency {args.concurrency}")
    print(table(spread_rows))
    name = "coalesce" + ("-smoke" if args.smoke else "")
    payload = {"sends": n, "warmup": warmup, "runs": results, "summary": spread_rows}
    print(f"wrote {write_result(name, payload)}")


if __name__ == "__main__":
    main()
