"""Input that must not corrupt outcomes: odd digits, one-shot iterables, blank or oversized
text and unencodable characters either are refused as a MessageError before anything is sent,
or every recipient ends accounted for exactly once. Checked against the real emulators."""

from __future__ import annotations

import sys
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import anyio
import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from policies.base import BreakerState
from providers.baofoo import BaofooProvider
from providers.base import Batch, ErrorClass, FaultKind
from providers.wire import WireRequest
from router import Message, RecipientStatus, Router
from router.errors import (
    EmptyContentError,
    InvalidMobileError,
    MessageError,
    MessageTooLargeError,
)
from router.mobile import normalise
from router.sidecar.app import create_app
from router.state.base import fingerprint
from tests.sandbox import RunningSandbox, only

OTP = {"code": "123456"}
PROVIDERS = ("baofoo", "v1platform", "ronglian")
PROPERTY = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# The zero of every Unicode decimal digit script (Arabic-Indic, Devanagari, full-width, ...).
ZEROS = [c for c in range(sys.maxunicode + 1) if unicodedata.decimal(chr(c), None) == 0]
SEPARATORS = ["", " ", "-", "\u00a0", "\u3000", "\u2009", "\u2010", "\u2013", "\u2212", "\uff0d"]


@pytest.fixture(autouse=True)
def _clean(sandbox: RunningSandbox) -> None:
    sandbox.reset()


def nothing_moved(router: Router, sandbox: RunningSandbox) -> None:
    for name in PROVIDERS:
        breaker = router.breaker(name)
        assert breaker.state is BreakerState.CLOSED, name
        assert breaker.failure_rate() == 0, name
        assert sandbox.sends(name) == [], name


mainland = st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True)


@st.composite
def transliterated(draw: st.DrawFn, ascii_mobile: str) -> str:
    """``ascii_mobile`` with each digit in a drawn script and drawn separators between."""
    out = []
    for digit in ascii_mobile:
        zero = draw(st.sampled_from(ZEROS))
        out.append(chr(zero + int(digit)) + draw(st.sampled_from(SEPARATORS)))
    prefix = draw(st.sampled_from(["", "+86", "\uff0b86", "\uff0b\uff18\uff16 ", "0086"]))
    return prefix + "".join(out)


# -- 1. every digit script is one recipient in ASCII ---------------------------------------


@given(data=st.data(), ascii_mobile=mainland)
def test_any_digit_script_normalises_like_ascii(data: st.DataObject, ascii_mobile: str) -> None:
    written = data.draw(transliterated(ascii_mobile))
    try:
        expected = normalise(ascii_mobile)
    except InvalidMobileError:
        with pytest.raises(InvalidMobileError):
            normalise(written)
        return
    got = normalise(written)
    assert got == expected, written
    assert got.e164.isascii() and got.national.isascii() and got.national.isdigit()


@pytest.mark.parametrize(
    "written",
    ["138\uff10\uff10\uff11\uff13\uff18\uff10\uff10\uff10", "\uff0b86 138\u30000013\u20138000"],
)
def test_half_full_width_and_unicode_separators(written: str) -> None:
    assert normalise(written).e164 == "+8613800138000"


@PROPERTY
@given(data=st.data())
def test_one_recipient_and_one_request_whatever_the_script(
    sandbox: RunningSandbox, data: st.DataObject
) -> None:
    sandbox.reset()
    forms = ["13800138000", *(data.draw(transliterated("13800138000")) for _ in range(3))]

    async def run() -> list[Any]:
        async with only(sandbox, "baofoo") as router:
            result = await router.send(Message(mobiles=forms, scene="login_code", params=OTP))
            return list(result.recipients)

    recipients = anyio.run(run)
    assert len(recipients) == len(forms)
    assert {r.normalised for r in recipients} == {"+8613800138000"}
    assert {r.status for r in recipients} == {RecipientStatus.ACCEPTED}
    [request] = sandbox.sends("baofoo")
    assert request.fields["mobile"] == "13800138000"


# -- 2. mobiles is read exactly once ---------------------------------------------------------

