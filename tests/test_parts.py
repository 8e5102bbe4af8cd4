"""SMS part counting: hand-checked vectors and invariants."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policies.parts import count_parts, segment_info
from providers.base import Rendered
from router.prepare import parts

CN = "验"
SIG = "【达达商城】"  # 6 characters


@pytest.mark.parametrize(
    ("text", "mainland", "parts"),
    [
        ("", True, 0),
        (CN * 70, True, 1),
        (CN * 71, True, 2),
        (CN * 134, True, 2),
        (CN * 135, True, 3),
        ("a" * 70, True, 1),  # mainland: Latin counts one, same 70/67 rule
        ("a" * 71, True, 2),
        ("a" * 160, False, 1),
        ("a" * 161, False, 2),
        ("a" * 306, False, 2),
        ("a" * 307, False, 3),
        ("€" * 80, False, 1),  # two units each: 160
        ("€" * 81, False, 2),
        ("a" * 69 + CN, False, 1),  # one Chinese character: UCS-2, 70/67
        ("a" * 70 + CN, False, 2),
        ("😀" * 35, True, 1),  # emoji: two UTF-16 units each
        ("😀" * 36, True, 2),
        ("Ａ" * 70, True, 1),  # full-width counts one
    ],
)
def test_hand_checked_vectors(text: str, mainland: bool, parts: int) -> None:
    assert count_parts(text, mainland=mainland) == parts


def test_the_signature_counts() -> None:
    assert count_parts(CN * 64, signature=SIG) == 1
    assert count_parts(CN * 65, signature=SIG) == 2
    assert count_parts(SIG + CN * 65, signature=SIG) == 2  # not counted twice
    assert segment_info("hi", mainland=False, signature="【x】").encoding == "ucs2"


texts = st.text(alphabet=st.sampled_from(["a", "€", CN, "😀", "Ａ", " ", "{"]), max_size=400)


@given(texts, st.sampled_from(["a", "€", CN, "😀"]), st.booleans())
def test_appending_never_lowers_the_parts(text: str, extra: str, mainland: bool) -> None:
    assert count_parts(text + extra, mainland=mainland) >= count_parts(text, mainland=mainland)


@given(texts, st.booleans())
def test_non_empty_text_is_at_least_one_part(text: str, mainland: bool) -> None:
    assert (count_parts(text, mainland=mainland) >= 1) == (text != "")


@given(texts, st.sampled_from(["", SIG, "【x】"]))
def test_signature_is_the_same_as_prefixing(text: str, sig: str) -> None:
    if text.startswith(sig) and sig:
        return
    assert count_parts(text, signature=sig) == count_parts(sig + text)


# The standards' own numbers (3GPP TS 23.040 / 23.038): one SMS carries 140 octets; a part of a
# concatenated message gives 6 of them to the user data header (IEI 00, 8-bit reference).
OCTETS, UDH = 140, 6


def test_limits_follow_from_the_octets() -> None:
    assert (OCTETS * 8 // 7, (OCTETS - UDH) * 8 // 7) == (160, 153)  # GSM-7 septets
    assert (OCTETS // 2, (OCTETS - UDH) // 2) == (70, 67)  # UCS-2 code units
    assert count_parts("a" * 459, mainland=False) == 3  # 3 * 153
    assert count_parts("a" * 460, mainland=False) == 4
    assert count_parts(CN * 201) == 3  # 3 * 67
    assert count_parts(CN * 202) == 4


@pytest.mark.parametrize(
    ("body", "parts"),
    [
        (CN * 64, 1),  # 6 + 64 = 70: one part
        (CN * 65, 2),  # 71: two parts of 67
        (CN * 128, 2),  # 134 = 2 * 67
        (CN * 129, 3),  # 135
        ("a" * 64, 1),  # Latin counts one on the mainland as well
        ("a" * 65, 2),
    ],
)
def test_the_mainland_signature_is_part_of_the_length(body: str, parts: int) -> None:
    assert count_parts(body, signature=SIG) == parts
    info = segment_info(body, signature=SIG)
    assert info.units == len(SIG) + len(body)
    assert info.per_part == (70 if parts == 1 else 67)


@given(st.integers(1, 2000), st.sampled_from([(CN, True), ("a", True), ("a", False)]))
def test_parts_hold_the_text_and_grow_with_it(n: int, unit: tuple[str, bool]) -> None:
    char, mainland = unit
    info = segment_info(char * n, mainland=mainland)
    assert info.units == n
    assert info.parts * info.per_part >= n  # every unit fits
    assert (info.parts - 1) * info.per_part < n  # and no part is wasted
    assert info.per_part in ((70, 67) if info.encoding != "gsm7" else (160, 153))
    assert count_parts(char * (n + 1), mainland=mainland) >= info.parts  # monotone


@given(st.lists(st.text(max_size=200), min_size=1, max_size=3))
def test_the_one_part_shortcut_agrees_with_counting(texts: list[str]) -> None:
    """``prepare.parts`` skips counting for short texts: the same answer as counting."""
    renders = [Rendered(content=t) for t in texts]
    counted = [t for t in texts if t]
    expected = (
        (
            max(1, max(count_parts(t, mainland=True) for t in counted)),
            max(1, max(count_parts(t, mainland=False) for t in counted)),
        )
        if counted
        else (1, 1)
    )
    assert parts(renders) == expected
