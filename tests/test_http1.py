"""The router's own HTTP/1.1 client (router.http1), against real loopback servers.

What it must keep: answers read intact however the bytes are split and framed; connections
reused, bounded, and never leaked by cancellation; the verdict rule (never written:
rejected; written: unknown) at every failure point, TLS included.
"""

from __future__ import annotations

import asyncio
import gzip
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from providers.base import ErrorClass, Verdict
from providers.http import ProviderIOError
from providers.wire import WireRequest
from router import http1
from router.http1 import Http1Client

pytestmark = pytest.mark.anyio
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Server:
    """Counts connections and the requests it read; ``url`` is its /send endpoint."""

    def __init__(self, port: int, scheme: str) -> None:
        self.url = f"{scheme}://127.0.0.1:{port}/send"
        self.connections = 0
        self.open = 0
        self.peak_open = 0
        self.requests: list[bytes] = []


@asynccontextmanager
async def serving(handle: Handler, tls: ssl.SSLContext | None = None) -> AsyncIterator[Server]:
    holder: list[Server] = []

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server = holder[0]
        server.connections += 1
        server.open += 1
        server.peak_open = max(server.peak_open, server.open)
        try:
            await handle(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            server.open -= 1
            writer.close()

    listener = await asyncio.start_server(on_connection, "127.0.0.1", 0, ssl=tls)
    port = listener.sockets[0].getsockname()[1]
    holder.append(Server(port, "https" if tls else "http"))
    try:
        yield holder[0]
    finally:
        listener.close()


async def read_request(reader: asyncio.StreamReader, server: Server) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    request = head + await reader.readexactly(length)
    server.requests.append(request)
    return request


def answer(body: bytes, *extra: str) -> bytes:
    head = "HTTP/1.1 200 OK\r\n" + "".join(f"{h}\r\n" for h in extra)
    return f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body


def keep_answering(
    server_box: list[Server], reply: Callable[[bytes], bytes], delay_s: float = 0.0
) -> Handler:
    """A handler answering every request on the connection with ``reply(request)``."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                request = await read_request(reader, server_box[0])
            except asyncio.IncompleteReadError:
                return
            if delay_s:
                await asyncio.sleep(delay_s)
            writer.write(reply(request))
            await writer.drain()

    return handle


def client(max_connections: int = 4, **kw: float) -> Http1Client:
    return Http1Client(
        connect_timeout_s=kw.get("connect_timeout_s", 1.0),
        timeout_s=kw.get("timeout_s", 2.0),
        max_connections=max_connections,
        keepalive_s=kw.get("keepalive_s", 4.0),
    )


def post(
    url: str, body: bytes = b"payload=1", headers: dict[str, str] | None = None
) -> WireRequest:
    return WireRequest("POST", url, tuple((headers or {}).items()), body)


async def failure(c: Http1Client, request: WireRequest) -> tuple[Verdict, ErrorClass, str]:
    with pytest.raises(ProviderIOError) as info:
        await c.exchange(request, None)
    return info.value.verdict, info.value.fault.error_class, info.value.fault.detail


# -- framing ---------------------------------------------------------------------------------

FRAMINGS = ["content-length", "chunked", "close-delimited"]


def framed(body: bytes, framing: str, chunk_sizes: list[int]) -> bytes:
    if framing == "content-length":
        return answer(body)
    if framing == "close-delimited":
        return b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + body
    out, at = [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"], 0
    for size in [*chunk_sizes, len(body)]:
        piece = body[at : at + max(size, 1)]
        if piece:
            out.append(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        at += len(piece)
    return b"".join(out) + b"0\r\n\r\n"


@settings(max_examples=40, deadline=None)
@given(
    body=st.binary(max_size=3000),
    framing=st.sampled_from(FRAMINGS),
    chunk_sizes=st.lists(st.integers(1, 700), max_size=6),
    cuts=st.lists(st.integers(1, 400), max_size=8),
    uvloop=st.booleans(),
)
def test_any_framing_split_anywhere_reads_the_body_intact(
    body: bytes, framing: str, chunk_sizes: list[int], cuts: list[int], uvloop: bool
) -> None:
    """Content-Length, chunked or close-delimited, written in pieces cut anywhere (with the
    socket flushed between pieces): the body arrives byte for byte, on asyncio's own loop and
    on uvloop (the sidecar's)."""
    wire = framed(body, framing, chunk_sizes)

    async def scenario() -> None:
        box: list[Server] = []

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await read_request(reader, box[0])
            at = 0
            for cut in [*cuts, len(wire)]:
                writer.write(wire[at : at + cut])
                await writer.drain()
                await asyncio.sleep(0.0005)
                at += cut
            writer.write(wire[at:])
            await writer.drain()
            if framing == "close-delimited":
                writer.close()
            else:
                await reader.read()  # hold the connection open

        async with serving(handle) as server:
            box.append(server)
            c = client()
            try:
                response = await c.exchange(post(server.url), None)
            finally:
                await c.aclose()
            assert (response.status_code, response.content) == (200, body)

    anyio.run(scenario, backend_options={"use_uvloop": uvloop})


async def test_gzip_and_informational_answers_are_read() -> None:
    box: list[Server] = []
    packed = gzip.compress(b'{"code": "00"}')

    def reply(_: bytes) -> bytes:
        return b"HTTP/1.1 100 Continue\r\n\r\n" + answer(packed, "Content-Encoding: gzip")

    async with serving(keep_answering(box, reply)) as server:
        box.append(server)
        c = client()
        response = await c.exchange(post(server.url), None)
        await c.aclose()
    assert response.content == b'{"code": "00"}'
    assert response.headers["content-encoding"] == "gzip"


async def test_a_truncated_gzip_answer_is_unknown() -> None:
    box: list[Server] = []
    cut = gzip.compress(b'{"code": "00", "data": "' + b"x" * 200 + b'"}')[:-12]

    def reply(_: bytes) -> bytes:
        return answer(cut, "Content-Encoding: gzip")

    async with serving(keep_answering(box, reply)) as server:
        box.append(server)
        c = client()
        verdict, error_class, _ = await failure(c, post(server.url))
        await c.aclose()
    assert (verdict, error_class) == (Verdict.UNKNOWN, ErrorClass.PROTOCOL)


async def test_the_request_is_written_as_http_1_1() -> None:
    box: list[Server] = []
    async with serving(keep_answering(box, lambda _: answer(b"ok"))) as server:
        box.append(server)
        c = client()
        url = server.url + "?a=1&b=%E4%B8%AD"
        await c.exchange(post(url, b"x=1", {"Authorization": "TC3 abc"}), None)
        await c.aclose()
    port = server.url.split(":")[2].split("/")[0]
    assert server.requests == [
        b"POST /send?a=1&b=%E4%B8%AD HTTP/1.1\r\n"
        + f"Host: 127.0.0.1:{port}\r\n".encode()
        + b"User-Agent: sms-router\r\nContent-Length: 3\r\nAuthorization: TC3 abc\r\n\r\nx=1"
    ]


# -- the pool ----------------------------------------------------------------------------------


async def test_one_connection_carries_sequential_requests() -> None:
    box: list[Server] = []
    async with serving(keep_answering(box, lambda _: answer(b"ok"))) as server:
        box.append(server)
        c = client()
        for _ in range(30):
            assert (await c.exchange(post(server.url), None)).content == b"ok"
        await c.aclose()
    assert (server.connections, len(server.requests)) == (1, 30)


async def test_concurrent_requests_never_open_more_than_the_limit() -> None:
    box: list[Server] = []
    async with serving(keep_answering(box, lambda _: answer(b"ok"), delay_s=0.01)) as server:
        box.append(server)
        c = client(max_connections=3)
        results = []

        async def one() -> None:
            results.append((await c.exchange(post(server.url), None)).content)

        async with anyio.create_task_group() as tg:
            for _ in range(40):
                tg.start_soon(one)
        assert c.open_connections() == 3
        await c.aclose()
    assert results == [b"ok"] * 40
    assert (server.peak_open, server.connections) == (3, 3)


async def test_a_connection_answered_with_close_is_not_reused() -> None:
    box: list[Server] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader, box[0])
        writer.write(answer(b"ok", "Connection: close"))
        await writer.drain()

    async with serving(handle) as server:
        box.append(server)
        c = client()
        for _ in range(3):
            assert (await c.exchange(post(server.url), None)).content == b"ok"
        await c.aclose()
    assert server.connections == 3


async def test_a_connection_the_server_closed_while_idle_is_replaced_not_failed() -> None:
    box: list[Server] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader, box[0])
        writer.write(answer(b"ok"))  # keep-alive promised, then closed while idle
        await writer.drain()
        await asyncio.sleep(0.02)

    async with serving(handle) as server:
        box.append(server)
        c = client()
        for _ in range(3):
            assert (await c.exchange(post(server.url), None)).content == b"ok"
            await asyncio.sleep(0.1)
        await c.aclose()
    assert server.connections == 3


