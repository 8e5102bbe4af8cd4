"""Start the sidecar as a subprocess with a TOML config pointing at in-test emulators."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from providers.emulators.server import free_port
from tests.sandbox import RunningSandbox

PORT_TAKEN = 4  # `serve`'s exit code for an address in use

CONFIG = """
receipt_poll_s = {receipt_poll_s}
balance_poll_s = 0

[server]
admin_token = "test-admin-token"
drain_s = 5
readiness_grace_s = 0.5
callback_tokens = {{ v1platform = "cb-token", ronglian = "cb-token" }}
callback_allow_ips = {{ ronglian = ["127.0.0.0/8"] }}

[providers.v1platform]
type = "v1platform"
base_url = "{v1platform}"
account = "sandbox"
password = "sandbox-pass"
weight = 1

[providers.ronglian]
type = "ronglian"
base_url = "{ronglian}"
account_sid = "sandboxsid00000000000000000000000"
auth_token = "sandbox-token"
app_id = "sandboxapp"
weight = 1

[templates.login_code]
content = "您的登录验证码为 {{code}},30分钟内有效,请勿泄露。"
defaults = {{ minutes = "30" }}
providers.ronglian = {{ template_id = "1", params = ["code", "minutes"] }}
"""


def wait_ready(url: str, proc: subprocess.Popen[bytes], deadline_s: float = 30) -> None:
    """Poll ``url`` until it answers 200; fail with the process output if it never does."""
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            out = proc.stdout.read().decode() if proc.stdout else ""
            pytest.fail(f"{url} did not become ready:\n{out[-3000:]}")
        time.sleep(0.1)


@contextmanager
def sidecar(
    sandbox: RunningSandbox, tmp: Path, *, receipt_poll_s: float = 0
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    config = tmp / "router.toml"
    config.write_text(
        CONFIG.format(receipt_poll_s=receipt_poll_s, **sandbox.box.urls), encoding="utf-8"
    )
    for _ in range(3):  # exit code 4: the picked port was taken before the sidecar bound it
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "router", "serve", "--config", str(config), "--port", str(port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            if proc.wait(0.5) != PORT_TAKEN:
                break
        except subprocess.TimeoutExpired:
            break  # still running: it is listening, or starting
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(f"{url}/readyz", proc)
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(15)
