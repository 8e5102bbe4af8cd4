"""The router against what users would write instead, side by side, same emulator, one run.

    python -m benchmarks.bench_load [--sends 20000] [--warmup 1000] [--smoke]

OTP sends (one recipient each) at concurrency 1, 10, 100, 1000 through:
  1. the Baofoo document's example (a new httpx.AsyncClient per call),
  2. raw httpx with one shared client (default transport),
  3. raw aiohttp with one shared session (the practical ceiling here),
  4. the router, full features on: breakers, in-memory dedupe (a key per message),
     Prometheus metrics, tracing sampled at 1%.
The Baofoo emulator runs in its own process; each case runs in a fresh subprocess (its CPU,
heap and GC are its own; ``--smoke`` runs all cases in one). Each case first makes untimed
warm-up sends through the same client, then ``--sends`` timed sends (20,000 by default, so
garbage-collector growth shows; the doc example, CPU-bound at ~30 ms a call, makes
``--doc-sends``). A send that raises (e.g. raw httpx's pool timeouts at concurrency 1000)
counts as failed, by exception type, and the run goes on. Figures: sends/s (all and
successful), failures, p50/p99 latency, client CPU seconds per 100k sends, CPU per send in the
last fifth / the first fifth, gen-2 collections, and provider requests counted by the emulator
(expected: warm-up + timed sends).
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import httpx
from opentelemetry.sdk.trace import TracerProvider
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
FIFTHS = 5
CASES = {
    "doc": "doc example (client per call)",
    "httpx": "raw httpx (shared client)",
    "aiohttp": "raw aiohttp (shared session)",
    "router": "router (full features)",
}

One = Callable[[int], Awaitable[bool]]


def payload(i: int) -> dict[str, str]:
    return {**FORM, "mobile": f"138{i:08d}", "requestId": uuid.uuid4().hex}


def ok(body: Any) -> bool:
    return isinstance(body, dict) and body.get("success") is True and (body.get("result") or 0) > 0


def gen2_collections() -> int:
    return int(gc.get_stats()[2]["collections"])


async def run_clients(first: int, n: int, concurrency: int, one: One) -> dict[str, Any]:
    """``n`` sends (indices ``first..first+n-1``) by ``concurrency`` workers pulling from one
    counter. A send that returns False or raises is a failure; the run goes on."""
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    marks = [n * k // FIFTHS for k in range(1, FIFTHS + 1)]
    cpu_marks: list[float] = []
    done = 0
    counter = iter(range(first, first + n))

    async def worker() -> None:
        nonlocal done
        for i in counter:
            start = time.perf_counter()
            try:
                if not await one(i):
                    errors["not accepted"] += 1
            except Exception as exc:  # a baseline's own failure: counted, not raised
                errors[type(exc).__name__] += 1
            latencies.append(time.perf_counter() - start)
            done += 1
            if len(cpu_marks) <= FIFTHS and done == marks[len(cpu_marks) - 1] > 0:
                cpu_marks.append(cpu_seconds())

    gen2 = gen2_collections()
    cpu_marks.append(cpu_seconds())
    t0 = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(min(concurrency, n)):
            tg.start_soon(worker)
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - cpu_marks[0]
    failed = sum(errors.values())
    growth = float("nan")
    if len(cpu_marks) == FIFTHS + 1 and cpu_marks[1] > cpu_marks[0]:
        first_fifth = (cpu_marks[1] - cpu_marks[0]) / marks[0]
        growth = (cpu_marks[-1] - cpu_marks[-2]) / (marks[-1] - marks[-2]) / first_fifth
    return {
        "sends": n,
        "failed": failed,
        "errors": dict(errors),
        "msgs_per_s": n / wall,
        "ok_per_s": (n - failed) / wall,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "cpu_s_per_100k": cpu / n * 100_000,
        "cpu_last_over_first": growth,
        "gen2_collections": gen2_collections() - gen2,
    }


async def timed(one: One, concurrency: int, warmup: int, n: int) -> dict[str, Any]:
    """Warm-up sends through the same client first, then the timed ones (fresh indices)."""
    if warmup:
        await run_clients(10_000_000, warmup, concurrency, one)
    gc.collect()
    return await run_clients(0, n, concurrency, one)


async def doc_example(url: str, concurrency: int, warmup: int, n: int) -> dict[str, Any]:
    async def one(i: int) -> bool:
        async with httpx.AsyncClient(timeout=10.0) as client:  # as the document does
            response = await client.post(url, data=payload(i))
            return ok(response.json())

    return await timed(one, concurrency, warmup, n)


async def raw_httpx(url: str, concurrency: int, warmup: int, n: int) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=30.0, limits=limits) as client:

        async def one(i: int) -> bool:
            response = await client.post(url, data=payload(i))
            return ok(response.json())

        return await timed(one, concurrency, warmup, n)


async def raw_aiohttp(url: str, concurrency: int, warmup: int, n: int) -> dict[str, Any]:
    import aiohttp  # here: the router's cases must not load it (the default needs none)

    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(i: int) -> bool:
            async with session.post(url, data=payload(i)) as response:
                return ok(await response.json(content_type=None))

        return await timed(one, concurrency, warmup, n)


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
    # 1% of sends traced, drawn by the sink (the documented embedded set-up: the SDK's default
    # sampler keeps what the sink starts; unsampled sends create no span object).
    tracing = TracingSink(TracerProvider().get_tracer("bench"), sample_ratio=0.01)
    metrics = MetricsSink(
        CollectorRegistry(),
        providers=list(settings.providers),
        scenes=list(settings.templates),
        trace_id_for=tracing.trace_id_for,
    )
    return EventBus([metrics, tracing])


async def via_router(urls: dict[str, str], concurrency: int, warmup: int, n: int) -> dict[str, Any]:
    settings = router_settings(urls, concurrency)
    async with Router(settings, events=full_telemetry(settings)) as router:

        async def one(i: int) -> bool:
            result = await router.send(
                Message(
                    mobiles=[f"138{i:08d}"], content="code 1234", idempotency_key=uuid.uuid4().hex
                )
            )
            return result.ok

        return await timed(one, concurrency, warmup, n)


Step = tuple[str, int, int, int]  # case, concurrency, warm-up sends, timed sends


def run_steps(urls: dict[str, str], steps: list[Step]) -> None:
    """The child's job: each case in turn, figures as one JSON line each on stdout; provider
    requests are counted by the emulator (reset before each case, counted after it)."""
    send_url = f"{urls['baofoo']}/sendSms"
    for case, concurrency, warmup, n in steps:
        httpx.post(f"{urls['baofoo']}/_emulator/reset", timeout=10)
        if case == "doc":
            figures = anyio.run(doc_example, send_url, concurrency, warmup, n)
        elif case == "httpx":
            figures = anyio.run(raw_httpx, send_url, concurrency, warmup, n)
        elif case == "aiohttp":
            figures = anyio.run(raw_aiohttp, send_url, concurrency, warmup, n)
        else:
            figures = anyio.run(via_router, urls, concurrency, warmup, n)
        figures["provider_requests"] = f"{emulator_requests(urls['baofoo'])}/{warmup + n}"
        print(json.dumps(figures), flush=True)


def in_subprocess(urls: dict[str, str], steps: list[Step]) -> list[dict[str, Any]]:
    """Run ``steps`` in one fresh interpreter (one step each in the full run)."""
    args = [sys.executable, "-m", "benchmarks.bench_load", "--urls", json.dumps(urls)]
    args += ["--steps", json.dumps(steps)]
    bound = 120 + sum(w + n for _, _, w, n in steps) / 10  # >= 10 sends/s, or it is broken
    done = subprocess.run(args, capture_output=True, text=True, timeout=bound, check=False)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise RuntimeError(f"cases {steps} failed with exit code {done.returncode}")
    lines = done.stdout.strip().splitlines()[-len(steps) :]
    return [json.loads(line) for line in lines]


def emulator_requests(url: str) -> int:
    return len(httpx.get(f"{url}/_emulator/requests", timeout=60).json())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="30 sends per case, one child (CI)")
    parser.add_argument("--sends", type=int, default=None, help="timed sends per case (20000)")
    parser.add_argument("--doc-sends", type=int, default=None, help="for the doc example (1000)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed sends first (1000)")
    parser.add_argument("--urls", help=argparse.SUPPRESS)
    parser.add_argument("--steps", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.steps:
        run_steps(json.loads(args.urls), [tuple(s) for s in json.loads(args.steps)])
        return
    n = args.sends or (30 if args.smoke else 20_000)
    doc_n = args.doc_sends or (30 if args.smoke else 1_000)
    warmup = args.warmup if args.warmup is not None else (10 if args.smoke else 1_000)
    if n < FIFTHS or doc_n < FIFTHS or warmup < 0:
        parser.error("need --sends >= 5, --doc-sends >= 5, --warmup >= 0")
    levels = (1, 10, 100) if args.smoke else (1, 10, 100, 1000)
    steps: list[Step] = []
    for concurrency in levels:
        for case in CASES:
            # the doc example is CPU-bound (~30 ms a call): a short warm-up is enough
            warm = min(warmup, 50) if case == "doc" else max(warmup, concurrency)
            steps.append((case, concurrency, warm, doc_n if case == "doc" else n))
    # Full run: each case in a fresh interpreter (its CPU, heap and GC its own). Smoke: one
    # child for all (interpreter start-up would be most of CI's time).
    groups = [steps] if args.smoke else [[step] for step in steps]
    rows = []
    with emulators() as urls:
        for group in groups:
            for (case, concurrency, _, _), figures in zip(
                group, in_subprocess(urls, group), strict=True
            ):
                errors = figures.pop("errors")
                requests = figures.pop("provider_requests")
                rows.append(
                    {
                        "concurrency": concurrency,
                        "client": CASES[case],
                        **figures,
                        "errors": " ".join(f"{k}={v}" for k, v in errors.items()) or "-",
                        "provider_requests": requests,
                    }
                )
                print(table(rows[-1:]), flush=True)
    print(table(rows))
    summary = ratios(rows)
    print(table(summary))
    name = "load" + ("-smoke" if args.smoke else "")
    payload = {"sends": n, "doc_sends": doc_n, "warmup": warmup, "rows": rows, "ratios": summary}
    print(f"wrote {write_result(name, payload)}")


def ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Successful sends per second of the router over each baseline's."""
    out = []
    for c in sorted({r["concurrency"] for r in rows}):
        at = {r["client"]: r["ok_per_s"] for r in rows if r["concurrency"] == c}
        routed = at[CASES["router"]]
        out.append(
            {
                "concurrency": c,
                "router_vs_aiohttp": _ratio(routed, at[CASES["aiohttp"]]),
                "router_vs_httpx": _ratio(routed, at[CASES["httpx"]]),
                "router_vs_doc_example": _ratio(routed, at[CASES["doc"]]),
            }
        )
    return out


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else float("inf")


if __name__ == "__main__":
    main()
