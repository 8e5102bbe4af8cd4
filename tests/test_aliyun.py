"""Aliyun SMS (Dysmsapi 2017-05-25): the official SDK against the emulator, the adapter's
request against the SDK's, refusals and their classification, and the limits."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import anyio
import httpx
import orjson
import pytest
from alibabacloud_dysmsapi20170525 import models  # type: ignore[import-untyped, unused-ignore]
from alibabacloud_dysmsapi20170525.client import Client  # type: ignore[import-untyped, unused-ignore]
from alibabacloud_tea_openapi import utils_models  # type: ignore[import-untyped, unused-ignore]
from alibabacloud_tea_openapi.exceptions import ClientException  # type: ignore[import-untyped, unused-ignore]
from alibabacloud_tea_openapi.utils import Utils  # type: ignore[import-untyped, unused-ignore]
from pydantic import SecretStr, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from providers.aliyun import (
    EMPTY_SHA256,
    RECEIPT_ACK,
    AliyunProvider,
    AliyunSettings,
    authorization,
    classify_code,
    host_of,
)
from providers.base import (
    AttemptResult,
    Batch,
    DeliveryReport,
    DeliveryStatus,
    ErrorClass,
    FaultKind,
    Rendered,
    RenderRequest,
    Template,
    Verdict,
)
from providers.clock import FakeClock
from providers.emulators import aliyun as emu
from providers.emulators._common import FaultSettings
from providers.emulators.server import ThreadedServer
from providers.errors import ProviderResponseError
from providers.http import send_batch
from router import Message, Router, RouterSettings
from router.config import ServerSettings, load_settings
from router.sidecar.app import create_app
from router.transport import HttpxClient
from router.transport_aiohttp import DirectAiohttpClient
from tests.providers_helpers import mobiles, numbers

Serve = Callable[[Any], ThreadedServer]
AK = "sandbox-ak"
SECRET = "sandbox-secret"
SIGN = "阿里云短信测试"
TEMPLATE = "SMS_154950909"


def state(server: ThreadedServer) -> emu.AliyunState:
    st: emu.AliyunState = server.app.state.emulator
    return st


def sdk_client(server: ThreadedServer, secret: str = SECRET, key_id: str = AK) -> Any:

    config = utils_models.Config(
        access_key_id=key_id,
        access_key_secret=secret,
        endpoint=f"{server.host}:{server.port}",
        protocol="http",
    )
    return Client(config)


def sdk_send(client: Any, phones: str, **kw: Any) -> Any:

    request = models.SendSmsRequest(
        phone_numbers=phones,
        sign_name=kw.pop("sign_name", SIGN),
        template_code=kw.pop("template_code", TEMPLATE),
        template_param=kw.pop("template_param", '{"code":"1234"}'),
        **kw,
    )
    return client.send_sms(request)


def test_official_sdk_send_is_accepted_and_queryable(serve: Serve) -> None:

    server = serve(emu.create_app())
    client = sdk_client(server)
    answer = sdk_send(client, "13800138000,13900139000", out_id="order-1")
    assert answer.status_code == 200
    assert answer.body.code == "OK", answer.body
    st = state(server)
    assert [a.phone for a in st.accepted] == ["13800138000", "13900139000"]
    assert {a.biz_id for a in st.accepted} == {answer.body.biz_id}
    [req] = st.requests
    assert req.headers["authorization"].startswith("ACS3-HMAC-SHA256 Credential=sandbox-ak,")
    assert req.headers["x-acs-action"] == "SendSms"
    assert req.fields == {
        "OutId": "order-1",
        "PhoneNumbers": "13800138000,13900139000",
        "SignName": SIGN,
        "TemplateCode": TEMPLATE,
        "TemplateParam": '{"code":"1234"}',
    }
    day = st.accepted[0].sent_at.strftime("%Y%m%d")
    query = models.QuerySendDetailsRequest(
        phone_number="13900139000",
        send_date=day,
        page_size=10,
        current_page=1,
        biz_id=answer.body.biz_id,
    )
    details = client.query_send_details(query).body
    assert details.code == "OK"
    assert details.total_count == 1
    [row] = details.sms_send_detail_dtos.sms_send_detail_dto
    assert (row.phone_num, row.send_status, row.out_id) == ("13900139000", 3, "order-1")


def test_official_sdk_batch_send_is_accepted(serve: Serve) -> None:

    server = serve(emu.create_app())
    request = models.SendBatchSmsRequest(
        phone_number_json='["13800138000","13900139000"]',
        sign_name_json=f'["{SIGN}","{SIGN}"]',
        template_code=TEMPLATE,
        template_param_json='[{"code":"1"},{"code":"2"}]',
    )
    answer = sdk_client(server).send_batch_sms(request)
    assert answer.body.code == "OK", answer.body
    assert [a.template_param for a in state(server).accepted] == ['{"code":"1"}', '{"code":"2"}']


@pytest.mark.parametrize(
    ("secret", "key_id", "status", "code"),
    [
        ("not-the-secret", AK, 400, "SignatureDoesNotMatch"),
        (SECRET, "unknown-ak", 404, "InvalidAccessKeyId.NotFound"),
    ],
)
def test_official_sdk_with_wrong_credentials_is_refused(
    serve: Serve, secret: str, key_id: str, status: int, code: str
) -> None:

    server = serve(emu.create_app())
    with pytest.raises(ClientException) as raised:
        sdk_send(sdk_client(server, secret, key_id), "13800138000")
    assert raised.value.status_code == status
    assert raised.value.code == code
    assert state(server).accepted == []


# -- the adapter ---------------------------------------------------------------------------

START = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
NONCE = "0123456789abcdef0123456789abcdef"
OTP = Template(
    "login_code",
    "您的验证码为 {code}",
    {"aliyun": {"template_code": TEMPLATE, "params": ["code"]}},
)


def provider(
    url: str,
    clock: FakeClock | None = None,
    nonce: Callable[[], str] | None = None,
    **kw: Any,
) -> AliyunProvider:
    settings = AliyunSettings.model_validate(
        {
            "base_url": url,
            "access_key_id": AK,
            "access_key_secret": SECRET,
            "sign_name": SIGN,
            **kw,
        }
    )
    return AliyunProvider("aliyun", settings, clock or FakeClock(START), nonce or uuid4hex)


def uuid4hex() -> str:
    return uuid.uuid4().hex


def batch(p: AliyunProvider, n: int = 1, code: str = "1234") -> Batch:
    rendered = p.render(RenderRequest(OTP, {"code": code}, None))
    assert rendered is not None
    return Batch(uuid.uuid4().hex, numbers(n), rendered)


async def send(p: AliyunProvider, b: Batch) -> AttemptResult:
    async with httpx.AsyncClient(timeout=5, trust_env=False) as client:
        return await send_batch(p, HttpxClient(client), b)


def test_settings_are_validated_and_secrets_hidden() -> None:
    with pytest.raises(ValidationError):
        provider("http://x", max_batch=1001)
    with pytest.raises(ValidationError):
        provider("http://x", sign_name="")
    p = provider("http://x")
    assert isinstance(p.settings.access_key_secret, SecretStr)
    for text in (repr(p), repr(p.settings), str(p.settings)):
        assert SECRET not in text and AK not in text


def test_render_is_templates_only() -> None:
    p = provider("http://x")
    assert p.render(RenderRequest(None, {}, "free text")) is None
    unapproved = Template("t", None, {"aliyun": {"template_code": "SMS_1", "approved": False}})
    assert p.render(RenderRequest(unapproved, {}, None)) is None
    rendered = p.render(RenderRequest(OTP, {"code": '12"34', "x": "y"}, None))
    assert rendered is not None
    assert rendered.template_id == TEMPLATE
    assert orjson.loads(rendered.options["TemplateParam"]) == {"code": '12"34'}


def test_signature_matches_an_independent_computation() -> None:
    """The V3 algorithm written out step by step (Aliyun's documented procedure)."""
    import hashlib
    import hmac

    query = {"b": "x y", "a": "中~*"}
    headers = {"x-acs-date": "2026-03-01T08:00:00Z", "host": "h"}
    canonical = (
        "POST\n/\na=%E4%B8%AD~%2A&b=x%20y\n"
        "host:h\nx-acs-date:2026-03-01T08:00:00Z\n\nhost;x-acs-date\n" + EMPTY_SHA256
    )
    to_sign = "ACS3-HMAC-SHA256\n" + hashlib.sha256(canonical.encode()).hexdigest()
    sig = hmac.new(b"k", to_sign.encode(), hashlib.sha256).hexdigest()
    expected = f"ACS3-HMAC-SHA256 Credential=id,SignedHeaders=host;x-acs-date,Signature={sig}"
    assert authorization("id", "k", "POST", "/", query, headers) == expected


def test_adapter_request_matches_the_official_sdk(
    serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same message, same nonce and time: same query (byte for byte), same x-acs headers, and
    the adapter's signing function reproduces the SDK's Authorization exactly."""

    monkeypatch.setattr(Utils, "get_nonce", staticmethod(lambda: NONCE))
    monkeypatch.setattr(Utils, "get_timestamp", staticmethod(lambda: "2026-03-01T08:00:00Z"))
    clock = FakeClock(START)
    raw: list[bytes] = []
    sdk_app = emu.create_app(clock=clock)

    async def capture(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            raw.append(scope["query_string"])
        await sdk_app(scope, receive, send)

    sdk_server = serve(capture)
    ours_server = serve(emu.create_app(clock=clock))
    p = provider(ours_server.url, clock, lambda: NONCE)
    code = "12 34*~中+/"  # characters the encodings disagree on
    b = batch(p, 2, code=code)
    phones = ",".join(m.national for m in b.mobiles)
    template_param = orjson.dumps({"code": code}).decode()
    answer = sdk_send(
        sdk_client(sdk_server), phones, template_param=template_param, out_id=b.request_id
    )
    assert answer.body.code == "OK"
    wire = p.build_request(b)
    [sdk_req] = sdk_app.state.emulator.requests
    # the query, byte for byte
    assert raw == [httpx.URL(wire.url).query]
    assert list(sdk_req.query.items()) == list(wire.query().items())
    for name in (
        "accept",
        "x-acs-action",
        "x-acs-version",
        "x-acs-date",
        "x-acs-signature-nonce",
        "x-acs-content-sha256",
    ):
        assert wire.header(name) == sdk_req.headers[name], name
    assert wire.body == b""
    # the SDK signs every header it sets; recompute its signature with our function
    sdk_auth = sdk_req.headers["authorization"]
    signed = sdk_auth.split("SignedHeaders=")[1].split(",")[0].split(";")
    again = authorization(
        AK, SECRET, "POST", "/", dict(sdk_req.query), {h: sdk_req.headers[h] for h in signed}
    )
    assert again == sdk_auth
    # and the adapter's own request passes the emulator's check
    result = anyio.run(send, p, b)
    assert result.verdict is Verdict.ACCEPTED, result
    [ours] = state(ours_server).requests
    assert ours.headers["authorization"] == wire.header("Authorization")


@pytest.mark.anyio
async def test_accepted_with_biz_id(serve: Serve) -> None:
    server = serve(emu.create_app())
    p = live(server)
    result = await send(p, batch(p, 3))
    assert result.verdict is Verdict.ACCEPTED, result
    st = state(server)
    assert {r.provider_message_id for r in result.recipients} == {st.accepted[0].biz_id}
    assert [a.phone for a in st.accepted] == [m.national for m in numbers(3)]
    assert st.accepted[0].template_param == '{"code":"1234"}'


def live(server: ThreadedServer, **kw: Any) -> AliyunProvider:
    p = provider(server.url, **kw)
    return AliyunProvider("aliyun", p.settings)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("app_kw", "provider_kw", "code", "kind", "status"),
    [
        ({}, {"access_key_secret": "wrong"}, "SignatureDoesNotMatch", FaultKind.CREDENTIALS, 400),
        (
            {},
            {"access_key_id": "nobody"},
            "InvalidAccessKeyId.NotFound",
            FaultKind.CREDENTIALS,
            404,
        ),
        ({}, {"sign_name": "别的签名"}, "isv.SMS_SIGNATURE_ILLEGAL", FaultKind.CREDENTIALS, 200),
        ({"templates": {}}, {}, "isv.SMS_TEMPLATE_ILLEGAL", FaultKind.MESSAGE, 200),
        (
            {"templates": {TEMPLATE: frozenset({"code", "name"})}},
            {},
            "isv.TEMPLATE_MISSING_PARAMETERS",
            FaultKind.MESSAGE,
            200,
        ),
    ],
)
async def test_refusals_are_classified(
    serve: Serve,
    app_kw: dict[str, Any],
    provider_kw: dict[str, Any],
    code: str,
    kind: FaultKind,
    status: int,
) -> None:
    server = serve(emu.create_app(**app_kw))
    p = live(server, **provider_kw)
    result = await send(p, batch(p))
    assert result.verdict is Verdict.REJECTED, result
    assert result.fault is not None
    assert (result.fault.code, result.fault.kind, result.http_status) == (code, kind, status)
    expected_class = ErrorClass.AUTH if kind is FaultKind.CREDENTIALS else ErrorClass.REFUSED
    assert result.fault.error_class is expected_class
    assert state(server).accepted == []
    assert SECRET not in repr(result) and "wrong" not in result.fault.detail


@pytest.mark.anyio
async def test_invalid_number_is_the_messages_fault(serve: Serve) -> None:
    server = serve(emu.create_app())
    p = live(server)
    b = Batch("r1", numbers(1), Rendered(template_id=TEMPLATE, options={"TemplateParam": "{}"}))
    wire = p.build_request(b)
    bad = wire.url.replace("13700000000", "1370000000a")  # signature redone below
    assert bad != wire.url
    query = dict(httpx.URL(bad).params)
    headers = {k.lower(): v for k, v in wire.headers if k != "Authorization"}
    headers["host"] = f"127.0.0.1:{server.port}"
    auth = authorization(AK, SECRET, "POST", "/", query, headers)
    async with httpx.AsyncClient(trust_env=False) as client:
        response = await client.post(
            bad,
            headers={**{k: v for k, v in headers.items() if k != "host"}, "Authorization": auth},
        )
    result = p.parse_response(b, response)
    assert result.fault is not None
    assert (result.fault.code, result.fault.kind) == (
        "isv.MOBILE_NUMBER_ILLEGAL",
        FaultKind.MESSAGE,
    )


@pytest.mark.anyio
async def test_injected_business_error_fails_over(serve: Serve) -> None:
    server = serve(emu.create_app())
    state(server).set_faults(FaultSettings(error_rate=1.0))
    p = live(server)
    result = await send(p, batch(p))
    assert result.verdict is Verdict.REJECTED
    assert result.fault is not None
    assert (result.fault.code, result.fault.kind) == ("isp.SYSTEM_ERROR", FaultKind.PROVIDER)


@pytest.mark.anyio
async def test_replayed_request_is_unknown_not_rejected(serve: Serve) -> None:
    """The same signed request twice (a transport resend): the second is SignatureNonceUsed,
    which proves the first reached Aliyun, so the outcome is unknown, never a failover."""
    server = serve(emu.create_app())
    p = live(server)
    b = batch(p)
    request = p.build_request(b).to_httpx()
    async with httpx.AsyncClient(trust_env=False) as client:
        first = await client.send(request)
        second = await client.send(request)
    assert p.parse_response(b, first).verdict is Verdict.ACCEPTED
    result = p.parse_response(b, second)
    assert result.verdict is Verdict.UNKNOWN
    assert result.fault is not None and result.fault.code == "SignatureNonceUsed"
    assert len(state(server).accepted) == 1


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("faults", "verdict", "error_class"),
    [
        (FaultSettings(outage=True), Verdict.UNKNOWN, ErrorClass.HTTP_5XX),
        (FaultSettings(http_5xx_rate=1.0), Verdict.UNKNOWN, ErrorClass.HTTP_5XX),
        (FaultSettings(malformed_rate=1.0), Verdict.UNKNOWN, ErrorClass.MALFORMED),
    ],
)
async def test_transport_faults(
    serve: Serve, faults: FaultSettings, verdict: Verdict, error_class: ErrorClass
) -> None:
    server = serve(emu.create_app())
    state(server).set_faults(faults)
    p = live(server)
    result = await send(p, batch(p))
    assert result.verdict is verdict
    assert result.fault is not None and result.fault.error_class is error_class


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("isv.MOBILE_NUMBER_ILLEGAL", FaultKind.MESSAGE),
        ("isv.BUSINESS_LIMIT_CONTROL", FaultKind.MESSAGE),
        ("isv.AMOUNT_NOT_ENOUGH", FaultKind.CREDENTIALS),
        ("InvalidAccessKeyId.NotFound", FaultKind.CREDENTIALS),
        ("InvalidAccessKeyId.SomethingNew", FaultKind.CREDENTIALS),
        ("SignatureDoesNotMatch", FaultKind.CREDENTIALS),
        ("isv.MOBILE_COUNT_OVER_LIMIT", FaultKind.PROVIDER),
        ("Throttling.User", FaultKind.PROVIDER),
        ("isv.NEVER_HEARD_OF", FaultKind.PROVIDER),
    ],
)
def test_code_table(code: str, kind: FaultKind) -> None:
    assert classify_code(code) is kind


@pytest.mark.parametrize(
    ("status", "body", "verdict", "code"),
    [
        (
            200,
            b'{"Code":"OK","Message":"OK","BizId":"9^0","RequestId":"R"}',
            Verdict.ACCEPTED,
            None,
        ),
        (200, b'{"Code":"OK","Message":"OK","RequestId":"R"}', Verdict.UNKNOWN, None),
        (200, b"not json", Verdict.UNKNOWN, None),
        (
            200,
            b'{"Code":"isv.BUSINESS_LIMIT_CONTROL","Message":"x"}',
            Verdict.REJECTED,
            "isv.BUSINESS_LIMIT_CONTROL",
        ),
        (400, b'{"Code":"Throttling.User","Message":"x"}', Verdict.REJECTED, "Throttling.User"),
        (
            404,
            b'{"Code":"InvalidAccessKeyId.NotFound"}',
            Verdict.REJECTED,
            "InvalidAccessKeyId.NotFound",
        ),
        (400, b"<html>", Verdict.REJECTED, "400"),
        (500, b'{"Code":"isp.SYSTEM_ERROR"}', Verdict.UNKNOWN, "500"),
    ],
)
def test_parse_response_shapes(
    status: int, body: bytes, verdict: Verdict, code: str | None
) -> None:
    p = provider("http://x")
    b = Batch("r", numbers(1), Rendered(template_id=TEMPLATE))
    result = p.parse_response(b, httpx.Response(status, content=body))
    assert result.verdict is verdict, result
    assert (result.fault.code if result.fault else None) == code


def test_secret_echo_is_scrubbed() -> None:
    p = provider("http://x")
    b = Batch("r", numbers(1), Rendered(template_id=TEMPLATE))
    body = orjson.dumps({"Code": "SignatureDoesNotMatch", "Message": f"bad {SECRET} {AK}"})
    result = p.parse_response(b, httpx.Response(400, content=body))
    assert result.fault is not None
    assert SECRET not in result.fault.detail and AK not in result.fault.detail


# -- limits ------------------------------------------------------------------------------------


def test_adapter_refuses_batches_aliyun_would_refuse() -> None:
    p = provider("http://x")
    rendered = Rendered(template_id=TEMPLATE)
    with pytest.raises(ValueError, match="outside"):
        p.build_request(Batch("r", numbers(1001), rendered))
    with pytest.raises(ValueError, match="outside"):
        p.build_request(Batch("r", (), rendered))
    with pytest.raises(ValueError, match="templates only"):
        p.build_request(Batch("r", numbers(1), Rendered(content="free")))
    assert p.max_batch == 1000


@pytest.mark.anyio
async def test_adapter_sends_the_full_1000(serve: Serve) -> None:
    server = serve(emu.create_app())
    p = live(server)
    result = await send(p, batch(p, 1000))
    assert result.verdict is Verdict.ACCEPTED, result
    assert len(state(server).accepted) == 1000


def test_emulator_send_sms_limit(serve: Serve) -> None:
    server = serve(emu.create_app())
    client = sdk_client(server)
    phones = [m.national for m in numbers(1001)]
    refused = sdk_send(client, ",".join(phones))
    assert refused.body.code == "isv.MOBILE_COUNT_OVER_LIMIT"
    assert state(server).accepted == []
    assert sdk_send(client, ",".join(phones[:1000])).body.code == "OK"


def test_emulator_send_batch_limit(serve: Serve) -> None:

    server = serve(emu.create_app())
    client = sdk_client(server)

    def batch_of(n: int) -> Any:
        phones = [m.national for m in numbers(n)]
        request = models.SendBatchSmsRequest(
            phone_number_json=orjson.dumps(phones).decode(),
            sign_name_json=orjson.dumps([SIGN] * n).decode(),
            template_code=TEMPLATE,
            template_param_json=orjson.dumps([{"code": "1"}] * n).decode(),
        )
        return client.send_batch_sms(request).body

    assert batch_of(101).code == "isv.MOBILE_COUNT_OVER_LIMIT"
    assert state(server).accepted == []
    assert batch_of(100).code == "OK"
    assert len(state(server).accepted) == 100


# -- receipts ----------------------------------------------------------------------------------


def test_receipts_are_pushed_and_parsed(serve: Serve) -> None:
    pushed: list[bytes] = []

    async def receive(request: Request) -> Response:
        pushed.append(await request.body())
        return Response(RECEIPT_ACK, media_type="application/json")

    sink = serve(Starlette(routes=[Route("/cb", receive, methods=["POST"])]))
    server = serve(emu.create_app())
    st = state(server)
    st.callback_url = f"{sink.url}/cb"
    st.set_faults(FaultSettings(reject_mobiles=["13700000001"]))
    p = live(server)
    b = batch(p, 2)
    result = anyio.run(send, p, b)
    assert result.verdict is Verdict.ACCEPTED
    deadline = time.monotonic() + 5
    while len(pushed) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(pushed) == 2  # the emulator pushes one report per push
    reports: list[DeliveryReport] = []
    for body in pushed:
        [report] = p.parse_push("receipt", body, "application/json")
        assert isinstance(report, DeliveryReport)
        reports.append(report)
    reports.sort(key=lambda r: r.mobile)
    assert [(r.mobile, r.status) for r in reports] == [
        ("13700000000", DeliveryStatus.DELIVERED),
        ("13700000001", DeliveryStatus.FAILED),
    ]
    assert {r.provider_message_id for r in reports} == {result.recipients[0].provider_message_id}
    assert orjson.loads(p.push_ack("receipt").body) == {"code": 0, "msg": "接收成功"}


def test_documented_push_example_and_bad_pushes() -> None:
    p = provider("http://x")
    example = (
        '[{"phone_number":"1381111****","send_time":"2017-01-01 00:00:00",'
        '"report_time":"2017-01-01 00:00:00","success":true,"err_code":"DELIVERED",'
        '"err_msg":"用户接收成功","sms_size":"1","biz_id":"12345","out_id":"67890"}]'
    ).encode()
    [report] = p.parse_receipts(example)
    assert (report.provider_message_id, report.status, report.status_code) == (
        "12345",
        DeliveryStatus.DELIVERED,
        "DELIVERED",
    )
    assert report.at == datetime(2016, 12, 31, 16, 0, tzinfo=UTC)
    assert p.parse_push("receipt", example, "application/json") == [report]
    for bad in (b"{}", b"nope", b'[{"success":true}]', example[:-1] + b',{"success":1}]'):
        with pytest.raises(ProviderResponseError):
            p.parse_push("receipt", bad, "application/json")
    two = example[:-1] + b"," + example[1:]  # Aliyun batches reports: every one is taken
    assert p.parse_push("receipt", two, "application/json") == [report, report]


def test_query_send_details_paging(serve: Serve) -> None:
    server = serve(emu.create_app())
    client = sdk_client(server)

    for _ in range(3):
        assert sdk_send(client, "13800138000").body.code == "OK"
    day = state(server).accepted[0].sent_at.strftime("%Y%m%d")

    def page(size: int, n: int) -> Any:
        return client.query_send_details(
            models.QuerySendDetailsRequest(
                phone_number="13800138000", send_date=day, page_size=size, current_page=n
            )
        ).body

    assert page(2, 1).total_count == 3
    assert len(page(2, 2).sms_send_detail_dtos.sms_send_detail_dto) == 1
    assert page(51, 1).code == "isv.INVALID_PARAMETERS"


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://dysmsapi.aliyuncs.com/", "dysmsapi.aliyuncs.com"),
        ("https://dysmsapi.aliyuncs.com:443/", "dysmsapi.aliyuncs.com"),
        ("http://127.0.0.1:8080/", "127.0.0.1:8080"),
        ("http://h:80", "h"),
    ],
)
def test_signed_host_is_what_clients_send(url: str, host: str) -> None:
    assert host_of(url) == host


def test_numbers_as_aliyun_writes_them() -> None:
    p = provider("http://x", regions="all")
    b = Batch("r", mobiles("13800138000", "+85291234567"), Rendered(template_id=TEMPLATE))
    assert p.build_request(b).query()["PhoneNumbers"] == "13800138000,85291234567"


@pytest.mark.anyio
async def test_router_default_transport_keeps_the_signature_valid(serve: Serve) -> None:
    """aiohttp (the router's default client) may re-quote the URL: the values, and so the
    signature, must survive it, including characters the encodings treat differently."""
    server = serve(emu.create_app())
    p = live(server)
    b = batch(p, 2, code="12 34*~中+/%")
    client = DirectAiohttpClient(connect_timeout_s=2, timeout_s=5, max_connections=2)
    try:
        result = await send_batch(p, client, b)
    finally:
        await client.aclose()
    assert result.verdict is Verdict.ACCEPTED, result
    assert orjson.loads(state(server).accepted[0].template_param) == {"code": "12 34*~中+/%"}


@pytest.mark.anyio
async def test_clock_skew_and_tampered_body_are_refused(serve: Serve) -> None:
    clock = FakeClock(START)
    server = serve(emu.create_app(clock=clock))
    p = provider(server.url, clock)
    clock.advance(16 * 60)  # the emulator's clock moved on; the adapter's did too ...
    skewed = provider(server.url, FakeClock(START))  # ... this one's did not
    result = await send(skewed, batch(skewed))
    assert result.fault is not None
    assert (result.fault.code, result.fault.kind) == (
        "InvalidTimeStamp.Expired",
        FaultKind.PROVIDER,
    )
    request = p.build_request(batch(p)).to_httpx()
    async with httpx.AsyncClient(trust_env=False) as client:
        tampered = await client.post(
            str(request.url),
            headers={k: v for k, v in request.headers.items() if k != "content-length"},
            content=b"PhoneNumbers=13900000000",
        )
    assert tampered.status_code == 400
    assert tampered.json()["Code"] == "SignatureDoesNotMatch"
    assert state(server).accepted == []


@pytest.mark.anyio
async def test_timeout_after_accept_is_unknown_but_taken(serve: Serve) -> None:
    server = serve(emu.create_app())
    faults = FaultSettings(timeout_rate=1.0, timeout_after_accept=True, hang_s=2.0)
    state(server).set_faults(faults)
    p = live(server)
    async with httpx.AsyncClient(timeout=0.3, trust_env=False) as client:
        result = await send_batch(p, HttpxClient(client), batch(p))
    assert result.verdict is Verdict.UNKNOWN
    assert len(state(server).accepted) == 1


def router_settings(url: str, **resilience: Any) -> RouterSettings:
    """A router with Aliyun alone, templated login codes, short timeouts."""
    return load_settings(
        providers={
            "aliyun": {
                "type": "aliyun",
                "base_url": url,
                "access_key_id": AK,
                "access_key_secret": SECRET,
                "sign_name": SIGN,
                "timeout_s": 0.3,
            }
        },
        templates={
            "login_code": {
                "content": "code {code}",
                "providers": {"aliyun": {"template_code": TEMPLATE, "params": ["code"]}},
            }
        },
        resilience={"reconcile_window_s": 2.0, **resilience},
        receipt_poll_s=0,
        balance_poll_s=0,
    )


@pytest.mark.anyio
@pytest.mark.parametrize(("taken", "status"), [(True, "accepted"), (False, "unknown")])
async def test_an_unknown_send_is_settled_by_query_send_details(
    serve: Serve, taken: bool, status: str
) -> None:
    """Aliyun's SendSms is not idempotent: a timed-out send is looked up with
    QuerySendDetails (its OutId is our request id) and never resent. Taken: accepted. Not in
    the records (the request hung before Aliyun took it): stays unknown, one request only."""
    server = serve(emu.create_app())
    state(server).set_faults(
        FaultSettings(timeout_rate=1.0, timeout_after_accept=taken, hang_s=1.0)
    )
    async with Router(router_settings(server.url)) as router:
        result = await router.send(
            Message(
                mobiles=["13700000000", "13700000001", "13700000002"],
                scene="login_code",
                params={"code": "1234"},
            )
        )
    assert [r.status.value for r in result.recipients] == [status] * 3, result
    outcome = result.recipients[0]
    sends = [r for r in state(server).requests if r.query.get("PhoneNumbers")]
    assert len(sends) == 1  # never resent
    assert len(state(server).accepted) == (3 if taken else 0)  # one entry per number
    queries = [r for r in state(server).requests if r.query.get("PhoneNumber")]
    assert queries, "the unknown send was not looked up"
    if taken:  # one request, taken as a whole: one number asked, once
        assert len(queries) == 1
        assert outcome.attempts[-1].request_id == state(server).accepted[0].out_id
    else:
        assert outcome.error is not None and "send records" in outcome.error


def test_explain_says_how_an_unknown_at_aliyun_is_settled(serve: Serve) -> None:
    server = serve(emu.create_app())
    router = Router(router_settings(server.url))
    fate = router.explain(
        Message(mobiles=["13700000000"], scene="login_code", params={"code": "1"})
    ).unknowns["aliyun"]
    assert "send records" in fate and "never sent again" in fate


@pytest.mark.anyio
async def test_a_push_of_several_reports_settles_each_recipient(serve: Serve) -> None:
    """Aliyun batches receipts: one SmsReport push of two reports, through the sidecar's
    callback, gives each recipient its own delivery."""
    emulator = serve(emu.create_app())
    settings = router_settings(emulator.url).model_copy(
        update={"server": ServerSettings(callback_tokens={"aliyun": SecretStr("tok")})}
    )
    sidecar = serve(create_app(Router(settings)))
    base = f"http://127.0.0.1:{sidecar.port}"
    async with httpx.AsyncClient(timeout=5, trust_env=False) as client:
        sent = await client.post(
            f"{base}/v1/messages",
            json={
                "mobiles": ["13700000000", "13700000001"],
                "scene": "login_code",
                "params": {"code": "1234"},
            },
        )
        body = sent.json()
        assert body["counts"] == {"accepted": 2}, body
        biz_id = body["recipients"][0]["provider_message_id"]
        reports = [
            {"phone_number": mobile, "success": ok, "err_code": code, "biz_id": biz_id}
            for mobile, ok, code in (
                ("13700000000", True, "DELIVERED"),
                ("13700000001", False, "MN:0001"),
            )
        ]
        pushed = await client.post(
            f"{base}/v1/callbacks/aliyun/receipt", json=reports, headers={"X-Callback-Token": "tok"}
        )
        assert pushed.status_code == 200 and pushed.json() == {"code": 0, "msg": "接收成功"}
        status = (await client.get(f"{base}/v1/messages/{body['message_id']}")).json()
    deliveries = [(r["mobile"], r["delivery"]["status"]) for r in status["recipients"]]
    assert deliveries == [("13700000000", "delivered"), ("13700000001", "failed")]
