"""v1 platform emulator: send, report and MO pulls, balance, and one-shot pushes.

Error codes other than "00" are emulator-invented (the document lists none): "01" bad
account or pwd, "02" parameter error, "03" too many mobiles, "04" balance too low, "05"
taskId reused, "06" platform busy (the injected business error).
"""

from __future__ import annotations

import hashlib
import math
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

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

_MAINLAND = re.compile(r"^1[3-9]\d{9}$")
_CST = ZoneInfo("Asia/Shanghai")


@dataclass
class V1State(EmulatorState):
    """What the v1 emulator keeps beyond the common state."""

    balance: int = 1_000_000
    drop_pushes: bool = False
    push_spelling: str = "DELIVRD"  # the push document's spelling
    pull_spelling: str = "DELIVER"  # the pull document's spelling
    undeliverable: set[str] = field(default_factory=set)
    mo_callback_url: str | None = None
    pending_reports: list[dict[str, Any]] = field(default_factory=list)
    pending_mo: list[dict[str, Any]] = field(default_factory=list)
    task_ids: set[str] = field(default_factory=set)

    def reset(self) -> None:
        super().reset()
        self.pending_reports.clear()
        self.pending_mo.clear()
        self.undeliverable.clear()
        self.drop_pushes = False


def _answer(code: str, message: str, data: Any = None) -> Response:
    payload = {"code": code, "data": data if data is not None else {}, "message": message}
    return json_response(payload)


def _now() -> str:
    return datetime.now(_CST).strftime("%Y-%m-%d %H:%M:%S")


def _parts(content: str) -> int:
    return 1 if len(content) <= 70 else math.ceil(len(content) / 67)


def create_app(
    state: V1State | None = None,
    *,
    account: str = "sandbox",
    password: str = "sandbox-pass",
    max_batch: int = 3000,
) -> Starlette:
    """The emulator app; ``app.state.emulator`` holds its :class:`V1State`."""
    st = state or V1State()
    pwd = hashlib.md5(password.encode(), usedforsecurity=False).hexdigest()
    pusher = Pusher()

    async def fields_of(request: Request) -> dict[str, str]:
        await request.body()  # cache the raw body: record() keeps it, form() reuses it
        form = await request.form()
        return {k: v for k, v in form.items() if isinstance(v, str)}

    def authorised(fields: dict[str, str]) -> bool:
        return fields.get("account") == account and fields.get("pwd") == pwd

    async def send(request: Request) -> Response:
        fields = await fields_of(request)
        action = await record(st, request, fields)
        fault = await apply_transport_fault(st, action)
        if fault is not None:
            return fault
        if action is FaultAction.ERROR:
            return _answer("06", "系统繁忙")
        refusal = _validate(fields, authorised(fields), max_batch, st)
        if refusal is not None:
            return _answer(*refusal)
        mobiles = fields["mobiles"].split(",")
        task_id = fields.get("taskId") or uuid.uuid4().hex
        st.task_ids.add(task_id)
        st.balance -= len(mobiles) * _parts(fields["content"])
        for mobile in mobiles:
            _queue_receipt(task_id, mobile, fields.get("extNo", ""))
        late = await hang_after_accept(st, action)
        return late or _answer("00", "成功", {"taskId": task_id})

    def _queue_receipt(task_id: str, mobile: str, ext_no: str) -> None:
        ok = mobile not in st.undeliverable
        pull = {
            "sendId": task_id,
            "status": st.pull_spelling if ok else "UNDELIV",
            "times": _now(),
            "mobile": mobile[:3] + "****" + mobile[-4:],
            "extNo": ext_no,
        }
        st.pending_reports.append(pull)
        push = {**pull, "status": st.push_spelling if ok else "UNDELIV", "mobile": mobile}
        push.pop("extNo")
        _push_later(st.callback_url, push)

    def _push_later(url: str | None, body: dict[str, Any]) -> None:
        if not st.drop_pushes:  # sent once, never retried: the document's rule
            pusher.push_later(url, body, st.receipt_delay_s)

    async def report(request: Request) -> Response:
        fields = await fields_of(request)
        if not authorised(fields):
            return _answer("01", "账号或密码错误")
        drained, st.pending_reports = st.pending_reports, []
        return _answer("00", "成功", drained)

    async def mo(request: Request) -> Response:
        fields = await fields_of(request)
        if not authorised(fields):
            return _answer("01", "账号或密码错误")
        drained, st.pending_mo = st.pending_mo, []
        return _answer("00", "成功", drained)

    async def balance(request: Request) -> Response:
        fields = await fields_of(request)
        if not authorised(fields):
            return _answer("01", "账号或密码错误")
        return _answer("00", "成功", {"balance": st.balance, "payment": 0, "paymentName": "预付"})

    async def inject_mo(request: Request) -> Response:
        body = await request.json()
        item = {
            "mobile": str(body["mobile"]),
            "content": str(body.get("content", "")),
            "times": _now(),
            "extNo": str(body.get("extNo", "")),
        }
        st.pending_mo.append(item)
        _push_later(st.mo_callback_url, item)
        return json_response({"queued": True})

    async def undeliverable(request: Request) -> Response:
        st.undeliverable = set((await request.json()).get("mobiles", []))
        return json_response({"undeliverable": sorted(st.undeliverable)})

    app = Starlette(
        routes=[
            Route("/api/v1/send", send, methods=["POST"]),
            Route("/api/v1/report", report, methods=["POST"]),
            Route("/api/v1/mo", mo, methods=["POST"]),
            Route("/api/v1/queryBalance", balance, methods=["POST"]),
            Route("/_emulator/v1/mo", inject_mo, methods=["POST"]),
            Route("/_emulator/v1/undeliverable", undeliverable, methods=["PUT"]),
            *control_routes(st),
        ]
    )
    app.state.emulator = st
    return app


def _validate(
    fields: dict[str, str], authorised: bool, max_batch: int, st: V1State
) -> tuple[str, str] | None:
    """The refusal (code, message) for a send request, or None when it is acceptable."""
    if not authorised:
        return "01", "账号或密码错误"
    if not fields.get("mobiles") or not fields.get("content"):
        return "02", "参数错误: mobiles 和 content 必填"
    mobiles = fields["mobiles"].split(",")
    if len(mobiles) > max_batch:
        return "03", f"号码数量超过 {max_batch}"
    if not all(_MAINLAND.match(m) for m in mobiles) or set(mobiles) & set(st.faults.reject_mobiles):
        return "02", "参数错误: 手机号码格式不正确"
    ext_no = fields.get("extNo")
    if ext_no is not None and not (ext_no.isdigit() and int(ext_no) > 0):
        return "02", "参数错误: extNo 只能为正整数"
    if fields.get("taskId") in st.task_ids:
        return "05", "taskId 重复"
    if st.balance < len(mobiles) * _parts(fields["content"]):
        return "04", "余额不足"
    return None
