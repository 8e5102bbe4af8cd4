"""Sidecar against a minimal proxy doing the same upstream request, same machine, same run.

    python -m benchmarks.bench_sidecar [--runs 3] [--sends 20000] [--smoke]

Processes, all on loopback:
  * the stand-in v1 platform (``benchmarks/standin.py``: a fixed success body per POST);
  * A. the sidecar: ``python -m router serve --config <toml>`` with one provider, v1platform,
    pointing at the stand-in, memory state, pollers off;
  * B. the baseline: ``benchmarks/proxy_baseline.py``, a minimal Starlette app on uvicorn whose
    POST handler forwards one request (the v1 adapter's form body) to the stand-in through one
    shared aiohttp session and answers JSON;
  * the load generator (this module with ``--load``, its own process): aiohttp, a fixed pool of
    workers, a warm-up, then the timed sends; it reads every server process's CPU time from
    ``/proc/<pid>/stat`` around the timed part.
Both servers run on the same event loop implementation (uvloop when installed, as the sidecar
picks it; checked and printed) and with the same ``OTEL_*`` tracing set-up (ratio sampler at
1%, no exporter). Each run loads A and B in turn (the order alternates between runs).
Target: the sidecar's sends/s is at least 0.8 x the baseline's. On a small machine the
servers, the stand-in and the load generator compete for the cores, so the CPU per request
ratio (baseline CPU / sidecar CPU) is the fairer figure. Each server's peak RSS (``VmHWM``)
is read after every case: it covers all the sends that server has taken so far (issue 13:
the sidecar stays <= 200 MB through 100,000 sends; ``--sends 100000 --runs 1`` checks it).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import httpx

from benchmarks.stats import percentile, spread, table, write_result
from providers.emulators.server import free_port
from router.cli import _has_uvloop

CONCURRENCY = 100
CONTENT = "code 1234"
ACCOUNT = "sandbox"
PASSWORD = "sandbox-pass"
SIGNATURE = "【沙箱】"
TARGET = 0.8
CASES = {"sidecar": "A. sidecar (router)", "baseline": "B. minimal proxy (Starlette)"}
TRACING_ENV = {
    "OTEL_TRACES_SAMPLER": "traceidratio",
    "OTEL_TRACES_SAMPLER_ARG": "0.01",
    "OTEL_TRACES_EXPORTER": "none",
    "OTEL_METRICS_EXPORTER": "none",
    "OTEL_LOGS_EXPORTER": "none",
}
CONFIG = """
receipt_poll_s = 0
balance_poll_s = 0

[server]
drain_s = 1
readiness_grace_s = 0
{gc}

[state]
backend = "memory"

[providers.v1platform]
type = "v1platform"
base_url = "{upstream}"
account = "{account}"
password = "{password}"
signature = "{signature}"
concurrency = {concurrency}
"""
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- processes ---------------------------------------------------------------------------------


@contextmanager
def process(
    name: str, args: list[str], probe: str, log: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``args``, wait until ``probe`` answers; terminate (then kill) on the way out."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(probe, timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    tail = log.read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"{name} did not start:\n{tail}") from None
                time.sleep(0.1)
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``pid`` (``/proc/<pid>/stat`` fields 14 and 15)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def peak_rss_of(pid: int) -> float:
    """Peak resident memory of ``pid`` so far, MB (``VmHWM``): it only grows over the runs."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def uvloop_mapped(pid: int) -> bool:
    """Whether uvloop's compiled loop module is loaded in ``pid``."""
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False
    return any("uvloop" in line and "loop." in line for line in maps.splitlines())


def standin_requests(url: str) -> int:
    return int(httpx.get(f"{url}/_count", timeout=5).json()["requests"])


# -- the load generator (its own process) -------------------------------------------------------


async def drive(
    session: aiohttp.ClientSession, url: str, first: int, n: int, concurrency: int
) -> tuple[list[float], int, float]:
    """``n`` sends by ``concurrency`` workers: latencies, failures, wall seconds."""
    latencies: list[float] = []
    failed = 0
    counter = iter(range(first, first + n))

    async def worker() -> None:
        nonlocal failed
        for i in counter:
            body = {"mobiles": [f"138{i % 10**8:08d}"], "content": CONTENT}
            t = time.perf_counter()
            try:
                async with session.post(url, json=body) as response:
                    answer = await response.json(content_type=None)
                    ok = response.status == 200 and isinstance(answer, dict) and answer.get("ok")
            except (aiohttp.ClientError, TimeoutError, ValueError):
                ok = False
            latencies.append(time.perf_counter() - t)
            failed += not ok

    t0 = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(min(concurrency, n)):
            tg.start_soon(worker)
    return latencies, failed, time.perf_counter() - t0


