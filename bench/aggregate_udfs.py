"""UDFs of bench/aggregates.py, standard library only: a worker imports this module, not the script."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any


def burn(iterations: int) -> int:
    """Pure-Python work: ``iterations`` rounds of integer arithmetic."""
    total = 0
    for index in range(iterations):
        total = (total + index * index) % 1_000_003
    return total


def calibrate(seconds: float) -> int:
    """Return how many ``burn`` iterations take about ``seconds`` here."""
    iterations = 10_000
    while True:
        started = time.perf_counter()
        burn(iterations)
        elapsed = time.perf_counter() - started
        if elapsed > 0.05:
            return max(1, round(iterations * seconds / elapsed))
        iterations *= 2


def make_aggregate(iterations: int) -> Callable[[list[float]], float]:
    def median_after_work(values: list[float]) -> float:
        burn(iterations)
        return statistics.median(values)

    return median_after_work


def make_table_function(iterations: int) -> Callable[[str], Any]:
    def words(text: str) -> Any:
        burn(iterations)
        for position, word in enumerate(text.split()):
            yield word, position

    return words


def own_rows(function: Callable[[str], Any]) -> Callable[[str], list[dict[str, Any]]]:
    """DuckDB's own UDF returns the rows as a list of structs (dicts)."""

    def rows(text: str) -> list[dict[str, Any]]:
        return [{"word": word, "pos": position} for word, position in function(text)]

    return rows
