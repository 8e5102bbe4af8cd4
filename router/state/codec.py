"""The one wire shape of a :class:`~router.model.SendResult`: :data:`RESULT_ADAPTER`.

A pydantic ``TypeAdapter`` over the frozen dataclasses of :mod:`router.model` (and
:class:`providers.base.Fault`), so the dataclasses' own fields are the definition: nothing here
lists them again. Two users read it:

* the state store: :func:`encode_result` / :func:`decode_result` turn a result into the bytes of
  an idempotency record and back;
* the sidecar's JSON API (:mod:`router.sidecar.schemas`): it dumps results with the same adapter,
  hiding internal fields and adding computed ones, and its OpenAPI schemas are generated from
  the adapter's JSON schema.

Over the dataclasses rather than mirroring pydantic models: pydantic-core serialises and builds
the dataclasses directly, about 3x faster than the hand-written orjson codec before it, while
validating into a mirror model and copying it over costs several times more for a
100,000-recipient send.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson
from pydantic import TypeAdapter, ValidationError

from router.model import SendResult

RESULT_ADAPTER: TypeAdapter[SendResult] = TypeAdapter(SendResult)
# These describe one hand-over of a result, not the result: a record read back is a replay,
# and it is recorded because it was read from the store.
PER_HAND_OVER = frozenset({"idempotent_replay", "recorded"})
# Records written before this codec stored a fault as a positional list in this order;
# they live for the idempotency TTL (24 h), so a deploy must still read them.
_LEGACY_FAULT_ORDER = ("kind", "error_class", "code", "detail")


def encode_result(result: SendResult) -> bytes:
    """``result`` as an idempotency record's payload (JSON bytes). Fields at their default
    (no fault, no error, no panic) are left out, ~40 bytes of a 370-byte single-recipient
    record: ~4 MB over the memory store's 100,000 keys; decoding restores them."""
    return RESULT_ADAPTER.dump_json(result, exclude=set(PER_HAND_OVER), exclude_defaults=True)


def decode_result(payload: bytes, *, replay: bool = True) -> SendResult:
    """A payload of :func:`encode_result` (or of the hand-written codec before it) as the
    result it recorded; ``replay`` marks it as the answer to a repeated idempotency key."""
    try:
        result = RESULT_ADAPTER.validate_json(payload)
    except ValidationError:
        # Not worth a format version field: only pre-adapter records take this path, and
        # a payload that is neither shape fails validation again here.
        result = RESULT_ADAPTER.validate_python(_upgrade_legacy(orjson.loads(payload)))
    return replace(result, idempotent_replay=replay)


def _upgrade_legacy(data: Any) -> Any:
    """A pre-adapter payload in today's shape: faults were ``[kind, class, code, detail]``."""
    if not isinstance(data, dict):
        return data
    for recipient in data.get("recipients", ()):
        for attempt in recipient.get("attempts", ()) if isinstance(recipient, dict) else ():
            fault = attempt.get("fault") if isinstance(attempt, dict) else None
            if isinstance(fault, list):
                attempt["fault"] = dict(zip(_LEGACY_FAULT_ORDER, fault, strict=False))
    return data
