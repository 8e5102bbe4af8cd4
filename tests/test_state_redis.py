"""The state store beyond the shared contract (tests/test_state_store.py): Redis as several
instances see it (key names, TTLs, restarts, outages, passwords), concurrent sends with one
key, expiry and bounds of the memory store on a fake clock, and the SendResult codec.

Redis is a real redis-server on a free loopback port (or REDIS_URL, then under a random prefix
that is deleted afterwards); nothing here is mocked.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import anyio
import pytest
import redis as syncredis
import redis.asyncio as aioredis
from hypothesis import given
from hypothesis import strategies as st

from providers.base import ErrorClass, Fault, FaultKind, Verdict
from router.clock import FakeClock, SystemClock
from router.config import StateSettings
from router.errors import IdempotencyConflictError, StateStoreError
from router.idempotency import KeyPolicy, Progress, send_idempotent
from router.model import Attempt, Message, RecipientOutcome, RecipientStatus, SendResult
from router.state import Acquired, Done, InProgress, MemoryStateStore, StateStore, fingerprint
from router.state.codec import decode_result, encode_result
from router.state.outbox import Outbox
from router.state.redis import RedisStateStore
from tests.redis_server import RedisServer, redis_server, redis_url

KEYS = KeyPolicy(lease_s=30, ttl_s=60, wait_s=5, commit_retry_s=0.5)

pytestmark = pytest.mark.anyio
MOBILES = ["+8613800000001", "+8613800000002", "+8613800000003"]


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(url, prefix) of a Redis shared by this module; its keys are deleted at the end."""
    with redis_url(tmp_path_factory.mktemp("redis")) as (url, prefix):
        yield url, prefix
        client = syncredis.Redis.from_url(url)
        for key in client.scan_iter(match=f"{prefix}*"):
            client.delete(key)
        client.close()


@pytest.fixture
def prefix(redis: tuple[str, str]) -> str:
    """A prefix of this test's own under the module's."""
    return f"{redis[1]}{uuid.uuid4().hex[:8]}:"


@pytest.fixture
async def inspect(redis: tuple[str, str]) -> AsyncIterator[aioredis.Redis]:
    """A plain client to look at what the store wrote."""
    client = aioredis.Redis.from_url(redis[0])
    yield client
    await client.aclose()


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[StateStore]:
    if request.param == "memory":
        yield MemoryStateStore()
        return
    # Looked up here, not declared: the memory variant must not start a redis-server.
    url, _ = request.getfixturevalue("redis")
    s = RedisStateStore.from_url(url, prefix=request.getfixturevalue("prefix"))
    yield s
    await s.aclose()


async def _exercise(store: StateStore) -> None:
    """One of everything the store writes."""
    lease = await store.reserve("key-1", "fp", lease_s=30)
    assert isinstance(lease, Acquired)
    assert await store.commit("key-1", lease.token, b"result", ttl_s=3600)
    assert isinstance(await store.reserve("key-2", "fp", lease_s=30), Acquired)
    await store.throttle(MOBILES, "login_code", window_s=60)
    await store.put_status("baofoo", "task-1", "delivered", ttl_s=3600)
    await store.publish_open("baofoo", _epoch() + 30)


def _epoch() -> float:
    return SystemClock().now().timestamp()


async def test_every_key_is_prefixed_expiring_and_free_of_phone_numbers(
    redis: tuple[str, str], prefix: str, inspect: aioredis.Redis
) -> None:
    store = RedisStateStore.from_url(redis[0], prefix=prefix)
    try:
        await _exercise(store)
    finally:
        await store.aclose()
    keys = [k.decode() if isinstance(k, bytes) else k for k in await inspect.keys(f"{prefix}*")]
    assert len(keys) == 2 + len(MOBILES) + 2  # two idempotency keys, marks, status, cool-down
    for key in keys:
        assert 0 < await inspect.pttl(key) <= 3_600_000, key  # a TTL on every key
        assert "13800000" not in key  # marks are hashed: no phone number in a key listing


