"""Inbound replies (MO) pushed by a provider reach the service: a Redis stream, a webhook, or
memory; acknowledged to the provider only once stored, a failed delivery answered 503 and
counted. Real Redis, real HTTP over loopback."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from router.errors import ConfigError
from router.events import EventBus
from router.sidecar.app import create_app
from router.telemetry.metrics import MetricsSink
from tests.redis_server import redis_url
from tests.sandbox import RunningSandbox, only

pytestmark = pytest.mark.anyio
TOKEN = {"X-Callback-Token": "mo-token"}
REPLY = {"mobile": "13800138000", "content": "退订", "times": "2026-12-03 10:00:00", "extNo": "7"}


def counted(registry: CollectorRegistry, outcome: str) -> float:
    labels = {"provider": "v1platform", "outcome": outcome}
    return registry.get_sample_value("smsrouter_inbound_messages_total", labels) or 0.0


def router_with(sandbox: RunningSandbox, registry: CollectorRegistry, **kw: Any) -> Any:
    sink = MetricsSink(registry, providers=["baofoo", "v1platform", "ronglian"], scenes=[])
    return only(
        sandbox,
        "v1platform",
        server={"callback_tokens": {"v1platform": "mo-token"}},
        router_kw={"events": EventBus([sink])},
        **kw,
    )


async def test_a_reply_lands_in_the_redis_stream(
    sandbox: RunningSandbox, serve: Any, tmp_path: Path
) -> None:
    registry = CollectorRegistry()
    with redis_url(tmp_path) as (url, prefix):
        stream = f"{prefix}inbound"
        router = router_with(
            sandbox,
            registry,
            state={"backend": "redis", "redis_url": url, "prefix": prefix},
            inbound={"destination": "redis_stream", "stream": stream},
        )
        base = f"http://127.0.0.1:{serve(create_app(router)).port}/v1/callbacks/v1platform/mo"
        async with httpx.AsyncClient(timeout=5) as client:
            answer = await client.post(base, json=REPLY, headers=TOKEN)
        assert answer.status_code == 200
        reader = aioredis.Redis.from_url(url, decode_responses=True)
        try:
            entries: Any = await reader.xrange(stream)
        finally:
            await reader.aclose()
    [(_, entry)] = entries
    assert entry["mobile"] == "13800138000" and entry["content"] == "退订"
    assert entry["ext_no"] == "7" and entry["provider"] == "v1platform"
    assert entry["at"].startswith("2026-12-03T10:00:00")
    assert counted(registry, "delivered") == 1


async def test_a_reply_goes_to_the_webhook_and_a_failing_one_is_not_acknowledged(
    sandbox: RunningSandbox, serve: Any
) -> None:
    got: list[Any] = []
    lock = threading.Lock()
    failing = {"on": False}

    async def hook(request: Request) -> Response:
        if failing["on"]:
            return Response("down", status_code=500)
        with lock:
            got.extend(await request.json())
        return Response("ok")

    webhook = serve(Starlette(routes=[Route("/mo", hook, methods=["POST"])]))
    registry = CollectorRegistry()
    router = router_with(
        sandbox,
        registry,
        inbound={"destination": "webhook", "webhook_url": f"http://127.0.0.1:{webhook.port}/mo"},
    )
    base = f"http://127.0.0.1:{serve(create_app(router)).port}/v1/callbacks/v1platform/mo"
    async with httpx.AsyncClient(timeout=10) as client:
        ok = await client.post(base, json=REPLY, headers=TOKEN)
        failing["on"] = True
        refused = await client.post(base, json={**REPLY, "content": "second"}, headers=TOKEN)
    assert (ok.status_code, refused.status_code) == (200, 503)
    assert [m["content"] for m in got] == ["退订"]
    assert (counted(registry, "delivered"), counted(registry, "failed")) == (1, 1)


async def test_memory_keeps_replies_for_an_embedding_service(
    sandbox: RunningSandbox, serve: Any
) -> None:
    registry = CollectorRegistry()
    router = router_with(sandbox, registry)
    base = f"http://127.0.0.1:{serve(create_app(router)).port}/v1/callbacks/v1platform/mo"
    async with httpx.AsyncClient(timeout=5) as client:
        assert (await client.post(base, json=REPLY, headers=TOKEN)).status_code == 200
    [reply] = router.inbound_messages()
    assert (reply.mobile, reply.content, reply.ext_no) == ("13800138000", "退订", "7")


def test_a_stream_needs_the_redis_store(sandbox: RunningSandbox) -> None:
    with pytest.raises(ConfigError) as info:
        sandbox.settings(inbound={"destination": "redis_stream"})
    assert info.value.key == "inbound.destination"
    with pytest.raises(ConfigError, match="webhook_url"):
        sandbox.settings(inbound={"destination": "webhook"})
