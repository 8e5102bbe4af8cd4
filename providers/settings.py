"""Settings every provider account shares; each adapter extends :class:`ProviderSettings`."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from providers.mobile import Mobile


class TemplateOptions(BaseModel):
    """``[templates.<scene>.providers.<name>]``: the options every adapter understands. An
    adapter with more subclasses this and names it in its settings' ``template_options``;
    unknown keys are refused at config load (a typo must not silently drop a provider)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    approved: bool = Field(default=True, description="false: not yet approved at the provider")
    content: str | None = Field(default=None, description="this provider's own text")


# An alias: inside a settings class, ``type`` is the adapter-kind field, not the builtin.
TemplateOptionsModel = type[TemplateOptions]


class ProviderSettings(BaseModel):
    """Common per-provider configuration. Secrets are ``SecretStr`` and never print."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    # The model of this adapter's per-template options (validated at config load).
    template_options: ClassVar[TemplateOptionsModel] = TemplateOptions

    type: str
    enabled: bool = True
    base_url: str = Field(description="scheme://host[:port] of the provider API")
    weight: float = Field(default=1.0, ge=0, description="share of primary traffic (failover)")
    max_batch: int = Field(default=200, ge=1, description="most mobiles per request")
    concurrency: int = Field(default=32, ge=1, description="most requests in flight")
    keepalive_s: float = Field(
        default=4.0,
        gt=0,
        description="close idle connections after this long: below the gateway's keep-alive",
    )
    share_concurrency: bool = Field(
        default=False,
        description=(
            "with the Redis state store, `concurrency` is the account's across instances "
            "(two store round trips per request); else per process"
        ),
    )
    rate_limit_rps: float | None = Field(default=None, gt=0, description="requests per second")
    coalesce_ms: float = Field(
        default=0.0,
        ge=0,
        le=1000,
        description=(
            "merge concurrent messages with identical content into one request within this "
            "window (0: off). Only for providers whose request carries many numbers; a "
            "provider that fails a whole request for one bad number (Baofoo) makes every "
            "merged message fail with it"
        ),
    )
    connect_timeout_s: float = Field(default=2.0, gt=0)
    timeout_s: float = Field(default=10.0, gt=0, description="whole-request timeout")
    price_per_part: float = Field(default=0.0, ge=0, description="cost of one SMS part")
    spend_limit: float | None = Field(
        default=None, ge=0, description="most spend per spend_period_s; None: unlimited"
    )
    spend_period_s: float = Field(default=86_400.0, gt=0)
    regions: Literal["mainland", "international", "all"] = "mainland"
    unknown_outcomes: Literal["at_most_once", "at_least_once"] | None = Field(
        default=None,
        description=(
            "for an unknown outcome at this provider, overrides the router-wide "
            "unknown_outcomes (e.g. at_least_once for one provider with no way to know)"
        ),
    )
    signature: str = Field(default="", description="e.g. 【Brand】, prepended to content")

    def reaches(self, mobile: Mobile) -> bool:
        """Whether ``regions`` covers this mobile (mainland China or elsewhere)."""
        return self.regions == "all" or (self.regions == "mainland") == mobile.is_mainland


def secret(value: SecretStr) -> str:
    """The secret's value, for building a request. Never log what this returns."""
    return value.get_secret_value()
