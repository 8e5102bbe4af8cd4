"""Tencent Cloud SMS (API 3.0, version 2021-01-11) emulator: TC3-HMAC-SHA256 checks,
``SendSms`` with a per-number status set, ``PullSmsSendStatus``, status pushes.

Wire format: ``providers/specs/tencent.md``. Every action is ``POST /`` with the action in
``X-TC-Action``. Every answer is HTTP 200 with ``{"Response": {...}}``; a refusal is
``{"Response": {"Error": {"Code", "Message"}, "RequestId"}}`` (the way Tencent refuses a bad
signature too). Transport faults (``_common``) answer 5xx, hang or break the body as for
every emulator.

Documented behaviour: the TC3 signature (any ``SignedHeaders`` list; key and value of each
signed header lower-cased and trimmed), ``AuthFailure.SecretIdNotFound`` for an unknown
SecretId, ``AuthFailure.SignatureFailure`` for a wrong signature, ``AuthFailure.SignatureExpire``
beyond +/- 5 minutes, at most 200 numbers (``LimitExceeded.PhoneNumberCountLimit``), the
error code names (all from the SDK's ``errorcodes.py``), ``Code: "Ok"`` per accepted number,
``SessionContext`` echoed, the callback body and its ``{"result": 0, "errmsg": "OK"}`` answer.

Invented here (a real gateway may differ; the adapter never depends on these):

* the refusal messages' wording, and which common code a malformed header gets
  (``AuthFailure.InvalidAuthorization``), a missing ``X-TC-Region`` (``MissingParameter``),
  an unreadable body (``FailedOperation.FailResolvePacket``), ``Limit`` outside 1..100
  (``InvalidParameterValue.LimitVerifyFail``) and a ``SessionContext`` of 512 bytes or more
  (``InvalidParameter``);
* ``Fee`` is 1 per accepted number (no length-based part count), 0 for a refused one;
  ``SerialNo`` is ``"2433:"`` + random digits, empty for a refused number;
* a number refused per number keeps ``Code``/``Message`` in the status set while the request
  still answers without ``Error``: an invalid number gets
  ``InvalidParameterValue.IncorrectPhoneNumber``; ``faults.reject_mobiles`` get
  ``FailedOperation.PhoneNumberInBlacklist``; beyond ``daily_limit`` sends to one number
  (per emulator, not per China day) ``LimitExceeded.PhoneNumberDailyLimit``;
* ``faults.error_rate`` answers the whole request ``InternalError.OtherError``;
* accepted numbers are both queued for ``PullSmsSendStatus`` (each pulled once) and pushed
  (one push per send, an array with every accepted number) when ``state.callback_url`` is set;
  every receipt is ``SUCCESS``/``DELIVRD`` at once.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from providers.clock import Clock, SystemClock
from providers.emulators._common import (
    EmulatorState,
    FaultAction,
    Pusher,
    Refusal,
    apply_transport_fault,
    control_routes,
    hang_after_accept,
    json_response,
    record,
)
from providers.errors import InvalidMobileError
from providers.mobile import Mobile, normalise

VERSION = "2021-01-11"
SERVICE = "sms"
ALGORITHM = "TC3-HMAC-SHA256"
MAX_NUMBERS = 200
MAX_PULL = 100
MAX_SESSION_CONTEXT = 512  # bytes, exclusive
WINDOW = timedelta(minutes=5)
_CST = ZoneInfo("Asia/Shanghai")
_AUTH = re.compile(
    r"^TC3-HMAC-SHA256 Credential=(?P<id>[^/,\s]+)/(?P<date>\d{4}-\d{2}-\d{2})/(?P<svc>[^/,\s]+)"
    r"/tc3_request,\s*SignedHeaders=(?P<signed>[a-z0-9;\-]+),\s*Signature=(?P<sig>[0-9a-f]{64})$"
)


@dataclass(frozen=True, slots=True)
class SentNumber:
    """One number the emulator took."""

    serial_no: str
    phone_number: str  # E.164, as answered
    country_code: str
    subscriber: str
    session_context: str
    at: datetime


@dataclass
class TencentState(EmulatorState):
    """What the Tencent emulator keeps beyond the common state."""

    accepted: list[SentNumber] = field(default_factory=list)
    pull_queue: deque[SentNumber] = field(default_factory=deque)
    per_number: Counter[str] = field(default_factory=Counter)
    daily_limit: int | None = None  # sends per number before PhoneNumberDailyLimit

    def reset(self) -> None:
        super().reset()
        self.accepted.clear()
        self.pull_queue.clear()
        self.per_number.clear()


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def expected_signature(
    secret_key: str, timestamp: str, date: str, canonical_headers: str, signed: str, body: bytes
) -> str:
    """The TC3 signature of a ``POST /`` with these signed headers and body."""
    canonical = "\n".join(
        ("POST", "/", "", canonical_headers, signed, hashlib.sha256(body).hexdigest())
    )
    scope = f"{date}/{SERVICE}/tc3_request"
    to_sign = "\n".join(
        (ALGORITHM, timestamp, scope, hashlib.sha256(canonical.encode()).hexdigest())
    )
    key = _hmac(_hmac(_hmac(f"TC3{secret_key}".encode(), date), SERVICE), "tc3_request")
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def _check_auth(
    request: Request, body: bytes, secret_id: str, secret_key: str, now: datetime
) -> None:
    match = _AUTH.match(request.headers.get("authorization", "").strip())
    if match is None:
        raise Refusal("AuthFailure.InvalidAuthorization", "Authorization 不符合腾讯云标准")
    if not hmac.compare_digest(match["id"], secret_id):
        raise Refusal("AuthFailure.SecretIdNotFound", "The SecretId is not found.")
    raw_ts = request.headers.get("x-tc-timestamp", "")
    if not raw_ts.isdigit():
        raise Refusal("AuthFailure.InvalidAuthorization", "X-TC-Timestamp is missing or invalid")
    when = datetime.fromtimestamp(int(raw_ts), UTC)
    if abs(now - when) > WINDOW:
        raise Refusal(
            "AuthFailure.SignatureExpire", "Signature expired: the timestamp is not within 5 min"
        )
    signed = match["signed"]
    names = signed.split(";")
    if "content-type" not in names or "host" not in names:
        raise Refusal("AuthFailure.InvalidAuthorization", "content-type and host must be signed")
    canonical_headers = "".join(
        f"{n}:{request.headers.get(n, '').strip().lower()}\n" for n in names
    )
    sig = expected_signature(secret_key, raw_ts, match["date"], canonical_headers, signed, body)
    valid_scope = match["svc"] == SERVICE and match["date"] == when.strftime("%Y-%m-%d")
    if not (valid_scope and hmac.compare_digest(sig, match["sig"])):
        raise Refusal(
            "AuthFailure.SignatureFailure",
            "The provided credentials could not be validated. "
            "Please check your signature is correct.",
        )


def _answer(payload: dict[str, Any]) -> Response:
    return json_response({"Response": {**payload, "RequestId": str(uuid.uuid4())}})


def _error(refusal: Refusal) -> Response:
    return _answer({"Error": {"Code": refusal.code, "Message": refusal.message}})


def _mobile(raw: object) -> Mobile | None:
    if not isinstance(raw, str):
        return None
    try:
        return normalise(raw)
    except InvalidMobileError:
        return None


class _TencentHandlers:
    def __init__(
        self,
        st: TencentState,
        *,
        secret_id: str,
        secret_key: str,
        sdk_app_id: str,
        sign_names: frozenset[str],
        templates: dict[str, int],
        clock: Clock,
    ) -> None:
        self.st = st
        self.secret_id, self.secret_key = secret_id, secret_key
        self.sdk_app_id = sdk_app_id
        self.sign_names = sign_names
        self.templates = templates
        self.clock = clock
        self.pusher = Pusher()

    async def root(self, request: Request) -> Response:
        raw = await request.body()
        try:
            parsed: Any = orjson.loads(raw)
        except orjson.JSONDecodeError:
            parsed = None
        fields = parsed if isinstance(parsed, dict) else {}
        action_name = request.headers.get("x-tc-action", "")
        if action_name != "SendSms":  # pulls are not sends: never recorded, never faulted
            return self._pull(request, raw, fields, action_name)
        action = await record(self.st, request, fields)
        fault = await apply_transport_fault(self.st, action)
        if fault is not None:
            return fault
        try:
            sent, statuses = self._send(request, raw, parsed, action)
        except Refusal as refusal:
            return _error(refusal)
        if sent:
            self.pusher.push_later(
                self.st.callback_url, [_push_item(s) for s in sent], self.st.receipt_delay_s
            )
        late = await hang_after_accept(self.st, action)
        return late or _answer({"SendStatusSet": statuses})

    def _common(self, request: Request, raw: bytes, parsed: Any) -> dict[str, Any]:
        """Checks every action shares; the parsed body."""
        _check_auth(request, raw, self.secret_id, self.secret_key, self.clock.now())
        if request.headers.get("x-tc-version") != VERSION:
            raise Refusal("NoSuchVersion", "The API version does not exist.")
        if not request.headers.get("x-tc-region"):
            raise Refusal("MissingParameter", "The request is missing a required parameter Region.")
        if not isinstance(parsed, dict):
            raise Refusal("FailedOperation.FailResolvePacket", "The body is not a JSON object.")
        if parsed.get("SmsSdkAppId") != self.sdk_app_id:
            raise Refusal("InvalidParameterValue.SdkAppIdNotExist", "SdkAppId does not exist.")
        return parsed

    def _pull(self, request: Request, raw: bytes, fields: dict[str, Any], name: str) -> Response:
        try:
            if name != "PullSmsSendStatus":
                raise Refusal("InvalidAction", f"The action {name!r} does not exist.")
            body = self._common(request, raw, fields or None)
            limit = body.get("Limit")
            if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_PULL:
                raise Refusal("InvalidParameterValue.LimitVerifyFail", "Limit must be 1..100.")
        except Refusal as refusal:
            return _error(refusal)
        items: list[dict[str, str]] = []
        while self.st.pull_queue and len(items) < limit:
            s = self.st.pull_queue.popleft()
            items.append(
                {
                    "UserReceiveTime": _china_time(s.at),
                    "CountryCode": s.country_code,
                    "SubscriberNumber": s.subscriber,
                    "PhoneNumber": s.phone_number,
                    "SerialNo": s.serial_no,
                    "ReportStatus": "SUCCESS",
                    "Description": "DELIVRD",
                    "SessionContext": s.session_context,
                }
            )
        return _answer({"PullSmsSendStatusSet": items})

    def _send(
        self, request: Request, raw: bytes, parsed: Any, action: FaultAction
    ) -> tuple[list[SentNumber], list[dict[str, Any]]]:
        body = self._common(request, raw, parsed)
        numbers = body.get("PhoneNumberSet")
        if not isinstance(numbers, list) or not numbers:
            raise Refusal("MissingParameter.EmptyPhoneNumberSet", "PhoneNumberSet is empty.")
        if len(numbers) > MAX_NUMBERS:
            raise Refusal("LimitExceeded.PhoneNumberCountLimit", "At most 200 numbers per request.")
        self._check_template(body)
        context = body.get("SessionContext", "")
        if not isinstance(context, str) or len(context.encode()) >= MAX_SESSION_CONTEXT:
            raise Refusal("InvalidParameter", "SessionContext must be under 512 bytes.")
        mobiles = [_mobile(n) for n in numbers]
        regions = {m.is_mainland for m in mobiles if m is not None}
        if len(regions) > 1:
            raise Refusal(
                "UnsupportedOperation.ContainDomesticAndInternationalPhoneNumber",
                "Mainland and international numbers in one request.",
            )
        if True in regions and body.get("SignName") not in self.sign_names:
            raise Refusal(
                "FailedOperation.SignatureIncorrectOrUnapproved", "Signature not approved."
            )
        if action is FaultAction.ERROR:
            raise Refusal("InternalError.OtherError", "Other error.")
        now = self.clock.now()
        sent: list[SentNumber] = []
        statuses = []
        for raw_number, mobile in zip(numbers, mobiles, strict=True):
            status, taken = self._one(raw_number, mobile, context, now)
            statuses.append(status)
            if taken is not None:
                sent.append(taken)
        self.st.accepted.extend(sent)
        self.st.pull_queue.extend(sent)
        self.st.take(s.subscriber for s in sent)
        return sent, statuses

    def _check_template(self, body: dict[str, Any]) -> None:
        template_id = body.get("TemplateId")
        if not isinstance(template_id, str) or template_id not in self.templates:
            raise Refusal("FailedOperation.TemplateIncorrectOrUnapproved", "Template not approved.")
        params = body.get("TemplateParamSet", [])
        if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
            raise Refusal("InvalidParameterValue.TemplateParameterFormatError", "Params format.")
        if len(params) != self.templates[template_id]:
            raise Refusal(
                "FailedOperation.TemplateParamSetNotMatchApprovedTemplate",
                "TemplateParamSet does not match the approved template.",
            )

    def _one(
        self, raw_number: object, mobile: Mobile | None, context: str, now: datetime
    ) -> tuple[dict[str, Any], SentNumber | None]:
        shown = raw_number if isinstance(raw_number, str) else str(raw_number)
        code, message = "Ok", "send success"
        if mobile is None:
            code, message = "InvalidParameterValue.IncorrectPhoneNumber", "incorrect number"
        elif mobile.national in self.st.faults.reject_mobiles:
            code, message = "FailedOperation.PhoneNumberInBlacklist", "number in blacklist"
        elif self.st.daily_limit is not None and (
            self.st.per_number[mobile.e164] >= self.st.daily_limit
        ):
            code, message = "LimitExceeded.PhoneNumberDailyLimit", "daily limit for this number"
        if mobile is None or code != "Ok":
            status = {
                "SerialNo": "",
                "PhoneNumber": mobile.e164 if mobile else shown,
                "Fee": 0,
                "SessionContext": context,
                "Code": code,
                "Message": message,
                "IsoCode": mobile.region if mobile else "",
            }
            return status, None
        self.st.per_number[mobile.e164] += 1
        taken = SentNumber(
            serial_no=f"2433:{secrets.randbelow(10**30):030d}",
            phone_number=mobile.e164,
            country_code=str(mobile.country_code),
            subscriber=mobile.national,
            session_context=context,
            at=now,
        )
        status = {
            "SerialNo": taken.serial_no,
            "PhoneNumber": mobile.e164,
            "Fee": 1,
            "SessionContext": context,
            "Code": code,
            "Message": message,
            "IsoCode": mobile.region,
        }
        return status, taken


def _china_time(at: datetime) -> str:
    return at.astimezone(_CST).strftime("%Y-%m-%d %H:%M:%S")


def _push_item(s: SentNumber) -> dict[str, str]:
    return {
        "user_receive_time": _china_time(s.at),
        "nationcode": s.country_code,
        "mobile": s.subscriber,
        "report_status": "SUCCESS",
        "errmsg": "DELIVRD",
        "description": "用户短信送达成功",
        "sid": s.serial_no,
    }


def create_app(
    state: TencentState | None = None,
    *,
    secret_id: str = "AKIDsandbox0000000000000000000000000",
    secret_key: str = "sandbox-secret-key",
    sdk_app_id: str = "1400006666",
    sign_names: frozenset[str] = frozenset({"腾讯云"}),
    templates: dict[str, int] | None = None,
    clock: Clock | None = None,
) -> Starlette:
    """The emulator app; ``templates`` maps template id -> number of params ("1110": the
    document's example template, with 1)."""
    st = state or TencentState()
    h = _TencentHandlers(
        st,
        secret_id=secret_id,
        secret_key=secret_key,
        sdk_app_id=sdk_app_id,
        sign_names=sign_names,
        templates=templates if templates is not None else {"1110": 1},
        clock=clock or SystemClock(),
    )
    app = Starlette(routes=[Route("/", h.root, methods=["POST"]), *control_routes(st)])
    app.state.emulator = st
    return app
