"""The C data interface helpers (``_arrowc``) against the pyarrow code they replace.

Arguments: every supported DuckDB type, with NULLs and sliced, must decode
to the same values whichever reader made the column tuple; layouts the C
reader does not know (string views, several chunks) must fall back to
pyarrow, not fail. Results: every result layout, NULLs at every level,
must come out of ``CompiledOutputBuffers`` as out of the pyarrow version.
"""

from __future__ import annotations

import gc
import warnings

import duckdb
import pyarrow as pa
import pytest

from duckdb_subinterp._codec import copy_buffers, decode_column, encode_column
from duckdb_subinterp._engine import arrow as _arrow
from duckdb_subinterp._engine.arrow import (
    CompiledOutputBuffers,
    OutputBuffers,
    ResultLayout,
    column_buffers,
    descriptor_for,
    layout_signature,
    output_buffers_type,
)
from duckdb_subinterp._errors import CompiledPathUnavailableWarning

_arrowc = pytest.importorskip("duckdb_subinterp._arrowc")
read_stream = _arrowc.read_stream

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
        made[sql_type] = (
            column.unify_dictionaries() if sql_type == "mood" else column,
            descriptor_for(relation.types[0]),
        )
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
    signature, _node = read_stream(berlin.__arrow_c_stream__())
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


@pytest.mark.parametrize("start", [0, 1, 2])
def test_a_unions_rows_are_null_where_its_member_is(start):
    # pyarrow.compute.is_valid said "all valid" for a union up to some version, and the member's
    # answer after: the rows a worker leaves out must not depend on which pyarrow is installed.
    ids = pa.array([0, 1, 1, 0, 1], pa.int8())
    sparse = pa.UnionArray.from_sparse(ids, [pa.array([1, None, 3, None, 5]), pa.array(["a", None, "c", "d", None])])
    dense = pa.UnionArray.from_dense(
        ids, pa.array([0, 0, 1, 1, 2], pa.int32()), [pa.array([1, None]), pa.array([None, "c", None])]
    )
    assert _arrow._valid_rows(sparse.slice(start)).tolist() == [True, False, True, False, False][start:]
    assert _arrow._valid_rows(dense.slice(start)).tolist() == [True, False, True, False, False][start:]


# ---------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------

INT = ("number", "i", "INTEGER")
TEXT = ("utf8", "i")
RESULTS = {
    "BIGINT": (("number", "q", "BIGINT"), [1, None, -(2**63), 2**63 - 1]),
    "BOOLEAN": (("bool",), [True, None, False, True, True, False, False, True, None]),
    "VARCHAR": (TEXT, ["a", None, "", "déjà vu" * 40]),
    "INTEGER[]": (("list", "i", INT), [[1, None], None, [], [3, 4, 5]]),
    "INTEGER[2]": (("array", 2, INT), [(1, None), None, (3, 4)]),
    "STRUCT": (("struct", ("a", "b"), (INT, TEXT)), [{"a": 1, "b": None}, None, {"a": None, "b": "x"}]),
    "MAP": (("map", TEXT, INT), [{"k": 1, "l": None}, None, {}]),
    "STRUCT(LIST, MAP)": (
        ("struct", ("l", "m"), (("list", "i", TEXT), ("map", INT, ("list", "i", INT)))),
        [{"l": ["x", None], "m": {1: [2, None]}}, None, {"l": None, "m": None}, {"l": [], "m": {3: None}}],
    ),
}


def _written(outputs_type: type[OutputBuffers], descriptor: tuple, values: list) -> pa.Array:
    layout = ResultLayout(descriptor, "test")
    encoded = encode_column(descriptor, values)
    raw = encoded.raw_buffers()
    outputs = outputs_type(layout, len(values), [1] * layout.buffer_count)
    outputs.grow([buffer.nbytes for buffer in raw])
    copy_buffers(raw, outputs.views())
    return outputs.to_array(encoded.null_count, encoded.shapes())


@pytest.mark.parametrize("name", list(RESULTS))
def test_compiled_outputs_give_the_same_arrays(name):
    descriptor, values = RESULTS[name]
    compiled = _written(CompiledOutputBuffers, descriptor, values)
    compiled.validate(full=True)
    assert compiled.equals(_written(OutputBuffers, descriptor, values))
    assert compiled.null_count == values.count(None)


def test_a_result_outlives_its_block_and_views():
    layout = ResultLayout(TEXT, "VARCHAR")
    values = [f"row {i}" for i in range(1000)]
    encoded = encode_column(TEXT, values)
    outputs = CompiledOutputBuffers(layout, 1000, [1, 8, 8])
    views = outputs.views()
    copy_buffers(encoded.raw_buffers(), views)
    result = outputs.to_array(0)
    del outputs, views, encoded
    gc.collect()
    assert result.to_pylist() == values
    assert pa.chunked_array([result]).to_pylist() == values  # exported again, as DuckDB reads it


def test_export_refuses_a_plan_that_does_not_fit():
    block = _arrowc.OutputBlock([1, 8])
    with pytest.raises(ValueError, match="plan"):
        block.export((2, 1), 1, 0, ())
    with pytest.raises(ValueError, match="plan"):
        block.export((3, 0), 1, 0, ())


def test_without_the_extension_one_warning_names_the_fix(monkeypatch):
    monkeypatch.setattr(_arrow, "read_stream", None)
    monkeypatch.setattr(_arrow, "OutputBlock", None)
    _arrow._warn_reader_unavailable.cache_clear()
    with pytest.warns(CompiledPathUnavailableWarning, match="C compiler"):
        assert layout_signature(pa.int64()) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert layout_signature(pa.int64()) is None  # once only
        assert output_buffers_type() is OutputBuffers
    _arrow._warn_reader_unavailable.cache_clear()
