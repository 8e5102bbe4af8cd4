"""Run the sidecar under uvicorn, optionally with the sandbox emulators (in their own threads).

SIGTERM/SIGINT: readiness fails at once (``/readyz`` 503, so a load balancer stops sending),
then uvicorn stops accepting and lets in-flight sends finish within ``server.drain_s``.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import signal
import socket

import anyio
import uvicorn
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette

from router.config import RouterSettings
from router.engine import Router
from router.events import EventBus
from router.sidecar.app import create_app
from router.telemetry import standard_sinks
from router.telemetry.tracing import configure_sdk_from_env

log = logging.getLogger("router.sidecar")
SANDBOX_CALLBACK_TOKEN = "sandbox-callback-token"  # noqa: S105 - the sandbox's own, on loopback


async def serve(
    settings: RouterSettings | None, sandbox: bool, host: str | None = None, port: int | None = None
) -> None:
    """Serve ``settings`` (checked by the caller), or with ``sandbox`` the emulators' own:
    they run in threads of their own, so a large send's receipt pushes never hold up the
    loop that answers ``/livez`` and the API."""
    with contextlib.ExitStack() as emulators:
        if sandbox:
            settings = await anyio.to_thread.run_sync(_start_sandbox, emulators, host, port)
        assert settings is not None
        await _serve(settings, host, port)


async def _serve(settings: RouterSettings, host: str | None, port: int | None) -> None:
    async with anyio.create_task_group() as tg:
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
        tune_gc(settings.server.gc_gen0_threshold)
        log.info("sidecar starting on http://%s:%d", host, port)
        # _serve: our own signal handling (readiness first), not uvicorn's.
        await server._serve()
        tg.cancel_scope.cancel()


def tune_gc(gen0_threshold: int) -> None:
    """The sidecar owns its process, so it tunes the collector for it (a library must not).
    Everything built so far (modules, settings, adapters, metric children) lives as long as
    the process: frozen out of the collector's generations, so full collections under
    sustained load walk only what sends create. ``gen0_threshold`` (0: Python's own): a
    request's objects mostly die before a larger threshold is reached, so fewer are walked."""
    gc.collect()
    gc.freeze()
    if gen0_threshold:
        _, gen1, gen2 = gc.get_threshold()
        gc.set_threshold(gen0_threshold, gen1, gen2)


def address_problem(host: str, port: int) -> str | None:
    """Why the sidecar could not listen on ``host:port`` (None: it can), checked before
    starting so that a busy port is one clear line, not uvicorn's tracebacks."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        return f"cannot resolve {host!r}: {exc}"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


async def _drain_on_signal(app: Starlette, server: uvicorn.Server, grace_s: float) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info("signal %s: failing readiness and draining in-flight sends", signum)
            app.state.draining = True
            # Keep listening a moment so load balancers see /readyz fail and stop sending.
            await anyio.sleep(grace_s)
            server.should_exit = True
            return


def _start_sandbox(
    emulators: contextlib.ExitStack, host: str | None, port: int | None
) -> RouterSettings:
    """Start the emulators, each in a thread with its own loop (stopped by ``emulators``)."""
    from router.sidecar.sandbox import sandbox_settings, start_sandbox

    box, servers = start_sandbox()
    for server in servers:
        emulators.callback(server.stop)
    base = f"http://{host or '127.0.0.1'}:{port if port is not None else 8080}"
    token = SANDBOX_CALLBACK_TOKEN
    box.state("v1platform").callback_url = f"{base}/v1/callbacks/v1platform/status?token={token}"
    box.state("ronglian").callback_url = f"{base}/v1/callbacks/ronglian/receipt?token={token}"
    log.info("sandbox emulators listening (own threads): %s", box.urls)
    return sandbox_settings(
        box,
        server={"callback_tokens": {"v1platform": token, "ronglian": token}},
    )
