"""Ronglian TemplateSMS emulator: sig + Authorization checks, template rules, receipt pushes.

Accepts a ``sig`` in either case (the official Go SDK sends lower case) and a timestamp
within +/- 24 h of its own clock (SDKs use the caller's local time zone). Codes marked
``invented`` are not in the public notes; the rest are cloopen's.
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
from zoneinfo import ZoneInfo

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from providers.emulators._common import (
    EmulatorState,
    FaultAction,
    Pusher,
    apply_transport_fault,
    control_routes,
    hang_after_accept,
    json_response,
    record,
)
from router.clock import Clock, SystemClock

_CST = ZoneInfo("Asia/Shanghai")
_NUMBER = re.compile(r"^(1[3-9]\d{9}|00\d{6,15})$")
WINDOW = timedelta(hours=24)


@dataclass
class RonglianState(EmulatorState):
    req_ids: set[tuple[str, str]] = field(default_factory=set)  # (day, reqId)

    def reset(self) -> None:
        super().reset()
        self.req_ids.clear()


def _refuse(code: str, msg: str) -> Response:
    return json_response({"statusCode": code, "statusMsg": msg})


def _auth_error(
    request: Request, account_sid: str, auth_token: str, now: datetime
) -> Response | None:
    if request.path_params["sid"] != account_sid:
        return _refuse("111139", "主账户不存在")  # invented code within the 111xxx range
    try:
        decoded = base64.b64decode(request.headers.get("authorization", ""), validate=True)
        sid, ts = decoded.decode().split(":", 1)
        when = datetime.strptime(ts, "%Y%m%d%H%M%S").replace(tzinfo=_CST)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return _refuse("112314", "Authorization 格式错误")  # invented within 1123xx
    if sid != account_sid:
        return _refuse("112315", "Authorization 账户不匹配")  # invented within 1123xx
    # Local-time SDKs anywhere: accept +/- 24 h around our clock.
    if abs(now - when) > WINDOW:
        return _refuse("112316", "时间戳已过期")  # invented within 1123xx
    expected = hashlib.md5(f"{account_sid}{auth_token}{ts}".encode(), usedforsecurity=False)
    if request.query_params.get("sig", "").upper() != expected.hexdigest().upper():
        return _refuse("112317", "sig 校验失败")  # invented within 1123xx
    return None


def _body_error(body: Any, app_id: str, templates: dict[str, int]) -> Response | None:
    if not isinstance(body, dict):
        return _refuse("112300", "包体格式错误")  # invented within 1123xx
    numbers = str(body.get("to") or "").split(",")
    if not body.get("to"):
        return _refuse("112302", "to 为空")  # invented within 1123xx
    if len(numbers) > 200:
        return _refuse("160048", "号码数量超过200")
    if not all(_NUMBER.match(n) for n in numbers):
        return _refuse("160042", "号码格式有误")
    if body.get("appId") != app_id:
        return _refuse("112306", "appId 错误")  # invented within 1123xx
    template_id = str(body.get("templateId") or "")
    if template_id not in templates:
        return _refuse("160032", "短信模板无效")
    datas = body.get("datas")
    if datas is not None and (
        not isinstance(datas, list) or not all(isinstance(d, str | int | float) for d in datas)
    ):
        return _refuse("112310", "datas 格式错误")  # invented within 1123xx
    if len(datas or []) < templates[template_id]:
        return _refuse("160035", "模板参数不足")  # invented meaning for this code
    sub = body.get("subAppend")
    if sub is not None and not re.fullmatch(r"\d{1,4}", str(sub)):
        return _refuse("112311", "subAppend 格式错误")  # invented within 1123xx
    if len(str(body.get("reqId") or "")) > 32:
        return _refuse("160055", "reqId 超长")
    return None


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
    documented test template with 2)."""
    st = state or RonglianState()
    known = templates if templates is not None else {"1": 2}
    clock_ = clock or SystemClock()
    pusher = Pusher()

    async def template_sms(request: Request) -> Response:
        raw = await request.body()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        action = await record(st, request, body if isinstance(body, dict) else {})
        fault = await apply_transport_fault(st, action)
        if fault is not None:
            return fault
        now = clock_.now().astimezone(UTC)
        refusal = _auth_error(request, account_sid, auth_token, now) or _body_error(
            body, app_id, known
        )
        if refusal is not None:
            return refusal
        if action is FaultAction.ERROR:
            return _refuse("160050", "短信发送失败")
        assert isinstance(body, dict)
        day, req_id = now.astimezone(_CST).strftime("%Y%m%d"), str(body.get("reqId") or "")
        if req_id and (day, req_id) in st.req_ids:
            return _refuse("160054", "reqId 重复")
        if req_id:
            st.req_ids.add((day, req_id))
        sid = uuid.uuid4().hex
        created = now.astimezone(_CST).strftime("%Y%m%d%H%M%S")
        for number in str(body["to"]).split(","):
            pusher.push_later(
                st.callback_url, _receipt(st, sid, number, req_id, created), st.receipt_delay_s
            )
        late = await hang_after_accept(st, action)
        return late or json_response(
            {"statusCode": "000000", "templateSMS": {"dateCreated": created, "smsMessageSid": sid}}
        )

    app = Starlette(
        routes=[
            Route("/2013-12-26/Accounts/{sid}/SMS/TemplateSMS", template_sms, methods=["POST"]),
            *control_routes(st),
        ]
    )
    app.state.emulator = st
    return app


def _receipt(st: EmulatorState, sid: str, number: str, req_id: str, sent: str) -> dict[str, Any]:
    ok = number not in st.faults.reject_mobiles
    return {
        "Request": {
            "action": "SMSArrived",
            "smsType": "1",
            "content": sid,
            "fromNum": number,
            "dateSent": sent,
            "recvTime": sent,
            "deliverCode": "DELIVRD" if ok else "UNDELIV",
            "status": "0" if ok else "1",
            "reqId": req_id,
            "smsCount": "1",
        }
    }
