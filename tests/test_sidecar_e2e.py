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

# The gateways `serve --sandbox` runs: a templated scene may go to any of them.
SANDBOX_PROVIDERS = {"baofoo", "v1platform", "ronglian", "aliyun", "tencent"}


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
            "--json",
        ],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    body = orjson.loads(done.stdout)
    assert body["ok"] is True
    assert {r["status"] for r in body["recipients"]} == {"accepted"}
    assert all(r["provider"] in SANDBOX_PROVIDERS for r in body["recipients"])


def test_the_cli_prints_a_summary_and_a_key_that_makes_a_retry_safe(sidecar: str) -> None:
    def send(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "router",
                "send",
                "--url",
                sidecar,
                "--content",
                "hi",
                "13800138011",
                "12345",
                *extra,
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    first = send()
    assert first.returncode == 1  # one recipient is invalid: not every one was accepted
    key = first.stderr.split("idempotency key: ")[1].split()[0]
    lines = first.stdout.splitlines()
    assert lines[0].startswith("message ") and "1 accepted" in lines[0] and "1 invalid" in lines[0]
    assert lines[1].split()[:2] == ["13800138011", "accepted"]
    assert lines[2].split()[:2] == ["12345", "invalid"]  # request order, reason shown
    retried = send("--idempotency-key", key)
    assert retried.stdout.splitlines()[0] == lines[0]  # the same message: nothing sent again


def test_idempotency_key_in_header_and_body_must_agree(sidecar: str) -> None:
    body = {"mobiles": ["13800138012"], "content": "x", "idempotency_key": "k-1"}
    clash = httpx.post(
        f"{sidecar}/v1/messages", json=body, headers={"Idempotency-Key": "k-2"}, timeout=10
    )
    assert clash.status_code == 400 and "differ" in clash.json()["detail"]
    long = httpx.post(
        f"{sidecar}/v1/messages",
        json={"mobiles": ["13800138012"], "content": "x"},
        headers={"Idempotency-Key": "k" * 201},
        timeout=10,
    )
    assert long.status_code == 400 and "200" in long.json()["detail"]
    same = httpx.post(
        f"{sidecar}/v1/messages", json=body, headers={"Idempotency-Key": "k-1"}, timeout=10
    )
    assert same.status_code == 200


def test_only_invalid_numbers_are_explained_and_counted_as_excluded(sidecar: str) -> None:
    explained = httpx.post(
        f"{sidecar}/v1/explain", json={"mobiles": ["12345"], "content": "x"}, timeout=10
    ).json()
    assert explained["groups"] == {} and explained["invalid"]["12345"]
    sent = httpx.post(
        f"{sidecar}/v1/messages",
        json={"mobiles": ["13800138013", "12345"], "content": "x", "tags": {}},
        timeout=10,
    ).json()
    assert sent["ok"] is False
    metrics = httpx.get(f"{sidecar}/metrics", timeout=10).text
    excluded = [
        line
        for line in metrics.splitlines()
        if line.startswith("smsrouter_send_requests_total{")
        and 'outcome="excluded"' in line
        and 'scene="content"' in line
    ]
    assert excluded and float(excluded[0].rsplit(" ", 1)[1]) >= 1  # not counted as "ok"


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
    unrenderable = explained.json()["unrenderable"]
    assert {"ronglian", "aliyun", "tencent"} <= set(unrenderable)  # templates only

    providers = httpx.get(f"{sidecar}/v1/providers", timeout=5).json()
    assert set(providers) == SANDBOX_PROVIDERS
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
