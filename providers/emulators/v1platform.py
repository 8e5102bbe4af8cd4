"""v1 platform emulator: send, report and MO pulls, balance, and one-shot pushes.

Behaves like the documented service: form-encoded POSTs authenticated by ``account`` and the
lower-case hex MD5 ``pwd`` (upper-case hex is a different string, so it is refused), at most
``max_batch`` mainland mobiles per send, ``extNo`` a positive integer, ``taskId`` unique.
Accepted messages cost one unit per mobile per part (70 characters, then 67 per part) and
produce receipts: pushed once to ``state.callback_url`` (``DELIVRD``, never retried, lost if
the receiver is down or ``drop_pushes`` is set) and pullable once from ``/report``
(``DELIVER``), after ``state.receipt_delay_s``. Mobiles in ``undeliverable`` get ``UNDELIV``.

Error codes other than "00" are this emulator's invention (the document lists none): "01" bad
account or pwd, "02" parameter error (also a bad or ``reject_mobiles`` number: the send API
answers per request), "03" too many mobiles, "04" balance too low, "05" taskId reused, "06"
platform busy (the injected business error).

Control API besides the common one: ``PUT /_emulator/v1/undeliverable`` ``{"mobiles": [...]}``,
``POST /_emulator/v1/mo`` ``{"mobile", "content", "extNo"}`` (queues a reply and pushes it to
``mo_callback_url``), ``PUT /_emulator/v1/settings`` (balance, pushes and callback URLs).
"""

from __future__ import annotations

import hashlib
import math
import re
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from providers.emulators._common import (
    EmulatorState,
    FaultAction,
    Pusher,
    RecordedRequest,
    apply_transport_fault,
    control_routes,
    hang_after_accept,
    json_response,
    record,
)

_MAINLAND = re.compile(r"1[3-9]\d{9}")
_CST = ZoneInfo("Asia/Shanghai")
AUTH_FAILED = ("01", "账号或密码错误")


@dataclass(frozen=True, slots=True)
class Receipt:
    """One recipient's delivery report, as both paths will tell it."""

    task_id: str
    mobile: str
    ext_no: str
    delivered: bool
    times: str
    due: float  # monotonic time from which /report hands it out

    def pull_item(self, spelling: str) -> dict[str, str]:
        """The ``/report`` entry: masked mobile, with ``extNo``."""
        return {
            "sendId": self.task_id,
            "status": spelling if self.delivered else "UNDELIV",
            "times": self.times,
            "mobile": self.mobile[:3] + "****" + self.mobile[-4:],
            "extNo": self.ext_no,
        }

    def push_item(self, spelling: str) -> dict[str, str]:
        """The status push: exactly the document's four fields."""
        return {
            "sendId": self.task_id,
            "mobile": self.mobile,
            "times": self.times,
            "status": spelling if self.delivered else "UNDELIV",
        }


@dataclass(frozen=True, slots=True)
class Reply:
    """An inbound message (MO) waiting to be pulled."""

    mobile: str
    content: str
    ext_no: str
    times: str

    def pull_item(self) -> dict[str, object]:
        """The ``/mo`` entry as the document shows it: the mobile masked (``138****1234``),
        ``extNo`` a number when it is one (``10``)."""
        mobile = self.mobile
        masked = mobile[:3] + "****" + mobile[-4:] if len(mobile) == 11 else mobile
        ext: object = int(self.ext_no) if self.ext_no.isdigit() else self.ext_no
        return {"mobile": masked, "content": self.content, "times": self.times, "extNo": ext}

    def item(self) -> dict[str, str]:
        """The MO push body (the push document's four string fields, mobile unmasked)."""
        return {
            "mobile": self.mobile,
            "content": self.content,
            "times": self.times,
            "extNo": self.ext_no,
        }


@dataclass
class V1State(EmulatorState):
    """What the v1 emulator keeps beyond the common state."""

    balance: int = 1_000_000
    drop_pushes: bool = False  # lose every push, as a receiver outage would
    literal_shapes: bool = False  # pulls answer in the documents' literal (broken) shape
    push_spelling: str = "DELIVRD"  # the push document's spelling
    pull_spelling: str = "DELIVER"  # the pull document's spelling
    undeliverable: set[str] = field(default_factory=set)
    mo_callback_url: str | None = None
    receipts: list[Receipt] = field(default_factory=list)
    replies: list[Reply] = field(default_factory=list)
    task_ids: set[str] = field(default_factory=set)

    def reset(self) -> None:
        super().reset()
        self.receipts.clear()
        self.replies.clear()
        self.undeliverable.clear()
        self.task_ids.clear()
        self.drop_pushes = False
        self.literal_shapes = False

    def drain_receipts(self) -> list[Receipt]:
        """Receipts that are due, removed: a pull hands each one out once."""
        now = time.monotonic()
        due = [r for r in self.receipts if r.due <= now]
        self.receipts = [r for r in self.receipts if r.due > now]
        return due


