"""Broadcast jobs: one message to many recipients (up to millions), run in chunks.

``submit`` stores the job (deduplicated recipients cut into chunks sized to the providers'
batch limits) and enqueues its chunks: on Celery workers (``broadcasts.executor = "celery"``,
see :mod:`router.celery`) or on this process's own executor. Each chunk is run by
:meth:`Broadcasts.run_chunk`, which is safe to run again at any time, by anyone:

* a finished chunk is not run again (its rows and counts are stored once);
* a chunk is claimed for ``claim_s``; another live run of it is told to retry later;
* every provider request is journaled before it is sent (refused once the claim is lost),
  so a run that takes over from a killed worker reports the numbers that worker may have
  sent as ``unknown`` and never sends them again; the rest of the chunk is sent.

Hence a killed worker costs no duplicate and loses no recipient: each ends with one status.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import orjson

from providers.base import Batch, Verdict
from router.errors import (
    IdempotencyConflictError,
    InvalidMobileError,
    MessageError,
    StateStoreError,
)
from router.events import UnknownResolved
from router.ids import new_id
from router.mobile import normalise
from router.model import Message, RecipientOutcome, RecipientStatus
from router.reconcile import resend_same_id
from router.state.base import fingerprint
from router.state.jobs import (
    ChunkBusy,
    ChunkDone,
    Claimed,
    JobMissing,
    JobProgress,
    JobSpec,
    JobStore,
    JournalEntry,
)

if TYPE_CHECKING:
    from router.engine import Router

log = logging.getLogger("router.broadcasts")

# Enqueue chunks of a job for execution (local executor or Celery).
Enqueue = Callable[[str, Sequence[int]], Awaitable[None]]
TAKEN_OVER = (
    "may have been sent by an earlier run of this chunk that stopped mid-request "
    "(worker killed or lost its claim); not sent again"
)


@dataclass(frozen=True, slots=True)
class ChunkRun:
    """What one :meth:`Broadcasts.run_chunk` call did."""

    outcome: str  # "finished", "done" (before), "busy", "missing", "lost" (claim taken over)
    retry_in_s: float = 0.0
    sent: int = 0  # recipients given to the router


def job_id_for(key: str | None) -> str:
    """The same idempotency key always names the same job (a resubmission resumes it)."""
    if key is None:
        return "bc_" + new_id()
    return "bc_" + hashlib.sha256(key.encode()).hexdigest()[:32]


class Broadcasts:
    """Submit, run, follow and cancel broadcast jobs of one :class:`~router.engine.Router`."""

    def __init__(self, router: Router, jobs: JobStore) -> None:
        self.router = router
        self.jobs = jobs
        self.settings = router.settings.broadcasts
        self._enqueue: Enqueue | None = None

    @property
    def claim_s(self) -> float:
        return self.settings.claim_s or self.router.settings.send_deadline_s + 30.0

    def chunk_size(self) -> int:
        """Recipients per chunk: configured, or the largest batch of the providers, so that a
        chunk is one provider request where it can be (ceil(n / limit) requests overall)."""
        if self.settings.chunk_size:
            return self.settings.chunk_size
        return max((p.max_batch for p in self.router.providers.values()), default=200)

    def executing_with(self, enqueue: Enqueue) -> None:
        self._enqueue = enqueue

    # -- submit -----------------------------------------------------------------------------

    async def submit(self, message: Message) -> JobProgress:
        """Store and start a job for ``message`` (all its recipients); the same
        ``idempotency_key`` again returns the same job and resumes its unfinished chunks.
        Raises :class:`MessageError` for a message that could never be sent (unknown scene,
        missing params, too many recipients) and :class:`IdempotencyConflictError`."""
        total = len(message.mobiles)
        if total == 0:
            raise MessageError("a broadcast needs at least one recipient")
        if total > self.settings.max_recipients:
            raise MessageError(
                f"{total} recipients is more than broadcasts.max_recipients "
                f"({self.settings.max_recipients}); split the list or raise the limit"
            )
        # Render once now: a bad scene or missing param is the caller's to fix, before a job.
        self.router.explain(
            Message([message.mobiles[0]], message.scene, message.params, message.content)
        )
        unique, duplicates = await anyio.to_thread.run_sync(
            _unique, message.mobiles, self.router.settings.default_region
        )
        size = self.chunk_size()
        chunks = [unique[i : i + size] for i in range(0, len(unique), size)]
        spec = JobSpec(
            job_id=job_id_for(message.idempotency_key),
            fingerprint=fingerprint(message),
            scene=message.scene,
            content=message.content,
            params=dict(message.params),
            tags=dict(message.tags),
            total=len(unique),
            duplicates=duplicates,
            chunk_size=size,
            chunks=len(chunks),
            created_at=time.time(),
        )
        stored = await self.jobs.create(spec, chunks, self.settings.ttl_s)
        if stored is None:
            assert message.idempotency_key is not None
            raise IdempotencyConflictError(message.idempotency_key)
        todo = (
            list(range(spec.chunks))
            if stored is spec
            else await self.jobs.unfinished_chunks(stored.job_id)
        )
        if todo:
            await self._start(stored.job_id, todo)
        log.info(
            "broadcast %s: %d recipients in %d chunks, %d to run",
            stored.job_id,
            stored.total,
            stored.chunks,
            len(todo),
        )
        progress = await self.jobs.progress(stored.job_id)
        assert progress is not None
        return progress

    async def _start(self, job_id: str, chunks: Sequence[int]) -> None:
        if self._enqueue is None:
            raise MessageError(
                "no broadcast executor is running: enter the Router (async with) first"
            )
        await self._enqueue(job_id, chunks)

    # -- run --------------------------------------------------------------------------------

    async def run_chunk(self, job_id: str, index: int) -> ChunkRun:
        """Run one chunk (idempotent: see the module docstring). Raises StateStoreError when
        the store fails before the chunk could be finished (the caller retries it later)."""
        token = secrets.token_hex(8)
        claim = await self.jobs.claim(job_id, index, token, self.claim_s)
        if isinstance(claim, JobMissing):
            return ChunkRun("missing")
        if isinstance(claim, ChunkDone):
            return ChunkRun("done")
        if isinstance(claim, ChunkBusy):
            return ChunkRun("busy", claim.retry_in_s)
        assert isinstance(claim, Claimed)
        try:
            spec = await self.jobs.spec(job_id)
            if spec is None:
                return ChunkRun("missing")
            mobiles = await self.jobs.chunk(job_id, index)
            rows, sent = await self._send(spec, index, mobiles, claim)
        except BaseException:
            # Shielded: a cancelled run still gives its claim back (else it simply expires).
            with anyio.CancelScope(shield=True), contextlib.suppress(StateStoreError):
                await self.jobs.release(job_id, index, token)
            raise
        counts = Counter(row[2] for row in rows)
        if not await self.jobs.finish(job_id, index, token, orjson.dumps(rows), counts):
            log.warning(
                "broadcast %s chunk %d: claim taken over before it finished; the run that "
                "took it reports what this one sent as unknown",
                job_id,
                index,
            )
            return ChunkRun("lost", sent=sent)
        return ChunkRun("finished", sent=sent)

    async def _send(
        self, spec: JobSpec, index: int, mobiles: list[str], claim: Claimed
    ) -> tuple[list[list[Any]], int]:
        """The chunk's rows (one per recipient, in order) and how many were given to send."""
        # Numbers an earlier run may have sent: never sent again; settled where the provider
        # can prove what became of them, else unknown.
        settled = await self._settle_journaled(spec, claim.journal)
        region = self.router.settings.default_region
        rows: list[list[Any] | None] = [None] * len(mobiles)
        to_send: list[str] = []
        positions: dict[str, int] = {}
        for i, raw in enumerate(mobiles):
            # Normalised here only for rows settled here (the send does its own).
            e164 = _e164(raw, region) if settled or claim.cancelled else None
            if e164 is not None and e164 in settled:
                rows[i] = [raw, *settled[e164]]
            elif claim.cancelled:
                rows[i] = [raw, e164, "cancelled", None, None, "the broadcast was cancelled"]
            else:
                positions[raw] = i
                to_send.append(raw)
        if to_send:
            message = Message(to_send, spec.scene, spec.params, spec.content, None, spec.tags)

            async def journal(provider: str, request_id: str, e164s: tuple[str, ...]) -> bool:
                try:
                    entry = JournalEntry(provider, request_id, e164s, time.time())
                    return await self.jobs.journal(spec.job_id, index, claim.token, entry)
                except StateStoreError as exc:
                    log.warning("broadcast %s chunk %d not sent: %s", spec.job_id, index, exc)
                    return False

            result = await self.router.send_journaled(message, journal)
            for outcome in result.recipients:
                rows[positions[outcome.mobile]] = _row(outcome)
        return [row for row in rows if row is not None], len(to_send)

    async def _settle_journaled(
        self, spec: JobSpec, journal: Sequence[JournalEntry]
    ) -> dict[str, list[Any]]:
        """Row tails (after the mobile as given) of the numbers in earlier runs' journaled
        requests, by E.164."""
        settled: dict[str, list[Any]] = {}
        for entry in journal:
            unknown = [None, RecipientStatus.UNKNOWN.value, entry.provider, None, TAKEN_OVER]
            outcomes = await self._replay(spec, entry)
            for e164 in entry.mobiles:
                settled[e164] = [e164, *outcomes.get(e164, unknown)[1:]]
        return settled

    async def _replay(self, spec: JobSpec, entry: JournalEntry) -> dict[str, list[Any]]:
        """Resend a journaled request under its own request id where the provider refuses a
        reused one (Ronglian's reqId, one China day): a duplicate refusal proves the dead run's
        request was taken; an acceptance means it never arrived and this one went. Anything
        else, or a provider without that property: nothing settled (the numbers stay
        unknown). The same rules as the reconciler's replay of a single send."""
        router = self.router
        rt = router.runtimes.get(entry.provider)
        if (
            rt is None
            or rt.replay is None
            or not router.settings.resilience.replay_unknown
            or not entry.request_id  # a coalesced request's id is shared: proves nothing
            or not entry.at
        ):
            return {}
        first = datetime.fromtimestamp(entry.at, tz=UTC)
        if router.clock.now() >= rt.replay.replay_until(first):
            return {}
        message = Message(entry.mobiles, spec.scene, spec.params, spec.content, None, spec.tags)
        prepared = router._prepare(message, require_route=False)
        rendered = prepared.renders.get(entry.provider)
        if rendered is None:
            return {}
        batch = Batch(
            entry.request_id, tuple(t.mobile for t in prepared.recipients.trackers), rendered
        )
        result, taken = await resend_same_id(rt, batch, rt.provider.settings.timeout_s)
        if taken:
            why = "taken from an earlier run's request (its request id was refused as a reuse)"
            rows = {m.e164: [m.e164, "accepted", entry.provider, None, why] for m in batch.mobiles}
            outcome = {"taken": len(rows)}
        else:
            rows, outcome = {}, {}
            for r in result.recipients:
                if r.verdict is Verdict.ACCEPTED:
                    rows[r.mobile.e164] = [
                        r.mobile.e164,
                        "accepted",
                        entry.provider,
                        r.provider_message_id,
                        None,
                    ]
                    outcome["sent"] = outcome.get("sent", 0) + 1
                else:
                    outcome["unknown"] = outcome.get("unknown", 0) + 1
        for kind, n in outcome.items():
            router.events.emit(UnknownResolved(entry.provider, "replay", kind, n, ""))
        log.info(
            "broadcast %s: earlier run's request at %s settled: %s",
            spec.job_id,
            entry.provider,
            outcome,
        )
        return rows

    # -- follow -----------------------------------------------------------------------------

    async def progress(self, job_id: str) -> JobProgress | None:
        return await self.jobs.progress(job_id)

    async def cancel(self, job_id: str) -> JobProgress | None:
        """Stop sending: chunks not started settle as ``cancelled``; running ones finish."""
        if not await self.jobs.cancel(job_id):
            return None
        todo = await self.jobs.unfinished_chunks(job_id)
        if todo:  # settle the chunks nobody is running, so the job reaches "cancelled"
            await self._start(job_id, todo)
        return await self.jobs.progress(job_id)

    async def results(
        self, job_id: str, offset: int, limit: int
    ) -> tuple[JobProgress, list[dict[str, Any]]] | None:
        """Recipients ``offset`` .. ``offset + limit`` in submission order (duplicates
        dropped); those of chunks still running have status ``pending``."""
        progress = await self.jobs.progress(job_id)
        if progress is None:
            return None
        spec = progress.spec
        end = min(spec.total, offset + limit)
        if offset >= end:
            return progress, []
        first, last = offset // spec.chunk_size, (end - 1) // spec.chunk_size
        indexes = list(range(first, last + 1))
        stored = await self.jobs.rows(job_id, indexes)
        out: list[dict[str, Any]] = []
        for i in indexes:
            if i in stored:
                rows: list[list[Any]] = orjson.loads(stored[i])
            else:
                rows = [
                    [m, None, "pending", None, None, None] for m in await self.jobs.chunk(job_id, i)
                ]
            start = i * spec.chunk_size
            lo, hi = max(offset - start, 0), min(end - start, len(rows))
            out += [_row_json(r) for r in rows[lo:hi]]
        return progress, out


