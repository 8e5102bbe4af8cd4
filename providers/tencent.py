"""Tencent Cloud SMS (API 3.0, version 2021-01-11) ``SendSms``.

``POST {base}/`` (``https://sms.tencentcloudapi.com``) with a JSON body and the action in
headers: ``X-TC-Action``, ``X-TC-Version: 2021-01-11``, ``X-TC-Timestamp`` (Unix seconds),
``X-TC-Region`` and ``Authorization: TC3-HMAC-SHA256 Credential=<SecretId>/<date>/sms/
tc3_request, SignedHeaders=content-type;host, Signature=<hex>``, signed as the official SDK
(``tencentcloud-sdk-python-common``) signs. See ``providers/specs/tencent.md``.

Body as the Python SDK writes it (``json.dumps`` defaults, its field order), so that the same
message at the same second carries the same signature: ``PhoneNumberSet`` (E.164, at most
200, all mainland or all international: :meth:`TencentProvider.batch_key` keeps them apart),
``SmsSdkAppId``, ``TemplateId``, ``SignName``, ``TemplateParamSet``, optional ``ExtendCode``,
and ``SessionContext`` = our request id (echoed per number and in pulled reports).

Templates only. The answer is per number (``SendStatusSet``, ``Code`` "Ok" or an error
code), or a request-level ``Response.Error``; both always with HTTP 200.

Secrets: the SecretKey only enters the HMAC; the SecretId is sent in ``Authorization`` (as
the protocol requires) but never in reprs, faults or logs.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

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
    PushAck,
    RecipientResult,
    Rendered,
    RenderRequest,
    Verdict,
)
from providers.clock import Clock, SystemClock
from providers.errors import MissingParamError, ProviderResponseError
from providers.http import http_failure, malformed
from providers.settings import ProviderSettings, TemplateOptions, TemplateOptionsModel, secret
from providers.wire import Response, WireRequest

MAX_NUMBERS = 200
MAX_PULL = 100
VERSION = "2021-01-11"
SERVICE = "sms"
ALGORITHM = "TC3-HMAC-SHA256"
CONTENT_TYPE = "application/json"
SIGNED_HEADERS = "content-type;host"
OK = "Ok"
CHINA = ZoneInfo("Asia/Shanghai")
PUSH_ACK = b'{"result":0,"errmsg":"OK"}'

_C, _M, _P = FaultKind.CREDENTIALS, FaultKind.MESSAGE, FaultKind.PROVIDER
# Error code -> whose fault (names from the SDK's errorcodes.py; meanings from the error
# pages cited in the spec). Prefix rules in classify_code cover the rest.
ERROR_CODES: dict[str, FaultKind] = {
    # The account, app or its balance: an operator must act.
    "InvalidParameterValue.SdkAppIdNotExist": _C,
    "FailedOperation.InsufficientBalanceInSmsPackage": _C,
    "FailedOperation.NotEnterpriseCertification": _C,
    "FailedOperation.ProhibitSubAccountUse": _C,
    "LimitExceeded.AppDailyLimit": _C,
    "LimitExceeded.AppGlobalDailyLimit": _C,
    "LimitExceeded.AppMainlandChinaDailyLimit": _C,
    "LimitExceeded.AppCountryOrRegionDailyLimit": _C,
    "LimitExceeded.DailyLimit": _C,
    # The message as sent cannot be carried (another provider would not fix the number,
    # and per-number limits must not be dodged by failing over).
    "FailedOperation.SignatureIncorrectOrUnapproved": _M,
    "FailedOperation.TemplateIncorrectOrUnapproved": _M,
    "FailedOperation.TemplateUnapprovedOrNotExist": _M,
    "FailedOperation.TemplateIdNotExist": _M,
    "FailedOperation.TemplateParamSetNotMatchApprovedTemplate": _M,
    "FailedOperation.ContainSensitiveWord": _M,
    "FailedOperation.PhoneNumberInBlacklist": _M,
    "FailedOperation.PhoneNumberParseFail": _M,
    "FailedOperation.MissingSignature": _M,
    "FailedOperation.MarketingSendTimeConstraint": _M,
    "InvalidParameterValue.IncorrectPhoneNumber": _M,
    "InvalidParameterValue.ContentLengthLimit": _M,
    "InvalidParameterValue.TemplateParameterFormatError": _M,
    "InvalidParameterValue.TemplateParameterLengthLimit": _M,
    "InvalidParameterValue.ProhibitedUseUrlInTemplateParameter": _M,
    "InvalidParameter.DirtyWordFound": _M,
    "LimitExceeded.PhoneNumberDailyLimit": _M,
    "LimitExceeded.PhoneNumberOneHourLimit": _M,
    "LimitExceeded.PhoneNumberThirtySecondLimit": _M,
    "LimitExceeded.PhoneNumberSameContentDailyLimit": _M,
    "LimitExceeded.DeliveryFrequencyLimit": _M,
    "LimitExceeded.AppCountryOrRegionInBlacklist": _M,
    "UnsupportedOperation.ChineseMainlandTemplateToGlobalPhone": _M,
    "UnsupportedOperation.GlobalTemplateToChineseMainlandPhone": _M,
    # Our own bugs (the adapter never builds these): fail over, count against the breaker.
    "LimitExceeded.PhoneNumberCountLimit": _P,
    "UnsupportedOperation.ContainDomesticAndInternationalPhoneNumber": _P,
    "MissingParameter.EmptyPhoneNumberSet": _P,
}
# The platform may have handed the message on before failing (a timeout towards the carrier):
# the outcome is unknown, never a refusal to fail over on.
UNKNOWN_CODES = frozenset(
    {"InternalError.Timeout", "InternalError.SendAndRecvFail", "InternalError.UnknownError"}
)


def classify_code(code: str) -> FaultKind:
    """Whose fault an error code is; unknown codes are the provider's."""
    if code in ERROR_CODES:
        return ERROR_CODES[code]
    if code.startswith(("AuthFailure", "UnauthorizedOperation")):
        return FaultKind.CREDENTIALS
    return FaultKind.PROVIDER


