"""Provider push endpoints: the token by header or query, and every refusal said and counted."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from router.events import EventBus
from router.sidecar.app import create_app
from router.telemetry.logs import LoggingSink
from router.telemetry.metrics import MetricsSink
from tests.sandbox import RunningSandbox, only

pytestmark = pytest.mark.anyio
STATUS = {"sendId": "t-1", "mobile": "13800138000", "status": "DELIVRD"}


def rejections(registry: CollectorRegistry, provider: str, reason: str) -> float:
    labels = {"provider": provider, "reason": reason}
    return registry.get_sample_value("smsrouter_callback_rejections_total", labels) or 0.0


async def test_callbacks_take_the_token_by_header_and_count_every_refusal(
    sandbox: RunningSandbox, serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    registry = CollectorRegistry()
    sinks = [MetricsSink(registry, providers=["baofoo", "v1platform", "ronglian"], scenes=[])]
    router = only(
        sandbox,
        "v1platform",
        server={"callback_tokens": {"v1platform": "s3cret-token"}},
        router_kw={"events": EventBus([*sinks, LoggingSink()])},
    )
    url = f"http://127.0.0.1:{serve(create_app(router)).port}/v1/callbacks"
    caplog.set_level(logging.WARNING)
    async with httpx.AsyncClient(timeout=5) as client:
        by_header = await client.post(
            f"{url}/v1platform/status", json=STATUS, headers={"X-Callback-Token": "s3cret-token"}
        )
        by_query = await client.post(f"{url}/v1platform/status?token=s3cret-token", json=STATUS)
        bad = await client.post(
            f"{url}/v1platform/status", json=STATUS, headers={"X-Callback-Token": "guess"}
        )
        unknown = await client.post(f"{url}/no-such-provider/status?token=x", json=STATUS)
        unreadable = await client.post(
            f"{url}/v1platform/status?token=s3cret-token", content=b"not json"
        )
    assert [r.status_code for r in (by_header, by_query, bad, unknown, unreadable)] == [
        200,
        200,
        403,
        404,
        400,
    ]
    assert rejections(registry, "v1platform", "token") == 1
    assert rejections(registry, "other", "not_configured") == 1  # a bounded label
    assert rejections(registry, "v1platform", "unreadable") == 1
    assert "provider=v1platform callback rejected: reason=token" in caplog.text
    assert "s3cret-token" not in caplog.text and "guess" not in caplog.text
