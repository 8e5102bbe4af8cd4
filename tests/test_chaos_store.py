"""Chaos for the state store: two router processes, one real Redis, faulty providers.

Two worker processes (tests/chaos_worker.py, each its own Router) send the same keyed messages
at the same time, so they race on every key, while this process freezes Redis (SIGSTOP), kills
and restarts it (AOF, fsync always), and the emulators time out after accepting, answer 5xx
and refuse. Then both workers send every key once more. The truth is checked against what the
emulators took: one final status per recipient and key, nothing taken that was reported
rejected, accepted exactly once where the result says, no false throttle left behind, and the
final replays make no provider request.

Seeds: ``CHAOS_SEED`` overrides the per-mode default; the seed is printed (shown on failure).
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest

from providers.emulators._common import FaultAction, FaultSettings
from router import Message, RecipientStatus, Router, StateStoreError, load_settings
from tests.redis_server import RedisServer, frozen, redis_server
from tests.sandbox import RunningSandbox, plain_providers

PROVIDERS = ("baofoo", "v1platform", "ronglian")
# Where each emulator's send request carries our request id: the emulators refuse (or answer
# from memory) a repeated id, so a repeated id is never a second SMS.
REQUEST_IDS = {"baofoo": "requestId", "v1platform": "taskId", "ronglian": "reqId"}
PLAIN, THROTTLED = "login_code", "low_balance"  # Ronglian cannot carry low_balance
KEYS = 24
ROOT = Path(__file__).resolve().parent.parent
SEEDS = {"at_most_once": 20261203, "at_least_once": 20261204}


@pytest.fixture(autouse=True)
def _clean(sandbox: RunningSandbox) -> Iterator[None]:
    sandbox.reset()
    yield
    sandbox.reset()


@dataclass(frozen=True)
class Spec:
    key: str
    scene: str
    mobiles: tuple[str, str]
    params: dict[str, str]


def specs() -> list[Spec]:
    """Unique mobiles per key: any throttle a key meets can only be false."""
    out = []
    for i in range(KEYS):
        scene = THROTTLED if i % 2 else PLAIN
        params = {"balance": str(i)} if scene == THROTTLED else {"code": f"{i:04d}"}
        mobiles = (f"139{i:04d}0001", f"139{i:04d}0002")
        out.append(Spec(f"chaos-{i}", scene, mobiles, params))
    return out


def refused_mobiles(all_specs: list[Spec]) -> list[str]:
    """Refused by every provider that checks numbers (Ronglian takes them, then fails them)."""
    return [s.mobiles[0] for i, s in enumerate(all_specs) if i % 3 == 2]


def overrides(sandbox: RunningSandbox, server: RedisServer, mode: str) -> dict[str, Any]:
    base = sandbox.settings()
    providers = {
        name: {**raw, "user_pass": "sandbox-pass"} if name == "baofoo" else raw
        for name, raw in plain_providers(base.providers).items()
    }
    for raw in providers.values():
        raw.update(timeout_s=0.3, connect_timeout_s=0.3)
    templates = {k: v.model_dump() for k, v in base.templates.items()}
    templates[THROTTLED]["throttle_s"] = 60
    return {
        "providers": providers,
        "templates": templates,
        "unknown_outcomes": mode,
        "send_deadline_s": 4,
        "receipt_poll_s": 0,
        "balance_poll_s": 0,
        "resilience": {"failover_budget_min": 1000},
        "state": {
            "backend": "redis",
            "redis_url": server.url,
            "prefix": f"chaos-{mode}:",
            "breaker_sync_s": 0,
            "redis_timeout_s": 0.2,
            "clock_skew_s": 0.2,
            "commit_retry_s": 0.3,
            "outbox_flush_s": 0.2,
        },
    }


def provider_faults(seed: int, refused: list[str]) -> dict[str, FaultSettings]:
    return {
        name: FaultSettings(
            latency_s=0.08,
            timeout_rate=0.12,
            timeout_after_accept=True,
            hang_s=0.6,
            http_5xx_rate=0.08,
            error_rate=0.12,
            reject_mobiles=refused,
            seed=seed * 10 + n,
        )
        for n, name in enumerate(PROVIDERS)
    }


# -- faults of the store -----------------------------------------------------------------------


def run_store_faults(server: RedisServer, rng: random.Random) -> list[str]:
    """Freeze, kill and restart, freeze again: about 2-6 s in all. Returns what was done."""
    done = []
    time.sleep(rng.uniform(0.15, 0.4))
    for kind in ("freeze", "kill", "freeze"):
        hold = rng.uniform(0.3, 1.5) if kind == "freeze" else rng.uniform(0.3, 1.0)
        if kind == "freeze":
            with frozen(server):
                time.sleep(hold)
        else:
            server.stop()
            time.sleep(hold)
            server.start()
        done.append(f"{kind} {hold:.2f}s")
        time.sleep(rng.uniform(0.2, 0.5))
    return done


# -- what the emulators took -------------------------------------------------------------------


def taken(sandbox: RunningSandbox, refused: list[str]) -> Counter[tuple[str, str]]:
    """(provider, mobile) -> how many SMS the emulator took (not refused, not failed before
    accepting; a timeout here always accepts first). A repeated request id is not counted."""
    counts: Counter[tuple[str, str]] = Counter()
    for name in PROVIDERS:
        seen: set[str] = set()
        requests = sandbox.sends(name)
        for request, batch in zip(requests, sandbox.mobiles_sent(name), strict=True):
            if request.action not in (FaultAction.NONE, FaultAction.TIMEOUT):
                continue
            if name != "ronglian" and set(batch) & set(refused):
                continue  # baofoo and v1platform refuse the whole request
            rid = str(request.fields.get(REQUEST_IDS[name], ""))
            if rid and rid in seen:
                continue
            seen.add(rid)
            counts.update((name, m) for m in batch)
    return counts


def request_count(sandbox: RunningSandbox) -> int:
    return sum(len(sandbox.sends(name)) for name in PROVIDERS)


# -- the workers -------------------------------------------------------------------------------


def wait_files(paths: list[Path], workers: list[subprocess.Popen[bytes]], limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    while not all(p.exists() for p in paths):
        dead = [n for n, w in enumerate(workers) if w.poll() is not None]
        if dead:
            errs = [(paths[0].parent.parent / f"worker-{n}.err").read_text() for n in dead]
            pytest.fail(f"workers {dead} exited early:\n" + "\n".join(e[-3000:] for e in errs))
        assert time.monotonic() < deadline, f"timed out waiting for {paths}"
        time.sleep(0.02)


def start_workers(
    tmp: Path, settings: dict[str, Any], all_specs: list[Spec]
) -> list[subprocess.Popen[bytes]]:
    control = tmp / "control"
    control.mkdir()
    messages = [
        {"key": s.key, "scene": s.scene, "mobiles": list(s.mobiles), "params": s.params}
        for s in all_specs
    ]
    workers = []
    for worker in range(2):
        config = {
            "settings": settings,
            "messages": messages,
            "worker": worker,
            "out": str(tmp / f"results-{worker}.jsonl"),
            "control_dir": str(control),
            "concurrency": 6,
            "pacing_s": 0.2,
        }
        path = tmp / f"worker-{worker}.json"
        path.write_bytes(orjson.dumps(config))
        with (tmp / f"worker-{worker}.err").open("wb") as err:
            workers.append(
                subprocess.Popen(
                    [sys.executable, "-m", "tests.chaos_worker", str(path)],
                    cwd=ROOT,
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                )
            )
    return workers


def read_lines(tmp: Path) -> list[dict[str, Any]]:
    lines = []
    for worker in range(2):
        path = tmp / f"results-{worker}.jsonl"
        if path.exists():
            lines += [orjson.loads(line) for line in path.read_bytes().splitlines() if line]
    return lines


# -- the fresh sends after the run -------------------------------------------------------------


async def fresh_sends(settings: dict[str, Any], mobiles: list[str]) -> dict[str, str]:
    """Send the throttled scene to each mobile (no key) until accepted, for up to ~3 s:
    the outbox compensations of the workers are applied by then. Mobile -> last status."""
    last: dict[str, str] = {}
    async with Router(load_settings(**settings)) as router:
        for mobile in mobiles:
            deadline = time.monotonic() + 3.0
            while True:
                result = await router.send(
                    Message(mobiles=[mobile], scene=THROTTLED, params={"balance": "1"})
                )
                last[mobile] = result.recipients[0].status.value
                if last[mobile] != RecipientStatus.THROTTLED or time.monotonic() > deadline:
                    break
                await anyio.sleep(0.2)
    return last


# -- the test --------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["at_most_once", "at_least_once"])
def test_two_routers_tell_the_truth_through_store_and_provider_faults(
    sandbox: RunningSandbox, tmp_path: Path, mode: str
) -> None:
    seed = int(os.environ.get("CHAOS_SEED") or SEEDS[mode])
    print(f"chaos seed={seed} mode={mode} (rerun: CHAOS_SEED={seed})")
    rng = random.Random(seed)
    all_specs = specs()
    by_key = {s.key: s for s in all_specs}
    refused = refused_mobiles(all_specs)
    with redis_server(tmp_path, persistent=True) as server:
        settings = overrides(sandbox, server, mode)
        workers = start_workers(tmp_path, settings, all_specs)
        control = tmp_path / "control"
        try:
            wait_files([control / "ready-0", control / "ready-1"], workers, 20)
            for name, faults in provider_faults(seed, refused).items():
                sandbox.state(name).set_faults(faults)
            (control / "start").touch()
            store_faults = run_store_faults(server, rng)
            print("store faults:", ", ".join(store_faults))
            wait_files([control / "phase1-0", control / "phase1-1"], workers, 40)
            taken_before = taken(sandbox, refused)
            requests_before = request_count(sandbox)
            (control / "final").touch()
            for worker in workers:
                worker.wait(40)
        finally:
            for worker in workers:
                if worker.poll() is None:
                    worker.kill()
                    worker.wait(5)
        errs = [(tmp_path / f"worker-{w}.err").read_text() for w in range(2)]
        assert [w.returncode for w in workers] == [0, 0], errs
        requests_after = request_count(sandbox)
        for name in PROVIDERS:
            sandbox.state(name).set_faults(FaultSettings())
        lines = read_lines(tmp_path)
        check_results(lines, by_key, taken_before, mode, seed)
        # The final replays of every key made no provider request at all.
        assert requests_after == requests_before, f"seed={seed}: final replays sent again"
        # No mobile that got nothing from its key stays throttled once compensations ran.
        finals = final_statuses(lines)
        unsent = sorted(
            mobile
            for (key, mobile), status in finals.items()
            if by_key[key].scene == THROTTLED and status in ("rejected", "throttled", "unroutable")
        )
        print(f"{len(unsent)} throttled-scene mobiles got nothing; fresh sends to them")
        statuses = anyio.run(fresh_sends, settings, unsent)
    stuck = {m: s for m, s in statuses.items() if s != "accepted"}
    assert not stuck, f"seed={seed}: mobiles still throttled without an SMS: {stuck}"


def final_statuses(lines: list[dict[str, Any]]) -> dict[tuple[str, str], str]:
    """(key, mobile) -> status, from the final-phase results."""
    out = {}
    for line in lines:
        if line["phase"] == 2 and "result" in line:
            for r in line["result"]["recipients"]:
                out[(line["key"], r["mobile"])] = r["status"]
    return out


def check_results(
    lines: list[dict[str, Any]],
    by_key: dict[str, Spec],
    taken_before: Counter[tuple[str, str]],
    mode: str,
    seed: int,
) -> None:
    at = f"seed={seed} mode={mode}"
    errors = [line for line in lines if "error" in line]
    store_errors = [e for e in errors if e["error"] == "store"]
    print(f"{len(lines)} lines, {len(errors)} refusals:", dict(Counter(map(_why, errors))))
    # A refusal by the store is only ever raised while nothing was sent, and says so.
    assert all("nothing was sent" in e["text"].lower() for e in store_errors), (
        at,
        store_errors[:3],
    )
    unexpected = [e for e in errors if e["error"] not in ("store", "pending")]
    assert not unexpected, (at, unexpected[:3])
    results: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for line in lines:
        if "result" in line:
            results[line["key"]].append(line)
    not_recorded = sum(not r["result"]["recorded"] for rs in results.values() for r in rs)
    print(f"{not_recorded} results returned with recorded=false")
    for key, spec in by_key.items():
        got = results[key]
        phases = Counter((r["worker"], r["phase"]) for r in got)
        assert phases[(0, 2)] == phases[(1, 2)] == 1, (at, key, phases)
        assert phases[(0, 1)] + phases[(1, 1)] >= 1, (at, key, "no result while faulty")
        # One send per key: every result of both workers is that send's result.
        ids = {r["result"]["message_id"] for r in got}
        assert len(ids) == 1, (at, key, [(r["worker"], r["phase"], r["result"]) for r in got])
        views = {
            tuple((x["mobile"], x["status"], x["provider"]) for x in r["result"]["recipients"])
            for r in got
        }
        assert len(views) == 1, (at, key, views)
        for outcome in got[0]["result"]["recipients"]:
            check_recipient(outcome, taken_before, at, key)
        assert {x["mobile"] for x in got[0]["result"]["recipients"]} == set(spec.mobiles)
    total: Counter[str] = Counter()
    for (_, mobile), n in taken_before.items():
        total[mobile] += n
    twice_n = sum(n > 1 for n in total.values())
    print(f"{sum(total.values())} SMS taken; {twice_n} mobiles taken twice")
    if mode == "at_most_once":
        twice = {m: n for m, n in total.items() if n > 1}
        assert not twice, f"{at}: mobiles taken more than once: {twice}"


def _why(error: dict[str, Any]) -> str:
    """A refusal's kind and, for the store, the failed operation and exception."""
    match = re.search(r"failed during (\w+) \((\w+)\)", error["text"])
    return f"{error['error']}:{match[1]}:{match[2]}" if match else error["error"]


