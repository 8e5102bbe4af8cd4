"""JSON answers of the sidecar, success and error alike."""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from router.sidecar.schemas import SendRequest


def json_response(payload: Any, status_code: int = 200) -> Response:
    """``payload`` as a JSON response (orjson: a big send's body is thousands of recipients)."""
    return Response(orjson.dumps(payload), status_code=status_code, media_type="application/json")


def error_response(status_code: int, kind: str, detail: Any) -> Response:
    """An :class:`~router.sidecar.schemas.ErrorBody` answer."""
    return json_response({"error": kind, "detail": detail}, status_code)


Body = TypeVar("Body", bound=BaseModel)


async def parse_send(request: Request) -> SendRequest | Response:
    """The request's :class:`SendRequest`, or the 422 answer that says what is wrong with it."""
    return await parse_body(request, SendRequest)


async def read_body(request: Request) -> bytes:
    """The request's whole body: what ``Request.body()`` returns, read straight from the ASGI
    messages (Starlette's reads through an async generator, ~2 us a request). Read once."""
    chunks: list[bytes] = []
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def parse_body(request: Request, model: type[Body]) -> Body | Response:
    """The request's body as ``model``, or the 422 answer that says what is wrong with it."""
    try:
        return model.model_validate_json(await read_body(request))
    except ValidationError as exc:
        errors = [
            {"loc": ".".join(str(p) for p in e["loc"]), "msg": e["msg"]}
            for e in exc.errors(include_url=False, include_input=False)
        ]
        return error_response(422, "invalid_request", errors)
