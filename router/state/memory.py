"""In-memory state store: one process, bounded, expiring on an injected clock.

Idempotency records are bounded by count, by bytes (``max_bytes``, payloads included) and by
their TTL; past a bound the oldest keys are forgotten first (a retry of a forgotten key sends
again): size ``max_bytes`` for your keyed traffic per TTL, or use Redis.
"""

from __future__ import annotations

import logging
import secrets
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from router.bounded import BoundedCache, warn_when_full
from router.clock import Clock, SystemClock
from router.state.base import Acquired, Conflict, Done, InProgress, Reservation

log = logging.getLogger("router.state")
T = TypeVar("T")


@dataclass(slots=True)
class _Record:
    fingerprint: bytes | str  # compact(): a hex digest kept as its 32 bytes
    expires: float
    token: str | None = None  # set while leased
    payload: bytes | None = None  # set once committed
    # hash() of the token that committed it (a retried commit is a no-op); an int, not the
    # 32-character token: ~100 bytes less per kept key with the compact fingerprint
    owner: int | None = None

    @property
    def size(self) -> int:
        return RECORD_OVERHEAD + len(self.payload or b"")


def compact(fingerprint: str) -> bytes | str:
    """A lower-case hex digest (what ``state.base.fingerprint`` gives) as its bytes: 65 bytes
    of memory instead of 113. Anything else as is, so no two distinct texts become equal."""
    if len(fingerprint) != 64 or fingerprint != fingerprint.lower():
        return fingerprint
    try:
        return bytes.fromhex(fingerprint)
    except ValueError:
        return fingerprint


AUX_BYTES = 16 * 1024 * 1024  # throttle marks, delivery statuses: each
AUX_TTL_S = 7 * 86_400.0
# Bytes per entry besides its variable text, measured with tracemalloc (tests/test_bounded_bytes
# .py): a record's key, fingerprint, token and entry; a throttle mark; a status; a trace link.
RECORD_OVERHEAD = 480
MARK_BYTES = 460
STATUS_OVERHEAD = 550
LINK_OVERHEAD = 420


