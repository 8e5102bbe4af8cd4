"""v1 platform sends against its emulator over loopback: wire bytes, verdicts, limits, secrets."""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from pydantic import ValidationError

# Imported before any adapter module: router's package init builds the provider registry,
# which imports the adapters; importing an adapter first is a cycle (see providers/registry.py).
import router.errors
from providers.base import (
    AttemptResult,
    Batch,
    ErrorClass,
    FaultKind,
    Mobile,
    Rendered,
    RenderRequest,
    Template,
    Verdict,
)
from providers.emulators import v1platform as emu
from providers.emulators._common import FaultSettings
from providers.emulators.server import ThreadedServer, free_port
from providers.http import send_batch
from providers.v1platform import MAX_CONTENT_CHARS, V1PlatformProvider, V1PlatformSettings
from router.mobile import normalise
from router.transport import HttpxClient

pytestmark = pytest.mark.anyio
Serve = Callable[[Any], ThreadedServer]

PASSWORD = "sandbox-pass"
PWD = hashlib.md5(PASSWORD.encode()).hexdigest()
SECRETS = (PASSWORD, PWD, PWD.upper())
TWO = ("13800138000", "13900139000")


def v1(url: str, **kw: Any) -> V1PlatformProvider:
    settings = V1PlatformSettings.model_validate(
        {"base_url": url, "account": "sandbox", "password": PASSWORD, **kw}
    )
    return V1PlatformProvider("v1", settings)


def mobiles(*raw: str) -> tuple[Mobile, ...]:
    return tuple(normalise(m) for m in raw)


def numbers(n: int) -> tuple[Mobile, ...]:
    return mobiles(*(f"137{i:08d}" for i in range(n)))


def batch(ms: tuple[Mobile, ...], content: str = "您的验证码为 123456") -> Batch:
    return Batch(uuid.uuid4().hex, ms, Rendered(content=content))


def state_of(server: ThreadedServer) -> emu.V1State:
    state: emu.V1State = server.app.state.emulator
    return state


async def send(provider: V1PlatformProvider, b: Batch, timeout_s: float = 5.0) -> AttemptResult:
    async with httpx.AsyncClient(timeout=timeout_s) as client:
        return await send_batch(provider, HttpxClient(client), b)


async def raw_send(url: str, **fields: str) -> dict[str, Any]:
    """A send the adapter would never build, to probe the emulator's own rules."""
    base = {"account": "sandbox", "pwd": PWD, "mobiles": TWO[0], "content": "hi"}
    async with httpx.AsyncClient() as client:
        answer = await client.post(f"{url}/api/v1/send", data={**base, **fields})
    body: dict[str, Any] = answer.json()
    return body


def no_secret_in(*objects: object) -> None:
    for obj in objects:
        text = f"{obj!r} {obj!s}"
        assert not [s for s in SECRETS if s in text], f"secret leaked by {type(obj).__name__}"


def mocked(response: httpx.Response) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(lambda _: response))


# -- settings and rendering ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({}, "'password'"),
        ({"password": PASSWORD, "password_md5": PWD}, "'password_md5'"),
        ({"password_md5": "not-a-hash"}, "password_md5"),
        ({"password": PASSWORD, "ext_no": 0}, "ext_no"),
        ({"password": PASSWORD, "max_batch": 3001}, "max_batch"),
        ({"password": ""}, "password"),
    ],
)
def test_settings_errors_name_the_key_and_hide_the_secret(
    extra: dict[str, Any], named: str
) -> None:
    with pytest.raises(ValidationError) as info:
        V1PlatformSettings.model_validate({"base_url": "http://x", "account": "a", **extra})
    assert named in str(info.value)
    no_secret_in(info.value)


def test_settings_defaults_and_md5_alternative() -> None:
    plain = v1("http://x").settings
    assert plain.max_batch == 3000 and plain.ext_no is None and MAX_CONTENT_CHARS == 500
    assert plain.pwd() == PWD  # a computed MD5: lower-case hex
    # The document says only "MD5": a given hash is sent as given unless pwd_case says.
    hashed = v1("http://x", password=None, password_md5=PWD.upper()).settings
    assert hashed.pwd() == PWD.upper()
    lowered = v1("http://x", password=None, password_md5=PWD.upper(), pwd_case="lower")
    assert lowered.settings.pwd() == PWD
    assert v1("http://x", pwd_case="upper").settings.pwd() == PWD.upper()
    no_secret_in(plain, hashed, v1("http://x"))


