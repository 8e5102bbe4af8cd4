"""The v1 SMS platform: ``/api/v1/send``, ``/report``, ``/mo``, ``/queryBalance`` and pushes.

Wire facts (shared/specs): form-encoded UTF-8 POSTs; ``pwd`` is the password's MD5 (the
document does not say which hex case: ``pwd_case``; a computed one is lower-case), a static
hash: a captured request can be replayed, so it never reaches a repr, a log line, an exception
or a Fault. ``code == "00"`` means accepted; up to 3000 ``mobiles`` per
request; ``taskId`` is ours (``Batch.request_id``) and globally unique, and comes back as the
receipts' ``sendId``; ``extNo`` is a positive integer; content should stay under 500 characters
(longer content is sent, with a warning). The platform answers per request, not per number:
a bad number shows up later as a failed receipt.

The document lists no error code besides "00", so every other code is a provider fault (fail
over, feed the breaker) unless the operator maps it in ``error_codes`` once the vendor's table
is known. Pulls and pushes are read by :mod:`providers.v1platform_pull`.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import orjson
from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator

from providers import v1platform_pull as pull
from providers.base import (
    AttemptResult,
    Batch,
    DeliveryReport,
    ErrorClass,
    Fault,
    FaultKind,
    InboundMessage,
    Mobile,
    PushAck,
    Rendered,
    RenderRequest,
    Verdict,
    render_content,
)
from providers.clock import Clock, SystemClock
from providers.errors import MissingParamError
from providers.http import http_failure, malformed
from providers.settings import ProviderSettings, secret
from providers.v1platform_pull import DELIVERED_CODES, PUSH_ACK_STATUS, Balance, parse_time
from providers.wire import Response, WireRequest, form_prefix, form_request

__all__ = [
    "DELIVERED_CODES",
    "ERROR_CODES",
    "MAX_CONTENT_CHARS",
    "MAX_MOBILES",
    "PUSH_ACK_STATUS",
    "Balance",
    "V1PlatformProvider",
    "V1PlatformSettings",
    "parse_time",
]

log = logging.getLogger("providers.v1platform")

MAX_MOBILES = 3000  # the document's per-request limit
MAX_CONTENT_CHARS = 500  # the document's advice; longer content is sent, not refused
ACCEPTED_CODE = "00"

# code -> whose fault. Empty on purpose: the document lists only "00" (the emulator's "01".."06"
# are its own invention). Unknown codes are provider faults; ``error_codes`` in the settings
# adds the vendor's real codes without a code change.
ERROR_CODES: dict[str, FaultKind] = {}

_MD5_HEX = re.compile(r"[0-9a-fA-F]{32}")


class V1PlatformSettings(ProviderSettings):
    """``[providers.<name>]`` with ``type = "v1platform"``: give ``password`` or its MD5."""

    # A validation error would otherwise echo the raw input, password included.
    model_config = ConfigDict(hide_input_in_errors=True)

    type: Literal["v1platform"] = "v1platform"
    account: str = Field(min_length=1)
    password: SecretStr | None = Field(default=None, description="plain password; sent as MD5")
    password_md5: SecretStr | None = Field(
        default=None, description="the password's MD5 (32 hex digits), if that is all you have"
    )
    pwd_case: Literal["lower", "upper"] | None = Field(
        default=None,
        description=(
            "hex case of the wire pwd (the document says only 'MD5'); unset: a computed MD5 "
            "is lower-case, a given password_md5 is sent exactly as given"
        ),
    )
    international_format: Literal["plus", "00", "digits"] = Field(
        default="plus",
        description=(
            "how a number outside mainland China is written in mobiles (the document shows "
            "only mainland numbers; reach them with regions = 'all'): +852..., 00852... or "
            "852..."
        ),
    )
    ext_no: int | None = Field(default=None, gt=0, description="extNo: extension number")
    max_batch: int = Field(default=MAX_MOBILES, ge=1, le=MAX_MOBILES)
    error_codes: dict[str, FaultKind] = Field(
        default_factory=dict,
        description="vendor refusal code -> provider/credentials/message; unknown: provider",
    )

    @field_validator("password")
    @classmethod
    def _not_empty(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not secret(value):
            raise ValueError("must not be empty")
        return value

    @field_validator("password_md5")
    @classmethod
    def _md5_hex(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not _MD5_HEX.fullmatch(secret(value)):
            raise ValueError("must be the 32 hex digits of the password's MD5")
        return value

    @model_validator(mode="after")
    def _one_password(self) -> V1PlatformSettings:
        if self.password is None and self.password_md5 is None:
            raise ValueError("set 'password' (or 'password_md5' if you only have the hash)")
        if self.password is not None and self.password_md5 is not None:
            raise ValueError("set only one of 'password' and 'password_md5', not both")
        return self

    def pwd(self) -> str:
        """The wire ``pwd``: the hex MD5 of the password, in ``pwd_case`` (see there).
        Replayable: never log what this returns."""
        if self.password_md5 is not None:
            digest = secret(self.password_md5)
        else:
            assert self.password is not None  # the validator guarantees one of the two
            digest = hashlib.md5(secret(self.password).encode(), usedforsecurity=False).hexdigest()
        case = self.pwd_case
        return {"upper": digest.upper(), "lower": digest.lower()}.get(case or "", digest)


class V1PlatformProvider:
    """Adapter for one v1 platform account (sans-I/O, plus thin pull helpers)."""

    kind: ClassVar[str] = "v1platform"
    receipts: ClassVar[bool] = True  # status pushes and /report pulls

    def __init__(self, name: str, settings: V1PlatformSettings, clock: Clock | None = None) -> None:
        self.name = name
        self.settings = settings
        self.max_batch = settings.max_batch
        self._clock = clock or SystemClock()  # unused by the protocol; kept for parity
        self._base = settings.base_url.rstrip("/")
        self._send_url = f"{self._base}/api/v1/send"
        self._codes = {**ERROR_CODES, **settings.error_codes}
        # account and pwd open every request: encoded once, not per send
        self._auth_prefix = form_prefix(self._auth())

    def __repr__(self) -> str:
        return f"V1PlatformProvider(name={self.name!r}, base_url={self._base!r})"

    def can_reach(self, mobile: Mobile) -> bool:
        """Region support from ``settings.regions``."""
        return self.settings.reaches(mobile)

    def render(self, request: RenderRequest) -> Rendered | None:
        """Free content (signature first); None for an unapproved or content-less template."""
        if request.template is None:
            content = request.content
        else:
            template = request.template
            options = template.provider_options.get(self.name, {})
            text = options.get("content", template.content)
            if options.get("approved", True) is False or text is None:
                return None
            try:
                content = render_content(str(text), request.params)
            except KeyError as exc:
                raise MissingParamError(template.key, str(exc.args[0])) from None
        if not content:
            return None
        signature = self.settings.signature
        if signature and not content.startswith(signature):
            content = signature + content
        if len(content) > MAX_CONTENT_CHARS:
            log.warning(
                "%s: content of %d characters is over the advised %d; sending it anyway",
                self.name,
                len(content),
                MAX_CONTENT_CHARS,
            )
        return Rendered(content=content)

    # -- send -------------------------------------------------------------------------------

    def build_request(self, batch: Batch) -> WireRequest:
        """``POST /api/v1/send``; raises ValueError for a batch outside ``1..max_batch``."""
        if not 1 <= len(batch.mobiles) <= self.max_batch:
            raise ValueError(f"batch of {len(batch.mobiles)} outside 1..{self.max_batch}")
        if not batch.rendered.content:
            raise ValueError("the v1 platform sends content; the batch has none")
        fields = {
            "taskId": batch.request_id,
            # The document shows only mainland numbers (11 digits) and says nothing of others;
            # a foreign number (only with regions = "all" / "international") is written in
            # international_format, never as bare national digits that read as another number.
            "mobiles": ",".join(self._number(m) for m in batch.mobiles),
            "content": batch.rendered.content,
        }
        if self.settings.ext_no is not None:
            fields["extNo"] = str(self.settings.ext_no)
        return form_request(self._send_url, fields, prefix=self._auth_prefix)

    def _number(self, mobile: Mobile) -> str:
        if mobile.is_mainland:
            return mobile.national
        digits = mobile.e164[1:]
        form = self.settings.international_format
        return "+" + digits if form == "plus" else ("00" + digits if form == "00" else digits)

    def parse_response(self, batch: Batch, response: Response) -> AttemptResult:
        """``code == "00"``: accepted under the returned taskId (ours if empty); else refused."""
        status = response.status_code
        if not response.is_success:
            return http_failure(self.name, batch, response)
        body = _json_object(response.content)
        code = body.get("code") if body is not None else None
        if body is None or not isinstance(code, str):
            return malformed(self.name, batch, response, "body is not the platform's JSON")
        if code != ACCEPTED_CODE:
            return AttemptResult.uniform(
                self.name,
                batch,
                Verdict.REJECTED,
                fault=self._refusal(code, body),
                http_status=status,
            )
        data = body.get("data")
        task_id = data.get("taskId") if isinstance(data, dict) else None
        return AttemptResult.uniform(
            self.name,
            batch,
            Verdict.ACCEPTED,
            message_id=str(task_id or batch.request_id),
            http_status=status,
        )

    def _refusal(self, code: str, body: dict[str, Any]) -> Fault:
        kind = self._codes.get(code, FaultKind.PROVIDER)
        error_class = ErrorClass.AUTH if kind is FaultKind.CREDENTIALS else ErrorClass.REFUSED
        return Fault(kind, error_class, code, self._redacted(str(body.get("message") or "")))

    def _redacted(self, text: str) -> str:
        """Provider text for a Fault: bounded, and with our credentials cut out should the
        platform ever echo them."""
        pwd = self.settings.pwd()
        for value in (pwd.lower(), pwd.upper(), *_plain(self.settings.password)):
            text = text.replace(value, "***")
        return text[:200] or "refused"

    def _auth(self) -> dict[str, str]:
        return {"account": self.settings.account, "pwd": self.settings.pwd()}

    # -- pulls (pure builders and parsers; providers.http performs the exchange) -------------

    def build_report_request(self) -> WireRequest:
        """``POST /api/v1/report``: pending receipts (each handed out once)."""
        return self._pull_request("/api/v1/report")

    def build_mo_request(self) -> WireRequest:
        """``POST /api/v1/mo``: pending replies."""
        return self._pull_request("/api/v1/mo")

    def build_balance_request(self) -> WireRequest:
        """``POST /api/v1/queryBalance``."""
        return self._pull_request("/api/v1/queryBalance")

    def parse_report(self, response: Response) -> list[DeliveryReport]:
        """Receipts of a ``/report`` answer; raises ProviderResponseError."""
        return pull.parse_report(self.name, response)

    def parse_mo(self, response: Response) -> list[InboundMessage]:
        """Replies of a ``/mo`` answer; raises ProviderResponseError."""
        return pull.parse_mo(self.name, response)

    def parse_balance(self, response: Response) -> Balance:
        """The ``/queryBalance`` answer; raises ProviderResponseError."""
        return pull.parse_balance(response)

    def _pull_request(self, path: str) -> WireRequest:
        return form_request(f"{self._base}{path}", self._auth())

    # -- pushes (answer each with PUSH_ACK_STATUS) ------------------------------------------

    push_kinds: ClassVar[frozenset[str]] = frozenset({"status", "mo"})

    def parse_push(
        self, kind: str, body: bytes, content_type: str
    ) -> Sequence[DeliveryReport | InboundMessage]:
        """A pushed ``/v1/callbacks/{name}/status`` or ``.../mo`` body (one item each)."""
        if kind == "status":
            return [self.parse_status_push(body, content_type)]
        return [self.parse_mo_push(body, content_type)]

    def push_ack(self, kind: str) -> PushAck:
        return PushAck()  # HTTP 200 is the acknowledgement (PUSH_ACK_STATUS)

    def parse_status_push(self, body: bytes, content_type: str) -> DeliveryReport:
        """A status push (JSON or form-encoded); raises ProviderResponseError naming a missing
        field. ``DELIVRD``/``DELIVER`` are delivered."""
        return pull.parse_status_push(self.name, body, content_type)

    def parse_mo_push(self, body: bytes, content_type: str) -> InboundMessage:
        """An inbound-message push (JSON or form-encoded); raises ProviderResponseError."""
        return pull.parse_mo_push(self.name, body, content_type)


def _plain(password: SecretStr | None) -> tuple[str, ...]:
    return () if password is None else (secret(password),)


def _json_object(raw: bytes) -> dict[str, Any] | None:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return body if isinstance(body, dict) else None
