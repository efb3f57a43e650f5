"""The compiled codec (_codecc) gives exactly what the pure-Python codec gives: values, buffers, errors.

Each check runs the same input through ``_codec`` (the definition) and
through the runtime's compiled functions (``_codecc`` with its fallback to
``_codec``), and compares the outcome: the decoded values with their types,
the encoded null count, validity and buffers byte for byte, or the
exception's type and message. Other tests assert that the C path did the
work (it did not hand the column back), so the comparison is not the Python
codec's with itself.
"""

from __future__ import annotations

import datetime
import decimal
import gc
import math
import re
import sys
import textwrap
import tracemalloc
import uuid
from array import array
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.script_helper import run_python
from udfs import udf_module

import duckdb_subinterp
from duckdb_subinterp._codec import decode_column, encode_column
from duckdb_subinterp._engine.arrow import column_buffers, descriptor_for
from duckdb_subinterp._errors import CompiledPathUnavailableWarning
from duckdb_subinterp._worker import protocol as _protocol
from duckdb_subinterp._worker import runtime as _runtime
from duckdb_subinterp._worker.protocol import FIELD_SEPARATOR, BatchStopped, UdfRaised, UdfResultInvalid, UdfSpec
from duckdb_subinterp._worker.runtime import (
    COMPILED_CODEC,
    PYTHON_CODEC,
    LoadedUdf,
    call_per_row,
    call_per_row_compiled,
    decode_column_compiled,
    encode_column_compiled,
)

pytestmark = pytest.mark.skipif(COMPILED_CODEC is None, reason="duckdb_subinterp._codecc was not built")
_codecc = _runtime._codecc

PACKAGE_ROOT = Path(duckdb_subinterp.__file__).resolve().parent.parent

