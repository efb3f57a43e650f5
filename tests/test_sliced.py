"""Arrow inputs with non-zero offsets (slices) decode correctly on every pooled backend."""

from __future__ import annotations

import datetime

import duckdb
import pyarrow as pa
import pytest
import udf_module

import duckdb_subinterp
from duckdb_subinterp._registration import _dispatchers

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
    "BOOLEAN": pa.bool_(), "INTEGER": pa.int32(), "UBIGINT": pa.uint64(), "DOUBLE": pa.float64(),
    "VARCHAR": pa.string(), "BLOB": pa.binary(), "DATE": pa.date32(), "TIMESTAMP": pa.timestamp("us"),
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
    dispatcher = _dispatchers[(id(con), "ident")]
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
    dispatcher = _dispatchers[(id(con), "ident")]
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
