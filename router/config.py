"""One settings model for the whole router: a TOML file plus ``ROUTER_*`` environment variables.

Environment variables override the file; nested keys use ``__``, e.g.
``ROUTER_PROVIDERS__BAOFOO__USER_PASS=...`` sets ``[providers.baofoo] user_pass``. That is the
place for credentials: keep them out of the file and out of git.

Any error is raised as :class:`router.errors.ConfigError` naming the bad key in dotted form.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, cast

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from providers.base import Rendered, Template, placeholders, template_problem
from providers.registry import ADAPTERS
from providers.settings import ProviderSettings
from router.breaker import BreakerSettings
from router.errors import ConfigError, MessageTooLargeError

# How provider requests travel (router.transport): "http1" is the router's own lean HTTP/1.1
# client (router.http1); the others go through aiohttp or httpx.
TransportKind = Literal["http1", "aiohttp", "httpx-aiohttp", "httpx"]
DEFAULT_TRANSPORT: TransportKind = "http1"


class TemplateSettings(BaseModel):
    """A scene: content with ``{placeholders}`` and per-provider options.

    ``providers.<name>`` options are adapter-specific: ``template_id`` and ordered ``params``
    (Ronglian), ``send_type`` / ``business_type`` (Baofoo), ``approved = false`` to mark a
    template not yet approved at that provider (it is then not a candidate).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    content: str | None = None
    defaults: dict[str, str] = Field(default_factory=dict, description="param default values")
    throttle_s: float | None = Field(
        default=None, gt=0, description="at most one SMS per mobile per this many seconds"
    )
    providers: dict[str, dict[str, Any]] = Field(default_factory=dict)

    def to_template(self, key: str) -> Template:
        return Template(key=key, content=self.content, provider_options=self.providers)

    def content_texts(self) -> list[str]:
        """Every content template a provider may render: the scene's and per-provider ones."""
        texts = [self.content] if self.content is not None else []
        for options in self.providers.values():
            if isinstance(options.get("content"), str):
                texts.append(options["content"])
        return texts


class LimitSettings(BaseModel):
    """Sizes a message may have: a runaway param must not become a 40-part SMS to thousands."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_param_chars: int = Field(default=256, ge=1, description="characters per param value")
    max_rendered_chars: int = Field(
        default=1000, ge=1, description="characters of the rendered message (or template data)"
    )

    def check_params(self, scene: str, params: Mapping[str, str]) -> None:
        """Raise :class:`MessageTooLargeError` for a param value over ``max_param_chars``."""
        for name, value in params.items():
            if len(value) > self.max_param_chars:
                # The value itself is never echoed: it may be a code or personal data.
                raise MessageTooLargeError(
                    f"param {name!r} of scene {scene!r} has {len(value)} characters, over "
                    f"limits.max_param_chars = {self.max_param_chars}; shorten it or raise "
                    "the limit"
                )

    def check_rendered(self, scene: str, renders: Mapping[str, Rendered]) -> None:
        """Raise :class:`MessageTooLargeError` for a rendering over ``max_rendered_chars``."""
        for provider, rendered in renders.items():
            size = len(rendered.content or "") or sum(map(len, rendered.template_params))
            if size > self.max_rendered_chars:
                raise MessageTooLargeError(
                    f"scene {scene!r} renders to {size} characters for {provider}, over "
                    f"limits.max_rendered_chars = {self.max_rendered_chars}; shorten the "
                    "content or params, or raise the limit"
                )


class StateSettings(BaseModel):
    """Where idempotency records, per-mobile limits and shared cool-downs live."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: Literal["memory", "redis"] = "memory"
    redis_url: str | None = Field(default=None, description="redis://host:port/db")
    prefix: str = Field(default="smsrouter:", min_length=1)
    idempotency_ttl_s: float = Field(default=86_400.0, gt=0)
    lease_s: float | None = Field(
        default=None, gt=0, description="idempotency lease; default: send deadline + 5 s"
    )
    redis_timeout_s: float = Field(default=0.5, gt=0)
    breaker_sync_s: float = Field(default=1.0, ge=0, description="share cool-downs; 0: off")
    stats_sync_s: float = Field(
        default=1.0, ge=0, description="share provider quality and spend (Redis); 0: off"
    )
    clock_skew_s: float = Field(
        default=1.0, ge=0, description="how far a router host's clock may be from Redis' clock"
    )
    commit_retry_s: float = Field(
        default=2.0,
        ge=0,
        description="retry a failed idempotency record this long (within the send deadline) "
        "before returning the result with recorded=false and queueing the record",
    )
    outbox_max: int = Field(
        default=10_000, ge=1, description="state writes queued while the store is unreachable"
    )
    outbox_max_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    memory_max_bytes: int = Field(
        default=32 * 1024 * 1024,
        ge=1024 * 1024,
        description="memory backend: bytes of idempotency records kept (about 600 per "
        "single-recipient send); past it the oldest keys are forgotten before their TTL",
    )
    outbox_flush_s: float = Field(default=0.5, gt=0, description="replay period of the outbox")

    @model_validator(mode="after")
    def _redis_needs_url(self) -> StateSettings:
        if self.backend == "redis" and not self.redis_url:
            raise ValueError("backend = 'redis' needs redis_url")
        return self


