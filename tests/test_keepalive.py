"""Idle connections are closed by the router before the server's keep-alive ends: reusing one
the server is closing at that moment fails after the request was written, and a send would
end ``unknown`` (at-most-once: not re-sent) for no fault of the provider."""

from __future__ import annotations

import threading
from typing import Any

import anyio
import pytest
import uvicorn

from providers.emulators import v1platform
from providers.emulators.server import free_port
from router.engine import Router
from router.http1 import Http1Client
from router.model import Message
from router.transport import make_client
from router.transport_aiohttp import DirectAiohttpClient
from tests.sandbox import RunningSandbox, plain_providers

pytestmark = pytest.mark.anyio


def test_keepalive_reaches_every_transport() -> None:
    own = make_client("http1", connect_timeout_s=1, timeout_s=2, max_connections=4, keepalive_s=0.8)
    assert isinstance(own, Http1Client) and own.keepalive_s == 0.8
    direct = make_client(
        "aiohttp", connect_timeout_s=1, timeout_s=2, max_connections=4, keepalive_s=0.8
    )
    assert isinstance(direct, DirectAiohttpClient) and direct._keepalive_s == 0.8
    for kind in ("httpx", "httpx-aiohttp"):
        client = make_client(
            kind, connect_timeout_s=1, timeout_s=2, max_connections=4, keepalive_s=0.8
        )
        pool = getattr(client, "_transport", None)
        limits = getattr(pool, "_pool", None)
        if limits is not None:
            assert limits._keepalive_expiry == 0.8


@pytest.mark.parametrize(("keepalive_s", "fresh"), [(0.8, True), (10.0, False)])
async def test_idle_connections_are_closed_before_the_servers_keep_alive_ends(
    sandbox: RunningSandbox, keepalive_s: float, fresh: bool
) -> None:
    """The server keeps idle connections 2 s; sends 0.9 s apart. Closed at 0.8 s, every send
    opens a fresh connection and never meets one the server is closing; the control (10 s)
    reuses one connection, which is what races with the server's close at its keep-alive."""
    ports: list[int] = []
    app = v1platform.create_app()

    async def recording(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].endswith("/send"):
            ports.append(scope["client"][1])
        await app(scope, receive, send)

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            recording,
            port=port,
            timeout_keep_alive=2,
            log_level="warning",
            log_config=None,
            lifespan="off",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
        await anyio.sleep(0.01)
    try:
        providers = plain_providers(sandbox.settings().providers)
        v1 = {
            **providers["v1platform"],
            "base_url": f"http://127.0.0.1:{port}",
            "keepalive_s": keepalive_s,
        }
        router = Router(
            sandbox.settings(
                providers={**providers, "v1platform": v1}, receipt_poll_s=0, balance_poll_s=0
            )
        )
        for name in ("baofoo", "ronglian"):
            router.set_enabled(name, False)
        statuses = []
        async with router:
            for i in range(4):
                result = await router.send(Message([f"1350000{i:04d}"], content="keep-alive"))
                statuses.append(result.recipients[0].status.value)
                await anyio.sleep(0.9)
    finally:
        server.should_exit = True
        thread.join(10)
    assert statuses == ["accepted"] * 4
    if fresh:
        assert len(set(ports)) == 4  # a new connection for every send
    else:
        assert len(set(ports)) == 1  # one connection, reused
