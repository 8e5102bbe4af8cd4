"""Inbound replies (MO) delivered to the service: a Redis stream it reads, a webhook it serves,
or this process's memory (embedded use). At-least-once: a push is acknowledged to the provider
only after its reply is stored at the destination; a failed delivery answers 503 and is
counted (``smsrouter_inbound_messages_total{provider,outcome}``), never acknowledged as taken.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import httpx

from providers.base import InboundMessage
from router.config import InboundSettings
from router.errors import RouterError, StateStoreError
from router.state.base import StateStore


class InboundDeliveryError(RouterError):
    """The reply could not be stored at its destination (nothing else was lost: the caller
    answers the provider with an error, so a provider that retries pushes it again)."""


def as_entry(message: InboundMessage) -> dict[str, str]:
    """One reply as flat string fields (a Redis stream entry, a JSON object)."""
    return {
        "provider": message.provider,
        "mobile": message.mobile,
        "content": message.content,
        "ext_no": message.ext_no or "",
        "at": message.at.isoformat() if message.at is not None else "",
    }


class InboundDelivery:
    def __init__(self, settings: InboundSettings, store: StateStore) -> None:
        self.settings = settings
        self.store = store
        self.kept: deque[InboundMessage] = deque(maxlen=settings.memory_keep)
        self._client: httpx.AsyncClient | None = None

    async def deliver(self, messages: Sequence[InboundMessage]) -> None:
        """Store ``messages`` at the destination, or raise :class:`InboundDeliveryError`."""
        s = self.settings
        if s.destination == "memory":
            self.kept.extend(messages)
        elif s.destination == "redis_stream":
            try:
                await self.store.append_stream(
                    s.stream, [as_entry(m) for m in messages], s.stream_maxlen
                )
            except StateStoreError as exc:
                raise InboundDeliveryError(f"reply not stored in {s.stream}: {exc}") from None
        else:
            await self._post(messages)

    async def _post(self, messages: Sequence[InboundMessage]) -> None:
        assert self.settings.webhook_url is not None  # validated by InboundSettings
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=self.settings.webhook_timeout_s, trust_env=False
            )
        try:
            answer = await self._client.post(
                self.settings.webhook_url, json=[as_entry(m) for m in messages]
            )
        except httpx.HTTPError as exc:
            raise InboundDeliveryError(
                f"reply webhook unreachable ({type(exc).__name__})"
            ) from None
        if not answer.is_success:
            raise InboundDeliveryError(f"reply webhook answered HTTP {answer.status_code}")

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
