"""Aliyun SMS (Dysmsapi 2017-05-25) emulator: ACS3-HMAC-SHA256 checks, field rules, limits,
QuerySendDetails of what it took, and SmsReport receipt pushes.

One route, ``/`` (POST or GET), the RPC style: the action is the ``x-acs-action`` header (or
an ``Action`` query parameter), the parameters are the query plus any form body, as the
official SDK (``alibabacloud-dysmsapi20170525``) sends them. See ``providers/specs/aliyun.md``.

Authentication is the V3 signature the current SDK uses by default (``Authorization:
ACS3-HMAC-SHA256 Credential=<id>,SignedHeaders=<a;b;...>,Signature=<hex>``), checked against
the request as received. The older HMAC-SHA1 RPC signature (``Signature`` query parameter) is
NOT emulated: such a request is refused as ``IncompleteSignature``.

Invented or unverified behaviour (the public documents do not say):

* the HTTP statuses: ``SignatureDoesNotMatch``, ``IncompleteSignature``,
  ``InvalidTimeStamp.Expired``, ``SignatureNonceUsed``, ``Missing<Param>`` 400 and
  ``InvalidAccessKeyId.NotFound`` 404 are what public client issue threads show, not a
  document; business refusals (``isv.*``, ``isp.*``) are HTTP 200 with ``Code`` != ``OK``.
* the timestamp window (15 minutes either side) and the nonce memory (15 minutes).
* a body whose SHA-256 does not match ``x-acs-content-sha256`` is ``SignatureDoesNotMatch``.
* ``faults.error_rate`` answers ``isp.SYSTEM_ERROR``; ``faults.reject_mobiles`` are accepted
  and then get failed receipts (``success`` false, ``err_code`` ``MN:0001``, unverified code)
  and ``SendStatus`` 2 in QuerySendDetails.
* receipts are pushed one JSON array per number (Aliyun batches several reports per push).
* number rule: mainland ``1[3-9]`` + 9 digits (optionally ``86``/``+86``/``0086`` first),
  else 7-15 digits not starting with 0 (country code + number); anything else
  ``isv.MOBILE_NUMBER_ILLEGAL``. Aliyun's own check is not documented.
* BizId is ``<digits>^0`` (the shape of documented examples); RequestId a random UUID.
* SendBatchSms arrays of different lengths: ``isv.INVALID_PARAMETERS``.
* QuerySendDetails ``PageSize`` outside 1..50: ``isv.INVALID_PARAMETERS``.
"""

from __future__ import annotations

import hashlib
import hmac
import random
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, quote
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

_CST = ZoneInfo("Asia/Shanghai")
_ALGORITHM = "ACS3-HMAC-SHA256"
_AUTH = re.compile(
    r"^ACS3-HMAC-SHA256 Credential=([^,]+),SignedHeaders=([^,]+),Signature=([0-9a-f]+)$"
)
# mainland 11 digits, optionally with 86 / +86 / 0086; others country code + number
_NUMBER = re.compile(r"^(?:(?:\+|00)?86)?1[3-9]\d{9}$|^(?:\+|00)?[1-9]\d{6,14}$")
_REQUIRED_SIGNED = ("host", "x-acs-action", "x-acs-content-sha256", "x-acs-date", "x-acs-version")
WINDOW = timedelta(minutes=15)
VERSION = "2017-05-25"
MAX_SEND = 1000  # SendSms PhoneNumbers
MAX_BATCH = 100  # SendBatchSms PhoneNumberJson
MAX_PAGE = 50  # QuerySendDetails PageSize
HOST_ID = "dysmsapi.aliyuncs.com"


@dataclass(frozen=True, slots=True)
class AcceptedSms:
    """One number of an accepted SendSms / SendBatchSms, as the emulator remembers it."""

    biz_id: str
    phone: str
    sign_name: str
    template_code: str
    template_param: str
    out_id: str
    sent_at: datetime  # China time
    delivered: bool


@dataclass
class AliyunState(EmulatorState):
    """What the Aliyun emulator keeps beyond the common state."""

    accepted: list[AcceptedSms] = field(default_factory=list)
    nonces: dict[str, datetime] = field(default_factory=dict)

    def reset(self) -> None:
        super().reset()
        self.accepted.clear()
        self.nonces.clear()