async def test_a_second_answer_to_one_request_is_not_taken_for_the_next() -> None:
    """Bytes beyond the answer (a second answer) make the connection untrustworthy: the
    first answer is returned and the next request goes on a new connection."""
    box: list[Server] = []

    def reply(_: bytes) -> bytes:
        return answer(b"first") + answer(b"second")

    async with serving(keep_answering(box, reply)) as server:
        box.append(server)
        c = client()
        first = await c.exchange(post(server.url), None)
        again = await c.exchange(post(server.url), None)
        await c.aclose()
    assert (first.content, again.content, server.connections) == (b"first", b"first", 2)


async def test_an_idle_connection_past_keepalive_is_not_reused() -> None:
    box: list[Server] = []
    async with serving(keep_answering(box, lambda _: answer(b"ok"))) as server:
        box.append(server)
        c = client(keepalive_s=0.05)
        await c.exchange(post(server.url), None)
        await asyncio.sleep(0.1)
        await c.exchange(post(server.url), None)
        await c.aclose()
    assert server.connections == 2


class CountingConnection(http1._Connection):
    """Counts this client's live sockets: from connected until closed by either side."""

    live = 0
    peak = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.counted = True
        CountingConnection.live += 1
        CountingConnection.peak = max(CountingConnection.peak, CountingConnection.live)

    def _uncount(self) -> None:
        if getattr(self, "counted", False):
            self.counted = False
            CountingConnection.live -= 1

    def close(self) -> None:
        self._uncount()
        super().close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._uncount()
        super().connection_lost(exc)


