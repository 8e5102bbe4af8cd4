"""The sidecar's OpenAPI document: request bodies from the pydantic models, every error
response documented."""

from __future__ import annotations

from functools import cache
from typing import Any

from router.sidecar.schemas import DELIVERY_SCHEMA, SendRequest

ERROR = {"$ref": "#/components/schemas/Error"}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ERROR}}}


ERRORS = {
    "400": _error("The message itself is wrong (unknown scene, missing param, no route)."),
    "401": _error("Missing or wrong admin token."),
    "403": _error("Admin calls are disabled (no server.admin_token)."),
    "409": _error("Idempotency key reused for another payload, or still in progress."),
    "422": _error("The request body is not valid JSON for this schema."),
    "429": _error("Too many requests (reserved for rate limiting in front of the sidecar)."),
    "503": _error("Not ready, draining, or the state store is unreachable (fail closed)."),
}
JSON_OBJECT = {"application/json": {"schema": {"type": "object"}}}
RECEIPT = {
    "type": "object",
    "required": ["status", "code", "mobile"],
    "properties": {
        "status": {"type": "string", "enum": ["delivered", "failed"]},
        "code": {"type": "string"},
        "mobile": {"type": "string", "description": "as the provider wrote it (may be masked)"},
        "reason": {"type": "string", "description": "unmatched receipts: why"},
    },
}
MESSAGE_STATUS = {
    "type": "object",
    "required": ["message_id", "recipients", "unmatched_receipts"],
    "properties": {
        "message_id": {"type": "string"},
        "recipients": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["status", "delivery", "receipts"],
                "properties": {
                    "status": {"type": "string"},
                    "delivery": {"$ref": "#/components/schemas/Delivery"},
                    "receipts": {
                        "type": "array",
                        "description": "the receipt that settled this recipient (0 or 1)",
                        "items": {"$ref": "#/components/schemas/Receipt"},
                    },
                },
            },
        },
        "unmatched_receipts": {
            "type": "array",
            "description": "masked receipts fitting no recipient or several, never applied",
            "items": {"$ref": "#/components/schemas/Receipt"},
        },
    },
}


def _op(summary: str, ok: str, codes: tuple[str, ...], body: bool = False) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "responses": {
            "200": {"description": ok, "content": JSON_OBJECT},
            **{c: ERRORS[c] for c in codes},
        },
    }
    if body:
        op["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/SendRequest"}}
            },
        }
        op["parameters"] = [
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "schema": {"type": "string", "minLength": 1, "maxLength": 200},
            }
        ]
    return op


@cache
def openapi_document() -> dict[str, Any]:
    schema = SendRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    defs = schema.pop("$defs", {})
    admin_params = [
        {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
        {
            "name": "action",
            "in": "path",
            "required": True,
            "schema": {"type": "string", "enum": ["enable", "disable", "open", "close", "auto"]},
        },
    ]
    return {
        "openapi": "3.0.3",
        "info": {"title": "sms-router sidecar", "version": "1"},
        "paths": {
            "/v1/messages": {
                "post": _op(
                    "Send a message",
                    "Per-recipient outcomes",
                    ("400", "409", "422", "503"),
                    body=True,
                )
            },
            "/v1/explain": {
                "post": _op(
                    "Rank providers for a message without sending",
                    "Ranking with reasons",
                    ("400", "422"),
                    body=True,
                )
            },
            "/v1/messages/{message_id}": {
                "get": {
                    **_op("A recent send's result and receipts", "The result", ()),
                    "parameters": [
                        {
                            "name": "message_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        }
                    ],
                    "responses": {
                        "200": {
                            "description": "The result, with each recipient's delivery",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/MessageStatus"}
                                }
                            },
                        },
                        "404": {"description": "Unknown id", "content": JSON_OBJECT},
                    },
                }
            },
            "/v1/providers": {"get": _op("Providers, breakers, rates", "Providers", ())},
            "/v1/admin/providers/{name}/{action}": {
                "post": {
                    **_op(
                        "Enable/disable a provider or force its breaker",
                        "The provider",
                        ("401", "403"),
                    ),
                    "parameters": admin_params,
                    "security": [{"bearer": []}],
                }
            },
            "/livez": {"get": _op("Alive", "Alive", ())},
            "/readyz": {"get": _op("Ready to take traffic", "Ready", ("503",))},
        },
        "components": {
            "schemas": {
                "SendRequest": schema,
                **defs,
                "Delivery": DELIVERY_SCHEMA,
                "Receipt": RECEIPT,
                "MessageStatus": MESSAGE_STATUS,
                "Error": {
                    "type": "object",
                    "required": ["error", "detail"],
                    "properties": {"error": {"type": "string"}, "detail": {}},
                },
            },
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
