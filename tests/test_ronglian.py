"""Ronglian adapter against its emulator over loopback: wire bytes, refusals, faults, secrets."""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest
from pydantic import SecretStr, ValidationError

from providers.base import (
    AttemptResult,
    Batch,
    ErrorClass,
    FaultKind,
    Rendered,
    RenderRequest,
    Template,
    Verdict,
)
from providers.emulators import ronglian as emu
from providers.emulators._common import FaultSettings
from providers.emulators.server import ThreadedServer, free_port
from providers.http import send_batch
from providers.ronglian import RonglianProvider, classify_code
from router.clock import FakeClock
from router.errors import MissingParamError
from router.transport import HttpxClient
from tests.providers_helpers import mobiles, numbers, ronglian

pytestmark = pytest.mark.anyio
Serve = Callable[[Any], ThreadedServer]
SID = "sandboxsid00000000000000000000000"
TOKEN = "sandbox-token"
OTP = Template("login_code", None, {"ronglian": {"template_id": "1", "params": ["code", "min"]}})


def state(server: ThreadedServer) -> emu.RonglianState:
    st: emu.RonglianState = server.app.state.emulator
    return st


def batch(provider: RonglianProvider, n: int = 1, request_id: str | None = None) -> Batch:
    rendered = provider.render(RenderRequest(OTP, {"code": "123456", "min": "5"}, None))
    assert rendered is not None
    return Batch(request_id or uuid.uuid4().hex, numbers(n), rendered)


async def send(provider: RonglianProvider, b: Batch, timeout_s: float = 5.0) -> AttemptResult:
    async with httpx.AsyncClient(timeout=timeout_s, trust_env=False) as client:
        return await send_batch(provider, HttpxClient(client), b)


async def post_tampered(provider: RonglianProvider, b: Batch, **changes: object) -> AttemptResult:
    """The adapter's own signed request with body fields changed (shapes it never builds)."""
    request = provider.build_request(b).to_httpx()
    body = {**orjson.loads(request.content), **changes}
    headers = {k: v for k, v in request.headers.items() if k != "content-length"}
    async with httpx.AsyncClient(trust_env=False) as client:
        response = await client.post(str(request.url), headers=headers, content=orjson.dumps(body))
    return provider.parse_response(b, response)


def code_kind(result: AttemptResult) -> tuple[str | None, FaultKind]:
    assert result.fault is not None, result
    return result.fault.code, result.fault.kind


# -- pure: settings, rendering, request building ------------------------------------------


@pytest.mark.parametrize(
    "bad", [{"sub_append": "12345"}, {"sub_append": "8a"}, {"max_batch": 201}, {"timezone": "X/Y"}]
)
def test_settings_are_validated(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        ronglian("http://127.0.0.1:1", **bad)


def test_render_is_templates_only() -> None:
    p = ronglian("http://127.0.0.1:1")
    assert p.render(RenderRequest(None, {}, "free text")) is None
    no_id = Template("t", "hello {x}", {"ronglian": {"params": ["x"]}})
    assert p.render(RenderRequest(no_id, {"x": "1"}, None)) is None
    elsewhere = Template("t", "hello", {"baofoo": {"send_type": 1}})
    assert p.render(RenderRequest(elsewhere, {}, None)) is None
    unapproved = Template("t", None, {"ronglian": {"template_id": "9", "approved": False}})
    assert p.render(RenderRequest(unapproved, {}, None)) is None
    rendered = p.render(RenderRequest(OTP, {"min": "5", "code": "42"}, None))
    assert rendered == Rendered(template_id="1", template_params=("42", "5"))
    with pytest.raises(MissingParamError, match="'min'") as err:
        p.render(RenderRequest(OTP, {"code": "42"}, None))
    assert err.value.param == "min"


def test_build_request_exact_bytes() -> None:
    clock = FakeClock(datetime(2026, 3, 1, 17, 30, 5, tzinfo=UTC))
    p = ronglian("http://emu", clock=clock, sub_append="88")
    b = Batch("req-1", mobiles("13800138000", "+852 9123 4567"), Rendered(template_id="7"))
    request = p.build_request(b).to_httpx()
    ts = "20260302013005"  # the injected clock in China time
    assert p.timestamp() == ts
    assert request.method == "POST"
    assert request.url.path == f"/2013-12-26/Accounts/{SID}/SMS/TemplateSMS"
    md5 = hashlib.md5(f"{SID}{TOKEN}{ts}".encode()).hexdigest()
    assert request.url.params["sig"] == md5.upper()
    assert request.headers["accept"] == "application/json"
    assert request.headers["content-type"] == "application/json;charset=utf-8"
    assert base64.b64decode(request.headers["authorization"]) == f"{SID}:{ts}".encode()
    assert orjson.loads(request.content) == {
        "to": "13800138000,0085291234567",
        "appId": "sandboxapp",
        "templateId": "7",
        "datas": [],
        "reqId": "req-1",
        "subAppend": "88",
    }
    utc = ronglian("http://emu", clock=clock, timezone="UTC")
    assert utc.timestamp() == "20260301173005"


def test_build_request_refuses_what_ronglian_would_refuse() -> None:
    p = ronglian("http://127.0.0.1:1")
    with pytest.raises(ValueError, match="outside"):
        p.build_request(batch(p, 201))
    with pytest.raises(ValueError, match="reqId"):
        p.build_request(batch(p, 1, request_id="x" * 33))
    with pytest.raises(ValueError, match="templates only"):
        p.build_request(Batch("r", numbers(1), Rendered(content="free")))
    assert len(p.build_request(batch(p, 1, request_id="x" * 32)).content) > 0


# -- pure: classification -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("111108", FaultKind.CREDENTIALS),
        ("111999", FaultKind.CREDENTIALS),
        ("112303", FaultKind.CREDENTIALS),
        ("112307", FaultKind.MESSAGE),
        ("112350", FaultKind.PROVIDER),  # in the documented range, meaning unknown
        ("160032", FaultKind.MESSAGE),
        ("160038", FaultKind.MESSAGE),
        ("160048", FaultKind.PROVIDER),
        ("160055", FaultKind.PROVIDER),
        ("999999", FaultKind.PROVIDER),
    ],
)
def test_code_table(code: str, kind: FaultKind) -> None:
    assert classify_code(code) is kind