# -- the local executor -------------------------------------------------------------------


class LocalExecutor:
    """Runs chunks in this process, ``concurrency`` at once; resumes unfinished jobs of
    the store at start (several instances may: a chunk runs once whoever claims it)."""

    def __init__(self, broadcasts: Broadcasts) -> None:
        self.broadcasts = broadcasts
        self._send, self._receive = anyio.create_memory_object_stream[tuple[str, int]](
            max_buffer_size=math.inf
        )

    async def enqueue(self, job_id: str, chunks: Sequence[int]) -> None:
        for index in chunks:
            self._send.send_nowait((job_id, index))

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        self.broadcasts.executing_with(self.enqueue)
        task_status.started()
        try:
            for job_id in await self.broadcasts.jobs.active():
                await self.enqueue(job_id, await self.broadcasts.jobs.unfinished_chunks(job_id))
        except StateStoreError as exc:
            log.warning("unfinished broadcasts not resumed at start: %s", exc)
        async with anyio.create_task_group() as tg:
            for _ in range(self.broadcasts.settings.concurrency):
                tg.start_soon(self._worker)

    async def _worker(self) -> None:
        async for job_id, index in self._receive:
            try:
                run = await self.broadcasts.run_chunk(job_id, index)
            except StateStoreError as exc:
                log.warning("broadcast %s chunk %d: %s; retried in 1 s", job_id, index, exc)
                run = ChunkRun("busy", 1.0)
            except Exception:
                log.exception("broadcast %s chunk %d failed; retried in 5 s", job_id, index)
                run = ChunkRun("busy", 5.0)
            if run.outcome == "busy":
                await anyio.sleep(min(run.retry_in_s, 5.0))
                self._send.send_nowait((job_id, index))


