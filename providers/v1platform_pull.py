"""What the v1 platform hands back outside a send: pulled receipts, replies, balance, pushes.

Pure functions over bytes and provider answers (:class:`providers.wire.Response`);
:class:`providers.v1platform.V1PlatformProvider` wraps them as methods. Every failure raises
:class:`router.errors.ProviderResponseError` with a message naming the endpoint and the
problem, never a credential (these answers carry none, and no request text is quoted).

Shapes (shared/specs):

* ``/report`` and ``/mo`` answer ``{"code": "00", "data": [...], "message": ...}``. The
  document's examples wrap the array in braces (``"data": {[...]}``) and drop the comma before
  ``"message"``, which is not JSON. The evident intent (an array) is what is parsed; an object
  holding exactly one list is accepted too, and as a last resort the document's exact broken
  shape is repaired (only when strict parsing fails, and only into something that then parses
  strictly). These are reads, so leniency cannot cause a double send.
* Delivered is ``DELIVER`` (the pull document) or ``DELIVRD`` (the push document and the
  carriers); every other code (``UNDELIV``, ``MBBLACK``, ``EXPIRED`` ...) is a failure.
* Times are ``yyyy-MM-dd HH:mm:ss`` in China time.
* Pushes (status and MO) come once, are never retried, and must be answered with HTTP 200.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

import orjson

from providers.base import DeliveryReport, DeliveryStatus, InboundMessage
from providers.errors import ProviderResponseError
from providers.wire import Response

DELIVERED_CODES = frozenset({"DELIVRD", "DELIVER"})
PUSH_ACK_STATUS = 200  # the document: the receiver must answer every push with HTTP 200
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
_CST = ZoneInfo("Asia/Shanghai")

# The document's own broken example: "data": { [ ... ] } and no comma before "message".
_BRACED_ARRAY = re.compile(rb'("data"\s*:\s*)\{\s*(\[.*\])\s*\}', re.DOTALL)
_MISSING_COMMA = re.compile(rb'([\]}])(\s*)("message"\s*:)')


@dataclass(frozen=True, slots=True)
class Balance:
    """The ``/queryBalance`` answer."""

    balance: int  # messages (parts) left
    payment: int  # 0 prepaid (预付), 1 postpaid (后付)
    payment_name: str


def parse_time(value: object) -> datetime | None:
    """``yyyy-MM-dd HH:mm:ss`` in China time, timezone-aware; None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.strptime(value, TIME_FORMAT).replace(tzinfo=_CST)
    except ValueError:
        return None


def is_delivered(status_code: str) -> bool:
    """Whether a receipt's status code means the handset got the message."""
    return status_code in DELIVERED_CODES


# -- pulls ----------------------------------------------------------------------------------


def parse_report(provider: str, response: Response) -> list[DeliveryReport]:
    """The receipts of a ``/report`` answer (the platform hands each one out once)."""
    return [report_from(provider, item) for item in pulled_items(response, "/report")]


def parse_mo(provider: str, response: Response) -> list[InboundMessage]:
    """The replies of a ``/mo`` answer."""
    return [inbound_from(provider, item) for item in pulled_items(response, "/mo")]


def parse_balance(response: Response) -> Balance:
    """The ``/queryBalance`` answer."""
    data = checked_body(response, "/queryBalance").get("data")
    if not isinstance(data, dict):
        raise ProviderResponseError("/queryBalance answer has no data object")
    return Balance(
        balance=_integer(data.get("balance"), "/queryBalance", "balance"),
        payment=_integer(data.get("payment", 0), "/queryBalance", "payment"),
        payment_name=str(data.get("paymentName") or ""),
    )


def checked_body(response: Response, path: str) -> dict[str, Any]:
    """The JSON object of a successful (HTTP 2xx, ``code == "00"``) pull answer."""
    if not response.is_success:
        raise ProviderResponseError(f"{path} answered HTTP {response.status_code}")
    body = _json_object(response.content)
    if body is None:
        body = _json_object(_repaired(response.content))
    if body is None:
        raise ProviderResponseError(f"{path} answer is not a JSON object")
    code = body.get("code")
    if code != "00":
        raise ProviderResponseError(f"{path} refused with code {code!r}")
    return body


