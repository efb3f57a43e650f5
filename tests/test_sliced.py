"""Arrow inputs with non-zero offsets (slices) decode correctly on every pooled backend."""

from __future__ import annotations

import datetime

import duckdb
import pyarrow as pa
import pytest
from udfs import udf_module

import duckdb_subinterp
from duckdb_subinterp._registration.api import _dispatcher

BASE = 5_000
VALUES = {
    "BOOLEAN": [None if i % 7 == 0 else i % 3 == 0 for i in range(BASE)],
    "INTEGER": [None if i % 7 == 0 else i * 13 - 20000 for i in range(BASE)],
    "UBIGINT": [None if i % 7 == 0 else 2**63 + i for i in range(BASE)],
    "DOUBLE": [None if i % 7 == 0 else i / 3 for i in range(BASE)],
    "VARCHAR": [None if i % 7 == 0 else ("ü" * (i % 4)) + f"s{i}" for i in range(BASE)],
    "BLOB": [None if i % 7 == 0 else bytes([i % 256]) * (i % 5) for i in range(BASE)],
    "DATE": [None if i % 7 == 0 else datetime.date(1950, 1, 1) + datetime.timedelta(days=i * 11) for i in range(BASE)],
    "TIMESTAMP": [
        None if i % 7 == 0 else datetime.datetime(1969, 12, 31, 23, 59) + datetime.timedelta(seconds=i * 977)
        for i in range(BASE)
    ],
}
ARROW_TYPES = {
    "BOOLEAN": pa.bool_(),
    "INTEGER": pa.int32(),
    "UBIGINT": pa.uint64(),
    "DOUBLE": pa.float64(),
    "VARCHAR": pa.string(),
    "BLOB": pa.binary(),
    "DATE": pa.date32(),
    "TIMESTAMP": pa.timestamp("us"),
}


@pytest.mark.parametrize("udf_type", ["native", "vectorized"])
@pytest.mark.parametrize("sql_type", list(VALUES))
@pytest.mark.parametrize(("start", "length"), [(0, 2048), (3, 2000), (1021, 5), (4999, 1)])
def test_sliced_input_round_trips(backend, sql_type, udf_type, start, length):
    if backend == "inline" and udf_type == "native":
        pytest.skip("inline native UDFs are DuckDB's own: there is no dispatcher to call")
    con = duckdb.connect()
    function = udf_module.identity if udf_type == "native" else udf_module.as_list
    duckdb_subinterp.create_function(
        con, "ident", function, [sql_type], sql_type, type=udf_type, null_handling="special", backend=backend
    )
    dispatcher = _dispatcher(con, "ident")
    full = pa.array(VALUES[sql_type], type=ARROW_TYPES[sql_type])
    sliced = full.slice(start, length)
    assert sliced.offset == start
    result = dispatcher(pa.chunked_array([sliced]))
    assert result.to_pylist() == VALUES[sql_type][start : start + length]
    con.close()


def test_multi_chunk_input_is_combined(backend):
    if backend == "inline":
        pytest.skip("inline native UDFs are DuckDB's own")
    con = duckdb.connect()
    duckdb_subinterp.create_function(con, "ident", udf_module.identity, ["VARCHAR"], "VARCHAR", backend=backend)
    dispatcher = _dispatcher(con, "ident")
    chunks = [pa.array(["a", None, "b"]), pa.array(["c", "déjà"]).slice(1)]
    assert dispatcher(pa.chunked_array(chunks)).to_pylist() == ["a", None, "b", "déjà"]
    con.close()


def test_long_strings_grow_the_result_buffer(backend):
    if backend == "inline":
        pytest.skip("inline native UDFs are DuckDB's own")
    con = duckdb.connect()
    duckdb_subinterp.create_function(con, "widen", lambda s: s * 1000, ["VARCHAR"], "VARCHAR", backend=backend)
    rows = con.sql("SELECT widen('ab' || i) FROM range(3000) t(i)").fetchall()
    assert [row[0] for row in rows] == [f"ab{i}" * 1000 for i in range(3000)]
    con.close()


# ---------------------------------------------------------------------------
# Nested columns: sliced parents, sliced children, empty and all-NULL batches
# ---------------------------------------------------------------------------


def _ints(count: int, start: int = 0) -> pa.Array:
    return pa.array([None if i % 5 == 0 else i for i in range(start, start + count)], pa.int32())