class V1Controls(BaseModel):
    """``PUT /_emulator/v1/settings``: only the keys given are changed."""

    model_config = ConfigDict(extra="forbid")

    balance: int | None = None
    drop_pushes: bool | None = None
    literal_shapes: bool | None = None
    callback_url: str | None = None
    mo_callback_url: str | None = None
    receipt_delay_s: float | None = Field(default=None, ge=0)


def _answer(code: str, message: str, data: Any = None) -> Response:
    return json_response({"code": code, "data": {} if data is None else data, "message": message})


def _now() -> str:
    return datetime.now(_CST).strftime("%Y-%m-%d %H:%M:%S")


def parts(content: str) -> int:
    """SMS parts billed per recipient: one up to 70 characters, then 67 per part."""
    return 1 if len(content) <= 70 else math.ceil(len(content) / 67)


class _V1Handlers:
    """The endpoints of one emulator app, sharing its state, credentials and pusher."""

    def __init__(self, st: V1State, *, account: str, pwd: str, max_batch: int) -> None:
        self.st = st
        self.account = account
        self.pwd = pwd  # lower-case hex MD5 of the password
        self.max_batch = max_batch
        self.pusher = Pusher()

    def authorised(self, fields: dict[str, str]) -> bool:
        return fields.get("account") == self.account and fields.get("pwd") == self.pwd

    async def send(self, request: Request) -> Response:
        st = self.st
        fields = await _fields_of(request)
        action = await record(st, request, fields)
        fault = await apply_transport_fault(st, action)
        if fault is not None:
            return fault
        if action is FaultAction.ERROR:
            return _answer("06", "系统繁忙")
        refusal = _validate(fields, self.authorised(fields), self.max_batch, st)
        if refusal is not None:
            return _answer(*refusal)
        task_id = fields.get("taskId") or uuid.uuid4().hex
        self._accept(task_id, fields)
        late = await hang_after_accept(st, action)
        return late or _answer("00", "成功", {"taskId": task_id})

    def _accept(self, task_id: str, fields: dict[str, str]) -> None:
        st = self.st
        mobiles = fields["mobiles"].split(",")
        st.task_ids.add(task_id)
        st.take(mobiles)
        st.balance -= len(mobiles) * parts(fields["content"])
        times, due = _now(), time.monotonic() + st.receipt_delay_s
        for mobile in mobiles:
            receipt = Receipt(
                task_id, mobile, fields.get("extNo", ""), mobile not in st.undeliverable, times, due
            )
            st.receipts.append(receipt)
            self._push_later(st.callback_url, receipt.push_item(st.push_spelling))

    def _push_later(self, url: str | None, body: dict[str, str]) -> None:
        if not self.st.drop_pushes:  # sent once, never retried: the document's rule
            self.pusher.push_later(url, body, self.st.receipt_delay_s)

    async def _refused_pull(self, request: Request) -> Response | None:
        """The answer refusing a pull, or None to serve it. Pulls never draw a fault (so seeded
        send faults stay reproducible) but an outage takes every endpoint down."""
        st = self.st
        fields = await _fields_of(request)
        action = FaultAction.OUTAGE if st.faults.outage else FaultAction.NONE
        st.requests.append(_recorded(request, await request.body(), fields, action))
        if action is FaultAction.OUTAGE:
            return await apply_transport_fault(st, action)
        return None if self.authorised(fields) else _answer(*AUTH_FAILED)

    async def report(self, request: Request) -> Response:
        refused = await self._refused_pull(request)
        if refused is not None:
            return refused
        items = [r.pull_item(self.st.pull_spelling) for r in self.st.drain_receipts()]
        return self._pulled(items)

    def _pulled(self, items: list[Any]) -> Response:
        """A pull answer: JSON, or with ``literal_shapes`` the documents' own example shape
        (``"data": {[...]}`` and no comma before ``"message"``: not JSON)."""
        if not self.st.literal_shapes:
            return _answer("00", "成功", items)
        array = orjson.dumps(items).decode()
        text = f'{{\n  "code": "00",\n  "data": {{\n    {array}\n}}\n"message": "成功"\n}}'
        return Response(text.encode(), media_type="application/json")

    async def mo(self, request: Request) -> Response:
        refused = await self._refused_pull(request)
        if refused is not None:
            return refused
        drained, self.st.replies = self.st.replies, []
        return self._pulled([r.pull_item() for r in drained])

    async def query_balance(self, request: Request) -> Response:
        refused = await self._refused_pull(request)
        if refused is not None:
            return refused
        balance = {"balance": self.st.balance, "payment": 0, "paymentName": "预付"}
        return _answer("00", "成功", balance)

    async def inject_mo(self, request: Request) -> Response:
        body = await request.json()
        if not isinstance(body, dict) or not body.get("mobile"):
            return json_response({"error": "mobile is required"}, status_code=422)
        reply = Reply(
            str(body["mobile"]), str(body.get("content", "")), str(body.get("extNo", "")), _now()
        )
        self.st.replies.append(reply)
        self._push_later(self.st.mo_callback_url, reply.item())
        return json_response({"queued": True})

    async def undeliverable(self, request: Request) -> Response:
        self.st.undeliverable = {str(m) for m in (await request.json()).get("mobiles", [])}
        return json_response({"undeliverable": sorted(self.st.undeliverable)})

    async def settings(self, request: Request) -> Response:
        try:
            controls = V1Controls.model_validate_json(await request.body())
        except ValidationError as exc:
            return json_response({"error": str(exc)}, status_code=422)
        for key, value in controls.model_dump(exclude_unset=True).items():
            setattr(self.st, key, value)
        return json_response(_controls_of(self.st))


