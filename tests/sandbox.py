"""The three original emulators on loopback threads plus router settings that point at them
(the tests written around three providers; the cloud gateways have their own test modules)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from providers.emulators._common import EmulatorState, RecordedRequest
from providers.emulators.server import ThreadedServer
from router.config import RouterSettings
from router.engine import Router
from router.sidecar.sandbox import Sandbox, create_sandbox, sandbox_settings

CLASSIC = ("baofoo", "v1platform", "ronglian")
# Where each emulator's send request carries its mobiles.
MOBILE_FIELDS = {"baofoo": "mobile", "v1platform": "mobiles", "ronglian": "to"}
SEND_PATHS = {"baofoo": "/sendSms", "v1platform": "/api/v1/send", "ronglian": "/TemplateSMS"}


@dataclass
class RunningSandbox:
    box: Sandbox
    servers: dict[str, ThreadedServer]

    def state(self, provider: str) -> EmulatorState:
        return self.box.state(provider)

    def settings(self, **overrides: Any) -> RouterSettings:
        return sandbox_settings(self.box, **overrides)

    def sends(self, provider: str) -> list[RecordedRequest]:
        return self.state(provider).sent_requests(SEND_PATHS[provider])

    def mobiles_sent(self, provider: str) -> list[list[str]]:
        """The national numbers of each send request the emulator received, in order."""
        out = []
        for request in self.sends(provider):
            raw = str(request.fields.get(MOBILE_FIELDS[provider], ""))
            out.append([m[-11:] for m in raw.replace(";", ",").split(",") if m])
        return out

    def reset(self) -> None:
        for name in self.servers:
            self.state(name).reset()


def plain_providers(providers: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Provider settings with secrets written out (test credentials only): for a subprocess's
    JSON config, or to override one provider's raw settings."""
    return {
        name: {
            k: v.get_secret_value() if hasattr(v, "get_secret_value") else v
            for k, v in raw.items()
            if v is not None
        }
        for name, raw in providers.items()
    }


def only(sandbox: RunningSandbox, *names: str, router_kw: Any = None, **overrides: Any) -> Router:
    """A router with only ``names`` enabled: the first is the primary (the only weight > 0),
    the others failovers in name order. ``providers={name: {...}}`` replaces a provider's raw
    settings; ``router_kw`` goes to the Router (clock, events, ...)."""
    base = sandbox.settings()
    providers = {
        name: {**raw, "weight": 1 if name == names[0] else 0}
        for name, raw in base.providers.items()
    }
    providers.update(overrides.pop("providers", {}))
    router = Router(sandbox.settings(providers=providers, **overrides), **(router_kw or {}))
    for name in router.providers:
        router.set_enabled(name, name in names)
    return router


@contextmanager
def running_sandbox() -> Iterator[RunningSandbox]:
    # Bound first (any free port, atomically), then the apps learn their URLs.
    names = ("baofoo", "v1platform", "ronglian")
    servers = {name: ThreadedServer(None) for name in names}
    box = create_sandbox({name: server.port for name, server in servers.items()}, CLASSIC)
    for name, server in servers.items():
        server.app = box.apps[name]
    try:
        for server in servers.values():
            server.start()
        yield RunningSandbox(box, servers)
    finally:
        for server in servers.values():
            server.stop()


def assert_attempts_true(r: Any, reached: list[str], *, at_least_once: bool) -> None:
    """The no-double-send property of one recipient result ``r`` (a ``RecipientResult``),
    given the providers whose emulators received a request carrying its number (``reached``).

    Every request that reached a provider is an attempt. A provider is reached twice only by a
    resend under the same request id (a Ronglian replay of an unknown attempt, which Ronglian
    refuses as a duplicate if the first was taken: still one SMS). Only a provable refusal (or,
    with at-least-once, an unknown) is followed by another provider."""
    assert sorted(reached) == sorted(a.provider for a in r.attempts), r
    ids: dict[str, set[str | None]] = {}
    for a in r.attempts:
        ids.setdefault(a.provider, set()).add(a.request_id)
    assert all(len(v) == 1 for v in ids.values()), f"{r.mobile} sent twice to one provider"
    replayed = {
        i
        for i, (a, b) in enumerate(zip(r.attempts, r.attempts[1:], strict=False))
        if (a.provider, a.request_id) == (b.provider, b.request_id)
    }
    assert all(
        r.attempts[i].provider == "ronglian" and r.attempts[i].verdict == "unknown"
        for i in replayed
    ), r
    allowed = {"rejected", "unknown"} if at_least_once else {"rejected"}
    distinct = [a for i, a in enumerate(r.attempts) if i not in replayed]
    assert all(a.verdict in allowed for a in distinct[:-1]), r
