"""v1 platform pulls (/report, /mo, /queryBalance): the document's examples and the emulator."""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

# Imported before any adapter module: router's package init builds the provider registry,
# which imports the adapters; importing an adapter first is a cycle (see providers/registry.py).
import router.errors
from providers.base import Batch, DeliveryStatus, InboundMessage, Rendered, Verdict
from providers.emulators import v1platform as emu
from providers.emulators._common import FaultSettings
from providers.emulators.server import ThreadedServer, free_port
from providers.http import (
    ProviderIOError,
    pull_inbound,
    pull_reports,
    query_balance,
    send_batch,
)
from providers.v1platform import Balance, V1PlatformProvider, V1PlatformSettings
from router.errors import RouterError
from router.mobile import normalise
from router.transport import HttpxClient

pytestmark = pytest.mark.anyio
Serve = Callable[[Any], ThreadedServer]
ProviderResponseError = router.errors.ProviderResponseError

PASSWORD = "sandbox-pass"
PWD = hashlib.md5(PASSWORD.encode()).hexdigest()
AT = datetime(2019, 4, 12, 17, 57, 8, tzinfo=ZoneInfo("Asia/Shanghai"))

# The document's /report example, verbatim: braces around the array, "//" notes, and no comma
# before "message".
DOC_REPORT_ANNOTATED = """{
  "code": "00",
"data": {
  [{
    "sendId": "b681adb3-fc1a-422d-80dd-b95cec7be769", //同 taskId
    "status": "DELIVER", // DELIVER 为成功,其他值 为失败
    "times": "2019-04-12 17:57:08",
    "mobile": "135****9831",
    "extNo":""
  }, {
    "sendId": "feebfa40-0680-49a4-8074-2c401432ab25",
    "status": "MBBLACK",
    "times": "2019-04-12 17:57:08",
    "mobile": "136****0014",
    "extNo":""
  }]
}
"message": "成功"
}"""
# The same without the "//" notes (annotations no server sends): the broken-brace form.
DOC_REPORT = re.sub(r"\s*//[^\n]*", "", DOC_REPORT_ANNOTATED)
REPORT_ITEMS = DOC_REPORT[DOC_REPORT.index("[") : DOC_REPORT.rindex("]") + 1]
CLEAN_REPORT = '{"code": "00", "data": ' + REPORT_ITEMS + ', "message": "成功"}'
LIST_IN_OBJECT = '{"code": "00", "data": {"list": ' + REPORT_ITEMS + '}, "message": "成功"}'

# The document's /mo example, verbatim (it has no notes).
DOC_MO = """{
  "code": "00",
  "data": {
    [{
      "mobile": "138****1234",

        "content": "端午节快乐",
        "times": "2019-04-12 17:57:08",
        "extNo": 10
    },
    {
        "mobile": "139****1234",
        "content": "端午节快乐",
        "times": "2019-04-12 17:57:08",
        "extNo": 10
    }
]
}
"message": "成功"
}"""
MO_ITEMS = DOC_MO[DOC_MO.index("[") : DOC_MO.rindex("]") + 1]

# The document's /queryBalance example without its "//0 预付 1 后附" note.
DOC_BALANCE = """{
  "code": "00",
  "data": {
    "balance": 200000,
    "payment": 0,
    "paymentName": "预付"
  },
  "message": "成功"
}"""


def v1(url: str = "http://x", **kw: Any) -> V1PlatformProvider:
    settings = V1PlatformSettings.model_validate(
        {"base_url": url, "account": "sandbox", "password": PASSWORD, **kw}
    )
    return V1PlatformProvider("v1", settings)


def ok(text: str) -> httpx.Response:
    return httpx.Response(200, text=text)


def state_of(server: ThreadedServer) -> emu.V1State:
    state: emu.V1State = server.app.state.emulator
    return state


async def send(p: V1PlatformProvider, *raw: str, content: str = "验证码 1") -> Batch:
    b = Batch(uuid.uuid4().hex, tuple(normalise(m) for m in raw), Rendered(content=content))
    async with httpx.AsyncClient(timeout=5) as client:
        result = await send_batch(p, HttpxClient(client), b)
    assert result.verdict.value == "accepted"
    return b


# -- the document's examples ----------------------------------------------------------------


@pytest.mark.parametrize("text", [DOC_REPORT, CLEAN_REPORT, LIST_IN_OBJECT])
def test_report_examples(text: str) -> None:
    reports = v1().parse_report(ok(text))
    assert [(r.provider_message_id, r.status, r.status_code, r.mobile) for r in reports] == [
        (
            "b681adb3-fc1a-422d-80dd-b95cec7be769",
            DeliveryStatus.DELIVERED,
            "DELIVER",
            "135****9831",
        ),
        ("feebfa40-0680-49a4-8074-2c401432ab25", DeliveryStatus.FAILED, "MBBLACK", "136****0014"),
    ]
    assert all(r.at == AT and r.provider == "v1" for r in reports)


