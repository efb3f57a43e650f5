"""Types of ``_codecc.c``: the codec's decode, encode and per-row call loop in C; ``_codec.py`` stays the definition.

Each function returns NotImplemented for what it leaves to ``_codec.py`` (a
kind, layout or value it does not handle).
"""

from collections.abc import Callable, Sequence
from types import NotImplementedType
from typing import Any

from duckdb_subinterp._codec import Descriptor

def decode_column(descriptor: Descriptor, length: int, column: tuple[Any, ...], /) -> list[Any] | NotImplementedType:
    """Return the Python values of one column as a list (None for NULL), as ``_codec.decode_column`` does."""

def encode_column(
    descriptor: Descriptor, values: Sequence[Any], /
) -> tuple[int, bytes | None, list[bytes]] | NotImplementedType:
    """Return (null_count, validity or None, buffers) for a list of results, as ``_codec.encode_column`` does."""

def call_per_row(
    function: Callable[..., Any],
    arguments: list[Sequence[Any]],
    length: int,
    skip_nulls: bool,
    errors_to_null: bool,
    check_none: bool,
    caught: type[BaseException] | tuple[type[BaseException], ...],
    /,
) -> tuple[list[Any], int]:
    """Call ``function`` once per row of the argument columns; return (results, first row wrongly None or -1)."""

def call_numbers(
    function: Callable[..., Any],
    columns: Sequence[tuple[Any, ...]],
    codes: list[str],
    length: int,
    skip_nulls: bool,
    errors_to_null: bool,
    check_none: bool,
    caught: type[BaseException] | tuple[type[BaseException], ...],
    result_code: str,
    validity_out: memoryview,
    data_out: memoryview,
    /,
) -> tuple[int, int, list[Any] | None] | NotImplementedType:
    """``call_per_row`` over number columns read in place, each result written into the outputs as encoded."""
