"""A lean HTTP/1.1 client for provider requests: ``transport = "http1"``, the default.

A :class:`providers.wire.WireRequest` is already bytes, so a send needs no client layer: this
client writes the request head and body in one ``transport.write`` on a pooled keep-alive
connection and parses the answer with httptools (llhttp, the parser uvicorn uses) into a
:class:`providers.wire.WireResponse`. Against aiohttp's request machinery (its request and
response objects, a writer task per request, timer contexts, header multidicts) it saves
most of a send's transport CPU; figures in ``benchmarks/README.md`` (``bench_transport``).

The verdict rule, exact here because the client knows when a request's bytes were handed
to a connection:

* never written (no free connection before the deadline, DNS failure, connection refused,
  connect timeout, TLS handshake failure): ``REJECTED``, safe to send elsewhere;
* written (to a new connection or a reused one): any failure after that (timeout, reset,
  the server closing before a complete answer, an unparsable or oversized answer) is
  ``UNKNOWN``: the provider may have taken it.

Bounded: at most ``max_connections`` connections per origin (waiters queue first come first
served), answers up to ``MAX_RESPONSE_BYTES`` and ``MAX_HEAD_BYTES``, idle connections closed
after ``keepalive_s`` (before a server's own keep-alive ends, so a reused connection is
rarely one the server is closing). No proxies, no redirects, no cookies: provider traffic
goes where the configuration says and nowhere else. No ``Accept-Encoding`` is sent; a
gzip or deflate answer is decoded anyway.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import zlib
from collections import deque
from typing import Any, cast
from urllib.parse import urlsplit

import httptools

from providers.base import ErrorClass, Verdict
from providers.http import ProviderIOError, io_error
from providers.wire import WireRequest, WireResponse

MAX_RESPONSE_BYTES = 16 * 1024 * 1024  # a provider's answer; larger is a protocol fault
MAX_HEAD_BYTES = 64 * 1024  # status line and headers
USER_AGENT = "sms-router"


class NotConnectedError(ConnectionError):
    """No connection could be had: the request was never written."""


class PoolTimeoutError(TimeoutError):
    """Every connection stayed busy until the deadline: the request was never written."""


class ServerDisconnectedError(ConnectionError):
    """The server closed the connection before a complete answer."""


class ResponseTooLargeError(ValueError):
    """The answer's head or body passed this client's bound."""


class InvalidRequestError(ValueError):
    """A request that cannot be written as HTTP/1.1 (CR or LF in a header, a non-Latin-1
    header value, an unsupported URL scheme)."""


Origin = tuple[str, str, int]  # scheme, host, port
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_UNSAFE_VALUE = re.compile(r"[\r\n\x00]")
_UNSAFE_TARGET = re.compile(r"[\s\x00]")


class Http1Client:
    """One long-lived client per provider: a pool of HTTP/1.1 connections per origin."""

    def __init__(
        self,
        *,
        connect_timeout_s: float,
        timeout_s: float,
        max_connections: int,
        keepalive_s: float = 4.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.connect_timeout_s = connect_timeout_s
        self.timeout_s = timeout_s
        self.max_connections = max_connections
        self.keepalive_s = keepalive_s
        self._ssl = ssl_context
        self._pools: dict[Origin, _Pool] = {}

    async def exchange(self, request: WireRequest, timeout_s: float | None) -> WireResponse:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self.timeout_s if timeout_s is None else timeout_s)
        try:
            origin, data = _encode(request)
        except InvalidRequestError as exc:
            raise io_error(Verdict.REJECTED, ErrorClass.PROTOCOL, exc, request.path) from None
        pool = self._pools.get(origin)
        if pool is None:
            pool = self._pools[origin] = _Pool(self, origin)
        try:
            connection = await pool.acquire(loop, deadline)
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            raise io_error(Verdict.REJECTED, ErrorClass.CONNECT, exc, request.path) from None
        reusable = False
        try:
            status, headers, body, reusable = await connection.roundtrip(loop, data, deadline)
        except NotConnectedError as exc:  # nothing was written
            raise io_error(Verdict.REJECTED, ErrorClass.CONNECT, exc, request.path) from None
        except TimeoutError as exc:
            raise _unknown(ErrorClass.TIMEOUT, exc, request) from None
        except (OSError, ValueError, httptools.HttpParserError, zlib.error) as exc:
            raise _unknown(ErrorClass.PROTOCOL, exc, request) from None
        finally:
            pool.release(connection, reusable)
        return WireResponse(status, body, headers)

    async def aclose(self) -> None:
        pools, self._pools = self._pools, {}
        for pool in pools.values():
            pool.close()

    def ssl_context(self) -> ssl.SSLContext:
        """The TLS context for https origins, made on first use (~40 ms of CPU: the CA
        bundle)."""
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl

    def open_connections(self) -> int:
        """Connections open now, idle or busy (for tests and diagnostics)."""
        return sum(p.open for p in self._pools.values())


def _unknown(error_class: ErrorClass, exc: BaseException, request: WireRequest) -> ProviderIOError:
    return io_error(Verdict.UNKNOWN, error_class, exc, request.path)


def _encode(request: WireRequest) -> tuple[Origin, bytes]:
    """The request's origin and its bytes (head and body)."""
    url = urlsplit(request.url)
    scheme = url.scheme
    if scheme not in ("http", "https") or not url.hostname:
        raise InvalidRequestError(f"unsupported URL scheme {scheme!r} (http or https)")
    default = 443 if scheme == "https" else 80
    port = url.port or default
    host = url.hostname
    host_header = host if port == default else f"{host}:{port}"
    if ":" in host and not host.startswith("["):  # IPv6 literal
        host_header = f"[{host}]" if port == default else f"[{host}]:{port}"
    target = (url.path or "/") + (f"?{url.query}" if url.query else "")
    lines = [
        f"{request.method} {target} HTTP/1.1",
        f"Host: {host_header}",
        f"User-Agent: {USER_AGENT}",
        f"Content-Length: {len(request.body)}",
    ]
    if _UNSAFE_TARGET.search(target) or not _TOKEN.fullmatch(request.method):
        raise InvalidRequestError("a method or URL path that cannot be a request line")
    for name, value in request.headers:
        if not _TOKEN.fullmatch(name) or _UNSAFE_VALUE.search(value):
            raise InvalidRequestError(f"header {name!r}: a name or value HTTP cannot carry")
        lines.append(f"{name}: {value}")
    head = "\r\n".join(lines)
    try:
        encoded = head.encode("latin-1")
    except UnicodeEncodeError:
        raise InvalidRequestError("a header value outside Latin-1") from None
    return (scheme, host, port), encoded + b"\r\n\r\n" + request.body


