"""The v1 SMS platform: ``/api/v1/send``, ``/report``, ``/mo``, ``/queryBalance`` and pushes.

Wire facts (shared/specs): form-encoded POSTs; ``pwd`` is the lower-case hex MD5 of the
password (a static hash: a captured request can be replayed, so it never reaches a log);
``code == "00"`` means accepted; up to 3000 ``mobiles`` per request; ``taskId`` is ours and
globally unique. The document's ``/report`` and ``/mo`` examples wrap the ``data`` array in
braces (invalid JSON): the evident intent, a JSON array, is parsed, and an object holding one
list is accepted too. Delivered is ``DELIVER`` (pull) or ``DELIVRD`` (push); any other code
is a failure. Pushes come once and are never retried, so a missed one is only recoverable by
pulling ``/report``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Literal
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

import httpx
import orjson
from pydantic import Field, SecretStr, model_validator

from providers.base import (
    AttemptResult,
    Batch,
    DeliveryReport,
    DeliveryStatus,
    ErrorClass,
    Fault,
    FaultKind,
    InboundMessage,
    Mobile,
    Rendered,
    RenderRequest,
    Verdict,
    render_content,
)
from providers.http import malformed, status_fault
from providers.settings import ProviderSettings, secret
from router.clock import Clock, SystemClock
from router.errors import MissingParamError, ProviderResponseError

MAX_MOBILES = 3000
MAX_CONTENT_CHARS = 500  # the document's advice; longer content is sent, not refused
DELIVERED_CODES = frozenset({"DELIVRD", "DELIVER"})
PUSH_ACK_STATUS = 200
_CST = ZoneInfo("Asia/Shanghai")

# code -> whose fault. The document lists only "00"; every other code is a provider fault
# until the vendor's table is known (fail over, feed the breaker).
ERROR_CODES: dict[str, FaultKind] = {}


class V1PlatformSettings(ProviderSettings):
    """``[providers.<name>]`` with ``type = "v1platform"``: give ``password`` or its MD5."""

    type: Literal["v1platform"] = "v1platform"
    account: str = Field(min_length=1)
    password: SecretStr | None = None
    password_md5: SecretStr | None = None
    ext_no: int | None = Field(default=None, gt=0)
    max_batch: int = Field(default=MAX_MOBILES, ge=1, le=MAX_MOBILES)

    @model_validator(mode="after")
    def _one_password(self) -> V1PlatformSettings:
        if (self.password is None) == (self.password_md5 is None):
            raise ValueError("set exactly one of password or password_md5")
        return self

    def pwd(self) -> str:
        if self.password_md5 is not None:
            return secret(self.password_md5).lower()
        assert self.password is not None
        return hashlib.md5(secret(self.password).encode(), usedforsecurity=False).hexdigest()


@dataclass(frozen=True, slots=True)
class Balance:
    balance: int
    payment: int  # 0 prepaid, 1 postpaid
    payment_name: str


class V1PlatformProvider:
    """Adapter for one v1 platform account."""

    kind: ClassVar[str] = "v1platform"

    def __init__(self, name: str, settings: V1PlatformSettings, clock: Clock | None = None) -> None:
        self.name = name
        self.settings = settings
        self.max_batch = settings.max_batch
        self._clock = clock or SystemClock()
        self._base = settings.base_url.rstrip("/")

    def __repr__(self) -> str:
        return f"V1PlatformProvider(name={self.name!r}, base_url={self._base!r})"

    def can_reach(self, mobile: Mobile) -> bool:
        regions = self.settings.regions
        return regions == "all" or (regions == "mainland") == mobile.is_mainland

    def render(self, request: RenderRequest) -> Rendered | None:
        if request.template is None:
            content = request.content or ""
        else:
            options = request.template.provider_options.get(self.name, {})
            if options.get("approved", True) is False or request.template.content is None:
                return None
            text = str(options.get("content", request.template.content))
            try:
                content = render_content(text, request.params)
            except KeyError as exc:
                raise MissingParamError(request.template.key, str(exc.args[0])) from None
        signature = self.settings.signature
        if signature and not content.startswith(signature):
            content = signature + content
        return Rendered(content=content)

    # -- send -------------------------------------------------------------------------------

    def _auth(self) -> dict[str, str]:
        return {"account": self.settings.account, "pwd": self.settings.pwd()}

    def build_request(self, batch: Batch) -> httpx.Request:
        if not 1 <= len(batch.mobiles) <= self.max_batch:
            raise ValueError(f"batch of {len(batch.mobiles)} outside 1..{self.max_batch}")
        fields = {
            **self._auth(),
            "taskId": batch.request_id,
            "mobiles": ",".join(m.national for m in batch.mobiles),
            "content": batch.rendered.content or "",
        }
        if self.settings.ext_no is not None:
            fields["extNo"] = str(self.settings.ext_no)
        return httpx.Request("POST", f"{self._base}/api/v1/send", data=fields)

    def parse_response(self, batch: Batch, response: httpx.Response) -> AttemptResult:
        status = response.status_code
        if not response.is_success:
            verdict, fault = status_fault(response) or (Verdict.UNKNOWN, None)
            return AttemptResult.uniform(self.name, batch, verdict, fault=fault, http_status=status)
        body = _json_object(response)
        if body is None or not isinstance(body.get("code"), str):
            return malformed(self.name, batch, response, "body is not the platform's JSON")
        if body["code"] == "00":
            data = body.get("data")
            task_id = data.get("taskId") if isinstance(data, dict) else None
            return AttemptResult.uniform(
                self.name,
                batch,
                Verdict.ACCEPTED,
                message_id=str(task_id or batch.request_id),
                http_status=status,
            )
        code = body["code"]
        detail = str(body.get("message") or "refused")[:200]
        fault = Fault(ERROR_CODES.get(code, FaultKind.PROVIDER), ErrorClass.REFUSED, code, detail)
        return AttemptResult.uniform(
            self.name, batch, Verdict.REJECTED, fault=fault, http_status=status
        )

    # -- pulls ------------------------------------------------------------------------------

    def build_report_request(self) -> httpx.Request:
        return httpx.Request("POST", f"{self._base}/api/v1/report", data=self._auth())

    def build_mo_request(self) -> httpx.Request:
        return httpx.Request("POST", f"{self._base}/api/v1/mo", data=self._auth())

    def build_balance_request(self) -> httpx.Request:
        return httpx.Request("POST", f"{self._base}/api/v1/queryBalance", data=self._auth())

    def parse_report(self, response: httpx.Response) -> list[DeliveryReport]:
        return [self._report(item) for item in _pulled(response, "/report")]

    def parse_mo(self, response: httpx.Response) -> list[InboundMessage]:
        return [
            InboundMessage(
                provider=self.name,
                mobile=_required(item, "mobile"),
                content=str(item.get("content") or ""),
                ext_no=_optional(item.get("extNo")),
                at=parse_time(item.get("times")),
            )
            for item in _pulled(response, "/mo")
        ]

    def parse_balance(self, response: httpx.Response) -> Balance:
        body = _checked(response, "/queryBalance")
        data = body.get("data")
        if not isinstance(data, dict) or not isinstance(data.get("balance"), int | float):
            raise ProviderResponseError("/queryBalance answer has no numeric data.balance")
        return Balance(
            int(data["balance"]), int(data.get("payment") or 0), str(data.get("paymentName", ""))
        )

    def _report(self, item: dict[str, Any]) -> DeliveryReport:
        code = _required(item, "status")
        return DeliveryReport(
            provider=self.name,
            provider_message_id=_required(item, "sendId"),
            mobile=str(item.get("mobile") or ""),
            status=DeliveryStatus.DELIVERED if code in DELIVERED_CODES else DeliveryStatus.FAILED,
            status_code=code,
            at=parse_time(item.get("times")),
        )

    # -- pushes -----------------------------------------------------------------------------

    def parse_status_push(self, body: bytes, content_type: str) -> DeliveryReport:
        """A status push (``DELIVRD`` delivered); answer it with HTTP 200."""
        return self._report(_push_fields(body, content_type))

    def parse_mo_push(self, body: bytes, content_type: str) -> InboundMessage:
        item = _push_fields(body, content_type)
        return InboundMessage(
            provider=self.name,
            mobile=_required(item, "mobile"),
            content=str(item.get("content") or ""),
            ext_no=_optional(item.get("extNo")),
            at=parse_time(item.get("times")),
        )


def parse_time(value: object) -> datetime | None:
    """``yyyy-MM-dd HH:mm:ss`` in China time; None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%d %H:%M:%S").replace(tzinfo=_CST)
    except ValueError:
        return None


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return None
    return body if isinstance(body, dict) else None


