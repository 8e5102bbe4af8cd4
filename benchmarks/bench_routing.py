"""The routing decision per message inside real sends, and its share of the send's CPU.

    python -m benchmarks.bench_routing [--sends 10000] [--warmup 500] [--smoke]

Real single-recipient sends (scene ``login_code``, so every provider renders it) through
``Router.send`` to the three provider emulators (``benchmarks/emulators.py``, their own
process), all three providers enabled with the sandbox weights. Inside this benchmark only,
timing wrappers (``time.perf_counter`` accumulators) go around, on the router's instances:
  * ``Dispatcher._assign``: the routing decision (route groups, health snapshot, policy
    ranking with reasons, each recipient's target, failover budget); it includes
  * ``HealthView.rank``: the health snapshot and the policy's ranking, also shown alone;
  * ``Router._prepare``: validation and normalisation (phonenumbers), rendering for every
    provider: per-message work before routing, shown apart.
Cases, each in a fresh subprocess after untimed warm-up sends: the default weighted policy
and the cost policy with distinct mobiles (every number new: no normalisation cache hits), and
the weighted policy with 100 repeated mobiles. Figures: mean and median us per message of
each timed part (wall time inside the call: the mean also holds preemption on a shared host and
GC pauses, the median is the typical cost), the process CPU per send, and each part's typical
share of it. The wrappers' own cost (two perf_counter calls, ~0.1 us) is inside the figures.
Target (issue): under 20 us per message.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import anyio

from benchmarks.emulators import emulators
from benchmarks.stats import table, write_result
from router import Message, Router
from router.sidecar.sandbox import Sandbox, sandbox_settings

P = ParamSpec("P")
R = TypeVar("R")

CONCURRENCY = 20
CASES = {
    "weighted-distinct": ("weighted", "distinct"),
    "cost-distinct": ("cost", "distinct"),
    "weighted-repeated": ("weighted", "repeated"),
}
PARTS = {
    "assign": "routing decision (_assign, incl. rank)",
    "rank": "  of which HealthView.rank",
    "prepare": "prepare (validate, render; apart)",
}


class Timer:
    """Per-call durations of one wrapped method (bounded: one float per call)."""

    def __init__(self) -> None:
        self.durations: list[float] = []

    def wrap(self, fn: Callable[P, R]) -> Callable[P, R]:
        durations = self.durations
        clock = time.perf_counter

        def timed(*args: P.args, **kwargs: P.kwargs) -> R:
            start = clock()
            try:
                return fn(*args, **kwargs)
            finally:
                durations.append(clock() - start)

        return timed


def mobile(kind: str, i: int) -> str:
    return f"137{i % 100 if kind == 'repeated' else i:08d}"


async def case(url_map: dict[str, str], policy: str, kind: str, warmup: int, n: int) -> Any:
    settings = sandbox_settings(
        Sandbox(apps={}, urls=url_map), policy=policy, receipt_poll_s=0, balance_poll_s=0
    )
    async with Router(settings) as router:
        timers = {part: Timer() for part in PARTS}
        # Instance attributes shadow the methods: only this router, only this process.
        # (setattr: mypy refuses assigning to a method.)
        assign, rank = (
            timers["assign"].wrap(router.dispatcher._assign),
            timers["rank"].wrap(router.health.rank),
        )
        setattr(router.dispatcher, "_assign", assign)  # noqa: B010
        setattr(router.health, "rank", rank)  # noqa: B010
        setattr(router, "_prepare", timers["prepare"].wrap(router._prepare))  # noqa: B010
        failed = 0
        providers: dict[str, int] = {}

        async def drive(first: int, count: int) -> None:
            nonlocal failed
            counter = iter(range(first, first + count))

            async def worker() -> None:
                nonlocal failed
                for i in counter:
                    message = Message(
                        mobiles=[mobile(kind, i)], scene="login_code", params={"code": "1234"}
                    )
                    result = await router.send(message)
                    failed += not result.ok
                    name = result.recipients[0].provider or "-"
                    providers[name] = providers.get(name, 0) + 1

            async with anyio.create_task_group() as tg:
                for _ in range(min(CONCURRENCY, count)):
                    tg.start_soon(worker)

        await drive(10_000_000, warmup)
        for timer in timers.values():
            timer.durations.clear()
        failed, providers = 0, {}
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await drive(0, n)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    figures: dict[str, Any] = {
        "sends": n,
        "failed": failed,
        "providers": providers,
        "cpu_us_per_send": cpu / n * 1e6,
        "sends_per_s": n / wall,
    }
    for part, timer in timers.items():
        d = timer.durations
        figures[f"{part}_calls"] = len(d)
        figures[f"{part}_us_per_message"] = sum(d) / n * 1e6
        ordered = sorted(d) or [0.0]
        figures[f"{part}_median_us_per_call"] = ordered[len(ordered) // 2] * 1e6
        figures[f"{part}_p90_us_per_call"] = ordered[len(ordered) * 9 // 10] * 1e6
    return figures


def run_case(name: str, url_map: dict[str, str], warmup: int, n: int) -> None:
    """The child's job: one case, figures as one JSON line on stdout."""
    policy, kind = CASES[name]
    print(json.dumps(anyio.run(case, url_map, policy, kind, warmup, n)), flush=True)


