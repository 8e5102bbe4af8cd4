"""Sidecar sends per second against a bare uvicorn endpoint, same machine, same run.

    python -m benchmarks.bench_sidecar [--smoke]

Three processes: the Baofoo emulator, the server under test (the sidecar with the router, or a
bare Starlette endpoint on uvicorn with the same httptools/uvloop settings), and a bounded
aiohttp load generator (this process) posting single-recipient sends at fixed concurrency.
Target: the sidecar reaches at least half the bare endpoint's rate.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import httpx

from benchmarks.emulators import emulators
from benchmarks.stats import percentile, table, write_result
from providers.emulators.server import free_port

CONFIG = """
receipt_poll_s = 0
balance_poll_s = 0

[providers.baofoo]
type = "baofoo"
base_url = "{baofoo}"
user_name = "sandbox-user"
user_pass = "sandbox-pass"
encoding = "form"
concurrency = 100

[templates.login_code]
content = "您的登录验证码为 {{code}},30分钟内有效,请勿泄露。"
"""
UVICORN = ["--log-level", "warning", "--no-access-log", "--http", "httptools", "--loop", "uvloop"]


def start(args: list[str], url: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(url, timeout=1)
            return proc
        except httpx.HTTPError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{args} did not start") from None
            time.sleep(0.1)


async def load(url: str, n: int, concurrency: int) -> dict[str, Any]:
    latencies: list[float] = []
    failed = 0
    counter = iter(range(n))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as s:

        async def worker() -> None:
            nonlocal failed
            for i in counter:
                body = {"mobiles": [f"138{i:08d}"], "scene": "login_code", "params": {"code": "1"}}
                t = time.perf_counter()
                async with s.post(url, json=body) as response:
                    answer = await response.json(content_type=None)
                    failed += response.status != 200 or not answer.get("ok")
                latencies.append(time.perf_counter() - t)

        t0 = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(concurrency):
                tg.start_soon(worker)
        wall = time.perf_counter() - t0
    return {
        "sends_per_s": n / wall,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "failed": failed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    n, concurrency = (200, 20) if args.smoke else (5000, 50)
    rows = []
    with emulators() as urls, tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "router.toml"
        config.write_text(CONFIG.format(**urls), encoding="utf-8")
        servers = {
            "bare uvicorn endpoint": [
                sys.executable,
                "-m",
                "uvicorn",
                "benchmarks.bare_app:app",
                "--port",
                "{port}",
                *UVICORN,
            ],
            "sidecar (router)": [
                sys.executable,
                "-m",
                "router",
                "serve",
                "--config",
                str(config),
                "--port",
                "{port}",
            ],
        }
        for name, template in servers.items():
            port = free_port()
            probe = f"http://127.0.0.1:{port}/" + ("readyz" if "router" in template else "")
            proc = start([a.replace("{port}", str(port)) for a in template], probe)
            try:
                url = f"http://127.0.0.1:{port}/v1/messages"
                anyio.run(load, url, min(200, n), concurrency)  # warm up
                rows.append({"server": name, **anyio.run(load, url, n, concurrency)})
            finally:
                proc.terminate()
                proc.wait(20)
    ratio = rows[1]["sends_per_s"] / rows[0]["sends_per_s"]
    print(table(rows))
    print(f"sidecar / bare = {ratio:.2f} (target >= 0.5)")
    name = "sidecar" + ("-smoke" if args.smoke else "")
    print(f"wrote {write_result(name, {'rows': rows, 'ratio': ratio, 'concurrency': concurrency})}")


if __name__ == "__main__":
    main()