# -- helpers ------------------------------------------------------------------------------


def _e164(raw: str, region: str) -> str | None:
    try:
        return normalise(raw, region).e164
    except InvalidMobileError:
        return None


def _unique(mobiles: Iterable[str], region: str) -> tuple[list[str], int]:
    """The recipients in order with repeats of a number (same E.164) dropped: one SMS per
    number per broadcast, even across chunks. Invalid entries stay (reported invalid)."""
    seen: set[str] = set()
    out: list[str] = []
    duplicates = 0
    for raw in mobiles:
        key = _e164(raw, region) or f"invalid:{raw}"
        if key in seen:
            duplicates += 1
            continue
        seen.add(key)
        out.append(raw)
    return out, duplicates


def _row(r: RecipientOutcome) -> list[Any]:
    return [r.mobile, r.normalised, r.status.value, r.provider, r.provider_message_id, r.error]


def _row_json(row: Sequence[Any]) -> dict[str, Any]:
    mobile, normalised, status, provider, message_id, error = row
    return {
        "mobile": mobile,
        "normalised": normalised,
        "status": status,
        "provider": provider,
        "provider_message_id": message_id,
        "error": error,
    }


def counts_json(progress: JobProgress) -> Mapping[str, Any]:
    spec = progress.spec
    done = sum(progress.counts.values())
    return {
        "job_id": spec.job_id,
        "state": progress.state,
        "total": spec.total,
        "duplicates_dropped": spec.duplicates,
        "chunks": spec.chunks,
        "chunks_done": progress.chunks_done,
        "pending": spec.total - done,
        "counts": dict(progress.counts),
    }
