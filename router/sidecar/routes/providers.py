"""``/v1/providers`` and the admin calls that change one: enable, disable, force its breaker."""

from __future__ import annotations

import hmac
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from policies.base import BreakerState
from router.engine import Router
from router.sidecar.responses import error_response, json_response
from router.sidecar.schemas import ProviderInfo

ADMIN_ACTIONS = ("enable", "disable", "open", "close", "auto")


def provider_info(router: Router, name: str) -> ProviderInfo:
    """Provider ``name``'s configuration and live state."""
    p = router.providers[name]
    breaker = router.breaker(name)
    return ProviderInfo(
        kind=p.kind,
        enabled=p.settings.enabled and router.is_enabled(name),
        max_batch=p.max_batch,
        weight=p.settings.weight,
        price_per_part=p.settings.price_per_part,
        breaker=breaker.state,
        failure_rate=round(breaker.failure_rate(), 4),
    )


class Providers:
    """Handlers that read or change the providers of one :class:`~router.engine.Router`."""

    def __init__(self, router: Router) -> None:
        self.router = router

    def routes(self) -> list[Route]:
        """This module's routes."""
        return [
            Route("/v1/providers", self.index, methods=["GET"]),
            Route("/v1/admin/providers/{name}/{action}", self.admin, methods=["POST"]),
        ]

    async def index(self, _: Request) -> Response:
        """``GET /v1/providers``: every provider by name."""
        return json_response(
            {
                name: provider_info(self.router, name).model_dump(mode="json")
                for name in self.router.providers
            }
        )

    async def admin(self, request: Request) -> Response:
        """``POST /v1/admin/providers/{name}/{action}`` (bearer admin token)."""
        denied = self._denied(request)
        if denied is not None:
            return denied
        name, action = request.path_params["name"], request.path_params["action"]
        if name not in self.router.providers:
            known = sorted(self.router.providers)
            return error_response(404, "not_found", f"no provider {name!r}; configured: {known}")
        act = self._action(name, action)
        if act is None:
            return error_response(
                404, "not_found", f"unknown action; use one of {sorted(ADMIN_ACTIONS)}"
            )
        act()
        return json_response(provider_info(self.router, name).model_dump(mode="json"))

    def _action(self, name: str, action: str) -> Callable[[], None] | None:
        router = self.router
        if action in ("enable", "disable"):
            return lambda: router.set_enabled(name, action == "enable")
        forced = {"open": BreakerState.OPEN, "close": BreakerState.CLOSED, "auto": None}
        if action in forced:
            return lambda: router.breaker(name).force(forced[action])
        return None

    def _denied(self, request: Request) -> Response | None:
        token = self.router.settings.server.admin_token
        if not token:
            return error_response(
                403, "admin_disabled", "set server.admin_token to enable admin calls"
            )
        given = request.headers.get("authorization", "")
        # Constant time: the token guards breaker and enablement changes.
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return error_response(401, "unauthorised", "send Authorization: Bearer <admin token>")
        return None
