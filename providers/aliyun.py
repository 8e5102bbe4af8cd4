"""Aliyun SMS (Dysmsapi 2017-05-25) SendSms.

``POST {base}/?OutId=..&PhoneNumbers=..&SignName=..&TemplateCode=..&TemplateParam=..`` (RPC
style, parameters in the query, empty body), signed as the current official SDK
(``alibabacloud-dysmsapi20170525`` 4.x on ``alibabacloud-tea-openapi`` 0.4.x) signs by
default: ``Authorization: ACS3-HMAC-SHA256 Credential=<AccessKeyId>,SignedHeaders=<names>,
Signature=<hex HMAC-SHA256 of the string to sign>``, with ``x-acs-action``,
``x-acs-version``, ``x-acs-date`` (UTC ``yyyy-MM-ddTHH:mm:ssZ``), ``x-acs-signature-nonce``
and ``x-acs-content-sha256`` headers. See ``providers/specs/aliyun.md``.

``PhoneNumbers``: at most 1000, comma-separated (mainland: 11 digits; others: country code +
number, no ``00``). Templates only: ``TemplateCode`` and the
JSON object ``TemplateParam``. ``OutId`` carries our request id (it comes back in receipts).
The answer is per request (one ``BizId``); per-number problems surface in receipts.

SendSms is not idempotent (Aliyun has no request-id deduplication): an unknown outcome must
be settled from receipts or QuerySendDetails, never by a blind resend.

Secrets: the AccessKey secret only ever enters the HMAC; the AccessKeyId is sent in the
``Authorization`` header (as the protocol requires) but never in reprs, faults or logs.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal
from urllib.parse import quote, urlencode, urlsplit
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
    Rendered,
    RenderRequest,
    SentRecord,
    Verdict,
)
from providers.clock import Clock, SystemClock
from providers.errors import MissingParamError, ProviderResponseError
from providers.http import http_failure, malformed
from providers.settings import ProviderSettings, TemplateOptions, TemplateOptionsModel, secret
from providers.wire import Response, WireRequest

MAX_NUMBERS = 1000
QUERY_PAGE_SIZE = 50  # QuerySendDetails' largest page
VERSION = "2017-05-25"
ALGORITHM = "ACS3-HMAC-SHA256"
SUCCESS = "OK"
DATE_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
# The documented SmsReport answer: HTTP 200 with code 0, or Aliyun pushes again.
RECEIPT_ACK = b'{"code":0,"msg":"\xe6\x8e\xa5\xe6\x94\xb6\xe6\x88\x90\xe5\x8a\x9f"}'  # 接收成功
RECEIPT_ACK_MEDIA_TYPE = "application/json"
CHINA = ZoneInfo("Asia/Shanghai")

# Code -> whose fault. Meanings from the public error-code page
# (https://help.aliyun.com/document_detail/101346.html) and the OpenAPI gateway's codes;
# the split between MESSAGE / CREDENTIALS / PROVIDER is this adapter's judgement.
ERROR_CODES: dict[str, FaultKind] = {
    # The message as sent cannot be carried (anywhere, or not with this template).
    "isv.MOBILE_NUMBER_ILLEGAL": FaultKind.MESSAGE,
    "isv.SMS_TEMPLATE_ILLEGAL": FaultKind.MESSAGE,
    "isv.TEMPLATE_MISSING_PARAMETERS": FaultKind.MESSAGE,
    "isv.TEMPLATE_PARAMS_ILLEGAL": FaultKind.MESSAGE,
    "isv.INVALID_JSON_PARAM": FaultKind.MESSAGE,
    "isv.PARAM_LENGTH_LIMIT": FaultKind.MESSAGE,
    "isv.PARAM_NOT_SUPPORT_URL": FaultKind.MESSAGE,
    "isv.SMS_CONTENT_ILLEGAL": FaultKind.MESSAGE,
    "isv.BLACK_KEY_CONTROL_LIMIT": FaultKind.MESSAGE,
    "isv.SMS_SIGNATURE_SCENE_ILLEGAL": FaultKind.MESSAGE,
    "isv.DOMESTIC_NUMBER_NOT_SUPPORTED": FaultKind.MESSAGE,
    # Per-number flow control: failing over would only dodge the limit.
    "isv.BUSINESS_LIMIT_CONTROL": FaultKind.MESSAGE,
    # Account, signature or key set-up: an operator must act.
    "isv.SMS_SIGNATURE_ILLEGAL": FaultKind.CREDENTIALS,
    "isv.SIGN_STATE_ILLEGAL": FaultKind.CREDENTIALS,
    "isv.SMS_SIGN_ILLEGAL": FaultKind.CREDENTIALS,
    "isv.AMOUNT_NOT_ENOUGH": FaultKind.CREDENTIALS,
    "isv.OUT_OF_SERVICE": FaultKind.CREDENTIALS,
    "isv.ACCOUNT_NOT_EXISTS": FaultKind.CREDENTIALS,
    "isv.ACCOUNT_ABNORMAL": FaultKind.CREDENTIALS,
    "isv.PRODUCT_UN_SUBSCRIPT": FaultKind.CREDENTIALS,
    "isv.PRODUCT_UNSUBSCRIBE": FaultKind.CREDENTIALS,
    "isv.DAY_LIMIT_CONTROL": FaultKind.CREDENTIALS,
    "isv.MONTH_LIMIT_CONTROL": FaultKind.CREDENTIALS,
    "isv.DENY_IP_RANGE": FaultKind.CREDENTIALS,
    "isp.RAM_PERMISSION_DENY": FaultKind.CREDENTIALS,
    "InvalidAccessKeyId.NotFound": FaultKind.CREDENTIALS,
    "InvalidAccessKeyId.Inactive": FaultKind.CREDENTIALS,
    "SignatureDoesNotMatch": FaultKind.CREDENTIALS,
    "MissingAccessKeyId": FaultKind.CREDENTIALS,
    "Forbidden.RAM": FaultKind.CREDENTIALS,
    # Our own bugs or Aliyun's trouble: another provider can carry the message.
    "isv.MOBILE_COUNT_OVER_LIMIT": FaultKind.PROVIDER,
    "isv.INVALID_PARAMETERS": FaultKind.PROVIDER,
    "IncompleteSignature": FaultKind.PROVIDER,
    "InvalidTimeStamp.Expired": FaultKind.PROVIDER,  # our clock is off
    "SignatureNonceUsed": FaultKind.PROVIDER,
    "isp.SYSTEM_ERROR": FaultKind.PROVIDER,
    "isp.OUTER_CALL_FAILED": FaultKind.PROVIDER,
    "Throttling.User": FaultKind.PROVIDER,
    "Throttling.Api": FaultKind.PROVIDER,
    "ServiceUnavailable": FaultKind.PROVIDER,
}
# A used nonce means an earlier request with this very signature reached Aliyun (every
# build draws a fresh nonce, so only a transport-level resend repeats one): this copy was
# refused, the first may have been sent. UNKNOWN, so it never fails over into a double send.
UNKNOWN_CODES = frozenset({"SignatureNonceUsed"})


def classify_code(code: str) -> FaultKind:
    """Whose fault a non-OK ``Code`` is; unknown codes are the provider's."""
    if code in ERROR_CODES:
        return ERROR_CODES[code]
    if code.startswith(("InvalidAccessKey", "InvalidSecurityToken")):
        return FaultKind.CREDENTIALS
    return FaultKind.PROVIDER