NUMBERS = ["13800000001", "13800000002", "13800000003"]
ITERABLES: dict[str, Callable[[], Iterable[str]]] = {
    "generator": lambda: (m for m in NUMBERS),
    "set": lambda: set(NUMBERS),
    "dict keys": lambda: dict.fromkeys(NUMBERS).keys(),
    "map": lambda: map(str.strip, NUMBERS),
    "iterator": lambda: iter(NUMBERS),
}


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ITERABLES)
async def test_any_iterable_of_mobiles_loses_nobody(sandbox: RunningSandbox, kind: str) -> None:
    message = Message(
        mobiles=ITERABLES[kind](), scene="login_code", params=OTP, idempotency_key=f"it-{kind}"
    )
    assert sorted(message.mobiles) == NUMBERS
    assert fingerprint(message) == fingerprint(message)  # reading it again changes nothing
    async with only(sandbox, "baofoo") as router:
        result = await router.send(message)
    assert sorted(r.mobile for r in result.recipients) == NUMBERS
    assert result.ok
    assert sorted(m for batch in sandbox.mobiles_sent("baofoo") for m in batch) == NUMBERS


def test_mobiles_must_be_strings_in_a_collection() -> None:
    with pytest.raises(MessageError, match="not one string"):
        Message(mobiles="13800138000", content="hi")
    with pytest.raises(MessageError, match=r"mobiles\[1\] is a int"):
        Message(mobiles=["13800138000", 13800138001], content="hi")  # type: ignore[list-item]


# -- 3. blank text never reaches a provider ----------------------------------------------------


@pytest.mark.anyio
async def test_blank_messages_are_refused_and_move_no_breaker(sandbox: RunningSandbox) -> None:
    base = sandbox.settings()
    templates = {k: v.model_dump() for k, v in base.templates.items()}
    templates["bare"] = {"content": "{code}", "providers": {"baofoo": {}}}
    blanks = [
        Message(mobiles=["13800138000"], content=""),
        Message(mobiles=["13800138000"], content="   "),
        Message(mobiles=["13800138000"], content="\n\t\u3000"),
        Message(mobiles=["13800138000"], scene="bare", params={"code": " "}),
        Message(mobiles=["13800138000"], scene="bare", params={"code": ""}),
    ]
    async with Router(sandbox.settings(templates=templates)) as router:
        for message in blanks:
            with pytest.raises(EmptyContentError, match=r"blank|empty"):
                await router.send(message)
        nothing_moved(router, sandbox)


# -- 5. size limits -----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_oversized_params_and_renderings_are_refused(sandbox: RunningSandbox) -> None:
    async with only(sandbox, "baofoo", "v1platform") as router:
        with pytest.raises(MessageTooLargeError, match="max_param_chars = 256"):
            await router.send(
                Message(mobiles=["13800138000"], scene="login_code", params={"code": "9" * 257})
            )
        with pytest.raises(MessageTooLargeError, match="max_rendered_chars = 1000"):
            await router.send(Message(mobiles=["13800138000"], content="x" * 1001))
        ok = await router.send(Message(mobiles=["13800138000"], content="x" * 900))
        assert ok.ok
    sandbox.reset()
    limits = {"max_param_chars": 4, "max_rendered_chars": 30}
    async with only(sandbox, "baofoo", limits=limits) as router:
        with pytest.raises(MessageTooLargeError, match=r"'code'.*6 characters"):
            await router.send(Message(mobiles=["13800138000"], scene="login_code", params=OTP))
        nothing_moved(router, sandbox)


@pytest.mark.anyio
async def test_the_sidecar_answers_400_for_oversized_and_blank(sandbox: RunningSandbox) -> None:
    async with only(sandbox, "baofoo") as router:
        app = create_app(router, CollectorRegistry())
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sidecar") as client:
            big = {"mobiles": ["13800138000"], "scene": "login_code", "params": {"code": "1" * 300}}
            blank = {"mobiles": ["13800138000"], "content": " "}
            for body in (big, blank):
                answer = await client.post("/v1/messages", json=body)
                assert answer.status_code == 400, answer.text
                assert answer.json()["error"] == "bad_message"
        nothing_moved(router, sandbox)