class MemoryStateStore:
    def __init__(
        self,
        clock: Clock | None = None,
        max_entries: int = 100_000,
        max_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self._clock = clock or SystemClock()
        self._max = max_entries
        self._max_bytes = max_bytes
        self._bytes = 0
        self._warned_at = float("-inf")
        self._records: OrderedDict[str, _Record] = OrderedDict()
        # Marks and statuses carry their own expiry; the caches bound them by count, bytes and
        # a longest life (a week), oldest first.
        self._marks: BoundedCache[tuple[str, str], tuple[float, str]] = BoundedCache(
            self._clock,
            max_entries=max_entries,
            max_bytes=AUX_BYTES,
            ttl_s=AUX_TTL_S,
            size_of=lambda _: MARK_BYTES,
            on_full=self._still_live(
                lambda mark: mark[0],
                "the memory store's throttle marks",
                "a number may get a second message within its throttle window",
            ),
        )
        self._open: dict[str, float] = {}
        self._streams: dict[str, deque[dict[str, str]]] = {}
        self._tat: dict[str, float] = {}  # rate limits: theoretical arrival time (one per provider)
        self._slots: dict[str, dict[str, float]] = {}  # key -> token -> until
        self._links: BoundedCache[str, tuple[str, float]] = BoundedCache(
            self._clock,
            max_entries=max_entries,
            max_bytes=AUX_BYTES,
            ttl_s=AUX_TTL_S,
            size_of=lambda v: LINK_OVERHEAD + len(v[0]),
            on_full=self._still_live(
                lambda link: link[1],
                "the memory store's trace links",
                "late receipts lose their send's trace",
            ),
        )
        self._status: BoundedCache[tuple[str, str, str], tuple[str, float]] = BoundedCache(
            self._clock,
            max_entries=max_entries,
            max_bytes=AUX_BYTES,
            ttl_s=AUX_TTL_S,
            size_of=lambda v: STATUS_OVERHEAD + len(v[0]),
            on_full=self._still_live(
                lambda status: status[1],
                "the memory store's delivery statuses",
                "a repeated receipt of a forgotten recipient may be counted again",
            ),
        )

    def _now(self) -> float:
        return self._clock.monotonic()

    def _still_live(
        self, until: Callable[[T], float], what: str, consequence: str
    ) -> Callable[[T], None]:
        """An ``on_full`` for values with an expiry of their own (``until``): a warning only
        when a value still in force is dropped."""
        warn = warn_when_full(self._clock, log, what, consequence)

        def dropped(value: T) -> None:
            if until(value) > self._now():
                warn(value)

        return dropped

    def retained_bytes(self) -> dict[str, int]:
        """The bytes each kind of entry retains (measured estimates; each kind has its bound)."""
        return {
            "records": self._bytes,
            "marks": self._marks.bytes,
            "links": self._links.bytes,
            "statuses": self._status.bytes,
        }

    def _live(self, key: str) -> _Record | None:
        record = self._records.get(key)
        if record is not None and record.expires <= self._now():
            self._drop(key)
            return None
        return record

    def _drop(self, key: str) -> None:
        record = self._records.pop(key, None)
        if record is not None:
            self._bytes -= record.size

    def _add(self, key: str, record: _Record) -> None:
        self._drop(key)
        self._records[key] = record
        self._bytes += record.size
        self._trim()

    def _trim(self) -> None:
        """Oldest first: expired records, then any over the count or byte bound."""
        records, now = self._records, self._now()
        while records:
            key, oldest = next(iter(records.items()))
            within = len(records) <= self._max and self._bytes <= self._max_bytes
            if oldest.expires > now and within:
                return
            if oldest.expires > now:
                self._warn_early_eviction()
            self._drop(key)

    def _warn_early_eviction(self) -> None:
        # A forgotten key would send again if retried: say so, at most once a minute.
        now = self._now()
        if now - self._warned_at >= 60:
            self._warned_at = now
            log.warning(
                "memory state store full (%d records, %d bytes): forgetting idempotency keys "
                "before their TTL; raise state.memory_max_bytes or use the Redis backend",
                len(self._records),
                self._bytes,
            )

    async def reserve(
        self, key: str, fingerprint: str, lease_s: float, *, token: str = ""
    ) -> Reservation:
        record = self._live(key)
        if record is not None:
            if record.fingerprint != compact(fingerprint):
                return Conflict()
            if record.payload is not None:
                return Done(record.payload)
            return InProgress()
        token = token or secrets.token_hex(16)
        self._add(key, _Record(compact(fingerprint), self._now() + lease_s, token=token))
        return Acquired(token)

    async def commit(
        self, key: str, token: str, payload: bytes, ttl_s: float, *, fingerprint: str = ""
    ) -> bool:
        return self.commit_now(key, token, payload, ttl_s, fingerprint=fingerprint)

    def commit_now(
        self, key: str, token: str, payload: bytes, ttl_s: float, *, fingerprint: str = ""
    ) -> bool:
        """:meth:`commit` without a suspension point (nothing can cancel it half-way): the
        idempotency layer calls it directly, without a cancel shield."""
        record = self._live(key)
        if record is not None and record.owner == hash(token):
            return True
        if record is None and fingerprint:
            record = _Record(compact(fingerprint), 0.0)
        elif record is None or record.token != token:
            return False
        self._drop(key)  # uncounted at its old size before it grows
        record.payload, record.token, record.owner = payload, None, hash(token)
        record.expires = self._now() + ttl_s
        self._add(key, record)  # newest last, its payload counted
        return True

    async def release(self, key: str, token: str) -> None:
        record = self._live(key)
        if record is not None and record.token == token:
            self._drop(key)

    async def throttle(
        self,
        mobiles: Sequence[str],
        scope: str,
        window_s: float,
        *,
        token: str = "1",  # noqa: S107
    ) -> set[str]:
        now, throttled = self._now(), set()
        for mobile in mobiles:
            mark = self._marks.get((scope, mobile))
            if mark is not None and mark[0] > now:
                throttled.add(mobile)
                continue
            self._marks.put((scope, mobile), (now + window_s, token))
        return throttled

    async def unthrottle(self, mobiles: Sequence[str], scope: str, *, token: str = "") -> None:
        for mobile in mobiles:
            mark = self._marks.get((scope, mobile))
            if mark is not None and (not token or mark[1] == token):
                self._marks.pop((scope, mobile))

    async def put_status(
        self, provider: str, message_id: str, status: str, ttl_s: float, *, recipient: str = ""
    ) -> bool:
        key, now = (provider, message_id, recipient), self._now()
        known = self._status.get(key)
        if known is not None and known[1] > now:
            return False  # final already: first receipt wins
        self._status.put(key, (status, now + ttl_s))
        return True

    async def get_status(
        self, provider: str, message_id: str, *, recipient: str = ""
    ) -> str | None:
        known = self._status.get((provider, message_id, recipient))
        return known[0] if known is not None and known[1] > self._now() else None

    async def take_rate(self, key: str, rate: float, burst: float) -> float:
        interval, now = 1.0 / rate, self._now()
        tat = max(self._tat.get(key, now), now)
        wait = max(0.0, tat - (burst - 1) * interval - now)
        self._tat[key] = tat + interval
        return wait

    async def take_slot(self, key: str, token: str, limit: int, lease_s: float) -> bool:
        now = self._now()
        held = {t: until for t, until in self._slots.get(key, {}).items() if until > now}
        self._slots[key] = held
        if len(held) >= limit:
            return False
        held[token] = now + lease_s
        return True

    async def give_slot(self, key: str, token: str) -> None:
        self._slots.get(key, {}).pop(token, None)

    async def append_stream(
        self, stream: str, entries: Sequence[Mapping[str, str]], maxlen: int
    ) -> None:
        kept = self._streams.setdefault(stream, deque(maxlen=maxlen))
        kept.extend(dict(e) for e in entries)

    async def put_links(self, links: Mapping[str, str], ttl_s: float) -> None:
        until = self._now() + ttl_s
        for key, value in links.items():
            self._links.put(key, (value, until))

    async def get_link(self, key: str) -> str | None:
        known = self._links.get(key)
        return known[0] if known is not None and known[1] > self._now() else None

    async def publish_open(self, provider: str, until_epoch_s: float) -> None:
        self._open[provider] = max(until_epoch_s, self._open.get(provider, 0.0))

    async def open_until(self, providers: Sequence[str]) -> dict[str, float]:
        now = self._clock.now().timestamp()
        return {p: u for p in providers if (u := self._open.get(p, 0.0)) > now}

    async def aclose(self) -> None:
        return None
