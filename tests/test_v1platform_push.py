"""v1 platform pushes: the parsers, real one-shot pushes to a receiver, and recovery by pull."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import anyio
import httpx
import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

# Imported before any adapter module: router's package init builds the provider registry,
# which imports the adapters; importing an adapter first is a cycle (see providers/registry.py).
import router.errors
from providers.base import Batch, DeliveryStatus, InboundMessage, Rendered, Verdict
from providers.emulators import v1platform as emu
from providers.emulators.server import ThreadedServer
from providers.http import pull_inbound, pull_reports, send_batch
from providers.v1platform import PUSH_ACK_STATUS, V1PlatformProvider, V1PlatformSettings
from router.mobile import normalise
from router.transport import HttpxClient

pytestmark = pytest.mark.anyio
Serve = Callable[[Any], ThreadedServer]
ProviderResponseError = router.errors.ProviderResponseError
AT = datetime(2019, 4, 12, 17, 57, 8, tzinfo=ZoneInfo("Asia/Shanghai"))
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"


def v1(url: str = "http://x") -> V1PlatformProvider:
    settings = V1PlatformSettings.model_validate(
        {"base_url": url, "account": "sandbox", "password": "sandbox-pass"}
    )
    return V1PlatformProvider("v1", settings)


# -- parsers --------------------------------------------------------------------------------

STATUS = {"sendId": "t-1", "mobile": "13800138000", "times": "2019-04-12 17:57:08"}


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("DELIVRD", DeliveryStatus.DELIVERED),
        ("DELIVER", DeliveryStatus.DELIVERED),
        ("UNDELIV", DeliveryStatus.FAILED),
        ("MBBLACK", DeliveryStatus.FAILED),
    ],
)
@pytest.mark.parametrize("content_type", [JSON, "application/json; charset=utf-8", FORM])
def test_status_push(code: str, status: DeliveryStatus, content_type: str) -> None:
    fields = {**STATUS, "status": code}
    body = urlencode(fields).encode() if content_type == FORM else orjson.dumps(fields)
    report = v1().parse_status_push(body, content_type)
    assert (report.provider, report.provider_message_id, report.mobile) == (
        "v1",
        "t-1",
        "13800138000",
    )
    assert (report.status, report.status_code, report.at) == (status, code, AT)


def test_mo_push_json_and_form() -> None:
    fields = {"mobile": "139", "content": "端午节快乐", "times": "2019-04-12 17:57:08", "extNo": 10}
    expected = InboundMessage("v1", "139", "端午节快乐", ext_no="10", at=AT)
    assert v1().parse_mo_push(orjson.dumps(fields), JSON) == expected
    assert v1().parse_mo_push(urlencode(fields).encode(), FORM) == expected
    bare = v1().parse_mo_push(b"mobile=139&content=", FORM)
    assert (bare.content, bare.ext_no, bare.at) == ("", None, None)


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (orjson.dumps({"mobile": "1", "status": "DELIVRD"}), JSON, "'sendId'"),
        (orjson.dumps({"sendId": "t", "mobile": "1"}), JSON, "'status'"),
        (b"sendId=t&status=", FORM, "'status'"),
        (b'{"sendId": ', JSON, "not a JSON object"),
        (b'["DELIVRD"]', JSON, "not a JSON object"),
        (b"\xff\xfe", FORM, "not UTF-8"),
    ],
)
def test_invalid_status_pushes(body: bytes, content_type: str, message: str) -> None:
    with pytest.raises(ProviderResponseError, match=message):
        v1().parse_status_push(body, content_type)


def test_invalid_mo_push_names_the_field() -> None:
    with pytest.raises(ProviderResponseError, match="'mobile'"):
        v1().parse_mo_push(orjson.dumps({"content": "hi"}), JSON)


# -- real pushes over loopback --------------------------------------------------------------


@dataclass
class Receiver:
    """A customer's push endpoint: records what arrives, answers ``status``."""

    status: int = PUSH_ACK_STATUS
    got: list[tuple[str, bytes, str]] = field(default_factory=list)

    def app(self) -> Starlette:
        async def receive(request: Request) -> Response:
            body = await request.body()
            self.got.append((request.url.path, body, request.headers.get("content-type", "")))
            return Response(status_code=self.status)

        return Starlette(routes=[Route("/{kind}", receive, methods=["POST"])])

    async def wait_for(self, count: int) -> None:
        with anyio.fail_after(5):  # bounded poll: the push is fire-and-forget
            while len(self.got) < count:  # noqa: ASYNC110 - filled from the server thread
                await anyio.sleep(0.01)


