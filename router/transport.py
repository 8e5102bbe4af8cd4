"""HTTP clients for providers: httpx as the API, the transport pluggable.

Measured here (shared/design.md): httpx's default transport falls from ~720 req/s at
concurrency 1 to 140-330 req/s at concurrency 100 (pool lock contention, encode/httpx#3215);
httpx over the ``httpx-aiohttp`` transport keeps ~1,600-1,800 req/s. So ``aiohttp`` is the
default. Its exception mapping is lossy (a dropped connection after the request was written
surfaces as ``ConnectTimeout``); :func:`providers.http.classify_exception` reads the
underlying aiohttp error so that case stays *unknown*, never a safe-to-resend rejection.

A new client costs ~38 ms of CPU (CA bundle): the router creates one per provider, once.
"""

from __future__ import annotations

from typing import Literal

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

TransportKind = Literal["aiohttp", "httpx"]
DEFAULT_TRANSPORT: TransportKind = "aiohttp"


class SafeAiohttpTransport(AiohttpTransport):
    """httpx-aiohttp's transport, plus one guarantee: no raw aiohttp exception escapes.

    httpx-aiohttp leaves some aiohttp errors unmapped (a garbled status line raises
    ``aiohttp.ClientResponseError``); they become ``httpx.RemoteProtocolError`` with the
    original as ``__cause__``, so callers catching ``httpx.HTTPError`` see every failure.
    """

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            response: httpx.Response = await super().handle_async_request(request)
        except aiohttp.ClientError as exc:
            raise httpx.RemoteProtocolError(str(exc), request=request) from exc
        return response


def make_client(
    kind: TransportKind,
    *,
    connect_timeout_s: float,
    timeout_s: float,
    max_connections: int,
) -> httpx.AsyncClient:
    """One long-lived client. ``trust_env=False``: no proxy from the environment may divert
    provider traffic (and credentials) anywhere the configuration does not say."""
    timeout = httpx.Timeout(timeout_s, connect=connect_timeout_s, pool=connect_timeout_s)
    limits = httpx.Limits(
        max_connections=max_connections, max_keepalive_connections=max_connections
    )
    if kind == "aiohttp":
        transport: httpx.AsyncBaseTransport = SafeAiohttpTransport(limits=limits, trust_env=False)
    else:
        transport = httpx.AsyncHTTPTransport(limits=limits, trust_env=False)
    return httpx.AsyncClient(transport=transport, timeout=timeout, trust_env=False)
