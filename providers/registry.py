"""The one list of provider kinds. Adding a provider: one module, one line here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from providers import aliyun, baofoo, ronglian, tencent, v1platform
from providers.base import Provider
from providers.settings import ProviderSettings


@dataclass(frozen=True, slots=True)
class AdapterSpec:
    kind: str
    settings_type: type[ProviderSettings]
    # (instance name, validated settings, clock for signatures) -> adapter
    factory: Callable[..., Provider]


def _specs() -> dict[str, AdapterSpec]:
    return {
        "baofoo": AdapterSpec("baofoo", baofoo.BaofooSettings, baofoo.BaofooProvider),
        "v1platform": AdapterSpec(
            "v1platform", v1platform.V1PlatformSettings, v1platform.V1PlatformProvider
        ),
        "ronglian": AdapterSpec("ronglian", ronglian.RonglianSettings, ronglian.RonglianProvider),
        "aliyun": AdapterSpec("aliyun", aliyun.AliyunSettings, aliyun.AliyunProvider),
        "tencent": AdapterSpec("tencent", tencent.TencentSettings, tencent.TencentProvider),
    }


ADAPTERS: dict[str, AdapterSpec] = _specs()
