"""The router against what users would write instead, side by side, same emulator, one run.

    python -m benchmarks.bench_load [--smoke]

OTP sends (one recipient each) at concurrency 1, 10, 100, 1000 through:
  1. the Baofoo document's example (a new httpx.AsyncClient per call),
  2. raw httpx with one shared client (default transport),
  3. raw aiohttp with one shared session (the practical ceiling here),
  4. the router, full features on: breakers, in-memory dedupe (a key per message),
     Prometheus metrics, tracing sampled at 1%.
The Baofoo emulator runs in its own process. Figures: messages/s, p50/p99 latency, provider
requests issued (counted by the emulator), and client CPU seconds per 100k messages.
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import anyio
import httpx
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import TraceIdRatioBased
from prometheus_client import CollectorRegistry

from benchmarks.emulators import emulators
from benchmarks.stats import cpu_seconds, percentile, table, write_result
from router import Message, Router, RouterSettings
from router.events import EventBus
from router.sidecar.sandbox import Sandbox, sandbox_settings
from router.telemetry import MetricsSink, TracingSink

FORM = {
    "userName": "sandbox-user",
    "userPass": "sandbox-pass",
    "content": "code 1234",
    "domain": "bench",
    "sendType": "3",
    "businessType": "4",
}


def payload(i: int) -> dict[str, str]:
    return {**FORM, "mobile": f"138{i:08d}", "requestId": uuid.uuid4().hex}


def ok(body: Any) -> bool:
    return isinstance(body, dict) and body.get("success") is True and (body.get("result") or 0) > 0


async def run_clients(
    n: int, concurrency: int, one: Callable[[int], Awaitable[bool]]
) -> dict[str, float]:
    latencies: list[float] = []
    failures = 0
    counter = iter(range(n))

    async def worker() -> None:
        nonlocal failures
        for i in counter:
            start = time.perf_counter()
            if not await one(i):
                failures += 1
            latencies.append(time.perf_counter() - start)

    cpu0, t0 = cpu_seconds(), time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(min(concurrency, n)):
            tg.start_soon(worker)
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
    return {
        "msgs_per_s": n / wall,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "failed": failures,
        "cpu_s_per_100k": cpu / n * 100_000,
    }


async def doc_example(url: Any, n: int, concurrency: int) -> dict[str, float]:
    async def one(i: int) -> bool:
        async with httpx.AsyncClient(timeout=10.0) as client:  # as the document does
            response = await client.post(url, data=payload(i))
            return ok(response.json())

    return await run_clients(n, concurrency, one)


async def raw_httpx(url: Any, n: int, concurrency: int) -> dict[str, float]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=30.0, limits=limits) as client:

        async def one(i: int) -> bool:
            response = await client.post(url, data=payload(i))
            return ok(response.json())

        return await run_clients(n, concurrency, one)


async def raw_aiohttp(url: Any, n: int, concurrency: int) -> dict[str, float]:
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(i: int) -> bool:
            async with session.post(url, data=payload(i)) as response:
                return ok(await response.json(content_type=None))

        return await run_clients(n, concurrency, one)


def router_settings(urls: dict[str, str], concurrency: int) -> RouterSettings:
    base = sandbox_settings(Sandbox(apps={}, urls=urls))
    providers = {
        name: {**raw, "concurrency": max(1, concurrency), "weight": 1, "encoding": "form"}
        if name == "baofoo"
        else {**raw, "enabled": False}
        for name, raw in base.providers.items()
    }
    return sandbox_settings(
        Sandbox(apps={}, urls=urls), providers=providers, receipt_poll_s=0, balance_poll_s=0
    )


def full_telemetry(settings: RouterSettings) -> EventBus:
    tracing = TracingSink(TracerProvider(sampler=TraceIdRatioBased(0.01)).get_tracer("bench"))
    metrics = MetricsSink(
        CollectorRegistry(),
        providers=list(settings.providers),
        scenes=list(settings.templates),
        trace_id_for=tracing.trace_id_for,
    )
    return EventBus([metrics, tracing])


async def via_router(urls: Any, n: int, concurrency: int) -> dict[str, float]:
    settings = router_settings(urls, concurrency)
    async with Router(settings, events=full_telemetry(settings)) as router:

        async def one(i: int) -> bool:
            result = await router.send(
                Message(
                    mobiles=[f"138{i:08d}"], content="code 1234", idempotency_key=uuid.uuid4().hex
                )
            )
            return result.ok

        return await run_clients(n, concurrency, one)


def emulator_requests(url: str) -> int:
    return len(httpx.get(f"{url}/_emulator/requests", timeout=30).json())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    levels = (1, 10, 100) if args.smoke else (1, 10, 100, 1000)
    rows = []
    with emulators() as urls:
        send_url = f"{urls['baofoo']}/sendSms"
        for concurrency in levels:
            n = 30 if args.smoke else max(1000, min(4000, concurrency * 20))
            doc_n = min(n, 40 if args.smoke else 1000)  # 25/s: bounded in time
            cases = {
                "doc example (client per call)": (doc_example, send_url, doc_n),
                "raw httpx (shared client)": (raw_httpx, send_url, n),
                "raw aiohttp (shared session)": (raw_aiohttp, send_url, n),
                "router (full features)": (via_router, urls, n),
            }
            for name, (client, target, count) in cases.items():
                httpx.post(f"{urls['baofoo']}/_emulator/reset", timeout=10)
                figures = anyio.run(client, target, count, concurrency)
                rows.append(
                    {
                        "concurrency": concurrency,
                        "client": name,
                        **figures,
                        "provider_requests": emulator_requests(urls["baofoo"]),
                    }
                )
                print(table(rows[-1:]), flush=True)
    print(table(rows))
    summary = ratios(rows)
    print(table(summary))
    name = "load" + ("-smoke" if args.smoke else "")
    print(f"wrote {write_result(name, {'rows': rows, 'ratios': summary})}")


def ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for c in sorted({r["concurrency"] for r in rows}):
        at = {r["client"]: r["msgs_per_s"] for r in rows if r["concurrency"] == c}
        routed = at["router (full features)"]
        out.append(
            {
                "concurrency": c,
                "router_vs_aiohttp": routed / at["raw aiohttp (shared session)"],
                "router_vs_httpx": routed / at["raw httpx (shared client)"],
                "router_vs_doc_example": routed / at["doc example (client per call)"],
            }
        )
    return out


if __name__ == "__main__":
    main()
