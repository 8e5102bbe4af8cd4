"""Tencent Cloud SMS: the official SDK against the emulator, the adapter's request against the
SDK's, refusals and per-number verdicts, pulls, pushes, limits and secrets."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import httpx
import orjson
import pytest
from pydantic import SecretStr, ValidationError
from tencentcloud.common import abstract_client, credential  # type: ignore[import-untyped, unused-ignore]
from tencentcloud.common.exception.tencent_cloud_sdk_exception import (  # type: ignore[import-untyped, unused-ignore]
    TencentCloudSDKException,
)
from tencentcloud.common.profile.client_profile import ClientProfile  # type: ignore[import-untyped, unused-ignore]
from tencentcloud.common.profile.http_profile import HttpProfile  # type: ignore[import-untyped, unused-ignore]
from tencentcloud.sms.v20210111 import models, sms_client  # type: ignore[import-untyped, unused-ignore]

from providers.base import (
    AttemptResult,
    Batch,
    BatchKeyed,
    DeliveryReport,
    DeliveryStatus,
    ErrorClass,
    FaultKind,
    Provider,
    PushReceiver,
    Rendered,
    RenderRequest,
    ReportPuller,
    Template,
    Verdict,
)
from providers.clock import FakeClock, SystemClock
from providers.emulators import tencent as emu
from providers.emulators._common import FaultSettings
from providers.emulators.server import ThreadedServer
from providers.errors import ProviderResponseError
from providers.http import send_batch
from providers.mobile import normalise
from providers.registry import AdapterSpec
from providers.tencent import TencentProvider, TencentSettings, classify_code
from router import Message, Router, RouterSettings
from router.config import load_settings
from router.transport import HttpxClient
from tests.providers_helpers import mobiles, numbers

Serve = Callable[[Any], ThreadedServer]
SECRET_ID = "AKIDsandbox0000000000000000000000000"
SECRET_KEY = "sandbox-secret-key"
APP = "1400006666"
SIGN = "腾讯云"
OTP = Template("login_code", None, {"tencent": {"template_id": "1110", "params": ["code"]}})


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK uses requests, which honours proxy variables: loopback must go direct."""
    monkeypatch.setenv("NO_PROXY", "*")
    monkeypatch.setenv("no_proxy", "*")


def state(server: ThreadedServer) -> emu.TencentState:
    st: emu.TencentState = server.app.state.emulator
    return st


def provider(url: str, clock: Any = None, **kw: Any) -> TencentProvider:
    fields: dict[str, Any] = {
        "base_url": url,
        "secret_id": SecretStr(SECRET_ID),
        "secret_key": SecretStr(SECRET_KEY),
        "sdk_app_id": APP,
        "sign_name": SIGN,
        **kw,
    }
    return TencentProvider("tencent", TencentSettings(**fields), clock)


def batch(p: TencentProvider, ms: tuple[Any, ...] | None = None) -> Batch:
    rendered = p.render(RenderRequest(OTP, {"code": "4370"}, None))
    assert rendered is not None
    return Batch(uuid.uuid4().hex, ms if ms is not None else numbers(1), rendered)


async def send(p: TencentProvider, b: Batch) -> AttemptResult:
    async with httpx.AsyncClient(timeout=5, trust_env=False) as client:
        return await send_batch(p, HttpxClient(client), b)


def sdk_client(port: int, key: str = SECRET_KEY, secret_id: str = SECRET_ID) -> Any:

    http = HttpProfile(protocol="http", endpoint=f"127.0.0.1:{port}")
    cred = credential.Credential(secret_id, key)
    return sms_client.SmsClient(cred, "ap-guangzhou", ClientProfile(httpProfile=http))


def sdk_send_request(phones: list[str], context: str = "ctx-1") -> Any:

    req = models.SendSmsRequest()
    req.PhoneNumberSet = phones
    req.SmsSdkAppId = APP
    req.SignName = SIGN
    req.TemplateId = "1110"
    req.TemplateParamSet = ["4370"]
    req.SessionContext = context
    return req


