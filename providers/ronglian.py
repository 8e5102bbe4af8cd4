"""Ronglian Cloud (cloopen / yuntongxun) TemplateSMS.

``POST {base}/2013-12-26/Accounts/{accountSid}/SMS/TemplateSMS?sig={SIG}`` with
``SIG = upper(md5(accountSid + authToken + ts))``, ``Authorization: base64(accountSid:ts)``,
``ts = yyyyMMddHHmmss`` (official SDKs use the caller's local time; here the configured
``timezone``, China time by default). JSON body: ``to`` (at most 200, comma-separated),
``appId``, ``templateId``, ``datas``, optional ``subAppend`` and ``reqId`` (<= 32 chars).
Templates only: free content cannot be sent through Ronglian. The answer is per request;
per-number problems surface in delivery receipts.

Numbers go out as cloopen writes them: mainland mobiles as their 11 national digits, others
as ``00`` + country code + national number (``0085291234567`` for +852 9123 4567).

The ``sig`` is a one-day credential derived from the auth token: the request URL is never
logged, and faults carry only codes and the provider's message (scrubbed of the token).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from datetime import datetime, time, timedelta
from typing import Any, ClassVar, Literal
from urllib.parse import urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from pydantic import Field, SecretStr, field_validator

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
    Verdict,
)
from providers.clock import Clock, SystemClock
from providers.errors import MissingParamError, ProviderResponseError
from providers.http import http_failure, malformed
from providers.settings import ProviderSettings, TemplateOptions, TemplateOptionsModel, secret
from providers.wire import Response, WireRequest

MAX_NUMBERS = 200
MAX_REQ_ID = 32
SUCCESS = "000000"
TS_FORMAT = "%Y%m%d%H%M%S"
# The answer a receipt push expects (unverified, from secondary sources): HTTP 200 with a
# cloopen-style success body. One constant, so it changes in one place.
RECEIPT_ACK = b'{"statusCode":"000000"}'
RECEIPT_ACK_MEDIA_TYPE = "application/json"

# statusCode -> whose fault. 160048/160054/160055, the 111xxx range and the 112300-112354
# range are from the provider notes in shared/specs. The meanings of the single 1123xx and
# 1600xx codes below are recalled from cloopen's public error-code page and NOT verified
# here (160038 is confirmed by public client code): fix this table if they differ.
ERROR_CODES: dict[str, FaultKind] = {
    # 1123xx, request format: the message as sent cannot be carried, no failover.
    "112300": FaultKind.MESSAGE,  # recipient list empty
    "112301": FaultKind.MESSAGE,  # content empty
    "112304": FaultKind.MESSAGE,  # content encoding conversion failed
    "112306": FaultKind.MESSAGE,  # template SMS recipient list empty
    "112307": FaultKind.MESSAGE,  # templateId empty
    "112308": FaultKind.MESSAGE,  # template datas empty
    "112309": FaultKind.MESSAGE,  # template content encoding conversion failed
    # 1123xx, account or application set-up: an operator must act.
    "112302": FaultKind.CREDENTIALS,  # bulk sending suspended on the account
    "112303": FaultKind.CREDENTIALS,  # the application has no SMS capability
    "112305": FaultKind.CREDENTIALS,  # application not live: only test numbers allowed
    "112310": FaultKind.CREDENTIALS,  # application not live (template SMS)
    # 1600xx: message-level refusals.
    "160031": FaultKind.MESSAGE,  # parameters could not be parsed
    "160032": FaultKind.MESSAGE,  # template invalid / not approved / not found
    "160033": FaultKind.MESSAGE,  # blocked words in the content
    "160034": FaultKind.MESSAGE,  # number blacklisted
    "160035": FaultKind.MESSAGE,  # content empty
    "160036": FaultKind.MESSAGE,  # template type unknown
    "160037": FaultKind.MESSAGE,  # content too long
    # Per-number rate limits: failing over would only dodge the limit.
    "160038": FaultKind.MESSAGE,  # verification codes sent too often to this number
    "160039": FaultKind.MESSAGE,  # daily limit for this template and number
    "160040": FaultKind.MESSAGE,  # daily verification-code limit for this number
    "160041": FaultKind.MESSAGE,  # daily notice limit for this number
    "160042": FaultKind.MESSAGE,  # bad number format
    "160043": FaultKind.MESSAGE,  # template does not belong to this application
    # Our own bugs, never the message's: another provider can carry the message, so these
    # fail over (and count against Ronglian's breaker: this adapter is broken there).
    "160048": FaultKind.PROVIDER,  # over 200 numbers (the adapter never builds such a batch)
    "160054": FaultKind.PROVIDER,  # reqId already used today
    "160055": FaultKind.PROVIDER,  # reqId longer than 32 characters
    "160050": FaultKind.PROVIDER,  # sending failed at the provider
}
# A reused reqId means an earlier request with this id reached Ronglian: this one was not
# sent, but the message may have been. Every attempt gets a fresh id, so a reuse is a retry
# of a batch that may already be out: UNKNOWN, so it never fails over into a double send.
UNKNOWN_CODES = frozenset({"160054"})


CHINA = ZoneInfo("Asia/Shanghai")  # the day a reqId is unique in
REPLAY_MARGIN = timedelta(minutes=2)  # no resend this close to China midnight


def classify_code(code: str) -> FaultKind:
    """Whose fault a non-zero ``statusCode`` is; unknown codes are the provider's."""
    if code in ERROR_CODES:
        return ERROR_CODES[code]
    if code.startswith("111"):
        return FaultKind.CREDENTIALS  # account and REST authentication errors
    # Other codes in 112300-112354 may be format or auth problems; we cannot tell which, so
    # they count as the provider's (fail over, count against the breaker) like any unknown.
    return FaultKind.PROVIDER