def test_annotated_example_is_not_guessed_at() -> None:
    with pytest.raises(ProviderResponseError, match="/report answer is not a JSON object"):
        v1().parse_report(ok(DOC_REPORT_ANNOTATED))


@pytest.mark.parametrize(
    "text", [DOC_MO, '{"code": "00", "data": ' + MO_ITEMS + ', "message": "成功"}']
)
def test_mo_examples(text: str) -> None:
    replies = v1().parse_mo(ok(text))
    assert replies == [
        InboundMessage("v1", "138****1234", "端午节快乐", ext_no="10", at=AT),
        InboundMessage("v1", "139****1234", "端午节快乐", ext_no="10", at=AT),
    ]


def test_balance_example() -> None:
    assert v1().parse_balance(ok(DOC_BALANCE)) == Balance(200000, 0, "预付")


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("DELIVER", DeliveryStatus.DELIVERED),
        ("DELIVRD", DeliveryStatus.DELIVERED),
        ("MBBLACK", DeliveryStatus.FAILED),
        ("UNDELIV", DeliveryStatus.FAILED),
        ("EXPIRED", DeliveryStatus.FAILED),
        ("deliver", DeliveryStatus.FAILED),
    ],
)
def test_only_the_two_delivered_spellings_are_delivered(code: str, status: DeliveryStatus) -> None:
    item = {"sendId": "t", "status": code, "times": "bad time", "mobile": "1", "extNo": ""}
    [report] = v1().parse_report(httpx.Response(200, json={"code": "00", "data": [item]}))
    assert (report.status, report.status_code, report.at) == (status, code, None)


@pytest.mark.parametrize(
    ("response", "message"),
    [
        (httpx.Response(500, text="oops"), "/report answered HTTP 500"),
        (ok("<html/>"), "/report answer is not a JSON object"),
        (httpx.Response(200, json={"code": "01", "message": "账号错误"}), "code '01'"),
        (httpx.Response(200, json={"code": "00", "data": "x"}), "not a list of objects"),
        (httpx.Response(200, json={"code": "00", "data": {"a": [], "b": []}}), "exactly one"),
        (httpx.Response(200, json={"code": "00", "data": [{"status": "DELIVRD"}]}), "'sendId'"),
        (httpx.Response(200, json={"code": "00", "data": [{"sendId": "t"}]}), "'status'"),
    ],
)
def test_unreadable_reports_raise(response: httpx.Response, message: str) -> None:
    with pytest.raises(ProviderResponseError, match=re.escape(message)):
        v1().parse_report(response)


@pytest.mark.parametrize(
    "data", [None, {}, {"balance": "lots"}, {"balance": True}, {"balance": 1, "payment": []}]
)
def test_unreadable_balances_raise(data: object) -> None:
    with pytest.raises(ProviderResponseError, match="/queryBalance"):
        v1().parse_balance(httpx.Response(200, json={"code": "00", "data": data}))


def test_empty_pulls() -> None:
    data: object
    for data in (None, [], {}):
        assert v1().parse_report(httpx.Response(200, json={"code": "00", "data": data})) == []


# -- against the emulator -------------------------------------------------------------------


async def test_pull_requests_are_form_posts_with_the_credentials(serve: Serve) -> None:
    server = serve(emu.create_app())
    p = v1(server.url)
    async with httpx.AsyncClient() as client:
        assert await pull_reports(p, HttpxClient(client)) == []
        assert await pull_inbound(p, HttpxClient(client)) == []
        await query_balance(p, HttpxClient(client))
    paths = [r.path for r in state_of(server).requests]
    assert paths == ["/api/v1/report", "/api/v1/mo", "/api/v1/queryBalance"]
    for req in state_of(server).requests:
        assert req.method == "POST"
        assert req.headers["content-type"] == "application/x-www-form-urlencoded"
        assert req.body == f"account=sandbox&pwd={PWD}".encode()


async def test_report_pull_drains_and_masks(serve: Serve) -> None:
    server = serve(emu.create_app(undeliverable_mobiles=["13900139000"]))
    p = v1(server.url, ext_no=7)
    b = await send(p, "13800138000", "13900139000")
    assert {r.ext_no for r in state_of(server).receipts} == {"7"}  # the send's extNo
    async with httpx.AsyncClient() as client:
        reports = await pull_reports(p, HttpxClient(client))
        again = await pull_reports(p, HttpxClient(client))
    assert sorted((r.mobile, r.status_code, r.status) for r in reports) == [
        ("138****8000", "DELIVER", DeliveryStatus.DELIVERED),  # the pull document's spelling
        ("139****9000", "UNDELIV", DeliveryStatus.FAILED),
    ]
    assert {r.provider_message_id for r in reports} == {b.request_id}
    assert all(r.at is not None and r.at.tzinfo is not None for r in reports)
    assert again == []  # each receipt is handed out once


