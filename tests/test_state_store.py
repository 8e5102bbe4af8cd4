"""The state store contract, run against both backends (memory and a real redis-server)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import anyio
import pytest
from anyio.from_thread import start_blocking_portal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)

from router.clock import FakeClock
from router.state import Acquired, Conflict, Done, InProgress, MemoryStateStore, StateStore
from router.state.memory import compact
from router.state.redis import RedisStateStore
from tests.redis_server import redis_url

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    with redis_url(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[StateStore]:
    if request.param == "memory":
        yield MemoryStateStore()
        return
    # Looked up here, not declared: the memory variant must not start a redis-server.
    url, prefix = request.getfixturevalue("redis")
    # A generous timeout: these are contract tests (atomicity, ordering), and 50 concurrent
    # first connections on a loaded 2-core CI machine can take longer than the 0.5 s default.
    s = RedisStateStore.from_url(url, prefix=prefix + "contract:", timeout_s=5.0)
    yield s
    await s.aclose()


async def test_reserve_commit_replay_and_conflict(store: StateStore) -> None:
    first = await store.reserve("k1", "fp", lease_s=5)
    assert isinstance(first, Acquired)
    assert isinstance(await store.reserve("k1", "fp", lease_s=5), InProgress)
    assert isinstance(await store.reserve("k1", "other", lease_s=5), Conflict)
    assert await store.commit("k1", first.token, b"result", ttl_s=60)
    assert await store.reserve("k1", "fp", lease_s=5) == Done(b"result")
    assert isinstance(await store.reserve("k1", "other", lease_s=5), Conflict)


async def test_only_the_lease_holder_commits_or_releases(store: StateStore) -> None:
    lease = await store.reserve("k2", "fp", lease_s=5)
    assert isinstance(lease, Acquired)
    assert not await store.commit("k2", "not-the-token", b"x", ttl_s=60)
    await store.release("k2", "not-the-token")
    assert isinstance(await store.reserve("k2", "fp", lease_s=5), InProgress)
    await store.release("k2", lease.token)
    assert isinstance(await store.reserve("k2", "fp", lease_s=5), Acquired)


async def test_concurrent_reserves_give_one_lease(store: StateStore) -> None:
    results: list[object] = []

    async def take() -> None:
        results.append(await store.reserve("k3", "fp", lease_s=5))

    async with anyio.create_task_group() as tg:
        for _ in range(50):
            tg.start_soon(take)
    assert sum(isinstance(r, Acquired) for r in results) == 1


async def test_throttle_marks_and_unthrottles(store: StateStore) -> None:
    mobiles = ["+8613800000001", "+8613800000002"]
    assert await store.throttle(mobiles, "otp", window_s=60) == set()
    assert await store.throttle([*mobiles, "+8613800000003"], "otp", 60) == set(mobiles)
    assert await store.throttle(mobiles, "other-scene", 60) == set()
    await store.unthrottle(mobiles[:1], "otp")
    assert await store.throttle(mobiles, "otp", 60) == {mobiles[1]}


async def test_delivery_status_only_moves_forward(store: StateStore) -> None:
    assert await store.get_status("v1", "task-1") is None
    assert await store.put_status("v1", "task-1", "delivered", ttl_s=60)
    assert not await store.put_status("v1", "task-1", "failed", ttl_s=60)  # late, out of order
    assert not await store.put_status("v1", "task-1", "delivered", ttl_s=60)  # pushed twice
    assert await store.get_status("v1", "task-1") == "delivered"


async def test_breaker_cool_downs_are_shared(store: StateStore) -> None:
    import time

    await store.publish_open("baofoo", time.time() + 30)
    shared = await store.open_until(["baofoo", "ronglian"])
    assert set(shared) == {"baofoo"}
    assert shared["baofoo"] > time.time() + 25


async def test_redis_lease_expires(redis: tuple[str, str]) -> None:
    url, prefix = redis
    store = RedisStateStore.from_url(url, prefix=prefix + "lease:")
    try:
        assert isinstance(await store.reserve("k", "fp", lease_s=0.2), Acquired)
        with anyio.fail_after(3):
            while not isinstance(  # noqa: ASYNC110 - polling Redis is the point
                await store.reserve("k", "fp", lease_s=5), Acquired
            ):
                await anyio.sleep(0.05)
    finally:
        await store.aclose()


class StoreContract(RuleBasedStateMachine):
    """A model of the contract, checked step by step against a backend. Subclasses give the
    store and say whether time can be moved (memory: a fake clock; Redis: leases outlive
    the run, so nothing expires)."""

    clock: FakeClock | None = None

    def __init__(self) -> None:
        super().__init__()
        self.portal_cm = start_blocking_portal()
        self.portal = self.portal_cm.__enter__()
        self.store = self.portal.call(self.make_store)
        self.now = 0.0
        self.model: dict[str, tuple[str, float, str | None, bytes | None]] = {}

    async def make_store(self) -> StateStore:
        raise NotImplementedError

    def teardown(self) -> None:
        self.portal.call(self.store.aclose)
        self.portal_cm.__exit__(None, None, None)

    def _live(self, key: str) -> tuple[str, float, str | None, bytes | None] | None:
        entry = self.model.get(key)
        if entry is not None and entry[1] <= self.now:
            del self.model[key]
            return None
        return entry

    @rule(key=st.sampled_from("abc"), fp=st.sampled_from(["x", "y"]))
    def reserve(self, key: str, fp: str) -> None:
        got = self.portal.call(self.store.reserve, key, fp, 10.0)
        entry = self._live(key)
        if entry is None:
            assert isinstance(got, Acquired)
            self.model[key] = (fp, self.now + 10, got.token, None)
        elif entry[0] != fp:
            assert isinstance(got, Conflict)
        elif entry[3] is not None:
            assert got == Done(entry[3])
        else:
            assert isinstance(got, InProgress)

    @rule(key=st.sampled_from("abc"), payload=st.binary(min_size=1, max_size=8))
    def commit(self, key: str, payload: bytes) -> None:
        entry = self._live(key)
        token = entry[2] if entry is not None and entry[2] is not None else "stale"
        ok = self.portal.call(self.store.commit, key, token, payload, 100.0)
        assert ok == (entry is not None and entry[2] is not None)
        if ok and entry is not None:
            self.model[key] = (entry[0], self.now + 100, None, payload)

    @rule(key=st.sampled_from("abc"))
    def release(self, key: str) -> None:
        entry = self._live(key)
        if entry is not None and entry[2] is not None:
            self.portal.call(self.store.release, key, entry[2])
            del self.model[key]

    @rule(mobile=st.sampled_from(["+8613800000001", "+8613800000002"]))
    def throttle_twice(self, mobile: str) -> None:
        scope = uuid.uuid4().hex  # a fresh scope: the first mark is new, the second is not
        assert self.portal.call(self.store.throttle, [mobile], scope, 50.0) == set()
        assert self.portal.call(self.store.throttle, [mobile], scope, 50.0) == {mobile}

    @rule(seconds=st.floats(0, 60))
    def wait(self, seconds: float) -> None:
        if self.clock is not None:
            self.clock.advance(seconds)
            self.now += seconds

    @invariant()
    def the_store_agrees_with_the_model(self) -> None:
        """Every live entry is exactly a lease or a record, and the store answers for it as the
        model says: a record replays, a lease is in progress, another payload conflicts. (Such
        reserves change nothing; absent keys are left alone, a reserve would take them.)"""
        for key in "abc":
            entry = self._live(key)
            if entry is None:
                continue
            fp, expires, token, payload = entry
            assert expires > self.now
            assert (token is None) != (payload is None), entry
            got = self.portal.call(self.store.reserve, key, fp, 10.0)
            assert got == (Done(payload) if payload is not None else InProgress()), (key, got)
            other = "y" if fp == "x" else "x"
            assert isinstance(self.portal.call(self.store.reserve, key, other, 10.0), Conflict)


class MemoryContract(StoreContract):
    async def make_store(self) -> StateStore:
        self.clock = FakeClock()
        return MemoryStateStore(self.clock)


class RedisContract(StoreContract):
    url = ""

    async def make_store(self) -> StateStore:
        return RedisStateStore.from_url(self.url, prefix=f"smsrouter-test-{uuid.uuid4().hex}:")


CONTRACT_SETTINGS = settings(
    max_examples=40,
    stateful_step_count=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def test_memory_store_follows_the_contract() -> None:
    run_state_machine_as_test(MemoryContract, settings=CONTRACT_SETTINGS)


def test_redis_store_follows_the_contract(redis: tuple[str, str]) -> None:
    RedisContract.url = redis[0]
    run_state_machine_as_test(RedisContract, settings=CONTRACT_SETTINGS)


async def test_links_are_kept_for_their_ttl(store: StateStore) -> None:
    await store.put_links({"v1:task-1": "a-b-01", "v1:task-2": "c-d-00"}, ttl_s=60)
    assert await store.get_link("v1:task-1") == "a-b-01"
    assert await store.get_link("v1:task-2") == "c-d-00"
    assert await store.get_link("v1:task-3") is None
    await store.put_links({}, ttl_s=60)  # nothing to write: no error


async def test_rate_slots_follow_gcra(store: StateStore) -> None:
    """10 per second with bursts of 2: two now, then one every 0.1 s (each caller told how
    long to wait for the slot it reserved)."""
    import time

    calls = []
    for _ in range(5):
        before = time.monotonic()
        wait = await store.take_rate("v1", rate=10, burst=2)
        calls.append((before, wait, time.monotonic()))
    assert [w for _, w, _ in calls[:2]] == [0.0, 0.0]
    start_min, start_max = calls[0][0], calls[0][2]
    for k, (before, wait, after) in enumerate(calls[2:], start=1):
        # the slot is due 0.1 s * k after the first call, whenever this call happened
        assert before - start_max + wait <= 0.1 * k + 0.005
        assert after - start_min + wait >= 0.1 * k - 0.005
    assert await store.take_rate("other", rate=10, burst=2) == 0.0  # limits are per key


FINGERPRINTS = st.one_of(
    st.text(max_size=70), st.text("0123456789abcdefABCDEF", min_size=64, max_size=64)
)


@given(FINGERPRINTS, FINGERPRINTS)
def test_compact_fingerprints_are_equal_exactly_when_the_texts_are(a: str, b: str) -> None:
    """The memory store keeps hex digests as bytes: never may two texts become one."""
    assert (compact(a) == compact(b)) == (a == b)
    digest = "ab" * 32
    assert compact(digest) == bytes.fromhex(digest) and compact(digest.upper()) != compact(digest)
