"""Pure-Python UDFs used by the demo, the benchmarks, the notebooks and the tests.

Standard library only, so they load in per-GIL interpreters. The cost per
row, measured on the 2-core development machine, is in each docstring.
"""

from __future__ import annotations

import hashlib
import math
import re

_WORD = re.compile(r"[a-z0-9]+")


def identity(x: int) -> int:
    """Return ``x``: measures dispatch overhead, not work."""
    return x


def identity_batch(xs: memoryview) -> memoryview:
    """Return the batch unchanged (vectorized): dispatch overhead alone."""
    return xs


def scale(x: float) -> float:
    """Light DOUBLE work (~0.1 us/row)."""
    return x * 1.5 + 1.0


def slugify(text: str) -> str:
    """Light VARCHAR work (~1 us/row): lower-case words joined by dashes."""
    return "-".join(_WORD.findall(text.lower()))


def series(x: float) -> float:
    """Medium DOUBLE work (~1 us/row): a short trigonometric series."""
    total = 0.0
    for k in range(1, 12):
        total += math.sin(x * k) / k
    return total


def shout(text: str) -> str:
    """Light VARCHAR work (~0.1 us/row): upper case and an exclamation mark."""
    return text.upper() + "!"


def digest(text: str) -> str:
    """Medium VARCHAR work (~1 us/row): two rounds of SHA-256."""
    data = text.encode()
    for _ in range(2):
        data = hashlib.sha256(data).digest()
    return data.hex()[:16]


def collatz(x: int) -> int:
    """Heavy BIGINT work (~7 us/row): Collatz steps of a number near ``x``."""
    n = x % 100_000 + 1_000
    steps = 0
    while n != 1:
        n = n // 2 if n % 2 == 0 else 3 * n + 1
        steps += 1
    return steps


def newton_sqrt(x: float) -> float:
    """Heavy DOUBLE work (~2 us/row): square root by 60 Newton iterations."""
    value = abs(x) + 1.0
    guess = value
    for _ in range(60):
        guess = 0.5 * (guess + value / guess)
    return guess


def word_score(text: str) -> int:
    """Heavy VARCHAR work (~2.5 us/row on 20 characters): a character-level rolling score."""
    score = 0
    for position, char in enumerate(text):
        score = (score * 31 + ord(char) * (position + 1)) % 1_000_003
    return score


def collatz_pair(x: int) -> int:
    """Heavier BIGINT work (~15 us/row): Collatz steps of two numbers near ``x``."""
    return collatz(x) + collatz(x + 50_000)


def collatz_septet(x: int) -> int:
    """Very heavy BIGINT work (~50 us/row): Collatz steps of seven numbers near ``x``."""
    return sum(collatz(x + 10_000 * k) for k in range(7))