settings.register_profile(
    "codecc",
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

INT64_MAX = (1 << 63) - 1
INT32_MAX = (1 << 31) - 1


def _ints(bits: int, signed: bool) -> st.SearchStrategy[int]:
    return st.integers(-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else st.integers(0, (1 << bits) - 1)


# SQL type -> (Arrow type, raw values as pyarrow takes them). Dates and times
# go in as day and tick counts over the whole storage range: the extremes are
# DuckDB's infinities, beyond datetime's range comes DuckDB's text.
DAYS = st.one_of(
    st.integers(-719_162, 2_932_896), st.integers(-INT32_MAX, INT32_MAX), st.sampled_from([INT32_MAX, -INT32_MAX])
)
TICKS = st.one_of(
    st.integers(-62_135_596_800_000_000, 253_402_300_799_999_999),
    st.integers(-INT64_MAX, INT64_MAX),
    st.sampled_from([INT64_MAX, -INT64_MAX, 0, -1]),
)
DECODE_CASES: dict[str, tuple[pa.DataType, st.SearchStrategy[Any]]] = {
    "BOOLEAN": (pa.bool_(), st.booleans()),
    "TINYINT": (pa.int8(), _ints(8, True)),
    "SMALLINT": (pa.int16(), _ints(16, True)),
    "INTEGER": (pa.int32(), _ints(32, True)),
    "BIGINT": (pa.int64(), _ints(64, True)),
    "UTINYINT": (pa.uint8(), _ints(8, False)),
    "USMALLINT": (pa.uint16(), _ints(16, False)),
    "UINTEGER": (pa.uint32(), _ints(32, False)),
    "UBIGINT": (pa.uint64(), _ints(64, False)),
    "FLOAT": (pa.float32(), st.floats(width=32)),
    "DOUBLE": (pa.float64(), st.floats()),
    "VARCHAR": (pa.string(), st.text(max_size=300)),
    "BLOB": (pa.binary(), st.binary(max_size=40)),
    "DATE": (pa.date32(), DAYS),
    "TIME": (pa.time64("us"), st.integers(0, 86_400_000_000)),
    "TIMESTAMP": (pa.timestamp("us"), TICKS),
    "TIMESTAMP_S": (pa.timestamp("s"), TICKS),
    "TIMESTAMP_MS": (pa.timestamp("ms"), TICKS),
    "TIMESTAMP_NS": (pa.timestamp("ns"), TICKS),
    # Kinds the C path leaves to the Python codec: the same values (or errors) either way.
    "TIME_NS": (pa.time64("ns"), st.integers(0, 86_400_000_000_000 - 1)),
    "BIT": (pa.binary(), st.text("01", min_size=1, max_size=20).map(lambda bits: bytes([0]) + bits.encode())),
    "BIGNUM": (pa.binary(), st.binary(min_size=3, max_size=20)),
    "GEOMETRY": (pa.binary(), st.binary(max_size=30)),
}


def descriptor(sql_type: str) -> tuple[Any, ...]:
    return descriptor_for(duckdb.sqltype(sql_type))


def column_of(array_: pa.Array, sql_type: str) -> tuple[Any, ...]:
    return column_buffers(array_, array_.type, descriptor(sql_type))


def typed(values: Any) -> list[tuple[type, str]]:
    """Values as (type, repr): tells 1 from 1.0 and True, -0.0 from 0.0, NaN from NaN."""
    return [(type(value), repr(value)) for value in values]


def outcome(function: Any, *arguments: Any) -> Any:
    """What a call gives: its result, or the exception's type and message."""
    try:
        return ("returned", function(*arguments))
    except Exception as error:
        return ("raised", type(error), str(error))


# ---------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------


@st.composite
def decode_inputs(draw: st.DrawFn) -> tuple[str, pa.Array]:
    sql_type = draw(st.sampled_from(sorted(DECODE_CASES)))
    arrow_type, values = DECODE_CASES[sql_type]
    rows = draw(st.lists(st.one_of(st.none(), values), max_size=40))
    whole = pa.array(rows, type=arrow_type)
    start = draw(st.integers(0, len(rows)))
    stop = draw(st.integers(start, len(rows)))
    return sql_type, whole.slice(start, stop - start)


@settings(settings.get_profile("codecc"))
@given(case=decode_inputs())
def test_decode_matches_the_python_codec(case):
    sql_type, values = case
    kind = descriptor(sql_type)
    column = column_of(values, sql_type)
    expected = outcome(lambda: list(decode_column(kind, len(values), column)))
    got = outcome(lambda: list(decode_column_compiled(kind, len(values), column)))
    if expected[0] == "returned":
        assert got[0] == "returned", got
        assert typed(got[1]) == typed(expected[1])
    else:
        assert got == expected


@pytest.mark.parametrize(
    ("sql_type", "arrow_type", "rows"),
    [
        ("VARCHAR", pa.string(), ["row 1", None, "", "héllo ✓", "𝄞 clef", "x" * 300 + "é", "a"]),
        ("BLOB", pa.binary(), [b"\x00\xff", None, b""]),
        ("BOOLEAN", pa.bool_(), [True, None, False]),
        ("BIGINT", pa.int64(), [1, None, -(1 << 63)]),
        ("UBIGINT", pa.uint64(), [(1 << 64) - 1, None]),
        ("FLOAT", pa.float32(), [1.5, None, math.inf]),
        ("DATE", pa.date32(), [0, None, INT32_MAX, -INT32_MAX, 2_932_896, -719_162]),
        ("TIME", pa.time64("us"), [0, None, 86_399_999_999]),
        ("TIMESTAMP", pa.timestamp("us"), [0, None, INT64_MAX, -INT64_MAX, -1]),
        ("TIMESTAMP_S", pa.timestamp("s"), [0, None, INT64_MAX, -1]),
        ("TIMESTAMP_MS", pa.timestamp("ms"), [0, None, -INT64_MAX, 1_000_000]),
        ("TIMESTAMP_NS", pa.timestamp("ns"), [0, None, -1, -999, INT64_MAX]),
    ],
)
def test_decode_of_common_values_is_done_in_c(sql_type, arrow_type, rows):
    values = pa.array(rows, type=arrow_type)
    kind = descriptor(sql_type)
    for array_ in (values, values.slice(1)):
        column = column_of(array_, sql_type)
        decoded = _codecc.decode_column(kind, len(array_), column)
        assert decoded is not NotImplemented
        assert typed(decoded) == typed(decode_column(kind, len(array_), column))


@pytest.mark.parametrize(
    ("sql_type", "arrow_type", "rows"),
    [
        # Null-free numbers are a zero-copy memoryview, which is _codec.py's to make.
        ("BIGINT", pa.int64(), [1, 2]),
        # Outside datetime's range: DuckDB's text, made by _codec.py.
        ("DATE", pa.date32(), [INT32_MAX - 1]),
        ("TIME", pa.time64("us"), [86_400_000_000]),
        ("TIMESTAMP", pa.timestamp("us"), [INT64_MAX - 1]),
        ("TIMESTAMP_S", pa.timestamp("s"), [-(1 << 40)]),
        # Kinds left to _codec.py.
        ("TIMESTAMPTZ", pa.timestamp("us", tz="UTC"), [0]),
        ("HUGEINT", pa.decimal128(38, 0), [decimal.Decimal(5)]),
        ("INTERVAL", pa.month_day_nano_interval(), [pa.MonthDayNano([1, 2, 3000])]),
        ("INTEGER[]", pa.list_(pa.int32()), [[1, None]]),
    ],
)
def test_decode_leaves_the_rest_to_the_python_codec(sql_type, arrow_type, rows):
    values = pa.array(rows, type=arrow_type)
    kind = descriptor(sql_type)
    column = column_of(values, sql_type)
    assert _codecc.decode_column(kind, len(values), column) is NotImplemented
    assert typed(decode_column_compiled(kind, len(values), column)) == typed(decode_column(kind, len(values), column))


def _bitmap(*bits: int) -> memoryview:
    return memoryview(bytes([sum(bit << index for index, bit in enumerate(bits))]))


def _offsets(*bounds: int) -> memoryview:
    return memoryview(array("i", bounds)).cast("B")


@pytest.mark.parametrize(
    ("name", "column", "length"),
    [
        ("invalid UTF-8", (0, None, _offsets(0, 2, 3), memoryview(b"ok\xff")), 2),
        ("invalid UTF-8 in a NULL slot", (0, _bitmap(1, 0), _offsets(0, 2, 3), memoryview(b"ok\xff")), 2),
        ("a truncated character", (0, None, _offsets(0, 2), memoryview(b"\xe2\x9c")), 1),
        ("a surrogate", (0, None, _offsets(0, 3), memoryview(b"\xed\xa0\x80")), 1),
        ("an overlong form", (0, None, _offsets(0, 2), memoryview(b"\xc0\x80")), 1),
        ("offsets past the data", (0, None, _offsets(0, 2, 9), memoryview(b"okay")), 2),
        ("falling offsets", (0, None, _offsets(0, 3, 1), memoryview(b"okay")), 2),
        ("offsets too short", (0, None, _offsets(0, 2), memoryview(b"okay")), 2),
        ("no data buffer", (0, None, _offsets(0, 0, 0), None), 2),
        ("a short validity bitmap", (0, memoryview(b""), _offsets(0, 1), memoryview(b"a")), 1),
    ],
)
def test_decode_of_odd_text_columns_matches_the_python_codec(name, column, length):
    kind = ("utf8", "i")
    assert outcome(lambda: list(decode_column_compiled(kind, length, column))) == outcome(
        lambda: list(decode_column(kind, length, column))
    )


def test_decode_of_a_short_number_buffer_matches_the_python_codec():
    column = (1, _bitmap(1, 1, 1), memoryview(array("q", [1, 2])).cast("B"))
    kind = ("number", "q", "BIGINT")
    assert _codecc.decode_column(kind, 2, column) is NotImplemented
    expected = outcome(lambda: list(decode_column(kind, 2, column)))
    assert outcome(lambda: list(decode_column_compiled(kind, 2, column))) == expected


# ---------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------


class Text(str):
    pass


class Number(int):
    pass


class Day(datetime.date):
    pass


UTC = datetime.UTC
PLUS_FIVE = datetime.timezone(datetime.timedelta(hours=5))

# Values of every type a UDF might return for each result type: the exact
# type the C path takes, and what it leaves to _codec.py (other types,
# subclasses, out of range values, DuckDB's text), errors included.
ANYTHING = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=5),
    st.binary(max_size=5),
    st.just(bytearray(b"ab")),
    st.just(Text("sub")),
    st.just(Number(3)),
    st.just(decimal.Decimal("1.5")),
    st.just(uuid.UUID(int=7)),
    st.just([1]),
)
DATES = st.dates()
DATETIMES = st.datetimes(timezones=st.sampled_from([None, UTC, PLUS_FIVE]))
TIMES = st.times(timezones=st.sampled_from([None, UTC]))
NAIVE_DATETIMES = st.datetimes()
# Values the C path takes: the exact type, in range.
EXACT: dict[str, st.SearchStrategy[Any]] = {
    "BOOLEAN": st.booleans(),
    "TINYINT": _ints(8, True),
    "SMALLINT": _ints(16, True),
    "INTEGER": _ints(32, True),
    "BIGINT": _ints(64, True),
    "UTINYINT": _ints(8, False),
    "USMALLINT": _ints(16, False),
    "UINTEGER": _ints(32, False),
    "UBIGINT": _ints(64, False),
    "FLOAT": st.one_of(st.floats(), st.integers(-(1 << 70), 1 << 70)),
    "DOUBLE": st.one_of(st.floats(), st.integers(-(1 << 70), 1 << 70)),
    "VARCHAR": st.one_of(st.text(max_size=20), st.just("é" * 200)),
    "BLOB": st.binary(max_size=20),
    "DATE": st.one_of(DATES, DATETIMES),
    "TIME": TIMES,
    "TIMESTAMP": st.one_of(DATETIMES, DATES),
    "TIMESTAMP_S": st.one_of(DATETIMES, DATES),
    "TIMESTAMP_MS": st.one_of(DATETIMES, DATES),
    "TIMESTAMP_NS": st.one_of(
        st.datetimes(
            datetime.datetime(1677, 9, 22), datetime.datetime(2262, 4, 11), timezones=st.sampled_from([None, UTC])
        ),
        st.dates(datetime.date(1677, 9, 22), datetime.date(2262, 4, 11)),
    ),
    # Kinds the C path leaves to the Python codec.
    "TIME_NS": TIMES,
    "BIT": st.text("01", min_size=1, max_size=20),
    "BIGNUM": st.integers(),
    "TIMETZ": st.times(timezones=st.sampled_from([None, UTC, PLUS_FIVE])),
    "GEOMETRY": st.binary(max_size=30),
}
# Values it hands back: out of range, subclasses, DuckDB's text, errors.
OTHERS: dict[str, st.SearchStrategy[Any]] = {
    "TINYINT": st.integers(-300, 300),
    "SMALLINT": st.integers(-(1 << 17), 1 << 17),
    "INTEGER": st.integers(-(1 << 33), 1 << 33),
    "BIGINT": st.integers(-(1 << 65), 1 << 65),
    "UTINYINT": st.integers(-5, 300),
    "USMALLINT": st.integers(-5, 1 << 17),
    "UINTEGER": st.integers(-5, 1 << 33),
    "UBIGINT": st.integers(-5, 1 << 65),
    "FLOAT": st.just(1 << 1100),
    "DOUBLE": st.just(1 << 1100),
    "VARCHAR": st.just("\ud800"),
    "DATE": st.one_of(st.just(Day(2000, 1, 2)), st.sampled_from(["2020-01-02", "5877642-06-25 (BC)", "2020-13-01"])),
    "TIME": st.sampled_from(["24:00:00", "12:00:00"]),
    "TIMESTAMP": st.sampled_from(["2020-01-02 03:04:05.5", "294247-01-10 04:00:54.775807", "x"]),
    "TIMESTAMP_NS": st.one_of(NAIVE_DATETIMES, DATES),
}


