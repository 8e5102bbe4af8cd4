"""Policy ranking cost per batch, against a plain weighted choice, in one run.

    python -m benchmarks.bench_policy [--smoke]

Three providers with full health snapshots; each figure is the minimum and median over
repeats of the mean per call (perf_counter_ns over N calls), so noise inflates only the median.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

from benchmarks.stats import table, write_result
from policies.base import BreakerState, ProviderHealth, RouteContext
from policies.cost import CostAwarePolicy
from policies.weighted import WeightedFailover

PROVIDERS = [
    ProviderHealth(
        "baofoo",
        weight=2,
        price_per_part=0.040,
        accepted_rate=0.99,
        delivery_rate=0.97,
        latency_s=0.08,
        balance=None,
    ),
    ProviderHealth(
        "v1platform",
        weight=1,
        price_per_part=0.035,
        accepted_rate=0.95,
        delivery_rate=0.93,
        latency_s=0.12,
        balance=5000.0,
    ),
    ProviderHealth(
        "ronglian",
        weight=1,
        price_per_part=0.045,
        accepted_rate=None,
        delivery_rate=None,
        latency_s=None,
        breaker=BreakerState.HALF_OPEN,
    ),
]
NAMES = [p.name for p in PROVIDERS]
WEIGHTS = [p.weight for p in PROVIDERS]


def measure(fn: Callable[[float], Any], calls: int, repeats: int) -> tuple[float, float]:
    per_call = []
    rng = random.Random(1)
    draws = [rng.random() for _ in range(calls)]
    for _ in range(repeats):
        start = time.perf_counter_ns()
        for d in draws:
            fn(d)
        per_call.append((time.perf_counter_ns() - start) / calls / 1000)
    return min(per_call), statistics.median(per_call)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    calls, repeats = (2_000, 3) if args.smoke else (50_000, 7)
    weighted, cost = WeightedFailover(), CostAwarePolicy()
    rng = random.Random(2)
    cases: dict[str, Callable[[float], Any]] = {
        "random.choices (baseline)": lambda d: rng.choices(NAMES, WEIGHTS),
        "WeightedFailover.rank": lambda d: weighted.rank(RouteContext("otp", 1, draw=d), PROVIDERS),
        "CostAwarePolicy.rank": lambda d: cost.rank(RouteContext("otp", 1, draw=d), PROVIDERS),
    }
    rows = []
    base_min = 0.0
    for name, fn in cases.items():
        best, median = measure(fn, calls, repeats)
        base_min = base_min or best
        rows.append(
            {"case": name, "min_us": best, "median_us": median, "x_baseline": best / base_min}
        )
    print(table(rows))
    print(f"wrote {write_result('policy' + ('-smoke' if args.smoke else ''), {'rows': rows})}")


if __name__ == "__main__":
    main()
