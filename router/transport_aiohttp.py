"""The aiohttp-backed transports (``transport = "aiohttp"`` and ``"httpx-aiohttp"``),
imported only when configured: the default transport (:mod:`router.http1`) needs no aiohttp,
and a router that never loads it keeps ~10 MB less resident."""

from __future__ import annotations

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from providers.base import ErrorClass, Verdict
from providers.http import io_error
from providers.wire import WireRequest, WireResponse


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


class DirectAiohttpClient:
    """The default client: an adapter's :class:`WireRequest` straight onto one shared
    ``aiohttp.ClientSession``, the answer read into a :class:`WireResponse`.

    No httpx objects per request (its client layer: auth flows, redirects, cookies, event
    hooks, header normalisation, costs more CPU per request than the routing decision).
    aiohttp's errors become :class:`ProviderIOError` here, by the rule of
    :mod:`providers.http`: rejected only when the connection was never made.
    """

    def __init__(
        self,
        *,
        connect_timeout_s: float,
        timeout_s: float,
        max_connections: int,
        keepalive_s: float = 4.0,
    ):
        self.connect_timeout_s = connect_timeout_s
        self._limit = max_connections
        self._keepalive_s = keepalive_s
        self._session: aiohttp.ClientSession | None = None
        self._default_timeout = aiohttp.ClientTimeout(
            total=timeout_s, sock_connect=connect_timeout_s
        )

    def _session_now(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._limit, ttl_dns_cache=300, keepalive_timeout=self._keepalive_s
            )
            self._session = aiohttp.ClientSession(
                connector=connector, trust_env=False, auto_decompress=True
            )
        return self._session

    async def exchange(self, request: WireRequest, timeout_s: float | None) -> WireResponse:
        if timeout_s is None:
            timeout = self._default_timeout
        else:
            connect = min(timeout_s, self.connect_timeout_s)
            timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=connect)
        try:
            async with self._session_now().request(
                request.method,
                request.url,
                headers=request.headers,
                data=request.body,
                timeout=timeout,
                allow_redirects=False,
            ) as response:
                body = await response.read()
                return WireResponse(response.status, body, response.headers)
        except _NOT_CONNECTED as exc:
            raise io_error(Verdict.REJECTED, ErrorClass.CONNECT, exc, request.path) from None
        except TimeoutError as exc:
            raise io_error(Verdict.UNKNOWN, ErrorClass.TIMEOUT, exc, request.path) from None
        except aiohttp.ClientError as exc:
            raise io_error(Verdict.UNKNOWN, ErrorClass.PROTOCOL, exc, request.path) from None

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


# Never connected: no byte of the request can have reached the provider.
_NOT_CONNECTED = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)


__all__ = ["DirectAiohttpClient", "SafeAiohttpTransport"]