# -- (a) the official SDK against the emulator ---------------------------------------------


def test_official_sdk_send_is_accepted_with_per_number_statuses(serve: Serve) -> None:
    server = serve(emu.create_app(clock=SystemClock()))
    answer = sdk_client(server.port).SendSms(
        sdk_send_request(["+8613800138000", "13900139000", "12345"], context="abc")
    )
    st = state(server)
    codes = [(s.PhoneNumber, s.Code) for s in answer.SendStatusSet]
    assert codes == [
        ("+8613800138000", "Ok"),
        ("+8613900139000", "Ok"),
        ("12345", "InvalidParameterValue.IncorrectPhoneNumber"),
    ]
    assert [s.SerialNo for s in answer.SendStatusSet[:2]] == [a.serial_no for a in st.accepted]
    assert {s.SessionContext for s in answer.SendStatusSet} == {"abc"}
    assert answer.RequestId
    [req] = st.requests
    assert req.headers["x-tc-action"] == "SendSms"
    assert req.headers["x-tc-version"] == "2021-01-11"
    assert req.headers["authorization"].startswith(f"TC3-HMAC-SHA256 Credential={SECRET_ID}/")
    assert st.taken == ["13800138000", "13900139000"]


@pytest.mark.parametrize(
    ("key", "secret_id", "code"),
    [
        ("not-the-key", SECRET_ID, "AuthFailure.SignatureFailure"),
        (SECRET_KEY, "AKIDunknown", "AuthFailure.SecretIdNotFound"),
    ],
)
def test_official_sdk_with_wrong_credentials_is_refused(
    serve: Serve, key: str, secret_id: str, code: str
) -> None:

    server = serve(emu.create_app(clock=SystemClock()))
    with pytest.raises(TencentCloudSDKException) as refused:
        sdk_client(server.port, key, secret_id).SendSms(sdk_send_request(["+8613800138000"]))
    assert refused.value.code == code
    assert refused.value.requestId  # the documented error shape: Error + RequestId
    assert state(server).accepted == []


def test_official_sdk_pulls_what_was_accepted(serve: Serve) -> None:

    server = serve(emu.create_app(clock=SystemClock()))
    client = sdk_client(server.port)
    client.SendSms(sdk_send_request(["+8613800138000", "+8613900139000"], context="ours"))
    pull = models.PullSmsSendStatusRequest()
    pull.Limit = 1
    pull.SmsSdkAppId = APP
    first = client.PullSmsSendStatus(pull).PullSmsSendStatusSet
    pull.Limit = 100
    rest = client.PullSmsSendStatus(pull).PullSmsSendStatusSet
    again = client.PullSmsSendStatus(pull).PullSmsSendStatusSet
    got = [(s.PhoneNumber, s.ReportStatus, s.SessionContext) for s in first + rest]
    assert got == [("+8613800138000", "SUCCESS", "ours"), ("+8613900139000", "SUCCESS", "ours")]
    assert [s.SerialNo for s in first + rest] == [a.serial_no for a in state(server).accepted]
    assert again == []  # each status is pulled once


def test_official_sdk_over_200_numbers_is_refused(serve: Serve) -> None:

    server = serve(emu.create_app(clock=SystemClock()))
    phones = [f"+86137{i:08d}" for i in range(201)]
    with pytest.raises(TencentCloudSDKException) as refused:
        sdk_client(server.port).SendSms(sdk_send_request(phones))
    assert refused.value.code == "LimitExceeded.PhoneNumberCountLimit"
    answer = sdk_client(server.port).SendSms(sdk_send_request(phones[:200]))
    assert len(answer.SendStatusSet) == 200


# -- (b) the adapter's request is the SDK's ---------------------------------------------------


