"""Run an ASGI app on a loopback port: in the current event loop, or in a background thread."""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType
from typing import Any

import anyio
import uvicorn


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _config(app: Any, host: str, port: int) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="auto",
        log_config=None,  # the owner's logging (the sidecar's format), not uvicorn's own
    )


class ThreadedServer:
    """A uvicorn server in a daemon thread; ``stop()`` then ``start()`` again for outages.

    The listening socket is bound when the server is created (port 0: any free port, taken
    atomically), not when its thread starts: a port picked earlier and bound later can be
    taken in between by any outgoing connection of a busy test run (ephemeral ports come from
    the same range), and the server would fail to start.

    >>> with ThreadedServer(app) as server:
    ...     httpx.get(server.url + "/_emulator/faults")
    """

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.app = app
        self.host = host
        self._socket: socket.socket | None = self._bind(port or 0)
        self.port: int = self._socket.getsockname()[1]
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def _bind(self, port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, port))
        except OSError:
            sock.close()
            raise
        return sock

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout_s: float = 10.0) -> None:
        # After stop() the socket is closed: the same port again (an outage ends).
        sock = self._socket or self._bind(self.port)
        self._socket = None
        server = uvicorn.Server(_config(self.app, self.host, self.port))
        thread = threading.Thread(
            target=server.run,
            kwargs={"sockets": [sock]},
            name=f"emulator:{self.port}",
            daemon=True,
        )
        thread.start()
        deadline = time.monotonic() + timeout_s
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"server on {self.url} did not start")
            time.sleep(0.01)
        self._server, self._thread = server, thread

    def stop(self, timeout_s: float = 10.0) -> None:
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(timeout_s)
        self._server, self._thread = None, None

    def __enter__(self) -> ThreadedServer:
        self.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


async def serve_in_loop(
    app: Any, host: str, port: int, *, task_status: anyio.abc.TaskStatus[None]
) -> None:
    """Serve ``app`` as a task of the running loop; reports started once it is listening.
    Cancelled, it shuts the server down cleanly (no lifespan CancelledError tracebacks)."""
    server = uvicorn.Server(_config(app, host, port))
    async with anyio.create_task_group() as tg:
        tg.start_soon(_serve_shielded, server)
        while not server.started:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
            await anyio.sleep(0.01)
        task_status.started()
        try:
            await anyio.sleep_forever()
        finally:
            server.should_exit = True  # the shielded task then finishes its own shutdown


async def _serve_shielded(server: uvicorn.Server) -> None:
    # _serve skips uvicorn's signal capture: the process owner (the sidecar) handles signals.
    with anyio.CancelScope(shield=True):
        await server._serve()
