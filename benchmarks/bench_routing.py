"""The routing decision per message, in process, no HTTP; and where its time goes.

    python -m benchmarks.bench_routing [--smoke]

Per single-recipient message: validate and normalise the mobile (phonenumbers), render the
scene for every provider, rank with the policy, and assign the recipient to a batch; the
same work the engine does before any request. Measured for distinct mobiles (every number
new: phonenumbers parses it) and for repeated ones (the normalisation cache hits), against a
baseline of ``random.choices`` over the provider weights. Target: under 20 us per message.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import random
import time
from typing import Any

from benchmarks.stats import table, write_result
from router import Message, Router
from router.mobile import normalise
from router.runtime import RouteJob
from router.sidecar.sandbox import Sandbox, sandbox_settings

URLS = {name: "http://127.0.0.1:9" for name in ("baofoo", "v1platform", "ronglian")}


def decide(router: Router, message: Message) -> Any:
    prepared = router._prepare(message)
    job = RouteJob("bench", prepared.scene, prepared.renders, 0.3, 0.0)
    return router.dispatcher._assign(job, list(prepared.recipients.trackers))


def per_message_us(router: Router, messages: list[Message]) -> float:
    start = time.perf_counter()
    for message in messages:
        decide(router, message)
    return (time.perf_counter() - start) / len(messages) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    n = 2_000 if args.smoke else 50_000
    router = Router(sandbox_settings(Sandbox(apps={}, urls=URLS)))

    def otp(mobile: str) -> Message:
        return Message(mobiles=[mobile], scene="login_code", params={"code": "1234"})

    repeated = [otp(f"138{i % 100:08d}") for i in range(n)]
    distinct = [otp(f"137{i:08d}") for i in range(n)]
    names, weights = ["baofoo", "v1platform", "ronglian"], [2, 1, 1]
    rng = random.Random(1)
    start = time.perf_counter()
    for _ in range(n):
        rng.choices(names, weights)
    baseline = (time.perf_counter() - start) / n * 1e6
    decide(router, repeated[0])  # warm the cache for the repeated set
    rows = [
        {"case": "random.choices (baseline)", "us_per_message": baseline},
        {
            "case": "routing decision, repeated mobiles",
            "us_per_message": per_message_us(router, repeated),
        },
        {
            "case": "routing decision, distinct mobiles",
            "us_per_message": per_message_us(router, distinct),
        },
    ]
    normalise.cache_clear()
    profile = cProfile.Profile()
    profile.enable()
    per_message_us(router, distinct[: n // 5])
    profile.disable()
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(12)
    print(table(rows))
    print(out.getvalue())
    name = "routing" + ("-smoke" if args.smoke else "")
    print(f"wrote {write_result(name, {'n': n, 'rows': rows, 'profile': out.getvalue()})}")


if __name__ == "__main__":
    main()