def _error(refusal: Refusal) -> Response:
    request_id = str(uuid.uuid4()).upper()
    body: dict[str, Any] = {
        "RequestId": request_id,
        "Code": refusal.code,
        "Message": refusal.message,
    }
    if refusal.status != 200:  # the gateway's shape (public issue threads)
        body["HostId"] = HOST_ID
        body["Recommend"] = (
            f"https://api.aliyun.com/troubleshoot?q={refusal.code}&product=Dysmsapi"
            f"&requestId={request_id}"
        )
    return json_response(body, refusal.status)


def canonical_query(pairs: list[tuple[str, str]]) -> str:
    """``k=v`` pairs sorted by key, both RFC 3986 percent-encoded (only ``~`` unescaped)."""
    encoded = sorted((quote(k, safe="~"), quote(v, safe="~")) for k, v in pairs)
    return "&".join(f"{k}={v}" for k, v in encoded)


def string_to_sign(request: Request, body: bytes, signed: list[str]) -> str:
    """The V3 string to sign, rebuilt from the request as received."""
    query = parse_qsl(request.url.query, keep_blank_values=True)
    headers = "".join(
        f"{name}:{','.join(sorted(v.strip() for v in request.headers.getlist(name)))}\n"
        for name in signed
    )
    canonical = "\n".join(
        (
            request.method,
            request.url.path or "/",
            canonical_query(query),
            headers,
            ";".join(signed),
            request.headers.get("x-acs-content-sha256", hashlib.sha256(body).hexdigest()),
        )
    )
    return f"{_ALGORITHM}\n{hashlib.sha256(canonical.encode()).hexdigest()}"


def _check_auth(
    st: AliyunState, request: Request, body: bytes, keys: dict[str, str], now: datetime
) -> None:
    header = request.headers.get("authorization", "")
    if not header:
        if "Signature" in request.query_params:
            raise Refusal("IncompleteSignature", "HMAC-SHA1 is not emulated: use ACS3.", 400)
        raise Refusal("MissingAuthorization", "Authorization is mandatory for this action.", 400)
    match = _AUTH.match(header)
    if match is None:
        raise Refusal("IncompleteSignature", "The request signature does not conform.", 400)
    key_id, signed_text, signature = match.groups()
    secret = keys.get(key_id)
    if secret is None:
        raise Refusal("InvalidAccessKeyId.NotFound", "Specified access key is not found.", 404)
    signed = signed_text.split(";")
    if signed != sorted(signed) or any(h not in signed for h in _REQUIRED_SIGNED):
        raise Refusal("IncompleteSignature", "The request signature does not conform.", 400)
    try:
        when = datetime.strptime(request.headers.get("x-acs-date", ""), "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        raise Refusal("InvalidTimeStamp.Format", "Specified timestamp is not valid.", 400) from None
    if abs(now - when.replace(tzinfo=UTC)) > WINDOW:
        raise Refusal("InvalidTimeStamp.Expired", "Specified time stamp or date expired.", 400)
    if hashlib.sha256(body).hexdigest() != request.headers.get("x-acs-content-sha256"):
        raise Refusal("SignatureDoesNotMatch", "x-acs-content-sha256 does not match.", 400)
    text = string_to_sign(request, body, signed)
    expected = hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature):
        raise Refusal(
            "SignatureDoesNotMatch",
            f"Specified signature does not match our calculation. server string to sign is:{text}",
            400,
        )
    nonce = request.headers.get("x-acs-signature-nonce", "")
    for old in [n for n, at in st.nonces.items() if now - at > WINDOW]:
        del st.nonces[old]
    if nonce and nonce in st.nonces:
        raise Refusal("SignatureNonceUsed", "Specified signature nonce was used already.", 400)
    if nonce:
        st.nonces[nonce] = now


def _required(params: dict[str, str], name: str) -> str:
    value = params.get(name)
    if value is None or value == "":
        raise Refusal(f"Missing{name}", f"{name} is mandatory for this action.", 400)
    return value


def _json(value: str, kind: type) -> Any:
    try:
        parsed = orjson.loads(value)
    except orjson.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, kind):
        raise Refusal("isv.INVALID_JSON_PARAM", "JSON参数不合法,只接受字符串值")
    return parsed


