"""The sidecar's ASGI app (Starlette): send, explain, providers, health.

The handlers live in :mod:`router.sidecar.routes`; this module only assembles them around one
router and enters that router for the app's lifetime.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route

from router.engine import Router
from router.sidecar.callbacks import Callbacks
from router.sidecar.httpmetrics import HttpMetrics
from router.sidecar.routes import health
from router.sidecar.routes.broadcasts import Broadcasts
from router.sidecar.routes.messages import Messages
from router.sidecar.routes.providers import Providers


def create_app(router: Router, registry: CollectorRegistry | None = None) -> Starlette:
    """The sidecar app around an already configured ``router`` (entered in the lifespan);
    ``/metrics`` serves ``registry`` (OpenMetrics, with exemplars, when the scraper asks)."""
    callbacks = Callbacks(router)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with router:
            app.state.ready = True  # read by /readyz
            yield
            app.state.ready = False

    registry = registry or CollectorRegistry()
    routes = [
        *Messages(router).routes(),
        *Broadcasts(router).routes(),
        *Providers(router).routes(),
        *health.routes(registry),
        Route("/v1/callbacks/{provider}/{kind}", callbacks.handle, methods=["POST"]),
    ]
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(HttpMetrics, registry=registry, routes=routes)],
    )