def _texts(count: int) -> pa.Array:
    return pa.array([None if i % 6 == 0 else "ü✓" * (i % 3) + f"\x00{i}" for i in range(count)], pa.string())


def _list_over_sliced_child() -> pa.Array:
    # Offsets start at 0, but the child itself begins 7 values into its buffers.
    child = _ints(300).slice(7)
    offsets = pa.array([0, 2, 2, 5, 9, 9, 20, 40, 41, 41, 100], pa.int32())
    mask = pa.array([i % 4 == 1 for i in range(10)])
    return pa.ListArray.from_arrays(offsets, child, mask=mask)


def _struct_over_sliced_children() -> pa.Array:
    numbers = _ints(60).slice(11, 40)
    texts = _texts(70).slice(23, 40)
    lists = pa.ListArray.from_arrays(pa.array(range(0, 81, 2), pa.int32()), _ints(100, 1000).slice(3))
    mask = pa.array([i % 7 == 3 for i in range(40)])
    return pa.StructArray.from_arrays([numbers, texts, lists], names=["n", "t", "l"], mask=mask)


def _map_over_sliced_entries() -> pa.Array:
    keys = pa.array([f"k{i}" for i in range(80)]).slice(5, 60)
    items = _texts(90).slice(9, 60)
    offsets = pa.array([0, 3, 3, 10, None, 20, 33, 60], pa.int32())
    return pa.MapArray.from_arrays(offsets, keys, items)


def _fixed_list_over_sliced_child() -> pa.Array:
    child = _texts(100).slice(13, 60)
    return pa.FixedSizeListArray.from_arrays(child, 3, mask=pa.array([i % 5 == 2 for i in range(20)]))


NESTED = {
    "INTEGER[]": _list_over_sliced_child,
    "STRUCT(n INTEGER, t VARCHAR, l INTEGER[])": _struct_over_sliced_children,
    "MAP(VARCHAR, VARCHAR)": _map_over_sliced_entries,
    "VARCHAR[3]": _fixed_list_over_sliced_child,
    "STRUCT(n INTEGER, t VARCHAR, l INTEGER[])[]": lambda: pa.ListArray.from_arrays(
        pa.array([0, 1, 1, 4, 30, 31], pa.int32()), _struct_over_sliced_children().slice(2)
    ),
}


def _identity_dispatcher(con: duckdb.DuckDBPyConnection, backend: str, sql_type: str, udf_type: str = "vectorized"):
    function = udf_module.identity if udf_type == "native" else udf_module.as_list
    duckdb_subinterp.create_function(
        con, "ident", function, [sql_type], sql_type, type=udf_type, null_handling="special", backend=backend
    )
    return _dispatcher(con, "ident")


@pytest.mark.parametrize("sql_type", list(NESTED))
@pytest.mark.parametrize("cut", [None, (0, 0), (1, 3), (2, 1)], ids=["whole", "empty", "middle", "one"])
def test_nested_input_with_sliced_children_round_trips(backend, sql_type, cut):
    con = duckdb.connect()
    dispatcher = _identity_dispatcher(con, backend, sql_type)
    column = NESTED[sql_type]()
    if cut is not None:
        column = column.slice(cut[0], min(cut[1], len(column) - cut[0]))
    result = dispatcher(pa.chunked_array([column], type=column.type))
    assert len(result) == len(column)
    assert result.to_pylist() == column.to_pylist()
    con.close()


@pytest.mark.parametrize(
    "sql_type",
    ["BIGINT", "VARCHAR", "HUGEINT", "DECIMAL(18,3)", "INTEGER[]", "STRUCT(a INTEGER)", "MAP(INTEGER, INTEGER)"],
)
def test_all_null_batch_round_trips(backend, sql_type):
    con = duckdb.connect()
    dispatcher = _identity_dispatcher(con, backend, sql_type)
    column = con.sql(f"SELECT CAST(NULL AS {sql_type}) FROM range(2000)").to_arrow_table().column(0)
    result = dispatcher(column)
    assert result.null_count == 2000 and len(result) == 2000
    con.close()


def test_strings_with_nul_bytes_multibyte_text_and_huge_values(backend):
    huge = "ß" * (8 * 1024 * 1024) + "\x00end"  # 16 MiB + 4 bytes of UTF-8
    values = ["", "\x00", "a\x00b", "日本語", "🦆" * 3, huge, None, "e\u0301"]
    con = duckdb.connect()
    dispatcher = _identity_dispatcher(con, backend, "VARCHAR", "vectorized")
    result = dispatcher(pa.chunked_array([pa.array(values, pa.string())]))
    assert result.to_pylist() == values
    duckdb_subinterp.create_function(con, "size", len, ["VARCHAR"], "BIGINT", backend=backend)
    assert con.sql("SELECT size(repeat('ß', 8 * 1024 * 1024) || chr(0))").fetchall() == [(8 * 1024 * 1024 + 1,)]
    con.close()