async def load(
    url: str, warmup: int, n: int, concurrency: int, pids: dict[str, int]
) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        _, warm_failed, _ = await drive(session, url, 0, warmup, concurrency)
        before = {name: cpu_s(pid) for name, pid in pids.items()}
        own = time.process_time()
        latencies, failed, wall = await drive(session, url, warmup, n, concurrency)
        own = time.process_time() - own
        after = {name: cpu_s(pid) for name, pid in pids.items()}
    cpu_us = {f"{name}_cpu_us": (after[name] - before[name]) / n * 1e6 for name in pids}
    return {
        "sends_per_s": n / wall,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "failed": failed,
        "warmup_failed": warm_failed,
        **cpu_us,
        "loadgen_cpu_us": own / n * 1e6,
        "wall_s": wall,
    }


def run_load(args: argparse.Namespace) -> None:
    pids = {k: int(v) for k, v in (p.split("=") for p in args.pids.split(","))}
    figures = anyio.run(
        load,
        args.load,
        args.warmup,
        args.sends,
        args.concurrency,
        pids,
        backend_options={"use_uvloop": _has_uvloop()},
    )
    print(json.dumps(figures), flush=True)


# -- the parent: processes, runs, summary ---------------------------------------------------------


def one_case(
    url: str, upstream: str, pids: dict[str, int], warmup: int, n: int, concurrency: int
) -> dict[str, Any]:
    before = standin_requests(upstream)
    args = [sys.executable, "-m", "benchmarks.bench_sidecar", "--load", url]
    args += ["--warmup", str(warmup), "--sends", str(n), "--concurrency", str(concurrency)]
    args += ["--pids", ",".join(f"{k}={v}" for k, v in pids.items())]
    done = subprocess.run(args, capture_output=True, text=True, timeout=60 + n / 50, check=False)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise RuntimeError(f"the load generator failed with exit code {done.returncode}")
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    figures["upstream_requests"] = standin_requests(upstream) - before
    figures["expected_upstream"] = warmup + n
    return figures


SUMMARY = {
    "sends/s": "sends_per_s",
    "p50 ms": "p50_ms",
    "p99 ms": "p99_ms",
    "server CPU us/send": "server_cpu_us",
    "stand-in CPU us/send": "standin_cpu_us",
    "load gen CPU us/send": "loadgen_cpu_us",
    "failed": "failed",
    "peak RSS MB (all sends so far)": "peak_rss_mb",
}


