"""How many SMS parts a text takes, and so what it costs.

* Mainland China: every character counts as one (Chinese or Latin, full or half width),
  the signature included; up to 70 is one part, longer texts go in parts of 67.
* International: GSM-7 text takes 160, then 153 per part, the extension characters
  (``^{}[]~\\|€`` and form feed) counting two; any character outside GSM-7 switches the whole
  text to UCS-2, 70 then 67.
Lengths are UTF-16 code units, as handsets and gateways count them: a character outside the
Basic Multilingual Plane (most emoji) counts two.

An empty text with no signature is 0 parts (nothing to send); any non-empty text is >= 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

# 3GPP TS 23.038 basic character set (the escape to the extension table excluded).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# The extension table: each costs an escape plus the character, two units.
GSM7_EXTENDED = frozenset("^{}[]~\\|€\f")

Encoding = Literal["mainland", "gsm7", "ucs2"]
LIMITS: dict[Encoding, tuple[int, int]] = {
    "mainland": (70, 67),
    "gsm7": (160, 153),
    "ucs2": (70, 67),
}

_GSM7 = frozenset(GSM7_BASIC) | frozenset(GSM7_EXTENDED)


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    encoding: Encoding
    units: int  # counted length
    parts: int
    per_part: int  # capacity of each part when the text is split


def utf16_units(text: str) -> int:
    # The UTF-16 encoder counts surrogate pairs in C (per-message path: ~10x the generator).
    # "surrogatepass": a lone surrogate still counts as one unit instead of raising.
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def segment_info(text: str, *, mainland: bool = True, signature: str = "") -> SegmentInfo:
    """Encoding, counted length and parts of ``signature + text``."""
    full = signature + text if not text.startswith(signature) else text
    if mainland:
        encoding: Encoding = "mainland"
        units = utf16_units(full)
    elif _GSM7.issuperset(full):
        encoding = "gsm7"
        units = len(full) + sum(1 for ch in full if ch in GSM7_EXTENDED)
    else:
        encoding = "ucs2"
        units = utf16_units(full)
    single, multi = LIMITS[encoding]
    if units == 0:
        return SegmentInfo(encoding, 0, 0, single)
    if units <= single:
        return SegmentInfo(encoding, units, 1, single)
    return SegmentInfo(encoding, units, math.ceil(units / multi), multi)


def count_parts(text: str, *, mainland: bool = True, signature: str = "") -> int:
    """Parts billed per recipient for ``signature + text``."""
    return segment_info(text, mainland=mainland, signature=signature).parts


def batch_cost(price_per_part: float, parts: int, recipients: int) -> float:
    """Providers bill per part per recipient."""
    return price_per_part * parts * recipients