def test_adapter_request_matches_the_sdk_byte_for_byte(
    serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:

    fixed = 1_767_225_600  # 2026-01-01T00:00:00Z
    monkeypatch.setattr(abstract_client.time, "time", lambda: float(fixed))
    clock = FakeClock(datetime.fromtimestamp(fixed, UTC))
    server = serve(emu.create_app(clock=clock))
    p = provider(server.url, clock)
    b = batch(p, mobiles("13800138000", "13900139000"))
    ours = p.build_request(b)

    sdk_client(server.port).SendSms(
        sdk_send_request(["+8613800138000", "+8613900139000"], context=b.request_id)
    )
    [theirs] = state(server).requests
    assert ours.body == theirs.body  # the same bytes, not only the same JSON
    assert ours.header("Authorization") == theirs.headers["authorization"]
    for name in ("Content-Type", "X-TC-Action", "X-TC-Version", "X-TC-Timestamp", "X-TC-Region"):
        assert ours.header(name) == theirs.headers[name.lower()], name
    assert ours.url == f"{server.url}/"


def test_adapter_pull_request_matches_the_sdk(
    serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:

    fixed = 1_767_225_600
    monkeypatch.setattr(abstract_client.time, "time", lambda: float(fixed))
    clock = FakeClock(datetime.fromtimestamp(fixed, UTC))
    seen: list[httpx.Request] = []

    def capture(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200, json={"Response": {"PullSmsSendStatusSet": [], "RequestId": "r"}}
        )

    server = serve(emu.create_app(clock=clock))
    pull = models.PullSmsSendStatusRequest()
    pull.Limit = 100
    pull.SmsSdkAppId = APP
    sdk_answer = sdk_client(server.port).PullSmsSendStatus(pull)
    assert sdk_answer.PullSmsSendStatusSet == []  # the emulator verified the SDK's signature
    ours = provider(server.url, clock).build_report_request()
    assert json.loads(ours.body) == {"Limit": 100, "SmsSdkAppId": APP}
    assert ours.header("X-TC-Action") == "PullSmsSendStatus"
    with httpx.Client(transport=httpx.MockTransport(capture)) as client:
        client.send(ours.to_httpx())
    assert seen[0].headers["authorization"] == ours.header("Authorization")


# -- the adapter against the emulator --------------------------------------------------------


@pytest.mark.anyio
async def test_adapter_send_accepted_per_number(serve: Serve) -> None:
    server = serve(emu.create_app())
    p = provider(server.url)
    b = batch(p, mobiles("13800138000", "13900139000"))
    result = await send(p, b)
    assert result.verdict is Verdict.ACCEPTED, result
    ids = [r.provider_message_id for r in result.recipients]
    assert ids == [a.serial_no for a in state(server).accepted]
    assert all(r.verdict is Verdict.ACCEPTED for r in result.recipients)
    fields = state(server).requests[0].fields
    assert fields["PhoneNumberSet"] == ["+8613800138000", "+8613900139000"]
    assert fields["SessionContext"] == b.request_id
    assert [a.session_context for a in state(server).accepted] == [b.request_id] * 2


@pytest.mark.anyio
async def test_per_number_refusals_are_classified(serve: Serve) -> None:
    st = emu.TencentState(daily_limit=1)
    server = serve(emu.create_app(st))
    st.set_faults(FaultSettings(reject_mobiles=["13900139000"]))
    p = provider(server.url)
    assert (await send(p, batch(p, mobiles("13700137000")))).verdict is Verdict.ACCEPTED
    b = batch(p, mobiles("13800138000", "13900139000", "13700137000"))
    result = await send(p, b)
    assert result.verdict is Verdict.ACCEPTED  # one number taken
    ok, blacklisted, limited = result.recipients
    assert ok.verdict is Verdict.ACCEPTED and ok.fault is None
    for r, code in (
        (blacklisted, "FailedOperation.PhoneNumberInBlacklist"),
        (limited, "LimitExceeded.PhoneNumberDailyLimit"),
    ):
        assert r.verdict is Verdict.REJECTED
        assert r.fault is not None and (r.fault.code, r.fault.kind) == (code, FaultKind.MESSAGE)
        assert r.provider_message_id is None
    only_bad = await send(p, batch(p, mobiles("13900139000")))
    assert only_bad.verdict is Verdict.REJECTED
    assert only_bad.fault is not None and only_bad.fault.kind is FaultKind.MESSAGE


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("app_kw", "provider_kw", "code", "kind", "error_class"),
    [
        ({"secret_key": "other"}, {}, "AuthFailure.SignatureFailure", FaultKind.CREDENTIALS,
         ErrorClass.AUTH),
        ({"secret_id": "AKIDother"}, {}, "AuthFailure.SecretIdNotFound", FaultKind.CREDENTIALS,
         ErrorClass.AUTH),
        ({}, {"sdk_app_id": "1400000000"}, "InvalidParameterValue.SdkAppIdNotExist",
         FaultKind.CREDENTIALS, ErrorClass.AUTH),
        ({}, {"sign_name": "别的"}, "FailedOperation.SignatureIncorrectOrUnapproved",
         FaultKind.MESSAGE, ErrorClass.REFUSED),
        ({"templates": {"9": 1}}, {}, "FailedOperation.TemplateIncorrectOrUnapproved",
         FaultKind.MESSAGE, ErrorClass.REFUSED),
        ({"templates": {"1110": 2}}, {},
         "FailedOperation.TemplateParamSetNotMatchApprovedTemplate", FaultKind.MESSAGE,
         ErrorClass.REFUSED),
    ],
)  # fmt: skip
async def test_request_refusals_are_classified(
    serve: Serve,
    app_kw: dict[str, Any],
    provider_kw: dict[str, Any],
    code: str,
    kind: FaultKind,
    error_class: ErrorClass,
) -> None:
    server = serve(emu.create_app(**app_kw))
    p = provider(server.url, **provider_kw)
    result = await send(p, batch(p, numbers(2)))
    assert result.verdict is Verdict.REJECTED
    assert result.fault is not None
    assert (result.fault.code, result.fault.kind, result.fault.error_class) == (
        code,
        kind,
        error_class,
    )
    assert all(r.verdict is Verdict.REJECTED for r in result.recipients)
    assert state(server).accepted == []


@pytest.mark.anyio
@pytest.mark.parametrize(("skew_s", "accepted"), [(-290, True), (290, True), (-310, False)])
async def test_timestamp_window(serve: Serve, skew_s: int, accepted: bool) -> None:
    emulator_clock = FakeClock()
    server = serve(emu.create_app(clock=emulator_clock))
    p = provider(server.url, FakeClock(emulator_clock.now() + timedelta(seconds=skew_s)))
    result = await send(p, batch(p))
    if accepted:
        assert result.verdict is Verdict.ACCEPTED, result
    else:
        assert result.fault is not None and result.fault.code == "AuthFailure.SignatureExpire"
        assert result.fault.kind is FaultKind.CREDENTIALS


@pytest.mark.anyio
async def test_tampered_body_fails_the_signature(serve: Serve) -> None:
    server = serve(emu.create_app())
    p = provider(server.url)
    b = batch(p)
    request = p.build_request(b).to_httpx()
    body = {**orjson.loads(request.content), "TemplateParamSet": ["9999"]}
    headers = {k: v for k, v in request.headers.items() if k != "content-length"}
    async with httpx.AsyncClient(trust_env=False) as client:
        answer = await client.post(str(request.url), headers=headers, content=orjson.dumps(body))
    assert answer.status_code == 200
    assert answer.json()["Response"]["Error"]["Code"] == "AuthFailure.SignatureFailure"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("faults", "verdict", "error_class"),
    [
        (FaultSettings(error_rate=1.0), Verdict.REJECTED, ErrorClass.REFUSED),
        (FaultSettings(http_5xx_rate=1.0), Verdict.UNKNOWN, ErrorClass.HTTP_5XX),
        (FaultSettings(malformed_rate=1.0), Verdict.UNKNOWN, ErrorClass.MALFORMED),
        (FaultSettings(outage=True), Verdict.UNKNOWN, ErrorClass.HTTP_5XX),
    ],
)
async def test_injected_faults(
    serve: Serve, faults: FaultSettings, verdict: Verdict, error_class: ErrorClass
) -> None:
    server = serve(emu.create_app())
    state(server).set_faults(faults)
    p = provider(server.url)
    result = await send(p, batch(p))
    assert result.verdict is verdict
    assert result.fault is not None and result.fault.error_class is error_class
    assert result.fault.kind is FaultKind.PROVIDER


