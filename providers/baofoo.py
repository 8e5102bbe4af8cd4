"""Baofoo (Mandao) SMS gateway: ``POST /sendSms``.

Wire facts (shared/specs): the document's table says ``multipart/form-data``, but its own
Python client sends ``data=payload`` with httpx, i.e. ``application/x-www-form-urlencoded``
(UTF-8, percent-encoded). That client is the only request known to work, so ``form`` is the
default; ``multipart`` stays available, each part marked ``text/plain; charset=UTF-8`` so a
server never has to guess the charset of Chinese content. Success is
``success == true and result > 0``; anything else is a refusal with ``errorCode``/``errorMsg``.
No per-request batch limit is documented: ``max_batch`` is configurable (default 200) and
never exceeded. ``areaCode`` is required for numbers outside mainland China, so a request never
mixes areas (see :meth:`BaofooProvider.batch_key`). The gateway answers per request, not per
number.

Where the document is silent, nothing it doesn't ask for is sent: ``regTime`` ("请求时间",
optional, no format given) only with ``reg_time_format``. ``domain`` left out means "测试"
(test) at the gateway, so it is required with ``environment = "production"``. The scene
table's ``sendType``/``businessType`` apply to the documented scenes unless a template says
otherwise; values outside the documented enums are refused at config load.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import ClassVar, Literal
from zoneinfo import ZoneInfo

import httpx
import orjson
from pydantic import Field, SecretStr, model_validator

from providers.base import (
    AttemptResult,
    Batch,
    ErrorClass,
    Fault,
    FaultKind,
    Mobile,
    Rendered,
    RenderRequest,
    Verdict,
    render_content,
)
from providers.clock import Clock, SystemClock
from providers.errors import MissingParamError
from providers.http import http_failure, malformed
from providers.settings import ProviderSettings, TemplateOptions, TemplateOptionsModel, secret
from providers.wire import Response, WireRequest, form_request, multipart_request

ENVIRONMENT_URLS = {
    "test": "http://10.254.90.70:8000",
    "pre": "https://qas-sms.mandao.com",
    "production": "https://sms.mandao.com",
}


@dataclass(frozen=True, slots=True)
class Scene:
    """A row of the document's scene table."""

    send_type: int
    business_type: int
    content: str


_CST = ZoneInfo("Asia/Shanghai")  # regTime (when sent) is the gateway's local time
PART_TYPE = "text/plain; charset=UTF-8"

# The document's scene table (平台短信场景映射), content copied as written.
SCENES: dict[str, Scene] = {
    "login_code": Scene(1, 4, "您的登录验证码为 {code},30分钟内有效,请勿泄露。"),
    "register_code": Scene(1, 4, "您的注册验证码为 {code},30分钟内有效,请勿泄露。"),
    "password_reset": Scene(3, 4, "您的重置密码验证码为 {code},30分钟内有效。"),
    "recharge_success": Scene(3, 2, "您已成功充值 {amount} 元,当前余额 {balance} 元。"),
    "low_balance": Scene(3, 4, "您的账户余额仅剩 {balance} 元,请及时充值以免影响使用。"),
    "membership_expiry": Scene(3, 4, "您的{plan}会员将于 {date} 到期,请及时续费。"),
}

# errorCode -> whose fault. Only SMS_001 is documented; the rest are unknown and so count as
# provider faults (fail over, feed the breaker).
ERROR_CODES: dict[str, FaultKind] = {
    "SMS_001": FaultKind.MESSAGE,  # 手机号格式不正确: bad mobile format
}


SEND_TYPES = range(1, 4)  # the document's sendType enum: 1, 2, 3 (default)
BUSINESS_TYPES = range(1, 5)  # the document's businessType enum: 1..4
PRODUCTION_HOST = "sms.mandao.com"


class BaofooTemplateOptions(TemplateOptions):
    """``[templates.<scene>.providers.<baofoo>]``: the document's enums, checked at load."""

    send_type: int | None = Field(default=None, ge=1, le=3, description="sendType (1-3)")
    business_type: int | None = Field(default=None, ge=1, le=4, description="businessType (1-4)")


class BaofooSettings(ProviderSettings):
    """``[providers.<name>]`` with ``type = "baofoo"``.

    ``base_url`` may be left empty when ``environment`` names one of the documented URLs.
    """

    template_options: ClassVar[TemplateOptionsModel] = BaofooTemplateOptions

    type: Literal["baofoo"] = "baofoo"
    base_url: str = ""
    environment: Literal["test", "pre", "production"] | None = None
    user_name: SecretStr
    user_pass: SecretStr
    path: str = "/sendSms"
    encoding: Literal["multipart", "form"] = Field(
        default="form", description="form: as the document's own client sends; or multipart"
    )
    domain: str | None = Field(
        default=None,
        description="application name (domain field); unset means 'test' at the gateway",
    )
    reg_time_format: str | None = Field(
        default=None,
        description=(
            "send regTime (China time) in this strftime format, e.g. '%Y-%m-%d %H:%M:%S'; "
            "unset: not sent (the document gives no format)"
        ),
    )
    sing_code: str | None = Field(default=None, description="signature code (singCode)")
    member_id: str | None = None
    sender_id: str | None = None
    sms_business: str | None = None
    send_type: int = Field(default=3, ge=1, le=3)
    business_type: int = Field(default=4, ge=1, le=4)
    separator: Literal[",", ";"] = ","
    max_batch: int = Field(default=200, ge=1)

    @model_validator(mode="after")
    def _url(self) -> BaofooSettings:
        if not self.base_url:
            if self.environment is None:
                raise ValueError("set base_url or environment (test, pre, production)")
            object.__setattr__(self, "base_url", ENVIRONMENT_URLS[self.environment])
        production = self.environment == "production" or (
            httpx.URL(self.base_url).host == PRODUCTION_HOST
        )
        if production and not (self.domain or "").strip():
            raise ValueError(
                "domain is required for the production gateway: left out, Baofoo files the "
                "messages under '测试' (test); set domain to your application name"
            )
        return self


