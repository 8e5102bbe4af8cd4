"""The Ronglian emulator against outside clients: the official Python SDK, a lower-case sig
(as the official Go SDK sends it), and the +/- 24 h timestamp window."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest

from providers.base import Batch, ErrorClass, FaultKind, Rendered, Verdict
from providers.emulators import ronglian as emu
from providers.emulators.server import ThreadedServer
from providers.http import send_batch
from router.clock import FakeClock, SystemClock
from router.transport import HttpxClient
from tests.providers_helpers import numbers, ronglian

Serve = Callable[[Any], ThreadedServer]
SID = "sandboxsid00000000000000000000000"
TOKEN = "sandbox-token"


def state(server: ThreadedServer) -> emu.RonglianState:
    st: emu.RonglianState = server.app.state.emulator
    return st


def otp(n: int = 1) -> Batch:
    return Batch(
        uuid.uuid4().hex, numbers(n), Rendered(template_id="1", template_params=("1", "5"))
    )


def test_official_sdk_send_is_accepted_and_recorded(serve: Serve) -> None:
    from ronglian_sms_sdk import SmsSDK

    server = serve(emu.create_app(clock=SystemClock()))
    sdk = SmsSDK(SID, TOKEN, "sandboxapp")
    sdk.url = server.url  # the SDK's documented way to change its base URL
    answer = json.loads(sdk.sendMessage("1", "13800138000,13900139000", ("654321", 5)))
    assert answer["statusCode"] == "000000", answer
    assert answer["templateSMS"]["smsMessageSid"] == state(server).accepted[0].sms_message_sid
    [req] = state(server).requests
    assert req.path == f"/2013-12-26/Accounts/{SID}/SMS/TemplateSMS"
    sid, ts = base64.b64decode(req.headers["authorization"]).decode().split(":")
    assert sid == SID and len(ts) == 14
    assert req.query["sig"] == hashlib.md5(f"{SID}{TOKEN}{ts}".encode()).hexdigest().upper()
    assert req.headers["content-type"] == "application/json;charset=utf-8"
    assert req.fields == {
        "to": "13800138000,13900139000",
        "appId": "sandboxapp",
        "templateId": "1",
        "datas": ["654321", 5],  # the SDK passes numbers through: the emulator accepts them
    }


def test_official_sdk_with_a_wrong_token_is_refused(serve: Serve) -> None:
    from ronglian_sms_sdk import SmsSDK

    server = serve(emu.create_app(clock=SystemClock()))
    sdk = SmsSDK(SID, "not-the-token", "sandboxapp")
    sdk.url = server.url
    answer = json.loads(sdk.sendMessage("1", "13800138000", ("1", "5")))
    assert answer["statusCode"] == "111108"
    assert state(server).accepted == []


@pytest.mark.anyio
async def test_lower_case_sig_is_accepted(serve: Serve) -> None:
    clock = FakeClock()
    server = serve(emu.create_app(clock=clock))
    request = ronglian(server.url, clock=clock).build_request(otp()).to_httpx()
    sig = request.url.params["sig"]
    lower = request.url.copy_set_param("sig", sig.lower())
    headers = {k: v for k, v in request.headers.items() if k != "host"}
    async with httpx.AsyncClient(trust_env=False) as client:
        answer = await client.post(str(lower), headers=headers, content=request.content)
    assert answer.json()["statusCode"] == "000000"
    assert state(server).requests[0].query["sig"] == sig.lower()


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("hours", "accepted"), [(-23, True), (23, True), (-25, False), (25, False)]
)
async def test_timestamp_window(serve: Serve, hours: int, accepted: bool) -> None:
    emulator_clock = FakeClock()
    server = serve(emu.create_app(clock=emulator_clock))
    skewed = FakeClock(emulator_clock.now() + timedelta(hours=hours))
    provider = ronglian(server.url, clock=skewed)
    async with httpx.AsyncClient(trust_env=False) as client:
        result = await send_batch(provider, HttpxClient(client), otp())
    if accepted:
        assert result.verdict is Verdict.ACCEPTED, result
        return
    assert result.verdict is Verdict.REJECTED
    assert result.fault is not None and result.fault.code == "111105"
    assert (result.fault.kind, result.fault.error_class) == (FaultKind.CREDENTIALS, ErrorClass.AUTH)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("authorization", "code"),
    [
        ("", "111100"),
        ("%%%", "111101"),
        (base64.b64encode(b"no-colon").decode(), "111102"),
        (base64.b64encode(b"othersid:20260101080000").decode(), "111106"),
    ],
)
async def test_malformed_authorization_is_refused(
    serve: Serve, authorization: str, code: str
) -> None:
    clock = FakeClock()
    server = serve(emu.create_app(clock=clock))
    request = ronglian(server.url, clock=clock).build_request(otp()).to_httpx()
    headers = {k: v for k, v in request.headers.items() if k not in ("host", "authorization")}
    if authorization:
        headers["authorization"] = authorization
    async with httpx.AsyncClient(trust_env=False) as client:
        answer = await client.post(str(request.url), headers=headers, content=request.content)
    assert answer.json()["statusCode"] == code
