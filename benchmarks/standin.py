"""A minimal stand-in for the v1 platform's send endpoint, for client-side CPU benchmarks.

    python -m benchmarks.standin --port 18002

A raw asyncio protocol (uvloop when installed) on 127.0.0.1: every POST gets the same fixed
v1-platform success body (``{"code": "00", "data": {}, "message": "成功"}``: accepted, the
router falls back to its own taskId), with no parsing beyond the request framing, so the
server costs a few microseconds per request and the benchmark measures the client.
``GET /_count`` answers ``{"requests": <POSTs served>, "cpu_s": <this process's CPU>}``.
Bounded: keep-alive HTTP/1.1 with ``Content-Length`` bodies only; anything else (chunked
bodies, oversized headers) gets a 400 and the connection is closed. Runs until terminated.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import cast

HOST = "127.0.0.1"
SUCCESS = json.dumps({"code": "00", "data": {}, "message": "成功"}, ensure_ascii=False).encode()
MAX_BUFFER = 1 << 20


def _response(status: str, body: bytes, *, close: bool = False) -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n" + ("Connection: close\r\n" if close else "") + "\r\n"
    )
    return head.encode() + body


OK = _response("200 OK", SUCCESS)
BAD = _response("400 Bad Request", b'{"error":"unsupported request"}', close=True)


class Counter:
    def __init__(self) -> None:
        self.requests = 0


class StandIn(asyncio.Protocol):
    """One connection: split the byte stream into requests, answer each with the fixed body."""

    def __init__(self, counter: Counter) -> None:
        self.counter = counter
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        transport = self.transport
        assert transport is not None
        buffer = self.buffer
        buffer += data
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > MAX_BUFFER:
                    self._refuse(transport)
                return
            head = bytes(buffer[:end]).lower()
            if b"\r\ntransfer-encoding:" in head:
                self._refuse(transport)
                return
            length = 0
            at = head.find(b"\r\ncontent-length:")
            if at >= 0:
                stop = head.find(b"\r\n", at + 2)
                try:
                    length = int(head[at + 17 : stop if stop >= 0 else len(head)])
                except ValueError:
                    self._refuse(transport)
                    return
            total = end + 4 + length
            if length > MAX_BUFFER:
                self._refuse(transport)
                return
            if len(buffer) < total:
                return
            is_count = head.startswith(b"get /_count")
            del buffer[:total]
            if is_count:
                body = json.dumps(
                    {"requests": self.counter.requests, "cpu_s": time.process_time()}
                ).encode()
                transport.write(_response("200 OK", body))
            else:
                self.counter.requests += 1
                transport.write(OK)

    def _refuse(self, transport: asyncio.Transport) -> None:
        self.buffer.clear()
        transport.write(BAD)
        transport.close()


async def serve(port: int) -> None:
    counter = Counter()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: StandIn(counter), HOST, port, backlog=1024)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    port = parser.parse_args().port
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency of the sidecar extra
        asyncio.run(serve(port))
    else:
        uvloop.run(serve(port))


if __name__ == "__main__":
    main()
