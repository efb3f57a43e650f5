"""A second module with a global of the same name: its state is its own."""

from __future__ import annotations

CALLS: list[int] = []


def count(x: int) -> int:
    CALLS.append(x)
    return len(CALLS)
