"""Request and response bodies of the sidecar's JSON API."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from providers.base import DeliveryReport
from router.engine import Explanation
from router.model import Message, RecipientOutcome, SendResult
from router.receipts import Delivery, DeliveryState

MAX_MOBILES_PER_REQUEST = 100_000


def _exactly_one_of_scene_or_content(schema: dict[str, Any]) -> None:
    schema["oneOf"] = [{"required": ["scene"]}, {"required": ["content"]}]
    # Absent, not null: the document shows these as plain strings.
    for name in ("scene", "content", "idempotency_key"):
        prop = schema["properties"][name]
        string = next(s for s in prop.pop("anyOf") if s.get("type") == "string")
        prop.update(string)


class SendRequest(BaseModel):
    """``POST /v1/messages``: one logical message. Give ``scene`` (+ ``params``) or ``content``."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_exactly_one_of_scene_or_content)

    mobiles: list[str] = Field(min_length=1, max_length=MAX_MOBILES_PER_REQUEST)
    scene: str | None = Field(default=None, min_length=1, max_length=100)
    params: dict[str, str | int] = Field(default_factory=dict)
    content: str | None = Field(default=None, min_length=1, max_length=2000)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)
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

    def to_message(self, idempotency_key: str | None) -> Message:
        return Message(
            mobiles=self.mobiles,
            scene=self.scene,
            params=self.params,
            content=self.content,
            idempotency_key=idempotency_key or self.idempotency_key,
            tags=self.tags,
        )


def recipient_json(r: RecipientOutcome) -> dict[str, Any]:
    return {
        "mobile": r.mobile,
        "normalised": r.normalised,
        "status": r.status.value,
        "provider": r.provider,
        "provider_message_id": r.provider_message_id,
        "error": r.error,
        "attempts": [
            {
                "provider": a.provider,
                "verdict": a.verdict,
                "error_class": a.fault.error_class.value if a.fault else None,
                "code": a.fault.code if a.fault else None,
            }
            for a in r.attempts
        ],
    }


def delivery_json(delivery: Delivery) -> dict[str, Any]:
    """``{"status", "code", "reason"}``: see DELIVERY_SCHEMA."""
    return {"status": delivery.status.value, "code": delivery.code, "reason": delivery.reason}


def receipt_json(report: DeliveryReport, reason: str | None = None) -> dict[str, Any]:
    body = {"status": report.status.value, "code": report.status_code, "mobile": report.mobile}
    return body if reason is None else {**body, "reason": reason}


_NULLABLE_STRING = {"type": "string", "nullable": True}
DELIVERY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "nullable": True,
    "description": "Delivery of one accepted recipient; null when no provider accepted it. "
    "delivered/failed: its first final receipt (pushed or pulled, counted once); pending: "
    "none yet; ambiguous: a masked receipt fits it and another recipient of the batch "
    "(reason says so); not_supported: the provider gives no receipts (e.g. Baofoo).",
    "required": ["status", "code", "reason"],
    "properties": {
        "status": {"type": "string", "enum": [s.value for s in DeliveryState]},
        "code": {**_NULLABLE_STRING, "description": "the provider's code, e.g. DELIVRD"},
        "reason": _NULLABLE_STRING,
    },
}


def result_json(result: SendResult) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for r in result.recipients:
        counts[r.status.value] = counts.get(r.status.value, 0) + 1
    return {
        "message_id": result.message_id,
        "ok": result.ok,
        "idempotent_replay": result.idempotent_replay,
        "panic": result.panic,
        # false: the outcomes are true, but the idempotency record (or removing throttle marks)
        # is still queued because the state store was unreachable. Do not treat as an error.
        "recorded": result.recorded,
        "counts": counts,
        "recipients": [recipient_json(r) for r in result.recipients],
    }


def explanation_json(explanation: Explanation) -> dict[str, Any]:
    return {
        "scene": explanation.scene,
        "groups": {
            group: {
                "ranked": [
                    {"provider": r.name, "score": r.score, "reason": r.reason}
                    for r in ranking.ranked
                ],
                "excluded": [{"provider": e.name, "reason": e.reason} for e in ranking.excluded],
            }
            for group, ranking in explanation.rankings.items()
        },
        "unrenderable": dict(explanation.unrenderable),
    }