def test_render_free_content_and_templates(caplog: pytest.LogCaptureFixture) -> None:
    p = v1("http://x", signature="【达达】")
    assert p.render(RenderRequest(None, {}, "你好")) == Rendered(content="【达达】你好")
    assert p.render(RenderRequest(None, {}, "【达达】你好")) == Rendered(content="【达达】你好")
    assert p.render(RenderRequest(None, {}, None)) is None
    template = Template("otp", "验证码 {code}", {"v1": {"content": "码 {code}"}})
    assert p.render(RenderRequest(template, {"code": "42"}, None)) == Rendered(
        content="【达达】码 42"
    )
    with pytest.raises(router.errors.MissingParamError, match="'code'"):
        p.render(RenderRequest(template, {}, None))
    unapproved = Template("otp", "验证码 {code}", {"v1": {"approved": False}})
    assert p.render(RenderRequest(unapproved, {"code": "42"}, None)) is None
    assert p.render(RenderRequest(Template("tpl", None), {}, None)) is None
    with caplog.at_level(logging.WARNING, "providers.v1platform"):
        long = p.render(RenderRequest(None, {}, "长" * 600))
    assert long is not None and len(long.content or "") == 604  # warned, not refused
    assert "over the advised 500" in caplog.text


@pytest.mark.parametrize(
    ("regions", "mainland", "hong_kong"),
    [("mainland", True, False), ("international", False, True), ("all", True, True)],
)
def test_can_reach_follows_regions(regions: str, mainland: bool, hong_kong: bool) -> None:
    p = v1("http://x", regions=regions)
    assert p.can_reach(normalise("13800138000")) is mainland
    assert p.can_reach(normalise("+85291234567")) is hong_kong


# -- the wire -------------------------------------------------------------------------------


async def test_exact_request_bytes(serve: Serve) -> None:
    server = serve(emu.create_app())
    p = v1(server.url, ext_no=12, signature="【达达】")
    rendered = p.render(RenderRequest(None, {}, "验证码 123456 & 30分钟"))
    assert rendered is not None
    b = Batch(uuid.uuid4().hex, mobiles(*TWO), rendered)
    result = await send(p, b)
    assert result.verdict is Verdict.ACCEPTED
    [req] = state_of(server).requests
    assert (req.method, req.path) == ("POST", "/api/v1/send")
    assert req.headers["content-type"] == "application/x-www-form-urlencoded"
    expected = {
        "account": "sandbox",
        "pwd": PWD,
        "taskId": b.request_id,
        "mobiles": "13800138000,13900139000",
        "content": "【达达】验证码 123456 & 30分钟",
        "extNo": "12",
    }
    assert req.body == urlencode(expected).encode()  # utf-8, percent-encoded, this order
    assert req.fields == expected
    assert req.fields["pwd"] == req.fields["pwd"].lower()


async def test_accepted_under_the_returned_task_id(serve: Serve) -> None:
    server = serve(emu.create_app())
    p = v1(server.url)
    b = batch(mobiles(*TWO))
    result = await send(p, b)
    assert result.verdict is Verdict.ACCEPTED and result.http_status == 200
    assert [r.provider_message_id for r in result.recipients] == [b.request_id] * 2
    assert "extNo" not in state_of(server).requests[0].fields
    theirs = httpx.Response(200, json={"code": "00", "data": {"taskId": "T-9"}, "message": "成功"})
    assert p.parse_response(b, theirs).recipients[0].provider_message_id == "T-9"
    empty = httpx.Response(200, json={"code": "00", "data": {"taskId": ""}, "message": "成功"})
    assert p.parse_response(b, empty).recipients[0].provider_message_id == b.request_id


# -- refusals -------------------------------------------------------------------------------


async def test_wrong_password_is_refused_without_leaking(serve: Serve) -> None:
    server = serve(emu.create_app(password="another-pass"))
    p = v1(server.url)
    result = await send(p, batch(mobiles(TWO[0])))
    assert result.verdict is Verdict.REJECTED
    assert result.fault is not None and result.fault.code == "01"
    assert result.fault.kind is FaultKind.PROVIDER  # undocumented code: provider fault
    assert result.recipients[0].fault == result.fault
    no_secret_in(p, p.settings, result, result.fault)