def summary(runs: list[dict[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    rows = []
    for case, label in CASES.items():
        for title, key in SUMMARY.items():
            rows.append(spread(label, title, [float(r[case][key]) for r in runs]))
    rate = [r["sidecar"]["sends_per_s"] / r["baseline"]["sends_per_s"] for r in runs]
    cpu = [r["baseline"]["server_cpu_us"] / r["sidecar"]["server_cpu_us"] for r in runs]
    rows.append(spread("A / B", "sends/s ratio", rate))
    rows.append(spread("B / A", "server CPU/send ratio", cpu))
    return rows


def per_run_row(run: int, case: str, f: dict[str, Any]) -> dict[str, Any]:
    return {
        "run": run,
        "case": CASES[case],
        "sends/s": f["sends_per_s"],
        "p50 ms": f["p50_ms"],
        "p99 ms": f["p99_ms"],
        "server us/send": f["server_cpu_us"],
        "stand-in us/send": f["standin_cpu_us"],
        "loadgen us/send": f["loadgen_cpu_us"],
        "failed": f["failed"] + f["warmup_failed"],
        "upstream": f"{f['upstream_requests']}/{f['expected_upstream']}",
        "peak RSS MB": f["peak_rss_mb"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="1,000 sends, 1 run (CI)")
    parser.add_argument("--sends", type=int, default=None, help="timed sends per case (20000)")
    parser.add_argument("--runs", type=int, default=None, help="runs (3)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed sends first (2000)")
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY)
    parser.add_argument(
        "--gc-gen0",
        type=int,
        default=None,
        help="the sidecar's server.gc_gen0_threshold (default: the setting's default; 0: "
        "Python's own)",
    )
    parser.add_argument(
        "--proxy-gc-gen0",
        type=int,
        default=0,
        help="the baseline proxy's collector generation-0 threshold (default 0: Python's "
        "own; 20000 gives it the sidecar's tuning, to see what the tuning alone is worth)",
    )
    parser.add_argument("--load", help=argparse.SUPPRESS)
    parser.add_argument("--pids", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.sends = args.sends or (1000 if args.smoke else 20_000)
    args.warmup = args.warmup if args.warmup is not None else (200 if args.smoke else 2000)
    runs = args.runs or (1 if args.smoke else 3)
    if args.sends < 1 or runs < 1 or args.warmup < 0 or args.concurrency < 1:
        parser.error("need --sends >= 1, --runs >= 1, --warmup >= 0, --concurrency >= 1")
    if args.load:
        run_load(args)
        return
    bench(
        args.sends,
        args.warmup,
        runs,
        args.concurrency,
        args.smoke,
        args.gc_gen0,
        args.proxy_gc_gen0,
    )


def bench(
    n: int,
    warmup: int,
    runs: int,
    concurrency: int,
    smoke: bool,
    gc_gen0: int | None = None,
    proxy_gc_gen0: int = 0,
) -> None:
    loop = "uvloop" if _has_uvloop() else "asyncio"
    results: list[dict[str, dict[str, Any]]] = []
    rows: list[dict[str, Any]] = []
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        port = free_port()
        upstream = f"http://127.0.0.1:{port}"
        standin = stack.enter_context(
            process(
                "stand-in",
                [sys.executable, "-m", "benchmarks.standin", "--port", str(port)],
                f"{upstream}/_count",
                tmp / "standin.log",
            )
        )
        config = tmp / "router.toml"
        config.write_text(
            CONFIG.format(
                upstream=upstream,
                account=ACCOUNT,
                password=PASSWORD,
                signature=SIGNATURE,
                concurrency=concurrency,
                gc="" if gc_gen0 is None else f"gc_gen0_threshold = {gc_gen0}",
            ),
            encoding="utf-8",
        )
        port = free_port()
        sidecar_url = f"http://127.0.0.1:{port}"
        sidecar_args = [sys.executable, "-m", "router", "serve", "--config", str(config)]
        sidecar_args += ["--port", str(port)]
        sidecar = stack.enter_context(
            process(
                "sidecar",
                sidecar_args,
                f"{sidecar_url}/readyz",
                tmp / "sidecar.log",
                TRACING_ENV,
            )
        )
        port = free_port()
        baseline_url = f"http://127.0.0.1:{port}"
        baseline_args = [sys.executable, "-m", "benchmarks.proxy_baseline", "--port", str(port)]
        baseline_args += ["--upstream", upstream, "--account", ACCOUNT, "--password", PASSWORD]
        baseline_args += ["--signature", SIGNATURE, "--concurrency", str(concurrency)]
        baseline_args += ["--loop", loop, "--gc-gen0", str(proxy_gc_gen0)]
        baseline = stack.enter_context(
            process(
                "baseline",
                baseline_args,
                f"{baseline_url}/_loop",
                tmp / "baseline.log",
                TRACING_ENV,
            )
        )
        baseline_loop = httpx.get(f"{baseline_url}/_loop", timeout=5).json()["loop"]
        loops = {
            "sidecar": (
                f"{loop} (router.cli picks it; uvloop loaded in the process: "
                f"{uvloop_mapped(sidecar.pid)})"
            ),
            "baseline": f"{baseline_loop} (uvloop loaded: {uvloop_mapped(baseline.pid)})",
            "standin": f"uvloop loaded: {uvloop_mapped(standin.pid)}",
        }
        for name, text in loops.items():
            print(f"event loop, {name}: {text}")
        tracing = " ".join(f"{k}={v}" for k, v in TRACING_ENV.items())
        print(f"tracing, both servers: {tracing}")
        servers = {"sidecar": (sidecar_url, sidecar.pid), "baseline": (baseline_url, baseline.pid)}
        for run in range(1, runs + 1):
            results.append({})
            order = list(CASES) if run % 2 else list(reversed(CASES))
            for case in order:
                url, pid = servers[case]
                pids = {"server": pid, "standin": standin.pid}
                figures = one_case(f"{url}/v1/messages", upstream, pids, warmup, n, concurrency)
                figures["peak_rss_mb"] = peak_rss_of(pid)  # after every send so far
                results[-1][case] = figures
                rows.append(per_run_row(run, case, figures))
                print(table(rows[-1:]), flush=True)
    print()
    print(table(rows))
    spread_rows = summary(results)
    print(
        f"\n{n:,} sends per case after {warmup:,} warm-up, concurrency {concurrency}, {runs} runs"
    )
    print(table(spread_rows))
    rate = statistics.median(
        r["sidecar"]["sends_per_s"] / r["baseline"]["sends_per_s"] for r in results
    )
    cpu = statistics.median(
        r["baseline"]["server_cpu_us"] / r["sidecar"]["server_cpu_us"] for r in results
    )
    verdict = "met" if rate >= TARGET else "missed"
    print(f"sidecar / baseline sends/s (median) = {rate:.2f}, target >= {TARGET}: {verdict}")
    print(f"baseline CPU / sidecar CPU per send (median) = {cpu:.2f}")
    payload = {
        "sends": n,
        "warmup": warmup,
        "concurrency": concurrency,
        "gc_gen0_threshold": gc_gen0,
        "proxy_gc_gen0_threshold": proxy_gc_gen0,
        "loops": loops,
        "tracing_env": TRACING_ENV,
        "cores": os.cpu_count(),
        "runs": results,
        "summary": spread_rows,
        "ratio_sends_per_s_median": rate,
        "ratio_cpu_per_send_median": cpu,
        "target": TARGET,
    }
    name = "sidecar-smoke" if smoke else "sidecar" if n == 20_000 else f"sidecar-{n}"
    name += "" if gc_gen0 is None else f"-gc{gc_gen0}"
    name += f"-proxygc{proxy_gc_gen0}" if proxy_gc_gen0 else ""
    print(f"wrote {write_result(name, payload)}")


if __name__ == "__main__":
    main()
