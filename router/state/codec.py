"""SendResult <-> bytes, for idempotency records shared through a store."""

from __future__ import annotations

from typing import Any

import orjson

from providers.base import ErrorClass, Fault, FaultKind
from router.model import Attempt, RecipientOutcome, RecipientStatus, SendResult


def encode_result(result: SendResult) -> bytes:
    return orjson.dumps(
        {
            "message_id": result.message_id,
            "panic": result.panic,
            "recipients": [_recipient(r) for r in result.recipients],
        }
    )


def _recipient(r: RecipientOutcome) -> dict[str, Any]:
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
                "request_id": a.request_id,
                "fault": None
                if a.fault is None
                else [a.fault.kind.value, a.fault.error_class.value, a.fault.code, a.fault.detail],
            }
            for a in r.attempts
        ],
    }


def decode_result(payload: bytes, *, replay: bool = True) -> SendResult:
    data = orjson.loads(payload)
    recipients = tuple(
        RecipientOutcome(
            mobile=r["mobile"],
            normalised=r["normalised"],
            status=RecipientStatus(r["status"]),
            provider=r["provider"],
            provider_message_id=r["provider_message_id"],
            attempts=tuple(
                Attempt(
                    a["provider"],
                    a["verdict"],
                    None
                    if a["fault"] is None
                    else Fault(
                        FaultKind(a["fault"][0]),
                        ErrorClass(a["fault"][1]),
                        a["fault"][2],
                        a["fault"][3],
                    ),
                    a["request_id"],
                )
                for a in r["attempts"]
            ),
            error=r["error"],
        )
        for r in data["recipients"]
    )
    return SendResult(data["message_id"], recipients, idempotent_replay=replay, panic=data["panic"])
