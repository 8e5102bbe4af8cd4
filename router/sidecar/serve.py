"""Run the sidecar under uvicorn, optionally with the sandbox emulators in the same loop."""

from __future__ import annotations

import logging

import anyio
import uvicorn
from prometheus_client import CollectorRegistry

from router.config import RouterSettings, load_settings
from router.engine import Router
from router.events import EventBus
from router.sidecar.app import create_app
from router.telemetry import standard_sinks
from router.telemetry.tracing import configure_sdk_from_env

log = logging.getLogger("router.sidecar")


async def serve(
    config: str | None, sandbox: bool, host: str | None = None, port: int | None = None
) -> None:
    """Serve until SIGINT/SIGTERM (uvicorn handles the signals and drains connections)."""
    async with anyio.create_task_group() as tg:
        if sandbox:
            from router.sandbox import create_sandbox, run_sandbox, sandbox_settings

            box = create_sandbox()
            await run_sandbox(box, tg)
            settings: RouterSettings = sandbox_settings(box)
            log.info("sandbox emulators listening: %s", box.urls)
        else:
            settings = load_settings(config)
        host = host or settings.server.host
        port = port if port is not None else settings.server.port
        configure_sdk_from_env()
        registry = CollectorRegistry()
        router = Router(settings, events=EventBus(standard_sinks(settings, registry)))
        app = create_app(router, registry)
        config_ = uvicorn.Config(app, host=host, port=port, log_level="info", lifespan="on")
        server = uvicorn.Server(config_)
        log.info("sidecar listening on http://%s:%d", host, port)
        await server.serve()
        tg.cancel_scope.cancel()
