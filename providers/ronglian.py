"""Ronglian Cloud (cloopen / yuntongxun) TemplateSMS.

``POST {base}/2013-12-26/Accounts/{accountSid}/SMS/TemplateSMS?sig={SIG}`` with
``SIG = upper(md5(accountSid + authToken + ts))``, ``Authorization: base64(accountSid:ts)``,
``ts = yyyyMMddHHmmss`` (official SDKs use the caller's local time; here the configured
``timezone``, China time by default). JSON body: ``to`` (at most 200, comma-separated),
``appId``, ``templateId``, ``datas``, optional ``subAppend`` and ``reqId`` (<= 32 chars).
Templates only: free content cannot be sent through Ronglian. The answer is per request;
per-number problems surface in delivery receipts.

The ``sig`` is a one-day credential derived from the auth token: the request URL is never
logged, and faults carry only codes and the provider's message.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime
from typing import Any, ClassVar, Literal
from zoneinfo import ZoneInfo

import httpx
import orjson
from pydantic import Field, SecretStr

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
)
from providers.http import malformed, status_fault
from providers.settings import ProviderSettings, secret
from router.clock import Clock, SystemClock
from router.errors import MissingParamError, ProviderResponseError

MAX_NUMBERS = 200
MAX_REQ_ID = 32
SUCCESS = "000000"
# What the receipt push expects back (unverified: secondary sources).
RECEIPT_ACK = b'{"statusCode":"000000"}'

# statusCode -> whose fault. 160048/160054/160055 and the 111xxx/1123xx ranges are from the
# provider notes in shared/specs; the 1600xx message-level codes are from cloopen's public
# error table (unverified here). Unknown codes are provider faults.
ERROR_CODES: dict[str, FaultKind] = {
    "160032": FaultKind.MESSAGE,  # template invalid / not approved
    "160033": FaultKind.MESSAGE,  # content has blocked words
    "160034": FaultKind.MESSAGE,  # number blacklisted
    "160035": FaultKind.MESSAGE,  # empty content
    "160038": FaultKind.MESSAGE,  # verification codes sent too often to this number
    "160039": FaultKind.MESSAGE,  # daily limit for this template and number
    "160040": FaultKind.MESSAGE,  # daily verification-code limit for this number
    "160041": FaultKind.MESSAGE,  # daily notice limit for this number
    "160042": FaultKind.MESSAGE,  # bad number format
    "160043": FaultKind.MESSAGE,  # template does not belong to this app
    "160048": FaultKind.PROVIDER,  # over 200 numbers: our batching bug, never the message's
    "160054": FaultKind.PROVIDER,  # reqId reused today
    "160055": FaultKind.PROVIDER,  # reqId too long
}


def classify_code(code: str) -> FaultKind:
    if code in ERROR_CODES:
        return ERROR_CODES[code]
    if code.startswith("111"):
        return FaultKind.CREDENTIALS  # account and authentication errors
    return FaultKind.PROVIDER  # 1123xx request format errors and everything unknown


class RonglianSettings(ProviderSettings):
    """``[providers.<name>]`` with ``type = "ronglian"``."""

    type: Literal["ronglian"] = "ronglian"
    base_url: str = "https://app.cloopen.com:8883"
    account_sid: str = Field(min_length=1)
    auth_token: SecretStr
    app_id: str = Field(min_length=1)
    sub_append: str | None = Field(default=None, pattern=r"^\d{1,4}$")
    max_batch: int = Field(default=MAX_NUMBERS, ge=1, le=MAX_NUMBERS)
    timezone: str = "Asia/Shanghai"


class RonglianProvider:
    """Adapter for one Ronglian account and app."""

    kind: ClassVar[str] = "ronglian"

    def __init__(self, name: str, settings: RonglianSettings, clock: Clock | None = None) -> None:
        self.name = name
        self.settings = settings
        self.max_batch = settings.max_batch
        self._clock = clock or SystemClock()
        self._zone = ZoneInfo(settings.timezone)
        base = settings.base_url.rstrip("/")
        self._path = f"{base}/2013-12-26/Accounts/{settings.account_sid}/SMS/TemplateSMS"

    def __repr__(self) -> str:
        return f"RonglianProvider(name={self.name!r}, account_sid={self.settings.account_sid!r})"

    def can_reach(self, mobile: Mobile) -> bool:
        regions = self.settings.regions
        return regions == "all" or (regions == "mainland") == mobile.is_mainland

    def render(self, request: RenderRequest) -> Rendered | None:
        if request.template is None:
            return None  # templates only
        options = request.template.provider_options.get(self.name, {})
        template_id = options.get("template_id")
        if template_id is None or options.get("approved", True) is False:
            return None
        names = options.get("params", [])
        if not isinstance(names, list):
            raise TypeError(f"templates.{request.template.key}.providers.{self.name}.params")
        try:
            datas = tuple(str(request.params[str(n)]) for n in names)
        except KeyError as exc:
            raise MissingParamError(request.template.key, str(exc.args[0])) from None
        return Rendered(template_id=str(template_id), template_params=datas)

    def timestamp(self) -> str:
        return self._clock.now().astimezone(self._zone).strftime("%Y%m%d%H%M%S")

    def build_request(self, batch: Batch) -> httpx.Request:
        if not 1 <= len(batch.mobiles) <= self.max_batch:
            raise ValueError(f"batch of {len(batch.mobiles)} outside 1..{self.max_batch}")
        if len(batch.request_id) > MAX_REQ_ID:
            raise ValueError(f"reqId longer than {MAX_REQ_ID} characters")
        if batch.rendered.template_id is None:
            raise ValueError("Ronglian sends templates only: the batch has no template_id")
        s, ts = self.settings, self.timestamp()
        sig = signature(s.account_sid, secret(s.auth_token), ts)
        body: dict[str, Any] = {
            "to": ",".join(international(m) for m in batch.mobiles),
            "appId": s.app_id,
            "templateId": batch.rendered.template_id,
            "datas": list(batch.rendered.template_params),
            "reqId": batch.request_id,
        }
        if s.sub_append:
            body["subAppend"] = s.sub_append
        headers = {
            "Accept": "application/json",
            "Content-Type": "application/json;charset=utf-8",
            "Authorization": authorization(s.account_sid, ts),
        }
        return httpx.Request(
            "POST", self._path, params={"sig": sig}, headers=headers, content=orjson.dumps(body)
        )

    def parse_response(self, batch: Batch, response: httpx.Response) -> AttemptResult:
        status = response.status_code
        if not response.is_success:
            verdict, fault = status_fault(response) or (Verdict.UNKNOWN, None)
            return AttemptResult.uniform(self.name, batch, verdict, fault=fault, http_status=status)
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("statusCode"), str):
            return malformed(self.name, batch, response, "body has no statusCode")
        code = body["statusCode"]
        if code == SUCCESS:
            sms = body.get("templateSMS")
            sid = sms.get("smsMessageSid") if isinstance(sms, dict) else None
            if not isinstance(sid, str) or not sid.strip():
                return malformed(self.name, batch, response, "accepted without smsMessageSid")
            return AttemptResult.uniform(
                self.name, batch, Verdict.ACCEPTED, message_id=sid.strip(), http_status=status
            )
        detail = str(body.get("statusMsg") or "refused")[:200]
        fault = Fault(classify_code(code), ErrorClass.REFUSED, code, detail)
        if fault.kind is FaultKind.CREDENTIALS:
            fault = Fault(fault.kind, ErrorClass.AUTH, code, detail)
        return AttemptResult.uniform(
            self.name, batch, Verdict.REJECTED, fault=fault, http_status=status
        )

    def parse_receipt_push(self, body: bytes) -> DeliveryReport | InboundMessage:
        """An ``SMSArrived`` push (unverified format): a receipt, or a reply when smsType is 0."""
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise ProviderResponseError("receipt push is not valid JSON") from None
        req = parsed.get("Request") if isinstance(parsed, dict) else None
        if not isinstance(req, dict):
            raise ProviderResponseError("receipt push has no Request object")
        mobile = str(req.get("fromNum") or "")
        if str(req.get("smsType")) == "0":
            return InboundMessage(self.name, mobile, str(req.get("content") or ""), None, None)
        sid = req.get("content")
        if not sid:
            raise ProviderResponseError("receipt push has no content (smsMessageSid)")
        delivered = str(req.get("status")) == "0"
        return DeliveryReport(
            provider=self.name,
            provider_message_id=str(sid).strip(),
            mobile=mobile,
            status=DeliveryStatus.DELIVERED if delivered else DeliveryStatus.FAILED,
            status_code=str(req.get("deliverCode") or req.get("status") or ""),
            at=_parse_ts(req.get("recvTime"), self._zone),
        )


def signature(account_sid: str, auth_token: str, ts: str) -> str:
    raw = f"{account_sid}{auth_token}{ts}".encode()
    return hashlib.md5(raw, usedforsecurity=False).hexdigest().upper()


def authorization(account_sid: str, ts: str) -> str:
    return base64.b64encode(f"{account_sid}:{ts}".encode()).decode()


def international(mobile: Mobile) -> str:
    """Mainland numbers as 11 digits; others as ``00`` + country code + number (cloopen)."""
    return mobile.national if mobile.is_mainland else f"00{mobile.country_code}{mobile.national}"


def _parse_ts(value: object, zone: ZoneInfo) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.strptime(value, "%Y%m%d%H%M%S").replace(tzinfo=zone)
    except ValueError:
        return None
