"""Aggregate functions, on every backend, against DuckDB's own create_function + list() and its built-ins.

The oracle is what a user can write today: DuckDB's own UDF over the
group's ``list()``, with the same NULL filter; and, where DuckDB has one,
the built-in aggregate (median, string_agg, list, quantile_cont, count...)
on random data with NULLs and empty groups.
"""

from __future__ import annotations

import datetime
import math
import textwrap
import warnings

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.script_helper import run_python
from udfs import aggregate_udfs, numpy_udfs

import duckdb_subinterp
from duckdb_subinterp import UDFRegistrationError

ROWS = 6_000  # several 2048-row batches of input, a few hundred groups

TABLE = f"""
CREATE TABLE t AS SELECT
    i % 97 AS k,
    i % 7 AS small,
    CASE WHEN i % 5 = 0 OR i % 97 = 13 THEN NULL ELSE (i * 7919) % 1000 END AS x,
    CASE WHEN i % 11 = 0 THEN NULL ELSE (i % 17) - 8 END AS y,
    CASE WHEN i % 3 = 0 THEN NULL ELSE 'w' || (i % 23) END AS s,
    i AS o
FROM range({ROWS}) r(i)
"""


def _oracle(con: duckdb.DuckDBPyConnection, name: str, function, parameter: str, return_type: str) -> None:
    """DuckDB's own UDF over the group's list: None for a group no row reached, as SQL's aggregates."""

    def over_list(*lists):
        if lists[0] is None:
            return None
        return function(*lists)

    con.create_function(name, over_list, [f"{parameter}[]"], return_type, null_handling="special")


