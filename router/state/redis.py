"""Redis state store (redis-py asyncio): several router instances behave as one.

Every key is under ``prefix`` and carries a TTL. Reserve/commit/release are Lua scripts, so
each is one atomic round trip; per-mobile throttles are one pipelined round trip for the whole
list (``SET NX PX`` per mobile). Mobile numbers are hashed into key names, so a key listing
never shows a phone number. Any Redis failure becomes :class:`StateStoreError`: the router
then refuses to send rather than risk a double send (fail closed).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from router.errors import ConfigError, StateStoreError
from router.state.base import (
    Acquired,
    Conflict,
    Done,
    InProgress,
    Reservation,
    StatsCounts,
    text,
)

T = TypeVar("T")

# A write that timed out on our side may still be applied when a frozen Redis resumes. Writes
# that would leave false state if applied late (a lease nobody holds, a throttle mark for a
# mobile that got no SMS) are fenced: the script refuses to apply after ARGV's valid-until time
# (Redis' own clock, TIME), so after that time a compensation (release, unthrottle by token)
# settles the key for good.
_NOW_MS = """
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""
_RESERVE = (
    _NOW_MS
    + """
if now_ms > tonumber(ARGV[4]) then return {'late'} end
local fp = redis.call('HGET', KEYS[1], 'fp')
if not fp then
  redis.call('HSET', KEYS[1], 'fp', ARGV[1], 'token', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return {'acquired'}
end
if fp ~= ARGV[1] then return {'conflict'} end
local payload = redis.call('HGET', KEYS[1], 'payload')
if payload then return {'done', payload} end
return {'progress'}
"""
)
# Idempotent, so the outbox may retry it: a commit already applied (owner) answers 1 again, and
# a lease that expired with nobody else taking the key is re-created from the fingerprint.
_COMMIT = """
if redis.call('HGET', KEYS[1], 'owner') == ARGV[1] then return 1 end
local token = redis.call('HGET', KEYS[1], 'token')
if token ~= ARGV[1] then
  if ARGV[4] == '' or redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
  redis.call('HSET', KEYS[1], 'fp', ARGV[4])
end
redis.call('HSET', KEYS[1], 'payload', ARGV[2], 'owner', ARGV[1])
redis.call('HDEL', KEYS[1], 'token')
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""
_RELEASE = """
if redis.call('HGET', KEYS[1], 'token') == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_THROTTLE = (
    _NOW_MS
    + """
if now_ms > tonumber(ARGV[3]) then return 'late' end
local taken = {}
for i, key in ipairs(KEYS) do
  if redis.call('SET', key, ARGV[1], 'NX', 'PX', ARGV[2]) then taken[i] = 1 else taken[i] = 0 end
end
return taken
"""
)
_UNTHROTTLE = """
local n = 0
for _, key in ipairs(KEYS) do
  if ARGV[1] == '' or redis.call('GET', key) == ARGV[1] then n = n + redis.call('DEL', key) end
end
return n
"""

# GCRA on Redis' own clock (microseconds): one theoretical arrival time per limit. Every call
# reserves a slot and returns how long its caller waits for it, so N instances together send
# at the configured rate, bursts of `burst` included. ARGV: emission interval, burst tolerance.
_TAKE_RATE = """
local now = redis.call('TIME')
local now_us = tonumber(now[1]) * 1000000 + tonumber(now[2])
local interval, tolerance = tonumber(ARGV[1]), tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now_us)
if tat < now_us then tat = now_us end
local wait = tat - tolerance - now_us
if wait < 0 then wait = 0 end
local new_tat = tat + interval
redis.call('SET', KEYS[1], new_tat, 'PX', math.floor((new_tat - now_us) / 1000) + 1000)
return wait
"""


