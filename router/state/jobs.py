"""Broadcast jobs' shared state: the job, its recipient chunks, claims, journals and results.

A chunk is run by whoever claims it (a Celery worker, or the sidecar's own executor). The
claim is a lease, so the chunk of a worker that was killed is claimed again once the lease
ends. What makes that redo safe is the **journal**: every provider request of a chunk is
written to the job's journal *before* it is sent, and only while the writer still holds the
claim (the write is refused once the lease has passed, so a worker that lost its claim can
no longer send). A run that takes over a chunk reads the journal of the runs before it: those
numbers may have been sent, so they are reported ``unknown`` and never sent again; every
other number of the chunk is sent. Finishing stores the chunk's rows and adds its counts
once (a second finish of the same chunk changes nothing).

Redis keeps one hash per job (one key, one TTL) plus a sorted set of unfinished jobs; the
memory store keeps the same in a bounded dict for the in-process executor.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from router.errors import MessageError
from router.state.base import text

# Every status a recipient of a broadcast can end in: the send statuses plus "cancelled".
JOB_STATUSES = (
    "accepted",
    "rejected",
    "unknown",
    "invalid",
    "throttled",
    "unroutable",
    "cancelled",
)


@dataclass(frozen=True, slots=True)
class JobSpec:
    """What a broadcast sends; its recipients live in chunks next to it."""

    job_id: str
    fingerprint: str  # the same idempotency key must mean the same broadcast
    scene: str | None
    content: str | None
    params: Mapping[str, str | int]
    tags: Mapping[str, str]
    total: int  # recipients in chunks (duplicates removed at submit)
    duplicates: int  # entries dropped at submit as repeats of an earlier number
    chunk_size: int
    chunks: int
    created_at: float  # epoch seconds

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "job_id": self.job_id,
                "fingerprint": self.fingerprint,
                "scene": self.scene,
                "content": self.content,
                "params": dict(self.params),
                "tags": dict(self.tags),
                "total": self.total,
                "duplicates": self.duplicates,
                "chunk_size": self.chunk_size,
                "chunks": self.chunks,
                "created_at": self.created_at,
            }
        )

    @classmethod
    def decode(cls, raw: bytes | str) -> JobSpec:
        data: dict[str, Any] = orjson.loads(raw)
        return cls(**data)


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One provider request of a chunk, written before it was sent."""

    provider: str
    request_id: str  # "" when the request was shared with other messages (coalesced)
    mobiles: tuple[str, ...]  # E.164
    at: float = 0.0  # epoch seconds when it was written (just before sending)

    def line(self) -> bytes:
        fields = [self.provider, self.request_id, list(self.mobiles), self.at]
        return orjson.dumps(fields) + b"\n"

    @classmethod
    def parse(cls, raw: bytes) -> tuple[JournalEntry, ...]:
        entries = []
        for line in raw.splitlines():
            if line.strip():
                provider, request_id, mobiles, *at = orjson.loads(line)
                entries.append(cls(provider, request_id, tuple(mobiles), *at))
        return tuple(entries)


@dataclass(frozen=True, slots=True)
class Claimed:
    token: str
    journal: tuple[JournalEntry, ...]  # requests of earlier runs of this chunk
    cancelled: bool  # the job was cancelled: send nothing more, settle the chunk


@dataclass(frozen=True, slots=True)
class ChunkDone:
    """Finished before (by this or another worker): nothing to do."""


@dataclass(frozen=True, slots=True)
class ChunkBusy:
    retry_in_s: float  # another live run holds the chunk; its lease ends then


@dataclass(frozen=True, slots=True)
class JobMissing:
    """No such job (expired, or never created)."""


Claim = Claimed | ChunkDone | ChunkBusy | JobMissing


@dataclass(frozen=True, slots=True)
class JobProgress:
    spec: JobSpec
    counts: Mapping[str, int]  # recipients by status, of finished chunks
    chunks_done: int
    cancelled: bool

    @property
    def finished(self) -> bool:
        return self.chunks_done >= self.spec.chunks

    @property
    def state(self) -> str:
        if self.finished:
            return "cancelled" if self.cancelled else "done"
        return "cancelling" if self.cancelled else "running"


