"""The C reader of Arrow arguments (``_arrowc.read_stream``) against the pyarrow one it replaces.

Every supported DuckDB type, with NULLs and sliced, must decode to the same
values whichever reader made the column tuple; layouts the C reader does not
know (string views, several chunks) must fall back to pyarrow, not fail.
"""

from __future__ import annotations

import gc
import warnings

import duckdb
import pyarrow as pa
import pytest

from duckdb_subinterp import _arrow
from duckdb_subinterp._arrow import column_buffers, descriptor_for, layout_signature
from duckdb_subinterp._codec import decode_column
from duckdb_subinterp._errors import CompiledPathUnavailableWarning

read_stream = pytest.importorskip("duckdb_subinterp._arrowc").read_stream

ROWS = 3000
# type -> expression of i; every fifth row (and more, inside nested values) is NULL.
COLUMNS = {
    "BOOLEAN": "i % 3 = 0",
    "TINYINT": "(i % 200 - 100)::TINYINT",
    "SMALLINT": "(i * 7 - 9000)::SMALLINT",
    "INTEGER": "i * 131 - 200000",
    "BIGINT": "i::BIGINT * 9876543210",
    "UTINYINT": "(i % 250)::UTINYINT",
    "UBIGINT": "(i::UBIGINT * 6148914691236517)",
    "FLOAT": "(i / 3)::FLOAT",
    "DOUBLE": "i / 7",
    "HUGEINT": "i::HUGEINT * 1000000000000000000000",
    "DECIMAL(18,3)": "(i / 7)::DECIMAL(18,3)",
    "DECIMAL(38,10)": "(i / 7)::DECIMAL(38,10)",
    "VARCHAR": "repeat('ü', i % 3) || 's' || i",
    "BLOB": "('b' || i)::BLOB",
    "DATE": "DATE '1950-01-01' + i::INTEGER",
    "TIME": "TIME '00:00:00' + INTERVAL (i) SECOND",
    "TIMESTAMP": "TIMESTAMP '1969-12-31 23:00:00' + INTERVAL (i * 977) SECOND",
    "TIMESTAMP_MS": "(TIMESTAMP '2000-01-01' + INTERVAL (i) MINUTE)::TIMESTAMP_MS",
    "TIMESTAMPTZ": "TIMESTAMPTZ '2000-01-01 00:00:00+00' + INTERVAL (i) MINUTE",
    "INTERVAL": "INTERVAL (i) DAY + INTERVAL (i) MICROSECOND",
    "UUID": "('00000000-0000-0000-0000-' || lpad(i::VARCHAR, 12, '0'))::UUID",
    "mood": "(['sad', 'ok', 'happy'])[i % 3 + 1]::mood",
    "INTEGER[]": "[i, NULL, i + 1][1:(i % 4)]",
    "VARCHAR[]": "['a' || i, NULL][1:(i % 3)]",
    "INTEGER[3]": "[i, i + 1, CASE WHEN i % 2 = 0 THEN NULL ELSE i END]::INTEGER[3]",
    "STRUCT(a INTEGER, b VARCHAR)": "{'a': i, 'b': CASE WHEN i % 4 = 0 THEN NULL ELSE 's' || i END}",
    "MAP(VARCHAR, INTEGER)": "MAP {'k' || i: i, 'z': NULL}",
    "STRUCT(l INTEGER[], m MAP(VARCHAR, DOUBLE))": "{'l': [i, i * 2][1:(i % 3)], 'm': MAP {'x': i / 2}}",
}
SLICES = [(0, ROWS), (3, 2000), (1021, 5), (ROWS - 1, 1)]


@pytest.fixture(scope="module")
def columns() -> dict[str, tuple[pa.ChunkedArray, tuple]]:
    con = duckdb.connect()
    con.execute("CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')")
    con.execute("SET TimeZone = 'Asia/Kolkata'")
    made = {}
    for sql_type, expression in COLUMNS.items():
        relation = con.sql(
            f"SELECT CASE WHEN i % 5 = 0 THEN NULL ELSE ({expression})::{sql_type} END AS x FROM range({ROWS}) t(i)"
        )
        column = relation.to_arrow_table().column(0)
        made[sql_type] = (column.unify_dictionaries() if sql_type == "mood" else column, descriptor_for(relation.types[0]))
    con.close()
    return made


