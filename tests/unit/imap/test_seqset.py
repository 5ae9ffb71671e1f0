"""Sequence sets: parsing, `*`, reversed and overlapping ranges."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mda.imap.seqset import MAX_NUMBER, SequenceSet, SequenceSetError, format_numbers


def test_parse_and_show() -> None:
    s = SequenceSet.parse("1,3:5,7:*,*")
    assert s.ranges == ((1, 1), (3, 5), (7, None), (None, None))
    assert str(s) == "1,3:5,7:*,*"
    assert s.uses_star
    assert not SequenceSet.parse("4:2").uses_star


def test_resolve_merges_sorts_and_reverses() -> None:
    s = SequenceSet.parse("9:7,1,2,3:4,20:*")
    numbers = s.resolve(22)
    assert numbers.ranges == ((1, 4), (7, 9), (20, 22))
    assert list(numbers) == [1, 2, 3, 4, 7, 8, 9, 20, 21, 22]
    assert 8 in numbers and 5 not in numbers and 23 not in numbers and "1" not in numbers
    assert numbers.largest == 22


def test_star_beyond_the_largest_means_the_largest() -> None:
    # RFC 3501: UID 100:* with a largest UID of 50 is 50:100, so 50 matches.
    numbers = SequenceSet.parse("100:*").resolve(50)
    assert 50 in numbers and 49 not in numbers


def test_empty_mailbox() -> None:
    # `*` is 0 when nothing is in use: no real message can match it.
    assert list(SequenceSet.parse("*").resolve(0)) == [0]
    assert list(SequenceSet.parse("1:*").resolve(0)) == [0, 1]


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "0",
        "1:0",
        "a",
        "1,,2",
        "1:",
        ":2",
        "1:2:3",
        "-1",
        str(MAX_NUMBER + 1),
        "00000000000000000000001x",
        "$",
    ],
)
def test_parse_errors(bad: str) -> None:
    with pytest.raises(SequenceSetError):
        SequenceSet.parse(bad)


def test_leading_zeros_and_the_largest_number() -> None:
    assert SequenceSet.parse("0000000000001").ranges == ((1, 1),)
    assert SequenceSet.parse(str(MAX_NUMBER)).ranges == ((MAX_NUMBER, MAX_NUMBER),)


@given(st.lists(st.tuples(st.integers(1, 60), st.integers(1, 60)), min_size=1, max_size=8))
def test_resolution_is_the_union_of_ranges(pairs: list[tuple[int, int]]) -> None:
    s = SequenceSet.parse(",".join(f"{a}:{b}" for a, b in pairs))
    expected = {n for a, b in pairs for n in range(min(a, b), max(a, b) + 1)}
    resolved = s.resolve(60)
    assert set(resolved) == expected
    assert all(n in resolved for n in expected)
    assert SequenceSet.parse(format_numbers(expected)).resolve(60) == resolved