class JobStore(Protocol):
    async def create(
        self, spec: JobSpec, chunks: Sequence[Sequence[str]], ttl_s: float
    ) -> JobSpec | None:
        """Store a new job; if ``spec.job_id`` exists already, its spec (a resubmission);
        None if it exists with a different fingerprint (an idempotency conflict)."""
        ...

    async def spec(self, job_id: str) -> JobSpec | None: ...

    async def chunk(self, job_id: str, index: int) -> list[str]:
        """The recipients of one chunk, as given."""
        ...

    async def claim(self, job_id: str, index: int, token: str, lease_s: float) -> Claim: ...

    async def journal(self, job_id: str, index: int, token: str, entry: JournalEntry) -> bool:
        """Write ``entry`` before its request is sent; False (send nothing) when ``token``
        no longer holds a live claim on the chunk."""
        ...

    async def finish(
        self, job_id: str, index: int, token: str, rows: bytes, counts: Mapping[str, int]
    ) -> bool:
        """Store the chunk's rows and add its counts, once; False if another run finished
        it or took it over."""
        ...

    async def release(self, job_id: str, index: int, token: str) -> None:
        """Give a claim back early (nothing was finished); the journal stays."""
        ...

    async def cancel(self, job_id: str) -> bool: ...

    async def progress(self, job_id: str) -> JobProgress | None: ...

    async def unfinished_chunks(self, job_id: str) -> list[int]: ...

    async def rows(self, job_id: str, indexes: Sequence[int]) -> dict[int, bytes]:
        """Finished chunks' rows by index (chunks not finished are absent)."""
        ...

    async def active(self) -> list[str]:
        """Ids of jobs not finished yet (for an executor resuming after a restart)."""
        ...


# -- memory -------------------------------------------------------------------------------


@dataclass(slots=True)
class _Job:
    spec: JobSpec
    chunks: list[list[str]]
    expires: float
    claims: dict[int, tuple[str, float]] = field(default_factory=dict)
    journals: dict[int, bytes] = field(default_factory=dict)
    rows: dict[int, bytes] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)
    cancelled: bool = False


