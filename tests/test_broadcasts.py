"""Broadcast jobs: the job store's contract (memory and a real Redis alike), and whole jobs
run by the router against the emulators: each number sent once, in ceil(n / limit) provider
requests; a chunk taken over from a killed run never re-sends what that run may have sent;
cancel; results in submission order; resubmission with the same key resumes the same job."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from providers.base import Batch, Verdict
from providers.emulators._common import FaultSettings
from providers.http import send_batch
from router.broadcasts import TAKEN_OVER, Broadcasts, job_id_for
from router.errors import IdempotencyConflictError, MessageError
from router.ids import new_id
from router.model import Message
from router.state.jobs import (
    ChunkBusy,
    ChunkDone,
    Claimed,
    JobMissing,
    JobSpec,
    JobStore,
    JournalEntry,
    MemoryJobStore,
    RedisJobStore,
    job_store_for,
)
from router.state.memory import MemoryStateStore
from router.state.redis import RedisStateStore
from tests.redis_server import redis_url
from tests.sandbox import RunningSandbox, only

pytestmark = pytest.mark.anyio
NUMBERS = [f"1380000{i:04d}" for i in range(2500)]


def _spec(job_id: str, chunks: list[list[str]], fp: str = "fp") -> JobSpec:
    return JobSpec(
        job_id=job_id,
        fingerprint=fp,
        scene="login_code",
        content=None,
        params={"code": "1"},
        tags={},
        total=sum(map(len, chunks)),
        duplicates=0,
        chunk_size=max(map(len, chunks)),
        chunks=len(chunks),
        created_at=time.time(),
    )


@pytest.fixture(params=["memory", "redis"])
async def jobs(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[JobStore]:
    if request.param == "memory":
        yield MemoryJobStore()
        return
    with redis_url(tmp_path) as (url, prefix):
        store = RedisStateStore.from_url(url, prefix=f"{prefix}{uuid.uuid4().hex[:6]}:")
        yield RedisJobStore(store)
        await store.aclose()


async def test_jobs_live_where_the_state_store_lives(tmp_path: Path) -> None:
    """A Redis state store shares its jobs through Redis; the memory store keeps them here."""
    assert isinstance(job_store_for(MemoryStateStore()), MemoryJobStore)
    with redis_url(tmp_path) as (url, prefix):
        store = RedisStateStore.from_url(url, prefix=prefix)
        try:
            assert isinstance(job_store_for(store), RedisJobStore)
        finally:
            await store.aclose()


async def test_the_job_store_contract(jobs: JobStore) -> None:
    chunks = [["13800000001", "13800000002"], ["13800000003"]]
    spec = _spec("bc_1", chunks)
    assert await jobs.create(spec, chunks, 60) == spec
    assert await jobs.create(spec, chunks, 60) == spec  # a resubmission: the stored spec
    assert await jobs.create(_spec("bc_1", chunks, fp="other"), chunks, 60) is None
    assert await jobs.chunk("bc_1", 1) == ["13800000003"]
    assert await jobs.active() == ["bc_1"]

    first = await jobs.claim("bc_1", 0, "run-a", 0.3)
    assert first == Claimed("run-a", (), False)
    busy = await jobs.claim("bc_1", 0, "run-b", 30)
    assert isinstance(busy, ChunkBusy) and 0 < busy.retry_in_s <= 0.3
    entry = JournalEntry("v1platform", "req-1", ("+8613800000001",))
    assert await jobs.journal("bc_1", 0, "run-a", entry)
    assert not await jobs.journal("bc_1", 0, "run-b", entry)  # not the holder: send nothing

    await anyio.sleep(0.4)  # run-a's lease ends (killed): run-b takes over, sees its journal
    assert not await jobs.journal("bc_1", 0, "run-a", entry)  # a lost claim cannot send
    taken = await jobs.claim("bc_1", 0, "run-b", 30)
    assert taken == Claimed("run-b", (entry,), False)
    assert not await jobs.finish("bc_1", 0, "run-a", b"[]", {"accepted": 2})
    assert await jobs.finish("bc_1", 0, "run-b", b'[["x"]]', {"unknown": 1, "accepted": 1})
    assert not await jobs.finish("bc_1", 0, "run-b", b"[]", {"accepted": 9})  # counted once
    assert await jobs.claim("bc_1", 0, "run-c", 30) == ChunkDone()
    assert await jobs.unfinished_chunks("bc_1") == [1]

    assert await jobs.cancel("bc_1")
    last = await jobs.claim("bc_1", 1, "run-d", 30)
    assert isinstance(last, Claimed) and last.cancelled
    await jobs.release("bc_1", 1, "run-d")
    again = await jobs.claim("bc_1", 1, "run-e", 30)  # released: no wait for the lease
    assert isinstance(again, Claimed)
    assert await jobs.finish("bc_1", 1, "run-e", b"[]", {"cancelled": 1})
    progress = await jobs.progress("bc_1")
    assert progress is not None
    assert progress.counts == {"unknown": 1, "accepted": 1, "cancelled": 1}
    assert (progress.chunks_done, progress.state) == (2, "cancelled")
    assert await jobs.rows("bc_1", [0, 1]) == {0: b'[["x"]]', 1: b"[]"}
    assert await jobs.active() == []
    assert await jobs.claim("bc_nope", 0, "run", 1) == JobMissing()
    assert await jobs.progress("bc_nope") is None and not await jobs.cancel("bc_nope")


def _sent(sandbox: RunningSandbox, *providers: str) -> list[str]:
    return [m for p in providers for batch in sandbox.mobiles_sent(p) for m in batch]


async def _finished(broadcasts: Broadcasts, job_id: str, timeout_s: float = 30) -> None:
    with anyio.fail_after(timeout_s):
        while True:
            progress = await broadcasts.progress(job_id)
            assert progress is not None
            if progress.finished:
                return
            await anyio.sleep(0.02)


async def test_a_broadcast_sends_each_number_once_in_ceil_n_over_limit_requests(
    sandbox: RunningSandbox,
) -> None:
    sandbox.reset()
    given_list = [*NUMBERS, *NUMBERS[:10], "+86 138-0000-0000", "12345"]
    async with only(sandbox, "ronglian", broadcasts={"chunk_size": 1000}) as router:
        message = Message(given_list, "login_code", {"code": "7"}, idempotency_key="notice:1")
        started = await router.broadcasts.submit(message)
        assert started.spec.job_id == job_id_for("notice:1")
        assert (started.spec.total, started.spec.duplicates) == (2501, 11)
        await _finished(router.broadcasts, started.spec.job_id)
        done = await router.broadcasts.progress(started.spec.job_id)
        assert done is not None and done.state == "done"
        assert done.counts == {"accepted": 2500, "invalid": 1}
        # Resubmitting the same key: the same job, nothing sent again.
        again = await router.broadcasts.submit(message)
        assert again.spec.job_id == started.spec.job_id and again.finished
        with pytest.raises(IdempotencyConflictError):
            await router.broadcasts.submit(
                Message(NUMBERS, "login_code", {"code": "8"}, idempotency_key="notice:1")
            )
        found = await router.broadcasts.results(started.spec.job_id, 990, 20)
        assert found is not None
        rows = found[1]
        assert [r["mobile"] for r in rows] == NUMBERS[990:1010]  # across a chunk boundary
        assert {r["status"] for r in rows} == {"accepted"}
        assert all(r["provider"] == "ronglian" and r["provider_message_id"] for r in rows)
        tail = await router.broadcasts.results(started.spec.job_id, 2499, 100)
        assert tail is not None and [r["status"] for r in tail[1]] == ["accepted", "invalid"]
    sent = _sent(sandbox, "ronglian")
    assert Counter(sent) == Counter(NUMBERS)  # every number once, repeats dropped
    assert len(sandbox.sends("ronglian")) == 13  # ceil(2500 / 200): chunks are whole batches


async def test_a_chunk_taken_over_from_a_killed_run_never_resends_what_it_may_have_sent(
    sandbox: RunningSandbox,
) -> None:
    sandbox.reset()
    no_replay = {"replay_unknown": False}  # this test: the plain takeover, nothing settled
    async with only(
        sandbox, "ronglian", broadcasts={"claim_s": 0.5}, resilience=no_replay
    ) as router:
        jobs = router.broadcasts.jobs
        chunk = NUMBERS[:600]
        spec = _spec("bc_killed", [chunk])
        await jobs.create(spec, [chunk], 60)
        # A run claims the chunk, journals its first request (200 numbers) and is killed.
        assert isinstance(await jobs.claim("bc_killed", 0, "dead", 0.5), Claimed)
        first = tuple(f"+86{m}" for m in chunk[:200])
        assert await jobs.journal("bc_killed", 0, "dead", JournalEntry("ronglian", "r1", first))
        early = await router.broadcasts.run_chunk("bc_killed", 0)
        assert early.outcome == "busy" and early.retry_in_s > 0  # its lease still runs
        await anyio.sleep(0.6)
        run = await router.broadcasts.run_chunk("bc_killed", 0)
        assert (run.outcome, run.sent) == ("finished", 400)
        progress = await jobs.progress("bc_killed")
        assert progress is not None and progress.counts == {"unknown": 200, "accepted": 400}
        found = await router.broadcasts.results("bc_killed", 0, 600)
        assert found is not None
        assert [r["error"] for r in found[1][:200]] == [TAKEN_OVER] * 200
        assert (await router.broadcasts.run_chunk("bc_killed", 0)).outcome == "done"
    assert sorted(_sent(sandbox, "ronglian")) == sorted(chunk[200:])  # never the journaled


async def test_cancel_stops_a_running_broadcast_and_every_recipient_still_has_a_status(
    sandbox: RunningSandbox,
) -> None:
    sandbox.reset()
    sandbox.state("ronglian").set_faults(FaultSettings(latency_s=0.2))
    try:
        async with only(
            sandbox, "ronglian", broadcasts={"chunk_size": 200, "concurrency": 1}
        ) as router:
            started = await router.broadcasts.submit(
                Message(NUMBERS[:2000], "login_code", {"code": "1"})
            )
            with anyio.fail_after(10):
                while True:
                    p = await router.broadcasts.progress(started.spec.job_id)
                    if p is not None and p.chunks_done >= 1:
                        break
                    await anyio.sleep(0.01)
            assert await router.broadcasts.cancel(started.spec.job_id) is not None
            await _finished(router.broadcasts, started.spec.job_id)
            done = await router.broadcasts.progress(started.spec.job_id)
    finally:
        sandbox.state("ronglian").set_faults(FaultSettings())
    assert done is not None and done.state == "cancelled"
    assert sum(done.counts.values()) == 2000
    assert 200 <= done.counts["accepted"] < 2000 and done.counts["cancelled"] > 0
    assert len(_sent(sandbox, "ronglian")) == done.counts["accepted"]


async def test_a_broadcast_with_an_unknown_scene_is_refused_before_any_job(
    sandbox: RunningSandbox,
) -> None:
    async with only(sandbox, "ronglian") as router:
        with pytest.raises(MessageError, match="scene"):
            await router.broadcasts.submit(Message(NUMBERS[:5], "no_such_scene"))
        small = only(sandbox, "ronglian", broadcasts={"max_recipients": 3})
        with pytest.raises(MessageError, match="max_recipients"):
            await small.broadcasts.submit(Message(NUMBERS[:5], "login_code", {"code": "1"}))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from([*NUMBERS[:6], "+86 13800000001", "123", "abc"]), max_size=30))
def test_repeats_are_dropped_by_number_not_by_spelling(mobiles: list[str]) -> None:
    from router.broadcasts import _unique

    unique, duplicates = _unique(mobiles, "CN")
    assert len(unique) + duplicates == len(mobiles)
    assert len({m[-11:] if len(m) > 5 else m for m in unique}) == len(unique)
    assert unique == [m for i, m in enumerate(mobiles) if m in unique and mobiles.index(m) == i]


async def test_a_taken_over_ronglian_request_is_settled_by_its_own_request_id(
    sandbox: RunningSandbox,
) -> None:
    """The dead run journaled two Ronglian requests: the first reached the provider, the
    second never left. Resent under their own reqIds, the first is refused as a reuse (so it
    was taken: accepted) and the second is accepted (it never arrived: this is its one SMS)."""
    sandbox.reset()
    async with only(sandbox, "ronglian", broadcasts={"claim_s": 0.5}) as router:
        jobs = router.broadcasts.jobs
        chunk = NUMBERS[:500]
        await jobs.create(_spec("bc_replay", [chunk]), [chunk], 60)
        assert isinstance(await jobs.claim("bc_replay", 0, "dead", 0.5), Claimed)
        sent_first, never_sent = chunk[:200], chunk[200:400]
        rt = router.runtimes["ronglian"]
        prepared = router._prepare(Message(sent_first, "login_code", {"code": "1"}))
        first = Batch(
            new_id(),
            tuple(t.mobile for t in prepared.recipients.trackers),
            prepared.renders["ronglian"],
        )
        for numbers, request_id in ((sent_first, first.request_id), (never_sent, new_id())):
            entry = JournalEntry(
                "ronglian", request_id, tuple(f"+86{m}" for m in numbers), time.time()
            )
            assert await jobs.journal("bc_replay", 0, "dead", entry)
        taken = await send_batch(rt.provider, rt.client, first)  # ...and then it was killed
        assert taken.verdict is Verdict.ACCEPTED
        await anyio.sleep(0.6)
        run = await router.broadcasts.run_chunk("bc_replay", 0)
        assert (run.outcome, run.sent) == ("finished", 100)
        progress = await jobs.progress("bc_replay")
        found = await router.broadcasts.results("bc_replay", 0, 500)
    assert progress is not None and progress.counts == {"accepted": 500}
    assert found is not None
    rows = found[1]
    assert {r["error"] for r in rows[:200]} == {
        "taken from an earlier run's request (its request id was refused as a reuse)"
    }
    assert all(r["provider_message_id"] for r in rows[200:])  # resent: this is their SMS
    # Every number taken exactly once (the resend of the first request was refused, not taken).
    assert Counter(sandbox.state("ronglian").taken) == Counter(chunk)


async def test_the_memory_store_never_drops_a_running_job() -> None:
    jobs = MemoryJobStore(max_jobs=2)
    chunks = [["13800000001"]]
    for name in ("bc_a", "bc_b"):
        await jobs.create(_spec(name, chunks), chunks, 60)
    with pytest.raises(MessageError, match="still running"):
        await jobs.create(_spec("bc_c", chunks), chunks, 60)
    assert isinstance(await jobs.claim("bc_a", 0, "t", 30), Claimed)
    assert await jobs.finish("bc_a", 0, "t", b"[]", {"accepted": 1})
    await jobs.create(_spec("bc_c", chunks), chunks, 60)  # the finished one makes room
    assert await jobs.progress("bc_a") is None and await jobs.progress("bc_b") is not None
