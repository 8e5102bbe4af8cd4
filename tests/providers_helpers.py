"""Building adapters and batches against emulators for the provider tests."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from providers.baofoo import BaofooProvider, BaofooSettings
from providers.base import AttemptResult, Batch, Mobile, Rendered, RenderRequest, Template
from providers.http import send_batch
from providers.ronglian import RonglianProvider, RonglianSettings
from providers.v1platform import V1PlatformProvider, V1PlatformSettings
from router.clock import Clock
from router.mobile import normalise
from router.transport import HttpxClient

SECRETS = ("sandbox-pass", "sandbox-token")


def baofoo(url: str, **kw: Any) -> BaofooProvider:
    s = BaofooSettings.model_validate(
        {
            "base_url": url,
            "user_name": "sandbox-user",
            "user_pass": "sandbox-pass",
            "domain": "app",
            **kw,
        }
    )
    return BaofooProvider("baofoo", s)


def v1(url: str, **kw: Any) -> V1PlatformProvider:
    s = V1PlatformSettings.model_validate(
        {"base_url": url, "account": "sandbox", "password": "sandbox-pass", **kw}
    )
    return V1PlatformProvider("v1platform", s)


def ronglian(url: str, clock: Clock | None = None, **kw: Any) -> RonglianProvider:
    s = RonglianSettings.model_validate(
        {
            "base_url": url,
            "account_sid": "sandboxsid00000000000000000000000",
            "auth_token": "sandbox-token",
            "app_id": "sandboxapp",
            **kw,
        }
    )
    return RonglianProvider("ronglian", s, clock)


def mobiles(*raw: str) -> tuple[Mobile, ...]:
    return tuple(normalise(m) for m in raw)


def numbers(n: int) -> tuple[Mobile, ...]:
    return mobiles(*(f"137{i:08d}" for i in range(n)))


def otp_batch(provider: Any, ms: tuple[Mobile, ...], code: str = "123456") -> Batch:
    template = Template(
        "login_code",
        "您的登录验证码为 {code},30分钟内有效,请勿泄露。",
        {
            "baofoo": {"send_type": 1, "business_type": 4},
            "ronglian": {"template_id": "1", "params": ["code", "minutes"]},
        },
    )
    rendered = provider.render(RenderRequest(template, {"code": code, "minutes": "30"}, None))
    assert isinstance(rendered, Rendered)
    return Batch(uuid.uuid4().hex, ms, rendered)


async def send(provider: Any, batch: Batch, timeout_s: float = 5.0) -> AttemptResult:
    async with httpx.AsyncClient(timeout=timeout_s) as client:
        return await send_batch(provider, HttpxClient(client), batch)


def no_secret_in(*objects: object) -> None:
    for obj in objects:
        text = f"{obj!r} {obj!s}"
        for secret_ in SECRETS:
            assert secret_ not in text, f"secret leaked in {type(obj).__name__}"