class _Pool:
    """The connections to one origin: idle ones (most recently used first), a count of open
    ones, and first-come waiters for a free one."""

    def __init__(self, client: Http1Client, origin: Origin) -> None:
        self.client = client
        self.origin = origin
        self.idle: list[_Connection] = []
        self.open = 0
        # A waiter's future gets a connection (handed over) or None (open a new one).
        self.waiters: deque[asyncio.Future[_Connection | None]] = deque()
        self.closed = False

    async def acquire(self, loop: asyncio.AbstractEventLoop, deadline: float) -> _Connection:
        now = loop.time()
        while self.idle:
            connection = self.idle.pop()
            if connection.closed or now - connection.idle_since > self.client.keepalive_s:
                self._discard(connection)
                continue
            return connection
        if self.open >= self.client.max_connections:
            handed = await self._wait(loop, deadline)
            if handed is not None:
                return handed
        else:
            self.open += 1  # reserved before connecting, so concurrent callers count it
        try:
            return await self._connect(loop, deadline)
        except BaseException:
            self._free_slot()
            raise

    async def _wait(self, loop: asyncio.AbstractEventLoop, deadline: float) -> _Connection | None:
        waiter: asyncio.Future[_Connection | None] = loop.create_future()
        self.waiters.append(waiter)
        timer = loop.call_at(deadline, _expire, waiter)
        try:
            return await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                # Handed a connection or a slot, then cancelled before resuming: give it back.
                handed = waiter.result()
                if handed is not None:
                    self.release(handed, True)
                else:
                    self._free_slot()
            raise
        finally:
            timer.cancel()
            if not waiter.done():
                waiter.cancel()

    async def _connect(self, loop: asyncio.AbstractEventLoop, deadline: float) -> _Connection:
        scheme, host, port = self.origin
        timeout = min(self.client.connect_timeout_s, deadline - loop.time())
        if timeout <= 0:
            raise TimeoutError("no time left to connect")
        tls = self.client.ssl_context() if scheme == "https" else None
        async with asyncio.timeout(timeout):
            _, connection = await loop.create_connection(
                _Connection, host, port, ssl=tls, server_hostname=host if tls else None
            )
        return connection

    def release(self, connection: _Connection, reusable: bool) -> None:
        if not reusable or connection.closed or self.closed:
            self._discard(connection)
            return
        connection.idle_since = asyncio.get_running_loop().time()
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(connection)
                return
        self.idle.append(connection)

    def _discard(self, connection: _Connection) -> None:
        connection.close()
        self._free_slot()

    def _free_slot(self) -> None:
        """One connection fewer: a waiter, if any, may open a new one in its place."""
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes to the waiter; open stays counted
                return
        self.open -= 1

    def close(self) -> None:
        self.closed = True
        idle, self.idle = self.idle, []
        for connection in idle:
            self._discard(connection)


