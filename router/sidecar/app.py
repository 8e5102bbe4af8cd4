"""The sidecar's ASGI app (Starlette): send, explain, providers, health."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from router.engine import Router
from router.errors import IdempotencyConflictError, MessageError, RouterError, StateStoreError
from router.sidecar.schemas import SendRequest, explanation_json, result_json


def _json(payload: Any, status_code: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status_code, media_type="application/json")


def _error(status_code: int, kind: str, detail: Any) -> Response:
    return _json({"error": kind, "detail": detail}, status_code)


async def _parse_send(request: Request) -> SendRequest | Response:
    try:
        return SendRequest.model_validate_json(await request.body())
    except ValidationError as exc:
        errors = [
            {"loc": ".".join(str(p) for p in e["loc"]), "msg": e["msg"]}
            for e in exc.errors(include_url=False, include_input=False)
        ]
        return _error(422, "invalid_request", errors)


def create_app(router: Router) -> Starlette:
    """The sidecar app around an already configured ``router`` (entered in the lifespan)."""
    ready = {"value": False}

    async def send(request: Request) -> Response:
        parsed = await _parse_send(request)
        if isinstance(parsed, Response):
            return parsed
        try:
            message = parsed.to_message(request.headers.get("idempotency-key"))
            result = await router.send(message)
        except IdempotencyConflictError as exc:
            return _error(409, "idempotency_conflict", str(exc))
        except MessageError as exc:
            return _error(400, "bad_message", str(exc))
        except StateStoreError as exc:
            return _error(503, "state_store_unavailable", str(exc))
        except RouterError as exc:
            return _error(400, "router_error", str(exc))
        return _json(result_json(result))

    async def explain(request: Request) -> Response:
        parsed = await _parse_send(request)
        if isinstance(parsed, Response):
            return parsed
        try:
            explanation = router.explain(parsed.to_message(None))
        except MessageError as exc:
            return _error(400, "bad_message", str(exc))
        return _json(explanation_json(explanation))

    async def providers(_: Request) -> Response:
        return _json(
            {
                name: {
                    "kind": p.kind,
                    "enabled": p.settings.enabled and router.is_enabled(name),
                    "max_batch": p.max_batch,
                    "weight": p.settings.weight,
                }
                for name, p in router.providers.items()
            }
        )

    async def livez(_: Request) -> Response:
        return _json({"status": "alive"})

    async def readyz(_: Request) -> Response:
        if not ready["value"]:
            return _json({"status": "not ready"}, 503)
        return _json({"status": "ready"})

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with router:
            ready["value"] = True
            yield
            ready["value"] = False

    return Starlette(
        routes=[
            Route("/v1/messages", send, methods=["POST"]),
            Route("/v1/explain", explain, methods=["POST"]),
            Route("/v1/providers", providers, methods=["GET"]),
            Route("/livez", livez, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