def encoded_form(encoded: Any) -> tuple[Any, ...]:
    return (encoded.null_count, encoded.length, [bytes(raw) for raw in encoded.raw_buffers()])


def encode_outcomes(sql_type: str, values: list[Any]) -> tuple[Any, Any]:
    kind = descriptor(sql_type)
    expected = outcome(lambda: encoded_form(encode_column(kind, list(values))))
    got = outcome(lambda: encoded_form(encode_column_compiled(kind, list(values))))
    return expected, got


@st.composite
def encode_inputs(draw: st.DrawFn) -> tuple[str, list[Any]]:
    sql_type = draw(st.sampled_from(sorted(EXACT)))
    exact = st.one_of(st.none(), EXACT[sql_type])
    if draw(st.booleans()):
        return sql_type, draw(st.lists(exact, max_size=30))
    # Mostly values of the type, now and then another one or anything at all.
    values = st.one_of(exact, exact, exact, OTHERS.get(sql_type, exact), ANYTHING)
    return sql_type, draw(st.lists(values, max_size=30))


@settings(settings.get_profile("codecc"), max_examples=400)
@given(case=encode_inputs())
def test_encode_matches_the_python_codec(case):
    sql_type, values = case
    expected, got = encode_outcomes(sql_type, values)
    assert got == expected