def answer(status: int, body: bytes) -> httpx.Response:
    return httpx.Response(status, content=body, request=httpx.Request("POST", "http://emu/"))


@pytest.mark.parametrize(
    ("status", "body", "verdict", "error_class"),
    [
        (200, b'{"statusCode":"000000","templateSMS":{}}', Verdict.UNKNOWN, ErrorClass.MALFORMED),
        (200, b"<xml/>", Verdict.UNKNOWN, ErrorClass.MALFORMED),
        (200, b'{"statusCode":0}', Verdict.UNKNOWN, ErrorClass.MALFORMED),
        (200, b'{"statusCode":"160054"}', Verdict.UNKNOWN, ErrorClass.REFUSED),
        (200, b'{"statusCode":"111105"}', Verdict.REJECTED, ErrorClass.AUTH),
        (401, b"", Verdict.REJECTED, ErrorClass.AUTH),
        (404, b"nope", Verdict.REJECTED, ErrorClass.HTTP_4XX),
        (502, b"", Verdict.UNKNOWN, ErrorClass.HTTP_5XX),
    ],
)
def test_parse_response_shapes(
    status: int, body: bytes, verdict: Verdict, error_class: ErrorClass
) -> None:
    p = ronglian("http://emu")
    result = p.parse_response(batch(p, 2), answer(status, body))
    assert result.verdict is verdict and len(result.recipients) == 2
    assert result.fault is not None and result.fault.error_class is error_class


def test_documented_sid_with_leading_space_is_stripped() -> None:
    p = ronglian("http://emu")
    doc = b'{"statusCode":"000000","templateSMS":{"dateCreated":"20130201155306",'
    doc += b'"smsMessageSid":" ff8080813c373cab013c94b0f0512345"}}'
    result = p.parse_response(batch(p), answer(200, doc))
    assert result.verdict is Verdict.ACCEPTED
    assert result.recipients[0].provider_message_id == "ff8080813c373cab013c94b0f0512345"


# -- over loopback: success, refusals, limits ----------------------------------------------


async def test_accepted_and_remembered(serve: Serve) -> None:
    clock = FakeClock()
    server = serve(emu.create_app(clock=clock))
    p = ronglian(server.url, clock=clock)
    b = batch(p, 2)
    result = await send(p, b)
    assert result.verdict is Verdict.ACCEPTED, result
    sid = result.recipients[0].provider_message_id
    assert sid is not None and len(sid) == 32 and int(sid, 16) >= 0
    [req] = state(server).requests
    assert req.query["sig"] == p.build_request(b).query()["sig"]
    assert req.headers["accept"] == "application/json"
    assert req.body == p.build_request(b).content  # the exact bytes
    assert req.fields["datas"] == ["123456", "5"] and req.fields["reqId"] == b.request_id
    [sent] = state(server).accepted
    assert sent.sms_message_sid == sid and sent.req_id == b.request_id
    assert sent.to == ("13700000000", "13700000001")