class BaofooProvider:
    """Adapter for one Baofoo account."""

    kind: ClassVar[str] = "baofoo"
    receipts: ClassVar[bool] = False  # the mandao API has neither receipt pushes nor pulls

    def __init__(self, name: str, settings: BaofooSettings, clock: Clock | None = None) -> None:
        self.name = name
        self.settings = settings
        self.max_batch = settings.max_batch
        self._clock = clock or SystemClock()
        self._url = settings.base_url.rstrip("/") + settings.path

    def __repr__(self) -> str:
        return f"BaofooProvider(name={self.name!r}, url={self._url!r})"

    def can_reach(self, mobile: Mobile) -> bool:
        return self.settings.reaches(mobile)

    def batch_key(self, mobile: Mobile) -> str:
        """One ``areaCode`` per request: recipients are batched by country code."""
        return f"+{mobile.country_code}"

    def render(self, request: RenderRequest) -> Rendered | None:
        s = self.settings
        send_type, business_type = s.send_type, s.business_type
        if request.template is None:
            content = request.content or ""
        else:
            documented = SCENES.get(request.template.key)
            if documented is not None:  # the document's scene table, unless the template says
                send_type, business_type = documented.send_type, documented.business_type
            options = request.template.provider_options.get(self.name, {})
            if options.get("approved", True) is False or request.template.content is None:
                return None
            text = str(options.get("content", request.template.content))
            try:
                content = render_content(text, request.params)
            except KeyError as exc:
                raise MissingParamError(request.template.key, str(exc.args[0])) from None
            send_type = int(str(options.get("send_type", send_type)))
            business_type = int(str(options.get("business_type", business_type)))
        if s.signature and not content.startswith(s.signature):
            content = s.signature + content
        return Rendered(
            content=content,
            options={"sendType": str(send_type), "businessType": str(business_type)},
        )

    def build_request(self, batch: Batch) -> WireRequest:
        if not 1 <= len(batch.mobiles) <= self.max_batch:
            raise ValueError(f"batch of {len(batch.mobiles)} outside 1..{self.max_batch}")
        areas = {self.batch_key(m) for m in batch.mobiles}
        if len(areas) != 1:
            raise ValueError(f"a Baofoo request takes one areaCode, got {sorted(areas)}")
        fields = self._fields(batch, areas.pop())
        if self.settings.encoding == "form":
            return form_request(self._url, fields)
        # httpx sends multipart when given files; a field-only multipart body needs this form.
        # Each part names its charset: Chinese content must not be left to a server default.
        parts = {k: (None, v.encode(), PART_TYPE) for k, v in fields.items()}
        return multipart_request(self._url, parts)

    def _fields(self, batch: Batch, area: str) -> dict[str, str]:
        s, rendered = self.settings, batch.rendered
        optional = {
            "domain": s.domain,
            "singCode": s.sing_code,
            "sms_business": s.sms_business,
            "memberId": s.member_id,
            "senderId": s.sender_id,
            # Mainland numbers need no areaCode; sending "+86" is harmless but undocumented.
            "areaCode": None if area == "+86" else area,
        }
        fields = {
            "userName": secret(s.user_name),
            "userPass": secret(s.user_pass),
            "mobile": s.separator.join(m.national for m in batch.mobiles),
            "content": rendered.content or "",
            "sendType": rendered.options.get("sendType", str(s.send_type)),
            "businessType": rendered.options.get("businessType", str(s.business_type)),
            "requestId": batch.request_id or uuid.uuid4().hex,
        }
        if s.reg_time_format:
            fields["regTime"] = self._clock.now().astimezone(_CST).strftime(s.reg_time_format)
        fields.update({k: v for k, v in optional.items() if v})
        return fields

    def parse_response(self, batch: Batch, response: Response) -> AttemptResult:
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            body = None
        if not response.is_success:
            if isinstance(body, dict) and body.get("errorCode") and response.status_code < 500:
                return self._refused(batch, body, response.status_code)
            return http_failure(self.name, batch, response)
        if not isinstance(body, dict) or not isinstance(body.get("success"), bool):
            return malformed(self.name, batch, response, "body is not Baofoo's JSON object")
        result = body.get("result")
        if result is not None and (not isinstance(result, int) or isinstance(result, bool)):
            return malformed(self.name, batch, response, "result is not an integer")
        if body["success"] is True and (result or 0) > 0:
            return AttemptResult.uniform(
                self.name,
                batch,
                Verdict.ACCEPTED,
                message_id=batch.request_id,
                http_status=response.status_code,
            )
        return self._refused(batch, body, response.status_code)

    def _refused(self, batch: Batch, body: dict[str, object], status: int) -> AttemptResult:
        code = str(body.get("errorCode") or "") or None
        kind = ERROR_CODES.get(code or "", FaultKind.PROVIDER)
        detail = str(body.get("errorMsg") or "refused without an error message")[:200]
        fault = Fault(kind, ErrorClass.REFUSED, code=code, detail=detail)
        return AttemptResult.uniform(
            self.name, batch, Verdict.REJECTED, fault=fault, http_status=status
        )
