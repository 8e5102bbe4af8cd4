"""Sustained load: client CPU per send over a long run, router against raw aiohttp.

    python -m benchmarks.bench_soak [--sends 100000] [--runs 3] [--smoke] [--ladder]

A stand-in v1 platform (``benchmarks/standin.py``: a raw asyncio server answering every send
with a fixed success body in a few microseconds) runs in its own process, so only the client
is measured. Each case runs in a fresh subprocess (so its peak RSS is its own):
  A. the router: one ``Router`` with only the v1 platform enabled, full features on (breakers,
     in-memory dedupe with a unique idempotency key per send, Prometheus metrics, tracing
     sampled at 1%), single-recipient sends;
  A'. the same router with ``transport = "aiohttp"`` (what the http1 transport saves);
  B. raw aiohttp: one shared session posting the same form bodies to the same endpoint.
With ``--ladder`` the cases are instead the router with its features added one at a time
(no key and no telemetry; + an idempotency key; + Prometheus metrics; + 1% tracing, i.e. the
full router) and raw aiohttp: what each feature costs a send.
Both: a warm-up, then ``--sends`` sends by a fixed pool of 100 workers pulling from one
counter. Figures: process CPU per send in each fifth of the run (does it grow?), last fifth /
first fifth, overall CPU per send, sends/s, peak RSS, provider requests counted by the
stand-in, and aiohttp CPU / router CPU (the share of raw aiohttp's efficiency the router keeps).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
from prometheus_client import CollectorRegistry

from benchmarks.bench_load import full_telemetry
from benchmarks.stats import peak_rss_mb, spread, table, write_result
from providers.emulators.server import free_port
from providers.v1platform import V1PlatformSettings
from router import Message, Router, RouterSettings
from router.events import EventBus
from router.sidecar.sandbox import Sandbox, sandbox_settings
from router.telemetry import MetricsSink

CONCURRENCY = 100
FIFTHS = 5
PROVIDER = "v1platform"
CONTENT = "code 1234"
CASES = {
    "router": "router (full features)",
    "router-aiohttp": "router, transport = aiohttp",
    "aiohttp": "raw aiohttp (shared session)",
}
# --ladder: what each feature costs, from the bare engine up to the full router.
LADDER = {
    "bare": "router: no key, no telemetry",
    "keyed": "router: + idempotency key",
    "metrics": "router: + Prometheus metrics",
    "router": "router (full features)",
    "aiohttp": "raw aiohttp (shared session)",
}
FEATURES = {"bare": (False, False), "keyed": (True, False), "metrics": (True, True)}


# -- the stand-in server --------------------------------------------------------------------


@contextmanager
def standin() -> Iterator[str]:
    """Start ``benchmarks.standin`` in its own process; yields its base URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.standin", "--port", str(port)])
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                counts(url)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("the stand-in server did not start") from None
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def counts(url: str) -> dict[str, float]:
    answer: dict[str, float] = httpx.get(f"{url}/_count", timeout=5).json()
    return answer


# -- one case, in its own process -------------------------------------------------------------


