"""Provider push endpoints: delivery receipts and inbound replies.

``POST /v1/callbacks/{provider}/{kind}?token=...`` where kind is ``status`` / ``mo``
(v1 platform) or ``receipt`` (Ronglian). Each answers fast with what the provider expects
(HTTP 200; Ronglian's JSON ack), is idempotent (a receipt pushed twice counts once), and is
guarded by a per-provider shared-secret token (``X-Callback-Token`` header, or ``?token=`` for
providers that can only be given a URL) and an optional IP allow-list. Every refusal is a log
line and ``smsrouter_callback_rejections_total{provider,reason}``.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging

from starlette.requests import Request
from starlette.responses import Response

from providers.base import DeliveryReport
from router.engine import Router
from router.errors import ProviderResponseError
from router.events import CallbackRejected
from router.inbound import InboundDeliveryError

log = logging.getLogger("router.callbacks")
TOKEN_HEADER = "x-callback-token"  # noqa: S105 - a header name, not a secret


class Callbacks:
    def __init__(self, router: Router) -> None:
        self.router = router

    def _reject(self, provider: str, reason: str, status: int, text: str) -> Response:
        """Answer a refused push, and say so: a log line and a metric (never the token)."""
        known = provider if provider in self.router.providers else "other"  # bounded label
        self.router.events.emit(CallbackRejected(known, reason))
        return Response(text, status_code=status)

    def _denied(self, request: Request, provider: str) -> Response | None:
        settings = self.router.settings.server
        expected = settings.callback_tokens.get(provider)
        if provider not in self.router.providers or expected is None:
            return self._reject(
                provider, "not_configured", 404, "no callback configured for this provider"
            )
        # A header keeps the token out of access logs; the query stays for providers that
        # can only be given a URL.
        given = request.headers.get(TOKEN_HEADER) or request.query_params.get("token", "")
        if not hmac.compare_digest(given.encode(), expected.get_secret_value().encode()):
            return self._reject(provider, "token", 403, "bad token")
        allowed = settings.callback_allow_ips.get(provider)
        if allowed:
            client = ipaddress.ip_address(request.client.host) if request.client else None
            if client is None or not any(client in ipaddress.ip_network(n) for n in allowed):
                return self._reject(provider, "address", 403, "address not allowed")
        return None

    async def handle(self, request: Request) -> Response:
        provider, kind = request.path_params["provider"], request.path_params["kind"]
        denied = self._denied(request, provider)
        if denied is not None:
            return denied
        receiver = self.router.runtimes[provider].pushes
        if receiver is None or kind not in receiver.push_kinds:
            return self._reject(provider, "unknown_kind", 404, f"{provider} has no {kind} callback")
        body = await request.body()
        content_type = request.headers.get("content-type", "")
        try:
            parsed = receiver.parse_push(kind, body, content_type)
        except ProviderResponseError as exc:
            log.warning("provider=%s callback=%s unreadable: %s", provider, kind, exc)
            return self._reject(provider, "unreadable", 400, str(exc))
        reports = [p for p in parsed if isinstance(p, DeliveryReport)]
        replies = [p for p in parsed if not isinstance(p, DeliveryReport)]
        if reports:
            await self.router.record_receipts(reports)
        if replies:
            try:  # acknowledged only once stored: a refused push is not a taken one
                await self.router.deliver_inbound(replies)
            except InboundDeliveryError as exc:
                log.warning("provider=%s reply not delivered: %s", provider, exc)
                return Response("reply not stored; push it again", status_code=503)
        ack = receiver.push_ack(kind)
        return Response(ack.body, media_type=ack.media_type)