class _AliyunHandlers:
    """The Dysmsapi actions of one emulator app."""

    def __init__(
        self,
        st: AliyunState,
        *,
        keys: dict[str, str],
        sign_names: frozenset[str],
        templates: dict[str, frozenset[str]],
        clock: Clock,
    ) -> None:
        self.st, self.keys, self.sign_names, self.templates = st, keys, sign_names, templates
        self.clock = clock
        self.pusher = Pusher()

    async def endpoint(self, request: Request) -> Response:
        st = self.st
        raw = await request.body()
        params = dict(parse_qsl(request.url.query, keep_blank_values=True))
        if "x-www-form-urlencoded" in request.headers.get("content-type", ""):
            params.update(parse_qsl(raw.decode(errors="replace"), keep_blank_values=True))
        action_name = request.headers.get("x-acs-action") or params.get("Action", "")
        action = await record(st, request, params)
        if action_name in ("SendSms", "SendBatchSms"):
            fault = await apply_transport_fault(st, action)
            if fault is not None:
                return fault
        now = self.clock.now().astimezone(UTC)
        try:
            _check_auth(st, request, raw, self.keys, now)
            version = request.headers.get("x-acs-version") or params.get("Version")
            if version != VERSION:
                raise Refusal("InvalidVersion", "Specified parameter Version is not valid.", 400)
            if action_name == "QuerySendDetails":
                return json_response(self._query(params))
            if action_name == "SendSms":
                numbers, signs, code, tparams = self._send_sms(params)
            elif action_name == "SendBatchSms":
                numbers, signs, code, tparams = self._send_batch(params)
            else:
                raise Refusal("InvalidAction.NotFound", "Specified api is not found.", 404)
            if action is FaultAction.ERROR:
                raise Refusal("isp.SYSTEM_ERROR", "系统出现错误,请重新调用")
        except Refusal as refusal:
            return _error(refusal)
        biz_id = self._accept(numbers, signs, code, tparams, params.get("OutId", ""), now)
        late = await hang_after_accept(st, action)
        return late or json_response(
            {"Code": "OK", "Message": "OK", "BizId": biz_id, "RequestId": str(uuid.uuid4()).upper()}
        )

    def _check_message(self, number: str, sign: str, code: str, tparam: str) -> None:
        if not _NUMBER.match(number):
            raise Refusal("isv.MOBILE_NUMBER_ILLEGAL", "非法手机号")
        if sign not in self.sign_names:
            raise Refusal("isv.SMS_SIGNATURE_ILLEGAL", "该账号下找不到对应签名")
        if code not in self.templates:
            raise Refusal("isv.SMS_TEMPLATE_ILLEGAL", "该账号下找不到对应模板")
        values = _json(tparam, dict) if tparam else {}
        if not all(isinstance(v, str | int | float) for v in values.values()):
            raise Refusal("isv.INVALID_JSON_PARAM", "JSON参数不合法,只接受字符串值")
        if not self.templates[code] <= set(values):
            raise Refusal("isv.TEMPLATE_MISSING_PARAMETERS", "模板变量缺少对应参数值")

    def _send_sms(self, params: dict[str, str]) -> tuple[list[str], list[str], str, list[str]]:
        numbers = _required(params, "PhoneNumbers").split(",")
        sign = _required(params, "SignName")
        code = _required(params, "TemplateCode")
        if len(numbers) > MAX_SEND:
            raise Refusal(
                "isv.MOBILE_COUNT_OVER_LIMIT", f"手机号码数量超过限制,最多支持{MAX_SEND}条"
            )
        tparam = params.get("TemplateParam", "")
        for number in numbers:
            self._check_message(number, sign, code, tparam)
        return numbers, [sign] * len(numbers), code, [tparam] * len(numbers)

    def _send_batch(self, params: dict[str, str]) -> tuple[list[str], list[str], str, list[str]]:
        numbers = _json(_required(params, "PhoneNumberJson"), list)
        signs = _json(_required(params, "SignNameJson"), list)
        code = _required(params, "TemplateCode")
        raw_params = params.get("TemplateParamJson")
        tparams_parsed = _json(raw_params, list) if raw_params else [{}] * len(numbers)
        if len(numbers) > MAX_BATCH:
            raise Refusal(
                "isv.MOBILE_COUNT_OVER_LIMIT", f"手机号码数量超过限制,最多支持{MAX_BATCH}条"
            )
        if not len(numbers) == len(signs) == len(tparams_parsed):
            raise Refusal("isv.INVALID_PARAMETERS", "参数异常")
        tparams = [orjson.dumps(p).decode() if isinstance(p, dict) else "" for p in tparams_parsed]
        for number, sign, tparam in zip(numbers, signs, tparams, strict=True):
            self._check_message(str(number), str(sign), code, tparam)
        return [str(n) for n in numbers], [str(s) for s in signs], code, tparams

    def _accept(
        self,
        numbers: list[str],
        signs: list[str],
        code: str,
        tparams: list[str],
        out_id: str,
        now: datetime,
    ) -> str:
        st = self.st
        biz_id = f"{random.randrange(10**17, 10**18)}^0"
        local = now.astimezone(_CST)
        for number, sign, tparam in zip(numbers, signs, tparams, strict=True):
            delivered = number[-11:] not in st.faults.reject_mobiles
            sent = AcceptedSms(biz_id, number, sign, code, tparam, out_id, local, delivered)
            st.accepted.append(sent)
            self.pusher.push_later(st.callback_url, [_receipt(sent)], st.receipt_delay_s)
        st.take(numbers)
        return biz_id

    def _query(self, params: dict[str, str]) -> dict[str, Any]:
        phone = _required(params, "PhoneNumber")
        day = _required(params, "SendDate")
        try:
            size, page = int(_required(params, "PageSize")), int(_required(params, "CurrentPage"))
        except ValueError:
            raise Refusal("isv.INVALID_PARAMETERS", "参数异常") from None
        if not 1 <= size <= MAX_PAGE or page < 1:
            raise Refusal("isv.INVALID_PARAMETERS", "参数异常")
        biz_id = params.get("BizId")
        found = [
            a
            for a in self.st.accepted
            if a.phone[-11:] == phone[-11:]
            and a.sent_at.strftime("%Y%m%d") == day
            and (not biz_id or a.biz_id == biz_id)
        ]
        rows = found[(page - 1) * size : page * size]
        return {
            "Code": "OK",
            "Message": "OK",
            "RequestId": str(uuid.uuid4()).upper(),
            "TotalCount": len(found),
            "SmsSendDetailDTOs": {"SmsSendDetailDTO": [_detail(a) for a in rows]},
        }