# -- (c) parsing: per-number verdicts, unknowns, table ------------------------------------


def _answer(payload: dict[str, Any]) -> httpx.Response:
    return httpx.Response(200, json={"Response": {**payload, "RequestId": "r"}})


def test_parse_mixed_status_set_and_missing_numbers() -> None:
    p = provider("https://sms.tencentcloudapi.com")
    b = batch(p, mobiles("13800138000", "13900139000", "13700137000"))
    answer = _answer(
        {
            "SendStatusSet": [
                {"SerialNo": "", "PhoneNumber": "+8613900139000", "Code":
                 "InvalidParameterValue.IncorrectPhoneNumber", "Message": "bad"},
                {"SerialNo": "s1", "PhoneNumber": "+8613800138000", "Code": "Ok"},
            ]
        }
    )  # fmt: skip
    result = p.parse_response(b, answer)
    assert [r.verdict for r in result.recipients] == [
        Verdict.ACCEPTED,
        Verdict.REJECTED,
        Verdict.UNKNOWN,  # not answered: it may have been sent
    ]
    assert result.recipients[0].provider_message_id == "s1"
    assert result.verdict is Verdict.ACCEPTED


def test_parse_unknown_and_unknown_codes() -> None:
    p = provider("https://sms.tencentcloudapi.com")
    b = batch(p)
    timeout = p.parse_response(b, _answer({"Error": {"Code": "InternalError.Timeout"}}))
    assert timeout.verdict is Verdict.UNKNOWN
    novel = p.parse_response(b, _answer({"Error": {"Code": "Brand.NewCode", "Message": "x"}}))
    assert novel.verdict is Verdict.REJECTED
    assert novel.fault is not None and novel.fault.kind is FaultKind.PROVIDER
    broken = p.parse_response(b, httpx.Response(200, content=b'{"Response": 1}'))
    assert broken.verdict is Verdict.UNKNOWN
    assert classify_code("AuthFailure.TokenFailure") is FaultKind.CREDENTIALS
    assert (
        classify_code("UnauthorizedOperation.ServiceSuspendDueToArrears") is FaultKind.CREDENTIALS
    )
    assert classify_code("LimitExceeded.PhoneNumberCountLimit") is FaultKind.PROVIDER
    assert classify_code("RequestLimitExceeded") is FaultKind.PROVIDER