@pytest.mark.parametrize(
    ("sql_type", "values"),
    [
        ("BOOLEAN", [True, None, False] * 5),
        ("TINYINT", [-128, None, 127]),
        ("UTINYINT", [0, None, 255]),
        ("SMALLINT", [-(1 << 15), (1 << 15) - 1]),
        ("USMALLINT", [0, (1 << 16) - 1, None]),
        ("INTEGER", [-(1 << 31), None]),
        ("UINTEGER", [(1 << 32) - 1]),
        ("BIGINT", [-(1 << 63), (1 << 63) - 1, None]),
        ("UBIGINT", [(1 << 64) - 1, 0]),
        ("FLOAT", [1.5, None, math.nan, 3, math.inf, 1e300]),
        ("DOUBLE", [-0.0, math.nan, None, 1 << 60]),
        ("VARCHAR", ["a", None, "", "héllo ✓", "𝄞"]),
        ("BLOB", [b"", None, b"\x00"]),
        ("DATE", [datetime.date(1, 1, 1), None, datetime.datetime(9999, 12, 31, 23, 59)]),
        ("TIME", [datetime.time(23, 59, 59, 999_999), None, datetime.time(1, tzinfo=UTC)]),
        (
            "TIMESTAMP",
            [
                datetime.datetime(1, 1, 1),
                None,
                datetime.date(1969, 12, 31),
                datetime.datetime(2000, 1, 1, tzinfo=PLUS_FIVE),
            ],
        ),
        ("TIMESTAMP_S", [datetime.datetime(1969, 12, 31, 23, 59, 59, 500_000), None]),
        ("TIMESTAMP_MS", [datetime.datetime(1969, 12, 31, 23, 59, 59, 999_999)]),
        ("TIMESTAMP_NS", [datetime.datetime(2262, 4, 11, 23, 47, 16), datetime.datetime(1677, 9, 22)]),
        ("BIGINT", []),
    ],
)
def test_encode_of_common_values_is_done_in_c(sql_type, values):
    assert _codecc.encode_column(descriptor(sql_type), list(values)) is not NotImplemented
    expected, got = encode_outcomes(sql_type, values)
    assert expected[0] == "returned"
    assert got == expected


