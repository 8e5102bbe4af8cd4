"""Fixtures shared by every test: the anyio backend and loopback emulator servers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from providers.emulators.server import ThreadedServer
from tests.sandbox import RunningSandbox, running_sandbox


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def serve() -> Iterator[Callable[[Any], ThreadedServer]]:
    """Start ASGI apps on free loopback ports for the test; all are stopped afterwards."""
    servers: list[ThreadedServer] = []

    def start(app: Any) -> ThreadedServer:
        server = ThreadedServer(app)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def sandbox() -> Iterator[RunningSandbox]:
    """The three emulators on loopback, shared by a test module (reset them per test)."""
    with running_sandbox() as box:
        yield box
