"""The memory of sent message ids: stored as text, read back as the batch it was, bounded."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from providers.clock import FakeClock
from router.sent import ENTRY_OVERHEAD, SentBatch, SentMemory, decode_sent, encode_sent

E164 = st.from_regex(r"\+86 ?1[3-9][0-9]{9}", fullmatch=True).map(lambda s: s.replace(" ", ""))
IDS = st.text("0123456789abcdef_", min_size=1, max_size=32)


@st.composite
def batches(draw: Any) -> SentBatch:
    mobiles = tuple(draw(st.lists(E164, min_size=1, max_size=20, unique=True)))
    coalesced = draw(st.booleans())
    sends = tuple(draw(IDS) for _ in mobiles) if coalesced else ()
    at = draw(st.integers(0, 4 * 10**12)) / 1000  # epoch seconds to the millisecond
    return SentBatch(at, draw(IDS), mobiles, sends)


@given(batches())
def test_a_batch_reads_back_as_it_was_stored(batch: SentBatch) -> None:
    assert decode_sent(encode_sent(batch)) == batch
    shared = decode_sent(encode_sent(batch, with_sends=False))
    assert shared == SentBatch(batch.at, batch.send_id, batch.mobiles)
    for mobile, send in zip(batch.mobiles, batch.send_ids or [batch.send_id] * 99, strict=False):
        assert batch.send_for(mobile) == send


@given(st.text(max_size=60))
def test_text_that_is_not_a_batch_reads_as_none_never_raises(text: str) -> None:
    decoded = decode_sent(text)
    assert decoded is None or encode_sent(decoded).count("|") >= 2


def test_the_shared_record_keeps_the_three_fields_older_instances_read() -> None:
    batch = SentBatch(1.5, "snd", ("+8613800138000", "+8613900139000"), ("s1", "s2"))
    assert encode_sent(batch, with_sends=False) == "1.500|snd|+8613800138000,+8613900139000"
    assert decode_sent("1.500|snd|+8613800138000|s1,s2") is None  # sends must match mobiles


def test_an_id_is_forgotten_when_it_expires() -> None:
    clock = FakeClock()
    memory = SentMemory(clock, ttl_s=60)
    batch = SentBatch(1.0, "snd", ("+8613800138000",))
    memory.remember("v1", "task-1", batch)
    clock.advance(59)
    assert memory.get("v1", "task-1") == batch
    memory.remember("v1", "task-2", batch)
    clock.advance(2)
    assert memory.get("v1", "task-1") is None
    memory.remember("v1", "task-3", batch)  # puts drop what expired at the front
    assert len(memory) == 2 and memory.get("v1", "task-2") == batch


def test_past_its_bounds_the_oldest_go_first_and_the_operator_is_told(caplog: Any) -> None:
    clock = FakeClock()
    batch = SentBatch(1.0, "snd", ("+8613800138000",))
    one = (
        ENTRY_OVERHEAD
        + len("v1|task-0")
        + len(f"{clock.monotonic() + 60:.0f}|")
        + len(encode_sent(batch))
    )
    memory = SentMemory(clock, max_bytes=3 * one, ttl_s=60)
    with caplog.at_level("WARNING", logger="router.receipts"):
        for i in range(5):
            memory.remember("v1", f"task-{i}", batch)
    assert [memory.get("v1", f"task-{i}") is not None for i in range(5)] == [False] * 2 + [True] * 3
    assert memory.bytes == 3 * one
    [warning] = [r.getMessage() for r in caplog.records]
    assert "memory of sent message ids is full" in warning
    memory.remember("v1", "task-4", batch)  # a second put of an id replaces it
    assert len(memory) == 3 and memory.bytes == 3 * one
