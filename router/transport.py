"""HTTP clients for providers: one ``exchange(WireRequest) -> WireResponse`` per attempt.

The default, ``http1``, is the router's own lean HTTP/1.1 client (:mod:`router.http1`):
a ``WireRequest`` is already bytes, and aiohttp's request machinery cost ~3.4x its CPU per
request (``python -m benchmarks.bench_transport``, figures in benchmarks/README.md).
``aiohttp`` (:class:`router.transport_aiohttp.DirectAiohttpClient`, the default until
2026-12-04), ``httpx-aiohttp`` and ``httpx`` (:class:`HttpxClient`) remain selectable, and an
embedding application may pass its own ``httpx.AsyncClient``. Measured earlier
(``bench_load``): httpx's default transport falls from 707 req/s at concurrency 1 to 164 req/s
at concurrency 100 (pool lock contention, encode/httpx#3215). httpx-aiohttp's exception
mapping is lossy (a dropped connection after the request was written surfaces as
``ConnectTimeout``); :func:`providers.http.classify_exception` reads the underlying aiohttp
error so that case stays *unknown*, never a safe-to-resend rejection.

A new client costs up to ~38 ms of CPU (the CA bundle; http1 loads it on its first https
request): the router creates one per provider, once.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

import httpx

from providers.http import HttpClient, ProviderIOError, classify_exception
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
    if kind == "http1" or kind == "aiohttp":
        direct: Callable[..., HttpClient] = Http1Client
        if kind == "aiohttp":
            from router.transport_aiohttp import DirectAiohttpClient

            direct = DirectAiohttpClient
        return direct(
            connect_timeout_s=connect_timeout_s,
            timeout_s=timeout_s,
            max_connections=max_connections,
            keepalive_s=keepalive_s,
        )
    timeout = httpx.Timeout(timeout_s, connect=connect_timeout_s, pool=connect_timeout_s)
    limits = httpx.Limits(
        max_connections=max_connections,
        max_keepalive_connections=max_connections,
        keepalive_expiry=keepalive_s,
    )
    if kind == "httpx-aiohttp":
        from router.transport_aiohttp import SafeAiohttpTransport

        transport: httpx.AsyncBaseTransport = SafeAiohttpTransport(limits=limits, trust_env=False)
    else:
        transport = httpx.AsyncHTTPTransport(limits=limits, trust_env=False)
    return HttpxClient(httpx.AsyncClient(transport=transport, timeout=timeout, trust_env=False))


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
