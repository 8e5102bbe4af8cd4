"""HTTP clients for providers: one ``exchange(WireRequest) -> WireResponse`` per attempt.

The default, ``http1``, is the router's own lean HTTP/1.1 client (:mod:`router.http1`):
a ``WireRequest`` is already bytes, and aiohttp's request machinery cost ~3.7x its CPU per
request (``python -m benchmarks.bench_transport``, figures in benchmarks/README.md).
``aiohttp`` (:class:`DirectAiohttpClient`, the default until 2026-12-04), ``httpx-aiohttp``
and ``httpx`` (:class:`HttpxClient`) remain selectable, and an embedding application may pass
its own ``httpx.AsyncClient``. Measured earlier (``bench_load``): httpx's default transport
falls from 707 req/s at concurrency 1 to 164 req/s at concurrency 100 (pool lock contention,
encode/httpx#3215). httpx-aiohttp's exception mapping is lossy (a dropped connection after the
request was written surfaces as ``ConnectTimeout``); :func:`providers.http.classify_exception`
reads the underlying aiohttp error so that case stays *unknown*, never a safe-to-resend
rejection.

A new client costs ~38 ms of CPU (CA bundle): the router creates one per provider, once.
"""

from __future__ import annotations

import logging
import re

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from providers.base import ErrorClass, Verdict
from providers.http import HttpClient, ProviderIOError, classify_exception, io_error
from providers.wire import WireRequest, WireResponse
from router.config import TransportKind
from router.http1 import Http1Client


class _RedactQuerySecrets(logging.Filter):
    """httpx logs every request URL at INFO, and Ronglian's URL carries ``sig`` (derived from
    the auth token). An embedding application may log httpx at INFO: redact the value in the
    record itself, whatever handler prints it."""

    _SECRET = re.compile(r"((?:^|[?&])(?:sig|token|pwd|password)=)[^&\s\"']+", re.IGNORECASE)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.args = tuple(
                self._SECRET.sub(r"\1***", str(a)) if isinstance(a, str | httpx.URL) else a
                for a in (record.args if isinstance(record.args, tuple) else (record.args,))
            )
        if isinstance(record.msg, str):
            record.msg = self._SECRET.sub(r"\1***", record.msg)
        return True


logging.getLogger("httpx").addFilter(_RedactQuerySecrets())


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
    keepalive_s: float = 4.0,
) -> HttpClient:
    """One long-lived client. ``trust_env=False``: no proxy from the environment may divert
    provider traffic (and credentials) anywhere the configuration does not say.

    ``keepalive_s``: an idle connection is closed by us before the server's own keep-alive
    ends (5 s is a common server default). Reusing a connection the server is closing at that
    moment fails after the request was written: a send would end ``unknown`` for nothing."""
    timeout = httpx.Timeout(timeout_s, connect=connect_timeout_s, pool=connect_timeout_s)
    limits = httpx.Limits(
        max_connections=max_connections,
        max_keepalive_connections=max_connections,
        keepalive_expiry=keepalive_s,
    )
    if kind == "http1" or kind == "aiohttp":
        direct = Http1Client if kind == "http1" else DirectAiohttpClient
        return direct(
            connect_timeout_s=connect_timeout_s,
            timeout_s=timeout_s,
            max_connections=max_connections,
            keepalive_s=keepalive_s,
        )
    if kind == "httpx-aiohttp":
        transport: httpx.AsyncBaseTransport = SafeAiohttpTransport(limits=limits, trust_env=False)
    else:
        transport = httpx.AsyncHTTPTransport(limits=limits, trust_env=False)
    return HttpxClient(httpx.AsyncClient(transport=transport, timeout=timeout, trust_env=False))


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


class HttpxClient:
    """Any ``httpx.AsyncClient`` as a provider client (``transport = "httpx"`` or
    ``"httpx-aiohttp"``, or a client an embedding application passes to ``Router``)."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def exchange(self, request: WireRequest, timeout_s: float | None) -> WireResponse:
        outgoing = request.to_httpx()
        if timeout_s is not None:
            connect = self.client.timeout.connect
            outgoing.extensions["timeout"] = httpx.Timeout(
                timeout_s, connect=min(timeout_s, connect) if connect else timeout_s
            ).as_dict()
        try:
            response = await self.client.send(outgoing)
            try:
                body = await response.aread()
            finally:
                await response.aclose()
        except httpx.HTTPError as exc:
            verdict, fault = classify_exception(exc)
            raise ProviderIOError(verdict, fault, request.path) from None
        return WireResponse(response.status_code, body, response.headers)

    async def aclose(self) -> None:
        await self.client.aclose()


def as_client(client: HttpClient | httpx.AsyncClient) -> HttpClient:
    """A client the router can use: an ``httpx.AsyncClient`` is wrapped."""
    return HttpxClient(client) if isinstance(client, httpx.AsyncClient) else client