async def test_upper_case_md5_is_refused_by_the_emulator(serve: Serve) -> None:
    server = serve(emu.create_app())
    assert (await raw_send(server.url, pwd=PWD.upper()))["code"] == "01"
    assert (await raw_send(server.url))["code"] == "00"


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"extNo": "0"}, "02"),
        ({"extNo": "-3"}, "02"),
        ({"extNo": "1a"}, "02"),
        ({"mobiles": "1380013800"}, "02"),
        ({"mobiles": "13800138000,"}, "02"),
        ({"content": ""}, "02"),
        ({"account": "nobody"}, "01"),
    ],
)
async def test_emulator_field_rules(serve: Serve, fields: dict[str, str], code: str) -> None:
    server = serve(emu.create_app())
    assert (await raw_send(server.url, **fields))["code"] == code


async def test_business_refusals_through_the_adapter(serve: Serve) -> None:
    server = serve(emu.create_app(balance=3))
    state = state_of(server)
    p = v1(server.url)
    first = batch(mobiles(*TWO))
    assert (await send(p, first)).verdict is Verdict.ACCEPTED
    reused = Batch(first.request_id, mobiles(TWO[0]), first.rendered)
    assert await codes(p, reused) == "05"
    assert await codes(p, batch(mobiles(*TWO))) == "04"  # 1 left, 2 needed
    state.balance = 100
    state.faults.reject_mobiles = [TWO[1]]
    assert await codes(p, batch(mobiles(*TWO))) == "02"  # the whole request is refused
    state.set_faults(FaultSettings(error_rate=1.0))
    assert await codes(p, batch(mobiles(TWO[0]))) == "06"
    assert state.balance == 100  # nothing refused was billed


async def codes(p: V1PlatformProvider, b: Batch) -> str | None:
    result = await send(p, b)
    assert result.verdict is Verdict.REJECTED
    assert result.fault is not None and result.fault.error_class is ErrorClass.REFUSED
    return result.fault.code


async def test_operator_code_table_decides_whose_fault(serve: Serve) -> None:
    server = serve(emu.create_app(password="another-pass"))
    p = v1(server.url, error_codes={"01": "credentials", "02": "message"})
    auth = await send(p, batch(mobiles(TWO[0])))
    assert auth.fault is not None
    assert (auth.fault.kind, auth.fault.error_class) == (FaultKind.CREDENTIALS, ErrorClass.AUTH)
    bad = p.parse_response(batch(mobiles(TWO[0])), httpx.Response(200, json={"code": "02"}))
    assert bad.fault is not None and not bad.fault.counts_against_breaker


def test_echoed_credentials_are_cut_from_the_fault() -> None:
    p = v1("http://x")
    echo = {"code": "09", "data": {}, "message": f"bad pwd {PWD} for {PASSWORD}"}
    result = p.parse_response(batch(mobiles(TWO[0])), httpx.Response(200, json=echo))
    assert result.fault is not None and result.fault.detail == "bad pwd *** for ***"
    no_secret_in(result)
    # Echoed in the other hex case than the one sent: cut too.
    echo = {"code": "09", "data": {}, "message": f"bad pwd {PWD.upper()}"}
    result = p.parse_response(batch(mobiles(TWO[0])), httpx.Response(200, json=echo))
    assert result.fault is not None and result.fault.detail == "bad pwd ***"


# -- transport faults and unreadable answers ------------------------------------------------


@pytest.mark.parametrize(
    ("faults", "verdict", "error_class"),
    [
        (FaultSettings(http_5xx_rate=1.0), Verdict.UNKNOWN, ErrorClass.HTTP_5XX),
        (FaultSettings(outage=True), Verdict.UNKNOWN, ErrorClass.HTTP_5XX),
        (FaultSettings(malformed_rate=1.0), Verdict.UNKNOWN, ErrorClass.MALFORMED),
        (FaultSettings(timeout_rate=1.0, hang_s=1), Verdict.UNKNOWN, ErrorClass.TIMEOUT),
    ],
)
async def test_emulated_faults(
    serve: Serve, faults: FaultSettings, verdict: Verdict, error_class: ErrorClass
) -> None:
    server = serve(emu.create_app())
    state_of(server).set_faults(faults)
    result = await send(v1(server.url), batch(mobiles(*TWO)), timeout_s=0.3)
    assert result.verdict is verdict
    assert result.fault is not None and result.fault.error_class is error_class
    assert [r.verdict for r in result.recipients] == [verdict] * 2


