"""Request and response bodies of the sidecar's JSON API, and their JSON schemas.

A send's result is not described here a second time: its body is :data:`RESULT_ADAPTER`'s dump
(the one wire shape, :mod:`router.state.codec`) with internal fields hidden and computed ones
added, and its schema is that adapter's schema with the same changes (:func:`result_schemas`).
The smaller bodies (providers, explanation, health, receipts) exist only in the API and are
pydantic models here.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from policies.base import BreakerState
from providers.base import DeliveryReport, DeliveryStatus
from router.engine import Explanation
from router.errors import MessageError
from router.model import Message, SendResult
from router.receipts import Delivery
from router.state.codec import RESULT_ADAPTER

MAX_MOBILES_PER_REQUEST = 100_000
MAX_KEY_CHARS = 200


def _exactly_one_of_scene_or_content(schema: dict[str, Any]) -> None:
    schema["oneOf"] = [{"required": ["scene"]}, {"required": ["content"]}]
    # Absent, not null: the document shows these as plain strings.
    for name in ("scene", "content", "idempotency_key"):
        prop = schema["properties"][name]
        if "anyOf" in prop:  # once: a subclass (BroadcastRequest) applies it again
            string = next(s for s in prop.pop("anyOf") if s.get("type") == "string")
            prop.update(string)


class SendRequest(BaseModel):
    """``POST /v1/messages``: one logical message. Give ``scene`` (+ ``params``) or ``content``."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_exactly_one_of_scene_or_content)

    mobiles: list[str] = Field(min_length=1, max_length=MAX_MOBILES_PER_REQUEST)
    scene: str | None = Field(default=None, min_length=1, max_length=100)
    params: dict[str, str | int] = Field(default_factory=dict)
    content: str | None = Field(default=None, min_length=1, max_length=2000)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=MAX_KEY_CHARS)
    tags: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _shape(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name in ("scene", "content", "idempotency_key"):
                if name in data and data[name] is None:
                    raise ValueError(f"{name} must be a string or left out, not null")
            if ("scene" in data) == ("content" in data):
                raise ValueError("give exactly one of scene (with params) or content")
        return data

    def to_message(self, header_key: str | None) -> Message:
        """The message; ``header_key`` is the ``Idempotency-Key`` header, which must agree
        with the body's ``idempotency_key`` when both are given."""
        if header_key is not None:
            if not 1 <= len(header_key) <= MAX_KEY_CHARS:
                raise MessageError(
                    f"the Idempotency-Key header must be 1 to {MAX_KEY_CHARS} characters"
                )
            if self.idempotency_key is not None and self.idempotency_key != header_key:
                raise MessageError(
                    "the Idempotency-Key header and the body's idempotency_key differ; "
                    "give the key once (either one)"
                )
        return Message(
            mobiles=self.mobiles,
            scene=self.scene,
            params=self.params,
            content=self.content,
            idempotency_key=header_key or self.idempotency_key,
            tags=self.tags,
        )


MAX_BROADCAST_RECIPIENTS = 1_000_000


class BroadcastRequest(SendRequest):
    """``POST /v1/broadcasts``: one message to up to a million recipients, run as a job."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_exactly_one_of_scene_or_content)

    mobiles: list[str] = Field(min_length=1, max_length=MAX_BROADCAST_RECIPIENTS)


class BroadcastJob(BaseModel):
    """A broadcast job's progress: recipients by status, of the chunks finished so far."""

    job_id: str
    state: str = Field(description="running, cancelling, done or cancelled")
    total: int = Field(description="recipients, repeats of a number removed")
    duplicates_dropped: int
    chunks: int
    chunks_done: int
    pending: int = Field(description="recipients without a status yet")
    counts: dict[str, int] = Field(description="recipients by status")


class BroadcastRecipient(BaseModel):
    mobile: str
    normalised: str | None
    status: str = Field(description="a recipient status, cancelled, or pending")
    provider: str | None
    provider_message_id: str | None
    error: str | None


class BroadcastResults(BaseModel):
    job: BroadcastJob
    offset: int
    recipients: list[BroadcastRecipient]
    next_offset: int | None = Field(description="null on the last page")


REF = "#/components/schemas/{model}"


class OpenAPI30Schema(GenerateJsonSchema):
    """JSON schema in OpenAPI 3.0 terms: ``nullable: true`` instead of ``{"type": "null"}``,
    which 3.0 does not have (a ``$ref`` takes no siblings there, hence the ``allOf``)."""

    def nullable_schema(self, schema: core_schema.NullableSchema) -> JsonSchemaValue:
        inner = self.generate_inner(schema["schema"])
        return _nullable(inner)


# -- a send's result ------------------------------------------------------------------------
# Hidden from API callers: our correlation ids at the providers, and a fault's kind and free
# text (operators read those in logs and traces). What is left of a fault, its class and the
# provider's code, is lifted onto the attempt: the API has always shown it that way.
_HIDDEN_ATTEMPT: dict[str, Any] = {"request_id": True, "fault": {"kind", "detail"}}
_HIDDEN: dict[str, Any] = {"recipients": {"__all__": {"attempts": {"__all__": _HIDDEN_ATTEMPT}}}}
_LIFTED = ("error_class", "code")


def result_json(result: SendResult) -> dict[str, Any]:
    """The API body of ``result``: its wire shape, less internals, plus ``ok`` and ``counts``."""
    body: dict[str, Any] = RESULT_ADAPTER.dump_python(result, mode="json", exclude=_HIDDEN)
    for recipient in body["recipients"]:
        for attempt in recipient["attempts"]:
            fault = attempt.pop("fault") or {}
            attempt.update((name, fault.get(name)) for name in _LIFTED)
    counts: dict[str, int] = {}
    for r in result.recipients:
        counts[r.status.value] = counts.get(r.status.value, 0) + 1
    body["ok"] = result.ok
    body["counts"] = counts
    return body


def result_schemas() -> dict[str, Any]:
    """Component schemas of :func:`result_json`'s body (``SendResult`` and what it refers to),
    from :data:`RESULT_ADAPTER`'s schema with the same fields hidden, lifted and added."""
    top = RESULT_ADAPTER.json_schema(
        mode="serialization", ref_template=REF, schema_generator=OpenAPI30Schema
    )
    defs: dict[str, Any] = top.pop("$defs")
    fault = defs.pop("Fault")
    del defs["FaultKind"]  # only a fault's kind used it, and that is hidden
    attempt = defs["Attempt"]
    for name in _HIDDEN_ATTEMPT:
        del attempt["properties"][name]
    for name in _LIFTED:  # null on an attempt without a fault
        attempt["properties"][name] = _nullable(fault["properties"][name])
    top["properties"]["ok"] = {"type": "boolean", "description": "every recipient accepted"}
    top["properties"]["counts"] = {
        "type": "object",
        "description": "recipients per status (keys: RecipientStatus values)",
        "additionalProperties": {"type": "integer", "minimum": 1},
    }
    top["properties"]["recorded"]["description"] = (
        "false: the outcomes are true, but the idempotency record (or removing throttle marks) "
        "is still queued because the state store was unreachable. Not an error."
    )
    for schema in (top, attempt, defs["RecipientOutcome"]):
        schema["required"] = list(schema["properties"])  # the API always writes every field
    return {"SendResult": top, **defs}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    if schema.get("nullable"):
        return schema
    if "$ref" in schema:
        return {"allOf": [schema], "nullable": True}
    return {**schema, "nullable": True}


# -- delivery and receipts -------------------------------------------------------------------
_DELIVERY: TypeAdapter[Delivery] = TypeAdapter(Delivery)


def delivery_json(delivery: Delivery) -> dict[str, Any]:
    """``{"status", "code", "reason"}``: the :class:`~router.receipts.Delivery` dataclass."""
    body: dict[str, Any] = _DELIVERY.dump_python(delivery, mode="json")
    return body


class Receipt(BaseModel):
    """One provider receipt as the API shows it."""

    status: DeliveryStatus
    code: str = Field(description="the provider's code, e.g. DELIVRD")
    mobile: str = Field(description="as the provider wrote it (may be masked)")
    reason: str | None = Field(default=None, description="unmatched receipts: why")


def receipt_json(report: DeliveryReport, reason: str | None = None) -> dict[str, Any]:
    """A receipt's API body; ``reason`` only for unmatched receipts (absent otherwise)."""
    receipt = Receipt(
        status=report.status, code=report.status_code, mobile=report.mobile, reason=reason
    )
    return receipt.model_dump(mode="json", exclude_none=True)


def delivery_schemas() -> dict[str, Any]:
    """Component schemas of the delivery and receipt bodies."""
    delivery = _DELIVERY.json_schema(
        mode="serialization", ref_template=REF, schema_generator=OpenAPI30Schema
    )
    delivery["required"] = list(delivery["properties"])
    # Inline, not a $ref: the states are the delivery's vocabulary, read off this schema.
    delivery["properties"]["status"] = delivery.pop("$defs")["DeliveryState"]
    receipt = _model_schema(Receipt)
    receipt["properties"]["reason"] = {"type": "string", "description": "unmatched receipts: why"}
    receipt["required"] = ["status", "code", "mobile"]
    return {"Delivery": delivery, **receipt.pop("$defs", {}), "Receipt": receipt}


# -- providers, explanation, health ----------------------------------------------------------
class ProviderInfo(BaseModel):
    """A provider's configuration and live state (``GET /v1/providers``, admin calls)."""

    kind: str
    enabled: bool
    max_batch: int
    weight: float
    price_per_part: float
    breaker: BreakerState
    failure_rate: float = Field(description="recent failure rate, 0..1, rounded to 4 places")


class RankedProvider(BaseModel):
    """A candidate provider, best first."""

    provider: str
    score: float
    reason: str


class ExcludedProvider(BaseModel):
    """A provider left out of a ranking, and why."""

    provider: str
    reason: str


class GroupRanking(BaseModel):
    """The ranking for one route group (``mainland``, ``international``)."""

    ranked: list[RankedProvider]
    excluded: list[ExcludedProvider]


class ExplanationBody(BaseModel):
    """``POST /v1/explain``: where the router would send a message, and why."""

    scene: str
    groups: dict[str, GroupRanking]
    unrenderable: dict[str, str] = Field(description="provider -> why it cannot carry it")
    unknowns: dict[str, str] = Field(
        default_factory=dict,
        description="provider -> what becomes of a recipient whose attempt there ends unknown",
    )
    invalid: dict[str, str] = Field(
        default_factory=dict,
        description="mobile as given -> why it is invalid (never sent, in no group)",
    )

    @classmethod
    def of(cls, explanation: Explanation) -> ExplanationBody:
        """The body for ``explanation``."""
        groups = {
            group: GroupRanking(
                ranked=[
                    RankedProvider(provider=r.name, score=r.score, reason=r.reason)
                    for r in ranking.ranked
                ],
                excluded=[
                    ExcludedProvider(provider=e.name, reason=e.reason) for e in ranking.excluded
                ],
            )
            for group, ranking in explanation.rankings.items()
        }
        return cls(
            scene=explanation.scene,
            groups=groups,
            unrenderable=dict(explanation.unrenderable),
            unknowns=dict(explanation.unknowns),
            invalid=dict(explanation.invalid),
        )


def explanation_json(explanation: Explanation) -> dict[str, Any]:
    """The API body of ``explanation``."""
    return ExplanationBody.of(explanation).model_dump(mode="json")


class HealthStatus(BaseModel):
    """``/livez`` and ``/readyz``."""

    status: str = Field(description="alive, ready, not ready or draining")


class ErrorBody(BaseModel):
    """Every error answer: a machine-readable kind and what to fix."""

    error: str
    detail: Any


def _model_schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema(
        mode="serialization", ref_template=REF, schema_generator=OpenAPI30Schema
    )


def model_schemas(*models: type[BaseModel]) -> dict[str, Any]:
    """Component schemas of ``models`` (and the models they refer to), by class name."""
    out: dict[str, Any] = {}
    for model in models:
        schema = _model_schema(model)
        out.update(schema.pop("$defs", {}))
        out[model.__name__] = schema
    return out