async def send(p: V1PlatformProvider, *raw: str) -> Batch:
    b = Batch(uuid.uuid4().hex, tuple(normalise(m) for m in raw), Rendered(content="验证码 1"))
    async with httpx.AsyncClient(timeout=5) as client:
        assert (await send_batch(p, HttpxClient(client), b)).verdict is Verdict.ACCEPTED
    return b


async def test_status_push_arrives_once_and_parses(serve: Serve) -> None:
    receiver = Receiver()
    hook = serve(receiver.app())
    server = serve(emu.create_app(undeliverable_mobiles=["13900139000"]))
    state: emu.V1State = server.app.state.emulator
    state.callback_url = f"{hook.url}/status"
    p = v1(server.url)
    b = await send(p, "13800138000", "13900139000")
    await receiver.wait_for(2)
    reports = sorted(
        (p.parse_status_push(body, ctype) for path, body, ctype in receiver.got),
        key=lambda r: r.mobile,
    )
    assert [(r.provider_message_id, r.mobile, r.status_code, r.status) for r in reports] == [
        (b.request_id, "13800138000", "DELIVRD", DeliveryStatus.DELIVERED),  # push spelling
        (b.request_id, "13900139000", "UNDELIV", DeliveryStatus.FAILED),
    ]
    assert {path for path, _, _ in receiver.got} == {"/status"}
    assert set(orjson.loads(receiver.got[0][1])) == {"sendId", "mobile", "times", "status"}


async def test_dropped_push_is_recovered_by_pull(serve: Serve) -> None:
    receiver = Receiver()
    hook = serve(receiver.app())
    server = serve(emu.create_app())
    p = v1(server.url)
    async with httpx.AsyncClient() as client:
        await client.put(
            f"{server.url}/_emulator/v1/settings",
            json={"callback_url": f"{hook.url}/status", "drop_pushes": True},
        )
        lost = await send(p, "13800138000")
        [recovered] = await pull_reports(p, HttpxClient(client))
        assert (recovered.provider_message_id, recovered.status_code) == (
            lost.request_id,
            "DELIVER",
        )
        await client.put(f"{server.url}/_emulator/v1/settings", json={"drop_pushes": False})
        later = await send(p, "13800138000")
        await receiver.wait_for(1)
    # The dropped push was never sent: only the later message's push arrived.
    pushed = [
        p.parse_status_push(body, ctype).provider_message_id for _, body, ctype in receiver.got
    ]
    assert pushed == [later.request_id]


async def test_failed_push_is_not_consumed(serve: Serve) -> None:
    receiver = Receiver(status=500)  # the receiver is broken: the push is lost, not retried
    hook = serve(receiver.app())
    server = serve(emu.create_app())
    server.app.state.emulator.callback_url = f"{hook.url}/status"
    p = v1(server.url)
    b = await send(p, "13800138000")
    await receiver.wait_for(1)
    async with httpx.AsyncClient() as client:
        [report] = await pull_reports(p, HttpxClient(client))
    assert report.provider_message_id == b.request_id


async def test_mo_push_and_pull(serve: Serve) -> None:
    receiver = Receiver()
    hook = serve(receiver.app())
    server = serve(emu.create_app())
    server.app.state.emulator.mo_callback_url = f"{hook.url}/mo"
    p = v1(server.url)
    async with httpx.AsyncClient() as client:
        await client.post(
            f"{server.url}/_emulator/v1/mo", json={"mobile": "13800138000", "content": "退订"}
        )
        await receiver.wait_for(1)
        [(path, body, ctype)] = receiver.got
        pushed = p.parse_mo_push(body, ctype)
        [pulled] = await pull_inbound(p, HttpxClient(client))
    assert path == "/mo"
    assert (pushed.mobile, pushed.content, pushed.ext_no) == ("13800138000", "退订", None)
    # The same reply by either path, but the pull masks the number as the document shows
    # (138****1234): only the push says who replied.
    assert pulled.mobile == "138****8000"
    assert (pulled.content, pulled.ext_no, pulled.at) == (pushed.content, pushed.ext_no, pushed.at)
