"""Run the three provider emulators in their own process, so a benchmark's client does not
share an event loop (or the GIL) with the servers it measures.

    python -m benchmarks.emulators --port baofoo=18001 --port v1platform=18002 ...

A provider given port 0 is not started (a hard-down provider: connection refused).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import anyio
import httpx

from providers.emulators.server import free_port
from router.sidecar.sandbox import create_sandbox, run_sandbox

NAMES = ("baofoo", "v1platform", "ronglian")


async def _main(ports: dict[str, int]) -> None:
    up = {n: p for n, p in ports.items() if p}
    box = create_sandbox(up, tuple(up))
    async with anyio.create_task_group() as tg:
        await run_sandbox(box, tg)
        print("ready", flush=True)


@contextmanager
def emulators(down: tuple[str, ...] = ()) -> Iterator[dict[str, str]]:
    """Start the emulators in a subprocess; yields base URLs (down ones refuse connections)."""
    ports = {n: free_port() for n in NAMES}
    args = [f"--port={n}={0 if n in down else p}" for n, p in ports.items()]
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.emulators", *args])
    urls = {n: f"http://127.0.0.1:{p}" for n, p in ports.items()}
    try:
        deadline = time.monotonic() + 20
        for name, url in urls.items():
            while name not in down:
                try:
                    httpx.get(f"{url}/_emulator/faults", timeout=1)
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise RuntimeError("emulators did not start") from None
                    time.sleep(0.05)
        yield urls
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", action="append", default=[], help="name=port")
    ns = parser.parse_args()
    anyio.run(_main, {k: int(v) for k, v in (p.split("=") for p in ns.port)})