async def drive(
    first: int,
    n: int,
    one: Callable[[int], Awaitable[bool]],
    concurrency: int = CONCURRENCY,
) -> dict[str, Any]:
    """``n`` sends (indices ``first..first+n-1``) by ``concurrency`` workers; CPU and wall
    time are sampled as the n/5, 2n/5, ... n-th send completes."""
    marks = [n * k // FIFTHS for k in range(1, FIFTHS + 1)]
    cpu = [time.process_time()]
    wall = [time.perf_counter()]
    done = failed = 0
    counter = iter(range(first, first + n))

    async def worker() -> None:
        nonlocal done, failed
        for i in counter:
            if not await one(i):
                failed += 1
            done += 1
            if done == marks[len(cpu) - 1]:
                cpu.append(time.process_time())
                wall.append(time.perf_counter())

    async with anyio.create_task_group() as tg:
        for _ in range(min(concurrency, n)):
            tg.start_soon(worker)
    sizes = [b - a for a, b in zip([0, *marks], marks, strict=False)]
    per_fifth = [(cpu[k + 1] - cpu[k]) / sizes[k] * 1e6 for k in range(FIFTHS)]
    return {
        "cpu_us_per_send_fifths": per_fifth,
        "last_over_first": per_fifth[-1] / per_fifth[0],
        "cpu_us_per_send": (cpu[-1] - cpu[0]) / n * 1e6,
        "sends_per_s": n / (wall[-1] - wall[0]),
        "sends_per_s_fifths": [sizes[k] / (wall[k + 1] - wall[k]) for k in range(FIFTHS)],
        "failed": failed,
    }


def mobile(i: int) -> str:
    return f"138{i:08d}"


def router_settings(url: str, **provider: Any) -> RouterSettings:
    """Sandbox settings pointed at the stand-in; ``provider`` adds to the v1 platform's."""
    urls = {"baofoo": url, "v1platform": url, "ronglian": url}
    base = sandbox_settings(Sandbox(apps={}, urls=urls))
    providers = {
        name: {**raw, "concurrency": CONCURRENCY, **provider} if name == PROVIDER else raw
        for name, raw in base.providers.items()
    }
    return sandbox_settings(
        Sandbox(apps={}, urls=urls), providers=providers, receipt_poll_s=0, balance_poll_s=0
    )


async def case_router(
    url: str, warmup: int, n: int, transport: str = "", features: str = ""
) -> dict[str, Any]:
    """The full router, or with ``features`` ("bare", "keyed", "metrics") a lesser one."""
    settings = router_settings(url)
    if transport:  # the same router over another transport (the default: http1)
        settings = settings.model_copy(update={"transport": transport})
    keyed, metrics_only = FEATURES.get(features, (True, False))
    if not features:
        events = full_telemetry(settings)
    elif metrics_only:  # as a deployment without tracing has it: no exemplar look-ups
        events = EventBus(
            [
                MetricsSink(
                    CollectorRegistry(),
                    providers=[*settings.providers],
                    scenes=[*settings.templates],
                )
            ]
        )
    else:
        events = EventBus()
    async with Router(settings, events=events) as router:
        for name in router.providers:
            router.set_enabled(name, name == PROVIDER)

        async def one(i: int) -> bool:
            key = uuid.uuid4().hex if keyed else None
            message = Message(mobiles=[mobile(i)], content=CONTENT, idempotency_key=key)
            result = await router.send(message)
            return result.ok

        await drive(0, warmup, one)
        rss = rss_now_mb()
        return {**await drive(warmup, n, one), "rss_after_warmup_mb": rss}


def v1_fields(settings: RouterSettings) -> dict[str, str]:
    """What the router's v1 adapter posts, minus the per-send ``taskId`` and ``mobiles``."""
    v1 = V1PlatformSettings.model_validate(settings.providers[PROVIDER])
    return {"account": v1.account, "pwd": v1.pwd(), "signature": v1.signature or ""}


async def case_aiohttp(url: str, warmup: int, n: int) -> dict[str, Any]:
    fields = v1_fields(router_settings(url))
    account, pwd = fields["account"], fields["pwd"]
    content = fields["signature"] + CONTENT
    send_url = f"{url}/api/v1/send"
    import aiohttp  # here: the router's cases must not load it (the default needs none)

    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(i: int) -> bool:
            body = {
                "account": account,
                "pwd": pwd,
                "taskId": uuid.uuid4().hex,
                "mobiles": mobile(i),
                "content": content,
            }
            async with session.post(send_url, data=body) as response:
                answer = await response.json(content_type=None)
                return isinstance(answer, dict) and answer.get("code") == "00"

        await drive(0, warmup, one)
        rss = rss_now_mb()
        return {**await drive(warmup, n, one), "rss_after_warmup_mb": rss}


def rss_now_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def run_case(case: str, url: str, warmup: int, n: int) -> None:
    """The child's job: one case, figures as one JSON line on stdout."""
    if case == "aiohttp":
        figures = anyio.run(case_aiohttp, url, warmup, n)
    elif case in FEATURES:
        figures = anyio.run(case_router, url, warmup, n, "", case)
    else:
        transport = "" if case == "router" else case.removeprefix("router-")
        figures = anyio.run(case_router, url, warmup, n, transport)
    figures["rss_end_mb"] = rss_now_mb()
    figures["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(figures), flush=True)


# -- the parent: runs, stand-in, summary -------------------------------------------------------


def in_subprocess(
    case: str, url: str, warmup: int, n: int, *extra: str, module: str = "benchmarks.bench_soak"
) -> dict[str, Any]:
    """Run ``module --case case`` in a fresh process; its figures plus the provider requests
    the stand-in counted meanwhile."""
    before = counts(url)["requests"]
    args = [sys.executable, "-m", module, "--case", case, "--url", url]
    args += ["--warmup", str(warmup), "--sends", str(n), *extra]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120 + n / 50, check=False)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise RuntimeError(f"case {case} failed with exit code {done.returncode}")
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    figures["provider_requests"] = int(counts(url)["requests"] - before)
    figures["expected_requests"] = warmup + n
    return figures


SUMMARY = {
    **{f"cpu us/send fifth {k + 1}": f"fifth{k + 1}" for k in range(FIFTHS)},
    "cpu us/send last/first": "last_over_first",
    "cpu us/send overall": "cpu_us_per_send",
    "sends/s": "sends_per_s",
    "RSS after warm-up MB": "rss_after_warmup_mb",
    "peak RSS MB": "peak_rss_mb",
}


def flat(figures: dict[str, Any]) -> dict[str, float]:
    out = {k: float(v) for k, v in figures.items() if isinstance(v, int | float)}
    for k, v in enumerate(figures["cpu_us_per_send_fifths"]):
        out[f"fifth{k + 1}"] = v
    return out


def summary(
    runs: list[dict[str, dict[str, Any]]], cases: dict[str, str] = CASES
) -> list[dict[str, Any]]:
    rows = []
    for case, label in cases.items():
        for title, key in SUMMARY.items():
            values = [flat(r[case])[key] for r in runs]
            rows.append(spread(label, title, values))
    for case, label in cases.items():  # each router's share of raw aiohttp's efficiency
        if case != "aiohttp":
            cpu = [r["aiohttp"]["cpu_us_per_send"] / r[case]["cpu_us_per_send"] for r in runs]
            rows.append(spread(label, "aiohttp CPU / its CPU", cpu))
    if "router-aiohttp" in cases:
        cpu = [
            r["router-aiohttp"]["cpu_us_per_send"] / r["router"]["cpu_us_per_send"] for r in runs
        ]
        rows.append(spread("both", "router over aiohttp CPU / router CPU", cpu))
    return rows


def per_run_row(run: int, case: str, f: dict[str, Any]) -> dict[str, Any]:
    return {
        "run": run,
        "case": {**CASES, **LADDER}[case],
        "fifths us/send": " ".join(f"{v:.1f}" for v in f["cpu_us_per_send_fifths"]),
        "last/first": f["last_over_first"],
        "us/send": f["cpu_us_per_send"],
        "sends/s": f["sends_per_s"],
        "peak RSS MB": f["peak_rss_mb"],
        "failed": f["failed"],
        "requests": f"{f['provider_requests']}/{f['expected_requests']}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="2,000 sends, 1 run (CI)")
    parser.add_argument("--sends", type=int, default=None, help="timed sends (100000)")
    parser.add_argument("--runs", type=int, default=None, help="runs per case (3)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed sends first (2000)")
    parser.add_argument(
        "--ladder", action="store_true", help="the router with features added one by one"
    )
    parser.add_argument("--case", choices=sorted({*CASES, *LADDER}), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    n = args.sends or (2000 if args.smoke else 100_000)
    runs = args.runs or (1 if args.smoke else 3)
    warmup = args.warmup if args.warmup is not None else (200 if args.smoke else 2000)
    if n < FIFTHS or runs < 1 or warmup < 0:
        parser.error("need --sends >= 5, --runs >= 1, --warmup >= 0")
    if args.case:
        run_case(args.case, args.url, warmup, n)
        return
    cases = LADDER if args.ladder else CASES
    results: list[dict[str, dict[str, Any]]] = []
    rows = []
    with standin() as url:
        start = counts(url)
        for run in range(1, runs + 1):
            results.append({})
            for case in cases:
                figures = in_subprocess(case, url, warmup, n)
                results[-1][case] = figures
                rows.append(per_run_row(run, case, figures))
                print(table(rows[-1:]), flush=True)
        end = counts(url)
    print(table(rows))
    spread_rows = summary(results, cases)
    print(
        f"\n{n:,} sends per case after {warmup:,} warm-up, concurrency {CONCURRENCY}, {runs} runs"
    )
    print(table(spread_rows))
    served = end["requests"] - start["requests"]
    server_us = (end["cpu_s"] - start["cpu_s"]) / max(1, served) * 1e6
    print(f"stand-in: {served:,.0f} requests, {server_us:.1f} us of its CPU each")
    name = "soak" + ("-ladder" if args.ladder else "") + ("-smoke" if args.smoke else "")
    payload = {
        "sends": n,
        "warmup": warmup,
        "concurrency": CONCURRENCY,
        "runs": results,
        "summary": spread_rows,
        "standin_us_per_request": server_us,
    }
    print(f"wrote {write_result(name, payload)}")


if __name__ == "__main__":
    main()
