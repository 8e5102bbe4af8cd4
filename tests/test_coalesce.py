"""Coalescing (``coalesce_ms``): concurrent messages with the same text to one provider become
one request, and every message keeps its own outcomes, idempotency record and telemetry.
Real emulators over loopback."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from providers.base import DeliveryReport
from providers.emulators._common import FaultSettings
from router import Message, RecipientStatus, Router, SendResult
from router.events import EventBus, ReceiptReceived
from router.telemetry.metrics import MetricsSink
from tests.sandbox import RunningSandbox, only, plain_providers, running_sandbox

pytestmark = pytest.mark.anyio
V1, RL = "v1platform", "ronglian"


def coalescing(sandbox: RunningSandbox, *names: str, window_ms: float = 50, **kw: Any) -> Router:
    raw = plain_providers(sandbox.settings().providers)
    providers = {n: {**raw[n], "coalesce_ms": window_ms} for n in names}
    return only(sandbox, *names, providers=providers, **kw)


def mobile(i: int) -> str:
    return f"1380013{i:04d}"


async def send_all(router: Router, messages: list[Message]) -> list[SendResult]:
    results: list[SendResult | None] = [None] * len(messages)

    async def one(i: int) -> None:
        results[i] = await router.send(messages[i])

    async with anyio.create_task_group() as tg:
        for i in range(len(messages)):
            tg.start_soon(one, i)
    return [r for r in results if r is not None]


async def test_same_text_messages_share_one_request_and_keep_their_own_results(
    sandbox: RunningSandbox,
) -> None:
    sandbox.reset()
    registry = CollectorRegistry()
    sink = MetricsSink(registry, providers=["baofoo", V1, RL], scenes=[])
    router = coalescing(sandbox, V1, router_kw={"events": EventBus([sink])})
    messages = [
        Message(mobiles=[mobile(i)], content="maintenance tonight", idempotency_key=f"k{i}")
        for i in range(40)
    ]
    async with router:
        results = await send_all(router, messages)
        again = await router.send(messages[7])  # a replay: recorded, not resent
    assert len(sandbox.sends(V1)) == 1
    [numbers] = sandbox.mobiles_sent(V1)
    assert sorted(numbers) == sorted(mobile(i) for i in range(40))
    for i, result in enumerate(results):
        [r] = result.recipients
        assert r.status is RecipientStatus.ACCEPTED and r.provider == V1
        assert r.mobile.endswith(mobile(i))
    assert again.idempotent_replay and again.recipients[0].status is RecipientStatus.ACCEPTED
    sample = registry.get_sample_value
    assert sample("smsrouter_coalesced_requests_total", {"provider": V1}) == 1
    assert sample("smsrouter_coalesced_messages_total", {"provider": V1}) == 40


async def test_different_texts_and_repeated_numbers_never_share_a_request(
    sandbox: RunningSandbox,
) -> None:
    sandbox.reset()
    router = coalescing(sandbox, V1)
    messages = [
        Message(mobiles=[mobile(1)], content="text A"),
        Message(mobiles=[mobile(2)], content="text B"),
        Message(mobiles=[mobile(1)], content="text A"),  # same number, same text: 2nd request
    ]
    async with router:
        results = await send_all(router, messages)
    assert all(r.ok for r in results)
    sent = sandbox.mobiles_sent(V1)
    assert len(sent) == 3
    assert all(len(numbers) == len(set(numbers)) for numbers in sent)


async def test_ronglian_merges_only_same_template_and_datas(sandbox: RunningSandbox) -> None:
    sandbox.reset()
    router = coalescing(sandbox, RL)
    messages = [
        Message(mobiles=[mobile(i)], scene="login_code", params={"code": code})
        for i, code in enumerate(["1111", "1111", "2222", "1111"])
    ]
    async with router:
        results = await send_all(router, messages)
    assert all(r.ok for r in results)
    sent = sorted(sorted(n) for n in sandbox.mobiles_sent(RL))
    assert sent == [[mobile(0), mobile(1), mobile(3)], [mobile(2)]]


async def test_one_bad_number_does_not_fail_the_messages_merged_with_it(
    sandbox: RunningSandbox,
) -> None:
    """The v1 platform refuses a whole request for one bad number: nothing was sent, so each
    merged message is sent alone, and only the bad one is refused."""
    sandbox.reset()
    sandbox.state(V1).set_faults(FaultSettings(reject_mobiles=[mobile(3)]))
    try:
        router = coalescing(sandbox, V1)
        messages = [Message(mobiles=[mobile(i)], content="notice") for i in range(6)]
        async with router:
            results = await send_all(router, messages)
    finally:
        sandbox.state(V1).set_faults(FaultSettings())
    statuses = [r.recipients[0].status for r in results]
    assert (
        statuses
        == [RecipientStatus.ACCEPTED] * 3
        + [RecipientStatus.REJECTED]
        + [RecipientStatus.ACCEPTED] * 2
    )
    sent = sandbox.mobiles_sent(V1)
    assert len(sent) == 1 + 6  # the refused merged request, then one per message
    accepted = [n for req in sandbox.sends(V1)[1:] for n in [req.fields["mobiles"]]]
    assert len(accepted) == 6


async def test_a_full_request_goes_at_once_and_the_rest_start_another(
    sandbox: RunningSandbox,
) -> None:
    sandbox.reset()
    raw = plain_providers(sandbox.settings().providers)
    router = only(sandbox, V1, providers={V1: {**raw[V1], "coalesce_ms": 1000, "max_batch": 10}})
    messages = [Message(mobiles=[mobile(i)], content="full") for i in range(20)]
    with anyio.fail_after(0.9):  # two full requests: no 1-second window was waited for
        async with router:
            results = await send_all(router, messages)
    assert all(r.ok for r in results)
    assert sorted(len(n) for n in sandbox.mobiles_sent(V1)) == [10, 10]


async def test_a_message_cut_short_in_a_merged_request_ends_unknown_and_is_never_resent(
    sandbox: RunningSandbox,
) -> None:
    """The provider takes the request and hangs: every merged message may have been sent."""
    sandbox.reset()
    sandbox.state(V1).set_faults(
        FaultSettings(timeout_rate=1.0, timeout_after_accept=True, hang_s=2)
    )
    try:
        router = coalescing(sandbox, V1, RL, send_deadline_s=0.5)
        messages = [Message(mobiles=[mobile(i)], content="hang") for i in range(5)]
        async with router:
            results = await send_all(router, messages)
    finally:
        sandbox.state(V1).set_faults(FaultSettings())
    assert [r.recipients[0].status for r in results] == [RecipientStatus.UNKNOWN] * 5
    assert len(sandbox.sends(V1)) == 1
    assert sandbox.sends(RL) == []


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.lists(
        st.tuples(
            st.lists(st.integers(0, 7), min_size=1, max_size=4, unique=True),
            st.sampled_from(["a", "b"]),
        ),
        min_size=1,
        max_size=12,
    ),
    st.integers(2, 6),
)
def test_any_mix_of_messages_keeps_every_recipient_exactly_once(
    specs: list[tuple[list[int], str]], limit: int
) -> None:
    """Whatever messages arrive together: each recipient of each message is accepted exactly
    once, no request repeats a number or exceeds the limit, and requests carry only one text."""

    async def run(box: RunningSandbox) -> list[SendResult]:
        raw = plain_providers(box.settings().providers)
        router = only(box, V1, providers={V1: {**raw[V1], "coalesce_ms": 30, "max_batch": limit}})
        messages = [Message(mobiles=[mobile(i) for i in m], content=t) for m, t in specs]
        async with router:
            return await send_all(router, messages)

    with running_sandbox() as box:
        results = anyio.run(run, box)
        requests = box.sends(V1)
    for (numbers, _), result in zip(specs, results, strict=True):
        assert [r.status for r in result.recipients] == [RecipientStatus.ACCEPTED] * len(numbers)
    sent = [str(r.fields["mobiles"]).split(",") for r in requests]
    assert all(len(n) == len(set(n)) and len(n) <= limit for n in sent)
    assert sorted(m[-11:] for n in sent for m in n) == sorted(
        mobile(i) for numbers, _ in specs for i in numbers
    )
    texts = {str(r.fields["content"]) for r in requests}
    assert len(texts) <= 2


async def test_masked_receipts_of_a_coalesced_request_settle_each_message_and_link_its_send(
    sandbox: RunningSandbox,
) -> None:
    """The v1 pull masks numbers and names the request's taskId, shared by every merged
    message: the router must remember all their numbers under it (not the last message's
    alone), and link each receipt to its own send."""
    sandbox.reset()
    state: Any = sandbox.state(V1)
    state.callback_url, state.drop_pushes, state.receipt_delay_s = None, True, 0.0
    state.undeliverable = {mobile(2)}
    seen: list[ReceiptReceived] = []

    class Sink:
        def handle(self, event: object) -> None:
            if isinstance(event, ReceiptReceived):
                seen.append(event)

    router = coalescing(sandbox, V1, receipt_poll_s=0, router_kw={"events": EventBus([Sink()])})
    messages = [Message(mobiles=[mobile(i)], content="receipts") for i in range(3)]
    async with router:
        results = await send_all(router, messages)
        [task] = {r.recipients[0].provider_message_id for r in results}
        assert task is not None and len(sandbox.sends(V1)) == 1
        reports: list[DeliveryReport] = []
        with anyio.fail_after(5):
            while len(reports) < 3:
                reports += await router.runtimes[V1].pull_reports()
        assert all("*" in r.mobile for r in reports)  # masked
        await router.record_receipts(reports)
        statuses = [(await router.delivery_status(V1, task, mobile(i))).status for i in range(3)]
    assert statuses == ["delivered", "delivered", "failed"]
    assert all(e.matched for e in seen)
    assert sorted(e.send_id or "" for e in seen) == sorted(r.message_id for r in results)