def pulled_items(response: Response, path: str) -> list[dict[str, Any]]:
    """The ``data`` array of a ``/report`` or ``/mo`` answer (absent or empty: [])."""
    data = checked_body(response, path).get("data")
    if isinstance(data, dict):  # brace-wrapped: accept an object holding exactly one list
        if not data:
            return []
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) != 1:
            raise ProviderResponseError(f"{path} data is an object without exactly one list")
        data = lists[0]
    if data is None:
        return []
    if not isinstance(data, list) or not all(isinstance(i, dict) for i in data):
        raise ProviderResponseError(f"{path} data is not a list of objects")
    return data


# -- pushes ---------------------------------------------------------------------------------


def parse_status_push(provider: str, body: bytes, content_type: str) -> DeliveryReport:
    """A status push (JSON as documented, or form-encoded). Answer it with ``PUSH_ACK_STATUS``."""
    return report_from(provider, push_fields(body, content_type))


def parse_mo_push(provider: str, body: bytes, content_type: str) -> InboundMessage:
    """An inbound-message push (JSON as documented, or form-encoded)."""
    return inbound_from(provider, push_fields(body, content_type))


def push_fields(body: bytes, content_type: str) -> dict[str, Any]:
    """The fields of a push body; JSON unless the content type says form-encoded."""
    if "form-urlencoded" in content_type.lower():
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise ProviderResponseError("push body is not UTF-8 form data") from None
        return dict(parse_qsl(text, keep_blank_values=True))
    parsed = _json_object(body)
    if parsed is None:
        raise ProviderResponseError("push body is not a JSON object")
    return parsed


# -- records --------------------------------------------------------------------------------


def report_from(provider: str, item: Mapping[str, Any]) -> DeliveryReport:
    """One receipt (pulled or pushed); ``sendId`` is the ``taskId`` of the send."""
    code = _required(item, "status")
    return DeliveryReport(
        provider=provider,
        provider_message_id=_required(item, "sendId"),
        mobile=str(item.get("mobile") or ""),
        status=DeliveryStatus.DELIVERED if is_delivered(code) else DeliveryStatus.FAILED,
        status_code=code,
        at=parse_time(item.get("times")),
    )


def inbound_from(provider: str, item: Mapping[str, Any]) -> InboundMessage:
    """One reply (pulled or pushed); ``extNo`` may come as a number (the document shows 10)."""
    ext_no = item.get("extNo")
    return InboundMessage(
        provider=provider,
        mobile=_required(item, "mobile"),
        content=str(item.get("content") or ""),
        ext_no=None if ext_no is None or ext_no == "" else str(ext_no),
        at=parse_time(item.get("times")),
    )


def _required(item: Mapping[str, Any], key: str) -> str:
    value = item.get(key)
    if value is None or value == "":
        raise ProviderResponseError(f"v1 platform record has no {key!r} field")
    return str(value)


def _integer(value: object, path: str, key: str) -> int:
    # bool is an int subclass, but true/false is not a number the platform would send
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ProviderResponseError(f"{path} field {key!r} is not a number")
    try:
        return int(float(value))
    except (ValueError, OverflowError):
        raise ProviderResponseError(f"{path} field {key!r} is not a number") from None


def _json_object(raw: bytes) -> dict[str, Any] | None:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return body if isinstance(body, dict) else None


def _repaired(raw: bytes) -> bytes:
    """The document's broken example shape turned into JSON (unchanged if it is not that)."""
    unwrapped = _BRACED_ARRAY.sub(rb"\1\2", raw, count=1)
    if unwrapped == raw:
        return raw
    return _MISSING_COMMA.sub(rb"\1,\2\3", unwrapped, count=1)
