"""The sidecar as a newcomer runs it: ``python -m router serve --sandbox`` in a subprocess."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import httpx
import orjson
import pytest

from providers.emulators.server import free_port
from tests.sidecar_process import wait_ready


@pytest.fixture(scope="module")
def sidecar() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "router", "serve", "--sandbox", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(f"{url}/readyz", proc)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def test_send_through_the_sandbox_with_the_cli(sidecar: str) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "router",
            "send",
            "--url",
            sidecar,
            "--scene",
            "login_code",
            "--param",
            "code=123456",
            "13800138000",
            "+86 139-0013-9000",
        ],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    body = orjson.loads(done.stdout)
    assert body["ok"] is True
    assert {r["status"] for r in body["recipients"]} == {"accepted"}
    assert all(r["provider"] in {"baofoo", "v1platform", "ronglian"} for r in body["recipients"])


def test_the_http_api(sidecar: str) -> None:
    sent = httpx.post(
        f"{sidecar}/v1/messages",
        json={"mobiles": ["13800138000", "12345"], "content": "hello from the sandbox"},
        timeout=10,
    )
    assert sent.status_code == 200
    body = sent.json()
    assert [r["status"] for r in body["recipients"]] == ["accepted", "invalid"]
    status = httpx.get(f"{sidecar}/v1/messages/{body['message_id']}", timeout=5)
    assert status.status_code == 200
    assert status.json()["message_id"] == body["message_id"]

    explained = httpx.post(
        f"{sidecar}/v1/explain", json={"mobiles": ["13800138000"], "content": "x"}, timeout=5
    )
    assert explained.status_code == 200
    assert "ronglian" in explained.json()["unrenderable"]  # templates only

    providers = httpx.get(f"{sidecar}/v1/providers", timeout=5).json()
    assert set(providers) == {"baofoo", "v1platform", "ronglian"}
    assert all(p["breaker"] == "closed" for p in providers.values())


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"{not json", 422),
        (b'{"mobiles": ["13800138000"], "content": "x", "surprise": 1}', 422),
        (b'{"mobiles": [], "content": "x"}', 422),
        (b'{"mobiles": ["13800138000"]}', 422),
        (b'{"mobiles": ["13800138000"], "scene": "login_code", "content": "x"}', 422),
        (b'{"mobiles": ["13800138000"], "content": null}', 422),
        (b'{"mobiles": ["13800138000"], "scene": "nope"}', 400),
    ],
)
def test_bad_input_gets_a_clear_error(sidecar: str, body: bytes, status: int) -> None:
    answer = httpx.post(
        f"{sidecar}/v1/messages",
        content=body,
        headers={"content-type": "application/json"},
        timeout=5,
    )
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]
