"""The one wire shape of a SendResult (router.state.codec): idempotency records written before
it still read back, and the API body derived from it is the body the API always gave."""

from __future__ import annotations

from dataclasses import replace

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from providers.base import ErrorClass, Fault, FaultKind
from router.model import Attempt, RecipientOutcome, RecipientStatus, SendResult
from router.sidecar.schemas import result_json
from router.state.codec import decode_result, encode_result

RESULT = SendResult(
    "m-1",
    (
        RecipientOutcome(
            "13800138000",
            "+8613800138000",
            RecipientStatus.ACCEPTED,
            "ronglian",
            "sid-9",
            (
                Attempt(
                    "v1platform",
                    "rejected",
                    Fault(FaultKind.PROVIDER, ErrorClass.HTTP_5XX, "E500", "upstream down"),
                    "req-1",
                ),
                Attempt("ronglian", "accepted", None, "req-2"),
            ),
        ),
        RecipientOutcome("12345", None, RecipientStatus.INVALID, error="not a mobile number"),
    ),
    panic=True,
    recorded=False,
)

# Written by the hand-written encode_result this codec replaced (faults as positional lists).
# Records live for the idempotency TTL (24 h), so they are in Redis across a deploy.
OLD_PAYLOAD = (
    b'{"message_id":"m-1","panic":true,"recipients":[{"mobile":"13800138000",'
    b'"normalised":"+8613800138000","status":"accepted","provider":"ronglian",'
    b'"provider_message_id":"sid-9","error":null,"attempts":[{"provider":"v1platform",'
    b'"verdict":"rejected","request_id":"req-1","fault":["provider","http_5xx","E500",'
    b'"upstream down"]},{"provider":"ronglian","verdict":"accepted","request_id":"req-2",'
    b'"fault":null}]},{"mobile":"12345","normalised":null,"status":"invalid","provider":null,'
    b'"provider_message_id":null,"error":"not a mobile number","attempts":[]}]}'
)

# What POST /v1/messages answered for RESULT with the hand-written result_json.
OLD_API_BODY = {
    "message_id": "m-1",
    "ok": False,
    "idempotent_replay": False,
    "panic": True,
    "recorded": False,
    "counts": {"accepted": 1, "invalid": 1},
    "recipients": [
        {
            "mobile": "13800138000",
            "normalised": "+8613800138000",
            "status": "accepted",
            "provider": "ronglian",
            "provider_message_id": "sid-9",
            "error": None,
            "attempts": [
                {
                    "provider": "v1platform",
                    "verdict": "rejected",
                    "error_class": "http_5xx",
                    "code": "E500",
                },
                {"provider": "ronglian", "verdict": "accepted", "error_class": None, "code": None},
            ],
        },
        {
            "mobile": "12345",
            "normalised": None,
            "status": "invalid",
            "provider": None,
            "provider_message_id": None,
            "error": "not a mobile number",
            "attempts": [],
        },
    ],
}


def test_a_record_of_the_old_codec_still_decodes() -> None:
    # A record read back is a replay, and recorded: it came from the store.
    assert decode_result(OLD_PAYLOAD) == replace(RESULT, idempotent_replay=True, recorded=True)
    assert decode_result(OLD_PAYLOAD, replay=False) == replace(RESULT, recorded=True)


def test_a_new_record_round_trips() -> None:
    payload = encode_result(RESULT)
    assert decode_result(payload) == replace(RESULT, idempotent_replay=True, recorded=True)


def test_a_record_holds_the_result_not_its_hand_over() -> None:
    stored = orjson.loads(encode_result(RESULT))
    assert "idempotent_replay" not in stored
    assert "recorded" not in stored
    fault = stored["recipients"][0]["attempts"][0]["fault"]
    assert fault == {"kind": "provider", "error_class": "http_5xx", "code": "E500",
                     "detail": "upstream down"}  # fmt: skip


@pytest.mark.parametrize(
    "payload", [b"{}", b"[]", b'{"message_id":"m","panic":false,"recipients":[{"mobile":1}]}']
)
def test_a_corrupt_record_is_refused(payload: bytes) -> None:
    with pytest.raises(ValidationError):
        decode_result(payload)


def test_the_api_body_is_the_one_it_always_was() -> None:
    assert result_json(RESULT) == OLD_API_BODY
    replayed = result_json(decode_result(OLD_PAYLOAD))
    assert replayed == {**OLD_API_BODY, "idempotent_replay": True, "recorded": True}


_text = st.text(max_size=12)
_maybe = st.none() | _text
_faults = st.builds(Fault, st.sampled_from(FaultKind), st.sampled_from(ErrorClass), _maybe, _text)
_attempts = st.builds(Attempt, _text, _text, st.none() | _faults, _maybe)
_outcomes = st.builds(
    RecipientOutcome,
    _text,
    _maybe,
    st.sampled_from(RecipientStatus),
    _maybe,
    _maybe,
    st.lists(_attempts, max_size=3).map(tuple),
    _maybe,
)


@settings(max_examples=200)
@given(
    st.builds(SendResult, _text, st.lists(_outcomes, max_size=3).map(tuple), panic=st.booleans())
)
def test_any_result_round_trips_through_a_record(result: SendResult) -> None:
    """Fields left out at their default come back as that default: every field of every
    result survives (the compact record of 2026-12-04 drops defaults)."""
    assert decode_result(encode_result(result), replay=False) == result
