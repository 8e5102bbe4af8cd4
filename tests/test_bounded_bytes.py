"""Every structure the router keeps per send is bounded in bytes by an estimate of what each
entry retains; these tests hold each estimate to what tracemalloc measures, so a bound of
"16 MB" means about 16 MB of heap, not 30.

Each entry is built from fresh strings and objects (the structure is their last holder, as it
is once the send's own references are gone), N entries at a time, and the structure's own
byte count is compared with the heap it grew by (the collector held off, which makes the
count exact to ~1%). The estimate may round up (up to 1.3x: a bound that forgets a little
early) but not down (at least 0.97x: a bound that lets the heap grow past it). Measured on
CPython 3.11; other versions may need the constants redone.
"""

from __future__ import annotations

import gc
import hashlib
import secrets
import tracemalloc
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from providers.base import DeliveryReport, DeliveryStatus
from providers.clock import FakeClock
from router.bounded import BoundedCache
from router.clock import SystemClock
from router.engine import result_size
from router.model import Attempt, RecipientOutcome, RecipientStatus, SendResult
from router.receipts import Match, ReceiptBook
from router.sent import SentBatch, SentMemory
from router.state.codec import encode_result
from router.state.memory import MemoryStateStore

pytestmark = pytest.mark.anyio
N = 2_000
LOW, HIGH = 0.97, 1.3
clock = SystemClock()
HUGE = 10**12


def e164(i: int) -> str:
    return f"+86138{i:08d}"


def fresh_id() -> str:
    return uuid.uuid4().hex


def result(i: int, recipients: int = 1) -> SendResult:
    task = fresh_id()
    return SendResult(
        "msg_" + secrets.token_hex(11),
        tuple(
            RecipientOutcome(
                f"138{i * recipients + j:08d}",
                e164(i * recipients + j),
                RecipientStatus.ACCEPTED,
                "v1platform",
                task,
                (Attempt("v1platform", "accepted", None, task),),
            )
            for j in range(recipients)
        ),
    )


def sent(recipients: int, coalesced: bool) -> tuple[object, Callable[[], int]]:
    memory = SentMemory(clock, max_ids=10**7, max_bytes=HUGE)
    for i in range(N):
        mobiles = tuple(e164(i * recipients + j) for j in range(recipients))
        sends = tuple("snd_" + secrets.token_hex(11) for _ in mobiles) if coalesced else ()
        batch = SentBatch(1.7e9 + i, "snd_" + secrets.token_hex(11), mobiles, sends)
        memory.remember("v1platform", fresh_id(), batch)
    return memory, lambda: memory.bytes


def book(recipients: int) -> tuple[object, Callable[[], int]]:
    receipts = ReceiptBook(clock, max_ids=10**7, max_bytes=HUGE)
    for i in range(N):
        task = fresh_id()
        for j in range(recipients):
            masked = f"138****{j:04d}"
            report = DeliveryReport("v1platform", task, masked, DeliveryStatus.DELIVERED, "DELIVRD")
            receipts.settle(report, Match(e164(i * recipients + j)))
    return receipts, lambda: receipts.bytes


def recent(recipients: int) -> tuple[object, Callable[[], int]]:
    cache: BoundedCache[str, SendResult] = BoundedCache(
        clock, max_entries=10**7, max_bytes=HUGE, ttl_s=600, size_of=result_size
    )
    for i in range(N):
        kept = result(i, recipients)
        cache.put(kept.message_id, kept)
    return cache, lambda: cache.bytes


def done(step: Coroutine[Any, Any, object]) -> None:
    """Run a memory-store call that never suspends, without an event loop (whose own
    allocations would be counted)."""
    try:
        step.send(None)
    except StopIteration:
        return
    raise AssertionError("the memory store suspended")


def store(kind: str) -> tuple[object, Callable[[], int]]:
    memory = MemoryStateStore(clock, max_entries=10**7, max_bytes=HUGE)
    for i in range(N):
        if kind == "records":
            key, token = fresh_id(), secrets.token_hex(16)
            fp = hashlib.sha256(key.encode()).hexdigest()
            done(memory.reserve(key, fp, 30, token=token))
            memory.commit_now(key, token, encode_result(result(i)), 86_400, fingerprint=fp)
        elif kind == "marks":
            done(memory.throttle([e164(i)], "login_code", 60, token=secrets.token_hex(16)))
        elif kind == "statuses":
            status = "delivered|" + secrets.token_hex(4)
            done(memory.put_status("v1platform", fresh_id(), status, 60, recipient=e164(i)))
        else:
            link = f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"
            done(memory.put_links({f"v1platform:{fresh_id()}": link}, 60))
    return memory, lambda: memory.retained_bytes()[kind]


CASES: dict[str, Callable[[], tuple[object, Callable[[], int]]]] = {
    "sent memory, 1 number": lambda: sent(1, False),
    "sent memory, 100 numbers": lambda: sent(100, False),
    "sent memory, 10 coalesced": lambda: sent(10, True),
    "receipt book, 1 recipient": lambda: book(1),
    "receipt book, 10 recipients": lambda: book(10),
    "recent results, 1 recipient": lambda: recent(1),
    "recent results, 50 recipients": lambda: recent(50),
    "idempotency records": lambda: store("records"),
    "throttle marks": lambda: store("marks"),
    "delivery statuses": lambda: store("statuses"),
    "trace links": lambda: store("links"),
}


@pytest.mark.parametrize("case", CASES)
def test_each_byte_bound_counts_what_the_heap_holds(case: str) -> None:
    # The collector is held off while filling (it would free unrelated garbage mid-count);
    # tracemalloc sees every thread (the sandbox's emulators may run beside this test), so
    # the median of three fillings is taken.
    ratios = []
    for _ in range(3):
        gc.collect()
        gc.disable()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            kept, estimated = CASES[case]()
            measured = tracemalloc.get_traced_memory()[0] - before
            ratios.append((estimated() / measured, measured))
        finally:
            tracemalloc.stop()
            gc.enable()
        del kept
    ratio, measured = sorted(ratios)[1]
    assert LOW <= ratio <= HIGH, f"{case}: estimate / heap = {ratio:.2f} ({measured / N:.0f} B)"


async def test_a_store_that_forgets_a_mark_still_in_force_says_so(caplog: Any) -> None:
    """Past its bound the memory store drops the oldest throttle mark: harmless once the mark's
    own window is over, a warning (once a minute) while it is still in force."""
    clock = FakeClock()
    memory = MemoryStateStore(clock, max_entries=2)
    with caplog.at_level("WARNING", logger="router.state"):
        await memory.throttle(["+8613800000001", "+8613800000002"], "otp", 10)
        clock.advance(11)  # both windows over: dropping them is no loss
        await memory.throttle(["+8613800000003"], "otp", 10)
        assert caplog.records == []
        await memory.throttle(["+8613800000004", "+8613800000005"], "otp", 10)
        await memory.throttle(["+8613800000006"], "otp", 10)
    [warning] = [r.getMessage() for r in caplog.records]
    assert "throttle marks is full" in warning
    assert "second message within its throttle window" in warning
