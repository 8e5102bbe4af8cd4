"""What a long-lived router keeps per send is bounded by entries, bytes and age."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

from providers.base import Verdict
from router.bounded import BoundedCache
from router.clock import FakeClock
from router.events import AttemptFinished, AttemptStarted, SendFinished, SendStarted
from router.state import Acquired, Done, MemoryStateStore
from router.telemetry.tracing import TracingSink

OPS = st.lists(
    st.tuples(st.integers(0, 30), st.integers(1, 500), st.floats(0, 20, allow_nan=False)),
    max_size=300,
)


@settings(max_examples=200, deadline=None)
@given(ops=OPS, max_entries=st.integers(1, 50), max_bytes=st.integers(1, 5_000))
def test_every_bound_holds_after_every_put(
    ops: list[tuple[int, int, float]], max_entries: int, max_bytes: int
) -> None:
    clock = FakeClock()
    cache: BoundedCache[int, int] = BoundedCache(
        clock, max_entries=max_entries, max_bytes=max_bytes, ttl_s=30, size_of=lambda v: v
    )
    put_at: dict[int, float] = {}
    for key, size, gap in ops:
        clock.advance(gap)
        cache.put(key, size)
        put_at[key] = clock.monotonic()
        assert len(cache) <= max_entries
        assert cache.bytes <= max_bytes or len(cache) == 0
        # Entries expire oldest first, so a put leaves no expired entry behind.
        assert cache.bytes == sum(cache.values())
        for k in list(put_at):
            if clock.monotonic() - put_at[k] >= 30:
                assert cache.get(k) is None  # expired entries are never returned


def test_a_value_comes_back_until_it_expires() -> None:
    clock = FakeClock()
    cache: BoundedCache[str, str] = BoundedCache(
        clock, max_entries=10, max_bytes=1_000, ttl_s=60, size_of=len
    )
    cache.put("a", "x" * 10)
    clock.advance(59)
    assert cache.get("a") == "x" * 10
    clock.advance(1)
    assert cache.get("a") is None and cache.bytes == 0


def test_unsampled_sends_leave_nothing_in_the_tracing_sink() -> None:
    sink = TracingSink(TracerProvider(sampler=ALWAYS_OFF).get_tracer("test"))
    for i in range(1_000):
        send = f"s{i}"
        sink.handle(SendStarted(send, "login_code", 1))
        sink.handle(AttemptStarted(send, f"a{i}", "v1platform", 1))
        sink.handle(
            AttemptFinished(
                send,
                f"a{i}",
                "v1platform",
                "login_code",
                1,
                Verdict.ACCEPTED,
                None,
                0.01,
                1,
                0,
                0,
            )
        )
        sink.handle(SendFinished(send, "login_code", 0.02, 1, (("accepted", 1),), False, False))
    assert (len(sink._sends), len(sink._attempts), len(sink._finished)) == (0, 0, 0)


@pytest.mark.anyio
async def test_the_memory_store_keeps_its_byte_bound_and_says_when_it_forgets(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = MemoryStateStore(FakeClock(), max_bytes=1024 * 1024)
    for i in range(300):
        lease = await store.reserve(f"k{i}", "fp", lease_s=30)
        assert isinstance(lease, Acquired)
        assert await store.commit(f"k{i}", lease.token, b"x" * 10_000, ttl_s=86_400)
    assert store._bytes <= 1024 * 1024
    assert isinstance(await store.reserve("k299", "fp", 30), Done)  # the newest are kept
    assert isinstance(await store.reserve("k0", "fp", 30), Acquired)  # the oldest forgotten
    assert "forgetting idempotency keys before their TTL" in caplog.text