@pytest.mark.parametrize(
    ("app_kw", "provider_kw", "code", "kind"),
    [
        ({"auth_token": "other-token"}, {}, "111108", FaultKind.CREDENTIALS),
        ({"account_sid": "othersid"}, {}, "111109", FaultKind.CREDENTIALS),
        ({"app_id": "otherapp"}, {}, "111199", FaultKind.CREDENTIALS),
        ({"templates": {"2": 1}}, {}, "160032", FaultKind.MESSAGE),
        ({"templates": {"1": 3}}, {}, "112308", FaultKind.MESSAGE),
    ],
)
async def test_documented_refusals(
    serve: Serve, app_kw: dict[str, Any], provider_kw: dict[str, Any], code: str, kind: FaultKind
) -> None:
    server = serve(emu.create_app(**app_kw))
    p = ronglian(server.url, **provider_kw)
    result = await send(p, batch(p, 3))
    assert result.verdict is Verdict.REJECTED
    assert code_kind(result) == (code, kind)
    assert all(r.fault == result.fault for r in result.recipients)
    assert state(server).accepted == []


async def test_injected_business_error_fails_over(serve: Serve) -> None:
    server = serve(emu.create_app())
    state(server).set_faults(FaultSettings(error_rate=1.0))
    p = ronglian(server.url)
    result = await send(p, batch(p))
    assert result.verdict is Verdict.REJECTED
    assert code_kind(result) == ("160050", FaultKind.PROVIDER)


async def test_req_id_rules(serve: Serve) -> None:
    server = serve(emu.create_app())
    p = ronglian(server.url)
    b = batch(p)
    assert (await send(p, b)).verdict is Verdict.ACCEPTED
    again = await send(p, b)  # the first may be out: never fail over into a double send
    assert again.verdict is Verdict.UNKNOWN
    assert again.fault is not None and again.fault.code == "160054"
    too_long = await post_tampered(p, batch(p), reqId="y" * 33)
    assert code_kind(too_long) == ("160055", FaultKind.PROVIDER)
    assert too_long.verdict is Verdict.REJECTED


async def test_batch_limit_enforced_by_emulator(serve: Serve) -> None:
    server = serve(emu.create_app())
    p = ronglian(server.url)
    full = batch(p, 200)
    assert (await send(p, full)).verdict is Verdict.ACCEPTED
    to = ",".join([*(m.national for m in numbers(200)), "13999999999"])
    over = await post_tampered(p, batch(p, 200), to=to)
    assert code_kind(over) == ("160048", FaultKind.PROVIDER)
    bad = await post_tampered(p, batch(p), to="12345")
    assert code_kind(bad) == ("160042", FaultKind.MESSAGE)


async def test_emulator_checks_content_type_and_datas(serve: Serve) -> None:
    server = serve(emu.create_app())
    p = ronglian(server.url)
    request = p.build_request(batch(p)).to_httpx()
    headers = {**request.headers, "content-type": "application/xml;charset=utf-8"}
    del headers["content-length"]
    async with httpx.AsyncClient(trust_env=False) as client:
        xml = await client.post(str(request.url), headers=headers, content=request.content)
    assert xml.json()["statusCode"] == "160031"
    numbers_ok = await post_tampered(p, batch(p), datas=[123456, 5], subAppend="12")
    assert numbers_ok.verdict is Verdict.ACCEPTED  # datas items may be numbers
    nested = await post_tampered(p, batch(p), datas=[["x"], "5"])
    assert nested.fault is not None and nested.fault.code == "160031"
    sub = await post_tampered(p, batch(p), subAppend="12345")
    assert sub.verdict is Verdict.REJECTED
    none = serve(emu.create_app(templates={"9": 0}))
    q = ronglian(none.url)
    no_datas = await post_tampered(q, batch(q), templateId="9", datas=None)
    assert no_datas.verdict is Verdict.ACCEPTED  # datas may be null for a template without vars


# -- over loopback: transport faults ------------------------------------------------------