def _expire(waiter: asyncio.Future[Any]) -> None:
    if not waiter.done():
        waiter.set_exception(PoolTimeoutError("no free connection before the deadline"))


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time (no pipelining)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.idle_since = 0.0
        self.waiter: asyncio.Future[None] | None = None
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []
        self.size = 0
        self.head_done = False
        self.keep_alive = False
        self.done = False

    async def roundtrip(
        self, loop: asyncio.AbstractEventLoop, data: bytes, deadline: float
    ) -> tuple[int, dict[str, str], bytes, bool]:
        """Write ``data`` and read one answer: (status, headers, body, reusable)."""
        if self.transport is None or self.closed:
            raise NotConnectedError("the connection closed before the request was written")
        self._reset()
        waiter = self.waiter = loop.create_future()
        timer = loop.call_at(deadline, self._expire)
        try:
            self.transport.write(data)
            await waiter
        finally:
            timer.cancel()
            self.waiter = None
        body = b"".join(self.body)
        encoding = self.headers.get("content-encoding")
        if encoding in ("gzip", "deflate"):
            body = _decode(body, encoding)
        reusable = self.done and self.keep_alive and not self.closed
        return self.status, self.headers, body, reusable

    def _expire(self) -> None:
        self._fail(TimeoutError("no complete answer before the deadline"))

    def _fail(self, exc: BaseException) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self.waiter is None:  # bytes nobody asked for: the connection cannot be trusted
            self.close()
            return
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, ValueError) as exc:
            # A bound passed inside a callback reaches us wrapped by the parser.
            cause = exc.__context__
            self._fail(cause if isinstance(cause, ResponseTooLargeError) else exc)

    def eof_received(self) -> bool | None:
        self._lost()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost()

    def _lost(self) -> None:
        self.closed = True
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        if self.head_done and self._ends_at_close():
            waiter.set_result(None)  # a body delimited by the end of the connection
        else:
            waiter.set_exception(ServerDisconnectedError("closed before a complete answer"))

    def _ends_at_close(self) -> bool:
        return "content-length" not in self.headers and "chunked" not in self.headers.get(
            "transfer-encoding", ""
        )

    # -- httptools callbacks ------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.done:  # a second answer to one request: stop; the connection is not reused
            raise ServerDisconnectedError("more than one answer to a request")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.size += len(name) + len(value)
        if self.size > MAX_HEAD_BYTES:
            raise ResponseTooLargeError(f"answer head over {MAX_HEAD_BYTES} bytes")
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        self.headers[key] = f"{self.headers[key]}, {text}" if key in self.headers else text

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()  # llhttp forgets it after the body
        self.head_done = True
        self.size = 0

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size > MAX_RESPONSE_BYTES:
            raise ResponseTooLargeError(f"answer body over {MAX_RESPONSE_BYTES} bytes")
        self.body.append(body)

    def on_message_complete(self) -> None:
        if 100 <= self.status < 200:  # informational (100 Continue): the answer follows
            self._reset()
            return
        self.done = True
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


def _decode(body: bytes, encoding: str) -> bytes:
    wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
    try:
        decoder = zlib.decompressobj(wbits)
        out = decoder.decompress(body, MAX_RESPONSE_BYTES)
    except zlib.error:
        if encoding != "deflate":
            raise
        decoder = zlib.decompressobj(-zlib.MAX_WBITS)  # raw deflate, as some servers send
        out = decoder.decompress(body, MAX_RESPONSE_BYTES)
    if decoder.unconsumed_tail:
        raise ResponseTooLargeError(f"decoded answer over {MAX_RESPONSE_BYTES} bytes")
    if not decoder.eof:
        raise zlib.error("the compressed answer ends before its stream does")
    return out


__all__ = ["MAX_HEAD_BYTES", "MAX_RESPONSE_BYTES", "Http1Client"]