def check_recipient(
    outcome: dict[str, Any], taken_before: Counter[tuple[str, str]], at: str, key: str
) -> None:
    mobile, status = outcome["mobile"], outcome["status"]
    everywhere = {p: taken_before[(p, mobile)] for p in PROVIDERS if taken_before[(p, mobile)]}
    where = (at, key, mobile, status, everywhere, outcome["attempts"])
    # Unique mobiles per key: a throttle here was left by a send that sent nothing.
    assert status != "throttled", ("a key's mobile reported throttled", *where)
    if status == "rejected":
        assert not everywhere, ("rejected, but an emulator took it", *where)
    if status == "accepted":
        assert taken_before[(outcome["provider"], mobile)] == 1, ("accepted, not once", *where)


# -- one race, made deterministic ---------------------------------------------------------------


@pytest.mark.anyio
async def test_a_late_throttle_mark_of_one_router_does_not_throttle_anothers_send(
    sandbox: RunningSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Router A holds the key, its throttle write meets a frozen Redis (refused: nothing was
    sent), Redis resumes within the write's fence and applies A's marks late, and A gives the
    key back at once. Router B (another instance, same Redis) then sends the same key: it must
    not find A's marks, which A only removes after the fence, and report the mobile throttled
    for an SMS nobody sent."""
    mobile = "13800990001"
    message = Message(
        mobiles=[mobile], scene=THROTTLED, params={"balance": "7"}, idempotency_key="late-mark-1"
    )
    with redis_server(tmp_path, persistent=True) as server:
        settings = load_settings(**overrides(sandbox, server, "at_most_once"))
        async with Router(settings) as a, Router(settings) as b:
            for router, warm in ((a, "13800990002"), (b, "13800990003")):
                # Scripts cached in Redis and a pooled connection: the frozen write goes out.
                warm_up = Message(mobiles=[warm], scene=THROTTLED, params={"balance": "1"})
                await router.send(warm_up)
            assert server.proc is not None
            pid = server.proc.pid
            real_throttle = a.store.throttle

            async def throttle_into_a_freeze(*args: Any, **kwargs: Any) -> set[str]:
                os.kill(pid, signal.SIGSTOP)
                try:
                    return await real_throttle(*args, **kwargs)
                finally:
                    await anyio.sleep(0.1)  # resumes 0.3 s in: within the 0.4 s fence
                    os.kill(pid, signal.SIGCONT)

            monkeypatch.setattr(a.store, "throttle", throttle_into_a_freeze)
            with pytest.raises(StateStoreError, match="Nothing was sent"):
                await a.send(message)
            monkeypatch.undo()
            with anyio.fail_after(10):
                other = await b.send(message)
                again = await a.send(message)
    [r] = other.recipients
    got = sum(batch.count(mobile) for p in PROVIDERS for batch in sandbox.mobiles_sent(p))
    assert (r.status, got) == (RecipientStatus.ACCEPTED, 1), (r.error, got)
    assert again.message_id == other.message_id