# -- 6. a request that cannot be built fails its batch only -----------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("names", "message"),
    [
        (("baofoo", "v1platform"), Message(mobiles=["13800138000"], content="hi \ud800 there")),
        (("ronglian",), Message(["13800138000"], scene="login_code", params={"code": "\udfff"})),
        (("baofoo",), Message(["13800138000"], scene="login_code", params={"code": "\ud83d"})),
    ],
)
async def test_unencodable_text_is_a_rejected_message_fault(
    sandbox: RunningSandbox, names: tuple[str, ...], message: Message
) -> None:
    async with only(sandbox, *names) as router:
        result = await router.send(message)
        [r] = result.recipients
        assert r.status is RecipientStatus.REJECTED
        [attempt] = r.attempts  # a message fault never fails over
        assert attempt.provider == names[0]
        assert attempt.fault is not None
        assert attempt.fault.kind is FaultKind.MESSAGE
        assert attempt.fault.error_class is ErrorClass.INVALID_REQUEST
        assert "cannot be encoded" in (r.error or "")
        nothing_moved(router, sandbox)


class _BrokenForOne(BaofooProvider):
    """A real Baofoo adapter whose request builder fails for one mobile (an adapter bug)."""

    def build_request(self, batch: Batch) -> WireRequest:
        if any(m.national == "13800000002" for m in batch.mobiles):
            raise RuntimeError("adapter bug")
        return super().build_request(batch)


@pytest.mark.anyio
async def test_a_batch_that_cannot_be_built_does_not_abort_the_others(
    sandbox: RunningSandbox,
) -> None:
    base = sandbox.settings()
    providers = {name: {**raw, "max_batch": 1} for name, raw in base.providers.items()}
    router_settings = sandbox.settings(providers=providers)
    adapter = _BrokenForOne("baofoo", router_settings.provider_settings["baofoo"])  # type: ignore[arg-type]
    async with Router(router_settings, providers={"baofoo": adapter}) as router:
        result = await router.send(Message(mobiles=NUMBERS, scene="login_code", params=OTP))
        statuses = {r.mobile: r.status for r in result.recipients}
        assert router.breaker("baofoo").failure_rate() == 0
    assert statuses == {
        "13800000001": RecipientStatus.ACCEPTED,
        "13800000002": RecipientStatus.REJECTED,
        "13800000003": RecipientStatus.ACCEPTED,
    }
    [bad] = [r for r in result.recipients if r.mobile == "13800000002"]
    assert bad.attempts[0].fault is not None
    assert bad.attempts[0].fault.error_class is ErrorClass.INVALID_REQUEST
    assert "RuntimeError" in (bad.error or "")
    assert sorted(m for b in sandbox.mobiles_sent("baofoo") for m in b) == [
        "13800000001",
        "13800000003",
    ]


# Any text, lone surrogates and control characters included.
ODD = ["\ud800", "\udbff", "\udc00", "\udfff", "\x00", "{", "}", " ", "\u3000", "码"]
any_text = st.lists(st.one_of(st.sampled_from(ODD), st.characters(codec=None)), max_size=40).map(
    "".join
)


@settings(PROPERTY, max_examples=80)
@given(
    content=st.none() | any_text,
    code=any_text,
    mobiles=st.lists(
        st.sampled_from([*NUMBERS, "12345", "\ud800", "1380000000\u0663"]), min_size=1
    ),
    enabled=st.sampled_from([PROVIDERS, ("baofoo",), ("v1platform",), ("ronglian",)]),
)
def test_any_text_is_refused_or_fully_accounted_for(
    sandbox: RunningSandbox,
    content: str | None,
    code: str,
    mobiles: list[str],
    enabled: tuple[str, ...],
) -> None:
    sandbox.reset()
    if content is None:
        message = Message(mobiles=mobiles, scene="login_code", params={"code": code})
    else:
        message = Message(mobiles=mobiles, content=content)

    async def run() -> list[Any] | MessageError:
        async with only(sandbox, *enabled) as router:
            try:
                result = await router.send(message)
            except MessageError as exc:
                return exc
            return list(result.recipients)

    outcome = anyio.run(run)
    if isinstance(outcome, MessageError):
        event(f"refused: {type(outcome).__name__}")
        assert all(sandbox.sends(name) == [] for name in PROVIDERS)
        return
    assert Counter(r.mobile for r in outcome) == Counter(mobiles)
    for r in outcome:
        assert r.status is not None
        for attempt in r.attempts:
            if (
                attempt.fault is not None
                and attempt.fault.error_class is ErrorClass.INVALID_REQUEST
            ):
                event("unencodable batch rejected")
                assert attempt.fault.kind is FaultKind.MESSAGE
        event(f"status: {r.status.value}")
    sent = [m for name in PROVIDERS for batch in sandbox.mobiles_sent(name) for m in batch]
    assert all(m.isascii() and m.isdigit() for m in sent)
