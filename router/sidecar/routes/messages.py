"""``/v1/messages`` and ``/v1/explain``: send, look a send up, rank without sending."""

from __future__ import annotations

from contextvars import Token
from types import TracebackType
from typing import Any

from opentelemetry import context, propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from router.engine import RECENT_RESULTS, RECENT_TTL_S, Router
from router.errors import (
    IdempotencyConflictError,
    IdempotencyPendingError,
    MessageError,
    RouterError,
    StateStoreError,
)
from router.model import RecipientOutcome, RecipientStatus
from router.sidecar.responses import error_response, json_response, parse_send
from router.sidecar.schemas import delivery_json, explanation_json, receipt_json, result_json

# Most specific first: the first matching class answers.
_SEND_ERRORS: tuple[tuple[type[RouterError], int, str], ...] = (
    (IdempotencyConflictError, 409, "idempotency_conflict"),
    (IdempotencyPendingError, 409, "idempotency_pending"),
    (MessageError, 400, "bad_message"),
    (StateStoreError, 503, "state_store_unavailable"),
    (RouterError, 500, "internal_error"),  # Router.send raises bare RouterError for bugs only
)
_tracer = trace.get_tracer("sms-router.sidecar")
NOT_RECENT = (
    f"no message with that id in this instance's recent results (the last "
    f"{RECENT_TTL_S / 3600:g} h, at most {RECENT_RESULTS:,} sends); that does not mean it was not "
    "sent: another instance may have sent it, or it is older"
)


class ServerSpan:
    """A request's server span, current while the request is handled; a W3C traceparent in
    ``headers`` makes the caller's trace its parent. What ``start_as_current_span`` does,
    without its two generator-based context managers per request (~2 us of ~6)."""

    __slots__ = ("_parent", "_token", "span")

    def __init__(self, name: str, headers: Any) -> None:
        # No header the propagators read (most calls): nothing to extract (~2 us saved).
        fields = propagate.get_global_textmap().fields
        self._parent = propagate.extract(headers) if any(f in headers for f in fields) else None
        self.span = _tracer.start_span(name, context=self._parent, kind=SpanKind.SERVER)
        self._token: Token[context.Context] | None = None

    def __enter__(self) -> Span:
        self._token = context.attach(trace.set_span_in_context(self.span, self._parent))
        return self.span

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._token is not None:
            context.detach(self._token)
        if exc is not None and self.span.is_recording():
            self.span.record_exception(exc)
            self.span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        self.span.end()


class Messages:
    """Handlers that send through, or ask, one :class:`~router.engine.Router`."""

    def __init__(self, router: Router) -> None:
        self.router = router

    def routes(self) -> list[Route]:
        """This module's routes."""
        return [
            Route("/v1/messages", self.send, methods=["POST"]),
            Route("/v1/explain", self.explain, methods=["POST"]),
            Route("/v1/messages/{message_id}", self.status, methods=["GET"]),
        ]

    async def send(self, request: Request) -> Response:
        """``POST /v1/messages``: per-recipient outcomes of one logical message."""
        # A W3C traceparent makes the caller's trace the parent: server span, then sms.send.
        with ServerSpan("POST /v1/messages", request.headers) as span:
            parsed = await parse_send(request)
            if isinstance(parsed, Response):
                span.set_attribute("http.response.status_code", parsed.status_code)
                return parsed
            try:
                message = parsed.to_message(request.headers.get("idempotency-key"))
                result = await self.router.send(message)
            except RouterError as exc:
                status, kind = next((s, k) for c, s, k in _SEND_ERRORS if isinstance(exc, c))
                span.set_attribute("http.response.status_code", status)
                return error_response(status, kind, str(exc))
            span.set_attribute("http.response.status_code", 200)
            span.set_attribute("messaging.message.id", result.message_id)
            return json_response(result_json(result))

    async def explain(self, request: Request) -> Response:
        """``POST /v1/explain``: the ranking a send would use, with reasons."""
        parsed = await parse_send(request)
        if isinstance(parsed, Response):
            return parsed
        try:
            explanation = self.router.explain(parsed.to_message(None))
        except MessageError as exc:
            return error_response(400, "bad_message", str(exc))
        return json_response(explanation_json(explanation))

    async def status(self, request: Request) -> Response:
        """``GET /v1/messages/{id}``: a recent send's result, each recipient's delivery and
        receipts, and the receipts that fit no single recipient."""
        result = self.router.recent_result(request.path_params["message_id"])
        if result is None:
            # Per instance: not being here is no proof that the message was not sent.
            return error_response(404, "not_found", NOT_RECENT)
        body = result_json(result)
        unmatched: list[dict[str, Any]] = []
        batches: set[tuple[str, str]] = set()
        for recipient, outcome in zip(body["recipients"], result.recipients, strict=True):
            batch = await self._follow(recipient, outcome)
            if batch is not None and batch not in batches:
                batches.add(batch)
                unmatched += [receipt_json(*u) for u in self.router.receipts.unmatched(*batch)]
        # Receipts that name no single recipient (masked number fitting none or several):
        # shown once here, never applied to a recipient.
        body["unmatched_receipts"] = unmatched
        return json_response(body)

    async def _follow(
        self, recipient: dict[str, Any], r: RecipientOutcome
    ) -> tuple[str, str] | None:
        """Add ``receipts`` and ``delivery`` to one recipient's body; its provider batch, if a
        provider accepted it."""
        recipient["receipts"], recipient["delivery"] = [], None
        if not (r.provider and r.provider_message_id and r.normalised):
            return None  # never accepted: no delivery to follow
        if r.status is not RecipientStatus.ACCEPTED:
            return None
        batch = (r.provider, r.provider_message_id)
        # Only this recipient's own receipt: the message id names the whole batch.
        receipts = self.router.receipts.receipts_for(*batch, r.normalised)
        recipient["receipts"] = [receipt_json(rep) for rep in receipts]
        delivery = await self.router.delivery_status(*batch, r.normalised)
        recipient["delivery"] = delivery_json(delivery)
        return batch