def _decoded(descriptor: tuple, length: int, column: tuple) -> list:
    return list(decode_column(descriptor, length, column))


@pytest.mark.parametrize(("start", "length"), SLICES)
@pytest.mark.parametrize("sql_type", list(COLUMNS))
def test_both_readers_give_the_same_values(columns, monkeypatch, sql_type, start, length):
    whole, descriptor = columns[sql_type]
    argument = pa.chunked_array([whole.combine_chunks().slice(start, length)])
    signature = layout_signature(argument.type)
    assert read_stream(argument.__arrow_c_stream__())[0] == signature  # the C reader takes it
    from_c = _decoded(descriptor, length, column_buffers(argument, argument.type, descriptor, signature))
    monkeypatch.setattr(_arrow, "read_stream", None)
    from_pyarrow = _decoded(descriptor, length, column_buffers(argument, argument.type, descriptor))
    assert from_c == from_pyarrow
    assert len(from_c) == length and from_c.count(None) == argument.null_count


def test_values_match_pyarrow_for_flat_columns(columns):
    for sql_type in ("BIGINT", "DOUBLE", "VARCHAR", "BLOB", "DATE", "BOOLEAN"):
        whole, descriptor = columns[sql_type]
        argument = pa.chunked_array([whole.combine_chunks().slice(7, 100)])
        column = column_buffers(argument, argument.type, descriptor, layout_signature(argument.type))
        assert _decoded(descriptor, 100, column) == argument.to_pylist(), sql_type


def test_views_are_read_only_and_outlive_the_array():
    argument = pa.chunked_array([pa.array([f"value {i}" for i in range(100)]).slice(10, 50)])
    signature = layout_signature(pa.string())
    column = column_buffers(argument, pa.string(), ("utf8", "i"), signature)
    del argument
    gc.collect()
    assert decode_column(("utf8", "i"), 50, column) == [f"value {i}" for i in range(10, 60)]
    with pytest.raises(TypeError, match="read-only"):
        column[3][0] = 0


def test_time_zones_are_data_not_layout():
    berlin = pa.chunked_array([pa.array([0], pa.timestamp("us", tz="Europe/Berlin"))])
    signature, node = read_stream(berlin.__arrow_c_stream__())
    assert signature == layout_signature(pa.timestamp("us", tz="UTC"))
    descriptor = ("timestamp", "us", True)
    assert column_buffers(berlin, pa.timestamp("us", tz="UTC"), descriptor, signature)[3] == "Europe/Berlin"


@pytest.mark.parametrize(
    "argument",
    [
        pa.chunked_array([pa.array(["a", None]), pa.array(["déjà"])]),  # two chunks: combined by pyarrow
        pa.chunked_array([pa.array(["a", None, "déjà"], pa.string_view())]),  # a layout it does not read
        pa.chunked_array([pa.array(["a", None, "déjà"], pa.large_string())]),  # read, but not the expected one
    ],
    ids=["chunks", "string_view", "large_string"],
)
def test_other_layouts_fall_back_to_pyarrow(argument):
    signature = layout_signature(pa.string())
    column = column_buffers(argument, pa.string(), ("utf8", "i"), signature)
    assert decode_column(("utf8", "i"), 3, column) == ["a", None, "déjà"]


def test_unknown_layouts_read_as_none():
    assert read_stream(pa.chunked_array([pa.array(["x"], pa.string_view())]).__arrow_c_stream__()) is None
    assert read_stream(pa.chunked_array([pa.array([1]), pa.array([2])]).__arrow_c_stream__()) is None
    assert read_stream(pa.chunked_array([], pa.int64()).__arrow_c_stream__()) is None


def test_without_the_extension_one_warning_names_the_fix(monkeypatch):
    monkeypatch.setattr(_arrow, "read_stream", None)
    _arrow._warn_reader_unavailable.cache_clear()
    with pytest.warns(CompiledPathUnavailableWarning, match="C compiler"):
        assert layout_signature(pa.int64()) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert layout_signature(pa.int64()) is None  # once only
    _arrow._warn_reader_unavailable.cache_clear()
