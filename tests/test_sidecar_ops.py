"""The sidecar as an operator runs it: callbacks, receipt recovery, admin, drain, OpenAPI."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from providers.emulators._common import FaultSettings
from tests.sandbox import RunningSandbox
from tests.sidecar_process import sidecar

OTP = {"scene": "login_code", "params": {"code": "5150"}}


@pytest.fixture(scope="module")
def running(sandbox: RunningSandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with sidecar(sandbox, tmp_path_factory.mktemp("sidecar"), receipt_poll_s=0.5) as (url, _):
        yield url


@pytest.fixture(autouse=True)
def _clean(sandbox: RunningSandbox) -> None:
    sandbox.reset()


def send(url: str, mobiles: list[str], **extra: Any) -> dict[str, Any]:
    answer = httpx.post(f"{url}/v1/messages", json={"mobiles": mobiles, **OTP, **extra}, timeout=10)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def receipts_of(url: str, message_id: str, deadline_s: float = 10) -> list[Any]:
    deadline = time.monotonic() + deadline_s
    while True:
        body = httpx.get(f"{url}/v1/messages/{message_id}", timeout=5).json()
        receipts = [r for rec in body["recipients"] for r in rec["receipts"]]
        if receipts or time.monotonic() > deadline:
            return receipts
        time.sleep(0.1)


def until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Poll ``condition`` until it holds; fail once ``timeout_s`` has passed."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def route_to(url: str, provider: str) -> None:
    for name in ("v1platform", "ronglian"):
        action = "enable" if name == provider else "disable"
        answer = httpx.post(
            f"{url}/v1/admin/providers/{name}/{action}",
            timeout=5,
            headers={"Authorization": "Bearer test-admin-token"},
        )
        assert answer.status_code == 200, answer.text


@pytest.mark.parametrize("provider", ["v1platform", "ronglian"])
def test_pushed_receipts_reach_the_status(
    sandbox: RunningSandbox, running: str, provider: str
) -> None:
    kind = "status" if provider == "v1platform" else "receipt"
    sandbox.state(
        provider
    ).callback_url = f"{running}/v1/callbacks/{provider}/{kind}?token=cb-token"
    route_to(running, provider)
    body = send(running, ["13800000011"])
    assert body["recipients"][0]["provider"] == provider
    receipts = receipts_of(running, body["message_id"])
    assert [r["status"] for r in receipts] == ["delivered"]
    status = httpx.get(f"{running}/v1/messages/{body['message_id']}", timeout=5).json()
    delivery = status["recipients"][0]["delivery"]  # from the state store
    assert (delivery["status"], delivery["reason"]) == ("delivered", None)


def test_a_dropped_push_is_recovered_by_polling(sandbox: RunningSandbox, running: str) -> None:
    state: Any = sandbox.state("v1platform")
    state.drop_pushes = True
    route_to(running, "v1platform")
    body = send(running, ["13800000012"])
    receipts = receipts_of(running, body["message_id"])
    assert [r["code"] for r in receipts] == ["DELIVER"]  # the pull spelling: it was pulled


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/v1/callbacks/v1platform/status?token=wrong", b"{}", 403),
        ("/v1/callbacks/v1platform/status", b"{}", 403),
        ("/v1/callbacks/nobody/status?token=cb-token", b"{}", 404),
        ("/v1/callbacks/v1platform/receipt?token=cb-token", b"{}", 404),
        ("/v1/callbacks/v1platform/status?token=cb-token", b"{not json", 400),
        ("/v1/callbacks/v1platform/status?token=cb-token", b'{"mobile": "1"}', 400),
        ("/v1/callbacks/ronglian/receipt?token=cb-token", b'{"Request": {}}', 400),
    ],
)
def test_callbacks_refuse_what_they_should(
    running: str, path: str, body: bytes, status: int
) -> None:
    answer = httpx.post(
        f"{running}{path}", content=body, timeout=5, headers={"content-type": "application/json"}
    )
    assert answer.status_code == status, answer.text


def delivered_receipts(url: str) -> float:
    """The sidecar's delivered-receipt counter for v1platform (0 before the first one)."""
    metrics = httpx.get(f"{url}/metrics", timeout=5).text
    prefix = 'smsrouter_receipts_total{provider="v1platform",status="delivered"}'
    lines = [x for x in metrics.splitlines() if x.startswith(prefix)]
    assert len(lines) <= 1, lines
    return float(lines[0].split()[-1]) if lines else 0.0