class TencentTemplateOptions(TemplateOptions):
    """``[templates.<scene>.providers.<tencent>]``: the approved template and its params."""

    template_id: str | int | None = Field(
        default=None, description="TemplateId at Tencent; unset: this scene is not sent here"
    )
    params: list[str] = Field(
        default_factory=list, description="the message params that fill TemplateParamSet"
    )


class TencentSettings(ProviderSettings):
    """``[providers.<name>]`` with ``type = "tencent"``."""

    template_options: ClassVar[TemplateOptionsModel] = TencentTemplateOptions

    type: Literal["tencent"] = "tencent"
    base_url: str = "https://sms.tencentcloudapi.com"
    secret_id: SecretStr
    secret_key: SecretStr
    sdk_app_id: str = Field(min_length=1, description="SmsSdkAppId, e.g. 1400006666")
    sign_name: str = Field(default="", description="approved SignName (mainland: required)")
    region: str = Field(default="ap-guangzhou", min_length=1)
    extend_code: str | None = Field(default=None, pattern=r"^\d{1,8}$")
    max_batch: int = Field(default=MAX_NUMBERS, ge=1, le=MAX_NUMBERS)


class TencentProvider:
    """Adapter for one Tencent Cloud SMS app (templates only)."""

    kind: ClassVar[str] = "tencent"
    receipts: ClassVar[bool] = True  # status pushes and PullSmsSendStatus
    push_kinds: ClassVar[frozenset[str]] = frozenset({"receipt"})

    def __init__(self, name: str, settings: TencentSettings, clock: Clock | None = None) -> None:
        self.name = name
        self.settings = settings
        self.max_batch = settings.max_batch
        self._clock = clock or SystemClock()
        self._url = settings.base_url.rstrip("/") + "/"
        self._host = urlsplit(self._url).netloc

    def __repr__(self) -> str:
        return f"TencentProvider(name={self.name!r}, sdk_app_id={self.settings.sdk_app_id!r})"

    def can_reach(self, mobile: Mobile) -> bool:
        return self.settings.reaches(mobile)

    def batch_key(self, mobile: Mobile) -> str:
        """One request is all mainland or all international numbers."""
        return "mainland" if mobile.is_mainland else "international"

    def render(self, request: RenderRequest) -> Rendered | None:
        """``TemplateId`` + ordered ``TemplateParamSet``; None for free content, a scene
        without a ``template_id`` here, or one marked ``approved = false``."""
        if request.template is None:
            return None
        options = request.template.provider_options.get(self.name, {})
        template_id = options.get("template_id")
        if template_id is None or options.get("approved", True) is False:
            return None
        names = options.get("params", [])
        if not isinstance(names, list | tuple):
            raise TypeError(f"templates.{request.template.key}.providers.{self.name}.params")
        try:
            params = tuple(str(request.params[str(n)]) for n in names)
        except KeyError as exc:
            raise MissingParamError(request.template.key, str(exc.args[0])) from None
        return Rendered(template_id=str(template_id), template_params=params)

    # -- requests ------------------------------------------------------------------------

    def _signed(self, action: str, fields: dict[str, Any]) -> WireRequest:
        body = json.dumps(fields).encode()  # byte for byte as the Python SDK writes it
        ts = int(self._clock.now().timestamp())
        s = self.settings
        auth = authorization(
            secret(s.secret_id), secret(s.secret_key), self._host, ts, body, CONTENT_TYPE
        )
        headers = (
            ("Content-Type", CONTENT_TYPE),
            ("X-TC-Action", action),
            ("X-TC-Version", VERSION),
            ("X-TC-Timestamp", str(ts)),
            ("X-TC-Region", s.region),
            ("Authorization", auth),
        )
        return WireRequest("POST", self._url, headers, body)

    def build_request(self, batch: Batch) -> WireRequest:
        """The signed SendSms request (pure). Refuses batches Tencent would refuse."""
        if not 1 <= len(batch.mobiles) <= self.max_batch:
            raise ValueError(f"batch of {len(batch.mobiles)} outside 1..{self.max_batch}")
        if len({m.is_mainland for m in batch.mobiles}) > 1:
            raise ValueError("mainland and international numbers in one batch")
        if batch.rendered.template_id is None:
            raise ValueError("Tencent sends templates only: the batch has no template_id")
        s = self.settings
        fields: dict[str, Any] = {
            "PhoneNumberSet": [m.e164 for m in batch.mobiles],
            "SmsSdkAppId": s.sdk_app_id,
            "TemplateId": batch.rendered.template_id,
        }
        if s.sign_name:
            fields["SignName"] = s.sign_name
        fields["TemplateParamSet"] = list(batch.rendered.template_params)
        if s.extend_code:
            fields["ExtendCode"] = s.extend_code
        fields["SessionContext"] = batch.request_id
        return self._signed("SendSms", fields)

    def build_report_request(self) -> WireRequest:
        """``PullSmsSendStatus`` of up to 100 queued statuses (each is pulled once)."""
        return self._signed(
            "PullSmsSendStatus", {"Limit": MAX_PULL, "SmsSdkAppId": self.settings.sdk_app_id}
        )

    # -- answers -------------------------------------------------------------------------

    def parse_response(self, batch: Batch, response: Response) -> AttemptResult:
        """Per number from ``SendStatusSet``; a ``Response.Error`` refuses the whole batch."""
        status = response.status_code
        if not response.is_success:
            return http_failure(self.name, batch, response)
        body = _response_object(response.content)
        if body is None:
            return malformed(self.name, batch, response, "body has no Response object")
        error = body.get("Error")
        if error is not None:
            if not isinstance(error, dict) or not isinstance(error.get("Code"), str):
                return malformed(self.name, batch, response, "Error without a Code")
            code = error["Code"]
            verdict = Verdict.UNKNOWN if code in UNKNOWN_CODES else Verdict.REJECTED
            fault = self._fault(code, error.get("Message"))
            return AttemptResult.uniform(self.name, batch, verdict, fault=fault, http_status=status)
        statuses = body.get("SendStatusSet")
        if not isinstance(statuses, list) or not all(isinstance(x, dict) for x in statuses):
            return malformed(self.name, batch, response, "no SendStatusSet")
        by_number: dict[str, dict[str, Any]] = {}
        for item in statuses:
            by_number.setdefault(str(item.get("PhoneNumber")), item)
        recipients = tuple(self._recipient(m, by_number.get(m.e164)) for m in batch.mobiles)
        verdicts = {r.verdict for r in recipients}
        if Verdict.ACCEPTED in verdicts:
            return AttemptResult(self.name, Verdict.ACCEPTED, recipients, http_status=status)
        verdict = Verdict.UNKNOWN if Verdict.UNKNOWN in verdicts else Verdict.REJECTED
        first = next(r.fault for r in recipients if r.verdict is verdict)
        return AttemptResult(self.name, verdict, recipients, fault=first, http_status=status)

    def _recipient(self, mobile: Mobile, item: dict[str, Any] | None) -> RecipientResult:
        if item is None:  # a number the answer does not mention: it may have been sent
            fault = Fault(FaultKind.PROVIDER, ErrorClass.MALFORMED, detail="number not answered")
            return RecipientResult(mobile, Verdict.UNKNOWN, fault=fault)
        code = item.get("Code")
        serial = item.get("SerialNo")
        if code == OK:
            if not isinstance(serial, str) or not serial:
                fault = Fault(FaultKind.PROVIDER, ErrorClass.MALFORMED, detail="Ok, no SerialNo")
                return RecipientResult(mobile, Verdict.UNKNOWN, fault=fault)
            return RecipientResult(mobile, Verdict.ACCEPTED, provider_message_id=serial)
        if not isinstance(code, str) or not code:
            fault = Fault(FaultKind.PROVIDER, ErrorClass.MALFORMED, detail="status without Code")
            return RecipientResult(mobile, Verdict.UNKNOWN, fault=fault)
        verdict = Verdict.UNKNOWN if code in UNKNOWN_CODES else Verdict.REJECTED
        return RecipientResult(mobile, verdict, fault=self._fault(code, item.get("Message")))

    def _fault(self, code: str, message: object) -> Fault:
        detail = str(message or "refused")[:200]
        for value in (secret(self.settings.secret_key), secret(self.settings.secret_id)):
            if value and value in detail:  # an echoed credential must never reach a log line
                detail = detail.replace(value, "***")
        kind = classify_code(code)
        error_class = ErrorClass.AUTH if kind is FaultKind.CREDENTIALS else ErrorClass.REFUSED
        return Fault(kind, error_class, code, detail)

    def parse_report(self, response: Response) -> list[DeliveryReport]:
        """The ``PullSmsSendStatusSet``; raises ProviderResponseError when refused or unreadable."""
        if not response.is_success:
            raise ProviderResponseError(f"PullSmsSendStatus answered HTTP {response.status_code}")
        body = _response_object(response.content)
        if body is None:
            raise ProviderResponseError("PullSmsSendStatus answer has no Response object")
        error = body.get("Error")
        if error is not None:
            code = error.get("Code") if isinstance(error, dict) else None
            raise ProviderResponseError(f"PullSmsSendStatus refused with code {code!r}")
        items = body.get("PullSmsSendStatusSet")
        if not isinstance(items, list) or not all(isinstance(x, dict) for x in items):
            raise ProviderResponseError("PullSmsSendStatus answer has no PullSmsSendStatusSet")
        return [
            self._report(
                x.get("SerialNo"),
                x.get("PhoneNumber") or x.get("SubscriberNumber"),
                x.get("ReportStatus"),
                x.get("Description"),
                x.get("UserReceiveTime"),
                x.get("SessionContext"),
            )
            for x in items
        ]

    def parse_push(
        self, kind: str, body: bytes, content_type: str
    ) -> Sequence[DeliveryReport | InboundMessage]:
        """A status push: a JSON array of reports (``sid`` = the send's ``SerialNo``)."""
        try:
            items = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise ProviderResponseError("status push is not valid JSON") from None
        if not isinstance(items, list) or not all(isinstance(x, dict) for x in items):
            raise ProviderResponseError("status push is not a JSON array of objects")
        return [
            self._report(
                x.get("sid"),
                x.get("mobile"),
                x.get("report_status"),
                x.get("errmsg"),
                x.get("user_receive_time"),
            )
            for x in items
        ]

    def push_ack(self, kind: str) -> PushAck:
        return PushAck(PUSH_ACK, "application/json")

    def _report(
        self,
        sid: object,
        mobile: object,
        status: object,
        code: object,
        at: object,
        session: object = None,
    ) -> DeliveryReport:
        if not isinstance(sid, str) or not sid:
            raise ProviderResponseError("status report without SerialNo/sid")
        if status not in ("SUCCESS", "FAIL"):
            raise ProviderResponseError(f"status report with report_status {status!r}")
        return DeliveryReport(
            provider=self.name,
            provider_message_id=sid,
            mobile=str(mobile or ""),
            status=DeliveryStatus.DELIVERED if status == "SUCCESS" else DeliveryStatus.FAILED,
            status_code=str(code or status),
            at=_china_time(at),
            # SessionContext carries our request id: a pull settles an unknown attempt by it.
            request_id=session if isinstance(session, str) and session else None,
        )