@settings(max_examples=40, deadline=None)
@given(
    limit=st.integers(1, 3),
    jobs=st.lists(st.tuples(st.integers(0, 3), st.booleans()), min_size=1, max_size=15),
)
def test_cancelled_requests_lose_no_connection_slot(
    limit: int, jobs: list[tuple[int, bool]]
) -> None:
    """Requests cancelled while waiting for a connection or for their answer: never more than
    ``limit`` sockets open at once, and afterwards every slot is usable again."""

    async def scenario() -> None:
        CountingConnection.live = CountingConnection.peak = 0
        box: list[Server] = []
        async with serving(keep_answering(box, lambda _: answer(b"ok"), delay_s=0.005)) as server:
            box.append(server)
            c = client(max_connections=limit)

            async def job(ms: int, cancel: bool) -> None:
                with anyio.move_on_after(ms * 0.003 if cancel else 5):
                    await c.exchange(post(server.url), None)

            async with anyio.create_task_group() as tg:
                for ms, cancel in jobs:
                    tg.start_soon(job, ms, cancel)
            assert c.open_connections() <= limit
            # Every slot still usable: `limit` requests at once all get a connection.
            async with anyio.create_task_group() as tg:
                for _ in range(limit):
                    tg.start_soon(c.exchange, post(server.url), 1.0)
            await c.aclose()
        assert CountingConnection.peak <= limit
        assert CountingConnection.live == 0

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(http1, "_Connection", CountingConnection)
        anyio.run(scenario)


@pytest.mark.parametrize("reusable", [True, False], ids=["connection", "slot"])
async def test_a_waiter_cancelled_just_after_it_was_served_gives_back_what_it_got(
    reusable: bool,
) -> None:
    """The race the timing test above rarely hits: a waiter handed a connection (or the
    slot of a closed one) and cancelled before it resumes must not keep it."""
    box: list[Server] = []
    async with serving(keep_answering(box, lambda _: answer(b"ok"))) as server:
        box.append(server)
        c = client(max_connections=1)
        await c.exchange(post(server.url), None)
        loop = asyncio.get_running_loop()
        (pool,) = c._pools.values()
        held = await pool.acquire(loop, loop.time() + 1)
        waiting = asyncio.create_task(pool.acquire(loop, loop.time() + 1))
        await asyncio.sleep(0.01)
        pool.release(held, reusable)  # served: the connection, or its slot
        waiting.cancel()  # ...and cancelled before it ran again
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert pool.open == (1 if reusable else 0)
        with anyio.fail_after(1):
            again = await pool.acquire(loop, loop.time() + 0.2)
        assert (again is held) == reusable
        pool.release(again, True)
        await c.aclose()


# -- the verdict rule ------------------------------------------------------------------------


