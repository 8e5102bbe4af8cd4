"""Each adapter against its emulator over loopback: exact wire format and classification."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from pydantic import SecretStr

from providers.base import ErrorClass, FaultKind, Verdict
from providers.emulators import baofoo as baofoo_emu
from providers.emulators import ronglian as ronglian_emu
from providers.emulators import v1platform as v1_emu
from providers.emulators._common import EmulatorState, FaultSettings
from providers.emulators.server import ThreadedServer, free_port
from router.clock import FakeClock, SystemClock
from tests.providers_helpers import (
    baofoo,
    mobiles,
    no_secret_in,
    numbers,
    otp_batch,
    ronglian,
    send,
    v1,
)

pytestmark = pytest.mark.anyio
Serve = Callable[[Any], ThreadedServer]


def state_of(server: ThreadedServer) -> EmulatorState:
    state: EmulatorState = server.app.state.emulator
    return state


# -- Baofoo -------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["multipart", "form"])
async def test_baofoo_wire_format(serve: Serve, encoding: str) -> None:
    server = serve(baofoo_emu.create_app())
    provider = baofoo(server.url, encoding=encoding, sing_code="S1")
    batch = otp_batch(provider, mobiles("13800138000", "13900139000"))
    result = await send(provider, batch)
    assert result.verdict is Verdict.ACCEPTED
    assert {r.provider_message_id for r in result.recipients} == {batch.request_id}
    [req] = state_of(server).requests
    content_type = req.headers["content-type"]
    assert content_type.startswith(
        "multipart/form-data" if encoding == "multipart" else "application/x-www-form-urlencoded"
    )
    f = req.fields
    assert f["userName"] == "sandbox-user"
    assert f["userPass"] == "sandbox-pass"
    assert f["mobile"] == "13800138000,13900139000"
    assert f["content"] == "您的登录验证码为 123456,30分钟内有效,请勿泄露。"
    assert (f["sendType"], f["businessType"]) == ("1", "4")
    assert f["requestId"] == batch.request_id
    assert f["domain"] == "app"
    assert f["singCode"] == "S1"
    assert "regTime" not in f  # optional, no documented format: not sent unless configured
    assert "areaCode" not in f
    if encoding == "multipart":  # every part names its charset (Chinese content)
        assert req.body.count(b"Content-Type: text/plain; charset=UTF-8") == len(f)


def test_baofoo_default_encoding_is_what_the_documents_own_client_sends() -> None:
    """The document's Python client posts ``data=payload``: form-urlencoded, UTF-8."""
    provider = baofoo("http://127.0.0.1:1")
    request = provider.build_request(otp_batch(provider, mobiles("13800138000"))).to_httpx()
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert "%E6%82%A8" in request.read().decode()  # 您, percent-encoded UTF-8


