"""What every provider adapter shares: the data an attempt carries in and out, and the Protocol.

Adapters are sans-I/O at heart: :meth:`Provider.build_request` turns a :class:`Batch` into a
:class:`providers.wire.WireRequest` (the body already encoded) and
:meth:`Provider.parse_response` turns the provider's answer (a
:class:`providers.wire.Response`) into an :class:`AttemptResult`. The I/O (and the
classification of transport errors, which is the same for every provider) lives in
:mod:`providers.http` and :mod:`router.transport`.

Outcome of an attempt, per recipient:

* ``ACCEPTED``: the provider took the message (with its message id when it gives one).
* ``REJECTED``: the provider provably did not send it (connect error, documented refusal,
  HTTP 4xx with an error body). Only these may fail over to another provider.
* ``UNKNOWN``: it may have been sent (timeout after the request was written, 5xx, unreadable
  body). Never re-sent by default.
"""

from __future__ import annotations

import enum
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, ClassVar, Protocol, runtime_checkable

from providers.frozen import fast_init
from providers.mobile import Mobile as Mobile  # part of the adapter contract
from providers.settings import ProviderSettings

if TYPE_CHECKING:
    from providers.wire import Response, WireRequest


class Verdict(enum.StrEnum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    UNKNOWN = "unknown"


class FaultKind(enum.StrEnum):
    """Whose fault a failure is; decides failover and breaker accounting."""

    PROVIDER = "provider"  # fail over, counts against the breaker
    # fail over; not the breaker (an outage it is not): the router parks the provider for
    # resilience.credentials_park_s and alerts an operator (a configuration error)
    CREDENTIALS = "credentials"
    MESSAGE = "message"  # bad number / unapproved template: no failover, no breaker count


class ErrorClass(enum.StrEnum):
    """Bounded label set for metrics and traces."""

    CONNECT = "connect"
    TIMEOUT = "timeout"
    HTTP_5XX = "http_5xx"
    HTTP_4XX = "http_4xx"
    MALFORMED = "malformed"
    REFUSED = "refused"  # a documented business refusal from the provider
    AUTH = "auth"
    PROTOCOL = "protocol"  # connection dropped or protocol error after the request was written
    INVALID_REQUEST = "invalid_request"  # we could not build or encode the request: never sent


@fast_init
@dataclass(frozen=True, slots=True)
class Fault:
    """Why an attempt (or one recipient of it) did not succeed. Never holds a secret."""

    kind: FaultKind
    error_class: ErrorClass
    code: str | None = None  # the provider's own error code, when it gave one
    detail: str = ""  # human-readable, safe to log

    @property
    def counts_against_breaker(self) -> bool:
        return self.kind is FaultKind.PROVIDER


@dataclass(frozen=True, slots=True)
class Template:
    """A scene's definition from config, as adapters see it."""

    key: str
    content: str | None  # free text with {placeholders}; None for template-only scenes
    # Per provider-name options: ``template_id``, ``params`` (ordered names for positional
    # template data), ``send_type``, ``business_type``, ``approved`` ...
    provider_options: Mapping[str, Mapping[str, object]] = field(default_factory=dict)


@fast_init
@dataclass(frozen=True, slots=True)
class RenderRequest:
    """What an adapter needs to render a message: the scene (if any), params, or free content."""

    template: Template | None
    params: Mapping[str, str]
    content: str | None


@fast_init
@dataclass(frozen=True, slots=True)
class Rendered:
    """A message in one provider's terms."""

    content: str | None = None
    template_id: str | None = None
    template_params: tuple[str, ...] = ()
    options: Mapping[str, str] = field(default_factory=dict)


@fast_init
@dataclass(frozen=True, slots=True)
class Batch:
    """One provider request: at most ``provider.max_batch`` mobiles."""

    request_id: str  # our correlation id, sent as requestId / taskId / reqId (<= 32 chars)
    mobiles: tuple[Mobile, ...]
    rendered: Rendered


@fast_init
@dataclass(frozen=True, slots=True)
class RecipientResult:
    mobile: Mobile
    verdict: Verdict
    provider_message_id: str | None = None
    fault: Fault | None = None


@fast_init
@dataclass(frozen=True, slots=True)
class AttemptResult:
    """Outcome of one batch at one provider; ``recipients`` covers every mobile of the batch."""

    provider: str
    verdict: Verdict  # the batch-level verdict (ACCEPTED if any recipient was accepted)
    recipients: tuple[RecipientResult, ...]
    fault: Fault | None = None
    http_status: int | None = None

    @classmethod
    def uniform(
        cls,
        provider: str,
        batch: Batch,
        verdict: Verdict,
        *,
        fault: Fault | None = None,
        message_id: str | None = None,
        http_status: int | None = None,
    ) -> AttemptResult:
        """Every recipient of ``batch`` gets the same verdict (per-request providers)."""
        # A list comprehension and positional fields: every send builds one (~0.5 us less).
        recipients = tuple([RecipientResult(m, verdict, message_id, fault) for m in batch.mobiles])
        return cls(provider, verdict, recipients, fault, http_status)


class DeliveryStatus(enum.StrEnum):
    DELIVERED = "delivered"
    FAILED = "failed"


@fast_init
@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """A delivery receipt, pushed by the provider or pulled from it."""

    provider: str
    provider_message_id: str  # the id the send returned (taskId, smsMessageSid, requestId)
    mobile: str  # as the provider wrote it (may be masked, e.g. "135****9831")
    status: DeliveryStatus
    status_code: str  # the carrier/provider code, e.g. "DELIVRD", "UNDELIV", "MBBLACK"
    at: datetime | None = None
    # Our correlation id as the provider echoes it (Tencent SessionContext, Aliyun out_id),
    # when it differs from provider_message_id: settles an unknown attempt by a pulled receipt.
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """A reply (MO) from a mobile user."""

    provider: str
    mobile: str
    content: str
    ext_no: str | None = None
    at: datetime | None = None


@runtime_checkable
class Provider(Protocol):
    """One configured provider account. Holds no routing logic.

    ``name`` is the configured instance name (two Baofoo accounts are two providers);
    ``kind`` names the adapter module (``baofoo``, ``v1platform``, ``ronglian``).
    """

    kind: ClassVar[str]
    # Whether the provider reports delivery at all (pushed or pulled receipts): a status page
    # says "not supported" rather than "pending" for ever.
    receipts: ClassVar[bool]
    name: str
    max_batch: int

    @property
    def settings(self) -> ProviderSettings:
        """The validated settings of this account (read-only)."""
        ...

    def can_reach(self, mobile: Mobile) -> bool:
        """Whether this provider can deliver to ``mobile`` (region support)."""
        ...

    def render(self, request: RenderRequest) -> Rendered | None:
        """The message in this provider's terms, or None if it cannot carry it."""
        ...

    def build_request(self, batch: Batch) -> WireRequest:
        """The exact HTTP request for ``batch`` (pure: no I/O)."""
        ...

    def parse_response(self, batch: Batch, response: Response) -> AttemptResult:
        """Classify the provider's answer (pure: the body is already read)."""
        ...


class _SafeDict(dict[str, str]):
    def __missing__(self, key: str) -> str:
        raise KeyError(key)


def placeholders(template_text: str) -> list[str]:
    """Names of the ``{placeholders}`` in a content template, in order of first appearance."""
    names: list[str] = []
    for _, name, _, _ in string.Formatter().parse(template_text):
        if name is not None and name not in names:
            names.append(name)
    return names


def render_content(template_text: str, params: Mapping[str, str]) -> str:
    """Fill ``{placeholders}``; a missing one raises ``KeyError`` naming it."""
    return template_text.format_map(_SafeDict(params))


def template_problem(template_text: str) -> str | None:
    """Why ``template_text`` cannot be rendered with string params, or None when it can.

    Config validation calls this so that a broken template fails at load time (check-config,
    start-up) instead of as an exception in the middle of a send.
    """
    try:
        fields = list(string.Formatter().parse(template_text))
    except ValueError as exc:
        return f"broken placeholder syntax ({exc}); write {{name}}, and {{{{ }}}} for a brace"
    for _, name, spec, conversion in fields:
        if name is None:
            continue
        if not name or name.isdigit() or "." in name or "[" in name:
            return (
                f"placeholder {{{name}}} is not a plain name: use named placeholders like "
                "{code}, without positions, attributes or indexes"
            )
        if spec and ("{" in spec or "}" in spec):
            return f"placeholder {{{name}}} has a nested placeholder in its format spec"
        if conversion not in (None, "s", "r", "a"):
            return f"placeholder {{{name}}} has an unknown conversion !{conversion}"
        try:
            format("x", spec or "")  # params are always strings
        except ValueError as exc:
            return f"placeholder {{{name}}} has a format spec that fails for text ({exc})"
    return None


# -- optional capabilities ---------------------------------------------------------------------
# An adapter has one when it implements the protocol (checked by mypy where it is used, and
# once per provider at start-up with isinstance). docs/adding-a-provider.md lists them.


@runtime_checkable
class BatchKeyed(Protocol):
    """A provider that must split a batch further (Baofoo: one ``areaCode`` per request)."""

    def batch_key(self, mobile: Mobile) -> str:
        """Recipients with different keys never share a request."""
        ...


@runtime_checkable
class ReportPuller(Protocol):
    """A provider with a delivery-report pull endpoint (v1 platform ``/report``). Pulled
    receipts may mask the number (138****8000): with a shared store the router shares each
    batch's numbers, so a pull taken by an instance that did not send the batch still finds
    each recipient."""

    def build_report_request(self) -> WireRequest: ...

    def parse_report(self, response: Response) -> list[DeliveryReport]: ...


@runtime_checkable
class InboundPuller(Protocol):
    """A provider with a pull endpoint for replies (v1 platform ``/mo``)."""

    def build_mo_request(self) -> WireRequest: ...

    def parse_mo(self, response: Response) -> list[InboundMessage]: ...


class Balance(Protocol):
    """What a balance answer must say: what is left, in message parts."""

    @property
    def balance(self) -> float: ...


@runtime_checkable
class BalanceQuery(Protocol):
    """A provider whose balance can be queried (v1 platform ``/queryBalance``)."""

    def build_balance_request(self) -> WireRequest: ...

    def parse_balance(self, response: Response) -> Balance: ...


@dataclass(frozen=True, slots=True)
class PushAck:
    """How to answer a provider's push so that it stops retrying it."""

    body: bytes = b"ok"
    media_type: str = "text/plain"


@runtime_checkable
class PushReceiver(Protocol):
    """A provider that pushes receipts or replies to ``/v1/callbacks/{provider}/{kind}``.

    ``push_kinds`` names the kinds it sends (v1 platform: ``status``, ``mo``; Ronglian and
    Aliyun: ``receipt``). ``parse_push`` returns everything one push carries (one receipt, or
    Aliyun's array of several), and raises :class:`ProviderResponseError` for a body it
    cannot read (answered 400, so the provider retries the whole push)."""

    push_kinds: ClassVar[frozenset[str]]

    def parse_push(
        self, kind: str, body: bytes, content_type: str
    ) -> Sequence[DeliveryReport | InboundMessage]: ...

    def push_ack(self, kind: str) -> PushAck: ...


@dataclass(frozen=True, slots=True)
class SentRecord:
    """One message a provider says it took for a number, with our request id as it echoes it
    (Aliyun's ``OutId``) and its own message id (``BizId``)."""

    request_id: str
    provider_message_id: str | None
    mobile: str


@runtime_checkable
class SendQuery(Protocol):
    """A provider that lists what it took for one number on one day, echoing our request id
    (Aliyun ``QuerySendDetails``). An unknown attempt is settled by asking: a record with its
    request id proves it was taken; no record proves nothing (the list may lag), so the
    attempt stays unknown and is never resent on that account."""

    def build_send_query(self, mobile: Mobile, sent_at: datetime, page: int) -> WireRequest:
        """The query for ``mobile``'s messages of ``sent_at``'s day (provider's time zone),
        page ``page`` (from 1)."""
        ...

    def parse_send_query(self, response: Response) -> tuple[list[SentRecord], int]:
        """The page's records and the total count; raises ``ProviderResponseError``."""
        ...


@runtime_checkable
class ReplaySafe(Protocol):
    """A provider that refuses a request id it has already taken (Ronglian's ``reqId``, unique
    per account per China day). An attempt whose outcome is unknown can then be resent under
    the same id: a duplicate refusal proves the first reached the provider; an acceptance means
    it had not. Only until ``replay_until``: after that the provider forgets the id."""

    def replay_until(self, first_sent: datetime) -> datetime:
        """The last moment a resend with an id first sent at ``first_sent`` is refused as a
        duplicate (with a safety margin for clock differences)."""
        ...

    def already_taken(self, result: AttemptResult) -> bool:
        """Whether ``result`` (of a resend) is the refusal of a reused id."""
        ...
