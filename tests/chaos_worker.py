"""One router process for the store chaos test (tests/test_chaos_store.py).

python -m tests.chaos_worker CONFIG_JSON_PATH

The config names the router settings, the keyed messages, this worker's id, the JSON-lines
file it appends every result (and every refusal) to, and a control directory. Protocol:
write ``ready-<id>``; wait for ``start``; send every key (retrying a key refused by the store,
bounded in time and count); write ``phase1-<id>``; wait for ``final``; send every key once more.
Every wait is bounded, so a broken test run ends instead of hanging.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, TextIO

import anyio
import orjson

from router import Message, Router, load_settings
from router.errors import IdempotencyPendingError, RouterError, StateStoreError
from router.sidecar.schemas import result_json

RETRY_PAUSE_S = 0.1
MAX_TRIES = 150  # with RETRY_PAUSE_S and the store timeouts: well over the fault window
PHASE_S = 15.0  # a key still refused after this long is given up (reported as such)
WAIT_S = 40.0  # longest wait for the test's go-ahead files


async def wait_for(path: Path, limit_s: float = WAIT_S) -> None:
    """Poll for a file the test process writes (no Event reaches across processes)."""
    with anyio.fail_after(limit_s):
        while not await anyio.Path(path).exists():  # noqa: ASYNC110
            await anyio.sleep(0.01)


def message_of(spec: dict[str, Any]) -> Message:
    return Message(
        mobiles=list(spec["mobiles"]),
        scene=spec["scene"],
        params=dict(spec["params"]),
        idempotency_key=spec["key"],
    )


class Log:
    def __init__(self, out: TextIO, worker: int) -> None:
        self.out, self.worker = out, worker

    def write(self, phase: int, key: str, **fields: Any) -> None:
        line = {"phase": phase, "worker": self.worker, "key": key, "t": time.time(), **fields}
        self.out.write(orjson.dumps(line).decode() + "\n")
        self.out.flush()


async def send_key(router: Router, spec: dict[str, Any], phase: int, log: Log) -> None:
    """Send until the router returns a result; a refusal is logged and retried."""
    message = message_of(spec)
    give_up = time.monotonic() + PHASE_S
    for _ in range(MAX_TRIES):
        try:
            result = await router.send(message)
        except StateStoreError as exc:
            log.write(phase, spec["key"], error="store", text=str(exc))
        except IdempotencyPendingError as exc:
            log.write(phase, spec["key"], error="pending", text=str(exc))
        except RouterError as exc:  # not expected: reported, not retried
            log.write(phase, spec["key"], error=type(exc).__name__, text=str(exc))
            return
        else:
            log.write(phase, spec["key"], result=result_json(result))
            return
        if time.monotonic() > give_up:
            break
        await anyio.sleep(RETRY_PAUSE_S)
    log.write(phase, spec["key"], error="gave_up", text="still refused at the end")


async def run(config: dict[str, Any], out: TextIO) -> None:
    control = Path(config["control_dir"])
    worker: int = config["worker"]
    specs: list[dict[str, Any]] = config["messages"]
    settings = load_settings(**config["settings"])
    log = Log(out, worker)
    async with Router(settings) as router:
        # A pooled Redis connection before the faults: writes reach a frozen Redis's socket.
        await router.store.open_until(["baofoo"])
        await anyio.Path(control / f"ready-{worker}").touch()
        await wait_for(control / "start")
        limiter = anyio.CapacityLimiter(config["concurrency"])

        async def one(spec: dict[str, Any], phase: int) -> None:
            async with limiter:
                await send_key(router, spec, phase, log)

        async with anyio.create_task_group() as tg:
            for spec in specs:
                tg.start_soon(one, spec, 1)
                await anyio.sleep(config["pacing_s"])
        await anyio.Path(control / f"phase1-{worker}").touch()
        await wait_for(control / "final")
        async with anyio.create_task_group() as tg:
            for spec in specs:
                tg.start_soon(one, spec, 2)
        left = len(router.outbox)
    sys.stderr.write(f"worker {worker}: outbox {left} entries before close\n")


def main(config_path: str) -> None:
    config = orjson.loads(Path(config_path).read_bytes())
    with Path(config["out"]).open("a", encoding="utf-8") as out:
        anyio.run(run, config, out)


if __name__ == "__main__":
    main(sys.argv[1])