@pytest.fixture
def table(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    con.execute(TABLE)
    return con


def rows(con: duckdb.DuckDBPyConnection, query: str) -> list[tuple]:
    return con.sql(query).fetchall()


def test_group_by_equals_duckdbs_own_udf_over_list_and_the_builtins(table, backend):
    duckdb_subinterp.create_aggregate_function(
        table, "py_median", aggregate_udfs.py_median, ["DOUBLE"], "DOUBLE", backend=backend
    )
    duckdb_subinterp.create_aggregate_function(
        table, "py_text", aggregate_udfs.py_sorted_text, ["VARCHAR"], "VARCHAR", backend=backend
    )
    duckdb_subinterp.create_aggregate_function(
        table, "py_list", aggregate_udfs.py_sorted_list, ["BIGINT"], "BIGINT[]", backend=backend
    )
    _oracle(table, "oracle_median", aggregate_udfs.py_median, "DOUBLE", "DOUBLE")
    ours = rows(table, "SELECT k, py_median(x), py_text(s), py_list(x) FROM t GROUP BY k ORDER BY k")
    oracle = rows(
        table,
        "SELECT k, oracle_median(list(x) FILTER (WHERE x IS NOT NULL)), "
        "string_agg(s, ',' ORDER BY s), list_sort(list(x) FILTER (WHERE x IS NOT NULL)) FROM t GROUP BY k ORDER BY k",
    )
    assert ours == oracle
    builtin = rows(table, "SELECT k, median(x)::DOUBLE FROM t GROUP BY k ORDER BY k")
    assert [(k, median) for k, median, _, _ in ours] == builtin
    assert ours[13][1:] == (None, ours[13][2], None)  # group 13: every x is NULL, so NULL without a call
    stats = duckdb_subinterp.udf_stats(table, "py_median") if backend != "inline" else None
    if stats is not None:
        assert stats["rows"] == 97  # one row per group (the all-NULL one reached the worker as NULL, without a call)
    duckdb_subinterp.remove_function(table, "py_median")


def test_empty_input_all_null_groups_and_grouping_sets(table, backend):
    duckdb_subinterp.create_aggregate_function(
        table, "py_sum", aggregate_udfs.py_sum, ["BIGINT"], "BIGINT", backend=backend
    )
    duckdb_subinterp.create_aggregate_function(
        table, "py_count", aggregate_udfs.py_count, ["BIGINT"], "BIGINT", null_handling="special", backend=backend
    )
    duckdb_subinterp.create_aggregate_function(
        table, "nulls_seen", aggregate_udfs.nulls_seen, ["BIGINT"], "VARCHAR", null_handling="special", backend=backend
    )
    # A whole table with no rows: one row, NULL (count gives 0; so does a function called with []).
    assert rows(table, "SELECT py_sum(x), sum(x), py_count(x), count(*), nulls_seen(x) FROM t WHERE false") == [
        (None, None, 0, 0, "0 values, 0 None")
    ]
    # A group whose values are all NULL: NULL without a call, as sum; under 'special' the Nones arrive.
    assert rows(table, "SELECT py_sum(x), sum(x), py_count(x), count(x), nulls_seen(x) FROM t WHERE k = 13") == [
        (None, None, 62, 0, "62 values, 62 None")
    ]
    grouped = rows(
        table,
        "SELECT small, k > 50 AS big, py_sum(x), sum(x) FROM t GROUP BY GROUPING SETS ((small), (big), ()) "
        "ORDER BY ALL",
    )
    assert all(ours == builtin for *_, ours, builtin in grouped) and len(grouped) == 7 + 2 + 1
    assert rows(table, "SELECT small, py_sum(x) = sum(x) FROM t GROUP BY CUBE (small) HAVING py_sum(x) > 0") != []
    assert rows(table, "SELECT py_sum(x) = sum(x) FROM t") == [(True,)]


def test_several_arguments_keep_each_rows_values_together_and_skip_a_row_with_any_null(table, backend):
    duckdb_subinterp.create_aggregate_function(
        table, "dot", aggregate_udfs.dot, ["BIGINT", "BIGINT"], "BIGINT", backend=backend
    )
    duckdb_subinterp.create_aggregate_function(
        table,
        "pairs",
        aggregate_udfs.pairs,
        ["BIGINT", "BIGINT"],
        "VARCHAR[]",
        null_handling="special",
        backend=backend,
    )
    # DuckDB's own two-argument aggregates leave out a row where either argument is NULL, as covar_pop does.
    ours = rows(table, "SELECT k, dot(x, y), sum(x * y), covar_pop(x, y) IS NULL FROM t GROUP BY k ORDER BY k")
    assert all(dot == builtin for _, dot, builtin, _ in ours)
    assert [k for k, dot, _, no_rows in ours if dot is None] == [k for k, _, _, no_rows in ours if no_rows]
    expected = rows(
        table,
        "SELECT k, list_sort(list(coalesce(x::VARCHAR, 'None') || ':' || coalesce(y::VARCHAR, 'None'))) "
        "FROM t GROUP BY k ORDER BY k",
    )
    assert rows(table, "SELECT k, pairs(x, y) FROM t GROUP BY k ORDER BY k") == expected


def test_window_frames_equal_the_builtins_with_filter_and_distinct(table, backend):
    duckdb_subinterp.create_aggregate_function(
        table, "py_median", aggregate_udfs.py_median, ["DOUBLE"], "DOUBLE", backend=backend
    )
    duckdb_subinterp.create_aggregate_function(
        table,
        "py_count",
        aggregate_udfs.py_count_values,
        ["BIGINT"],
        "BIGINT",
        null_handling="special",
        backend=backend,
    )
    for over in [
        "OVER (PARTITION BY small)",
        "OVER (PARTITION BY small ORDER BY o ROWS BETWEEN 3 PRECEDING AND CURRENT ROW)",
        "OVER (ORDER BY o ROWS BETWEEN 1 PRECEDING AND 1 PRECEDING)",  # the first row's frame is empty
        "OVER (PARTITION BY k ORDER BY o GROUPS BETWEEN 1 PRECEDING AND 1 FOLLOWING EXCLUDE CURRENT ROW)",
    ]:
        query = f"""
            SELECT o, py_median(x) {over}, median(x) {over},
                   py_median(x) FILTER (WHERE y > 0) {over}, median(x) FILTER (WHERE y > 0) {over},
                   py_median(DISTINCT x) {over}, median(DISTINCT x) {over},
                   py_count(x) {over}, count(x) {over}
            FROM t WHERE o < 800 ORDER BY o
        """
        for row in rows(table, query):
            assert row[1] == row[2] and row[3] == row[4] and row[5] == row[6] and row[7] == row[8], (over, row)


def test_filter_distinct_and_order_by_in_a_grouped_call_fail_naming_the_function(table):
    duckdb_subinterp.create_aggregate_function(table, "py_median", aggregate_udfs.py_median, ["DOUBLE"], "DOUBLE")
    for call in ["py_median(x) FILTER (WHERE y > 0)", "py_median(DISTINCT x)", "py_median(x ORDER BY o)"]:
        with pytest.raises(duckdb.InvalidInputException, match=r'Function "py_median" is a Macro Function'):
            table.sql(f"SELECT k, {call} FROM t GROUP BY k").fetchall()
    # The rewrites docs/aggregates.md gives, against DuckDB's own aggregate with the modifier.
    assert rows(table, "SELECT k, py_median(CASE WHEN y > 0 THEN x END) FROM t GROUP BY k ORDER BY k") == rows(
        table, "SELECT k, median(x) FILTER (WHERE y > 0)::DOUBLE FROM t GROUP BY k ORDER BY k"
    )
    assert rows(table, "SELECT k, py_median(x) FROM (SELECT DISTINCT k, x FROM t) GROUP BY k ORDER BY k") == rows(
        table, "SELECT k, median(DISTINCT x)::DOUBLE FROM t GROUP BY k ORDER BY k"
    )


def test_order_by_inside_a_windowed_call_is_dropped_by_duckdb():
    """DuckDB 2.0.1 expands a windowed macro without the call's ORDER BY (docs/aggregates.md says so).

    This pins DuckDB's behaviour on a macro of its own, so that a DuckDB that
    honours or refuses it is noticed and the docs changed.
    """
    con = duckdb.connect()
    con.execute("CREATE TEMP MACRO own_list(x) AS list(x)")
    values = "FROM (VALUES (1, 3), (2, 1), (3, 2)) v(x, o)"
    assert con.sql(f"SELECT list(x ORDER BY o) OVER () {values} LIMIT 1").fetchall() == [([2, 3, 1],)]
    assert con.sql(f"SELECT own_list(x ORDER BY o) OVER () {values} LIMIT 1").fetchall() == [([1, 2, 3],)]


def test_a_class_aggregate_is_built_once_per_worker(table, backend):
    duckdb_subinterp.create_aggregate_function(
        table, "stateful", aggregate_udfs.CountWithState, ["BIGINT"], "VARCHAR", backend=backend
    )
    results = rows(table, "SELECT stateful(o) FROM t GROUP BY k")
    # Each worker counts its own instances, from 1: one per worker, never one per group or batch.
    assert {text.split(" from ")[1] for (text,) in results} == {"instance 1"}


def test_an_async_aggregate_awaits_the_groups(table, backend):
    duckdb_subinterp.create_aggregate_function(
        table, "slow_count", aggregate_udfs.slow_count, ["BIGINT"], "BIGINT", backend=backend, max_concurrency=8
    )
    assert rows(table, "SELECT k, slow_count(x) FROM t GROUP BY k ORDER BY k") == rows(
        table, "SELECT k, CASE WHEN count(x) > 0 THEN count(x) END FROM t GROUP BY k ORDER BY k"
    )


def test_an_error_names_the_aggregate_and_the_group_and_the_next_query_works(table, backend):
    duckdb_subinterp.create_aggregate_function(
        table, "picky", aggregate_udfs.fail_on_group_with, ["BIGINT"], "BIGINT", backend=backend
    )
    with pytest.raises(duckdb.InvalidInputException) as raised:
        table.sql("SELECT k, picky(o) FROM t GROUP BY k").fetchall()
    message = str(raised.value)
    assert "ValueError: 13 in a group of 62" in message
    if backend != "inline":  # DuckDB's own message for its own UDF says neither the UDF nor the traceback
        assert "(raised in UDF 'picky (aggregate)')" in message
        assert "(in aggregate 'picky', for a group of 62 rows)" in message
    assert rows(table, "SELECT picky(o) FROM t WHERE k = 1") == rows(table, "SELECT count(*) FROM t WHERE k = 1")
    duckdb_subinterp.create_aggregate_function(
        table,
        "lenient",
        aggregate_udfs.fail_on_group_with,
        ["BIGINT"],
        "BIGINT",
        exception_handling="return_null",
        backend=backend,
    )
    assert rows(table, "SELECT lenient(v) FROM (VALUES (1), (13)) t(v)") == [(None,)]


def test_remove_function_drops_the_macro_and_its_scalar_udf_and_the_name_can_be_used_again(table, backend):
    duckdb_subinterp.create_aggregate_function(
        table, "py_sum", aggregate_udfs.py_sum, ["BIGINT"], "BIGINT", backend=backend
    )
    assert rows(
        table, "SELECT function_name FROM duckdb_functions() WHERE function_name LIKE 'py_sum%' ORDER BY 1"
    ) == [
        ("py_sum",),
        ("py_sum (aggregate)",),
    ]
    duckdb_subinterp.remove_function(table, "py_sum")
    assert rows(table, "SELECT function_name FROM duckdb_functions() WHERE function_name LIKE 'py_sum%'") == []
    with pytest.raises(duckdb.CatalogException, match="py_sum"):
        table.sql("SELECT py_sum(x) FROM t").fetchall()
    duckdb_subinterp.create_aggregate_function(
        table, "py_sum", aggregate_udfs.py_count, ["BIGINT"], "BIGINT", backend=backend
    )
    assert rows(table, "SELECT py_sum(x) FROM t") == rows(table, "SELECT count(x) FROM t")


def test_the_name_is_found_case_aside_as_duckdb_finds_it(table, backend):
    duckdb_subinterp.create_aggregate_function(
        table, "Py_Sum", aggregate_udfs.py_sum, ["BIGINT"], "BIGINT", backend=backend
    )
    assert rows(table, "SELECT PY_SUM(x) FROM t") == rows(table, "SELECT sum(x) FROM t")
    if backend != "inline":
        assert duckdb_subinterp.udf_stats(table, "py_sum")["rows"] == 1
    with pytest.raises(UDFRegistrationError, match="this connection has aggregate 'Py_Sum' already"):
        duckdb_subinterp.create_aggregate_function(table, "PY_SUM", aggregate_udfs.py_sum, ["BIGINT"], "BIGINT")
    duckdb_subinterp.remove_function(table, "py_sum")
    duckdb_subinterp.create_aggregate_function(table, "py_sum", aggregate_udfs.py_count, ["BIGINT"], "BIGINT")
    assert rows(table, "SELECT py_sum(x) FROM t") == rows(table, "SELECT count(x) FROM t")


def test_a_remove_function_duckdb_refuses_keeps_the_aggregate_removable(table, backend):
    # In an aborted transaction DuckDB refuses the DROP: the aggregate stays, and so does its record.
    duckdb_subinterp.create_aggregate_function(
        table, "py_sum", aggregate_udfs.py_sum, ["BIGINT"], "BIGINT", backend=backend
    )
    table.begin()
    with pytest.raises(duckdb.ConversionException):
        table.execute("SELECT 'a'::INTEGER")
    with pytest.raises(duckdb.TransactionException):
        duckdb_subinterp.remove_function(table, "py_sum")
    table.rollback()
    assert rows(table, "SELECT py_sum(x) FROM t") == rows(table, "SELECT sum(x) FROM t")
    duckdb_subinterp.remove_function(table, "py_sum")
    assert rows(table, "SELECT function_name FROM duckdb_functions() WHERE function_name LIKE 'py_sum%'") == []


def test_max_workers_caps_the_scalar_udf(table, backend):
    if backend == "inline":
        pytest.skip("inline runs on DuckDB's own machinery, which has no pool to cap")
    duckdb_subinterp.create_aggregate_function(
        table, "py_sum", aggregate_udfs.py_sum, ["BIGINT"], "BIGINT", backend=backend, max_workers=1
    )
    assert rows(table, "SELECT sum(v) FROM (SELECT py_sum(x) v FROM t GROUP BY o % 3000)") == rows(
        table, "SELECT sum(x) FROM t"
    )
    stats = duckdb_subinterp.udf_stats(table, "py_sum")
    assert stats["rows"] == 3000 and stats["batches"] >= 2


def test_fan_out_cuts_a_batch_of_groups_into_slices_and_fan_out_false_does_not(table, fan_out_pool, monkeypatch):
    from duckdb_subinterp._engine import dispatch

    # The cost model's decision is covered by test_fanout; here, that the aggregate's scalar UDF takes it.
    monkeypatch.setattr(dispatch.BatchDispatcher, "always_fan_out", True)
    fan_out_pool.start_all()  # a slice goes to an idle worker only: a started one
    table.execute("SET threads=1")  # one DuckDB thread: only fan-out puts the other workers to work
    for name, fan_out in [("fanned", True), ("whole", False)]:
        duckdb_subinterp.create_aggregate_function(
            table, name, aggregate_udfs.py_sum, ["BIGINT"], "BIGINT", pool=fan_out_pool, fan_out=fan_out
        )
    query = "SELECT k, {}(x) FROM t GROUP BY k ORDER BY k"
    assert rows(table, query.format("fanned")) == rows(table, query.format("whole")) == rows(table, query.format("sum"))
    fanned, whole = (duckdb_subinterp.udf_stats(table, name) for name in ("fanned", "whole"))
    assert fanned["fanned_batches"] >= 1 and fanned["slices"] > fanned["batches"]
    assert whole["fanned_batches"] == 0 and whole["slices"] == whole["batches"]


def test_auto_runs_an_aggregate_whose_module_needs_numpy_on_processes_with_one_warning(table):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        duckdb_subinterp.create_aggregate_function(
            table, "np_median", numpy_udfs.median, ["DOUBLE"], "DOUBLE", backend="auto"
        )
        duckdb_subinterp.create_aggregate_function(
            table, "py_median", aggregate_udfs.py_median, ["DOUBLE"], "DOUBLE", backend="auto"
        )
    assert [type(warning.message).__name__ for warning in caught] == ["BackendFallbackWarning"]
    assert caught[0].message.udf_name == "np_median (aggregate)"
    assert (
        rows(table, "SELECT k, np_median(x), py_median(x) FROM t GROUP BY k HAVING np_median(x) <> py_median(x)") == []
    )


def test_annotations_give_the_types_and_a_lambda_ships_by_value(con):
    def spread(values: list[float]) -> float:
        return max(values) - min(values)

    duckdb_subinterp.create_aggregate_function(con, "spread", spread)
    duckdb_subinterp.create_aggregate_function(con, "anything", lambda values: len(values), return_type="BIGINT")
    duckdb_subinterp.create_aggregate_function(con, "by_name", "udfs.aggregate_udfs:py_sum", ["BIGINT"], "BIGINT")
    assert con.sql("SELECT by_name(x) FROM range(5) t(x)").fetchall() == [(10,)]
    assert con.sql(
        "SELECT spread(x), anything(x), anything(s) FROM (VALUES (1, 'a'), (4, 'b')) t(x, s)"
    ).fetchall() == [(3.0, 2, 2)]


@pytest.mark.parametrize(
    ("function", "parameters", "return_type", "message"),
    [
        (aggregate_udfs.py_median, ["DOUBLE"], None, "could not infer the return type"),
        (aggregate_udfs.dot, ["DOUBLE"], "DOUBLE", "1 types provided, but the provided function takes 2"),
        (lambda: 1, None, "BIGINT", "takes no parameter"),
        (lambda *values: 1, None, "BIGINT", r"\*values takes any number of arguments"),
        (lambda values, *, option: 1, None, "BIGINT", "parameter 'option' is keyword-only"),
        (lambda values: 1, ["NO_SUCH_TYPE"], "BIGINT", "is not a DuckDB type"),
        ("udfs.aggregate_udfs:no_such_function", None, "BIGINT", "cannot import function"),
        (42, None, "BIGINT", "must be a callable"),
    ],
)
def test_registration_mistakes_fail_naming_the_aggregate_and_the_fix(con, function, parameters, return_type, message):
    with pytest.raises(UDFRegistrationError, match=message):
        duckdb_subinterp.create_aggregate_function(con, "mistake", function, parameters, return_type)
    assert con.sql("SELECT count(*) FROM duckdb_functions() WHERE function_name LIKE 'mistake%'").fetchall() == [(0,)]


def test_some_parameters_annotated_and_some_not_are_refused(con):
    # One unannotated (ANY) argument would make the scalar UDF behind the macro take ANY for all of them.
    def mixed(values: list[float], weights):
        return 0.0

    with pytest.raises(UDFRegistrationError, match="parameter 'weights' not annotated while the others are"):
        duckdb_subinterp.create_aggregate_function(con, "mixed", mixed, return_type="DOUBLE")
    duckdb_subinterp.create_aggregate_function(con, "mixed", mixed, ["DOUBLE", "DOUBLE"], "DOUBLE")
    assert con.sql("SELECT mixed(1, 2)").fetchall() == [(0.0,)]


def test_an_annotation_that_is_not_a_list_is_refused_saying_what_to_annotate(con):
    def scalar_annotation(value: float) -> float:
        return value

    with pytest.raises(UDFRegistrationError, match=r"annotate it list\[\.\.\.\]"):
        duckdb_subinterp.create_aggregate_function(con, "scalar_annotation", scalar_annotation)


def test_a_name_duckdb_has_is_refused_and_one_on_another_connection_gets_its_own_scalar_udf(tmp_path):
    database = str(tmp_path / "shared.duckdb")
    con = duckdb.connect(database)
    for taken in ["median", "MEDIAN", "range", "sum"]:
        with pytest.raises(UDFRegistrationError, match=f"DuckDB already has .* function '{taken.lower()}'"):
            duckdb_subinterp.create_aggregate_function(con, taken, aggregate_udfs.py_sum, ["BIGINT"], "BIGINT")
    duckdb_subinterp.create_aggregate_function(con, "py_sum", aggregate_udfs.py_sum, ["BIGINT"], "BIGINT")
    with pytest.raises(UDFRegistrationError, match="this connection has aggregate 'py_sum' already"):
        duckdb_subinterp.create_aggregate_function(con, "py_sum", aggregate_udfs.py_sum, ["BIGINT"], "BIGINT")
    with pytest.raises(UDFRegistrationError, match="this connection has aggregate 'py_sum' already"):
        duckdb_subinterp.create_table_function(
            con, "py_sum", aggregate_udfs.words, columns={"w": "VARCHAR", "p": "INT"}
        )
    duckdb_subinterp.create_function(con, "scalar_one", aggregate_udfs.py_sum, ["BIGINT[]"], "BIGINT")
    with pytest.raises(UDFRegistrationError, match="DuckDB already has scalar function 'scalar_one'"):
        duckdb_subinterp.create_aggregate_function(con, "scalar_one", aggregate_udfs.py_sum, ["BIGINT"], "BIGINT")
    # DuckDB keeps a macro made temporary per connection, and a Python UDF per database: another
    # connection to the same database registers its own, beside the first one's scalar UDF.
    other = duckdb.connect(database)
    duckdb_subinterp.create_aggregate_function(other, "py_sum", aggregate_udfs.py_count, ["BIGINT"], "BIGINT")
    values = "FROM (VALUES (1), (2), (3)) v(x)"
    assert con.sql(f"SELECT py_sum(x) {values}").fetchall() == [(6,)]
    assert other.sql(f"SELECT py_sum(x) {values}").fetchall() == [(3,)]
    assert con.sql(
        "SELECT function_name FROM duckdb_functions() WHERE function_name LIKE 'py_sum (%' ORDER BY 1"
    ).fetchall() == [
        ("py_sum (aggregate 2)",),
        ("py_sum (aggregate)",),
    ]
    other.close()
    con.close()


def test_a_file_backed_database_reopened_holds_no_reference_to_a_python_function(tmp_path):
    database = str(tmp_path / "kept.duckdb")
    script = textwrap.dedent(
        f"""
        import duckdb, duckdb_subinterp
        from udfs import aggregate_udfs
        con = duckdb.connect({database!r})
        con.execute("CREATE TABLE t AS SELECT range AS x FROM range(10)")
        duckdb_subinterp.create_aggregate_function(con, "py_sum", aggregate_udfs.py_sum, ["BIGINT"], "BIGINT")
        columns = {{"w": "VARCHAR", "p": "INT"}}
        duckdb_subinterp.create_table_function(con, "words", aggregate_udfs.words, columns=columns)
        con.execute("CREATE VIEW total AS SELECT sum(x) AS s FROM t")
        print(con.sql("SELECT py_sum(x) FROM t").fetchall(), con.sql("SELECT count(*) FROM words('a b')").fetchall())
        con.close()
        """
    )
    result = run_python("-c", script, timeout=120)
    assert result.returncode == 0, result.report()
    assert result.stdout.strip() == "[(45,)] [(2,)]"
    reopened = duckdb.connect(database)
    names = reopened.sql(
        "SELECT function_name FROM duckdb_functions() WHERE function_name LIKE 'py_sum%' OR function_name LIKE 'words%'"
    ).fetchall()
    assert names == []
    assert reopened.sql("SELECT s FROM total").fetchall() == [(45,)]
    reopened.close()


# -- random data against DuckDB's built-ins --------------------------------------------------------

settings.register_profile(
    "aggregates",
    max_examples=15,
    deadline=datetime.timedelta(seconds=30),
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

BUILTINS = [
    # (our function, SQL type, return type, null handling, ours, DuckDB's built-in over the same rows)
    (aggregate_udfs.py_median, "DOUBLE", "DOUBLE", "default", "py_median(v)", "median(v)"),
    (aggregate_udfs.py_sorted_text, "VARCHAR", "VARCHAR", "default", "py_text(s)", "string_agg(s, ',' ORDER BY s)"),
    (aggregate_udfs.py_list, "BIGINT", "BIGINT[]", "special", "list_sort(py_list(v))", "list_sort(list(v))"),
    (aggregate_udfs.py_count_values, "BIGINT", "BIGINT", "special", "py_count(v)", "count(v)"),
    (aggregate_udfs.py_sum, "BIGINT", "HUGEINT", "default", "py_sum(v)", "sum(v)"),
    (aggregate_udfs.py_min, "BIGINT", "BIGINT", "default", "py_min(v)", "min(v)"),
]


@pytest.fixture
def builtin_aggregates(con: duckdb.DuckDBPyConnection, backend: str) -> duckdb.DuckDBPyConnection:
    for function, sql_type, return_type, nulls, call, _ in BUILTINS:
        name = call.removeprefix("list_sort(").split("(")[0]
        duckdb_subinterp.create_aggregate_function(
            con, name, function, [sql_type], return_type, null_handling=nulls, backend=backend
        )
    duckdb_subinterp.create_aggregate_function(
        con, "py_quantile", aggregate_udfs.py_quantile, ["DOUBLE", "DOUBLE"], "DOUBLE", backend=backend
    )
    return con


@settings(settings.get_profile("aggregates"))
@given(
    data=st.lists(
        st.tuples(
            st.integers(0, 6),  # the group; the query also groups by a column all NULL in some groups
            st.one_of(st.none(), st.integers(-(10**12), 10**12)),
            st.one_of(st.none(), st.text(alphabet="abcé✓,", max_size=4)),
        ),
        max_size=300,
    ),
    fraction=st.sampled_from([0.0, 0.25, 0.5, 0.9, 1.0]),
)
def test_random_groups_with_nulls_and_empty_groups_equal_duckdbs_builtins(builtin_aggregates, data, fraction):
    con = builtin_aggregates
    con.execute("DROP TABLE IF EXISTS r")
    con.execute("CREATE TABLE r (g BIGINT, v BIGINT, s VARCHAR)")
    if data:
        con.executemany("INSERT INTO r VALUES (?, ?, ?)", data)
    # Groups 0..9 from a LEFT JOIN: those without data rows have one all-NULL row; the last query is a whole table.
    source = "(SELECT n AS g, v, s FROM range(10) n(n) LEFT JOIN r ON r.g = n.n)"
    for _, _, _, _, ours, builtin in BUILTINS:
        for query in (
            f"SELECT g, {ours}, {builtin} FROM {source} GROUP BY g ORDER BY g",
            f"SELECT NULL, {ours}, {builtin} FROM r",
            f"SELECT NULL, {ours}, {builtin} FROM r WHERE false",
        ):
            for group, mine, theirs in con.sql(query).fetchall():
                if isinstance(theirs, float) and isinstance(mine, float):
                    assert math.isclose(mine, theirs, rel_tol=1e-12, abs_tol=1e-9), (query, group)
                else:
                    assert mine == theirs, (query, group, mine, theirs)
    quantiles = con.sql(
        f"SELECT g, py_quantile(v, {fraction}), quantile_cont(v, {fraction}) FROM {source} GROUP BY g ORDER BY g"
    ).fetchall()
    for group, mine, theirs in quantiles:
        assert (mine is None) == (theirs is None), group
        if mine is not None:
            assert math.isclose(mine, theirs, rel_tol=1e-9, abs_tol=1e-6), (group, mine, theirs)