@pytest.mark.parametrize(
    "arrow_type", [pa.string(), pa.large_string(), pa.string_view()], ids=["string", "large_string", "string_view"]
)
def test_every_string_layout_is_read(backend, arrow_type):
    values = [None if i % 9 == 0 else "x" * (i % 20) + "ü" * (i % 3) for i in range(3000)]
    con = duckdb.connect()
    dispatcher = _identity_dispatcher(con, backend, "VARCHAR[]", "vectorized")
    column = pa.array([[value, value] for value in values], pa.list_(arrow_type)).slice(17)
    assert dispatcher(pa.chunked_array([column])).to_pylist() == [[value, value] for value in values[17:]]
    con.close()


def test_arrow_string_settings_of_the_connection(backend):
    con = duckdb.connect()
    con.execute("SET produce_arrow_string_view=true")
    con.execute("SET arrow_large_buffer_size=true")
    duckdb_subinterp.create_function(con, "shout", udf_module.shout, ["VARCHAR"], "VARCHAR", backend=backend)
    rows = con.sql("SELECT shout(repeat('ü', i::INTEGER % 15) || i) FROM range(3000) t(i)").fetchall()
    assert [row[0] for row in rows] == [("Ü" * (i % 15) + str(i)).upper() + "!" for i in range(3000)]
    con.close()


def test_dates_beyond_python_and_infinities_are_what_duckdb_gives(backend):
    con = duckdb.connect()
    values = "('infinity'), ('-infinity'), ('10000-03-15 01:02:03.5'), ('0045-03-15 (BC) 12:00:00.12'), ('2020-01-01')"
    for sql_type in ["TIMESTAMP", "DATE"]:
        for name in ("reference", "mine"):
            if name == "reference":
                con.create_function(name, repr, [sql_type], "VARCHAR")
            else:
                duckdb_subinterp.create_function(con, name, repr, [sql_type], "VARCHAR", backend=backend)
        query = f"SELECT reference(x::{sql_type}), mine(x::{sql_type}) FROM (VALUES {values}) t(x)"
        rows = con.sql(query).fetchall()
        assert [row[0] for row in rows] == [row[1] for row in rows]
        con.remove_function("reference")
        con.remove_function("mine")
    # And the text form goes back in: an identity UDF keeps every value.
    duckdb_subinterp.create_function(con, "same", udf_module.identity, ["TIMESTAMP"], "TIMESTAMP", backend=backend)
    rows = con.sql(f"SELECT x::TIMESTAMP = same(x::TIMESTAMP) FROM (VALUES {values}) t(x) WHERE x NOT LIKE '%inf%'")
    assert rows.fetchall() == [(True,)] * 3
    con.close()


@pytest.mark.parametrize(
    ("sql_type", "value"),
    [
        ("MAP(INTEGER[], INTEGER)", "MAP {[1, 2]: 3, []: NULL}"),
        ("MAP(INTEGER[2], VARCHAR)", "MAP {[1, NULL]::INTEGER[2]: 'x'}"),
        ("MAP(STRUCT(a INTEGER), INTEGER)", "MAP {{'a': 1}: 3}"),
        ("MAP(MAP(INTEGER, INTEGER), INTEGER)", "MAP {MAP {1: 2}: 3}"),
        ("MAP(INTEGER[], INTEGER)", "MAP {}::MAP(INTEGER[], INTEGER)"),
    ],
)
def test_maps_with_nested_keys_are_what_duckdb_gives(backend, sql_type, value):
    con = duckdb.connect()
    con.create_function("reference", repr, [sql_type], "VARCHAR")
    duckdb_subinterp.create_function(con, "mine", repr, [sql_type], "VARCHAR", backend=backend)
    duckdb_subinterp.create_function(con, "same", udf_module.identity, [sql_type], sql_type, backend=backend)
    query = f"SELECT reference(x), mine(x), same(x) = x FROM (SELECT ({value})::{sql_type} AS x)"
    ((expected, got, same),) = con.sql(query).fetchall()
    assert got == expected
    assert same
    con.close()