def test_a_receipt_pushed_twice_counts_once(running: str) -> None:
    push = {
        "sendId": f"task-{uuid.uuid4().hex}",  # no earlier push can have settled this one
        "mobile": "13800000013",
        "times": "2026-01-01 10:00:00",
        "status": "DELIVRD",
    }
    url = f"{running}/v1/callbacks/v1platform/status?token=cb-token"
    before = delivered_receipts(running)
    for _ in range(2):
        assert httpx.post(url, json=push, timeout=5).status_code == 200
    assert delivered_receipts(running) == before + 1
    assert httpx.post(url, json=push, timeout=5).status_code == 200
    assert delivered_receipts(running) == before + 1


def test_admin_needs_the_token(running: str) -> None:
    url = f"{running}/v1/admin/providers/ronglian/open"
    assert httpx.post(url, timeout=5).status_code == 401
    bad = httpx.post(url, headers={"Authorization": "Bearer nope"}, timeout=5)
    assert bad.status_code == 401
    ok = httpx.post(url, headers={"Authorization": "Bearer test-admin-token"}, timeout=5)
    assert ok.json()["breaker"] == "open"
    providers = httpx.get(f"{running}/v1/providers", timeout=5).json()
    assert providers["ronglian"]["breaker"] == "open"
    auto = httpx.post(
        f"{running}/v1/admin/providers/ronglian/auto",
        headers={"Authorization": "Bearer test-admin-token"},
        timeout=5,
    )
    assert auto.json()["breaker"] == "closed"
    unknown = httpx.post(
        f"{running}/v1/admin/providers/ghost/open",
        headers={"Authorization": "Bearer test-admin-token"},
        timeout=5,
    )
    assert unknown.status_code == 404


def test_idempotency_key_header(running: str) -> None:
    route_to(running, "v1platform")
    headers = {"Idempotency-Key": "order-77"}
    body = {"mobiles": ["13800000014"], **OTP}
    first = httpx.post(f"{running}/v1/messages", json=body, headers=headers, timeout=10).json()
    again = httpx.post(f"{running}/v1/messages", json=body, headers=headers, timeout=10).json()
    assert again["message_id"] == first["message_id"]
    assert again["idempotent_replay"] is True
    other = {**body, "params": {"code": "1"}}
    conflict = httpx.post(f"{running}/v1/messages", json=other, headers=headers, timeout=10)
    assert conflict.status_code == 409


def test_sigterm_fails_readiness_and_drains(sandbox: RunningSandbox, tmp_path: Path) -> None:
    sandbox.state("v1platform").set_faults(FaultSettings(latency_s=1.5))
    with sidecar(sandbox, tmp_path) as (url, proc):
        route_to(url, "v1platform")
        results: list[httpx.Response] = []
        worker = threading.Thread(
            target=lambda: results.append(
                httpx.post(
                    f"{url}/v1/messages", json={"mobiles": ["13800000015"], **OTP}, timeout=10
                )
            )
        )
        worker.start()
        until(lambda: len(sandbox.sends("v1platform")) == 1)  # in flight at the slow provider
        proc.send_signal(signal.SIGTERM)
        until(lambda: httpx.get(f"{url}/readyz", timeout=2).status_code == 503)
        assert worker.is_alive()  # readiness failed while the send was still draining
        worker.join(10)
        assert proc.wait(15) == 0
    assert results[0].status_code == 200
    assert results[0].json()["recipients"][0]["status"] == "accepted"


def test_the_sidecar_tunes_its_own_collector_and_a_library_router_does_not() -> None:
    """``server.gc_gen0_threshold`` is applied by the sidecar (which owns its process), with
    start-up objects frozen; a Router embedded in someone else's process leaves the collector
    as it found it. In a subprocess: the test runner's own collector stays untouched."""
    code = (
        "import gc, sys\n"
        "from router import Router\n"
        "from router.sidecar.sandbox import Sandbox, sandbox_settings\n"
        "from router.sidecar.serve import tune_gc\n"
        "from router.config import ServerSettings\n"
        "before = gc.get_threshold()\n"
        "urls = {n: 'http://127.0.0.1:9' for n in ('baofoo', 'v1platform', 'ronglian')}\n"
        "Router(sandbox_settings(Sandbox(apps={}, urls=urls)))\n"
        "assert gc.get_threshold() == before and gc.get_freeze_count() == 0, 'library'\n"
        "tune_gc(0)\n"
        "assert gc.get_threshold() == before and gc.get_freeze_count() > 0, 'zero'\n"
        "tune_gc(ServerSettings().gc_gen0_threshold)\n"
        "assert gc.get_threshold() == (20_000, *before[1:]), gc.get_threshold()\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
