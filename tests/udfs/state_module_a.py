"""Module state for the isolation tests: two UDFs of this module share ``CALLS`` in one interpreter."""

from __future__ import annotations

CALLS: list[int] = []


def count(x: int) -> int:
    CALLS.append(x)
    return len(CALLS)


def count_too(x: int) -> int:
    CALLS.append(x)
    return len(CALLS)