def _detail(a: AcceptedSms) -> dict[str, Any]:
    when = a.sent_at.strftime("%Y-%m-%d %H:%M:%S")
    return {
        "PhoneNum": a.phone,
        "SendStatus": 3 if a.delivered else 2,
        "ErrCode": "DELIVERED" if a.delivered else "MN:0001",
        "TemplateCode": a.template_code,
        "Content": f"【{a.sign_name}】{a.template_param}",
        "SendDate": when,
        "ReceiveDate": when,
        "OutId": a.out_id,
    }


def _receipt(a: AcceptedSms) -> dict[str, Any]:
    when = a.sent_at.strftime("%Y-%m-%d %H:%M:%S")
    return {
        "phone_number": a.phone,
        "send_time": when,
        "report_time": when,
        "success": a.delivered,
        "err_code": "DELIVERED" if a.delivered else "MN:0001",
        "err_msg": "用户接收成功" if a.delivered else "空号",
        "sms_size": "1",
        "biz_id": a.biz_id,
        "out_id": a.out_id,
    }


def create_app(
    state: AliyunState | None = None,
    *,
    access_key_id: str = "sandbox-ak",
    access_key_secret: str = "sandbox-secret",
    sign_names: frozenset[str] = frozenset({"阿里云短信测试"}),
    templates: dict[str, frozenset[str]] | None = None,
    clock: Clock | None = None,
) -> Starlette:
    """The emulator app; ``templates`` maps TemplateCode -> the variables it needs
    (``SMS_154950909``: the documented test template, with ``code``)."""
    st = state or AliyunState()
    h = _AliyunHandlers(
        st,
        keys={access_key_id: access_key_secret},
        sign_names=sign_names,
        templates=templates if templates is not None else {"SMS_154950909": frozenset({"code"})},
        clock=clock or SystemClock(),
    )
    app = Starlette(routes=[Route("/", h.endpoint, methods=["POST", "GET"]), *control_routes(st)])
    app.state.emulator = st
    return app
