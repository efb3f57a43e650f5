"""Aggregate and table functions imported by reference in the tests: module-level, standard library only."""

from __future__ import annotations

import asyncio
import itertools
import math
import os
import statistics
import time
from collections.abc import AsyncIterator, Iterator
from typing import NamedTuple, TypedDict

# -- aggregates: one list per argument in, one value out ---------------------------------------


def py_median(values):
    return statistics.median(values)


def py_sum(values):
    return sum(values)


def py_count(values):
    """Under null_handling='special': every row counts, None included; an empty group is 0."""
    return len(values)


def py_count_values(values):
    return sum(value is not None for value in values)


def py_sorted_text(values):
    """What string_agg gives, its order aside (DuckDB's own order is not defined either)."""
    return ",".join(sorted(values))


def py_sorted_list(values):
    return sorted(values)


def py_list(values):
    """DuckDB's list(): NULLs kept (under null_handling='special'), NULL for no rows."""
    return values or None


def py_quantile(values, fractions):
    """DuckDB's quantile_cont: linear interpolation between the two nearest ranks."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * fractions[0]
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (position - low) * (ordered[high] - ordered[low])


def dot(xs, ys):
    return sum(x * y for x, y in zip(xs, ys, strict=True))


def pairs(xs, ys):
    """Every row's pair, sorted: shows that each row's values stay together."""
    return sorted(f"{x}:{y}" for x, y in zip(xs, ys, strict=True))


def nulls_seen(xs):
    return f"{len(xs)} values, {sum(x is None for x in xs)} None"


def first_of_group(values):
    return values[0]


def fail_on_group_with(values):
    if 13 in values:
        raise ValueError(f"13 in a group of {len(values)}")
    return len(values)


def spin(values):
    """About 2 ms of pure Python per group, whatever its size."""
    deadline = time.perf_counter() + 0.002
    total = 0
    while time.perf_counter() < deadline:
        total += 1
    return len(values)


class CountWithState:
    """A class aggregate: its __init__ runs once per worker, so every group sees one instance."""

    instances = 0

    def __init__(self):
        CountWithState.instances += 1
        self.instance = CountWithState.instances

    def __call__(self, values):
        return f"{len(values)} from instance {self.instance}"


async def slow_count(values):
    await asyncio.sleep(0.001)
    return len(values)


def py_min(values):
    return min(values)


# -- table functions: arguments in, rows out --------------------------------------------------


def words(text):
    for position, word in enumerate(text.split()):
        yield word, position


def words_as_dicts(text):
    return [{"pos": position, "word": word} for position, word in enumerate(text.split())]


def words_or_none(text):
    return None if text is None else [("null" if text is None else text, 0)]


def describe_input(text):
    yield ("null" if text is None else text, -1)


class Word(NamedTuple):
    word: str
    pos: int


def annotated_words(text: str) -> Iterator[Word]:
    for position, word in enumerate(text.split()):
        yield Word(word, position)


class Token(TypedDict):
    token: str
    length: int


def tokens(text: str) -> list[Token]:
    return [{"token": word, "length": len(word)} for word in text.split()]


def many_types(n: int):
    for index in range(n):
        yield (
            index,
            index / 4,
            None if index % 3 == 0 else f"text {index}",
            [index, None, index + 1],
            {"a": index, "b": None if index % 2 else "b"},
            bool(index % 2),
        )


def repeat(count, text):
    for index in range(count):
        yield text, index


def numbers_upto(limit: int) -> Iterator[tuple[int]]:
    return ((index,) for index in range(limit))


def constant_rows():
    yield ("a", 1)
    yield ("b", 2)


class WordsWithState:
    """A class table function: one instance per worker."""

    instances = 0

    def __init__(self):
        WordsWithState.instances += 1
        self.instance = WordsWithState.instances

    def __call__(self, text):
        for word in text.split():
            yield word, self.instance


async def async_words(text):
    await asyncio.sleep(0.001)
    return [(word, position) for position, word in enumerate(text.split())]


async def async_generator_words(text) -> AsyncIterator[tuple[str, int]]:
    for position, word in enumerate(text.split()):
        await asyncio.sleep(0)
        yield word, position


def spin_words(text):
    """About 20 us of pure Python per input row."""
    deadline = time.perf_counter() + 0.00002
    while time.perf_counter() < deadline:
        pass
    for position, word in enumerate(text.split()):
        yield word, position


# -- hostile table functions: each fails one way, on the input 'bad' only ---------------------


def wrong_count(text):
    yield text, 0
    if text == "bad":
        yield text, 1, "extra"


def not_a_row(text):
    yield text, 0
    if text == "bad":
        yield text


def missing_column(text):
    yield {"word": text, "pos": 0}
    if text == "bad":
        yield {"word": text}


def unknown_column(text):
    if text == "bad":
        yield {"word": text, "pos": 1, "extra": 2}


def wrong_type(text):
    yield text, 0
    if text == "bad":
        yield text, "not a number"


def out_of_range(text):
    yield text, 0
    if text == "bad":
        yield text, 2**31  # pos is an INTEGER


def raises_half_way(text):
    yield text, 0
    yield text, 1
    if text == "bad":
        raise ValueError("broke after two rows")
    yield text, 2


def returns_a_string(text):
    return text if text == "bad" else [(text, 0)]


def exits_worker(text):
    if text == "bad":
        os._exit(3)
    yield text, 0


def never_ends(text):
    """Yields rows without end on 'bad' (the pool's timeout stops it)."""
    if text == "bad":
        for index in itertools.count():
            time.sleep(0.01)
            yield text, index
    yield text, 0
