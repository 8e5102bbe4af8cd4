"""Ronglian receipt pushes: the emulator pushes SMSArrived to a real receiver on loopback, and
the adapter's pure parser reads them (the push format itself is unverified)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from providers.base import Batch, DeliveryReport, DeliveryStatus, InboundMessage, Rendered
from providers.emulators import ronglian as emu
from providers.emulators._common import FaultSettings
from providers.emulators.server import ThreadedServer
from providers.http import send_batch
from providers.ronglian import RECEIPT_ACK, RECEIPT_ACK_MEDIA_TYPE
from router.errors import ProviderResponseError
from router.transport import HttpxClient
from tests.providers_helpers import mobiles, ronglian

Serve = Callable[[Any], ThreadedServer]


def receiver() -> tuple[Starlette, list[bytes]]:
    """A tiny push receiver that keeps every body and answers the documented ack."""
    bodies: list[bytes] = []

    async def push(request: Request) -> Response:
        bodies.append(await request.body())
        return Response(RECEIPT_ACK, media_type=RECEIPT_ACK_MEDIA_TYPE)

    return Starlette(routes=[Route("/receipts", push, methods=["POST"])]), bodies


def wait_for(bodies: list[bytes], n: int, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while len(bodies) < n and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(bodies) >= n, f"{len(bodies)} of {n} pushes arrived"


@pytest.mark.anyio
async def test_receipts_are_pushed_and_parsed(serve: Serve) -> None:
    app, bodies = receiver()
    sink = serve(app)
    server = serve(emu.create_app())
    st: emu.RonglianState = server.app.state.emulator
    st.callback_url = f"{sink.url}/receipts"
    st.set_faults(FaultSettings(reject_mobiles=["13900139000"]))
    provider = ronglian(server.url)
    batch = Batch(
        uuid.uuid4().hex,
        mobiles("13800138000", "13900139000"),
        Rendered(template_id="1", template_params=("1", "5")),
    )
    async with httpx.AsyncClient(trust_env=False) as client:
        result = await send_batch(provider, HttpxClient(client), batch)
    sid = result.recipients[0].provider_message_id
    assert sid is not None  # per request: both numbers are accepted, the bad one fails later
    wait_for(bodies, 2)
    reports = [provider.parse_receipt_push(b) for b in bodies]
    assert all(isinstance(r, DeliveryReport) for r in reports)
    by_mobile = {r.mobile: r for r in reports if isinstance(r, DeliveryReport)}
    good, bad = by_mobile["13800138000"], by_mobile["13900139000"]
    assert (good.status, good.status_code) == (DeliveryStatus.DELIVERED, "DELIVRD")
    assert (bad.status, bad.status_code) == (DeliveryStatus.FAILED, "UNDELIV")
    assert good.provider_message_id == bad.provider_message_id == sid
    assert orjson.loads(bodies[0])["Request"]["reqId"] == batch.request_id


def push(**fields: str) -> bytes:
    base = {
        "action": "SMSArrived",
        "smsType": "1",
        "content": "ff8080813c373cab013c94b0f0512345",
        "fromNum": "13800138000",
        "dateSent": "20260101080000",
        "recvTime": "20260101080005",
        "deliverCode": "DELIVRD",
        "status": "0",
        "reqId": "r1",
        "smsCount": "1",
    }
    return orjson.dumps({"Request": {**base, **fields}})


def test_parse_receipt_push_shapes() -> None:
    p = ronglian("http://emu")
    ok = p.parse_receipt_push(push())
    assert isinstance(ok, DeliveryReport) and ok.status is DeliveryStatus.DELIVERED
    assert ok.at == datetime(2026, 1, 1, 8, 0, 5, tzinfo=ZoneInfo("Asia/Shanghai"))
    failed = p.parse_receipt_push(push(status="1", deliverCode="MBBLACK"))
    assert isinstance(failed, DeliveryReport) and failed.status is DeliveryStatus.FAILED
    assert failed.status_code == "MBBLACK"
    reply = p.parse_receipt_push(push(smsType="0", content="TD"))
    assert reply == InboundMessage("ronglian", "13800138000", "TD", None, ok.at)


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[]", b'{"Response": {}}', push(content=""), push(action="Other")],
)
def test_parse_receipt_push_refuses_unreadable(body: bytes) -> None:
    with pytest.raises(ProviderResponseError):
        ronglian("http://emu").parse_receipt_push(body)
