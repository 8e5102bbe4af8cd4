"""HTTP clients for providers: httpx as the API, the transport pluggable.

Measured here (``python -m benchmarks.bench_load``, figures in benchmarks/README.md, see
docs/decisions.md): httpx's default transport falls from 707 req/s at concurrency 1 to 164
req/s at concurrency 100 (pool lock contention, encode/httpx#3215) while raw aiohttp keeps
3,908 req/s, and httpx's client layer itself costs more than the routing. So the default,
``aiohttp``, sends the adapters' ``httpx.Request`` objects straight through an aiohttp session
(:class:`DirectAiohttpClient`); ``httpx-aiohttp`` and ``httpx`` remain selectable.
httpx-aiohttp's exception mapping is lossy (a dropped connection after the request was written
surfaces as ``ConnectTimeout``); :func:`providers.http.classify_exception` reads the
underlying aiohttp error so that case stays *unknown*, never a safe-to-resend rejection.

A new client costs ~38 ms of CPU (CA bundle): the router creates one per provider, once.
"""

from __future__ import annotations

import logging
import re
from typing import Literal

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from providers.http import HttpClient


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

TransportKind = Literal["aiohttp", "httpx-aiohttp", "httpx"]
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
    if kind == "aiohttp":
        return DirectAiohttpClient(
            connect_timeout_s=connect_timeout_s,
            timeout_s=timeout_s,
            max_connections=max_connections,
            keepalive_s=keepalive_s,
        )
    if kind == "httpx-aiohttp":
        transport: httpx.AsyncBaseTransport = SafeAiohttpTransport(limits=limits, trust_env=False)
    else:
        transport = httpx.AsyncHTTPTransport(limits=limits, trust_env=False)
    return httpx.AsyncClient(transport=transport, timeout=timeout, trust_env=False)


class DirectAiohttpClient:
    """The smallest client ``providers.http.send_batch`` needs, straight on aiohttp.

    Adapters build ``httpx.Request`` objects (sans-I/O); this sends one with a shared
    ``aiohttp.ClientSession`` and returns a read ``httpx.Response``, skipping httpx's client
    machinery (auth flows, redirects, cookies, event hooks), which the router never uses and
    which costs more CPU per request than the whole routing decision. Errors are raised as
    httpx exceptions with the aiohttp error as ``__cause__``, so classification is shared.
    """

    def __init__(
        self,
        *,
        connect_timeout_s: float,
        timeout_s: float,
        max_connections: int,
        keepalive_s: float = 4.0,
    ):
        self.timeout = httpx.Timeout(timeout_s, connect=connect_timeout_s)
        self._limit = max_connections
        self._keepalive_s = keepalive_s
        self._session: aiohttp.ClientSession | None = None

    def _session_now(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._limit, ttl_dns_cache=300, keepalive_timeout=self._keepalive_s
            )
            self._session = aiohttp.ClientSession(
                connector=connector, trust_env=False, auto_decompress=True
            )
        return self._session

    async def send(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout") or self.timeout.as_dict()
        total = timeouts.get("read") or self.timeout.read
        timeout = aiohttp.ClientTimeout(total=total, sock_connect=timeouts.get("connect"))
        body = await request.aread()  # multipart bodies are streams until read
        try:
            async with self._session_now().request(
                request.method,
                str(request.url),
                headers=list(request.headers.multi_items()),
                data=body,
                timeout=timeout,
                allow_redirects=False,
            ) as response:
                answer = await response.read()
                return httpx.Response(
                    response.status,
                    headers=response.raw_headers,
                    content=answer,
                    request=request,
                )
        except aiohttp.ClientConnectorError as exc:
            raise httpx.ConnectError(str(exc), request=request) from exc
        except aiohttp.ConnectionTimeoutError as exc:
            raise httpx.ConnectTimeout(str(exc), request=request) from exc
        except TimeoutError as exc:
            raise httpx.ReadTimeout("timed out", request=request) from exc
        except aiohttp.ClientError as exc:
            raise httpx.RemoteProtocolError(str(exc), request=request) from exc

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