def test_parse_push_and_ack() -> None:
    p = provider("https://sms.tencentcloudapi.com")
    body = json.dumps(
        [
            {"user_receive_time": "2015-10-17 08:03:04", "nationcode": "86",
             "mobile": "13xxxxxxxxx", "report_status": "SUCCESS", "errmsg": "DELIVRD",
             "description": "用户短信送达成功", "sid": "xxxxxxx"},
            {"user_receive_time": "2015-10-17 08:03:05", "nationcode": "86",
             "mobile": "13800138000", "report_status": "FAIL", "errmsg": "MK:0001",
             "description": "fail", "sid": "yyy"},
        ]
    ).encode()  # fmt: skip
    ok, failed = p.parse_push("receipt", body, "application/json")
    assert ok.provider_message_id == "xxxxxxx" and failed.provider_message_id == "yyy"  # type: ignore[union-attr]
    assert ok.status is DeliveryStatus.DELIVERED and failed.status is DeliveryStatus.FAILED  # type: ignore[union-attr]
    assert failed.status_code == "MK:0001"  # type: ignore[union-attr]
    assert ok.at is not None and ok.at.utcoffset() == timedelta(hours=8)
    assert json.loads(p.push_ack("receipt").body) == {"result": 0, "errmsg": "OK"}
    for bad in (b"{}", b"not json", b'[{"sid": "x", "report_status": "MAYBE"}]'):
        with pytest.raises(ProviderResponseError):
            p.parse_push("receipt", bad, "application/json")