class InboundSettings(BaseModel):
    """Where inbound replies (MO) pushed by providers go: the service reads them there."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    destination: Literal["memory", "redis_stream", "webhook"] = Field(
        default="memory",
        description=(
            "memory: kept in this process (embedded use, Router.inbound_messages()); "
            "redis_stream: XADD to `stream` on the state store's Redis; webhook: POST JSON"
        ),
    )
    stream: str = Field(default="smsrouter:inbound", min_length=1)
    stream_maxlen: int = Field(default=1_000_000, ge=1, description="approximate trim")
    webhook_url: str | None = None
    webhook_timeout_s: float = Field(default=5.0, gt=0)
    memory_keep: int = Field(default=10_000, ge=1, description="memory: replies kept")

    @model_validator(mode="after")
    def _complete(self) -> InboundSettings:
        if self.destination == "webhook" and not self.webhook_url:
            raise ValueError("destination = 'webhook' needs webhook_url")
        return self


class BroadcastSettings(BaseModel):
    """Broadcast jobs (``POST /v1/broadcasts``): many recipients, run in chunks."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    executor: Literal["local", "celery"] = Field(
        default="local",
        description=(
            "local: this process runs the chunks; celery: workers run them "
            "(router.celery), the sidecar only enqueues"
        ),
    )
    celery_broker: str | None = Field(default=None, description="broker URL for celery")
    celery_queue: str = Field(default="sms_router", min_length=1)
    chunk_size: int = Field(
        default=0, ge=0, description="recipients per chunk; 0: the largest provider batch"
    )
    concurrency: int = Field(default=4, ge=1, description="local: chunks run at once")
    max_recipients: int = Field(default=1_000_000, ge=1)
    ttl_s: float = Field(default=7 * 86_400.0, gt=0, description="how long a job is kept")
    claim_s: float | None = Field(
        default=None, gt=0, description="a chunk's claim lease; default send deadline + 30 s"
    )

    @model_validator(mode="after")
    def _complete(self) -> BroadcastSettings:
        if self.executor == "celery" and not self.celery_broker:
            raise ValueError("executor = 'celery' needs celery_broker (e.g. redis://host/0)")
        return self


GC_GEN0_THRESHOLD = 20_000


class ServerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    admin_token: str | None = Field(default=None, description="Bearer token for /v1/admin")
    callback_tokens: dict[str, SecretStr] = Field(
        default_factory=dict, description="provider -> secret token its push URLs carry"
    )
    callback_allow_ips: dict[str, list[str]] = Field(
        default_factory=dict, description="provider -> networks allowed to push (CIDR)"
    )
    drain_s: float = Field(default=10.0, ge=0, description="SIGTERM: finish in-flight sends")
    readiness_grace_s: float = Field(
        default=2.0, ge=0, description="SIGTERM: keep answering 503 on /readyz this long first"
    )
    gc_gen0_threshold: int = Field(
        default=GC_GEN0_THRESHOLD,
        ge=0,
        description="the sidecar process's garbage-collector generation-0 threshold (Python's "
        "default: 700); 0 keeps Python's. A request's objects mostly die before a larger "
        "threshold is reached, so fewer are walked (benchmarks/README.md, sidecar)",
    )


