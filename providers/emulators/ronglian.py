"""Ronglian TemplateSMS emulator: sig + Authorization checks, body rules, receipt pushes.

Accepts a ``sig`` in either case (the official Go SDK sends lower case) and a timestamp
within +/- 24 h of its own clock (SDKs use the caller's local time zone; the ts is read as
China time). Error codes: 160048/160054/160055 are from the provider notes; the 111xxx,
1123xx and other 1600xx codes are recalled from cloopen's public error table (unverified);
the ones marked ``invented`` are not in it at all.

Ronglian answers per request, so ``faults.reject_mobiles`` are accepted and then get failed
receipts (``status`` "1", ``UNDELIV``), the way a bad number surfaces there.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from xml.etree import ElementTree
from zoneinfo import ZoneInfo

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from providers.clock import Clock, SystemClock
from providers.emulators._common import (
    EmulatorState,
    FaultAction,
    Pusher,
    Refusal,
    apply_transport_fault,
    control_routes,
    hang_after_accept,
    json_response,
    record,
)
from providers.errors import InvalidMobileError
from providers.mobile import normalise

_CST = ZoneInfo("Asia/Shanghai")
_NUMBER = re.compile(r"^(1[3-9]\d{9}|00\d{6,15})$")
_TS = re.compile(r"^\d{14}$")
WINDOW = timedelta(hours=24)
MAX_NUMBERS = 200
MAX_REQ_ID = 32


@dataclass(frozen=True, slots=True)
class AcceptedSend:
    """One accepted TemplateSMS request, as the emulator remembers it."""

    sms_message_sid: str
    to: tuple[str, ...]
    template_id: str
    datas: tuple[str, ...]
    req_id: str
    created: str  # yyyyMMddHHmmss, China time


@dataclass
class RonglianState(EmulatorState):
    """What the Ronglian emulator keeps beyond the common state."""

    req_ids: set[tuple[str, str]] = field(default_factory=set)  # (China day, reqId)
    accepted: list[AcceptedSend] = field(default_factory=list)

    def reset(self) -> None:
        super().reset()
        self.req_ids.clear()
        self.accepted.clear()


def _check_auth(request: Request, account_sid: str, auth_token: str, now: datetime) -> None:
    if request.path_params["sid"] != account_sid:
        raise Refusal("111109", "主账户不存在")
    header = request.headers.get("authorization", "")
    if not header:
        raise Refusal("111100", "请求包头Authorization参数为空")
    try:
        decoded = base64.b64decode(header, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise Refusal("111101", "请求包头Authorization参数Base64解码失败") from None
    sid, _, ts = decoded.partition(":")
    if not _TS.match(ts):
        raise Refusal("111102", "请求包头Authorization参数解码后格式有误")
    if sid != account_sid:
        raise Refusal("111106", "Authorization中的账户ID与请求地址中的账户ID不一致")
    try:
        when = datetime.strptime(ts, "%Y%m%d%H%M%S").replace(tzinfo=_CST)
    except ValueError:
        raise Refusal("111102", "请求包头Authorization参数解码后格式有误") from None
    if abs(now - when) > WINDOW:  # SDKs sign in local time anywhere: +/- 24 h
        raise Refusal("111105", "请求包头Authorization参数解码后时间戳过期")
    sig = request.query_params.get("sig", "")
    if not sig:
        raise Refusal("111107", "请求地址Sig参数为空")
    expected = hashlib.md5(f"{account_sid}{auth_token}{ts}".encode(), usedforsecurity=False)
    if sig.upper() != expected.hexdigest().upper():
        raise Refusal("111108", "请求地址Sig校验失败")


def _parse_body(content_type: str, raw: bytes) -> Any:
    """The request body as a dict: JSON, or the XML the document also allows
    (``<TemplateSMS><to/><appId/><templateId/><datas><data/>...</datas>...</TemplateSMS>``,
    the element names of cloopen's XML SDK). None when unreadable."""
    if "json" in content_type:
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None
    if "xml" not in content_type:
        raise Refusal("160031", "参数解析失败: Content-Type 须为 application/json 或 xml")
    try:
        # Our own test traffic only; the body has no DTD or entities to expand.
        root = ElementTree.fromstring(raw)  # noqa: S314
    except ElementTree.ParseError:
        return None
    body: dict[str, Any] = {}
    for child in root:
        if child.tag == "datas":
            body["datas"] = [d.text or "" for d in child if d.tag == "data"]
        else:
            body[child.tag] = child.text or ""
    return body


def wants_xml(request: Request) -> bool:
    """An XML answer for a client that accepts XML and not JSON (the document allows both)."""
    accept = request.headers.get("accept", "").lower()
    return "xml" in accept and "json" not in accept


def xml_response(payload: dict[str, Any]) -> Response:
    """``<Response>`` with the JSON answer's fields as elements (nested objects nested)."""

    def fill(parent: ElementTree.Element, fields: dict[str, Any]) -> None:
        for key, value in fields.items():
            child = ElementTree.SubElement(parent, "TemplateSMS" if key == "templateSMS" else key)
            if isinstance(value, dict):
                fill(child, value)
            else:
                child.text = str(value)

    root = ElementTree.Element("Response")
    fill(root, payload)
    text = ElementTree.tostring(root, encoding="utf-8", xml_declaration=True)
    return Response(text, media_type="application/xml;charset=utf-8")


def _check_body(request: Request, raw: bytes, app_id: str, templates: dict[str, int]) -> Any:
    body = _parse_body(request.headers.get("content-type", "").lower(), raw)
    if not isinstance(body, dict):
        raise Refusal("160031", "参数解析失败")
    to = body.get("to")
    if not isinstance(to, str) or not to:
        raise Refusal("112306", "接收模板短信的手机号码为空")
    numbers = to.split(",")
    if len(numbers) > MAX_NUMBERS:
        raise Refusal("160048", "号码数量超过200")
    if not all(_NUMBER.match(n) for n in numbers):
        raise Refusal("160042", "号码格式有误")
    if body.get("appId") != app_id:
        raise Refusal("111199", "应用ID不存在或不属于该主账户")  # invented code
    _check_template(body, templates)
    sub = body.get("subAppend")
    if sub is not None and not re.fullmatch(r"\d{1,4}", str(sub)):
        raise Refusal("112399", "subAppend 须为四位以内数字")  # invented code
    req_id = body.get("reqId")
    if req_id is not None and not isinstance(req_id, str):
        raise Refusal("160031", "参数解析失败: reqId")
    if len(req_id or "") > MAX_REQ_ID:
        raise Refusal("160055", "reqId 超过32位")
    return body


def _check_template(body: dict[str, Any], templates: dict[str, int]) -> None:
    template_id = body.get("templateId")
    if template_id is None or template_id == "":
        raise Refusal("112307", "模板短信模板ID为空")
    if str(template_id) not in templates:
        raise Refusal("160032", "短信模板无效")
    datas = body.get("datas")
    if datas is not None and (
        not isinstance(datas, list)
        or not all(isinstance(d, str | int | float) and not isinstance(d, bool) for d in datas)
    ):
        raise Refusal("160031", "参数解析失败: datas")
    if len(datas or []) < templates[str(template_id)]:
        raise Refusal("112308", "模板短信模板data参数为空")  # also used for "too few"


class _RonglianHandlers:
    """The TemplateSMS endpoint of one emulator app, with its state, account and clock."""

    def __init__(
        self,
        st: RonglianState,
        *,
        account_sid: str,
        auth_token: str,
        app_id: str,
        templates: dict[str, int],
        clock: Clock,
    ) -> None:
        self.st = st
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.app_id = app_id
        self.templates = templates
        self.clock = clock
        self.pusher = Pusher()

    async def template_sms(self, request: Request) -> Response:
        st = self.st
        raw = await request.body()
        try:
            parsed = _parse_body(request.headers.get("content-type", "").lower(), raw)
        except Refusal:
            parsed = None
        action = await record(st, request, parsed if isinstance(parsed, dict) else {})
        fault = await apply_transport_fault(st, action)
        if fault is not None:
            return fault
        answer = xml_response if wants_xml(request) else json_response
        try:
            sent = self._accept_checked(request, raw, action)
        except Refusal as refusal:
            return answer({"statusCode": refusal.code, "statusMsg": refusal.message})
        for number in sent.to:
            receipt = _receipt(st, sent, number)
            self.pusher.push_later(st.callback_url, receipt, st.receipt_delay_s)
        late = await hang_after_accept(st, action)
        return late or answer(
            {
                "statusCode": "000000",
                "templateSMS": {"dateCreated": sent.created, "smsMessageSid": sent.sms_message_sid},
            }
        )

    def _accept_checked(self, request: Request, raw: bytes, action: FaultAction) -> AcceptedSend:
        """The accepted send, or the documented refusal raised as :class:`Refusal`."""
        now = self.clock.now().astimezone(UTC)
        _check_auth(request, self.account_sid, self.auth_token, now)
        body = _check_body(request, raw, self.app_id, self.templates)
        if action is FaultAction.ERROR:
            raise Refusal("160050", "短信发送失败")
        return _accept(self.st, body, now)


def create_app(
    state: RonglianState | None = None,
    *,
    account_sid: str = "sandboxsid00000000000000000000000",
    auth_token: str = "sandbox-token",
    app_id: str = "sandboxapp",
    templates: dict[str, int] | None = None,
    clock: Clock | None = None,
) -> Starlette:
    """The emulator app; ``templates`` maps template id -> number of params ("1": the
    documented test template, with 2)."""
    st = state or RonglianState()
    h = _RonglianHandlers(
        st,
        account_sid=account_sid,
        auth_token=auth_token,
        app_id=app_id,
        templates=templates if templates is not None else {"1": 2},
        clock=clock or SystemClock(),
    )
    app = Starlette(
        routes=[
            Route("/2013-12-26/Accounts/{sid}/SMS/TemplateSMS", h.template_sms, methods=["POST"]),
            *control_routes(st),
        ]
    )
    app.state.emulator = st
    return app


def _accept(st: RonglianState, body: dict[str, Any], now: datetime) -> AcceptedSend:
    local = now.astimezone(_CST)
    req_id = str(body.get("reqId") or "")
    if req_id and (local.strftime("%Y%m%d"), req_id) in st.req_ids:
        raise Refusal("160054", "reqId 同一自然天内重复")
    if req_id:
        st.req_ids.add((local.strftime("%Y%m%d"), req_id))
    sent = AcceptedSend(
        sms_message_sid=uuid.uuid4().hex,
        to=tuple(str(body["to"]).split(",")),
        template_id=str(body["templateId"]),
        datas=tuple(str(d) for d in body.get("datas") or ()),
        req_id=req_id,
        created=local.strftime("%Y%m%d%H%M%S"),
    )
    st.accepted.append(sent)
    st.take(sent.to)
    return sent


def _national(number: str) -> str:
    try:
        return normalise(number).national
    except InvalidMobileError:
        return number


def _receipt(st: EmulatorState, sent: AcceptedSend, number: str) -> dict[str, Any]:
    ok = _national(number) not in st.faults.reject_mobiles
    return {
        "Request": {
            "action": "SMSArrived",
            "smsType": "1",
            "content": sent.sms_message_sid,
            "fromNum": number,
            "dateSent": sent.created,
            "recvTime": sent.created,
            "deliverCode": "DELIVRD" if ok else "UNDELIV",
            "status": "0" if ok else "1",
            "reqId": sent.req_id,
            "smsCount": "1",
        }
    }