class MemoryJobStore:
    """One process's jobs (the in-process executor with the memory state store); bounded by
    ``max_jobs`` (the oldest finished one is forgotten first; with ``max_jobs`` running, a new
    one is refused) and by each job's TTL."""

    def __init__(self, max_jobs: int = 100) -> None:
        self._jobs: dict[str, _Job] = {}
        self._max_jobs = max_jobs

    def _get(self, job_id: str) -> _Job | None:
        job = self._jobs.get(job_id)
        if job is not None and job.expires < time.monotonic():
            del self._jobs[job_id]
            return None
        return job

    async def create(
        self, spec: JobSpec, chunks: Sequence[Sequence[str]], ttl_s: float
    ) -> JobSpec | None:
        existing = self._get(spec.job_id)
        if existing is not None:
            return existing.spec if existing.spec.fingerprint == spec.fingerprint else None
        if len(self._jobs) >= self._max_jobs:
            # Forget the oldest finished job; a running one is never dropped.
            done = [j for j, job in self._jobs.items() if len(job.rows) >= job.spec.chunks]
            if not done:
                raise MessageError(
                    f"{self._max_jobs} broadcasts are still running in this process (memory "
                    "state store): retry when one has finished, or use the Redis store"
                )
            del self._jobs[done[0]]
        self._jobs[spec.job_id] = _Job(spec, [list(c) for c in chunks], time.monotonic() + ttl_s)
        return spec

    async def spec(self, job_id: str) -> JobSpec | None:
        job = self._get(job_id)
        return None if job is None else job.spec

    async def chunk(self, job_id: str, index: int) -> list[str]:
        job = self._get(job_id)
        return [] if job is None else list(job.chunks[index])

    async def claim(self, job_id: str, index: int, token: str, lease_s: float) -> Claim:
        job = self._get(job_id)
        if job is None:
            return JobMissing()
        if index in job.rows:
            return ChunkDone()
        now = time.monotonic()
        held = job.claims.get(index)
        if held is not None and held[0] != token and held[1] > now:
            return ChunkBusy(held[1] - now)
        job.claims[index] = (token, now + lease_s)
        return Claimed(token, JournalEntry.parse(job.journals.get(index, b"")), job.cancelled)

    async def journal(self, job_id: str, index: int, token: str, entry: JournalEntry) -> bool:
        job = self._get(job_id)
        held = None if job is None else job.claims.get(index)
        if job is None or held is None or held[0] != token or held[1] <= time.monotonic():
            return False
        job.journals[index] = job.journals.get(index, b"") + entry.line()
        return True

    async def finish(
        self, job_id: str, index: int, token: str, rows: bytes, counts: Mapping[str, int]
    ) -> bool:
        job = self._get(job_id)
        held = None if job is None else job.claims.get(index)
        if job is None or index in job.rows or held is None or held[0] != token:
            return False
        job.rows[index] = rows
        job.counts.update(counts)
        del job.claims[index]
        return True

    async def release(self, job_id: str, index: int, token: str) -> None:
        job = self._get(job_id)
        if job is not None and job.claims.get(index, ("",))[0] == token:
            del job.claims[index]

    async def cancel(self, job_id: str) -> bool:
        job = self._get(job_id)
        if job is None:
            return False
        job.cancelled = True
        return True

    async def progress(self, job_id: str) -> JobProgress | None:
        job = self._get(job_id)
        if job is None:
            return None
        return JobProgress(job.spec, dict(job.counts), len(job.rows), job.cancelled)

    async def unfinished_chunks(self, job_id: str) -> list[int]:
        job = self._get(job_id)
        return [] if job is None else [i for i in range(job.spec.chunks) if i not in job.rows]

    async def rows(self, job_id: str, indexes: Sequence[int]) -> dict[int, bytes]:
        job = self._get(job_id)
        return {} if job is None else {i: job.rows[i] for i in indexes if i in job.rows}

    async def active(self) -> list[str]:
        return [
            job_id
            for job_id, job in list(self._jobs.items())
            if self._get(job_id) is not None and len(job.rows) < job.spec.chunks
        ]


# -- Redis --------------------------------------------------------------------------------

_NOW_MS = """
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function holder(k)
  local c = redis.call('HGET', KEYS[1], k)
  if not c then return nil, 0 end
  local sep = string.find(c, '|', 1, true)
  return string.sub(c, 1, sep - 1), tonumber(string.sub(c, sep + 1))
end
"""
# KEYS: job hash, active set. ARGV: fingerprint, spec, ttl ms, created (score), job id, chunks...
_CREATE = """
local fp = redis.call('HGET', KEYS[1], 'fp')
if fp then
  if fp ~= ARGV[1] then return {'conflict'} end
  return {'exists', redis.call('HGET', KEYS[1], 'spec')}
end
redis.call('HSET', KEYS[1], 'fp', ARGV[1], 'spec', ARGV[2], 'done', 0)
for i = 6, #ARGV do redis.call('HSET', KEYS[1], 'm:' .. (i - 6), ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', tonumber(ARGV[4]) - tonumber(ARGV[3]) / 1000)
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[5])
return {'created'}
"""
# ARGV: chunk index, token, lease ms
_CLAIM = (
    _NOW_MS
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'missing'} end
if redis.call('HEXISTS', KEYS[1], 'r:' .. ARGV[1]) == 1 then return {'done'} end
local tok, exp = holder('k:' .. ARGV[1])
if tok and tok ~= ARGV[2] and exp > now_ms then return {'busy', tostring(exp - now_ms)} end
redis.call('HSET', KEYS[1], 'k:' .. ARGV[1], ARGV[2] .. '|' .. (now_ms + tonumber(ARGV[3])))
local cancelled = redis.call('HEXISTS', KEYS[1], 'cancel')
return {'claimed', redis.call('HGET', KEYS[1], 'j:' .. ARGV[1]) or '', tostring(cancelled)}
"""
)
# ARGV: chunk index, token, journal line
_JOURNAL = (
    _NOW_MS
    + """
