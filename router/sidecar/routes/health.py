"""Liveness, readiness, Prometheus metrics and the OpenAPI document."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from router.sidecar.openapi import openapi_document
from router.sidecar.responses import json_response


def routes(registry: CollectorRegistry) -> list[Route]:
    """The health, metrics and document routes; ``/metrics`` serves ``registry``."""

    async def metrics(request: Request) -> Response:
        # OpenMetrics (with exemplars) when the scraper asks for it.
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encoder(registry), media_type=content_type)

    return [
        Route("/livez", livez, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
    ]


async def livez(_: Request) -> Response:
    """Alive: the process answers."""
    return json_response({"status": "alive"})


async def readyz(request: Request) -> Response:
    """Ready once the lifespan has entered the router; 503 while starting or draining
    (``app.state.draining``, set on SIGTERM) so a load balancer stops sending first."""
    state = request.app.state
    if getattr(state, "draining", False):
        return json_response({"status": "draining"}, 503)
    if not getattr(state, "ready", False):
        return json_response({"status": "not ready"}, 503)
    return json_response({"status": "ready"})


async def openapi(_: Request) -> Response:
    """The OpenAPI document of this API."""
    return json_response(openapi_document())
