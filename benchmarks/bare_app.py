"""The baseline for the sidecar benchmark: a bare uvicorn endpoint answering a fixed JSON."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

BODY = b'{"message_id":"0","ok":true,"recipients":[{"status":"accepted"}]}'


async def send(request: Request) -> Response:
    await request.body()
    return Response(BODY, media_type="application/json")


app = Starlette(routes=[Route("/v1/messages", send, methods=["POST"])])