# Every error the Python codec raises for the kinds the C path handles:
# the C path hands such a column back, and the message is _codec.py's.
ERRORS = [
    ("BIGINT", [1, True], "ResultTypeError", r"value True of type bool at row 1 cannot be stored as BIGINT"),
    ("BIGINT", [1, 2.5], "ResultTypeError", r"value 2.5 of type float at row 1 cannot be stored as BIGINT"),
    ("BIGINT", ["7"], "ResultTypeError", r"value '7' of type str at row 0 cannot be stored as BIGINT"),
    ("BIGINT", [1 << 63], "OverflowError", r"value 9223372036854775808 at row 0 is out of range for BIGINT"),
    ("TINYINT", [None, 128], "OverflowError", r"value 128 at row 1 is out of range for TINYINT"),
    ("UTINYINT", [-1], "OverflowError", r"value -1 at row 0 is out of range for UTINYINT"),
    ("UINTEGER", [1 << 32], "OverflowError", r"value 4294967296 at row 0 is out of range for UINTEGER"),
    ("UBIGINT", [-1], "OverflowError", r"value -1 at row 0 is out of range for UBIGINT"),
    ("DOUBLE", [1.0, "x"], "ResultTypeError", r"value 'x' of type str at row 1 cannot be stored as DOUBLE"),
    # Ints beyond a UBIGINT's (FLOAT: beyond 2**53) DuckDB converts to FLOAT and DOUBLE itself.
    ("DOUBLE", [1 << 1100], "ResultTypeError", r"int at row 0 is converted to DOUBLE by DuckDB"),
    ("DOUBLE", [1.5, 1 << 64], "ResultTypeError", r"int at row 1 is converted to DOUBLE by DuckDB"),
    ("DOUBLE", [1.5, -(1 << 63) - 1], "ResultTypeError", r"int at row 1 is converted to DOUBLE by DuckDB"),
    ("FLOAT", [(1 << 53) + 1], "ResultTypeError", r"int at row 0 is converted to FLOAT by DuckDB"),
    ("DOUBLE", [1 << 1023, 1 << 1023, 1.5], "ResultTypeError", r"int at row 0 is converted to DOUBLE by DuckDB"),
    # A bool, or an object that converts to float, is DuckDB's to refuse or convert: array() takes them.
    ("DOUBLE", [1.5, True], "ResultTypeError", r"value True of type bool at row 1 cannot be stored as DOUBLE"),
    ("FLOAT", [decimal.Decimal("1.5")], "ResultTypeError", r"of type Decimal at row 0 cannot be stored as FLOAT"),
    ("BOOLEAN", [True, 1], "ResultTypeError", r"value 1 of type int at row 1 is not a bool"),
    ("VARCHAR", ["a", 1], "ResultTypeError", r"value 1 of type int at row 1 is not a str"),
    ("VARCHAR", ["a", b"b"], "ResultTypeError", r"value b'b' of type bytes at row 1 is not a str"),
    ("VARCHAR", ["\ud800"], "UnicodeEncodeError", r"surrogates not allowed"),
    ("BLOB", ["a"], "ResultTypeError", r"value 'a' of type str at row 0 is not bytes"),
    ("DATE", [1], "ResultTypeError", r"value 1 of type int at row 0 is not a datetime.date"),
    ("DATE", ["2020-13-01"], "ResultTypeError", r"value '2020-13-01' at row 0 is not a DATE \(nor DuckDB's text"),
    ("TIME", ["12:00"], "ResultTypeError", r"value '12:00' of type str at row 0 is not a datetime.time"),
    ("TIME", [datetime.datetime(2000, 1, 1)], "ResultTypeError", r"of type datetime at row 0 is not a datetime.time"),
    ("TIMESTAMP", [1.5], "ResultTypeError", r"value 1.5 of type float at row 0 is not a datetime.datetime"),
    ("TIMESTAMP", ["x"], "ResultTypeError", r"value 'x' at row 0 is not a TIMESTAMP \(nor DuckDB's text of one\)"),
    ("TIMESTAMP_NS", [datetime.datetime(1, 1, 1)], "OverflowError", r"int too big to convert"),
    ("TIMESTAMP_S", [datetime.time(1)], "ResultTypeError", r"time\(1, 0\) of type time at row 0 is not a datetime"),
]


