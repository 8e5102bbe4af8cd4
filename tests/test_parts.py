"""SMS part counting: hand-checked vectors and invariants."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policies.parts import count_parts, segment_info

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


@given(st.integers(1, 2000))
def test_parts_match_the_closed_form(n: int) -> None:
    mainland = count_parts(CN * n)
    assert mainland == (1 if n <= 70 else -(-n // 67))
    gsm = count_parts("a" * n, mainland=False)
    assert gsm == (1 if n <= 160 else -(-n // 153))