class RonglianTemplateOptions(TemplateOptions):
    """``[templates.<scene>.providers.<ronglian>]``: the approved template and its ``datas``."""

    template_id: str | int | None = Field(
        default=None, description="templateId at Ronglian; unset: this scene is not sent here"
    )
    params: list[str] = Field(
        default_factory=list, description="the message params that fill the template, in order"
    )


class RonglianSettings(ProviderSettings):
    """``[providers.<name>]`` with ``type = "ronglian"``."""

    template_options: ClassVar[TemplateOptionsModel] = RonglianTemplateOptions

    type: Literal["ronglian"] = "ronglian"
    base_url: str = "https://app.cloopen.com:8883"
    account_sid: str = Field(min_length=1)
    auth_token: SecretStr
    app_id: str = Field(min_length=1)
    sub_append: str | None = Field(default=None, pattern=r"^\d{1,4}$")
    max_batch: int = Field(default=MAX_NUMBERS, ge=1, le=MAX_NUMBERS)
    timezone: str = Field(
        default="Asia/Shanghai", description="zone of the signed ts (SDKs use local time)"
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value


class RonglianProvider:
    """Adapter for one Ronglian account and application (templates only)."""

    kind: ClassVar[str] = "ronglian"
    receipts: ClassVar[bool] = True  # SMSArrived receipt pushes

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
        """Region support from ``settings.regions``."""
        return self.settings.reaches(mobile)

    def render(self, request: RenderRequest) -> Rendered | None:
        """``templateId`` + ordered ``datas``; None for free content, for a scene without a
        ``template_id`` here, or one marked ``approved = false``."""
        if request.template is None:
            return None  # templates only
        options = request.template.provider_options.get(self.name, {})
        template_id = options.get("template_id")
        if template_id is None or options.get("approved", True) is False:
            return None
        names = options.get("params", [])
        if not isinstance(names, list | tuple):
            raise TypeError(f"templates.{request.template.key}.providers.{self.name}.params")
        try:
            datas = tuple(str(request.params[str(n)]) for n in names)
        except KeyError as exc:
            raise MissingParamError(request.template.key, str(exc.args[0])) from None
        return Rendered(template_id=str(template_id), template_params=datas)

    def timestamp(self) -> str:
        """Now, as the ``yyyyMMddHHmmss`` that both ``sig`` and ``Authorization`` carry."""
        return self._clock.now().astimezone(self._zone).strftime(TS_FORMAT)

    def build_request(self, batch: Batch) -> WireRequest:
        """The signed TemplateSMS request (pure). Refuses batches Ronglian would refuse."""
        if not 1 <= len(batch.mobiles) <= self.max_batch:
            raise ValueError(f"batch of {len(batch.mobiles)} outside 1..{self.max_batch}")
        if len(batch.request_id) > MAX_REQ_ID:
            raise ValueError(f"reqId longer than {MAX_REQ_ID} characters")
        if batch.rendered.template_id is None:
            raise ValueError("Ronglian sends templates only: the batch has no template_id")
        s, ts = self.settings, self.timestamp()
        body: dict[str, Any] = {
            "to": ",".join(cloopen_number(m) for m in batch.mobiles),
            "appId": s.app_id,
            "templateId": batch.rendered.template_id,
            "datas": list(batch.rendered.template_params),
            "reqId": batch.request_id,
        }
        if s.sub_append:
            body["subAppend"] = s.sub_append
        headers = (
            ("Accept", "application/json"),
            ("Content-Type", "application/json;charset=utf-8"),
            ("Authorization", authorization(s.account_sid, ts)),
        )
        sig = signature(s.account_sid, secret(s.auth_token), ts)
        url = f"{self._path}?{urlencode({'sig': sig})}"
        return WireRequest("POST", url, headers, orjson.dumps(body))

    def parse_response(self, batch: Batch, response: Response) -> AttemptResult:
        """``000000`` accepted (one ``smsMessageSid`` for the request); else a refusal."""
        status = response.status_code
        if not response.is_success:
            return http_failure(self.name, batch, response)
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("statusCode"), str):
            return malformed(self.name, batch, response, "body has no statusCode")
        code = body["statusCode"].strip()
        if code == SUCCESS:
            sms = body.get("templateSMS")
            sid = sms.get("smsMessageSid") if isinstance(sms, dict) else None
            if not isinstance(sid, str) or not sid.strip():
                return malformed(self.name, batch, response, "accepted without smsMessageSid")
            # The document's own example has a leading space in the sid.
            return AttemptResult.uniform(
                self.name, batch, Verdict.ACCEPTED, message_id=sid.strip(), http_status=status
            )
        fault = self._refusal(code, body.get("statusMsg"))
        verdict = Verdict.UNKNOWN if code in UNKNOWN_CODES else Verdict.REJECTED
        return AttemptResult.uniform(self.name, batch, verdict, fault=fault, http_status=status)

    def _refusal(self, code: str, message: object) -> Fault:
        detail = str(message or "refused")[:200]
        token = secret(self.settings.auth_token)
        if token and token in detail:  # an echoed token must never reach a log line
            detail = detail.replace(token, "***")
        kind = classify_code(code)
        error_class = ErrorClass.AUTH if kind is FaultKind.CREDENTIALS else ErrorClass.REFUSED
        return Fault(kind, error_class, code, detail)

    push_kinds: ClassVar[frozenset[str]] = frozenset({"receipt"})

    def parse_push(
        self, kind: str, body: bytes, content_type: str
    ) -> Sequence[DeliveryReport | InboundMessage]:
        """A pushed ``/v1/callbacks/{name}/receipt`` body (see :meth:`parse_receipt_push`)."""
        return [self.parse_receipt_push(body)]

    def replay_until(self, first_sent: datetime) -> datetime:
        """``reqId`` is unique per account per natural day, China time (Ronglian's servers):
        a resend under the same id is refused as a duplicate until that day ends. Less
        ``REPLAY_MARGIN``: our clock and theirs may differ, and after midnight the same id
        would be a new request (a double send)."""
        local = first_sent.astimezone(CHINA)
        midnight = datetime.combine(local.date() + timedelta(days=1), time(), tzinfo=CHINA)
        return midnight - REPLAY_MARGIN

    def already_taken(self, result: AttemptResult) -> bool:
        """A resend refused with 160054: this ``reqId`` was already taken today."""
        return result.fault is not None and result.fault.code in UNKNOWN_CODES

    def push_ack(self, kind: str) -> PushAck:
        return PushAck(RECEIPT_ACK, RECEIPT_ACK_MEDIA_TYPE)

    def parse_receipt_push(self, body: bytes) -> DeliveryReport | InboundMessage:
        """An ``SMSArrived`` push (format unverified: secondary sources): a receipt
        (``status`` "0" delivered, anything else failed), or a reply when ``smsType`` is "0".
        Answer it with :data:`RECEIPT_ACK`. Raises ProviderResponseError when unreadable."""
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise ProviderResponseError("receipt push is not valid JSON") from None
        req = parsed.get("Request") if isinstance(parsed, dict) else None
        if not isinstance(req, dict):
            raise ProviderResponseError("receipt push has no Request object")
        if req.get("action", "SMSArrived") != "SMSArrived":
            raise ProviderResponseError(f"receipt push action {req.get('action')!r}")
        mobile = str(req.get("fromNum") or "")
        at = _parse_ts(req.get("recvTime"), self._zone)
        if str(req.get("smsType")) == "0":
            return InboundMessage(self.name, mobile, str(req.get("content") or ""), None, at)
        sid = str(req.get("content") or "").strip()
        if not sid:
            raise ProviderResponseError("receipt push has no content (smsMessageSid)")
        delivered = str(req.get("status")) == "0"
        return DeliveryReport(
            provider=self.name,
            provider_message_id=sid,
            mobile=mobile,
            status=DeliveryStatus.DELIVERED if delivered else DeliveryStatus.FAILED,
            status_code=str(req.get("deliverCode") or req.get("status") or ""),
            at=at,
        )


def signature(account_sid: str, auth_token: str, ts: str) -> str:
    """``sig``: upper-case hex MD5 of accountSid + authToken + ts. Never log it."""
    raw = f"{account_sid}{auth_token}{ts}".encode()
    return hashlib.md5(raw, usedforsecurity=False).hexdigest().upper()


def authorization(account_sid: str, ts: str) -> str:
    """The ``Authorization`` header: base64 of ``accountSid:ts``."""
    return base64.b64encode(f"{account_sid}:{ts}".encode()).decode()


def cloopen_number(mobile: Mobile) -> str:
    """Mainland numbers as 11 digits; others as ``00`` + country code + number (cloopen)."""
    return mobile.national if mobile.is_mainland else f"00{mobile.country_code}{mobile.national}"


def _parse_ts(value: object, zone: ZoneInfo) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.strptime(value, TS_FORMAT).replace(tzinfo=zone)
    except ValueError:
        return None