@pytest.mark.anyio
async def test_emulator_push_is_parsed_by_the_adapter(serve: Serve) -> None:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    got: list[bytes] = []
    arrived = anyio.Event()

    async def receive(request: Request) -> Response:
        got.append(await request.body())
        arrived.set()
        return Response(b'{"result":0,"errmsg":"OK"}', media_type="application/json")

    sink = serve(Starlette(routes=[Route("/cb", receive, methods=["POST"])]))
    st = emu.TencentState(callback_url=f"{sink.url}/cb")
    server = serve(emu.create_app(st))
    p = provider(server.url)
    result = await send(p, batch(p, mobiles("13800138000", "13900139000")))
    with anyio.fail_after(5):
        await arrived.wait()
    reports = p.parse_push("receipt", got[0], "application/json")
    assert [r.provider_message_id for r in reports if isinstance(r, DeliveryReport)] == [
        r.provider_message_id for r in result.recipients
    ]


@pytest.mark.anyio
async def test_adapter_pulls_reports(serve: Serve) -> None:
    server = serve(emu.create_app())
    p = provider(server.url)
    result = await send(p, batch(p, numbers(3)))
    async with httpx.AsyncClient(trust_env=False) as client:
        answer = await client.send(p.build_report_request().to_httpx())
    reports = p.parse_report(answer)
    assert [r.provider_message_id for r in reports] == [
        r.provider_message_id for r in result.recipients
    ]
    assert {r.status for r in reports} == {DeliveryStatus.DELIVERED}
    refused = _answer({"Error": {"Code": "AuthFailure.SignatureFailure", "Message": "m"}})
    with pytest.raises(ProviderResponseError):
        p.parse_report(refused)


# -- (d) limits, settings, secrets ----------------------------------------------------------


def test_limits_in_build_request() -> None:
    p = provider("https://sms.tencentcloudapi.com")
    assert p.max_batch == 200 and p.kind == "tencent"
    assert len(orjson.loads(p.build_request(batch(p, numbers(200))).body)["PhoneNumberSet"]) == 200
    with pytest.raises(ValueError, match="outside"):
        p.build_request(batch(p, numbers(201)))
    mixed = (normalise("13800138000"), normalise("+85291234567"))
    with pytest.raises(ValueError, match="mainland"):
        p.build_request(batch(p, mixed))
    assert p.batch_key(mixed[0]) != p.batch_key(mixed[1])
    free = Batch("r", numbers(1), Rendered(content="hi"))
    with pytest.raises(ValueError, match="templates only"):
        p.build_request(free)