async def test_two_instances_act_as_one(redis: tuple[str, str], prefix: str) -> None:
    """Two stores with their own connection pools, as two router processes have."""
    first = RedisStateStore.from_url(redis[0], prefix=prefix)
    second = RedisStateStore.from_url(redis[0], prefix=prefix)
    try:
        lease = await first.reserve("k", "fp", lease_s=30)
        assert isinstance(lease, Acquired)
        assert await second.reserve("k", "fp", lease_s=30) == InProgress()
        assert not await second.commit("k", "a-token-of-its-own", b"other", ttl_s=60)
        assert await first.commit("k", lease.token, b"\x00\xffbytes", ttl_s=60)
        assert await second.reserve("k", "fp", lease_s=30) == Done(b"\x00\xffbytes")

        assert await first.throttle(MOBILES[:2], "otp", window_s=60) == set()
        assert await second.throttle(MOBILES, "otp", window_s=60) == set(MOBILES[:2])

        assert await first.put_status("v1", "t-1", "failed", ttl_s=60)
        assert not await second.put_status("v1", "t-1", "delivered", ttl_s=60)
        assert await second.get_status("v1", "t-1") == "failed"

        until = _epoch() + 30
        await first.publish_open("baofoo", until)
        assert await second.open_until(["baofoo", "ronglian"]) == {"baofoo": until}
    finally:
        await first.aclose()
        await second.aclose()


async def test_throttle_marks_last_the_window(redis: tuple[str, str], prefix: str) -> None:
    store = RedisStateStore.from_url(redis[0], prefix=prefix)
    try:
        assert await store.throttle(MOBILES[:1], "otp", window_s=0.2) == set()
        with anyio.fail_after(3):
            while await store.throttle(MOBILES[:1], "otp", window_s=60):  # noqa: ASYNC110
                await anyio.sleep(0.05)
    finally:
        await store.aclose()


async def test_memory_throttle_marks_last_the_window() -> None:
    clock = FakeClock()
    store = MemoryStateStore(clock)
    assert await store.throttle(MOBILES[:1], "otp", window_s=60) == set()
    clock.advance(59.9)
    assert await store.throttle(MOBILES[:1], "otp", window_s=60) == set(MOBILES[:1])
    clock.advance(0.1)
    assert await store.throttle(MOBILES[:1], "otp", window_s=60) == set()


async def test_one_request_per_key_under_concurrency(store: StateStore) -> None:
    """Twenty concurrent sends with one key: one send, nineteen waiters given its result."""
    calls: list[Message] = []
    outbox = Outbox(store, max_entries=10, max_bytes=10_000)

    async def send_once(message: Message, progress: Progress) -> SendResult:
        progress.reached_provider = True
        calls.append(message)
        await anyio.sleep(0.05)  # the provider takes a while: the others must wait, not send
        outcome = RecipientOutcome(MOBILES[0], MOBILES[0], RecipientStatus.ACCEPTED, "baofoo")
        return SendResult(uuid.uuid4().hex, (outcome,))

    message = Message(
        mobiles=MOBILES[:1], scene="login_code", params={"code": "1"}, idempotency_key="order-42"
    )
    results: list[SendResult] = []

    async def send() -> None:
        results.append(
            await send_idempotent(
                store, outbox, message, send_once, clock=SystemClock(), policy=KEYS
            )
        )

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(send)
    assert len(calls) == 1
    assert len({r.message_id for r in results}) == 1
    assert sum(not r.idempotent_replay for r in results) == 1
    other = Message(
        mobiles=MOBILES[:1], scene="login_code", params={"code": "2"}, idempotency_key="order-42"
    )
    with pytest.raises(IdempotencyConflictError):
        await send_idempotent(store, outbox, other, send_once, clock=SystemClock(), policy=KEYS)


