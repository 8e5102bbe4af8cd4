"""Run the sidecar under uvicorn, optionally with the sandbox emulators in the same loop.

SIGTERM/SIGINT: readiness fails at once (``/readyz`` 503, so a load balancer stops sending),
then uvicorn stops accepting and lets in-flight sends finish within ``server.drain_s``.
"""

from __future__ import annotations

import gc
import logging
import signal

import anyio
import uvicorn
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette

from router.config import RouterSettings, load_settings
from router.engine import Router
from router.events import EventBus
from router.sidecar.app import create_app
from router.telemetry import standard_sinks
from router.telemetry.tracing import configure_sdk_from_env

log = logging.getLogger("router.sidecar")
SANDBOX_CALLBACK_TOKEN = "sandbox-callback-token"  # noqa: S105 - the sandbox's own, on loopback


async def serve(
    config: str | None, sandbox: bool, host: str | None = None, port: int | None = None
) -> None:
    async with anyio.create_task_group() as tg:
        if sandbox:
            settings = await _start_sandbox(tg, host, port)
        else:
            settings = load_settings(config)
        host = host or settings.server.host
        port = port if port is not None else settings.server.port
        configure_sdk_from_env()
        registry = CollectorRegistry()
        router = Router(settings, events=EventBus(standard_sinks(settings, registry)))
        app = create_app(router, registry)
        server = uvicorn.Server(
            uvicorn.Config(
                app,
                host=host,
                port=port,
                log_level="info",
                access_log=False,  # a line per request costs more than routing it
                log_config=None,  # uvicorn logs through the CLI's handler: one format
                lifespan="on",
                timeout_graceful_shutdown=int(settings.server.drain_s) or None,
            )
        )
        tg.start_soon(_drain_on_signal, app, server, settings.server.readiness_grace_s)
        # Everything built so far (modules, settings, adapters, metric children) lives as long
        # as the process: move it out of the collector's generations, so full collections
        # under sustained load walk only what sends create.
        gc.collect()
        gc.freeze()
        log.info("sidecar listening on http://%s:%d", host, port)
        # _serve: our own signal handling (readiness first), not uvicorn's.
        await server._serve()
        tg.cancel_scope.cancel()


async def _drain_on_signal(app: Starlette, server: uvicorn.Server, grace_s: float) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info("signal %s: failing readiness and draining in-flight sends", signum)
            app.state.draining = True
            # Keep listening a moment so load balancers see /readyz fail and stop sending.
            await anyio.sleep(grace_s)
            server.should_exit = True
            return


async def _start_sandbox(
    tg: anyio.abc.TaskGroup, host: str | None, port: int | None
) -> RouterSettings:
    from router.sidecar.sandbox import create_sandbox, run_sandbox, sandbox_settings

    box = create_sandbox()
    await run_sandbox(box, tg)
    base = f"http://{host or '127.0.0.1'}:{port if port is not None else 8080}"
    token = SANDBOX_CALLBACK_TOKEN
    box.state("v1platform").callback_url = f"{base}/v1/callbacks/v1platform/status?token={token}"
    box.state("ronglian").callback_url = f"{base}/v1/callbacks/ronglian/receipt?token={token}"
    log.info("sandbox emulators listening: %s", box.urls)
    return sandbox_settings(
        box,
        server={"callback_tokens": {"v1platform": token, "ronglian": token}},
    )