def create_app(
    state: V1State | None = None,
    *,
    account: str = "sandbox",
    password: str = "sandbox-pass",
    max_batch: int = 3000,
    balance: int | None = None,
    undeliverable_mobiles: Iterable[str] = (),
) -> Starlette:
    """The emulator app; ``app.state.emulator`` holds its :class:`V1State`."""
    st = state or V1State()
    if balance is not None:
        st.balance = balance
    st.undeliverable.update(undeliverable_mobiles)
    pwd = hashlib.md5(password.encode(), usedforsecurity=False).hexdigest()
    h = _V1Handlers(st, account=account, pwd=pwd, max_batch=max_batch)
    app = Starlette(
        routes=[
            Route("/api/v1/send", h.send, methods=["POST"]),
            Route("/api/v1/report", h.report, methods=["POST"]),
            Route("/api/v1/mo", h.mo, methods=["POST"]),
            Route("/api/v1/queryBalance", h.query_balance, methods=["POST"]),
            Route("/_emulator/v1/mo", h.inject_mo, methods=["POST"]),
            Route("/_emulator/v1/undeliverable", h.undeliverable, methods=["PUT"]),
            Route("/_emulator/v1/settings", h.settings, methods=["PUT"]),
            *control_routes(st),
        ]
    )
    app.state.emulator = st
    return app


async def _fields_of(request: Request) -> dict[str, str]:
    await request.body()  # cache the raw body: record() keeps it, form() reuses it
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}


def _controls_of(st: V1State) -> dict[str, Any]:
    return {key: getattr(st, key) for key in V1Controls.model_fields}


def _recorded(
    request: Request, body: bytes, fields: dict[str, str], action: FaultAction
) -> RecordedRequest:
    return RecordedRequest(
        method=request.method,
        path=request.url.path,
        query=dict(request.query_params),
        headers=dict(request.headers),
        body=body,
        fields=dict(fields),
        action=action,
    )


def _validate(
    fields: dict[str, str], authorised: bool, max_batch: int, st: V1State
) -> tuple[str, str] | None:
    """The refusal (code, message) for a send request, or None when it is acceptable."""
    if not authorised:
        return AUTH_FAILED
    if not fields.get("mobiles") or not fields.get("content"):
        return "02", "参数错误: mobiles 和 content 必填"
    mobiles = fields["mobiles"].split(",")
    if len(mobiles) > max_batch:
        return "03", f"号码数量超过 {max_batch}"
    if not all(_MAINLAND.fullmatch(m) for m in mobiles) or set(mobiles) & set(
        st.faults.reject_mobiles
    ):
        return "02", "参数错误: 手机号码格式不正确"
    ext_no = fields.get("extNo")
    if ext_no is not None and not (ext_no.isascii() and ext_no.isdigit() and int(ext_no) > 0):
        return "02", "参数错误: extNo 只能为正整数"
    if fields.get("taskId") in st.task_ids:
        return "05", "taskId 重复"
    if st.balance < len(mobiles) * parts(fields["content"]):
        return "04", "余额不足"
    return None