@pytest.mark.parametrize(("sql_type", "values", "error", "pattern"), ERRORS)
def test_every_encode_error_is_the_python_codecs(sql_type, values, error, pattern):
    assert _codecc.encode_column(descriptor(sql_type), list(values)) is NotImplemented
    expected, got = encode_outcomes(sql_type, values)
    assert got == expected
    assert expected[0] == "raised" and expected[1].__name__ == error
    assert re.search(pattern, expected[2]), expected[2]


def test_encode_leaves_other_sequences_to_the_python_codec():
    kind = descriptor("BIGINT")
    for values in (array("q", [1, 2]), memoryview(array("q", [1, 2])), (1, 2)):
        assert _codecc.encode_column(kind, values) is NotImplemented
    assert encoded_form(encode_column_compiled(kind, array("q", [1, 2]))) == encoded_form(
        encode_column(kind, array("q", [1, 2]))
    )


# ---------------------------------------------------------------------------
# The per-row call loop
# ---------------------------------------------------------------------------


def _udf(function: Any, *, special_nulls: bool = False, errors_to_null: bool = False, arguments: int = 1) -> LoadedUdf:
    spec = UdfSpec(
        "f",
        "",
        "native",
        (("number", "q", "BIGINT"),) * arguments,
        ("number", "q", "BIGINT"),
        "BIGINT",
        special_nulls,
        errors_to_null,
        False,
    )
    return LoadedUdf(spec, function)


class Recorder:
    """Record every call's arguments; answer with ``respond``."""

    def __init__(self, respond: Any) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.respond = respond

    def __call__(self, *row: Any) -> Any:
        self.calls.append(row)
        return self.respond(*row)


def fail_on_three(x: Any) -> Any:
    if x == 3:
        raise ValueError(f"three is right out: {x}")
    return x


def interrupt_on_two(x: Any) -> Any:
    if x == 2:
        raise KeyboardInterrupt
    return x


def stop_on_two(x: Any) -> Any:
    if x == 2:
        raise BatchStopped
    return x


def none_on_two(*row: Any) -> Any:
    return None if 2 in row else len(row)


def call_outcomes(respond: Any, arguments: list[Any], length: int, skip_nulls: bool, **options: Any) -> tuple[Any, Any]:
    """Run both loops on fresh recorders; return (calls, outcome) of each."""
    results = []
    for loop in (call_per_row, call_per_row_compiled):
        recorder = Recorder(respond)
        udf = _udf(recorder, arguments=max(1, len(arguments)), **options)
        try:
            columns = [list(column) if isinstance(column, list) else column for column in arguments]
            result: Any = ("returned", typed(loop(udf, columns, length, skip_nulls)))
        except BaseException as error:  # BatchStopped must come out of both alike
            result = ("raised", type(error), str(error))
        results.append((recorder.calls, result))
    return results[0], results[1]