local tok, exp = holder('k:' .. ARGV[1])
if tok ~= ARGV[2] or exp <= now_ms then return 0 end
local j = redis.call('HGET', KEYS[1], 'j:' .. ARGV[1]) or ''
redis.call('HSET', KEYS[1], 'j:' .. ARGV[1], j .. ARGV[3])
return 1
"""
)
# KEYS: job hash, active set. ARGV: chunk index, token, rows, job id, then status/count pairs
_FINISH = (
    _NOW_MS
    + """
if redis.call('HEXISTS', KEYS[1], 'r:' .. ARGV[1]) == 1 then return 0 end
local tok = holder('k:' .. ARGV[1])
if tok ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'r:' .. ARGV[1], ARGV[3])
redis.call('HDEL', KEYS[1], 'k:' .. ARGV[1])
for i = 5, #ARGV, 2 do redis.call('HINCRBY', KEYS[1], 'n:' .. ARGV[i], ARGV[i + 1]) end
local done = redis.call('HINCRBY', KEYS[1], 'done', 1)
local spec = cjson.decode(redis.call('HGET', KEYS[1], 'spec'))
if done >= spec['chunks'] then redis.call('ZREM', KEYS[2], ARGV[4]) end
return 1
"""
)
_RELEASE = (
    _NOW_MS
    + """
local tok = holder('k:' .. ARGV[1])
if tok == ARGV[2] then redis.call('HDEL', KEYS[1], 'k:' .. ARGV[1]) end
return 0
"""
)
_UNFINISHED = """
local spec = redis.call('HGET', KEYS[1], 'spec')
if not spec then return {} end
local out = {}
for i = 0, cjson.decode(spec)['chunks'] - 1 do
  if redis.call('HEXISTS', KEYS[1], 'r:' .. i) == 0 then table.insert(out, i) end