def _checked(response: httpx.Response, path: str) -> dict[str, Any]:
    if not response.is_success:
        raise ProviderResponseError(f"{path} answered HTTP {response.status_code}")
    body = _json_object(response)
    if body is None:
        raise ProviderResponseError(f"{path} answer is not a JSON object")
    if body.get("code") != "00":
        raise ProviderResponseError(f"{path} refused with code {body.get('code')!r}")
    return body


def _pulled(response: httpx.Response, path: str) -> list[dict[str, Any]]:
    data = _checked(response, path).get("data")
    if isinstance(data, dict):  # the document's brace-wrapped example: one list inside
        lists = [v for v in data.values() if isinstance(v, list)]
        data = lists[0] if len(lists) == 1 else [] if not data else None
    if data is None:
        return []
    if not isinstance(data, list) or not all(isinstance(i, dict) for i in data):
        raise ProviderResponseError(f"{path} data is not a list of objects")
    return data


def _push_fields(body: bytes, content_type: str) -> dict[str, Any]:
    if "json" in content_type or body.lstrip().startswith(b"{"):
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise ProviderResponseError("push body is not valid JSON") from None
        if not isinstance(parsed, dict):
            raise ProviderResponseError("push body is not a JSON object")
        return parsed
    return dict(parse_qsl(body.decode("utf-8", "replace")))


def _required(item: dict[str, Any], key: str) -> str:
    value = item.get(key)
    if value is None or value == "":
        raise ProviderResponseError(f"receipt field {key!r} is missing")
    return str(value)


def _optional(value: object) -> str | None:
    return None if value is None or value == "" else str(value)
