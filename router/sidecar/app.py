"""The sidecar's ASGI app (Starlette): send, explain, providers, health."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from policies.base import BreakerState
from router.engine import Router
from router.errors import (
    IdempotencyConflictError,
    IdempotencyPendingError,
    MessageError,
    RouterError,
    StateStoreError,
)
from router.model import RecipientStatus
from router.sidecar.callbacks import Callbacks
from router.sidecar.openapi import openapi_document
from router.sidecar.schemas import (
    SendRequest,
    delivery_json,
    explanation_json,
    receipt_json,
    result_json,
)


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


def provider_json(router: Router, name: str) -> dict[str, Any]:
    p = router.providers[name]
    breaker = router.breaker(name)
    return {
        "kind": p.kind,
        "enabled": p.settings.enabled and router.is_enabled(name),
        "max_batch": p.max_batch,
        "weight": p.settings.weight,
        "price_per_part": p.settings.price_per_part,
        "breaker": breaker.state.value,
        "failure_rate": round(breaker.failure_rate(), 4),
    }


def create_app(router: Router, registry: CollectorRegistry | None = None) -> Starlette:
    """The sidecar app around an already configured ``router`` (entered in the lifespan);
    ``/metrics`` serves ``registry`` (OpenMetrics, with exemplars, when the scraper asks)."""
    registry = registry or CollectorRegistry()
    ready = {"value": False}
    callbacks = Callbacks(router)

    async def send(request: Request) -> Response:
        parsed = await _parse_send(request)
        if isinstance(parsed, Response):
            return parsed
        try:
            message = parsed.to_message(request.headers.get("idempotency-key"))
            result = await router.send(message)
        except IdempotencyConflictError as exc:
            return _error(409, "idempotency_conflict", str(exc))
        except IdempotencyPendingError as exc:
            return _error(409, "idempotency_pending", str(exc))
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
        return _json({name: provider_json(router, name) for name in router.providers})

    async def message_status(request: Request) -> Response:
        result = router.recent_result(request.path_params["message_id"])
        if result is None:
            return _error(404, "not_found", "no message with that id in the recent results")
        body = result_json(result)
        unmatched: list[dict[str, Any]] = []
        batches: set[tuple[str, str]] = set()
        for recipient, r in zip(body["recipients"], result.recipients, strict=True):
            recipient["receipts"], recipient["delivery"] = [], None
            if not (r.provider and r.provider_message_id and r.normalised):
                continue  # never accepted: no delivery to follow
            if r.status is not RecipientStatus.ACCEPTED:
                continue
            batch = (r.provider, r.provider_message_id)
            # Only this recipient's own receipt: the message id names the whole batch.
            recipient["receipts"] = [
                receipt_json(rep) for rep in router.receipts.receipts_for(*batch, r.normalised)
            ]
            delivery = await router.delivery_status(*batch, r.normalised)
            recipient["delivery"] = delivery_json(delivery)
            if batch not in batches:
                batches.add(batch)
                unmatched += [receipt_json(*u) for u in router.receipts.unmatched(*batch)]
        # Receipts that name no single recipient (masked number fitting none or several):
        # shown once here, never applied to a recipient.
        body["unmatched_receipts"] = unmatched
        return _json(body)

    def authorised(request: Request) -> Response | None:
        token = router.settings.server.admin_token
        if not token:
            return _error(403, "admin_disabled", "set server.admin_token to enable admin calls")
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return _error(401, "unauthorised", "send Authorization: Bearer <admin token>")
        return None

    async def admin_provider(request: Request) -> Response:
        denied = authorised(request)
        if denied is not None:
            return denied
        name, action = request.path_params["name"], request.path_params["action"]
        if name not in router.providers:
            known = sorted(router.providers)
            return _error(404, "not_found", f"no provider {name!r}; configured: {known}")
        actions = {
            "enable": lambda: router.set_enabled(name, True),
            "disable": lambda: router.set_enabled(name, False),
            "open": lambda: router.breaker(name).force(BreakerState.OPEN),
            "close": lambda: router.breaker(name).force(BreakerState.CLOSED),
            "auto": lambda: router.breaker(name).force(None),
        }
        if action not in actions:
            return _error(404, "not_found", f"unknown action; use one of {sorted(actions)}")
        actions[action]()
        return _json(provider_json(router, name))

    async def metrics(request: Request) -> Response:
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encoder(registry), media_type=content_type)

    async def livez(_: Request) -> Response:
        return _json({"status": "alive"})

    async def readyz(request: Request) -> Response:
        if getattr(request.app.state, "draining", False):
            return _json({"status": "draining"}, 503)
        if not ready["value"]:
            return _json({"status": "not ready"}, 503)
        return _json({"status": "ready"})

    async def openapi(_: Request) -> Response:
        return _json(openapi_document())

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
            Route("/v1/messages/{message_id}", message_status, methods=["GET"]),
            Route("/v1/admin/providers/{name}/{action}", admin_provider, methods=["POST"]),
            Route("/livez", livez, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            Route("/openapi.json", openapi, methods=["GET"]),
            Route("/v1/callbacks/{provider}/{kind}", callbacks.handle, methods=["POST"]),
        ],
        lifespan=lifespan,
    )
