"""What was sent under each provider message id: when, in which send, to which numbers.

Kept for every accepted (or unknown) provider message id, so a receipt can be matched to its
recipient (the v1 pull masks numbers: ``138****8000`` is matched against the batch's own),
its delay measured and its span linked to the send. One entry per send under sustained load,
so each is stored as two strings (key and a ``|``-separated value) in one ordered map: no
object per entry for the collector to walk, ~300 bytes for a one-number id where a record
object took ~610; read back (parsed) only when a receipt or a delivery question comes. Not a
:class:`router.bounded.BoundedCache`: its ``(deadline, size, value)`` tuple per entry would add
~110 bytes (a third) to every id; here the deadline leads the value's text.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass

from providers.frozen import fast_init
from router.bounded import warn_when_full
from router.clock import Clock

log = logging.getLogger("router.receipts")


@fast_init
@dataclass(frozen=True, slots=True)
class SentBatch:
    at: float  # epoch seconds of the attempt
    send_id: str
    mobiles: tuple[
        str, ...
    ]  # E.164 of the recipients the provider took (or may have) under this id
    # One request can carry several sends (coalescing): the send of each mobile, in order;
    # empty when every mobile belongs to ``send_id``.
    send_ids: tuple[str, ...] = ()

    def send_for(self, recipient: str) -> str:
        """The send that ``recipient`` (E.164) belongs to."""
        if self.send_ids and recipient in self.mobiles:
            return self.send_ids[self.mobiles.index(recipient)]
        return self.send_id


def encode_sent(batch: SentBatch, *, with_sends: bool = True) -> str:
    """``at|send_id|mobiles[|send ids]`` (the shared store's record is the first three
    fields: instances of every version read it)."""
    text = f"{batch.at:.3f}|{batch.send_id}|{','.join(batch.mobiles)}"
    return f"{text}|{','.join(batch.send_ids)}" if with_sends and batch.send_ids else text


def decode_sent(text: str) -> SentBatch | None:
    """The batch of :func:`encode_sent`'s text; None if it is not one."""
    fields = text.split("|")
    if len(fields) not in (3, 4) or not fields[2]:
        return None
    try:
        at = float(fields[0])
    except ValueError:
        return None
    mobiles = tuple(fields[2].split(","))
    sends = tuple(fields[3].split(",")) if len(fields) == 4 and fields[3] else ()
    if sends and len(sends) != len(mobiles):
        return None
    return SentBatch(at, fields[1], mobiles, sends)


# Measured (tracemalloc, fresh strings; tests/test_bounded_bytes.py): an entry's two strings
# are ~49 bytes each plus their ASCII characters; the ordered map's slot and link ~130.
ENTRY_OVERHEAD = 230
# Receipts come within a day or two; the v1 pull never hands out older ones. The same bounds
# serve the book of settled receipts (router/receipts.py).
RECEIPT_TTL_S = 3 * 86_400.0
RECEIPT_MEMORY_BYTES = 16 * 1024 * 1024


class SentMemory:
    """Bounded by ids, by bytes (a 3000-number batch is a 50 KB string, not one entry) and by
    age: receipts come within a day or two, and the v1 pull never hands out older ones. At
    ~330 bytes a one-number id, 16 MB holds ~50,000 ids: ~20 s of sends at 2,600 sends/s,
    hours at tens a second; past that a warning says so (masked receipts of forgotten ids
    stay unmatched; with a shared store they are still read from it)."""

    def __init__(
        self,
        clock: Clock,
        max_ids: int = 100_000,
        max_bytes: int = RECEIPT_MEMORY_BYTES,
        ttl_s: float = RECEIPT_TTL_S,
    ) -> None:
        self._clock = clock
        self._max_ids, self._max_bytes, self._ttl = max_ids, max_bytes, ttl_s
        # key "provider|message id" -> "deadline|" + encode_sent(batch); oldest first
        self._items: OrderedDict[str, str] = OrderedDict()
        self._bytes = 0
        self._on_full = warn_when_full(
            clock,
            log,
            "the memory of sent message ids",
            "a masked v1 receipt of a forgotten id cannot be matched to its recipient "
            "(counted unmatched; its recipient's delivery reads unknown), and receipt "
            "delays and trace links of forgotten ids are lost",
        )

    def __len__(self) -> int:
        return len(self._items)

    @property
    def bytes(self) -> int:
        """The bytes retained (measured estimate)."""
        return self._bytes

    def remember(self, provider: str, message_id: str, batch: SentBatch) -> None:
        key = f"{provider}|{message_id}"
        self._pop(key)
        value = f"{self._clock.monotonic() + self._ttl:.0f}|{encode_sent(batch)}"
        self._items[key] = value
        self._bytes += ENTRY_OVERHEAD + len(key) + len(value)
        self._evict()

    def get(self, provider: str, message_id: str) -> SentBatch | None:
        key = f"{provider}|{message_id}"
        value = self._items.get(key)
        if value is None:
            return None
        deadline, _, text = value.partition("|")
        if float(deadline) <= self._clock.monotonic():
            self._pop(key)
            return None
        return decode_sent(text)

    def _pop(self, key: str) -> None:
        value = self._items.pop(key, None)
        if value is not None:
            self._bytes -= ENTRY_OVERHEAD + len(key) + len(value)

    def _evict(self) -> None:
        items = self._items
        while items:
            key, value = next(iter(items.items()))
            expired = float(value[: value.index("|")]) <= self._clock.monotonic()
            if not expired and len(items) <= self._max_ids and self._bytes <= self._max_bytes:
                return
            self._pop(key)
            if not expired:
                self._on_full(value)