MEMORY = memoryview(array("q", [1, 2, 3, 4]))
CALL_CASES = {
    "identity": (lambda x: x, [[1, 2, 3]], 3, False, {}),
    "NULL rows skipped": (lambda x: x * 2, [[1, None, 3]], 3, True, {}),
    "NULL rows passed with special handling": (lambda x: x, [[1, None, 3]], 3, False, {"special_nulls": True}),
    "None for a non-NULL row": (none_on_two, [[1, 2, 3]], 3, False, {}),
    "None for a non-NULL row, NULLs skipped": (none_on_two, [[None, 1, 2, 3]], 4, True, {}),
    "None allowed with special handling": (none_on_two, [[1, 2, 3]], 3, False, {"special_nulls": True}),
    "an exception fails the batch": (fail_on_three, [[1, 2, 3, 4]], 4, False, {}),
    "an exception after a None": (lambda x: fail_on_three(x) if x != 1 else None, [[1, 2, 3]], 3, False, {}),
    "an exception is NULL with return_null": (fail_on_three, [[1, 3, None, 4]], 4, True, {"errors_to_null": True}),
    # As in DuckDB, KeyboardInterrupt and SystemExit raised by a UDF are its errors.
    "KeyboardInterrupt is the UDF's error": (interrupt_on_two, [[1, 2, 3]], 3, False, {}),
    "KeyboardInterrupt is NULL with return_null": (interrupt_on_two, [[1, 2, 3]], 3, False, {"errors_to_null": True}),
    "SystemExit is NULL with return_null": (lambda x: sys.exit(x), [[1, 2]], 2, False, {"errors_to_null": True}),
    # The runtime's own stop goes through, whatever the handling.
    "BatchStopped goes through": (stop_on_two, [[1, 2, 3]], 3, False, {}),
    "BatchStopped goes through return_null": (stop_on_two, [[1, 2, 3]], 3, False, {"errors_to_null": True}),
    "no arguments": (lambda: 7, [], 4, False, {}),
    "no arguments, return_null": (lambda: 1 // 0, [], 2, False, {"errors_to_null": True}),
    "ten columns": (lambda *row: sum(row), [[1, 2]] * 5 + [MEMORY] * 5, 2, False, {}),
    "ten columns with NULLs": (lambda *row: sum(row), [[1, None]] * 9 + [[3, 4]], 2, True, {}),
    "columns of different lengths": (lambda x, y: x + y, [[1, 2, 3], [1, 2]], 3, False, {}),
    "a memoryview column": (lambda x, y: (x, y), [MEMORY, [None, 1, 2, 3]], 4, True, {}),
    "a tuple column": (lambda x: x, [(1, None)], 2, True, {}),
}


@pytest.mark.parametrize("case", list(CALL_CASES))
def test_call_loop_matches_the_python_loop(case):
    respond, arguments, length, skip_nulls, options = CALL_CASES[case]
    python, compiled = call_outcomes(respond, arguments, length, skip_nulls, **options)
    assert compiled == python


def test_call_loop_of_a_non_callable_fails_as_the_python_loop():
    errors = []
    for loop in (call_per_row, call_per_row_compiled):
        with pytest.raises(UdfRaised) as raised:
            loop(_udf(5), [[1]], 1, False)
        errors.append(str(raised.value))
    assert errors[0] == errors[1]
    assert "'int' object is not callable" in errors[1]


@pytest.mark.parametrize("typecode", list("bhiqBHIQfd"))
def test_call_loop_reads_every_number_memoryview_as_python_does(typecode):
    values = array(typecode, [0, 1, 100, 2] if typecode in "BHIQ" else [0, -1, 100, 2])
    column = memoryview(values)
    sliced = memoryview(values.tobytes()).cast(typecode)[1:3]
    strided = column[::2]  # not contiguous: read as a sequence
    for argument in (column, sliced, strided):
        python, compiled = call_outcomes(lambda x: x, [argument], len(argument), False)
        assert compiled == python


def test_udf_exception_text_is_the_same_traceback():
    udf = _udf(fail_on_three)
    messages = []
    for loop in (call_per_row, call_per_row_compiled):
        with pytest.raises(UdfRaised) as raised:
            loop(udf, [[1, 2, 3]], 3, False)
        messages.append(str(raised.value))
    assert messages[0] == messages[1]
    kind, message, frames = messages[1].split(FIELD_SEPARATOR)
    assert (kind, message) == ("ValueError", "three is right out: 3") and "in fail_on_three" in frames
    assert "_worker/runtime.py" not in messages[1]


def test_null_result_error_names_the_row():
    with pytest.raises(UdfResultInvalid, match=r"returned None at row 1, whose arguments are all non-NULL"):
        call_per_row_compiled(_udf(none_on_two), [[1, 2, 3]], 3, False)


# ---------------------------------------------------------------------------
# Leaks, interpreters, the runtime's choice
# ---------------------------------------------------------------------------


def test_nothing_leaks_over_many_calls():
    texts = pa.array([f"row {i} é" if i % 5 else None for i in range(2048)])
    text_column, text_kind = column_of(texts, "VARCHAR"), descriptor("VARCHAR")
    numbers = pa.array([i if i % 7 else None for i in range(2048)], pa.int64())
    number_column, number_kind = column_of(numbers, "BIGINT"), descriptor("BIGINT")
    stamps = pa.array(list(range(0, 2048 * 10**6, 10**6)), pa.timestamp("us"))
    stamp_column, stamp_kind = column_of(stamps, "TIMESTAMP"), descriptor("TIMESTAMP")
    udf = _udf(fail_on_three, errors_to_null=True)
    argument = memoryview(array("q", range(2048)))

    def work() -> None:
        for _ in range(20):
            decoded = _codecc.decode_column(text_kind, 2048, text_column)
            _codecc.encode_column(text_kind, decoded)
            _codecc.encode_column(text_kind, [*decoded, 1])  # handed back half-way
            numbers_ = _codecc.decode_column(number_kind, 2048, number_column)
            _codecc.encode_column(number_kind, numbers_)
            call_per_row_compiled(udf, [numbers_], 2048, True)
            call_per_row_compiled(udf, [argument], 2048, False)
            stamps_ = _codecc.decode_column(stamp_kind, 2048, stamp_column)
            _codecc.encode_column(stamp_kind, stamps_)

    work()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(5):
            work()
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 64 * 1024, f"{grown} bytes still allocated after 100 rounds"
    # Every buffer the C code took from a view was given back: release() refuses a view still exported.
    for view in (argument, *text_column[1:], *number_column[1:], *stamp_column[1:]):
        if isinstance(view, memoryview):
            view.release()


def test_loads_in_isolated_interpreters_each_with_its_own_module():
    # In a child: a crash in an interpreter must fail this test, not the run.
    script = textwrap.dedent(
        """
        import threading, _interpreters
        from duckdb_subinterp import _codecc
        code = '''
        import sys, types
        package = types.ModuleType("duckdb_subinterp")
        package.__path__ = [package_dir]
        sys.modules["duckdb_subinterp"] = package
        from duckdb_subinterp import _codecc
        import datetime
        values = _codecc.decode_column(("date32",), 3, (0, None, memoryview(bytes([1, 0, 0, 0]) * 3)))
        assert values == [datetime.date(1970, 1, 2)] * 3, values
        assert _codecc.encode_column(("utf8", "i"), ["é", None])[0] == 1
        assert _codecc.call_per_row(len, [["ab", "c"]], 2, False, False, True, (Exception,)) == ([2, 1], -1)
        '''
        import duckdb_subinterp, os
        package_dir = os.path.dirname(duckdb_subinterp.__file__)
        failures = []

        def run():
            interpreter = _interpreters.create("isolated")
            try:
                for _ in range(50):
                    failure = _interpreters.exec(interpreter, code, {"package_dir": package_dir})
                    if failure is not None:
                        failures.append(failure.formatted)
                        return
            finally:
                _interpreters.destroy(interpreter)

        threads = [threading.Thread(target=run) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not any(thread.is_alive() for thread in threads)
        assert not failures, failures
        print("ok", _codecc.encode_column(("bool",), [True])[0])
        """
    )
    result = run_python("-c", script, timeout=120, cwd=PACKAGE_ROOT)
    assert result.returncode == 0, result.report()
    assert result.stdout.split() == ["ok", "0"]


def test_workers_use_the_compiled_codec_and_the_uncompiled_variant_does_not(small_pool, exec_path_pool):
    con = duckdb.connect()
    try:
        for pool, expected in ((small_pool, "compiled"), (exec_path_pool, "python")):
            duckdb_subinterp.create_function(con, "codec", udf_module.codec_in_use, ["BIGINT"], "VARCHAR", pool=pool)
            assert con.sql("SELECT DISTINCT codec(i) FROM range(10) t(i)").fetchall() == [(expected,)]
            duckdb_subinterp.remove_function(con, "codec")
        # Worker processes run the same runtime, so the same codec.
        duckdb_subinterp.create_function(
            con, "loaded", udf_module.codec_loaded, ["BIGINT"], "BOOLEAN", backend="processes"
        )
        assert con.sql("SELECT DISTINCT loaded(i) FROM range(10) t(i)").fetchall() == [(True,)]
    finally:
        con.close()


def test_without_the_extension_the_runtime_uses_the_python_codec():
    script = textwrap.dedent(
        """
        import sys
        sys.modules["duckdb_subinterp._codecc"] = None  # as where it was not built
        from array import array
        from duckdb_subinterp._worker.protocol import STATUS_SLOTS
        from duckdb_subinterp._worker.runtime import COMPILED_CODEC, PYTHON_CODEC, Runtime
        assert COMPILED_CODEC is None
        assert Runtime(array("q", bytes(8 * STATUS_SLOTS))).codec is PYTHON_CODEC
        print("ok")
        """
    )
    result = run_python("-c", script, timeout=60, cwd=PACKAGE_ROOT)
    assert result.returncode == 0, result.report()
    assert result.stdout.strip() == "ok"


def test_without_the_extension_one_warning_names_the_fix(monkeypatch, small_pool):
    monkeypatch.setattr(_runtime, "COMPILED_CODEC", None)
    _runtime.warn_if_codec_not_compiled.cache_clear()
    con = duckdb.connect()
    try:
        with pytest.warns(CompiledPathUnavailableWarning, match="_codecc.*C compiler") as warned:
            duckdb_subinterp.create_function(con, "f", udf_module.add_one, ["BIGINT"], "BIGINT", pool=small_pool)
        assert warned[0].filename == __file__
        assert con.sql("SELECT f(41)").fetchall() == [(42,)]
    finally:
        con.close()
        _runtime.warn_if_codec_not_compiled.cache_clear()


def test_the_runtime_chooses_in_one_place():
    status = array("q", bytes(8 * _protocol.STATUS_SLOTS))
    assert _runtime.Runtime(status).codec is COMPILED_CODEC
    assert _runtime.Runtime(status, compiled=False).codec is PYTHON_CODEC