def in_subprocess(name: str, url_map: dict[str, str], warmup: int, n: int) -> dict[str, Any]:
    args = [sys.executable, "-m", "benchmarks.bench_routing", "--case", name]
    args += ["--urls", json.dumps(url_map), "--warmup", str(warmup), "--sends", str(n)]
    bound = 120 + (warmup + n) / 20  # >= 20 sends/s, or the case is broken
    done = subprocess.run(args, capture_output=True, text=True, timeout=bound, check=False)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise RuntimeError(f"case {name} failed with exit code {done.returncode}")
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def rows_of(name: str, f: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per timed part. The mean is wall time inside the call, so it also holds the
    moments this process was preempted (a shared host) and GC pauses; the median per call
    times calls per message is the typical cost, and the CPU share is taken from it."""
    cpu, out = f["cpu_us_per_send"], []
    typical: dict[str, float] = {}
    for part, label in PARTS.items():
        calls = f[f"{part}_calls"] / f["sends"]
        typical[part] = f[f"{part}_median_us_per_call"] * calls
        out.append(
            {
                "case": name,
                "part": label,
                "mean_us_per_msg": f[f"{part}_us_per_message"],
                "p50_us_per_call": f[f"{part}_median_us_per_call"],
                "p90_us_per_call": f[f"{part}_p90_us_per_call"],
                "calls_per_msg": calls,
                "p50_share_of_send_cpu": typical[part] / cpu,
            }
        )
    out.append(
        {
            "case": name,
            "part": "prepare + routing decision",
            "mean_us_per_msg": f["assign_us_per_message"] + f["prepare_us_per_message"],
            "p50_us_per_call": typical["assign"] + typical["prepare"],
            "p90_us_per_call": float("nan"),
            "calls_per_msg": float("nan"),
            "p50_share_of_send_cpu": (typical["assign"] + typical["prepare"]) / cpu,
        }
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="300 sends per case (CI)")
    parser.add_argument("--sends", type=int, default=None, help="timed sends per case (10000)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed sends first (500)")
    parser.add_argument("--case", choices=sorted(CASES), help=argparse.SUPPRESS)
    parser.add_argument("--urls", help=argparse.SUPPRESS)
    args = parser.parse_args()
    n = args.sends or (300 if args.smoke else 10_000)
    warmup = args.warmup if args.warmup is not None else (50 if args.smoke else 500)
    if n < 1 or warmup < 0:
        parser.error("need --sends >= 1, --warmup >= 0")
    if args.case:
        run_case(args.case, json.loads(args.urls), warmup, n)
        return
    results: dict[str, dict[str, Any]] = {}
    rows: list[dict[str, Any]] = []
    sends: list[dict[str, Any]] = []
    with emulators() as url_map:
        for name in CASES:
            f = results[name] = in_subprocess(name, url_map, warmup, n)
            rows += rows_of(name, f)
            sends.append(
                {
                    "case": name,
                    "sends": f["sends"],
                    "failed": f["failed"],
                    "cpu_us_per_send": f["cpu_us_per_send"],
                    "sends_per_s": f["sends_per_s"],
                    "providers": " ".join(f"{k}={v}" for k, v in sorted(f["providers"].items())),
                }
            )
            print(table(rows[-len(PARTS) - 1 :]), flush=True)
    print(f"\n{n:,} real sends per case after {warmup:,} warm-up, concurrency {CONCURRENCY}")
    print(table(sends))
    print(table(rows))
    name = "routing" + ("-smoke" if args.smoke else "")
    payload = {"sends": n, "warmup": warmup, "cases": results, "rows": rows}
    print(f"wrote {write_result(name, payload)}")


if __name__ == "__main__":
    main()