async def test_receipts_are_pullable_only_once_due(serve: Serve) -> None:
    server = serve(emu.create_app())
    state_of(server).receipt_delay_s = 600
    p = v1(server.url)
    await send(p, "13800138000")
    async with httpx.AsyncClient() as client:
        assert await pull_reports(p, HttpxClient(client)) == []
    assert len(state_of(server).receipts) == 1  # still pending, not lost


async def test_balance_is_billed_per_mobile_per_part(serve: Serve) -> None:
    server = serve(emu.create_app(balance=100))
    p = v1(server.url)
    async with httpx.AsyncClient() as client:
        assert await query_balance(p, HttpxClient(client)) == Balance(100, 0, "预付")
        await send(p, "13800138000", "13900139000", content="长" * 70)  # 1 part each
        assert (await query_balance(p, HttpxClient(client))).balance == 98
        await send(p, "13800138000", "13900139000", content="长" * 71)  # 2 parts each
        assert (await query_balance(p, HttpxClient(client))).balance == 94
        await client.put(f"{server.url}/_emulator/v1/settings", json={"balance": 7})
        assert (await query_balance(p, HttpxClient(client))).balance == 7


@pytest.mark.parametrize("literal", [False, True])
async def test_mo_pull(serve: Serve, literal: bool) -> None:
    """As the document shows it: masked mobile, numeric extNo; with ``literal_shapes`` the
    emulator answers in the document's own broken shape, which the adapter still reads."""
    server = serve(emu.create_app())
    p = v1(server.url)
    async with httpx.AsyncClient() as client:
        await client.put(f"{server.url}/_emulator/v1/settings", json={"literal_shapes": literal})
        injected = await client.post(
            f"{server.url}/_emulator/v1/mo",
            json={"mobile": "13800138000", "content": "退订", "extNo": "12"},
        )
        assert injected.status_code == 200
        raw = await client.post(f"{server.url}/api/v1/mo", data={"account": "x", "pwd": "y"})
        assert raw.json()["code"] == "01"  # a refused pull consumes nothing
        [reply] = await pull_inbound(p, HttpxClient(client))
        assert await pull_inbound(p, HttpxClient(client)) == []
    assert (reply.mobile, reply.content, reply.ext_no) == ("138****8000", "退订", "12")
    assert reply.at is not None and reply.at.tzinfo is not None


async def test_report_pull_in_the_documents_literal_shape(serve: Serve) -> None:
    server = serve(emu.create_app())
    p = v1(server.url)
    async with httpx.AsyncClient() as client:
        await client.put(f"{server.url}/_emulator/v1/settings", json={"literal_shapes": True})
        await send(p, "13800138000")
        raw = await client.post(f"{server.url}/api/v1/report", data={"account": "x", "pwd": "y"})
        assert raw.json()["code"] == "01"
        [receipt] = await pull_reports(p, HttpxClient(client))
    assert receipt.mobile == "138****8000"  # masked, as the document's example


async def test_pull_failures_raise_without_secrets(serve: Serve) -> None:
    server = serve(emu.create_app(password="another-pass"))
    p = v1(server.url)
    down = v1(f"http://127.0.0.1:{free_port()}")
    errors: list[RouterError] = []
    async with httpx.AsyncClient() as client:
        calls: list[Callable[[], Awaitable[object]]] = [
            lambda: pull_reports(p, HttpxClient(client)),
            lambda: pull_inbound(p, HttpxClient(client)),
            lambda: query_balance(p, HttpxClient(client)),
            lambda: query_balance(down, HttpxClient(client)),
        ]
        for call in calls:
            with pytest.raises(RouterError) as info:
                await call()
            errors.append(info.value)
        state_of(server).set_faults(FaultSettings(outage=True))
        with pytest.raises(ProviderResponseError, match="answered HTTP 503"):
            await pull_reports(p, HttpxClient(client))
    assert [str(e) for e in errors[:3]] == [
        "/report refused with code '01'",
        "/mo refused with code '01'",
        "/queryBalance refused with code '01'",
    ]
    assert all(isinstance(e, ProviderResponseError) for e in errors[:3])
    # A transport failure is told apart: it never connected, so it provably sent nothing.
    assert isinstance(errors[3], ProviderIOError) and errors[3].verdict is Verdict.REJECTED
    assert str(errors[3]) == "/api/v1/queryBalance failed: connect (ConnectError)"
    for error in errors:
        assert PWD not in str(error) and PASSWORD not in str(error)


async def test_pulls_draw_no_send_fault(serve: Serve) -> None:
    server = serve(emu.create_app())
    state_of(server).set_faults(FaultSettings(http_5xx_rate=1.0))
    async with httpx.AsyncClient() as client:
        assert (
            await pull_reports(v1(server.url), HttpxClient(client)) == []
        )  # seeded send faults unaffected