class ResilienceSettings(BaseModel):
    """Breakers, panic rule, failover budget and reconciliation of unknown outcomes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    breaker: BreakerSettings = Field(default_factory=BreakerSettings)
    panic: bool = Field(
        default=True, description="when every candidate's breaker is open, use the least bad"
    )
    failover_budget_ratio: float = Field(default=0.2, ge=0, le=1)
    failover_budget_min: int = Field(default=10, ge=0, description="recipients always allowed")
    failover_budget_window_s: float = Field(default=10.0, gt=0)
    reconcile_window_s: float = Field(
        default=0.0, ge=0, description="wait this long for a receipt to settle an unknown"
    )
    credentials_park_s: float = Field(
        default=300.0,
        ge=0,
        description=(
            "a provider that refuses our credentials is left out of routing this long, then "
            "tried again (a configuration error, not an outage: the breaker is not involved)"
        ),
    )
    replay_unknown: bool = Field(
        default=True,
        description=(
            "settle an unknown attempt at a provider that refuses reused request ids (Ronglian) "
            "by resending it under the same id within the send deadline"
        ),
    )
    replay_delay_s: float = Field(
        default=1.0,
        ge=0,
        description="wait before such a resend, so a slow first request is taken first",
    )


class CostWeights(BaseModel):
    """Weights of the cost-aware policy (``policy = "cost"``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    price: float = Field(default=0.5, ge=0)
    accepted: float = Field(default=0.25, ge=0)
    delivery: float = Field(default=0.15, ge=0)
    latency: float = Field(default=0.10, ge=0)


class RouterSettings(BaseSettings):
    """Everything the router reads from its configuration."""

    model_config = SettingsConfigDict(
        env_prefix="ROUTER_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    providers: dict[str, dict[str, Any]] = Field(default_factory=dict)
    templates: dict[str, TemplateSettings] = Field(default_factory=dict)
    policy: Literal["weighted", "cost"] = "weighted"
    cost_weights: CostWeights = Field(default_factory=CostWeights)
    receipt_poll_s: float = Field(
        default=5.0, ge=0, description="pull receipts (v1 /report) this often; 0: never"
    )
    balance_poll_s: float = Field(
        default=60.0, ge=0, description="poll balances (v1 /queryBalance) this often; 0: never"
    )
    default_region: str = "CN"
    invalid_mobiles: Literal["report", "raise"] = "report"
    unknown_outcomes: Literal["at_most_once", "at_least_once"] = "at_most_once"
    send_deadline_s: float = Field(default=30.0, gt=0)
    transport: TransportKind = DEFAULT_TRANSPORT
    resilience: ResilienceSettings = Field(default_factory=ResilienceSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    state: StateSettings = Field(default_factory=StateSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    inbound: InboundSettings = Field(default_factory=InboundSettings)
    broadcasts: BroadcastSettings = Field(default_factory=BroadcastSettings)

    _parsed: dict[str, ProviderSettings] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _validate_providers(self) -> RouterSettings:
        if self.inbound.destination == "redis_stream" and self.state.backend != "redis":
            raise ConfigError(
                "inbound.destination",
                "redis_stream needs the Redis state store: set state.backend = 'redis' and "
                "state.redis_url",
            )
        if self.broadcasts.executor == "celery" and self.state.backend != "redis":
            raise ConfigError(
                "broadcasts.executor",
                "celery workers share jobs through the Redis state store: set "
                "state.backend = 'redis' and state.redis_url",
            )
        parsed = {name: parse_provider(name, raw) for name, raw in self.providers.items()}
        for key, template in self.templates.items():
            for provider in template.providers:
                if provider not in parsed:
                    raise ConfigError(
                        f"templates.{key}.providers.{provider}",
                        f"no provider named {provider!r}; configured: {sorted(parsed)}",
                    )
            check_template(key, template, parsed)
        self._parsed = parsed
        # Keep only the typed form: its secrets are SecretStr, so no repr or dump shows them.
        redacted = {name: p.model_dump(exclude_unset=False) for name, p in parsed.items()}
        object.__setattr__(self, "providers", redacted)
        return self

    def resends_unknown(self, provider: str) -> bool:
        """Whether a recipient whose attempt at ``provider`` ended unknown may be sent again
        elsewhere: the provider's ``unknown_outcomes``, else the router-wide one."""
        own = self._parsed[provider].unknown_outcomes if provider in self._parsed else None
        return (own or self.unknown_outcomes) == "at_least_once"

    @property
    def provider_settings(self) -> Mapping[str, ProviderSettings]:
        """Validated, typed settings of each provider, by instance name."""
        return self._parsed

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if settings_cls.model_config.get("toml_file"):
            sources.append(TomlConfigSettingsSource(settings_cls))
        return tuple(sources)


def check_template(
    key: str, template: TemplateSettings, providers: Mapping[str, ProviderSettings]
) -> None:
    """Refuse at load time what would otherwise fail in the middle of a send: options a
    provider does not know or values outside its documented ranges, a broken format string,
    or ordered template params (Ronglian ``params``) nothing can fill."""
    for provider, options in template.providers.items():
        model = providers[provider].template_options
        try:
            model.model_validate(options)
        except ValidationError as exc:
            takes = sorted(model.model_fields)
            error = _config_error(exc, prefix=f"templates.{key}.providers.{provider}")
            raise ConfigError(
                error.key, f"{error.problem} ({providers[provider].type} options: {takes})"
            ) from None
    texts = {f"templates.{key}.content": template.content}
    for provider, options in template.providers.items():
        if "content" in options:
            texts[f"templates.{key}.providers.{provider}.content"] = options["content"]
    for dotted, text in texts.items():
        if text is None:
            continue
        if not isinstance(text, str):
            raise ConfigError(dotted, "must be a string with {placeholders}")
        if not text.strip():
            raise ConfigError(dotted, "is blank; write the SMS text or remove the key")
        if (problem := template_problem(text)) is not None:
            raise ConfigError(dotted, problem)
    for provider, options in template.providers.items():
        names = options.get("params")
        if names is None:
            continue
        dotted = f"templates.{key}.providers.{provider}.params"
        if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
            raise ConfigError(dotted, "must be a list of parameter names, in template order")
        if template.content is None:
            continue  # template-only scene: its params come from each message
        known = set(placeholders(template.content)) | set(template.defaults)
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ConfigError(
                dotted,
                f"names {unknown} that neither templates.{key}.content's placeholders "
                f"{sorted(placeholders(template.content))} nor templates.{key}.defaults "
                "provide; add them to one of those or fix the names",
            )


def parse_provider(name: str, raw: Mapping[str, Any]) -> ProviderSettings:
    """Validate one ``[providers.<name>]`` table with its adapter's settings model."""
    kind = raw.get("type")
    if kind not in ADAPTERS:
        raise ConfigError(
            f"providers.{name}.type", f"must be one of {sorted(ADAPTERS)}, got {kind!r}"
        )
    try:
        return ADAPTERS[kind].settings_type.model_validate(raw)
    except ValidationError as exc:
        raise _config_error(exc, prefix=f"providers.{name}") from None


def _config_error(exc: ValidationError, prefix: str = "") -> ConfigError:
    first = exc.errors()[0]
    loc = ".".join(str(part) for part in first["loc"])
    key = ".".join(p for p in (prefix, loc) if p) or "(root)"
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()
    )
    # Never echo input values: a wrong credential must not end up in an error message.
    return ConfigError(key, problems if len(exc.errors()) > 1 else first["msg"])


def load_settings(path: str | Path | None = None, **overrides: Any) -> RouterSettings:
    """Load settings from an optional TOML file, ``ROUTER_*`` variables and ``overrides``."""
    settings_type = RouterSettings
    if path is not None:
        if not Path(path).is_file():
            raise ConfigError("(file)", f"config file {str(path)!r} does not exist")
        config = SettingsConfigDict(**{**RouterSettings.model_config, "toml_file": Path(path)})
        settings_type = cast(
            type[RouterSettings],
            type("FileRouterSettings", (RouterSettings,), {"model_config": config}),
        )
    try:
        return settings_type(**overrides)
    except ValidationError as exc:
        raise _with_env_hint(_config_error(exc)) from None
    except ConfigError as exc:
        raise _with_env_hint(exc) from None
    except ValueError as exc:  # a TOML syntax error
        raise ConfigError("(file)", f"cannot read {path}: {exc}") from None


def env_name(key: str) -> str:
    """The ``ROUTER_*`` variable that sets the dotted config ``key``."""
    return "ROUTER_" + "__".join(part.upper() for part in key.split("."))


def _with_env_hint(exc: ConfigError) -> ConfigError:
    """Say where the bad value came from when it came from the environment, and how to set
    a missing one there: a leftover variable must not look like a file's mistake."""
    if exc.key in ("(root)", "(file)"):
        return exc
    parts = exc.key.split(".")
    hints = []
    if env_name(exc.key) in os.environ:
        hints.append(f"the value comes from environment variable {env_name(exc.key)}")
    elif len(parts) > 2:
        section = env_name(".".join(parts[:2])) + "__"
        from_env = sorted(name for name in os.environ if name.startswith(section))
        if from_env:
            hints.append(
                f"{'.'.join(parts[:2])} has values from the environment: {', '.join(from_env[:3])}"
            )
    if exc.problem.startswith("Field required"):
        hints.append(f"set it in the file, or in the environment as {env_name(exc.key)}")
    elif len(parts) == 2 and parts[0] == "providers" and not hints:
        hints.append(f"each of its keys can also be set as {env_name(exc.key)}__<KEY>")
    if not hints:
        return exc
    return type(exc)(exc.key, f"{exc.problem} ({'; '.join(hints)})")