async def test_memory_leases_and_records_expire_on_the_clock() -> None:
    clock = FakeClock()
    store = MemoryStateStore(clock)
    crashed = await store.reserve("k", "fp", lease_s=5)  # a sender that never commits
    assert isinstance(crashed, Acquired)
    clock.advance(4.9)
    assert await store.reserve("k", "fp", lease_s=5) == InProgress()
    clock.advance(0.1)
    retry = await store.reserve("k", "fp", lease_s=5)
    assert isinstance(retry, Acquired)
    assert not await store.commit("k", crashed.token, b"late", ttl_s=60)  # stale lease
    ttl = StateSettings().idempotency_ttl_s
    assert ttl == 24 * 3600
    assert await store.commit("k", retry.token, b"result", ttl_s=ttl)
    clock.advance(ttl - 1)
    assert await store.reserve("k", "fp", lease_s=5) == Done(b"result")
    clock.advance(1)
    assert isinstance(await store.reserve("k", "fp", lease_s=5), Acquired)


async def test_memory_store_is_bounded() -> None:
    store = MemoryStateStore(FakeClock(), max_entries=10)
    for i in range(50):
        assert isinstance(await store.reserve(f"k{i}", "fp", lease_s=60), Acquired)
        await store.throttle([f"+86138{i:08d}"], "otp", window_s=60)
        await store.put_status("v1", f"t{i}", "delivered", ttl_s=60)
    assert isinstance(await store.reserve("k49", "fp", lease_s=60), InProgress)  # newest kept
    assert isinstance(await store.reserve("k0", "fp", lease_s=60), Acquired)  # oldest gone
    assert await store.get_status("v1", "t49") == "delivered"
    assert await store.get_status("v1", "t0") is None


async def test_redis_restart_keeps_committed_records(tmp_path: Path) -> None:
    with redis_server(tmp_path, persistent=True) as server:
        store = RedisStateStore.from_url(server.url, prefix="smsrouter-restart:")
        try:
            lease = await store.reserve("k", "fp", lease_s=30)
            assert isinstance(lease, Acquired)
            assert await store.commit("k", lease.token, b"committed", ttl_s=3600)
            await store.throttle(MOBILES[:1], "otp", window_s=3600)
            await anyio.to_thread.run_sync(server.stop)
            with anyio.fail_after(2), pytest.raises(StateStoreError, match="failed during reserve"):
                await store.reserve("k", "fp", lease_s=30)  # down: refused, not waited out
            await anyio.to_thread.run_sync(server.start)
            assert await store.reserve("k", "fp", lease_s=30) == Done(b"committed")
            assert await store.throttle(MOBILES[:1], "otp", window_s=3600) == set(MOBILES[:1])
        finally:
            await store.aclose()


async def _restart(server: RedisServer) -> None:
    # In worker threads, so the event loop sees the old connections close meanwhile.
    await anyio.to_thread.run_sync(server.stop)
    await anyio.to_thread.run_sync(server.start)


async def test_an_idle_store_survives_a_redis_restart(tmp_path: Path) -> None:
    with redis_server(tmp_path, persistent=True) as server:
        store = RedisStateStore.from_url(server.url, prefix="smsrouter-idle:")
        try:
            assert await store.get_status("any", "id") is None
            await _restart(server)
            assert await store.get_status("any", "id") is None
        finally:
            await store.aclose()


async def test_every_method_fails_closed_while_redis_is_down(tmp_path: Path) -> None:
    with redis_server(tmp_path) as server:
        store = RedisStateStore.from_url(server.url, prefix="smsrouter-down:")
        await store.put_status("v1", "t", "delivered", ttl_s=60)  # connected once
        await anyio.to_thread.run_sync(server.stop)
        calls: dict[str, Callable[[], Awaitable[object]]] = {
            "reserve": lambda: store.reserve("k", "fp", 30),
            "commit": lambda: store.commit("k", "token", b"x", 60),
            "release": lambda: store.release("k", "token"),
            "throttle": lambda: store.throttle(MOBILES, "otp", 60),
            "unthrottle": lambda: store.unthrottle(MOBILES, "otp"),
            "put_status": lambda: store.put_status("v1", "t", "failed", 60),
            "get_status": lambda: store.get_status("v1", "t"),
            "publish_open": lambda: store.publish_open("baofoo", _epoch() + 30),
            "open_until": lambda: store.open_until(["baofoo"]),
        }
        try:
            for name, call in calls.items():
                with anyio.fail_after(2), pytest.raises(StateStoreError) as caught:
                    await call()
                assert f"127.0.0.1:{server.port}" in str(caught.value), name
                assert name in str(caught.value)
        finally:
            await store.aclose()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers (a hung Redis, a black hole)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


