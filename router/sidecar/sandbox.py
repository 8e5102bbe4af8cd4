"""The sidecar's sandbox (demo and test support, not the engine): the provider emulators on
loopback and settings that use them.

``python -m router serve --sandbox`` runs these (each in a thread of its own), so a newcomer
sees the router route real HTTP traffic without any provider account; embedded, use
:func:`running_sandbox`::

    with running_sandbox() as settings:
        async with Router(settings) as router: ...
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import anyio
from starlette.applications import Starlette

from providers.baofoo import SCENES
from providers.emulators import aliyun, baofoo, ronglian, tencent, v1platform
from providers.emulators._common import EmulatorState
from providers.emulators.server import ThreadedServer, free_port, serve_in_loop
from router.config import RouterSettings, load_settings

HOST = "127.0.0.1"
NAMES = ("baofoo", "v1platform", "ronglian", "aliyun", "tencent")
RONGLIAN_SID = "sandboxsid00000000000000000000000"

# Which scenes Ronglian's documented test template (id "1": code, minutes) can carry, and
# Aliyun's (SMS_154950909: code) and Tencent's (1110: code).
_TEST_TEMPLATE_SCENES = ("login_code", "register_code", "password_reset")


@dataclass(frozen=True, slots=True)
class Sandbox:
    """The running emulators: their apps (for fault injection) and base URLs."""

    apps: dict[str, Starlette]
    urls: dict[str, str]

    def state(self, provider: str) -> EmulatorState:
        state: EmulatorState = self.apps[provider].state.emulator
        return state


@contextmanager
def running_sandbox(**overrides: Any) -> Iterator[RouterSettings]:
    """The emulators on loopback, each in a thread of its own, and router settings
    that use them (``overrides`` as for :func:`sandbox_settings`); stopped on exit."""
    box, servers = start_sandbox()
    try:
        yield sandbox_settings(box, **overrides)
    finally:
        for server in servers:
            server.stop()


def start_sandbox() -> tuple[Sandbox, list[ThreadedServer]]:
    """The emulators started, each in a thread with its own loop (stop them when
    done); their ports are bound first, atomically, then the apps learn their URLs."""
    servers = {name: ThreadedServer(None, host=HOST) for name in NAMES}
    box = create_sandbox({name: server.port for name, server in servers.items()})
    started: list[ThreadedServer] = []
    try:
        for name, server in servers.items():
            server.app = box.apps[name]
            server.start()
            started.append(server)
    except BaseException:
        for server in started:
            server.stop()
        raise
    return box, started


def create_sandbox(ports: dict[str, int] | None = None, names: Sequence[str] = NAMES) -> Sandbox:
    """The emulators ``names`` (all by default), at ``ports`` where given."""
    ports = ports or {}
    factories: dict[str, Callable[[], Starlette]] = {
        "baofoo": baofoo.create_app,
        "v1platform": v1platform.create_app,
        "ronglian": ronglian.create_app,
        "aliyun": aliyun.create_app,
        "tencent": tencent.create_app,
    }
    apps = {name: factories[name]() for name in names}
    urls = {name: f"http://{HOST}:{ports.get(name) or free_port(HOST)}" for name in apps}
    return Sandbox(apps, urls)


def sandbox_settings(sandbox: Sandbox, **overrides: Any) -> RouterSettings:
    """Router settings pointing at the sandbox emulators with their sandbox credentials (the
    cloud gateways only when ``sandbox`` has their URLs: benchmarks name three)."""
    providers: dict[str, dict[str, Any]] = {
        "baofoo": {
            "type": "baofoo",
            "base_url": sandbox.urls["baofoo"],
            "user_name": "sandbox-user",
            "user_pass": "sandbox-pass",
            "domain": "sms-router-sandbox",
            "weight": 2,
            "price_per_part": 0.040,
        },
        "v1platform": {
            "type": "v1platform",
            "base_url": sandbox.urls["v1platform"],
            "account": "sandbox",
            "password": "sandbox-pass",
            "weight": 1,
            "price_per_part": 0.035,
            "signature": "【沙箱】",
        },
        "ronglian": {
            "type": "ronglian",
            "base_url": sandbox.urls["ronglian"],
            "account_sid": RONGLIAN_SID,
            "auth_token": "sandbox-token",
            "app_id": "sandboxapp",
            "weight": 1,
            "price_per_part": 0.045,
        },
    }
    if "aliyun" in sandbox.urls:
        providers["aliyun"] = {
            "type": "aliyun",
            "base_url": sandbox.urls["aliyun"],
            "access_key_id": "sandbox-ak",
            "access_key_secret": "sandbox-secret",
            "sign_name": "阿里云短信测试",
            "weight": 1,
            "price_per_part": 0.045,
        }
    if "tencent" in sandbox.urls:
        providers["tencent"] = {
            "type": "tencent",
            "base_url": sandbox.urls["tencent"],
            "secret_id": "AKIDsandbox0000000000000000000000000",
            "secret_key": "sandbox-secret-key",
            "sdk_app_id": "1400006666",
            "sign_name": "腾讯云",
            "weight": 1,
            "price_per_part": 0.045,
        }
    templates: dict[str, Any] = {}
    for key, scene in SCENES.items():
        options: dict[str, Any] = {
            "baofoo": {"send_type": scene.send_type, "business_type": scene.business_type}
        }
        if key in _TEST_TEMPLATE_SCENES:
            options["ronglian"] = {"template_id": "1", "params": ["code", "minutes"]}
            if "aliyun" in providers:
                options["aliyun"] = {"template_code": "SMS_154950909", "params": ["code"]}
            if "tencent" in providers:
                options["tencent"] = {"template_id": "1110", "params": ["code"]}
        templates[key] = {
            "content": scene.content,
            "defaults": {"minutes": "30"},
            "providers": options,
        }
    return load_settings(**{"providers": providers, "templates": templates, **overrides})


async def run_sandbox(sandbox: Sandbox, tg: anyio.abc.TaskGroup) -> None:
    """Start every emulator in ``tg``; returns once all are listening."""
    for name, app in sandbox.apps.items():
        port = int(sandbox.urls[name].rsplit(":", 1)[1])
        await tg.start(_serve, app, port)


async def _serve(app: Starlette, port: int, *, task_status: anyio.abc.TaskStatus[None]) -> None:
    await serve_in_loop(app, HOST, port, task_status=task_status)