@pytest.mark.parametrize("bad", [{"max_batch": 201}, {"sdk_app_id": ""}, {"extend_code": "x"}])
def test_settings_refuse_bad_values(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        provider("https://sms.tencentcloudapi.com", **bad)


def test_request_shape_and_host() -> None:
    p = provider("https://sms.tencentcloudapi.com", clock=FakeClock())
    request = p.build_request(batch(p))
    assert request.url == "https://sms.tencentcloudapi.com/"
    assert request.header("X-TC-Timestamp") == str(int(FakeClock().now().timestamp()))
    assert request.header("X-TC-Region") == "ap-guangzhou"
    assert (request.header("Authorization") or "").startswith(
        f"TC3-HMAC-SHA256 Credential={SECRET_ID}/2026-01-01/sms/tc3_request, "
        "SignedHeaders=content-type;host, Signature="
    )
    assert list(orjson.loads(request.body)) == [
        "PhoneNumberSet",
        "SmsSdkAppId",
        "TemplateId",
        "SignName",
        "TemplateParamSet",
        "SessionContext",
    ]


@pytest.mark.anyio
async def test_no_secret_in_repr_faults_or_errors(serve: Serve) -> None:
    server = serve(emu.create_app(secret_key="other"))
    p = provider(server.url)
    result = await send(p, batch(p))
    assert result.fault is not None and result.fault.error_class is ErrorClass.AUTH
    echoing = p.parse_response(
        batch(p),
        _answer({"Error": {"Code": "AuthFailure.X", "Message": f"{SECRET_KEY} {SECRET_ID}"}}),
    )
    request = p.build_request(batch(p))
    for obj in (p, p.settings, result, result.fault, echoing, echoing.fault, request):
        for text in (repr(obj), str(obj)):
            assert SECRET_KEY not in text and SECRET_ID not in text, type(obj).__name__


def test_adapter_has_the_capabilities_it_claims() -> None:
    p = provider("https://sms.tencentcloudapi.com")
    for protocol in (Provider, BatchKeyed, ReportPuller, PushReceiver):
        assert isinstance(p, protocol), protocol.__name__
    spec = AdapterSpec("tencent", TencentSettings, TencentProvider)  # the registry line
    settings = spec.settings_type.model_validate(
        {"type": "tencent", "secret_id": SECRET_ID, "secret_key": SECRET_KEY, "sdk_app_id": APP}
    )
    built = spec.factory("tx", settings, FakeClock())
    assert isinstance(built, TencentProvider) and built.max_batch == 200
    assert SECRET_KEY not in repr(settings) and SECRET_ID not in repr(settings)
    with pytest.raises(ValidationError):
        TencentSettings.model_validate(
            {"type": "tencent", "secret_id": "a", "secret_key": "b", "sdk_app_id": "1", "x": 1}
        )


def router_settings(url: str, **resilience: Any) -> RouterSettings:
    """A router with Tencent alone, templated login codes, short timeouts."""
    return load_settings(
        providers={
            "tencent": {
                "type": "tencent",
                "base_url": url,
                "secret_id": SECRET_ID,
                "secret_key": SECRET_KEY,
                "sdk_app_id": APP,
                "sign_name": SIGN,
                "timeout_s": 0.3,
            }
        },
        templates={
            "login_code": {
                "content": "code {code}",
                "providers": {"tencent": {"template_id": "1110", "params": ["code"]}},
            }
        },
        resilience=resilience,
        receipt_poll_s=0,
        balance_poll_s=0,
    )


@pytest.mark.anyio
async def test_a_send_through_the_router_gets_each_numbers_serial_no(serve: Serve) -> None:
    server = serve(emu.create_app())
    async with Router(router_settings(server.url)) as router:
        result = await router.send(
            Message(
                mobiles=["13800138000", "13900139000"], scene="login_code", params={"code": "1"}
            )
        )
    assert [r.status.value for r in result.recipients] == ["accepted", "accepted"]
    serials = {r.provider_message_id for r in result.recipients}
    assert serials == {n.serial_no for n in state(server).accepted} and len(serials) == 2


@pytest.mark.anyio
@pytest.mark.parametrize(("taken", "status"), [(True, "accepted"), (False, "unknown")])
async def test_an_unknown_send_is_settled_by_a_pulled_status_echoing_our_request_id(
    serve: Serve, taken: bool, status: str
) -> None:
    """A timed-out send: PullSmsSendStatus reports carry SessionContext (our request id), so a
    pulled status proves it was taken, with the number's own SerialNo. Nothing pulled: it stays
    unknown, and is never resent."""
    server = serve(emu.create_app())
    state(server).set_faults(
        FaultSettings(timeout_rate=1.0, timeout_after_accept=taken, hang_s=1.0)
    )
    async with Router(router_settings(server.url, reconcile_window_s=1.0)) as router:
        result = await router.send(
            Message(mobiles=["13800138000"], scene="login_code", params={"code": "1"})
        )
    [outcome] = result.recipients
    assert outcome.status.value == status, outcome
    assert len(state(server).accepted) == (1 if taken else 0)
    sends = [r for r in state(server).requests if r.headers.get("x-tc-action") == "SendSms"]
    assert len(sends) == 1  # never resent
    if taken:
        assert outcome.provider_message_id == state(server).accepted[0].serial_no