async def test_a_hung_redis_is_reported_within_the_timeout(silent_port: int) -> None:
    store = RedisStateStore.from_url(f"redis://127.0.0.1:{silent_port}/0", timeout_s=0.2)
    try:
        with anyio.fail_after(3), pytest.raises(StateStoreError, match="failed during reserve"):
            await store.reserve("k", "fp", lease_s=30)
    finally:
        await store.aclose()


async def test_the_password_never_shows(tmp_path: Path) -> None:
    password = "s3cret-" + uuid.uuid4().hex
    with redis_server(tmp_path) as server:
        admin = aioredis.Redis.from_url(server.url)
        await admin.config_set("requirepass", password)
        await admin.aclose()
        wrong = RedisStateStore.from_url(f"redis://:wrong-{password}@127.0.0.1:{server.port}/0")
        right = RedisStateStore.from_url(f"redis://:{password}@127.0.0.1:{server.port}/0")
        try:
            with pytest.raises(StateStoreError) as caught:
                await wrong.reserve("k", "fp", lease_s=30)
            assert isinstance(await right.reserve("k", "fp", lease_s=30), Acquired)
        finally:
            await wrong.aclose()
            await right.aclose()
    assert f"127.0.0.1:{server.port}" in str(caught.value)
    for text in (str(caught.value), repr(caught.value), repr(wrong), repr(right)):
        assert password not in text


def test_fingerprint_is_the_payload_not_its_order() -> None:
    base = Message(mobiles=MOBILES, scene="login_code", params={"code": "1"}, tags={"a": "1"})
    same = Message(mobiles=MOBILES[::-1], scene="login_code", params={"code": 1}, tags={"a": "1"})
    assert fingerprint(base) == fingerprint(same)
    for changed in (
        Message(mobiles=MOBILES[:2], scene="login_code", params={"code": "1"}, tags={"a": "1"}),
        Message(mobiles=MOBILES, scene="login_code", params={"code": "2"}, tags={"a": "1"}),
        Message(mobiles=MOBILES, scene="login_code", params={"code": "1"}, tags={"a": "2"}),
        Message(mobiles=MOBILES, content="code 1", tags={"a": "1"}),
    ):
        assert fingerprint(changed) != fingerprint(base)


_text = st.text(max_size=12)
_faults = st.builds(
    Fault, st.sampled_from(FaultKind), st.sampled_from(ErrorClass), st.none() | _text, _text
)
_attempts = st.builds(
    Attempt,
    _text,
    st.sampled_from([v.value for v in Verdict]),
    st.none() | _faults,
    st.none() | _text,
)
_outcomes = st.builds(
    RecipientOutcome,
    mobile=_text,
    normalised=st.none() | _text,
    status=st.sampled_from(RecipientStatus),
    provider=st.none() | _text,
    provider_message_id=st.none() | _text,
    attempts=st.lists(_attempts, max_size=3).map(tuple),
    error=st.none() | _text,
)
_results = st.builds(
    SendResult,
    message_id=_text,
    recipients=st.lists(_outcomes, max_size=4).map(tuple),
    idempotent_replay=st.booleans(),
    panic=st.booleans(),
)


@given(_results)
def test_codec_round_trips_exactly(result: SendResult) -> None:
    encoded = encode_result(result)
    assert decode_result(encoded, replay=result.idempotent_replay) == result
    assert decode_result(encoded).idempotent_replay  # what a replay hands back
