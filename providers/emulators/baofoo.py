"""Baofoo (Mandao) ``/sendSms`` emulator: multipart or form-urlencoded, documented answers.

Emulator-invented behaviour (the document lists only ``SMS_001``) is marked ``invented``:
the error codes for bad credentials, missing fields and oversize batches, and answering a
repeated ``requestId`` with the original result (the document says requestId serves
idempotency but not how the gateway answers a repeat).
"""

from __future__ import annotations

import re
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from providers.emulators._common import (
    EmulatorState,
    FaultAction,
    apply_transport_fault,
    control_routes,
    hang_after_accept,
    json_response,
    record,
)

_MAINLAND = re.compile(r"^1[3-9]\d{9}$")
_FOREIGN = re.compile(r"^\d{5,15}$")
# The document's enums (sendType 1-3, businessType 1-4); an undocumented value is refused.
_ENUMS = {"sendType": {"1", "2", "3"}, "businessType": {"1", "2", "3", "4"}}


def _answer(success: bool, result: int, code: str | None, msg: str | None) -> dict[str, Any]:
    return {"success": success, "result": result, "errorCode": code, "errorMsg": msg}


def _refuse(code: str, msg: str) -> dict[str, Any]:
    return _answer(False, 0, code, msg)


def _check(fields: dict[str, str], user: str, password: str, max_batch: int) -> dict[str, Any]:
    """The gateway's answer to a well-formed, fault-free request."""
    if fields.get("userName") != user or fields.get("userPass") != password:
        return _refuse("AUTH_FAIL", "账号或密码错误")  # invented
    for name in ("mobile", "content"):
        if not fields.get(name):
            return _refuse("PARAM_MISSING", f"缺少参数 {name}")  # invented
    for name, allowed in _ENUMS.items():
        if name in fields and fields[name] not in allowed:
            return _refuse("PARAM_ERROR", f"{name} 取值不合法")  # invented
    mobiles = [m for m in re.split(r"[,;]", fields["mobile"]) if m]
    if len(mobiles) > max_batch:
        return _refuse("MOBILE_TOO_MANY", f"号码数量超过 {max_batch}")  # invented
    pattern = _FOREIGN if fields.get("areaCode", "+86") not in ("", "+86", "86") else _MAINLAND
    if not mobiles or not all(pattern.match(m) for m in mobiles):
        return _refuse("SMS_001", "手机号格式不正确")
    return _answer(True, len(mobiles), None, None)


class _BaofooHandlers:
    """The ``/sendSms`` endpoint of one emulator app, with its state and credentials."""

    def __init__(self, state: EmulatorState, *, user: str, password: str, max_batch: int) -> None:
        self.state = state
        self.user = user
        self.password = password
        self.max_batch = max_batch
        self.answered: dict[str, dict[str, Any]] = {}  # requestId -> first answer (invented)

    async def send_sms(self, request: Request) -> Response:
        await request.body()  # cache the raw body: record() keeps it, form() reuses it
        form = await request.form()
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        action = await record(self.state, request, fields)
        fault = await apply_transport_fault(self.state, action)
        if fault is not None:
            return fault
        request_id = fields.get("requestId")
        if request_id and request_id in self.answered:
            return json_response(self.answered[request_id])
        if action is FaultAction.ERROR:
            return json_response(_refuse("SYS_BUSY", "系统繁忙"))  # invented
        rejected = set(self.state.faults.reject_mobiles)
        mobiles = set(re.split(r"[,;]", fields.get("mobile", "")))
        if rejected & mobiles:
            return json_response(_refuse("SMS_001", "手机号格式不正确"))
        answer = _check(fields, self.user, self.password, self.max_batch)
        if request_id and answer["success"]:
            self.answered[request_id] = answer
        if answer["success"]:
            self.state.take(mobiles)
        late = await hang_after_accept(self.state, action) if answer["success"] else None
        return late or json_response(answer)


def create_app(
    state: EmulatorState | None = None,
    *,
    user_name: str = "sandbox-user",
    user_pass: str = "sandbox-pass",
    max_batch: int = 200,
) -> Starlette:
    """The emulator app; ``app.state.emulator`` holds its :class:`EmulatorState`."""
    state = state or EmulatorState()
    h = _BaofooHandlers(state, user=user_name, password=user_pass, max_batch=max_batch)
    routes = [Route("/sendSms", h.send_sms, methods=["POST"]), *control_routes(state)]
    app = Starlette(routes=routes)
    app.state.emulator = state
    return app
