"""Mobile normalisation: the fast mainland path agrees with the full phonenumbers parse."""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import given
from hypothesis import strategies as st

from providers.mobile import _fast_mainland, normalise
from router.errors import InvalidMobileError


@pytest.mark.parametrize(
    "raw",
    [
        "13800138000",
        "+8613800138000",
        "008613800138000",
        "8613800138000",
        "138 0013 8000",
        "138-0013-8000",
        "１３８００１３８０００",
        " +86 138-0013-8000 ",
    ],
)
def test_written_forms_of_one_mobile(raw: str) -> None:
    mobile = normalise(raw)
    assert (mobile.e164, mobile.national, mobile.region) == ("+8613800138000", "13800138000", "CN")


@pytest.mark.parametrize("raw", ["12345", "", "10000000000", "+86 010 1234 5678", "abc"])
def test_invalid_numbers_say_why(raw: str) -> None:
    with pytest.raises(InvalidMobileError) as info:
        normalise(raw)
    assert info.value.reason


def test_international_numbers() -> None:
    hk = normalise("+852 9123 4567")
    assert (hk.country_code, hk.national, hk.is_mainland) == (852, "91234567", False)


@given(st.from_regex(r"(\+86|0086|86)?1[0-9]{10}", fullmatch=True))
def test_fast_path_agrees_with_phonenumbers(raw: str) -> None:
    fast = _fast_mainland(raw)
    number = phonenumbers.parse(raw if not raw.startswith("00") else "+" + raw[2:], "CN")
    full_ok = phonenumbers.is_valid_number(number) and phonenumbers.number_type(number) in (
        phonenumbers.PhoneNumberType.MOBILE,
        phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
    )
    if fast is not None:
        assert full_ok and fast.national == str(number.national_number)
    elif full_ok and number.country_code == 86:
        pytest.fail(f"fast path refused a valid mainland mobile {raw!r}")