async def test_no_free_connection_before_the_deadline_is_a_rejection() -> None:
    box: list[Server] = []
    async with serving(keep_answering(box, lambda _: answer(b"ok"), delay_s=0.5)) as server:
        box.append(server)
        c = client(max_connections=1)
        async with anyio.create_task_group() as tg:
            tg.start_soon(c.exchange, post(server.url), None)
            await asyncio.sleep(0.05)
            with pytest.raises(ProviderIOError) as info:
                await c.exchange(post(server.url), 0.1)
        await c.aclose()
    assert (info.value.verdict, info.value.fault.detail) == (Verdict.REJECTED, "PoolTimeoutError")
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    "headers",
    [{"X-Sig": "a\r\nInjected: 1"}, {"X Bad": "1"}, {"X-Name": "\u4e2d"}],
    ids=["crlf", "name", "non-latin-1"],
)
async def test_a_request_http_cannot_carry_is_rejected_unsent(headers: dict[str, str]) -> None:
    box: list[Server] = []
    async with serving(keep_answering(box, lambda _: answer(b"ok"))) as server:
        box.append(server)
        c = client()
        verdict, error_class, _ = await failure(c, post(server.url, headers=headers))
        await c.aclose()
    assert (verdict, error_class, server.connections) == (Verdict.REJECTED, ErrorClass.PROTOCOL, 0)


async def test_a_connection_closed_between_hand_over_and_use_is_a_rejection() -> None:
    """Handed a kept-alive connection that closed before the request was written: nothing
    reached the server, so the verdict is rejected (safe to send elsewhere)."""
    box: list[Server] = []
    async with serving(keep_answering(box, lambda _: answer(b"ok"))) as server:
        box.append(server)
        c = client(max_connections=1)
        await c.exchange(post(server.url), None)
        loop = asyncio.get_running_loop()
        (pool,) = c._pools.values()
        held = await pool.acquire(loop, loop.time() + 1)
        waiting = asyncio.create_task(c.exchange(post(server.url), None))
        await asyncio.sleep(0.01)
        pool.release(held, True)  # handed to the waiting request...
        held.close()  # ...and closed before it could write
        with pytest.raises(ProviderIOError) as info:
            await waiting
        await c.aclose()
    assert (info.value.verdict, info.value.fault.error_class) == (
        Verdict.REJECTED,
        ErrorClass.CONNECT,
    )
    assert len(server.requests) == 1


async def test_an_oversized_answer_is_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http1, "MAX_RESPONSE_BYTES", 1000)
    box: list[Server] = []
    async with serving(keep_answering(box, lambda _: answer(b"x" * 5000))) as server:
        box.append(server)
        c = client()
        verdict, error_class, detail = await failure(c, post(server.url))
        await c.aclose()
    assert (verdict, error_class, detail) == (
        Verdict.UNKNOWN,
        ErrorClass.PROTOCOL,
        "ResponseTooLargeError",
    )


async def test_a_reset_after_the_request_on_a_reused_connection_is_unknown() -> None:
    """The server took the second request on a kept-alive connection, then dropped it."""
    box: list[Server] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader, box[0])
        writer.write(answer(b"ok"))
        await writer.drain()
        await read_request(reader, box[0])  # read, then close without an answer

    async with serving(handle) as server:
        box.append(server)
        c = client()
        await c.exchange(post(server.url), None)
        verdict, _, detail = await failure(c, post(server.url))
        await c.aclose()
    assert (verdict, detail, server.connections) == (
        Verdict.UNKNOWN,
        "ServerDisconnectedError",
        1,
    )


async def test_an_answer_cut_short_is_unknown() -> None:
    box: list[Server] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader, box[0])
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
        await writer.drain()

    async with serving(handle) as server:
        box.append(server)
        c = client()
        verdict, error_class, _ = await failure(c, post(server.url))
        await c.aclose()
    assert (verdict, error_class) == (Verdict.UNKNOWN, ErrorClass.PROTOCOL)


# -- TLS ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (openssl, as CI installs it)."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


async def test_https_sends_with_a_trusted_certificate_and_refuses_an_untrusted_one(
    certificate: tuple[Path, Path],
) -> None:
    cert, key = certificate
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    box: list[Server] = []
    async with serving(keep_answering(box, lambda _: answer(b"ok")), tls) as server:
        box.append(server)
        trusting = Http1Client(
            connect_timeout_s=2,
            timeout_s=3,
            max_connections=2,
            ssl_context=ssl.create_default_context(cafile=str(cert)),
        )
        assert (await trusting.exchange(post(server.url), None)).content == b"ok"
        await trusting.aclose()
        # The system CAs do not know this certificate: refused before a byte was written.
        untrusting = client()
        verdict, error_class, _ = await failure(untrusting, post(server.url))
        await untrusting.aclose()
    assert (verdict, error_class) == (Verdict.REJECTED, ErrorClass.CONNECT)
    assert len(server.requests) == 1
