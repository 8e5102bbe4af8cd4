"""Delivery status per recipient: one recipient of one provider message, one final status,
counted once, whatever path (push with the full number, pull with a masked one), order or
instance the receipts come by. Real emulators over loopback, a real redis-server."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from providers.base import DeliveryReport, DeliveryStatus
from providers.emulators.server import ThreadedServer
from router import Message, RecipientStatus, Router
from router.events import EventBus
from router.sidecar.app import create_app
from router.telemetry.metrics import MetricsSink
from tests.redis_server import redis_server
from tests.sandbox import RunningSandbox, only
from tests.sidecar_process import sidecar

if TYPE_CHECKING:
    from router.receipts import Delivery

# Plain strings (DeliveryState is a StrEnum): this file must import against the old code too.
pytestmark = pytest.mark.anyio
Serve = Callable[[Any], ThreadedServer]
V1 = "v1platform"
OTP = {"scene": "login_code", "params": {"code": "2718"}}
FINAL = {"delivered", "failed"}


@dataclass
class Receiver:
    """A push endpoint that only records: the test decides which instance gets each push."""

    got: list[tuple[bytes, str]] = field(default_factory=list)

    def app(self) -> Starlette:
        async def receive(request: Request) -> Response:
            self.got.append((await request.body(), request.headers.get("content-type", "")))
            return Response(status_code=200)

        return Starlette(routes=[Route("/status", receive, methods=["POST"])])

    async def wait_for(self, count: int) -> None:
        with anyio.fail_after(5):
            while len(self.got) < count:  # noqa: ASYNC110 - filled from the server thread
                await anyio.sleep(0.01)


def unmatched(registry: CollectorRegistry) -> float:
    value = registry.get_sample_value(
        "smsrouter_receipts_total", {"provider": V1, "status": "unmatched"}
    )
    return value or 0.0


def counted(registry: CollectorRegistry) -> tuple[float, float, float]:
    """(delivered receipts, failed receipts, receipt-delay observations) for v1."""

    def value(name: str, **labels: str) -> float:
        return registry.get_sample_value(name, {"provider": V1, **labels}) or 0.0

    return (
        value("smsrouter_receipts_total", status="delivered"),
        value("smsrouter_receipts_total", status="failed"),
        value("smsrouter_receipt_delay_seconds_count"),
    )


@asynccontextmanager
async def two_instances(
    sandbox: RunningSandbox, regs: tuple[CollectorRegistry, CollectorRegistry], tmp_path: Path
) -> AsyncIterator[tuple[Router, Router]]:
    """Two v1 routers sharing a fresh redis-server."""
    with redis_server(tmp_path) as server:
        state = {"backend": "redis", "redis_url": server.url, "prefix": "t:"}
        async with (
            v1_router(sandbox, regs[0], state=state) as a,
            v1_router(sandbox, regs[1], state=state) as b,
        ):
            yield a, b


def v1_router(sandbox: RunningSandbox, registry: CollectorRegistry, **overrides: Any) -> Router:
    sink = MetricsSink(
        registry, providers=list(sandbox.settings().providers), scenes=["login_code"]
    )
    return only(sandbox, V1, receipt_poll_s=0, router_kw={"events": EventBus([sink])}, **overrides)


async def send(router: Router, *mobiles: str) -> tuple[str, str]:
    """Send one v1 batch; (message id of the send, the batch's taskId)."""
    result = await router.send(Message(mobiles=list(mobiles), **OTP))  # type: ignore[arg-type]
    assert [r.status for r in result.recipients] == [RecipientStatus.ACCEPTED] * len(mobiles)
    [task] = {r.provider_message_id for r in result.recipients}
    assert task is not None
    return result.message_id, task


async def pull_all(router: Router, expected: int) -> list[DeliveryReport]:
    got: list[DeliveryReport] = []
    with anyio.fail_after(5):
        while len(got) < expected:
            got += await router.runtimes[V1].pull_reports()
    return got


async def status(router: Router, task: str, mobile: str) -> Delivery:
    return await router.delivery_status(V1, task, mobile)


@pytest.fixture
def v1(sandbox: RunningSandbox) -> Any:
    sandbox.reset()
    state: Any = sandbox.state(V1)
    state.callback_url, state.drop_pushes, state.receipt_delay_s = None, True, 0.0
    return state


# -- bug 1: per recipient, masked pulls matched to the batch's own numbers -------------------


async def test_each_recipient_of_a_batch_has_its_own_delivery(
    sandbox: RunningSandbox, v1: Any
) -> None:
    v1.undeliverable = {"13900139000"}
    async with v1_router(sandbox, CollectorRegistry()) as router:
        _, task = await send(router, "13800138000", "13900139000")
        pulled = await pull_all(router, 2)
        assert sorted(r.mobile for r in pulled) == ["138****8000", "139****9000"]  # masked
        await router.record_receipts(pulled)
        good = await status(router, task, "+8613800138000")
        bad = await status(router, task, "13900139000")  # any written form of the number
    assert (good.status, good.code) == ("delivered", "DELIVER")
    assert (bad.status, bad.code) == ("failed", "UNDELIV")


async def test_a_masked_receipt_fitting_two_recipients_is_ambiguous_never_applied(
    sandbox: RunningSandbox, v1: Any, serve: Serve
) -> None:
    registry = CollectorRegistry()
    async with v1_router(sandbox, registry) as router:
        # Same first three and last four digits: both read 138****8000 in a pull.
        _, task = await send(router, "13800008000", "13811118000")
        await router.record_receipts(await pull_all(router, 2))
        first = await status(router, task, "13800008000")
        second = await status(router, task, "13811118000")
        assert first.status == second.status == "ambiguous"
        assert first.reason == "masked number fits 2 recipients of the batch"
        assert router.receipts.receipts_for(V1, task, "+8613800008000") == []
        assert [why for _, why in router.receipts.unmatched(V1, task)] == [first.reason] * 2
        # Each pulled receipt once, not per fit, and apart from per-recipient counts.
        assert counted(registry) == (0.0, 0.0, 0.0)
        assert unmatched(registry) == 2.0
        # A pull is handed out once, so a repeat is only a duplicate once both slots are full.
        assert await router.record_receipts(await router.runtimes[V1].pull_reports()) == []
        # A later push names the number: that recipient settles, the other stays ambiguous.
        push = DeliveryReport(V1, task, "13811118000", DeliveryStatus.FAILED, "UNDELIV")
        assert await router.record_receipts([push]) == [push]
        settled = await status(router, task, "13811118000")
        still = await status(router, task, "13800008000")
    assert (settled.status, still.status) == ("failed", "ambiguous")
    assert counted(registry)[:2] == (0.0, 1.0)  # the recipient's one count


async def test_a_receipt_fitting_no_recipient_is_unmatched_and_still_reconciles(
    sandbox: RunningSandbox, v1: Any
) -> None:
    async with v1_router(sandbox, CollectorRegistry()) as router:
        _, task = await send(router, "13800138000")
        stray = DeliveryReport(V1, task, "137****0000", DeliveryStatus.DELIVERED, "DELIVER")
        assert await router.record_receipts([stray]) == [stray]  # counted once, as unmatched
        assert await router.record_receipts([stray]) == []
        assert [why for _, why in router.receipts.unmatched(V1, task)] == [
            "masked number fits no recipient of the batch"
        ]
        assert (await status(router, task, "13800138000")).status == "pending"
        assert router.receipts.get(V1, task) == [stray]  # any receipt proves acceptance


async def test_an_id_this_instance_has_no_record_of_reads_unknown_not_pending(
    sandbox: RunningSandbox, v1: Any
) -> None:
    async with v1_router(sandbox, CollectorRegistry()) as router:
        _, task = await send(router, "13800138000")
        assert (await status(router, task, "13800138000")).status == "pending"
        other = await status(router, "not-a-task-we-sent", "13800138000")
    assert other.status == "unknown"
    assert "no record of sending" in (other.reason or "")


async def test_a_number_the_id_did_not_go_to_reads_unknown_not_pending(
    sandbox: RunningSandbox, v1: Any
) -> None:
    async with v1_router(sandbox, CollectorRegistry()) as router:
        _, task = await send(router, "13800138000")
        stranger = await status(router, task, "13900139000")
    assert stranger.status == "unknown"
    assert "did not go to this number" in (stranger.reason or "")


async def test_an_instance_that_did_not_send_reads_pending_from_the_shared_store(
    sandbox: RunningSandbox, v1: Any, tmp_path: Path
) -> None:
    """Behind a load balancer the delivery question reaches either instance: the one that did
    not send reads the batch from the shared store, and tells pending from never sent."""
    regs = CollectorRegistry(), CollectorRegistry()
    async with two_instances(sandbox, regs, tmp_path) as (a, b):
        _, task = await send(a, "13800138000", "13900139000")
        before = await status(b, task, "13800138000")  # A's writer has not flushed yet
        await a.flush_shared()
        views = [(await status(b, task, m)).status for m in ("13800138000", "13900139000")]
        stranger = await status(b, task, "13700137000")
        never = await status(b, "not-a-task-anyone-sent", "13800138000")
    assert views == ["pending", "pending"]
    assert before.status == "unknown"  # the documented window: at most FLUSH_S
    assert stranger.status == "unknown" and "did not go to this number" in (stranger.reason or "")
    assert never.status == "unknown"
    assert "no record of sending this message id on any instance" in (never.reason or "")


async def test_a_masked_receipt_of_a_forgotten_batch_reads_ambiguous_and_the_router_warns(
    sandbox: RunningSandbox, v1: Any, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    """Past its bound the memory of sent ids forgets the oldest: a masked pull of a forgotten
    id cannot be matched, and the recipient it fits reads ambiguous with the reason, never
    "pending" as if no receipt had come. The operator is told the memory is full."""
    monkeypatch.setattr("router.intake.SENT_MEMORY", 1)
    registry = CollectorRegistry()
    async with v1_router(sandbox, registry) as router:
        _, forgotten = await send(router, "13800138000")
        with caplog.at_level("WARNING", logger="router.receipts"):
            _, kept = await send(router, "13900139000")
        [warning] = [r.getMessage() for r in caplog.records if r.name == "router.receipts"]
        assert "memory of sent message ids is full" in warning
        masked = DeliveryReport(V1, forgotten, "138****8000", DeliveryStatus.DELIVERED, "DELIVRD")
        assert await router.record_receipts([masked]) == [masked]
        fitting = await status(router, forgotten, "13800138000")
        other = await status(router, forgotten, "13700137000")  # the receipt does not fit it
        assert (await status(router, kept, "13900139000")).status == "pending"
    assert fitting.status == "ambiguous"
    assert "138****8000: delivered" in (fitting.reason or "")
    assert "does not remember the batch" in (fitting.reason or "")
    assert other.status == "unknown"
    assert unmatched(registry) == 1.0


# -- bug 2: push and pull of one recipient, counted once ---------------------------------


@pytest.mark.parametrize("pull_first", [False, True])
async def test_push_and_pull_of_one_recipient_count_once(
    sandbox: RunningSandbox, v1: Any, serve: Serve, pull_first: bool
) -> None:
    receiver = Receiver()
    v1.callback_url, v1.drop_pushes = f"{serve(receiver.app()).url}/status", False
    v1.undeliverable = {"13900139000"}
    registry = CollectorRegistry()
    async with v1_router(sandbox, registry) as router:
        _, task = await send(router, "13800138000", "13900139000")
        await receiver.wait_for(2)
        adapter: Any = router.providers[V1]
        pushed = [adapter.parse_status_push(body, ctype) for body, ctype in receiver.got]
        pulled = await pull_all(router, 2)
        assert {r.status_code for r in pushed} == {"DELIVRD", "UNDELIV"}
        assert {r.status_code for r in pulled} == {"DELIVER", "UNDELIV"}
        for batch in (pulled, pushed) if pull_first else (pushed, pulled):
            await router.record_receipts(batch)
        await router.record_receipts(pushed + pulled)  # everything again: changes nothing
        assert counted(registry) == (1.0, 1.0, 2.0)
        good = await status(router, task, "13800138000")
    assert (good.status, good.code) == (
        "delivered",
        "DELIVER" if pull_first else "DELIVRD",
    )


async def test_two_instances_sharing_redis_count_each_recipient_once(
    sandbox: RunningSandbox, v1: Any, serve: Serve, tmp_path: Path
) -> None:
    receiver = Receiver()
    v1.callback_url, v1.drop_pushes = f"{serve(receiver.app()).url}/status", False
    v1.undeliverable = {"13900139000"}
    regs = CollectorRegistry(), CollectorRegistry()
    async with two_instances(sandbox, regs, tmp_path) as (a, b):
        _, task = await send(a, "13800138000", "13900139000")
        await receiver.wait_for(2)
        adapter: Any = b.providers[V1]
        pushed = [adapter.parse_status_push(body, ctype) for body, ctype in receiver.got]
        # The pushes reach B (it did not send: full numbers need no memory of the batch),
        # the masked pulls reach A, both at once.
        pulled = await pull_all(a, 2)
        async with anyio.create_task_group() as tg:
            tg.start_soon(b.record_receipts, pushed)
            tg.start_soon(a.record_receipts, pulled)
        totals = [sum(c[i] for c in map(counted, regs)) for i in range(3)]
        assert totals[:2] == [1.0, 1.0]
        assert totals[2] <= 2.0  # a delay only where the send is known (A), never twice
        views = [
            (await status(x, task, m)).status
            for x in (a, b)
            for m in ("13800138000", "13900139000")
        ]
    assert views == ["delivered", "failed"] * 2


async def test_masked_pulls_taken_by_the_instance_that_did_not_send_still_settle(
    sandbox: RunningSandbox, v1: Any, tmp_path: Path
) -> None:
    """The v1 pull hands each receipt out once, to whichever instance polls. An instance that
    did not send the batch finds its numbers in the shared store (written by the sender), so
    the masked receipts settle on their recipients, for both instances, counted once."""
    v1.undeliverable = {"13900139000"}
    regs = CollectorRegistry(), CollectorRegistry()
    async with two_instances(sandbox, regs, tmp_path) as (a, b):
        _, task = await send(a, "13800138000", "13900139000")
        await a.flush_shared()  # what the background writer does within FLUSH_S
        pulled = await pull_all(b, 2)
        assert sorted(r.mobile for r in pulled) == ["138****8000", "139****9000"]
        assert len(await b.record_receipts(pulled)) == 2
        views = [
            (await status(x, task, m)).status
            for x in (a, b)
            for m in ("13800138000", "13900139000")
        ]
    assert views == ["delivered", "failed"] * 2
    assert unmatched(regs[0]) + unmatched(regs[1]) == 0.0
    totals = [sum(c[i] for c in map(counted, regs)) for i in range(2)]
    assert totals == [1.0, 1.0]


# -- bug 3: providers without receipts say so ---------------------------------------------


async def test_a_provider_without_receipts_says_not_supported(sandbox: RunningSandbox) -> None:
    sandbox.reset()
    async with only(sandbox, "baofoo", receipt_poll_s=0) as router:
        result = await router.send(Message(mobiles=["13800138000"], **OTP))  # type: ignore[arg-type]
        [r] = result.recipients
        assert (r.provider, r.status) == ("baofoo", RecipientStatus.ACCEPTED)
        assert r.provider_message_id is not None
        delivery = await router.delivery_status("baofoo", r.provider_message_id, "13800138000")
    assert (delivery.status, delivery.code, delivery.reason) == (
        "not_supported",
        None,
        "baofoo gives no delivery receipts",
    )


# -- the sidecar ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def running(sandbox: RunningSandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with sidecar(sandbox, tmp_path_factory.mktemp("per-recipient"), receipt_poll_s=0.3) as (
        url,
        _,
    ):
        yield url


def route_to(url: str, provider: str) -> None:
    for name in ("v1platform", "ronglian"):
        action = "enable" if name == provider else "disable"
        answer = httpx.post(
            f"{url}/v1/admin/providers/{name}/{action}",
            headers={"Authorization": "Bearer test-admin-token"},
            timeout=5,
        )
        assert answer.status_code == 200, answer.text


def message_status(url: str, message_id: str, settled: Callable[[dict[str, Any]], bool]) -> Any:
    deadline = time.monotonic() + 10
    while True:
        body = httpx.get(f"{url}/v1/messages/{message_id}", timeout=5).json()
        if settled(body) or time.monotonic() > deadline:
            return body
        time.sleep(0.1)


def test_the_sidecar_shows_each_recipients_own_delivery(
    sandbox: RunningSandbox, v1: Any, running: str
) -> None:
    v1.undeliverable = {"13900139000"}
    route_to(running, V1)
    sent = httpx.post(
        f"{running}/v1/messages",
        json={"mobiles": ["13800138000", "13900139000", "12345"], **OTP},
        timeout=10,
    ).json()
    body = message_status(
        running,
        sent["message_id"],
        lambda b: all(r["delivery"]["status"] != "pending" for r in b["recipients"][:2]),
    )
    good, bad, invalid = body["recipients"]
    assert good["delivery"] == {"status": "delivered", "code": "DELIVER", "reason": None}
    assert bad["delivery"] == {"status": "failed", "code": "UNDELIV", "reason": None}
    assert invalid["delivery"] is None  # never accepted: nothing to follow
    assert good["receipts"] == [{"status": "delivered", "code": "DELIVER", "mobile": "138****8000"}]
    assert bad["receipts"] == [{"status": "failed", "code": "UNDELIV", "mobile": "139****9000"}]
    assert body["unmatched_receipts"] == []
    document = httpx.get(f"{running}/openapi.json", timeout=5).json()
    states = document["components"]["schemas"]["Delivery"]["properties"]["status"]["enum"]
    assert set(states) == {
        "delivered",
        "failed",
        "pending",
        "ambiguous",
        "unknown",
        "not_supported",
    }


async def test_the_sidecar_says_not_supported_for_baofoo(sandbox: RunningSandbox) -> None:
    sandbox.reset()
    async with only(sandbox, "baofoo", receipt_poll_s=0) as router:
        transport = httpx.ASGITransport(app=create_app(router))  # the router is entered here
        async with httpx.AsyncClient(transport=transport, base_url="http://sidecar") as client:
            sent = (
                await client.post("/v1/messages", json={"mobiles": ["13800138000"], **OTP})
            ).json()
            body = (await client.get(f"/v1/messages/{sent['message_id']}")).json()
    [r] = body["recipients"]
    assert r["provider"] == "baofoo"
    assert r["delivery"] == {
        "status": "not_supported",
        "code": None,
        "reason": "baofoo gives no delivery receipts",
    }


async def test_a_message_another_instance_sent_is_not_called_unsent(
    sandbox: RunningSandbox, v1: Any, tmp_path: Path
) -> None:
    """The whole result is per instance: the other sidecar answers 404 without saying or
    implying that nothing was sent, and its delivery view still knows the recipient."""
    regs = CollectorRegistry(), CollectorRegistry()
    async with two_instances(sandbox, regs, tmp_path) as (a, b):
        message_id, task = await send(a, "13800138000")
        await a.flush_shared()
        transport = httpx.ASGITransport(app=create_app(b))
        async with httpx.AsyncClient(transport=transport, base_url="http://sidecar") as client:
            answer = await client.get(f"/v1/messages/{message_id}")
        delivery = await status(b, task, "13800138000")
    assert answer.status_code == 404
    assert answer.json()["error"] == "not_found"
    assert "does not mean it was not sent" in answer.json()["detail"]
    assert delivery.status == "pending"


# -- property: any interleaving of push, pull and duplicates -------------------------------

# Distinct masks (138****000i): every masked receipt fits exactly one recipient.
POOL = [f"138{i:04d}{i:04d}" for i in range(1, 5)]
receipt = st.tuples(
    st.integers(0, len(POOL) - 1),  # recipient
    st.sampled_from(["push", "push_e164", "pull"]),  # path and written form
    st.booleans(),  # delivered (a conflicting later receipt must not win)
    st.integers(0, 1),  # instance that receives it (pulls: the sending one, see below)
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    size=st.integers(1, len(POOL)),
    receipts=st.lists(receipt, max_size=16),
    shared=st.booleans(),
)
def test_any_interleaving_settles_each_recipient_once(
    sandbox: RunningSandbox,
    redis: str,
    size: int,
    receipts: list[tuple[int, str, bool, int]],
    shared: bool,
) -> None:
    sandbox.reset()
    mobiles = POOL[:size]
    receipts = [r for r in receipts if r[0] < size]
    registry = CollectorRegistry(), CollectorRegistry()

    async def run() -> list[list[Delivery]]:
        state: dict[str, Any] = {"backend": "memory"}
        if shared:
            state = {"backend": "redis", "redis_url": redis, "prefix": f"p{time.time_ns()}:"}
        views: list[list[Delivery]] = []
        async with (
            v1_router(sandbox, registry[0], state=state) as a,
            v1_router(sandbox, registry[1], state=state) as b,
        ):
            _, task = await send(a, *mobiles)
            await a.flush_shared()  # the batch's numbers, for B's masked pulls
            for who, path, delivered, instance in receipts:
                national = mobiles[who]
                written = {
                    "push": national,
                    "push_e164": f"+86{national}",
                    "pull": f"{national[:3]}****{national[-4:]}",
                }[path]
                code = ("DELIVER" if path == "pull" else "DELIVRD") if delivered else "UNDELIV"
                status_ = DeliveryStatus.DELIVERED if delivered else DeliveryStatus.FAILED
                report = DeliveryReport(V1, task, written, status_, code)
                # Sharing Redis, any receipt may reach either instance (B finds the batch's
                # numbers in the store); alone, A takes them all.
                target = b if shared and instance else a
                await target.record_receipts([report, report] if instance else [report])
                views.append([await status(a, task, m) for m in mobiles])
        return views

    views = anyio.run(run)
    first: dict[int, bool] = {}
    for who, _, delivered, _ in receipts:
        first.setdefault(who, delivered)
    # A final status never changes once set.
    for step, view in enumerate(views):
        for who, delivery in enumerate(view):
            if delivery.status in FINAL:
                assert all(later[who].status is delivery.status for later in views[step:])
    # Each recipient ends with the status of its first receipt, or pending.
    end = views[-1] if views else []
    for who, delivery in enumerate(end):
        expected = "pending" if who not in first else "delivered" if first[who] else "failed"
        assert delivery.status == expected, (who, receipts)
    # Counted exactly once per recipient with a receipt, across both instances.
    delivered_n = sum(counted(r)[0] for r in registry)
    failed_n = sum(counted(r)[1] for r in registry)
    assert (delivered_n, failed_n) == (
        sum(first.values()),
        sum(not d for d in first.values()),
    ), receipts


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("redis")) as server:
        yield server.url
