"""Every status the router reports is true: status from all attempts, half-open trials, store
faults (Redis killed or frozen mid-send), and telemetry that sees every send end.

Real emulators over loopback and a real redis-server; a frozen Redis is SIGSTOPped.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from policies.base import BreakerState
from providers.base import ErrorClass, Fault, FaultKind, Mobile, RecipientResult, Verdict
from providers.emulators._common import FaultSettings
from router import Message, RecipientStatus, RouterError, StateStoreError
from router.clock import FakeClock
from router.events import AttemptFinished, Event, EventBus, SendFinished
from router.recipients import Tracker
from router.sidecar.app import create_app
from router.telemetry.metrics import MetricsSink
from tests.redis_server import RedisServer, frozen, redis_server
from tests.sandbox import RunningSandbox, only, plain_providers

pytestmark = pytest.mark.anyio
OTP = {"code": "424242"}
PROVIDERS = ("baofoo", "v1platform", "ronglian")
MOBILE = Mobile("+8613800138000", 86, "13800138000", "CN")


@pytest.fixture(autouse=True)
def _clean(sandbox: RunningSandbox) -> None:
    sandbox.reset()


class Recorder:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def handle(self, event: Event) -> None:
        self.events.append(event)


def raw(sandbox: RunningSandbox, provider: str) -> dict[str, Any]:
    return plain_providers(sandbox.settings().providers)[provider]


def otp(mobiles: list[str], key: str | None = None, scene: str = "login_code") -> Message:
    return Message(mobiles=mobiles, scene=scene, params=OTP, idempotency_key=key)


def sent_to(sandbox: RunningSandbox, national: str) -> int:
    return sum(
        batch.count(national)
        for name in ("baofoo", "v1platform", "ronglian")
        for batch in sandbox.mobiles_sent(name)
    )


# -- status from every attempt -----------------------------------------------------------------

VERDICTS = st.sampled_from(["accepted", "rejected", "unknown", "message_fault"])


def _result(kind: str) -> RecipientResult:
    if kind == "accepted":
        return RecipientResult(MOBILE, Verdict.ACCEPTED, provider_message_id="m1")
    if kind == "unknown":
        fault = Fault(FaultKind.PROVIDER, ErrorClass.TIMEOUT, detail="timed out")
        return RecipientResult(MOBILE, Verdict.UNKNOWN, fault=fault)
    kind_of = FaultKind.MESSAGE if kind == "message_fault" else FaultKind.PROVIDER
    fault = Fault(kind_of, ErrorClass.REFUSED, code="9", detail="refused")
    return RecipientResult(MOBILE, Verdict.REJECTED, fault=fault)


@settings(max_examples=300, deadline=None)
@given(
    kinds=st.lists(VERDICTS, min_size=0, max_size=5),
    resend=st.booleans(),
    end=st.sampled_from(["exhausted", "deadline", "budget"]),
)
def test_final_status_is_derived_from_every_attempt(
    kinds: list[str], resend: bool, end: str
) -> None:
    """accepted if any attempt was; unknown if any may have been sent; rejected only when
    every attempt provably sent nothing, whatever ended the failover."""
    tracker = Tracker(MOBILE, "13800138000")
    recorded: list[str] = []
    for i, kind in enumerate(kinds):
        if tracker.status is not None:
            break
        tracker.record(f"p{i}", f"r{i}", _result(kind), resend_unknown=resend)
        recorded.append(kind)
    if tracker.status is None:
        if end == "exhausted":
            tracker.exhausted()
        elif end == "budget":
            tracker.exhausted("failover budget exhausted")
        else:
            tracker.deadline_passed()
    assert tracker.status is not None
    if "accepted" in recorded:
        assert tracker.status is RecipientStatus.ACCEPTED
    elif "unknown" in recorded:
        assert tracker.status is RecipientStatus.UNKNOWN, (recorded, tracker.error)
    elif recorded:
        assert tracker.status is RecipientStatus.REJECTED
    else:
        assert tracker.status in (RecipientStatus.REJECTED, RecipientStatus.UNROUTABLE)


async def test_at_least_once_an_unknown_then_a_refusal_is_unknown(
    sandbox: RunningSandbox,
) -> None:
    """Ronglian takes the message and hangs (unknown), v1 refuses the connection: the
    recipient may have been sent, so it must not be reported rejected. (Replay off: with it,
    Ronglian's same-reqId refusal settles the unknown; see test_replay_unknown.)"""
    sandbox.state("ronglian").set_faults(
        FaultSettings(timeout_rate=1.0, timeout_after_accept=True, hang_s=3)
    )
    sandbox.servers["v1platform"].stop()
    try:
        router = only(
            sandbox,
            "ronglian",
            "v1platform",
            unknown_outcomes="at_least_once",
            resilience={"replay_unknown": False},
            providers={
                "ronglian": {
                    **plain_providers(sandbox.settings().providers)["ronglian"],
                    "timeout_s": 0.3,
                }
            },
        )
        async with router:
            result = await router.send(otp(["13800138000"]))
    finally:
        sandbox.servers["v1platform"].start()
    [r] = result.recipients
    assert [a.verdict for a in r.attempts] == ["unknown", "rejected"]
    assert r.status is RecipientStatus.UNKNOWN
    assert r.provider == "ronglian"
    assert len(sandbox.sends("ronglian")) == 1


# -- half-open trials ------------------------------------------------------------------------------


async def test_recipients_behind_a_half_open_trial_wait_for_it(sandbox: RunningSandbox) -> None:
    """A recovering provider admits one trial batch; the others wait for it instead of being
    labelled unroutable, and go once it closes the breaker."""
    clock = FakeClock()
    breaker = {"consecutive_failures": 2, "open_s": 10, "jitter": 0.0}
    router = only(
        sandbox,
        "baofoo",
        resilience={"breaker": breaker},
        providers={
            "baofoo": {**plain_providers(sandbox.settings().providers)["baofoo"], "max_batch": 10}
        },
        router_kw={"clock": clock},
    )
    async with router:
        sandbox.state("baofoo").set_faults(FaultSettings(error_rate=1.0))
        for i in range(2):
            await router.send(otp([f"1390000000{i}"]))
        assert router.breaker("baofoo").state is BreakerState.OPEN
        sandbox.state("baofoo").set_faults(FaultSettings(latency_s=0.05))
        clock.advance(11)
        assert router.breaker("baofoo").state is BreakerState.HALF_OPEN
        result = await router.send(otp([f"137{i:08d}" for i in range(50)]))
    statuses = {r.status for r in result.recipients}
    assert statuses == {RecipientStatus.ACCEPTED}, [r.error for r in result.recipients][:3]
    assert router.breaker("baofoo").state is BreakerState.CLOSED


async def test_unroutable_says_why_and_only_when_nobody_can_carry_it(
    sandbox: RunningSandbox,
) -> None:
    router = only(sandbox, "baofoo")
    router.set_enabled("baofoo", False)
    async with router:
        result = await router.send(otp(["13800138000"]))
    [r] = result.recipients
    assert r.status is RecipientStatus.UNROUTABLE
    assert r.error is not None and "baofoo" in r.error


# -- store faults ------------------------------------------------------------------------------


def redis_settings(server: RedisServer, **extra: Any) -> dict[str, Any]:
    return {
        "backend": "redis",
        "redis_url": server.url,
        "breaker_sync_s": 0,
        "redis_timeout_s": 0.2,
        "clock_skew_s": 0.2,
        "commit_retry_s": 0.3,
        **extra,
    }


@pytest.mark.parametrize("persistent", [False, True], ids=["no-persistence", "aof"])
async def test_redis_dies_while_the_send_is_at_the_provider(
    sandbox: RunningSandbox, tmp_path: Path, persistent: bool
) -> None:
    """The provider accepted: the caller gets the real outcome (not a 503 'nothing was sent'),
    marked not recorded; once Redis is back a keyed retry replays and sends nothing."""
    sandbox.state("baofoo").set_faults(FaultSettings(latency_s=0.4))
    with redis_server(tmp_path, persistent=persistent) as server:
        router = only(sandbox, "baofoo", state=redis_settings(server))
        async with router:
            results: list[Any] = []

            async def send() -> None:
                results.append(await router.send(otp(["13800138001"], key="dies-1")))

            async with anyio.create_task_group() as tg:
                tg.start_soon(send)
                await anyio.sleep(0.2)  # reserved, now at the provider
                await anyio.to_thread.run_sync(server.stop)
            [first] = results
            assert first.recipients[0].status is RecipientStatus.ACCEPTED
            assert not first.recorded
            assert len(router.outbox) == 1
            await anyio.to_thread.run_sync(server.start)
            retry = await router.send(otp(["13800138001"], key="dies-1"))
    assert retry.idempotent_replay and retry.message_id == first.message_id
    assert sent_to(sandbox, "13800138001") == 1


async def test_a_frozen_redis_never_leaves_a_mobile_throttled_without_an_sms(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    """The throttle write times out, the send is refused (truthfully: nothing was sent), Redis
    resumes and applies the write late: the retry must still go."""
    scene = "login_code"
    with redis_server(tmp_path) as server:
        settings = only(sandbox, "baofoo").settings.templates[scene].model_dump()
        templates = {scene: {**settings, "throttle_s": 600}}
        router = only(sandbox, "baofoo", state=redis_settings(server), templates=templates)
        async with router:
            await router.send(otp(["13800138012"]))  # a pooled connection: writes go out
            with frozen(server), pytest.raises(StateStoreError, match="Nothing was sent"):
                await router.send(otp(["13800138002"]))
            # Resumed within the fence: the queued SET is applied now, marks and all.
            with anyio.fail_after(5):
                result = await router.send(otp(["13800138002"]))
    assert result.recipients[0].status is RecipientStatus.ACCEPTED
    assert sent_to(sandbox, "13800138002") == 1


async def test_a_reservation_that_timed_out_does_not_block_the_retry(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    with redis_server(tmp_path) as server:
        router = only(sandbox, "baofoo", state=redis_settings(server), send_deadline_s=10)
        async with router:
            await router.send(otp(["13800138013"], key="warm-up"))  # a pooled connection
            with frozen(server), pytest.raises(StateStoreError, match="Nothing was sent"):
                await router.send(otp(["13800138003"], key="frozen-reserve"))
            with anyio.fail_after(5):  # the lease is 15 s: waiting it out fails this
                result = await router.send(otp(["13800138003"], key="frozen-reserve"))
    assert result.recipients[0].status is RecipientStatus.ACCEPTED
    assert sent_to(sandbox, "13800138003") == 1


async def test_an_unexpected_error_after_reserving_releases_the_key(
    sandbox: RunningSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Anything raised before a request left gives the key back, as a RouterError."""
    async with only(sandbox, "baofoo") as router:
        original = router._prepare
        calls = {"n": 0}

        def broken(message: Message, *, require_route: bool = True) -> Any:
            calls["n"] += 1
            if calls["n"] == 1:
                raise KeyError("a bug")
            return original(message, require_route=require_route)

        monkeypatch.setattr(router, "_prepare", broken)
        with pytest.raises(RouterError, match="nothing was sent"):
            await router.send(otp(["13800138004"], key="bug-1"))
        with anyio.fail_after(5):
            result = await router.send(otp(["13800138004"], key="bug-1"))
    assert result.recipients[0].status is RecipientStatus.ACCEPTED


# -- telemetry follows the truth ---------------------------------------------------------------


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def test_refused_sends_are_counted_and_inflight_returns_to_zero(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    registry = CollectorRegistry()
    sink = MetricsSink(registry, providers=list(PROVIDERS), scenes=["login_code"])
    with redis_server(tmp_path) as server:
        router = only(
            sandbox,
            "baofoo",
            state=redis_settings(server),
            router_kw={"events": EventBus([sink])},
        )
        async with router:
            await router.send(otp(["13800138005"], key="ok-1"))
            await anyio.to_thread.run_sync(server.stop)
            with pytest.raises(StateStoreError):
                await router.send(otp(["13800138006", "13800138007"], key="down-1"))
    labels = {"scene": "login_code"}
    assert sample(registry, "smsrouter_send_refusals_total", reason="store", **labels) == 1
    assert sample(registry, "smsrouter_send_recipients_total", status="refused", **labels) == 2
    assert sample(registry, "smsrouter_send_requests_total", outcome="refused", **labels) == 1
    assert sample(registry, "smsrouter_inflight_sends") == 0


async def test_a_send_cancelled_mid_attempt_ends_in_telemetry(sandbox: RunningSandbox) -> None:
    """The caller gives up (a client disconnect, a task time limit): the attempt ends as an
    unknown attempt, the send as a finished send, and the in-flight gauge returns to zero."""
    rec = Recorder()
    registry = CollectorRegistry()
    sink = MetricsSink(registry, providers=list(PROVIDERS), scenes=["login_code"])
    sandbox.state("baofoo").set_faults(FaultSettings(timeout_rate=1.0, hang_s=3))
    router = only(sandbox, "baofoo", router_kw={"events": EventBus([rec, sink])})
    async with router:
        with anyio.move_on_after(0.3):
            await router.send(otp(["13800138008"]))
    finished = [e for e in rec.events if isinstance(e, AttemptFinished)]
    assert [(e.provider, e.verdict, e.unknown) for e in finished] == [
        ("baofoo", Verdict.UNKNOWN, 1)
    ]
    assert [e.by_status for e in rec.events if isinstance(e, SendFinished)] == [(("unknown", 1),)]
    assert sample(registry, "smsrouter_inflight_sends") == 0


async def test_the_sidecar_answers_the_truth_when_redis_dies_mid_send(
    sandbox: RunningSandbox, tmp_path: Path, serve: Any
) -> None:
    """Not a 503 'nothing was sent' (the caller would retry and double send): a 200 with the
    real outcome and ``recorded: false``; the keyed retry is a replay."""
    sandbox.state("baofoo").set_faults(FaultSettings(latency_s=0.5))
    with redis_server(tmp_path) as server:
        app = create_app(only(sandbox, "baofoo", state=redis_settings(server)))
        url = f"http://127.0.0.1:{serve(app).port}"
        body = {"mobiles": ["13800138009"], "scene": "login_code", "params": OTP}
        headers = {"Idempotency-Key": "sidecar-dies-1"}
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            answers: list[httpx.Response] = []

            async def post() -> None:
                answers.append(await client.post("/v1/messages", json=body, headers=headers))

            async with anyio.create_task_group() as tg:
                tg.start_soon(post)
                await anyio.sleep(0.25)
                await anyio.to_thread.run_sync(server.stop)
            [first] = answers
            assert first.status_code == 200, first.text
            assert first.json()["recorded"] is False
            assert first.json()["recipients"][0]["status"] == "accepted"
            await anyio.to_thread.run_sync(server.start)
            retry = await client.post("/v1/messages", json=body, headers=headers)
    assert retry.status_code == 200, retry.text
    assert retry.json()["idempotent_replay"] is True
    assert sent_to(sandbox, "13800138009") == 1


@pytest.mark.parametrize("transport", ["httpx", "httpx-aiohttp"])
async def test_httpx_request_logs_never_carry_ronglian_sig(
    sandbox: RunningSandbox, caplog: pytest.LogCaptureFixture, transport: str
) -> None:
    """Embedded at INFO with an httpx transport, httpx logs each request URL; Ronglian's holds
    its signature (a credential derived from the auth token)."""
    caplog.set_level(logging.INFO, logger="httpx")
    async with only(sandbox, "ronglian", transport=transport) as router:
        result = await router.send(otp(["13800138010"]))
    assert result.recipients[0].status is RecipientStatus.ACCEPTED
    [request] = sandbox.sends("ronglian")
    sig = request.query["sig"]
    logged = [r.getMessage() for r in caplog.records if r.name.startswith("httpx")]
    assert any("TemplateSMS" in line for line in logged)  # httpx did log the request
    assert not any(sig in line for line in logged), logged
