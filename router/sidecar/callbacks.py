"""Provider push endpoints: delivery receipts and inbound replies.

``POST /v1/callbacks/{provider}/{kind}?token=...`` where kind is ``status`` / ``mo``
(v1 platform) or ``receipt`` (Ronglian). Each answers fast with what the provider expects
(HTTP 200; Ronglian's JSON ack), is idempotent (a receipt pushed twice counts once), and is
guarded by a per-provider shared-secret token in the URL and an optional IP allow-list.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections import deque

from starlette.requests import Request
from starlette.responses import Response

from providers.base import DeliveryReport, InboundMessage
from router.engine import Router
from router.errors import ProviderResponseError

log = logging.getLogger("router.callbacks")
INBOUND_KEEP = 10_000


class Callbacks:
    def __init__(self, router: Router) -> None:
        self.router = router
        self.inbound: deque[InboundMessage] = deque(maxlen=INBOUND_KEEP)

    def _denied(self, request: Request, provider: str) -> Response | None:
        settings = self.router.settings.server
        expected = settings.callback_tokens.get(provider)
        if provider not in self.router.providers or expected is None:
            return Response("no callback configured for this provider", status_code=404)
        given = request.query_params.get("token", "")
        if not hmac.compare_digest(given.encode(), expected.get_secret_value().encode()):
            return Response("bad token", status_code=403)
        allowed = settings.callback_allow_ips.get(provider)
        if allowed:
            if request.client is None:
                return Response("address not allowed", status_code=403)
            client = ipaddress.ip_address(request.client.host)
            if not any(client in ipaddress.ip_network(net) for net in allowed):
                return Response("address not allowed", status_code=403)
        return None

    async def handle(self, request: Request) -> Response:
        provider, kind = request.path_params["provider"], request.path_params["kind"]
        denied = self._denied(request, provider)
        if denied is not None:
            return denied
        receiver = self.router.runtimes[provider].pushes
        if receiver is None or kind not in receiver.push_kinds:
            return Response(f"{provider} has no {kind} callback", status_code=404)
        body = await request.body()
        content_type = request.headers.get("content-type", "")
        try:
            parsed = receiver.parse_push(kind, body, content_type)
        except ProviderResponseError as exc:
            log.warning("provider=%s callback=%s rejected: %s", provider, kind, exc)
            return Response(str(exc), status_code=400)
        if isinstance(parsed, DeliveryReport):
            await self.router.record_receipts([parsed])
        else:
            self.inbound.append(parsed)
        ack = receiver.push_ack(kind)
        return Response(ack.body, media_type=ack.media_type)
