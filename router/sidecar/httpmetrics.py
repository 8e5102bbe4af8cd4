"""HTTP server metrics of the sidecar: every request it answers, by route template, method and
status, and how long it took. Route templates (``/v1/messages/{message_id}``), never raw
paths: the label set stays bounded whatever a client requests."""

from __future__ import annotations

import time
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Histogram
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from router.telemetry.families import FastCounter, FastHistogram

UNMATCHED = "unmatched"
BUCKETS = Histogram.DEFAULT_BUCKETS[:-1]  # +Inf is implied


class HttpMetrics:
    """Pure ASGI middleware (no response buffering, streaming untouched)."""

    def __init__(self, app: ASGIApp, registry: CollectorRegistry, routes: Sequence[BaseRoute]):
        self.app = app
        self.routes = routes
        self.requests = FastCounter(
            "smsrouter_http_requests_total",
            "HTTP requests the sidecar answered, by route template, method and status.",
            ["route", "method", "status"],
            registry,
        )
        self.duration = FastHistogram(
            "smsrouter_http_request_duration_seconds",
            "Time from request to the response's first byte, by route template.",
            ["route"],
            registry,
            BUCKETS,
        )
        # (method, path) of routes without parameters: their template is the path. Bounded
        # by the routes; a path with an id in it is matched each time, never kept.
        self._static: dict[tuple[str, str], str] = {}

    def route_of(self, scope: Scope) -> str:
        key = (scope["method"], scope["path"])
        known = self._static.get(key)
        if known is not None:
            return known
        for route in self.routes:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                template = str(getattr(route, "path", UNMATCHED))
                if template == scope["path"]:
                    self._static[key] = template
                return template
        return UNMATCHED

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # an exception before any response is a 500 to the client
        route = self.route_of(scope)

        async def counting_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                self.duration.labels(route).observe(time.perf_counter() - started)
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            self.requests.labels(route, scope["method"], str(status)).inc()
