"""The sidecar reads a request body as Starlette would: every chunk, in order, once."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.requests import ClientDisconnect, Request

from router.sidecar.responses import read_body

pytestmark = pytest.mark.anyio


def request_of(*messages: dict[str, Any]) -> Request:
    queue = list(messages)

    async def receive() -> dict[str, Any]:
        return queue.pop(0)

    return Request({"type": "http", "method": "POST", "headers": []}, receive)


@pytest.mark.parametrize(
    "chunks",
    [[b'{"a": 1}'], [b'{"a"', b": 1", b"}"], [b"", b'{"a": 1}'], [b""]],
)
async def test_every_chunk_is_read_in_order(chunks: list[bytes]) -> None:
    messages = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]
    assert await read_body(request_of(*messages)) == b"".join(chunks)
    assert await request_of(*messages).body() == b"".join(chunks)  # what Starlette reads


async def test_a_client_gone_mid_body_is_a_disconnect() -> None:
    first = {"type": "http.request", "body": b'{"a"', "more_body": True}
    with pytest.raises(ClientDisconnect):
        await read_body(request_of(first, {"type": "http.disconnect"}))