# Shared provider quality and spend (every instance's together): add this instance's deltas
# to the current buckets, then sum the window's buckets. Bucket keys: ARGV prefix .. index
# (wall-clock buckets, the same on every instance). Returned as strings: Lua numbers would be
# truncated to integers on the way out.
_SYNC_STATS = """
local qkey, qi, qn, qttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local skey, si, sn, sttl = ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7]), ARGV[8]
local fields = {'a', 'n', 'l', 'd', 'r'}
local touched = false
for j = 1, 5 do
  if tonumber(ARGV[8 + j]) ~= 0 then
    redis.call('HINCRBYFLOAT', qkey .. qi, fields[j], ARGV[8 + j])
    touched = true
  end
end
if touched then redis.call('PEXPIRE', qkey .. qi, qttl) end
if tonumber(ARGV[14]) ~= 0 then
  redis.call('INCRBYFLOAT', skey .. si, ARGV[14])
  redis.call('PEXPIRE', skey .. si, sttl)
end
local sums = {0, 0, 0, 0, 0, 0}
for i = qi - qn + 1, qi do
  local v = redis.call('HMGET', qkey .. i, 'a', 'n', 'l', 'd', 'r')
  for j = 1, 5 do sums[j] = sums[j] + (tonumber(v[j]) or 0) end
end
for i = si - sn + 1, si do sums[6] = sums[6] + (tonumber(redis.call('GET', skey .. i)) or 0) end
local out = {}
for j = 1, 6 do out[j] = tostring(sums[j]) end
return out
"""
STATS_BUCKETS = 60


# A counting semaphore with leases on Redis' clock: holders are zset members scored by when
# their lease ends, so a crashed holder's slot frees itself. ARGV: token, limit, lease ms.
_TAKE_SLOT = (
    _NOW_MS
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now_ms + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]) + 1000)
return 1
"""
)


SENTINEL_SCHEME = "redis+sentinel"


def _value(config: Any, key: str) -> str:
    """One CONFIG GET value as text (redis-py answers a dict, bytes or str)."""
    return text(dict(config).get(key, dict(config).get(key.encode(), "")) if config else "")


def _via_sentinel(url: str, options: dict[str, Any]) -> tuple[aioredis.Redis, str]:
    """The master client of a ``redis+sentinel://`` URL, and a printable where (no password)."""
    parts = urlsplit(url)
    auth, _, hosts = parts.netloc.rpartition("@")
    password = unquote(auth.partition(":")[2]) if auth else None
    nodes: list[tuple[str, int]] = []
    for node in hosts.split(","):
        host, _, port = node.rpartition(":") if ":" in node else (node, "", "26379")
        if not host or not port.isdigit():
            raise ConfigError("state.redis_url", f"sentinel address {node!r} is not host:port")
        nodes.append((host, int(port)))
    path = [p for p in parts.path.split("/") if p]
    if not path or (len(path) > 1 and not path[1].isdigit()) or len(path) > 2:
        raise ConfigError(
            "state.redis_url",
            "a redis+sentinel URL names the master: "
            "redis+sentinel://host:26379[,host:26379]/<service>[/<db>]",
        )
    service, db = path[0], int(path[1]) if len(path) > 1 else 0
    timeouts = {k: options[k] for k in ("socket_timeout", "socket_connect_timeout")}
    sentinel = Sentinel(  # type: ignore[no-untyped-call, unused-ignore]  # typed from redis 8.2
        nodes, sentinel_kwargs=timeouts, password=password, db=db, **options
    )
    return sentinel.master_for(service), f"sentinel master {service!r} via {hosts}"