@pytest.mark.parametrize(
    ("faults", "verdict", "error_class"),
    [
        (FaultSettings(http_5xx_rate=1.0), Verdict.UNKNOWN, ErrorClass.HTTP_5XX),
        (FaultSettings(outage=True), Verdict.UNKNOWN, ErrorClass.HTTP_5XX),
        (FaultSettings(malformed_rate=1.0), Verdict.UNKNOWN, ErrorClass.MALFORMED),
        (FaultSettings(timeout_rate=1.0, hang_s=2), Verdict.UNKNOWN, ErrorClass.TIMEOUT),
    ],
)
async def test_transport_faults(
    serve: Serve, faults: FaultSettings, verdict: Verdict, error_class: ErrorClass
) -> None:
    server = serve(emu.create_app())
    state(server).set_faults(faults)
    p = ronglian(server.url)
    result = await send(p, batch(p, 2), timeout_s=0.3)
    assert result.verdict is verdict and len(result.recipients) == 2
    assert result.fault is not None and result.fault.error_class is error_class
    assert "sig" not in result.fault.detail and server.url not in result.fault.detail


async def test_timeout_after_accept_is_unknown_but_taken(serve: Serve) -> None:
    server = serve(emu.create_app())
    state(server).set_faults(FaultSettings(timeout_rate=1.0, hang_s=2, timeout_after_accept=True))
    p = ronglian(server.url)
    result = await send(p, batch(p), timeout_s=0.3)
    assert result.verdict is Verdict.UNKNOWN
    assert len(state(server).accepted) == 1


async def test_connection_refused_is_a_provable_rejection() -> None:
    p = ronglian(f"http://127.0.0.1:{free_port()}")
    result = await send(p, batch(p))
    assert result.verdict is Verdict.REJECTED
    assert result.fault is not None and result.fault.error_class is ErrorClass.CONNECT
    assert result.fault.detail == "ConnectError"  # no URL, so no sig


# -- secrets ------------------------------------------------------------------------------


async def test_no_secret_in_repr_faults_or_errors(serve: Serve) -> None:
    server = serve(emu.create_app(auth_token="other-token"))
    p = ronglian(server.url)
    result = await send(p, batch(p))
    assert result.fault is not None and result.fault.error_class is ErrorClass.AUTH
    sig = state(server).requests[0].query["sig"]
    for obj in (p, p.settings, result, result.fault, result.recipients[0]):
        for text in (repr(obj), str(obj)):
            assert TOKEN not in text and sig not in text
    assert TOKEN not in p.settings.model_dump_json()
    echoed = answer(200, orjson.dumps({"statusCode": "111108", "statusMsg": f"bad {TOKEN}"}))
    fault = p.parse_response(batch(p), echoed).fault
    assert fault is not None and TOKEN not in fault.detail
    with pytest.raises(ValueError, match="reqId") as err:
        p.build_request(batch(p, request_id="z" * 40))
    assert TOKEN not in str(err.value)
    assert isinstance(p.settings.auth_token, SecretStr)


def test_emulator_takes_the_xml_body_the_document_allows(serve: Serve) -> None:
    """Content-Type application/xml (the document allows it beside JSON), answered in XML
    when the client accepts only XML; the same checks apply (a bad appId is refused)."""
    from xml.etree import ElementTree

    server = serve(emu.create_app())
    p = ronglian(server.url)
    b = batch(p, n=2)
    signed = p.build_request(b).to_httpx()  # the URL's sig and the Authorization header
    body = orjson.loads(signed.read())

    def xml(app_id: str) -> bytes:
        datas = "".join(f"<data>{d}</data>" for d in body["datas"])
        return (
            f'<?xml version="1.0" encoding="utf-8"?><TemplateSMS><to>{body["to"]}</to>'
            f"<appId>{app_id}</appId><templateId>{body['templateId']}</templateId>"
            f"<datas>{datas}</datas><reqId>{body['reqId']}</reqId></TemplateSMS>"
        ).encode()

    headers = {
        "Authorization": signed.headers["authorization"],
        "Content-Type": "application/xml;charset=utf-8",
        "Accept": "application/xml",
    }
    answer = httpx.post(str(signed.url), content=xml(body["appId"]), headers=headers)
    root = ElementTree.fromstring(answer.content)  # noqa: S314 - our own emulator's answer
    assert root.tag == "Response" and root.findtext("statusCode") == "000000"
    assert root.findtext("TemplateSMS/smsMessageSid")
    [sent] = state(server).accepted
    assert list(sent.to) == body["to"].split(",") and list(sent.datas) == body["datas"]

    refused = httpx.post(str(signed.url), content=xml("not-our-app"), headers=headers)
    assert ElementTree.fromstring(refused.content).findtext("statusCode") == "111199"  # noqa: S314
