"""Validate and normalise mobile numbers with phonenumbers (stricter than a regex)."""

from __future__ import annotations

import re
from functools import lru_cache

import phonenumbers
from phonenumbers import PhoneNumberType

from providers.base import Mobile
from router.errors import InvalidMobileError

_MOBILE_TYPES = frozenset({PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE})


# Fast path for the common case, a mainland mobile written as digits (optionally +86/0086/86,
# spaces, hyphens): checked against phonenumbers' own CN mobile pattern, so it accepts exactly
# what the full parse accepts for these inputs, at ~1 us instead of ~75 us.
def _cn_mobile_pattern() -> re.Pattern[str]:
    metadata = phonenumbers.PhoneMetadata.metadata_for_region("CN")
    assert metadata is not None and metadata.mobile is not None
    return re.compile(f"(?:{metadata.mobile.national_number_pattern})")


_CN_MOBILE = _cn_mobile_pattern()
_CN_WRITTEN = re.compile(r"(?:\+86|0086|86)?(1\d{10})")
_SEPARATORS = str.maketrans("", "", " -")


def _fast_mainland(text: str) -> Mobile | None:
    match = _CN_WRITTEN.fullmatch(text.translate(_SEPARATORS))
    if match is None or not _CN_MOBILE.fullmatch(match.group(1)):
        return None
    national = match.group(1)
    return Mobile(e164=f"+86{national}", country_code=86, national=national, region="CN")


@lru_cache(maxsize=65536)
def normalise(raw: str, default_region: str = "CN") -> Mobile:
    """Parse ``raw`` (``+86``/``0086``/``86`` prefixes, spaces, hyphens, full-width digits).

    Raises :class:`InvalidMobileError` saying why the number is not a valid mobile.
    """
    text = raw.strip()
    if not text:
        raise InvalidMobileError(raw, "empty")
    if default_region == "CN" and (fast := _fast_mainland(text)) is not None:
        return fast
    if text.startswith("00"):
        text = "+" + text[2:]
    try:
        number = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidMobileError(raw, f"not a phone number ({exc._msg})") from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidMobileError(raw, "not a valid number for its country")
    if phonenumbers.number_type(number) not in _MOBILE_TYPES:
        raise InvalidMobileError(raw, "not a mobile number")
    country_code = number.country_code or 0
    region = phonenumbers.region_code_for_number(number) or "ZZ"
    national = phonenumbers.national_significant_number(number)
    return Mobile(
        e164=f"+{country_code}{national}",
        country_code=country_code,
        national=national,
        region=region,
    )