def _response_object(content: bytes) -> dict[str, Any] | None:
    try:
        parsed = orjson.loads(content)
    except orjson.JSONDecodeError:
        return None
    body = parsed.get("Response") if isinstance(parsed, dict) else None
    return body if isinstance(body, dict) else None


def _china_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%d %H:%M:%S").replace(tzinfo=CHINA)
    except ValueError:
        return None


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def signature(secret_key: str, host: str, timestamp: int, body: bytes, content_type: str) -> str:
    """TC3-HMAC-SHA256 of a ``POST /`` signing ``content-type`` and ``host``. Never log it."""
    date = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")
    canonical = (
        f"POST\n/\n\ncontent-type:{content_type}\nhost:{host}\n\n{SIGNED_HEADERS}\n"
        + hashlib.sha256(body).hexdigest()
    )
    scope = f"{date}/{SERVICE}/tc3_request"
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    to_sign = f"{ALGORITHM}\n{timestamp}\n{scope}\n{digest}"
    key = _hmac(_hmac(_hmac(f"TC3{secret_key}".encode(), date), SERVICE), "tc3_request")
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def authorization(
    secret_id: str, secret_key: str, host: str, timestamp: int, body: bytes, content_type: str
) -> str:
    """The ``Authorization`` header value."""
    date = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")
    sig = signature(secret_key, host, timestamp, body, content_type)
    return (
        f"{ALGORITHM} Credential={secret_id}/{date}/{SERVICE}/tc3_request, "
        f"SignedHeaders={SIGNED_HEADERS}, Signature={sig}"
    )