def test_baofoo_reg_time_only_when_configured() -> None:
    clock = FakeClock()
    settings = baofoo("http://127.0.0.1:1", reg_time_format="%Y-%m-%d %H:%M:%S").settings
    from providers.baofoo import BaofooProvider

    provider = BaofooProvider("baofoo", settings, clock=clock)
    request = provider.build_request(otp_batch(provider, mobiles("13800138000"))).to_httpx()
    expected = clock.now().astimezone(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m-%d+%H%%3A%M")
    assert f"regTime={expected}" in request.read().decode()


@pytest.mark.parametrize(
    "where",
    [{"environment": "production"}, {"base_url": "https://sms.mandao.com"}],
)
@pytest.mark.parametrize("domain", [None, "", "  "])
def test_baofoo_production_needs_a_domain(where: dict[str, str], domain: str | None) -> None:
    """Left out, the gateway files every message under 测试 (test): a config error."""
    from router.config import RouterSettings
    from router.errors import ConfigError

    raw = {"type": "baofoo", "user_name": "u", "user_pass": "p", **where}
    if domain is not None:
        raw["domain"] = domain
    with pytest.raises(ConfigError, match="domain is required") as caught:
        RouterSettings(providers={"bf": raw})
    assert caught.value.key == "providers.bf"
    RouterSettings(providers={"bf": {**raw, "domain": "my-app"}})  # fixed: loads
    RouterSettings(providers={"bf": {**raw, "environment": "pre", "base_url": ""}})


def test_baofoo_documented_scenes_get_the_documented_types() -> None:
    """The scene table applies without Baofoo options; a template's options still win."""
    from providers.baofoo import SCENES
    from providers.base import RenderRequest, Template

    provider = baofoo("http://127.0.0.1:1")
    for key, scene in SCENES.items():
        params = dict.fromkeys(["code", "amount", "balance", "plan", "date"], "1")
        rendered = provider.render(RenderRequest(Template(key, scene.content, {}), params, None))
        assert rendered is not None
        assert rendered.options == {
            "sendType": str(scene.send_type),
            "businessType": str(scene.business_type),
        }
    own = Template("login_code", "x", {"baofoo": {"send_type": 3, "business_type": 2}})
    rendered = provider.render(RenderRequest(own, {}, None))
    assert rendered is not None and rendered.options == {"sendType": "3", "businessType": "2"}
    other = provider.render(RenderRequest(Template("promo", "x", {}), {}, None))
    assert other is not None and other.options == {"sendType": "3", "businessType": "4"}


def test_baofoo_emulator_refuses_values_outside_the_documented_enums(serve: Serve) -> None:
    server = serve(baofoo_emu.create_app())
    for send_type, business_type in (("0", "4"), ("4", "4"), ("3", "5"), ("x", "1")):
        response = httpx.post(
            f"{server.url}/sendSms",
            data={
                "userName": "sandbox-user",
                "userPass": "sandbox-pass",
                "mobile": "13800138000",
                "content": "hi",
                "sendType": send_type,
                "businessType": business_type,
            },
        )
        assert response.json()["success"] is False, (send_type, business_type)


async def test_baofoo_sends_area_code_and_never_mixes_areas(serve: Serve) -> None:
    server = serve(baofoo_emu.create_app())
    provider = baofoo(server.url, regions="all")
    result = await send(provider, otp_batch(provider, mobiles("+852 9123 4567")))
    assert result.verdict is Verdict.ACCEPTED
    assert state_of(server).requests[0].fields["areaCode"] == "+852"
    assert state_of(server).requests[0].fields["mobile"] == "91234567"
    with pytest.raises(ValueError, match="one areaCode"):
        provider.build_request(otp_batch(provider, mobiles("+852 9123 4567", "13800138000")))


async def test_baofoo_refusals(serve: Serve) -> None:
    server = serve(baofoo_emu.create_app())
    state_of(server).set_faults(FaultSettings(reject_mobiles=["13800138000"]))
    provider = baofoo(server.url)
    bad_number = await send(provider, otp_batch(provider, mobiles("13800138000")))
    assert bad_number.verdict is Verdict.REJECTED
    assert bad_number.fault is not None
    assert (bad_number.fault.code, bad_number.fault.kind) == ("SMS_001", FaultKind.MESSAGE)

    state_of(server).set_faults(FaultSettings(error_rate=1.0))
    busy = await send(provider, otp_batch(provider, mobiles("13900139000")))
    assert busy.verdict is Verdict.REJECTED
    assert busy.fault is not None and busy.fault.kind is FaultKind.PROVIDER

    wrong = baofoo(server.url).settings.model_copy(update={"user_pass": SecretStr("nope")})
    from providers.baofoo import BaofooProvider

    refused = await send(BaofooProvider("b", wrong), otp_batch(provider, mobiles("13900139000")))
    assert refused.verdict is Verdict.REJECTED
    no_secret_in(provider, provider.settings, refused, refused.fault)


async def test_baofoo_batch_limit_is_enforced_both_sides(serve: Serve) -> None:
    server = serve(baofoo_emu.create_app(max_batch=5))
    small = baofoo(server.url, max_batch=10)
    over = await send(small, otp_batch(small, numbers(6)))
    assert over.verdict is Verdict.REJECTED
    with pytest.raises(ValueError, match="outside"):
        small.build_request(otp_batch(small, numbers(11)))


# -- v1 platform --------------------------------------------------------------------------


async def test_v1_wire_format(serve: Serve) -> None:
    server = serve(v1_emu.create_app())
    provider = v1(server.url, ext_no=12, signature="【达达】")
    batch = otp_batch(provider, mobiles("13800138000", "13900139000"))
    result = await send(provider, batch)
    assert result.verdict is Verdict.ACCEPTED
    assert result.recipients[0].provider_message_id == batch.request_id
    [req] = state_of(server).requests
    assert req.headers["content-type"] == "application/x-www-form-urlencoded"
    assert req.fields == {
        "account": "sandbox",
        "pwd": hashlib.md5(b"sandbox-pass").hexdigest(),
        "taskId": batch.request_id,
        "mobiles": "13800138000,13900139000",
        "content": "【达达】您的登录验证码为 123456,30分钟内有效,请勿泄露。",
        "extNo": "12",
    }
    assert req.fields["pwd"] == req.fields["pwd"].lower()


async def test_v1_refusals_and_limits(serve: Serve) -> None:
    server = serve(v1_emu.create_app(password="other"))
    provider = v1(server.url)
    refused = await send(provider, otp_batch(provider, numbers(1)))
    assert refused.verdict is Verdict.REJECTED
    assert refused.fault is not None and refused.fault.code == "01"
    no_secret_in(provider, provider.settings, refused, refused.fault)
    assert hashlib.md5(b"sandbox-pass").hexdigest() not in repr(provider.settings)

    ok = serve(v1_emu.create_app())
    at_limit = await send(v1(ok.url), otp_batch(provider, numbers(3000)))
    assert at_limit.verdict is Verdict.ACCEPTED
    with pytest.raises(ValueError, match="outside"):
        v1(ok.url).build_request(otp_batch(provider, numbers(3001)))
    async with httpx.AsyncClient() as client:
        raw = await client.post(
            f"{ok.url}/api/v1/send",
            data={
                "account": "sandbox",
                "pwd": hashlib.md5(b"sandbox-pass").hexdigest(),
                "mobiles": ",".join(m.national for m in numbers(3001)),
                "content": "x",
            },
        )
    assert raw.json()["code"] == "03"


async def test_v1_pulls_and_push_parsers(serve: Serve) -> None:
    server = serve(v1_emu.create_app())
    provider = v1(server.url)
    state: Any = state_of(server)
    state.undeliverable = {"13900139000"}
    batch = otp_batch(provider, mobiles("13800138000", "13900139000"))
    await send(provider, batch)
    async with httpx.AsyncClient() as client:
        reports = provider.parse_report(
            await client.send(provider.build_report_request().to_httpx())
        )
        again = provider.parse_report(await client.send(provider.build_report_request().to_httpx()))
        balance = provider.parse_balance(
            await client.send(provider.build_balance_request().to_httpx())
        )
    assert {(r.provider_message_id, r.status.value, r.status_code) for r in reports} == {
        (batch.request_id, "delivered", "DELIVER"),
        (batch.request_id, "failed", "UNDELIV"),
    }
    assert again == []  # a pull drains
    assert balance.balance == 1_000_000 - 2


def doc_report(brace_wrapped: bool) -> bytes:
    items = (
        '[{"sendId": "b681", "status": "DELIVER", "times": "2019-04-12 17:57:08",'
        ' "mobile": "135****9831", "extNo": ""},'
        ' {"sendId": "feeb", "status": "MBBLACK", "times": "2019-04-12 17:57:08",'
        ' "mobile": "136****0014", "extNo": ""}]'
    )
    data = '{"list": ' + items + "}" if brace_wrapped else items
    return ('{"code": "00", "data": ' + data + ', "message": "成功"}').encode()


@pytest.mark.parametrize("brace_wrapped", [False, True])
def test_v1_parses_the_documents_report_example(brace_wrapped: bool) -> None:
    provider = v1("http://127.0.0.1:1")
    response = httpx.Response(200, content=doc_report(brace_wrapped))
    reports = provider.parse_report(response)
    assert [(r.provider_message_id, r.status.value) for r in reports] == [
        ("b681", "delivered"),
        ("feeb", "failed"),
    ]


@pytest.mark.parametrize(
    ("code", "delivered"),
    [("DELIVRD", True), ("DELIVER", True), ("UNDELIV", False), ("MBBLACK", False)],
)
def test_v1_push_status_codes(code: str, delivered: bool) -> None:
    provider = v1("http://127.0.0.1:1")
    body = json.dumps(
        {"sendId": "t1", "mobile": "13800138000", "times": "2019-04-12 17:57:08", "status": code}
    ).encode()
    report = provider.parse_status_push(body, "application/json")
    assert (report.status.value == "delivered") is delivered
    form = provider.parse_status_push(
        f"sendId=t1&mobile=13800138000&status={code}".encode(),
        "application/x-www-form-urlencoded",
    )
    assert form.status == report.status


# -- Ronglian -----------------------------------------------------------------------------


async def test_ronglian_wire_format(serve: Serve) -> None:
    clock = FakeClock()
    server = serve(ronglian_emu.create_app(clock=clock))
    provider = ronglian(server.url, clock=clock, sub_append="88")
    batch = otp_batch(provider, mobiles("13800138000", "+852 9123 4567"))
    result = await send(provider, batch)
    assert result.verdict is Verdict.ACCEPTED, result
    sid = result.recipients[0].provider_message_id
    assert sid and len(sid) == 32
    [req] = state_of(server).requests
    ts = provider.timestamp()
    sid_ = "sandboxsid00000000000000000000000"
    assert req.path == f"/2013-12-26/Accounts/{sid_}/SMS/TemplateSMS"
    expected_sig = hashlib.md5(f"{sid_}sandbox-token{ts}".encode()).hexdigest().upper()
    assert req.query["sig"] == expected_sig
    assert base64.b64decode(req.headers["authorization"]).decode() == f"{sid_}:{ts}"
    assert req.headers["content-type"] == "application/json;charset=utf-8"
    assert req.fields == {
        "to": "13800138000,0085291234567",
        "appId": "sandboxapp",
        "templateId": "1",
        "datas": ["123456", "30"],
        "reqId": batch.request_id,
        "subAppend": "88",
    }


async def test_ronglian_timestamp_window_and_sig_case(serve: Serve) -> None:
    emulator_clock = FakeClock()
    server = serve(ronglian_emu.create_app(clock=emulator_clock))
    for hours, ok in ((-23, True), (23, True), (-25, False), (25, False)):
        skewed = FakeClock(emulator_clock.now() + timedelta(hours=hours))
        provider = ronglian(server.url, clock=skewed)
        result = await send(provider, otp_batch(provider, numbers(1)))
        assert (result.verdict is Verdict.ACCEPTED) is ok, hours
    provider = ronglian(server.url, clock=emulator_clock)
    request = provider.build_request(otp_batch(provider, numbers(1))).to_httpx()
    lower = request.url.copy_set_param("sig", request.url.params["sig"].lower())
    async with httpx.AsyncClient() as client:
        answer = await client.post(str(lower), headers=request.headers, content=request.content)
    assert answer.json()["statusCode"] == "000000"


async def test_ronglian_refusals_and_limits(serve: Serve) -> None:
    server = serve(ronglian_emu.create_app(auth_token="other-token"))
    provider = ronglian(server.url)
    bad_auth = await send(provider, otp_batch(provider, numbers(1)))
    assert bad_auth.verdict is Verdict.REJECTED
    assert bad_auth.fault is not None and bad_auth.fault.code is not None
    no_secret_in(provider, provider.settings, bad_auth, bad_auth.fault)

    ok = serve(ronglian_emu.create_app())
    good = ronglian(ok.url)
    assert (await send(good, otp_batch(good, numbers(200)))).verdict is Verdict.ACCEPTED
    with pytest.raises(ValueError, match="outside"):
        good.build_request(otp_batch(good, numbers(201)))
    batch = otp_batch(good, numbers(1))
    first, again = await send(good, batch), await send(good, batch)
    assert first.verdict is Verdict.ACCEPTED
    assert again.fault is not None and again.fault.code == "160054"  # reqId reused today


def test_ronglian_is_template_only() -> None:
    from providers.base import RenderRequest, Template

    provider = ronglian("http://127.0.0.1:1")
    assert provider.render(RenderRequest(None, {}, "free text")) is None
    unapproved = Template("t", None, {"ronglian": {"template_id": "9", "approved": False}})
    assert provider.render(RenderRequest(unapproved, {}, None)) is None


def test_ronglian_official_sdk_against_the_emulator() -> None:
    from ronglian_sms_sdk import SmsSDK

    with ThreadedServer(ronglian_emu.create_app(clock=SystemClock()), port=free_port()) as srv:
        sdk = SmsSDK("sandboxsid00000000000000000000000", "sandbox-token", "sandboxapp")
        sdk.url = srv.url
        answer = json.loads(sdk.sendMessage("1", "13800138000", ("654321", "5")))
        assert answer["statusCode"] == "000000"
        assert answer["templateSMS"]["smsMessageSid"]
        recorded = srv.app.state.emulator.requests[0].fields
        assert recorded["datas"] == ["654321", "5"]


# -- classification shared by every adapter -----------------------------------------------

MAKERS = {
    "baofoo": (baofoo_emu, baofoo),
    "v1platform": (v1_emu, v1),
    "ronglian": (ronglian_emu, ronglian),
}


@pytest.mark.parametrize("kind", sorted(MAKERS))
@pytest.mark.parametrize(
    ("faults", "verdict", "error_class"),
    [
        (FaultSettings(http_5xx_rate=1.0), Verdict.UNKNOWN, ErrorClass.HTTP_5XX),
        (FaultSettings(outage=True), Verdict.UNKNOWN, ErrorClass.HTTP_5XX),
        (FaultSettings(malformed_rate=1.0), Verdict.UNKNOWN, ErrorClass.MALFORMED),
        (FaultSettings(timeout_rate=1.0, hang_s=2), Verdict.UNKNOWN, ErrorClass.TIMEOUT),
    ],
)
async def test_faults_are_classified(
    serve: Serve, kind: str, faults: FaultSettings, verdict: Verdict, error_class: ErrorClass
) -> None:
    emulator, make = MAKERS[kind]
    server = serve(emulator.create_app())
    state_of(server).set_faults(faults)
    provider = make(server.url)
    result = await send(provider, otp_batch(provider, numbers(2)), timeout_s=0.3)
    assert result.verdict is verdict
    assert result.fault is not None and result.fault.error_class is error_class
    assert len(result.recipients) == 2


@pytest.mark.parametrize("kind", sorted(MAKERS))
async def test_connection_refused_is_a_provable_rejection(kind: str) -> None:
    _, make = MAKERS[kind]
    provider = make(f"http://127.0.0.1:{free_port()}")
    result = await send(provider, otp_batch(provider, numbers(1)))
    assert result.verdict is Verdict.REJECTED
    assert result.fault is not None and result.fault.error_class is ErrorClass.CONNECT
