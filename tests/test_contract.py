"""Every backend returns exactly what DuckDB's own create_function returns for the same function."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

import duckdb
import pytest
from udfs import udf_module

import duckdb_subinterp

ROWS = 5_000  # several 2048-row batches, the last one partial

# (SQL type, expression over i producing the column with NULLs, function by reference, function by value)
CASES: list[tuple[str, str, Callable[..., Any], Callable[..., Any]]] = [
    ("BOOLEAN", "CASE WHEN i % 5 = 0 THEN NULL ELSE i % 3 = 0 END", udf_module.invert, lambda b: b and True),
    (
        "TINYINT",
        "CASE WHEN i % 5 = 0 THEN NULL ELSE (i % 200 - 100)::TINYINT END",
        udf_module.add_one,
        lambda x: x // 2,
    ),
    (
        "SMALLINT",
        "CASE WHEN i % 5 = 0 THEN NULL ELSE (i * 7 % 60000 - 30000)::SMALLINT END",
        udf_module.add_one,
        lambda x: -x,
    ),
    (
        "INTEGER",
        "CASE WHEN i % 5 = 0 THEN NULL ELSE (i * 104729 - 2000000)::INTEGER END",
        udf_module.add_one,
        lambda x: x % 97,
    ),
    (
        "BIGINT",
        "CASE WHEN i % 5 = 0 THEN NULL ELSE i * 1000000007 - 4000000000000 END",
        udf_module.add_one,
        lambda x: x * 3,
    ),
    ("UTINYINT", "CASE WHEN i % 5 = 0 THEN NULL ELSE (i % 250)::UTINYINT END", udf_module.add_one, lambda x: x // 3),
    (
        "USMALLINT",
        "CASE WHEN i % 5 = 0 THEN NULL ELSE (i * 13 % 65000)::USMALLINT END",
        udf_module.add_one,
        lambda x: x // 3,
    ),
    ("UINTEGER", "CASE WHEN i % 5 = 0 THEN NULL ELSE (i * 104729)::UINTEGER END", udf_module.add_one, lambda x: x // 3),
    (
        "UBIGINT",
        "CASE WHEN i % 5 = 0 THEN NULL ELSE (i * 1000000007 + 9000000000000000000)::UBIGINT END",
        udf_module.add_one,
        lambda x: x // 3,
    ),
    ("FLOAT", "CASE WHEN i % 5 = 0 THEN NULL ELSE (i / 7)::FLOAT END", udf_module.negate_float, lambda x: x * 0.5),
    ("DOUBLE", "CASE WHEN i % 5 = 0 THEN NULL ELSE i / 7 - 100 END", udf_module.negate_float, lambda x: x * x),
    (
        "VARCHAR",
        "CASE WHEN i % 5 = 0 THEN NULL WHEN i % 3 = 0 THEN 'héllo ✓ ' || i ELSE 'row ' || i END",
        udf_module.shout,
        lambda s: s[::-1],
    ),
    (
        "BLOB",
        "CASE WHEN i % 5 = 0 THEN NULL ELSE ('b' || i)::BLOB END",
        udf_module.reverse_bytes,
        lambda b: b + b"\x00\xff",
    ),
    (
        "DATE",
        "CASE WHEN i % 5 = 0 THEN NULL ELSE DATE '1960-01-01' + i::INTEGER END",
        udf_module.next_day,
        lambda d: d.replace(day=1),
    ),
    (
        "TIMESTAMP",
        "CASE WHEN i % 5 = 0 THEN NULL ELSE TIMESTAMP '1969-12-31 23:00:00' + i * INTERVAL 37 SECOND END",
        udf_module.add_second,
        lambda t: t.replace(minute=0),
    ),
]

IDS = [case[0] for case in CASES]


def one(con: duckdb.DuckDBPyConnection, query: str) -> tuple[Any, ...]:
    (row,) = con.sql(query).fetchall()
    return row


def _compare(
    con: duckdb.DuckDBPyConnection, sql_type: str, expression: str, mine: str, reference: str, *, nulls: bool = True
) -> None:
    con.execute(f"CREATE OR REPLACE TABLE t AS SELECT i, ({expression})::{sql_type} AS x FROM range({ROWS}) r(i)")
    rows = con.sql(f"SELECT i, {reference}(x), {mine}(x) FROM t ORDER BY i").fetchall()
    assert len(rows) == ROWS
    mismatches = [row for row in rows if row[1] != row[2]]
    assert not mismatches, f"{len(mismatches)} rows differ, first: {mismatches[:3]}"
    assert any(row[1] is not None for row in rows)
    assert any(row[1] is None for row in rows) == nulls


@pytest.mark.parametrize("shipping", ["by_reference", "by_value"])
@pytest.mark.parametrize(("sql_type", "expression", "by_reference", "by_value"), CASES, ids=IDS)
def test_native_matches_duckdb(con, backend, sql_type, expression, by_reference, by_value, shipping):
    function = by_reference if shipping == "by_reference" else by_value
    con.create_function("reference", function, [sql_type], sql_type)
    duckdb_subinterp.create_function(con, "mine", function, [sql_type], sql_type, backend=backend)
    _compare(con, sql_type, expression, "mine", "reference")


@pytest.mark.parametrize(("sql_type", "expression", "by_reference", "by_value"), CASES, ids=IDS)
def test_vectorized_matches_duckdb_per_row(con, backend, sql_type, expression, by_reference, by_value):
    def per_batch(values):
        return [by_value(value) for value in values]

    con.create_function("reference", by_value, [sql_type], sql_type)
    duckdb_subinterp.create_function(con, "mine", per_batch, [sql_type], sql_type, type="vectorized", backend=backend)
    _compare(con, sql_type, expression, "mine", "reference")


def test_special_null_handling(con, backend):
    con.create_function("reference", udf_module.describe, ["BIGINT"], "VARCHAR", null_handling="special")
    duckdb_subinterp.create_function(
        con, "mine", udf_module.describe, ["BIGINT"], "VARCHAR", null_handling="special", backend=backend
    )
    _compare(con, "BIGINT", "CASE WHEN i % 4 = 0 THEN NULL ELSE i END", "mine", "reference", nulls=False)


def test_duckdb_enums_are_accepted(con, backend):
    from duckdb.func import FunctionNullHandling, PythonUDFType

    con.create_function("reference", udf_module.describe, ["BIGINT"], "VARCHAR", null_handling="special")
    duckdb_subinterp.create_function(
        con,
        "mine",
        udf_module.describe,
        [duckdb.sqltypes.BIGINT],
        duckdb.sqltypes.VARCHAR,
        type=PythonUDFType.NATIVE,
        null_handling=FunctionNullHandling.SPECIAL,
        exception_handling=duckdb.PythonExceptionHandling.DEFAULT,
        backend=backend,
    )
    _compare(con, "BIGINT", "CASE WHEN i % 4 = 0 THEN NULL ELSE i END", "mine", "reference", nulls=False)


def test_return_null_on_exception(con, backend):
    con.create_function("reference", udf_module.fail_on_three, exception_handling="return_null")
    duckdb_subinterp.create_function(
        con, "mine", udf_module.fail_on_three, exception_handling="return_null", backend=backend
    )
    _compare(con, "BIGINT", "CASE WHEN i % 4 = 0 THEN NULL ELSE i % 10 END", "mine", "reference")


def test_types_from_annotations(con, backend):
    duckdb_subinterp.create_function(con, "mine", udf_module.next_day, backend=backend)
    con.create_function("reference", udf_module.next_day, ["DATE"], "DATE")
    _compare(con, "DATE", "DATE '2000-02-27' + i::INTEGER", "mine", "reference", nulls=False)
    assert one(con, "SELECT mine(DATE '2024-02-28')") == (datetime.date(2024, 2, 29),)


def test_varargs(con, backend):
    con.create_function("reference", udf_module.concat_all, ["BIGINT"], "VARCHAR")
    duckdb_subinterp.create_function(con, "mine", udf_module.concat_all, ["BIGINT"], "VARCHAR", backend=backend)
    query = "SELECT reference(i, i + 1, 7), mine(i, i + 1, 7), reference(i), mine(i) FROM range(3000) t(i)"
    for row in con.sql(query).fetchall():
        assert row[0] == row[1] and row[2] == row[3]


def test_two_arguments_mixed_types(con, backend):
    def label(name: str, count: int) -> str:
        return f"{name}={count}"

    con.create_function("reference", label)
    duckdb_subinterp.create_function(con, "mine", label, backend=backend)
    con.execute(
        "CREATE TABLE pairs AS SELECT CASE WHEN i % 3 = 0 THEN NULL ELSE 'k' || i END AS a, "
        "CASE WHEN i % 5 = 0 THEN NULL ELSE i END AS b FROM range(4000) t(i)"
    )
    rows = con.sql("SELECT reference(a, b), mine(a, b) FROM pairs").fetchall()
    assert [row[0] for row in rows] == [row[1] for row in rows]


def test_side_effects_makes_the_function_volatile(con, backend):
    def constant(x: int) -> int:
        return 1

    duckdb_subinterp.create_function(con, "mine", constant, side_effects=True, backend=backend)
    stability = one(con, "SELECT stability FROM duckdb_functions() WHERE function_name = 'mine'")
    assert stability == ("VOLATILE",)


def test_closure_is_shipped_by_value(con, backend):
    offset = 41

    def add_offset(x: int) -> int:
        return x + offset

    duckdb_subinterp.create_function(con, "mine", add_offset, backend=backend)
    assert one(con, "SELECT sum(mine(i)) FROM range(10000) t(i)") == (sum(range(10000)) + 41 * 10000,)


def test_string_reference(con, backend):
    duckdb_subinterp.create_function(con, "mine", "udfs.udf_module:shout", ["VARCHAR"], "VARCHAR", backend=backend)
    assert one(con, "SELECT mine('abc')") == ("ABC!",)


def test_remove_function(con, backend):
    duckdb_subinterp.create_function(con, "mine", udf_module.add_one, backend=backend)
    assert one(con, "SELECT mine(1)") == (2,)
    duckdb_subinterp.remove_function(con, "mine")
    with pytest.raises(duckdb.CatalogException):
        one(con, "SELECT mine(1)")
    duckdb_subinterp.create_function(con, "mine", udf_module.negate_float, backend=backend)
    assert one(con, "SELECT mine(2.0)") == (-2.0,)


def test_decorator_registers_and_returns_the_function(con, backend):
    @duckdb_subinterp.udf(con, backend=backend)
    def triple(x: int) -> int:
        return 3 * x

    assert triple(2) == 6
    assert one(con, "SELECT triple(5)") == (15,)