class RedisStateStore:
    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str = "smsrouter:",
        where: str,
        timeout_s: float = 0.5,
        clock_skew_s: float = 1.0,
    ) -> None:
        """``clock_skew_s`` bounds how far this host's clock may be from Redis' own: fenced
        writes stay valid ``timeout_s + clock_skew_s`` after they are sent."""
        self._redis = client
        self._prefix = prefix
        self._where = where  # host:port, for error messages (never the password)
        self._fence_s = timeout_s + clock_skew_s
        self._skew_s = clock_skew_s
        self._reserve = client.register_script(_RESERVE)
        self._commit = client.register_script(_COMMIT)
        self._release = client.register_script(_RELEASE)
        self._throttle = client.register_script(_THROTTLE)
        self._unthrottle = client.register_script(_UNTHROTTLE)
        self._take_rate = client.register_script(_TAKE_RATE)
        self._sync_stats = client.register_script(_SYNC_STATS)
        self._take_slot = client.register_script(_TAKE_SLOT)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = "smsrouter:",
        timeout_s: float = 0.5,
        clock_skew_s: float = 1.0,
    ) -> RedisStateStore:
        """Bounded timeouts and no retries: an unreachable Redis is reported within
        ``timeout_s``, never waited out while a send holds its deadline.

        ``redis+sentinel://[:password@]host:26379[,host:26379...]/<service>[/<db>]`` finds the
        master through Redis Sentinel (and follows a failover)."""
        options: dict[str, Any] = {
            "socket_timeout": timeout_s,
            "socket_connect_timeout": timeout_s,
            "retry": Retry(NoBackoff(), 0),
            "retry_on_timeout": False,
            # RESP2: redis-py 8's default maintenance notifications keep connections the
            # server closed after a restart, so a live router would refuse sends until they age.
            "protocol": 2,
        }
        if url.startswith(SENTINEL_SCHEME + "://"):
            client, where = _via_sentinel(url, options)
        else:
            client = aioredis.Redis.from_url(url, **options)
            parts = urlsplit(url)
            where = f"{parts.hostname}:{parts.port or 6379}"
        return cls(
            client, prefix=prefix, where=where, timeout_s=timeout_s, clock_skew_s=clock_skew_s
        )

    async def production_warnings(self) -> list[str]:
        """What in this Redis' configuration breaks the router's guarantees (checked at
        start-up; a managed Redis that refuses CONFIG GET is not second-guessed)."""
        try:
            policy = await self._redis.config_get("maxmemory-policy")
            persistence = await self._redis.config_get("appendonly")
            snapshots = await self._redis.config_get("save")
        except (RedisError, OSError):
            return []
        warnings = []
        if _value(policy, "maxmemory-policy") not in ("noeviction", ""):
            warnings.append(
                f"Redis at {self._where} has maxmemory-policy "
                f"{_value(policy, 'maxmemory-policy')}: idempotency records may be evicted "
                "under memory pressure (a retry could then send twice); set noeviction"
            )
        if _value(persistence, "appendonly") != "yes" and not _value(snapshots, "save"):
            warnings.append(
                f"Redis at {self._where} keeps nothing on disk (appendonly no, no save "
                "points): a restart forgets idempotency records; enable appendonly"
            )
        return warnings

    def _valid_until(self) -> tuple[int, float]:
        """A fenced write's valid-until (ms, for the script) and when it is surely settled.
        Wall time on purpose: it is compared with Redis' clock, not with the router's."""
        until = time.time() + self._fence_s
        return int(until * 1000), until + self._skew_s

    async def _call(
        self, what: str, op: Callable[[], Awaitable[T]], *, settles_at: float | None = None
    ) -> T:
        try:
            return await op()
        except (RedisError, OSError) as exc:
            # Only what failed: whether anything was sent is for the caller to say.
            raise StateStoreError(
                f"Redis at {self._where} failed during {what} ({type(exc).__name__}); "
                "check that it is running and reachable.",
                operation=what,
                settles_at=settles_at,
            ) from None

    def _late(self, what: str) -> StateStoreError:
        return StateStoreError(
            f"Redis at {self._where} refused a late {what}: it arrived after its valid-until "
            "time (delayed by an overloaded host or network, or this host's clock disagrees "
            "with Redis' by more than state.clock_skew_s).",
            operation=what,
        )

    def _key(self, kind: str, name: str) -> str:
        return f"{self._prefix}{kind}:{name}"

    async def reserve(
        self, key: str, fingerprint: str, lease_s: float, *, token: str = ""
    ) -> Reservation:
        token = token or secrets.token_hex(16)
        valid_ms, settles_at = self._valid_until()
        args: list[str | bytes | int] = [fingerprint, token, max(1, int(lease_s * 1000)), valid_ms]
        answer: Any = await self._call(
            "reserve",
            lambda: self._reserve(keys=[self._key("idem", key)], args=args),
            settles_at=settles_at,
        )
        state = answer[0].decode() if isinstance(answer[0], bytes) else answer[0]
        if state == "acquired":
            return Acquired(token)
        if state == "conflict":
            return Conflict()
        if state == "done":
            return Done(bytes(answer[1]))
        if state == "late":
            raise self._late("reserve")
        return InProgress()

    async def commit(
        self, key: str, token: str, payload: bytes, ttl_s: float, *, fingerprint: str = ""
    ) -> bool:
        args: list[str | bytes | int] = [token, payload, max(1, int(ttl_s * 1000)), fingerprint]
        done: Any = await self._call(
            "commit", lambda: self._commit(keys=[self._key("idem", key)], args=args)
        )
        return bool(done)

    async def release(self, key: str, token: str) -> None:
        await self._call(
            "release", lambda: self._release(keys=[self._key("idem", key)], args=[token])
        )

    def _mark(self, scope: str, mobile: str) -> str:
        digest = hashlib.sha256(mobile.encode()).hexdigest()[:24]
        return self._key("thr", f"{scope}:{digest}")

    async def throttle(
        self,
        mobiles: Sequence[str],
        scope: str,
        window_s: float,
        *,
        token: str = "1",  # noqa: S107
    ) -> set[str]:
        if not mobiles:
            return set()
        keys = [self._mark(scope, m) for m in mobiles]
        valid_ms, settles_at = self._valid_until()
        args: list[str | int] = [token, max(1, int(window_s * 1000)), valid_ms]
        answers: Any = await self._call(
            "throttle", lambda: self._throttle(keys=keys, args=args), settles_at=settles_at
        )
        if not isinstance(answers, list):
            raise self._late("throttle")
        return {m for m, taken in zip(mobiles, answers, strict=True) if not taken}

    async def unthrottle(self, mobiles: Sequence[str], scope: str, *, token: str = "") -> None:
        if mobiles:
            keys = [self._mark(scope, m) for m in mobiles]
            await self._call("unthrottle", lambda: self._unthrottle(keys=keys, args=[token]))

    def _status_key(self, provider: str, message_id: str, recipient: str) -> str:
        # The recipient is hashed like throttle marks: no phone number in a key name.
        who = f":{hashlib.sha256(recipient.encode()).hexdigest()[:24]}" if recipient else ""
        return self._key("status", f"{provider}:{message_id}{who}")

    async def put_status(
        self, provider: str, message_id: str, status: str, ttl_s: float, *, recipient: str = ""
    ) -> bool:
        key = self._status_key(provider, message_id, recipient)
        px = max(1, int(ttl_s * 1000))
        created: Any = await self._call(
            "put_status", lambda: self._redis.set(key, status.encode(), nx=True, px=px)
        )
        return bool(created)

    async def get_status(
        self, provider: str, message_id: str, *, recipient: str = ""
    ) -> str | None:
        key = self._status_key(provider, message_id, recipient)
        value: Any = await self._call("get_status", lambda: self._redis.get(key))
        return None if value is None else bytes(value).decode()

    async def take_rate(self, key: str, rate: float, burst: float) -> float:
        interval_us = max(1, int(1_000_000 / rate))
        tolerance_us = int((burst - 1) * interval_us)
        wait_us: Any = await self._call(
            "take_rate",
            lambda: self._take_rate(
                keys=[self._key("rate", key)], args=[interval_us, tolerance_us]
            ),
        )
        return max(0, int(wait_us)) / 1_000_000

    async def take_slot(self, key: str, token: str, limit: int, lease_s: float) -> bool:
        args: list[str | int] = [token, limit, max(1, int(lease_s * 1000))]
        taken: Any = await self._call(
            "take_slot",
            lambda: self._take_slot(keys=[self._key("slots", key)], args=args),
        )
        return bool(taken)

    async def give_slot(self, key: str, token: str) -> None:
        await self._call("give_slot", lambda: self._redis.zrem(self._key("slots", key), token))

    async def sync_stats(
        self, deltas: Mapping[str, StatsCounts], windows: Mapping[str, tuple[float, float]]
    ) -> dict[str, StatsCounts]:
        """Add each provider's ``deltas`` to the shared windows and read back their sums
        (one pipelined round trip). ``windows``: provider -> (quality window, spend period)
        in seconds, each kept as 60 wall-clock buckets."""
        now = time.time()
        names = list(windows)

        async def sync() -> list[Any]:
            pipe = self._redis.pipeline(transaction=False)
            for name in names:
                window_s, spend_s = windows[name]
                q_s, s_s = window_s / STATS_BUCKETS, spend_s / STATS_BUCKETS
                d = deltas.get(name) or StatsCounts()
                args: list[Any] = [
                    self._key("stats", f"{name}:q{q_s:g}:"),
                    int(now // q_s),
                    STATS_BUCKETS,
                    int((window_s + q_s) * 1000),
                    self._key("stats", f"{name}:s{s_s:g}:"),
                    int(now // s_s),
                    STATS_BUCKETS,
                    int((spend_s + s_s) * 1000),
                    repr(d.accepted),
                    repr(d.attempts),
                    repr(d.latency_s),
                    repr(d.delivered),
                    repr(d.receipts),
                    repr(d.spend),
                ]
                await self._sync_stats(keys=[], args=args, client=pipe)
            return list(await pipe.execute())

        answers = await self._call("sync_stats", sync)
        return {
            name: StatsCounts(*(float(text(v)) for v in answer))
            for name, answer in zip(names, answers, strict=True)
        }

    async def append_stream(
        self, stream: str, entries: Sequence[Mapping[str, str]], maxlen: int
    ) -> None:
        if not entries:
            return

        async def write() -> None:
            pipe = self._redis.pipeline(transaction=True)
            for entry in entries:
                fields: dict[Any, Any] = {k.encode(): v.encode() for k, v in entry.items()}
                pipe.xadd(stream, fields, maxlen=maxlen, approximate=True)
            await pipe.execute()

        await self._call("append_stream", write)

    async def put_links(self, links: Mapping[str, str], ttl_s: float) -> None:
        if not links:
            return
        px = max(1, int(ttl_s * 1000))

        async def write() -> None:
            pipe = self._redis.pipeline(transaction=False)
            for key, value in links.items():
                pipe.set(self._key("link", key), value.encode(), px=px)
            await pipe.execute()

        await self._call("put_links", write)

    async def get_link(self, key: str) -> str | None:
        value: Any = await self._call("get_link", lambda: self._redis.get(self._key("link", key)))
        return None if value is None else bytes(value).decode()

    async def publish_open(self, provider: str, until_epoch_s: float) -> None:
        px = int((until_epoch_s - time.time()) * 1000)
        if px > 0:
            value = repr(until_epoch_s).encode()
            await self._call(
                "publish_open", lambda: self._redis.set(self._key("open", provider), value, px=px)
            )

    async def open_until(self, providers: Sequence[str]) -> dict[str, float]:
        if not providers:
            return {}
        keys = [self._key("open", p) for p in providers]
        values: list[Any] = await self._call("open_until", lambda: self._redis.mget(keys))
        return {p: float(v) for p, v in zip(providers, values, strict=True) if v is not None}

    async def aclose(self) -> None:
        await self._redis.aclose()
