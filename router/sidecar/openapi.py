"""The sidecar's OpenAPI document: request and response bodies from the models that read and
write them (:mod:`router.sidecar.schemas`), every error response documented."""

from __future__ import annotations

from functools import cache
from typing import Any

from router.sidecar.routes.providers import ADMIN_ACTIONS
from router.sidecar.schemas import (
    REF,
    BroadcastJob,
    BroadcastRequest,
    BroadcastResults,
    ErrorBody,
    ExplanationBody,
    HealthStatus,
    ProviderInfo,
    SendRequest,
    delivery_schemas,
    model_schemas,
    result_schemas,
)

ERROR = {"$ref": REF.format(model="ErrorBody")}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ERROR}}}


ERRORS = {
    "400": _error("The message itself is wrong (unknown scene, missing param, no route)."),
    "401": _error("Missing or wrong admin token."),
    "403": _error("Admin calls are disabled (no server.admin_token)."),
    "409": _error("Idempotency key reused for another payload, or still in progress."),
    "422": _error("The request body is not valid JSON for this schema."),
    "429": _error("Too many requests (reserved for rate limiting in front of the sidecar)."),
    "500": _error("A bug in sms-router, raised before anything was sent (nothing was sent)."),
    "503": _error(
        "Not ready, draining, or the state store is unreachable before sending (nothing was "
        "sent; retry with the same idempotency key)."
    ),
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(model=name)}


def _body(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_RECEIPTS = {"type": "array", "items": _ref("Receipt")}
# A result with what the status page adds: each recipient's delivery and own receipt, and the
# receipts that fit no single recipient.
MESSAGE_STATUS = {
    "allOf": [
        _ref("SendResult"),
        {
            "type": "object",
            "required": ["recipients", "unmatched_receipts"],
            "properties": {
                "recipients": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["delivery", "receipts"],
                        "properties": {
                            "delivery": {
                                "allOf": [_ref("Delivery")],
                                "nullable": True,
                                "description": "Delivery of one accepted recipient; null when "
                                "no provider accepted it. delivered/failed: its first final "
                                "receipt (pushed or pulled, counted once); pending: none yet; "
                                "ambiguous: a masked receipt fits it and another recipient of "
                                "the batch, or fits it but could not be matched (reason says "
                                "so); unknown: no receipt recorded and no record of sending "
                                "it to this number (the reason says why); not_supported: the "
                                "provider gives no receipts (e.g. Baofoo).",
                            },
                            "receipts": {
                                **_RECEIPTS,
                                "description": "the receipt that settled this recipient (0 or 1)",
                            },
                        },
                    },
                },
                "unmatched_receipts": {
                    **_RECEIPTS,
                    "description": "masked receipts fitting no recipient or several, never applied",
                },
            },
        },
    ]
}
PROVIDERS = {"type": "object", "additionalProperties": _ref("ProviderInfo")}


def _op(
    summary: str,
    ok: str,
    schema: str,
    codes: tuple[str, ...],
    body: bool = False,
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "responses": {"200": _body(ok, _ref(schema)), **{c: ERRORS[c] for c in codes}},
    }
    if body:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref("SendRequest")}},
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


def _path_params(*names: str, **enums: tuple[str, ...]) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": {"type": "string", **({"enum": list(enums[name])} if name in enums else {})},
        }
        for name in names
    ]


def _message_paths() -> dict[str, Any]:
    return {
        "/v1/messages": {
            "post": _op(
                "Send a message",
                "Per-recipient outcomes",
                "SendResult",
                ("400", "409", "422", "500", "503"),
                body=True,
            )
        },
        "/v1/explain": {
            "post": _op(
                "Rank providers for a message without sending",
                "Ranking with reasons",
                "ExplanationBody",
                ("400", "422"),
                body=True,
            )
        },
        "/v1/messages/{message_id}": {
            "get": {
                "summary": "A recent send's result and receipts",
                "parameters": _path_params("message_id"),
                "responses": {
                    "200": _body("The result, with each recipient's delivery", MESSAGE_STATUS),
                    "404": _error("Unknown id"),
                },
            }
        },
    }


def _broadcast_paths() -> dict[str, Any]:
    job = _path_params("job_id")
    missing = _error("No such job (expired after broadcasts.ttl_s, or never created)")
    unavailable = _error("The state store is unreachable")
    return {
        "/v1/broadcasts": {
            "post": {
                "summary": "Start a broadcast job (the same idempotency key: the same job)",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("BroadcastRequest")}},
                },
                "parameters": _op("", "", "BroadcastJob", (), body=True)["parameters"],
                "responses": {
                    "202": _body("The job, started (or resumed)", _ref("BroadcastJob")),
                    **{c: ERRORS[c] for c in ("400", "409", "422", "500", "503")},
                },
            }
        },
        "/v1/broadcasts/{job_id}": {
            "get": {
                "summary": "A broadcast job's progress",
                "parameters": job,
                "responses": {
                    "200": _body("Recipients by status", _ref("BroadcastJob")),
                    "404": missing,
                    "503": unavailable,
                },
            }
        },
        "/v1/broadcasts/{job_id}/results": {
            "get": {
                "summary": "One page of a broadcast's recipients, in submission order",
                "parameters": [
                    *job,
                    *(
                        {
                            "name": name,
                            "in": "query",
                            "required": False,
                            "schema": {"type": "integer", "minimum": low, "maximum": high},
                        }
                        for name, low, high in (("offset", 0, 1_000_000), ("limit", 1, 10_000))
                    ),
                ],
                "responses": {
                    "200": _body("Recipients offset .. offset+limit", _ref("BroadcastResults")),
                    "400": ERRORS["400"],
                    "404": missing,
                    "503": unavailable,
                },
            }
        },
        "/v1/broadcasts/{job_id}/cancel": {
            "post": {
                "summary": "Cancel: chunks not started settle as cancelled",
                "parameters": job,
                "responses": {
                    "200": _body("The job", _ref("BroadcastJob")),
                    "404": missing,
                    "503": unavailable,
                },
            }
        },
    }


def _other_paths() -> dict[str, Any]:
    return {
        "/v1/providers": {
            "get": {
                "summary": "Providers, breakers, rates",
                "responses": {"200": _body("Providers by name", PROVIDERS)},
            }
        },
        "/v1/admin/providers/{name}/{action}": {
            "post": {
                **_op(
                    "Enable/disable a provider or force its breaker",
                    "The provider",
                    "ProviderInfo",
                    ("401", "403"),
                ),
                "parameters": _path_params("name", "action", action=ADMIN_ACTIONS),
                "security": [{"bearer": []}],
            }
        },
        "/livez": {"get": _op("Alive", "Alive", "HealthStatus", ())},
        "/readyz": {"get": _op("Ready to take traffic", "Ready", "HealthStatus", ("503",))},
    }


@cache
def openapi_document() -> dict[str, Any]:
    """The sidecar's OpenAPI 3.0 document; every schema is generated from the models that
    write (or read) the bodies, so the document cannot drift from the answers."""
    request = SendRequest.model_json_schema(ref_template=REF)
    schemas = {
        "SendRequest": request,
        **request.pop("$defs", {}),
        **result_schemas(),
        **delivery_schemas(),
        **model_schemas(ProviderInfo, ExplanationBody, HealthStatus, ErrorBody),
        **model_schemas(BroadcastRequest, BroadcastJob, BroadcastResults),
    }
    return {
        "openapi": "3.0.3",
        "info": {"title": "sms-router sidecar", "version": "1"},
        "paths": {**_message_paths(), **_broadcast_paths(), **_other_paths()},
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