async def test_timeout_after_accept_is_unknown_and_was_sent(serve: Serve) -> None:
    server = serve(emu.create_app())
    state_of(server).set_faults(
        FaultSettings(timeout_rate=1.0, hang_s=1, timeout_after_accept=True)
    )
    b = batch(mobiles(TWO[0]))
    result = await send(v1(server.url), b, timeout_s=0.3)
    assert result.verdict is Verdict.UNKNOWN  # never failed over: it really went out
    assert [r.task_id for r in state_of(server).receipts] == [b.request_id]


async def test_connection_refused_is_a_provable_rejection() -> None:
    result = await send(v1(f"http://127.0.0.1:{free_port()}"), batch(mobiles(TWO[0])))
    assert result.verdict is Verdict.REJECTED
    assert result.fault is not None and result.fault.error_class is ErrorClass.CONNECT


DOC_STYLE_BROKEN = '{"code": "00", "data": {[{"taskId": "x"}]} "message": "成功"}'


@pytest.mark.parametrize(
    ("response", "verdict", "error_class"),
    [
        (httpx.Response(200, text=DOC_STYLE_BROKEN), Verdict.UNKNOWN, ErrorClass.MALFORMED),
        (httpx.Response(200, text="<html>ok</html>"), Verdict.UNKNOWN, ErrorClass.MALFORMED),
        (httpx.Response(200, json=["00"]), Verdict.UNKNOWN, ErrorClass.MALFORMED),
        (httpx.Response(200, json={"code": 0}), Verdict.UNKNOWN, ErrorClass.MALFORMED),
        (httpx.Response(502, text="bad gateway"), Verdict.UNKNOWN, ErrorClass.HTTP_5XX),
        (httpx.Response(400, json={"code": "02"}), Verdict.REJECTED, ErrorClass.HTTP_4XX),
        (httpx.Response(403, text="ip not allowed"), Verdict.REJECTED, ErrorClass.AUTH),
    ],
)
async def test_shapes_a_server_rarely_produces(
    response: httpx.Response, verdict: Verdict, error_class: ErrorClass
) -> None:
    async with mocked(response) as client:
        result = await send_batch(v1("http://x"), HttpxClient(client), batch(mobiles(*TWO)))
    assert result.verdict is verdict
    assert result.fault is not None and result.fault.error_class is error_class


# -- batch limits ---------------------------------------------------------------------------


async def test_3000_accepted_3001_refused_and_never_built(serve: Serve) -> None:
    server = serve(emu.create_app())
    p = v1(server.url)
    ms = numbers(3001)
    at_limit = await send(p, batch(ms[:3000]))
    assert at_limit.verdict is Verdict.ACCEPTED and len(at_limit.recipients) == 3000
    assert state_of(server).requests[0].fields["mobiles"].count(",") == 2999
    with pytest.raises(ValueError, match=r"outside 1\.\.3000"):
        p.build_request(batch(ms))
    over = await raw_send(server.url, mobiles=",".join(m.national for m in ms))
    assert over["code"] == "03"
    assert len(state_of(server).receipts) == 3000


async def test_lower_limits_on_both_sides(serve: Serve) -> None:
    server = serve(emu.create_app(max_batch=5))
    loose = v1(server.url, max_batch=10)
    over = await send(loose, batch(numbers(6)))
    assert over.verdict is Verdict.REJECTED and over.fault is not None
    assert over.fault.code == "03"
    with pytest.raises(ValueError, match=r"outside 1\.\.10"):
        loose.build_request(batch(numbers(11)))
    with pytest.raises(ValueError, match="outside"):
        loose.build_request(batch(()))
    with pytest.raises(ValueError, match="content"):
        loose.build_request(Batch("t", numbers(1), Rendered(template_id="1")))


@pytest.mark.parametrize(
    ("form", "wire"),
    [("plus", "+85291234567"), ("00", "0085291234567"), ("digits", "85291234567")],
)
def test_foreign_numbers_never_go_as_bare_national_digits(form: str, wire: str) -> None:
    """The document shows only mainland numbers; a foreign one (regions = "all") carries its
    country code in the configured form, never "91234567" alone."""
    p = v1("http://x", regions="all", international_format=form)
    request = p.build_request(batch((normalise("+852 9123 4567"), normalise("13800138000"))))
    sent = request.form()
    assert sent["mobiles"] == f"{wire},13800138000"
    assert not v1("http://x").can_reach(normalise("+852 9123 4567"))  # default: mainland only
