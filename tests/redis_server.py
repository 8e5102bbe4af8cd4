"""A real redis-server for tests: started on a free loopback port, or REDIS_URL.

Where ``redis-server`` is missing the tests skip locally, but fail when
``SMS_ROUTER_REQUIRE_SERVICES=1`` (set by .ci/run): CI must never pass by skipping.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from providers.emulators.server import free_port


def require(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        message = f"{binary} not found on PATH (apt-get install the package that provides it)"
        if os.environ.get("SMS_ROUTER_REQUIRE_SERVICES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path


class RedisServer:
    def __init__(self, port: int, workdir: Path, persistent: bool) -> None:
        self.port, self.workdir, self.persistent = port, workdir, persistent
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [
            require("redis-server"),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--dir",
            str(self.workdir),
            "--protected-mode",
            "yes",
        ]
        if self.persistent:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not _pings(self.port):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


def _pings(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextmanager
def frozen(server: RedisServer) -> Iterator[None]:
    """SIGSTOP: Redis keeps every socket open and answers nothing until SIGCONT."""
    assert server.proc is not None
    os.kill(server.proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)


@contextmanager
def redis_server(tmp: Path, persistent: bool = False) -> Iterator[RedisServer]:
    # A picked port may be taken before redis-server binds it (an outgoing connection of a
    # busy run): then it exits at once, and another port is tried.
    for attempt in range(3):
        server = RedisServer(free_port(), tmp, persistent)
        try:
            server.start()
            break
        except RuntimeError:
            exited = server.proc is not None and server.proc.poll() is not None
            server.stop()
            if not exited or attempt == 2:
                raise
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def redis_url(tmp: Path) -> Iterator[tuple[str, str]]:
    """(url, unique key prefix): REDIS_URL if given, else a private redis-server."""
    prefix = f"smsrouter-test-{uuid.uuid4().hex[:8]}:"
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"], prefix
        return
    with redis_server(tmp) as server:
        yield server.url, prefix
