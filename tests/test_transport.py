"""Transport errors are classified safely for both transports, against real loopback servers.

The trap: a connection dropped after the request was written may have been processed, so it
must be UNKNOWN (never re-sent), while httpx-aiohttp reports it as ``ConnectTimeout``.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import pytest

from providers.base import ErrorClass, Verdict
from providers.emulators.server import free_port
from providers.http import ProviderIOError
from providers.wire import WireRequest, WireResponse
from router import Message, Router
from router.config import TransportKind
from router.sidecar.sandbox import running_sandbox
from router.transport import make_client

pytestmark = pytest.mark.anyio
TRANSPORTS: list[TransportKind] = ["http1", "aiohttp", "httpx-aiohttp", "httpx"]


@contextmanager
def raw_server(handle: Callable[[socket.socket], None]) -> Iterator[str]:
    """A one-thread TCP server running ``handle`` on each connection (bounded: 5 s)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)  # so the loop notices ``stop`` quickly
    port = listener.getsockname()[1]
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                handle(conn)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}/send"
    finally:
        stop.set()
        listener.close()
        thread.join(6)


def read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    while len(body) < length:
        body += conn.recv(65536)
    return data


async def post(kind: TransportKind, url: str, timeout_s: float = 0.3) -> WireResponse:
    client = make_client(kind, connect_timeout_s=0.3, timeout_s=timeout_s, max_connections=4)
    try:
        return await client.exchange(WireRequest("POST", url, body=b"payload=1"), None)
    finally:
        await client.aclose()


async def failure(kind: TransportKind, url: str) -> tuple[Verdict, ErrorClass]:
    with pytest.raises(ProviderIOError) as info:
        await post(kind, url)
    assert "payload" not in str(info.value)  # the path and the error type only
    return info.value.verdict, info.value.fault.error_class


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_nothing_listening_is_a_provable_rejection(kind: TransportKind) -> None:
    verdict, error_class = await failure(kind, f"http://127.0.0.1:{free_port()}/send")
    assert (verdict, error_class) == (Verdict.REJECTED, ErrorClass.CONNECT)


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_dropped_after_the_request_was_read_is_unknown(kind: TransportKind) -> None:
    def read_then_close(conn: socket.socket) -> None:
        read_request(conn)

    with raw_server(read_then_close) as url:
        verdict, _ = await failure(kind, url)
    assert verdict is Verdict.UNKNOWN


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_no_answer_is_an_unknown_timeout(kind: TransportKind) -> None:
    release = threading.Event()

    def read_then_hang(conn: socket.socket) -> None:
        read_request(conn)
        release.wait(3)

    with raw_server(read_then_hang) as url:
        verdict, error_class = await failure(kind, url)
        release.set()
    assert (verdict, error_class) == (Verdict.UNKNOWN, ErrorClass.TIMEOUT)


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_a_garbage_answer_is_unknown(kind: TransportKind) -> None:
    def garbage(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(b"SMTP READY\r\n\r\n")

    with raw_server(garbage) as url:
        verdict, _ = await failure(kind, url)
    assert verdict is Verdict.UNKNOWN


@pytest.mark.parametrize("kind", TRANSPORTS)
@pytest.mark.parametrize("body", [b'{"code": "00"}', bytes(range(256)) * 4096])
async def test_bodies_arrive_intact(kind: TransportKind, body: bytes) -> None:
    def answer(conn: socket.socket) -> None:
        read_request(conn)
        head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        conn.sendall(head.encode() + body)

    with raw_server(answer) as url:
        response = await post(kind, url, timeout_s=5)
    assert response.content == body


async def test_an_httpx_client_given_to_the_router_carries_its_sends() -> None:
    """The public way to inject a client: any ``httpx.AsyncClient`` (its event hooks, proxies
    and transports included) is used as it is, wrapped by ``HttpxClient``."""
    seen: list[str] = []

    async def hook(request: httpx.Request) -> None:
        seen.append(request.url.path)

    with running_sandbox() as settings:
        client = httpx.AsyncClient(event_hooks={"request": [hook]})
        async with client, Router(settings, clients={"v1platform": client}) as router:
            for name in router.providers:
                router.set_enabled(name, name == "v1platform")
            result = await router.send(Message(mobiles=["13800138000"], content="hi"))
    assert result.ok, result
    assert seen.count("/api/v1/send") == 1  # and the pulls (report, balance) went through it too


def test_the_default_router_never_loads_aiohttp_or_redis() -> None:
    """A router on the default transport and the memory store (with the sidecar's app) keeps
    the optional clients unloaded: aiohttp ~10 MB, redis-py ~8 MB resident (benchmarks/README.md,
    soak)."""
    code = (
        "import sys\n"
        "from router import Router\n"
        "from router.sidecar.sandbox import Sandbox, sandbox_settings\n"
        "import router.sidecar.app\n"
        "urls = {n: 'http://127.0.0.1:9' for n in ('baofoo', 'v1platform', 'ronglian')}\n"
        "router = Router(sandbox_settings(Sandbox(apps={}, urls=urls)))\n"
        "assert router.settings.transport == 'http1'\n"
        "assert 'aiohttp' not in sys.modules, 'aiohttp was loaded'\n"
        "assert 'redis' not in sys.modules, 'redis was loaded'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
