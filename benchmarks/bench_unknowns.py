"""Unknown outcomes before and after settling them (issue 15): a chaos run, not a speed test.

    python -m benchmarks.bench_unknowns [--sends 2000] [--runs 3] [--smoke]

Ronglian and the v1 platform share the traffic (weights 1:1, Baofoo off), each with
``--fault`` of its send requests timing out before taking the message and as many taken and
then left unanswered past the client's timeout (``drop_after_accept_rate``): both look the same
to the router, an unknown outcome. Two cases, each against fresh emulators (loopback threads in
this process), the same seed, ``unknown_outcomes = "at_most_once"``:

  before: no settling (``replay_unknown = false``, ``reconcile_window_s = 0``);
  after:  the defaults plus pull reconciliation: Ronglian resends under the same ``reqId``,
          the v1 platform is settled by pulling ``/report`` (``reconcile_window_s = 3``).

Figures per case: recipients with an unknown attempt, left unknown at the end (and of those,
how many the provider had in fact taken), settled; double sends (a number taken twice by the
providers, counted from the emulators' own records) and false statuses (``accepted`` but never
taken; ``rejected`` but taken). Both must be zero in both cases.
"""

from __future__ import annotations

import argparse
import random
from collections import Counter
from typing import Any

import anyio

from benchmarks.stats import spread, table, write_result
from providers.emulators._common import FaultAction, FaultSettings
from providers.emulators.server import ThreadedServer, free_port
from router import Message, RecipientStatus, Router
from router.events import Event, EventBus, UnknownResolved
from router.sidecar.sandbox import create_sandbox, sandbox_settings

PROVIDERS = ("v1platform", "ronglian")
TAKEN_ACTIONS = {FaultAction.NONE, FaultAction.DROPPED}


class Resolutions:
    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str, str]] = Counter()

    def handle(self, event: Event) -> None:
        if isinstance(event, UnknownResolved):
            self.counts[(event.provider, event.method, event.outcome)] += event.recipients


def taken_numbers(box: Any) -> Counter[str]:
    """Every national number a provider took (from the emulators' own records)."""
    taken: Counter[str] = Counter()
    for sent in box.state("ronglian").accepted:
        taken.update(m[-11:] for m in sent.to)
    for request in box.state("v1platform").sent_requests("/api/v1/send"):
        if request.action in TAKEN_ACTIONS:
            taken.update(m[-11:] for m in str(request.fields.get("mobiles", "")).split(",") if m)
    return taken


async def drive(router: Router, sends: int, concurrency: int, offset: int) -> list[Any]:
    results: list[Any] = []
    numbers = iter(range(sends))

    async def worker() -> None:
        for i in numbers:
            message = Message(
                mobiles=[f"139{offset + i:08d}"], scene="login_code", params={"code": "4242"}
            )
            results.extend((await router.send(message)).recipients)

    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(worker)
    return results


def run_case(case: str, sends: int, concurrency: int, fault: float, seed: int) -> dict[str, Any]:
    ports = {name: free_port() for name in ("baofoo", *PROVIDERS)}
    box = create_sandbox(ports, tuple(ports))
    servers = [ThreadedServer(app, port=ports[name]) for name, app in box.apps.items()]
    for server in servers:
        server.start()
    try:
        for i, name in enumerate(PROVIDERS):
            box.state(name).set_faults(
                FaultSettings(
                    timeout_rate=fault,
                    drop_after_accept_rate=fault,
                    hang_s=1.5,
                    seed=seed + i,
                )
            )
        base = sandbox_settings(box)
        providers = {
            n: {**raw, "weight": 1 if n in PROVIDERS else 0, "timeout_s": 0.3}
            for n, raw in base.providers.items()
        }
        after = case == "after"
        resilience = {
            "replay_unknown": after,
            "reconcile_window_s": 3.0 if after else 0.0,
            # The chaos keeps the breakers from deciding the routing: measured here is what
            # becomes of an unknown, not how quickly a provider is given up.
            "breaker": {"consecutive_failures": 1_000_000, "failure_rate": 1.0},
        }
        settings = sandbox_settings(box, providers=providers, resilience=resilience)
        sink = Resolutions()

        async def main() -> list[Any]:
            async with Router(settings, events=EventBus([sink]), rng=random.Random(seed)) as r:
                r.set_enabled("baofoo", False)
                return await drive(r, sends, concurrency, offset=0)

        recipients = anyio.run(main)
        taken = taken_numbers(box)
    finally:
        for server in servers:
            server.stop()
    statuses = Counter(r.status for r in recipients)
    had_unknown = [r for r in recipients if any(a.verdict == "unknown" for a in r.attempts)]
    left = [r for r in recipients if r.status is RecipientStatus.UNKNOWN]
    national = {r.mobile: (r.normalised or "")[-11:] for r in recipients}
    false_accepted = sum(
        r.status is RecipientStatus.ACCEPTED and taken[national[r.mobile]] == 0 for r in recipients
    )
    false_rejected = sum(
        r.status is RecipientStatus.REJECTED and taken[national[r.mobile]] > 0 for r in recipients
    )
    return {
        "case": case,
        "recipients": len(recipients),
        "had_unknown": len(had_unknown),
        "left_unknown": len(left),
        "left_unknown_pct": 100.0 * len(left) / max(1, len(recipients)),
        "left_unknown_taken": sum(taken[national[r.mobile]] > 0 for r in left),
        "settled": len(had_unknown) - len(left),
        "accepted": statuses[RecipientStatus.ACCEPTED],
        "double_sends": sum(n > 1 for n in taken.values()),
        "false_statuses": false_accepted + false_rejected,
        "resolutions": {"/".join(k): v for k, v in sorted(sink.counts.items())},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sends", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--fault", type=float, default=0.1, help="each of the two fault rates")
    parser.add_argument("--smoke", action="store_true", help="a few seconds, for CI")
    args = parser.parse_args()
    if args.smoke:
        args.sends, args.runs = 100, 1
    runs: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
    for run in range(args.runs):
        for case in runs:
            row = run_case(case, args.sends, args.concurrency, args.fault, seed=run)
            runs[case].append(row)
            print(table([{k: v for k, v in row.items() if k != "resolutions"}]), flush=True)
            print("  resolutions:", row["resolutions"], flush=True)
    summary = [
        spread(case, key, [float(r[key]) for r in rows])
        for case, rows in runs.items()
        for key in ("had_unknown", "left_unknown", "left_unknown_pct", "settled", "double_sends")
    ]
    print(table(summary))
    for rows in runs.values():
        for row in rows:
            if row["double_sends"] or row["false_statuses"]:
                raise SystemExit(f"untrue outcome in {row['case']}: {row}")
    path = write_result(
        "unknowns" + ("-smoke" if args.smoke else ""),
        {**vars(args), "runs": runs, "summary": summary},
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