class AliyunTemplateOptions(TemplateOptions):
    """``[templates.<scene>.providers.<aliyun>]``: the approved template and its variables."""

    template_code: str | None = Field(
        default=None, description="TemplateCode at Aliyun (SMS_...); unset: not sent here"
    )
    params: list[str] = Field(
        default_factory=list,
        description="message params put into TemplateParam, under the same names",
    )


class AliyunSettings(ProviderSettings):
    """``[providers.<name>]`` with ``type = "aliyun"``."""

    template_options: ClassVar[TemplateOptionsModel] = AliyunTemplateOptions

    type: Literal["aliyun"] = "aliyun"
    base_url: str = "https://dysmsapi.aliyuncs.com"
    access_key_id: SecretStr
    access_key_secret: SecretStr
    sign_name: str = Field(min_length=1, description="the approved SignName")
    max_batch: int = Field(default=MAX_NUMBERS, ge=1, le=MAX_NUMBERS)


def host_of(url: str) -> str:
    """The ``host`` header a client sends for ``url`` (default ports left out)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return host if parts.port in (None, default) else f"{host}:{parts.port}"


def canonical_query(params: dict[str, str]) -> str:
    """Sorted ``k=v``, both percent-encoded with only ``~`` (and unreserved) left as is."""
    return "&".join(f"{quote(k, safe='~')}={quote(v, safe='~')}" for k, v in sorted(params.items()))


def string_to_sign(
    method: str, path: str, query: dict[str, str], headers: dict[str, str], payload_sha256: str
) -> tuple[str, str]:
    """The V3 string to sign and the SignedHeaders list (``headers``: lower-case names)."""
    names = sorted(headers)
    canonical = "\n".join(
        (
            method,
            path or "/",
            canonical_query(query),
            "".join(f"{n}:{headers[n].strip()}\n" for n in names),
            ";".join(names),
            payload_sha256,
        )
    )
    return f"{ALGORITHM}\n{hashlib.sha256(canonical.encode()).hexdigest()}", ";".join(names)


def authorization(
    key_id: str,
    key_secret: str,
    method: str,
    path: str,
    query: dict[str, str],
    headers: dict[str, str],
    payload_sha256: str = EMPTY_SHA256,
) -> str:
    """The ``Authorization`` header value. Never log it (it names the key)."""
    text, signed = string_to_sign(method, path, query, headers, payload_sha256)
    signature = hmac.new(key_secret.encode(), text.encode(), hashlib.sha256).hexdigest()
    return f"{ALGORITHM} Credential={key_id},SignedHeaders={signed},Signature={signature}"


def _nonce() -> str:
    return uuid.uuid4().hex


class AliyunProvider:
    """Adapter for one Aliyun account and signature (templates only)."""

    kind: ClassVar[str] = "aliyun"
    receipts: ClassVar[bool] = True  # SmsReport pushes (and QuerySendDetails)
    push_kinds: ClassVar[frozenset[str]] = frozenset({"receipt"})

    def __init__(
        self,
        name: str,
        settings: AliyunSettings,
        clock: Clock | None = None,
        nonce: Callable[[], str] = _nonce,
    ) -> None:
        self.name = name
        self.settings = settings
        self.max_batch = settings.max_batch
        self._clock = clock or SystemClock()
        self._nonce = nonce
        self._url = settings.base_url.rstrip("/") + "/"
        self._host = host_of(self._url)

    def __repr__(self) -> str:
        return f"AliyunProvider(name={self.name!r}, sign_name={self.settings.sign_name!r})"

    def can_reach(self, mobile: Mobile) -> bool:
        """Region support from ``settings.regions``."""
        return self.settings.reaches(mobile)

    def render(self, request: RenderRequest) -> Rendered | None:
        """``TemplateCode`` + the ``TemplateParam`` JSON object; None for free content, for a
        scene without a ``template_code`` here, or one marked ``approved = false``."""
        if request.template is None:
            return None
        options = request.template.provider_options.get(self.name, {})
        code = options.get("template_code")
        if code is None or options.get("approved", True) is False:
            return None
        names = options.get("params", [])
        if not isinstance(names, list | tuple):
            raise TypeError(f"templates.{request.template.key}.providers.{self.name}.params")
        try:
            values = {str(n): str(request.params[str(n)]) for n in names}
        except KeyError as exc:
            raise MissingParamError(request.template.key, str(exc.args[0])) from None
        return Rendered(
            template_id=str(code),
            template_params=tuple(values.values()),
            options={"TemplateParam": orjson.dumps(values).decode()} if values else {},
        )

    def query_params(self, batch: Batch) -> dict[str, str]:
        """The SendSms parameters of ``batch``, in the SDK's (alphabetical) order."""
        if not 1 <= len(batch.mobiles) <= self.max_batch:
            raise ValueError(f"batch of {len(batch.mobiles)} outside 1..{self.max_batch}")
        if batch.rendered.template_id is None:
            raise ValueError("Aliyun sends templates only: the batch has no template_id")
        params = {
            "OutId": batch.request_id,
            "PhoneNumbers": ",".join(aliyun_number(m) for m in batch.mobiles),
            "SignName": self.settings.sign_name,
            "TemplateCode": batch.rendered.template_id,
        }
        template_param = batch.rendered.options.get("TemplateParam")
        if template_param:
            params["TemplateParam"] = template_param
        return params

    def build_request(self, batch: Batch) -> WireRequest:
        """The signed SendSms request (pure but for a fresh nonce)."""
        return self._signed("SendSms", self.query_params(batch))

    def build_send_query(self, mobile: Mobile, sent_at: datetime, page: int) -> WireRequest:
        """QuerySendDetails for ``mobile`` on ``sent_at``'s day in China time (Aliyun keeps
        30 days), ``QUERY_PAGE_SIZE`` records a page."""
        params = {
            "CurrentPage": str(page),
            "PageSize": str(QUERY_PAGE_SIZE),
            "PhoneNumber": aliyun_number(mobile),
            "SendDate": sent_at.astimezone(CHINA).strftime("%Y%m%d"),
        }
        return self._signed("QuerySendDetails", params)

    def parse_send_query(self, response: Response) -> tuple[list[SentRecord], int]:
        """The records of a QuerySendDetails answer (each with its ``OutId``) and the total;
        raises ProviderResponseError for a refusal or an unreadable answer."""
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise ProviderResponseError("QuerySendDetails answer is not JSON") from None
        if not isinstance(body, dict) or body.get("Code") != SUCCESS or not response.is_success:
            code = body.get("Code") if isinstance(body, dict) else None
            raise ProviderResponseError(
                f"QuerySendDetails refused (HTTP {response.status_code}, Code {code!r})"
            )
        dtos = body.get("SmsSendDetailDTOs")
        rows = dtos.get("SmsSendDetailDTO") if isinstance(dtos, dict) else None
        if not isinstance(rows, list):
            raise ProviderResponseError("QuerySendDetails answer has no SmsSendDetailDTO list")
        records = [
            SentRecord(str(row.get("OutId") or ""), row.get("BizId"), str(row.get("PhoneNum")))
            for row in rows
            if isinstance(row, dict)
        ]
        total = body.get("TotalCount")
        return records, int(total) if isinstance(total, int | str) and str(total).isdigit() else 0

    def _signed(self, action: str, params: dict[str, str]) -> WireRequest:
        """``POST /?params`` with an empty body, signed (ACS3-HMAC-SHA256) for ``action``."""
        signed = {
            "accept": "application/json",
            "host": self._host,
            "x-acs-action": action,
            "x-acs-content-sha256": EMPTY_SHA256,
            "x-acs-date": self._clock.now().astimezone(UTC).strftime(DATE_FORMAT),
            "x-acs-signature-nonce": self._nonce(),
            "x-acs-version": VERSION,
        }
        s = self.settings
        auth = authorization(
            secret(s.access_key_id), secret(s.access_key_secret), "POST", "/", params, signed
        )
        headers = tuple((k, v) for k, v in signed.items() if k != "host")  # the transport's
        return WireRequest(
            "POST", f"{self._url}?{urlencode(params)}", (*headers, ("Authorization", auth))
        )

    def parse_response(self, batch: Batch, response: Response) -> AttemptResult:
        """``Code`` OK: accepted (one ``BizId`` for the request); else a refusal."""
        status = response.status_code
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("Code"), str) or status >= 500:
            if not response.is_success:
                return http_failure(self.name, batch, response)
            return malformed(self.name, batch, response, "body has no Code")
        code: str = body["Code"]
        if code == SUCCESS and response.is_success:
            biz_id = body.get("BizId")
            if not isinstance(biz_id, str) or not biz_id:
                return malformed(self.name, batch, response, "accepted without BizId")
            return AttemptResult.uniform(
                self.name, batch, Verdict.ACCEPTED, message_id=biz_id, http_status=status
            )
        fault = self._refusal(code, body.get("Message"))
        verdict = Verdict.UNKNOWN if code in UNKNOWN_CODES else Verdict.REJECTED
        return AttemptResult.uniform(self.name, batch, verdict, fault=fault, http_status=status)

    def _refusal(self, code: str, message: object) -> Fault:
        # SignatureDoesNotMatch echoes the string to sign (a hash, not a secret); keys are
        # scrubbed in case a gateway ever echoes one.
        detail = str(message or "refused")[:200]
        for value in (self.settings.access_key_secret, self.settings.access_key_id):
            token = secret(value)
            if token and token in detail:
                detail = detail.replace(token, "***")
        kind = classify_code(code)
        error_class = ErrorClass.AUTH if kind is FaultKind.CREDENTIALS else ErrorClass.REFUSED
        return Fault(kind, error_class, code[:64], detail)

    def parse_push(
        self, kind: str, body: bytes, content_type: str
    ) -> Sequence[DeliveryReport | InboundMessage]:
        """A pushed ``/v1/callbacks/{name}/receipt`` body: a JSON array of reports (Aliyun
        batches them); one unreadable item refuses the whole push (400: Aliyun pushes it
        again)."""
        return self.parse_receipts(body)

    def push_ack(self, kind: str) -> PushAck:
        return PushAck(RECEIPT_ACK, RECEIPT_ACK_MEDIA_TYPE)

    def parse_receipts(self, body: bytes) -> list[DeliveryReport]:
        """Every report of an SmsReport push (a JSON array). Raises ProviderResponseError when
        unreadable; answer a readable one with :data:`RECEIPT_ACK`."""
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise ProviderResponseError("receipt push is not valid JSON") from None
        if not isinstance(parsed, list):
            raise ProviderResponseError("receipt push is not a JSON array")
        return [self._report(item) for item in parsed]

    def _report(self, item: Any) -> DeliveryReport:
        if not isinstance(item, dict):
            raise ProviderResponseError("receipt push item is not an object")
        biz_id = str(item.get("biz_id") or "").strip()
        if not biz_id:
            raise ProviderResponseError("receipt push item has no biz_id")
        success = item.get("success")
        if not isinstance(success, bool):
            success = str(success).lower() == "true"
        return DeliveryReport(
            provider=self.name,
            provider_message_id=biz_id,
            mobile=str(item.get("phone_number") or ""),
            status=DeliveryStatus.DELIVERED if success else DeliveryStatus.FAILED,
            status_code=str(item.get("err_code") or ""),
            at=_parse_time(item.get("report_time")),
        )


def aliyun_number(mobile: Mobile) -> str:
    """Mainland numbers as 11 digits; others as country code + number (``85291234567``), the
    format the SendSms document gives for international numbers."""
    return mobile.national if mobile.is_mainland else f"{mobile.country_code}{mobile.national}"


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%d %H:%M:%S").replace(tzinfo=CHINA)
    except ValueError:
        return None
