"""Sequence sets: `1:5,7,9:*` as parsed from commands and written in responses.

`*` stays symbolic until the session resolves it against the largest
sequence number or UID in use, because its value changes as mail arrives.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

# RFC 3501 nz-number is 32-bit unsigned.
MAX_NUMBER = 4294967295


class SequenceSetError(ValueError):
    """Text that is not a sequence set."""


@dataclass(frozen=True)
class SequenceSet:
    """Ranges as the client wrote them; None stands for `*`.

    A single number n is the range (n, n); ranges may be reversed (`5:2`),
    overlap or repeat, exactly as RFC 3501 allows.
    """

    ranges: tuple[tuple[int | None, int | None], ...]

    @classmethod
    def parse(cls, text: str) -> SequenceSet:
        if not text:
            raise SequenceSetError("empty sequence set")
        ranges = []
        for item in text.split(","):
            first, sep, last = item.partition(":")
            a = _seq_number(first)
            ranges.append((a, _seq_number(last) if sep else a))
        return cls(tuple(ranges))

    @classmethod
    def from_numbers(cls, numbers: Iterable[int]) -> SequenceSet:
        return cls(tuple(compress(numbers)))

    @property
    def uses_star(self) -> bool:
        return any(a is None or b is None for a, b in self.ranges)

    def resolve(self, largest: int) -> NumberSet:
        """Replace `*` by `largest` (the highest number in use, 0 when none)."""
        spans = sorted(
            (min(x, y), max(x, y))
            for x, y in (
                (largest if a is None else a, largest if b is None else b) for a, b in self.ranges
            )
        )
        merged: list[tuple[int, int]] = []
        for lo, hi in spans:
            if merged and lo <= merged[-1][1] + 1:
                if hi > merged[-1][1]:
                    merged[-1] = (merged[-1][0], hi)
            else:
                merged.append((lo, hi))
        return NumberSet(tuple(merged))

    def __str__(self) -> str:
        return ",".join(_show(a) if a == b else f"{_show(a)}:{_show(b)}" for a, b in self.ranges)


@dataclass(frozen=True)
class NumberSet:
    """A resolved set: sorted, disjoint, non-adjacent inclusive ranges."""

    ranges: tuple[tuple[int, int], ...]

    def __contains__(self, n: object) -> bool:
        if not isinstance(n, int):
            return False
        i = bisect.bisect_right(self.ranges, (n, MAX_NUMBER + 1)) - 1
        return i >= 0 and self.ranges[i][0] <= n <= self.ranges[i][1]

    def __iter__(self) -> Iterator[int]:
        # Only sensible for sequence numbers: UID ranges can be huge and
        # sparse, so sessions test the UIDs they have with `in` instead.
        for lo, hi in self.ranges:
            yield from range(lo, hi + 1)

    def __bool__(self) -> bool:
        return bool(self.ranges)

    @property
    def largest(self) -> int | None:
        return self.ranges[-1][1] if self.ranges else None


def compress(numbers: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted runs of consecutive numbers, duplicates dropped."""
    runs: list[tuple[int, int]] = []
    for n in sorted(set(numbers)):
        if runs and n == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], n)
        else:
            runs.append((n, n))
    return runs


def format_numbers(numbers: Iterable[int]) -> str:
    """`[1, 2, 3, 5, 9, 10]` -> `1:3,5,9:10`, as COPYUID and ESEARCH want."""
    return str(SequenceSet.from_numbers(numbers))


def _seq_number(text: str) -> int | None:
    if text == "*":
        return None
    if not text.isascii() or not text.isdigit():
        raise SequenceSetError(f"{text!r} is not a sequence number")
    n = int(text) if len(text.lstrip("0")) <= 10 else MAX_NUMBER + 1
    if not 0 < n <= MAX_NUMBER:
        raise SequenceSetError(f"{text} is not a number from 1 to {MAX_NUMBER}")
    return n


def _show(n: int | None) -> str:
    return "*" if n is None else str(n)