end
return out
"""


class RedisJobStore:
    """Jobs in the state store's Redis, shared by every sidecar and Celery worker (built by
    :func:`job_store_for` only when the state store is Redis: redis-py is installed)."""

    def __init__(self, store: Any) -> None:
        # ``store`` is the RedisStateStore whose client, prefix and error mapping we share.
        self._store = store
        redis = store._redis
        self._redis = redis
        self._create = redis.register_script(_CREATE)
        self._claim = redis.register_script(_CLAIM)
        self._journal = redis.register_script(_JOURNAL)
        self._finish = redis.register_script(_FINISH)
        self._release = redis.register_script(_RELEASE)
        self._unfinished = redis.register_script(_UNFINISHED)

    def _key(self, job_id: str) -> str:
        return str(self._store._key("job", job_id))

    @property
    def _active(self) -> str:
        return str(self._store._key("jobs", "active"))

    async def _call(self, what: str, op: Any) -> Any:
        result: Any = await self._store._call(what, op)
        return result

    async def create(
        self, spec: JobSpec, chunks: Sequence[Sequence[str]], ttl_s: float
    ) -> JobSpec | None:
        args: list[Any] = [
            spec.fingerprint,
            spec.encode(),
            max(1, int(ttl_s * 1000)),
            spec.created_at,
            spec.job_id,
            *("\n".join(c) for c in chunks),
        ]
        keys = [self._key(spec.job_id), self._active]
        answer = await self._call("job create", lambda: self._create(keys=keys, args=args))
        kind = text(answer[0])
        if kind == "conflict":
            return None
        return JobSpec.decode(answer[1]) if kind == "exists" else spec

    async def spec(self, job_id: str) -> JobSpec | None:
        raw = await self._call("job spec", lambda: self._redis.hget(self._key(job_id), "spec"))
        return None if raw is None else JobSpec.decode(raw)

    async def chunk(self, job_id: str, index: int) -> list[str]:
        raw = await self._call(
            "job chunk", lambda: self._redis.hget(self._key(job_id), f"m:{index}")
        )
        return [] if not raw else text(raw).split("\n")

    async def claim(self, job_id: str, index: int, token: str, lease_s: float) -> Claim:
        args = [index, token, max(1, int(lease_s * 1000))]
        answer = await self._call(
            "job claim", lambda: self._claim(keys=[self._key(job_id)], args=args)
        )
        kind = text(answer[0])
        if kind == "missing":
            return JobMissing()
        if kind == "done":
            return ChunkDone()
        if kind == "busy":
            return ChunkBusy(int(answer[1]) / 1000)
        return Claimed(token, JournalEntry.parse(bytes(answer[1])), text(answer[2]) == "1")

    async def journal(self, job_id: str, index: int, token: str, entry: JournalEntry) -> bool:
        args = [index, token, entry.line()]
        ok = await self._call(
            "job journal", lambda: self._journal(keys=[self._key(job_id)], args=args)
        )
        return bool(ok)

    async def finish(
        self, job_id: str, index: int, token: str, rows: bytes, counts: Mapping[str, int]
    ) -> bool:
        args: list[Any] = [index, token, rows, job_id]
        for status, n in counts.items():
            args += [status, n]
        keys = [self._key(job_id), self._active]
        ok = await self._call("job finish", lambda: self._finish(keys=keys, args=args))
        return bool(ok)

    async def release(self, job_id: str, index: int, token: str) -> None:
        await self._call(
            "job release", lambda: self._release(keys=[self._key(job_id)], args=[index, token])
        )

    async def cancel(self, job_id: str) -> bool:
        key = self._key(job_id)

        async def mark() -> bool:
            if not await self._redis.exists(key):
                return False
            await self._redis.hset(key, "cancel", "1")
            return True

        return bool(await self._call("job cancel", mark))

    async def progress(self, job_id: str) -> JobProgress | None:
        fields = ["spec", "done", "cancel", *(f"n:{s}" for s in JOB_STATUSES)]
        values = await self._call(
            "job progress", lambda: self._redis.hmget(self._key(job_id), fields)
        )
        if values[0] is None:
            return None
        counts = {s: int(v) for s, v in zip(JOB_STATUSES, values[3:], strict=True) if v}
        return JobProgress(
            JobSpec.decode(values[0]), counts, int(values[1] or 0), values[2] is not None
        )

    async def unfinished_chunks(self, job_id: str) -> list[int]:
        answer = await self._call(
            "job unfinished", lambda: self._unfinished(keys=[self._key(job_id)], args=[])
        )
        return [int(i) for i in answer]

    async def rows(self, job_id: str, indexes: Sequence[int]) -> dict[int, bytes]:
        if not indexes:
            return {}
        fields = [f"r:{i}" for i in indexes]
        values = await self._call("job rows", lambda: self._redis.hmget(self._key(job_id), fields))
        return {i: bytes(v) for i, v in zip(indexes, values, strict=True) if v is not None}

    async def active(self) -> list[str]:
        ids = await self._call("job list", lambda: self._redis.zrange(self._active, 0, -1))
        return [text(i) for i in ids]


def job_store_for(store: object) -> JobStore:
    """Jobs live where the state store lives: Redis when it is Redis, else this process.
    A Redis store exists only once its module is loaded, so a router on the memory store
    never imports redis-py (~8 MB resident, with its OpenTelemetry and cryptography imports)."""
    redis_module = sys.modules.get("router.state.redis")
    if redis_module is not None and isinstance(store, redis_module.RedisStateStore):
        return RedisJobStore(store)
    return MemoryJobStore()


__all__ = [
    "JOB_STATUSES",
    "ChunkBusy",
    "ChunkDone",
    "Claim",
    "Claimed",
    "JobMissing",
    "JobProgress",
    "JobSpec",
    "JobStore",
    "JournalEntry",
    "MemoryJobStore",
    "RedisJobStore",
    "job_store_for",
]
