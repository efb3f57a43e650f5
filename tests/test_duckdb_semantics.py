"""Behaviours of DuckDB's own create_function, found by running duckdb-python's tests/fast/udf through
this package; each case here compares every backend with DuckDB's own UDF on the same function.
"""

from __future__ import annotations

import datetime
import decimal
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any

import duckdb
import pytest
from duckdb.sqltypes import BIGINT, VARCHAR
from support.script_helper import run_python
from udfs import udf_module

import duckdb_subinterp


def outcome(con: duckdb.DuckDBPyConnection, query: str) -> tuple[str, Any]:
    """Return ("rows", rows) or ("error", (exception class, message)) for ``query``."""
    try:
        return "rows", con.sql(query).fetchall()
    except duckdb.Error as error:
        return "error", (type(error), str(error))


def same_as_duckdb(con: duckdb.DuckDBPyConnection, query: str) -> Any:
    """Run ``query`` with ``mine`` and with ``reference``; both must give the same rows. Return them."""
    expected = outcome(con, query.format(udf="reference"))
    got = outcome(con, query.format(udf="mine"))
    assert expected[0] == "rows", expected
    assert got == expected
    return got[1]


def register_both(con, backend, function, parameters=None, return_type=None, **options):
    con.create_function("reference", function, parameters, return_type, **options)
    duckdb_subinterp.create_function(con, "mine", function, parameters, return_type, backend=backend, **options)


# ---------------------------------------------------------------------------
# UDFs without parameters
# ---------------------------------------------------------------------------


def test_a_native_udf_without_parameters_runs_once_per_row(con, backend):
    def seven() -> int:
        return 7

    register_both(con, backend, seven, [], side_effects=True)
    assert same_as_duckdb(con, "SELECT {udf}() FROM range(5000)") == [(7,)] * 5000


@pytest.mark.parametrize("side_effects", [False, True])
def test_a_counter_without_parameters_counts_as_in_duckdb(con, backend, side_effects):
    # DuckDB folds a UDF without side effects into one call; with them it calls it once per row.
    def count() -> int:
        old = count.counter
        count.counter += 1
        return old

    results = []
    for name, create in (("reference", con.create_function), ("mine", None)):
        count.counter = 0  # each registration ships the function as it is now
        if create is not None:
            create(name, count, side_effects=side_effects)
        else:
            duckdb_subinterp.create_function(con, name, count, side_effects=side_effects, backend=backend)
        results.append(con.sql(f"SELECT {name}() FROM range(10)").fetchall())
    assert results[0] == results[1]
    assert results[1] == ([(0,)] * 10 if not side_effects else [(i,) for i in range(10)])


@pytest.mark.parametrize(
    ("value", "return_type"),
    [("42", "BIGINT"), (None, "BIGINT"), ("x", "BIGINT"), (2.5, "DOUBLE"), (float("nan"), "DOUBLE")],
    ids=["str-cast", "null-default", "bad-cast", "double", "nan"],
)
def test_a_native_udf_without_parameters_converts_its_value_as_duckdb(con, backend, value, return_type):
    register_both(con, backend, lambda: value, [], return_type, side_effects=True)
    expected = outcome(con, "SELECT reference() FROM range(3)")
    got = outcome(con, "SELECT mine() FROM range(3)")
    if expected[0] == "rows":
        assert got == expected
    elif "The UDF is not expected to return NULL values" in expected[1][1]:
        assert got[0] == "error" and got[1][0] is expected[1][0]
        assert "The UDF is not expected to return NULL values" in got[1][1]
    else:
        assert got[0] == "error" and got[1][0] is expected[1][0]
        assert expected[1][1].partition(": ")[2] in got[1][1]


def test_a_vectorized_udf_without_parameters_returns_what_duckdb_checks(con, backend):
    duckdb_subinterp.create_function(con, "one", lambda: [7], [], "BIGINT", type="vectorized", backend=backend)
    assert con.sql("SELECT one()").fetchall() == [(7,)]
    duckdb_subinterp.create_function(
        con, "many", lambda: [7], [], "BIGINT", type="vectorized", side_effects=True, backend=backend
    )
    with pytest.raises(duckdb.InvalidInputException, match="Returned pyarrow table should have 3 tuples, found 1"):
        con.sql("SELECT many() FROM range(3)").fetchall()


# ---------------------------------------------------------------------------
# ANY parameters and *args
# ---------------------------------------------------------------------------

ANY_VALUES = [
    "42::INTEGER",
    "'text'",
    "2.5::DOUBLE",
    "1.25::DECIMAL(5, 2)",
    "DATE '2024-02-29'",
    "TIMESTAMP '2020-01-01 12:00'",
    "[1, 2, NULL]",
    "{'a': 1, 'b': 'x'}",
    "true",
    "'\\x00\\xff'::BLOB",
    "NULL",
    "123456789012345678901::HUGEINT",
    "MAP {'k': 1}",
    "INTERVAL 3 DAYS",
]


@pytest.mark.parametrize("value", ANY_VALUES)
def test_an_unannotated_parameter_is_any_and_gets_each_call_sites_type(con, backend, value):
    def describe(x):
        return f"{type(x).__name__}: {x!r}"

    register_both(con, backend, describe, None, VARCHAR, null_handling="special")
    same_as_duckdb(con, "SELECT {udf}(" + value.replace("{", "{{").replace("}", "}}") + ")")


def test_any_parameters_take_several_types_in_one_query(con, backend):
    def describe(x):
        return f"{type(x).__name__}: {x!r}"

    register_both(con, backend, describe, None, VARCHAR)
    same_as_duckdb(con, "SELECT {udf}(i), {udf}(i::VARCHAR), {udf}(i / 3) FROM range(3000) t(i)")


def test_varargs_after_a_typed_parameter_are_any(con, backend):
    def count(*args):
        return len(args)

    register_both(con, backend, count, [VARCHAR], BIGINT)
    assert same_as_duckdb(con, "SELECT {udf}('5', 3, 0.5, [1])") == [(4,)]
    with pytest.raises(duckdb.BinderException):  # the first argument is VARCHAR, as in DuckDB
        con.sql("SELECT mine(5)").fetchall()


def test_unannotated_varargs_keep_each_arguments_type(con, backend):
    def describe(*args):
        return repr(args)

    register_both(con, backend, describe, None, VARCHAR)
    same_as_duckdb(con, "SELECT {udf}(i, 'x' || i, i * 0.5, [i]) FROM range(2100) t(i)")


def test_annotated_varargs_are_one_typed_parameter_as_in_duckdb(con, backend):
    def count(*args: int) -> int:
        return len(args)

    register_both(con, backend, count)
    assert same_as_duckdb(con, "SELECT {udf}(5)") == [(1,)]
    for name in ("reference", "mine"):
        with pytest.raises(duckdb.BinderException):
            con.sql(f"SELECT {name}(1, 2)").fetchall()


def test_types_ambiguous_in_arrow_arrive_as_documented_for_any(con, backend):
    """DECIMAL(38, 0) and HUGEINT share an Arrow type: an ANY parameter reads both as HUGEINT (an int)."""
    duckdb_subinterp.create_function(con, "kind", lambda x: type(x).__name__, None, VARCHAR, backend=backend)
    kinds = con.sql("SELECT kind(5::HUGEINT), kind(5::DECIMAL(38, 0)), kind(5::DECIMAL(18, 0))").fetchall()
    # The difference the README lists: DuckDB's own (inline) tells DECIMAL(38, 0) apart.
    assert kinds == [("int", "Decimal" if backend == "inline" else "int", "Decimal")]


# ---------------------------------------------------------------------------
# Shipping functions whose annotations DuckDB gave
# ---------------------------------------------------------------------------


def test_duckdb_type_annotations_of_a_closure_ship_by_value(con, backend):
    offset = 1

    def plus(x: BIGINT) -> BIGINT:  # DuckDBPyType annotations: not picklable as they are
        return x + offset

    register_both(con, backend, plus)
    same_as_duckdb(con, "SELECT {udf}(i) FROM range(3000) t(i)")


def test_a_callable_instance_with_duckdb_type_defaults_ships_by_value(con, backend):
    class Scale:
        kind = BIGINT

        def __call__(self, x, unit=BIGINT):
            return f"{x} {self.kind} {unit}"

    duckdb_subinterp.create_function(con, "mine", Scale(), [BIGINT, VARCHAR], VARCHAR, backend=backend)
    assert con.sql("SELECT mine(3, 'u')").fetchall() == [("3 BIGINT u",)]


# ---------------------------------------------------------------------------
# Errors, in DuckDB's words first
# ---------------------------------------------------------------------------


ERRORS = {
    "attribute": lambda: AttributeError("error"),
    "key": lambda: KeyError("c0"),
    "custom": lambda: type("Oops", (Exception,), {})("custom"),  # a class of the user's own
    "system-exit": lambda: SystemExit("bye"),
    "no-message": lambda: ValueError(),
}


@pytest.mark.parametrize("error", ERRORS.values(), ids=ERRORS.keys())
def test_an_exception_is_worded_as_duckdb_words_it_then_names_the_udf(con, backend, error):
    def raises(x: int) -> int:
        raise error()

    register_both(con, backend, raises)
    expected = outcome(con, "SELECT reference(1)")
    got = outcome(con, "SELECT mine(1)")
    assert expected[0] == got[0] == "error"
    assert got[1][0] is expected[1][0]
    if backend == "inline":
        assert got == expected
    else:
        assert got[1][1].startswith(expected[1][1] + "\n(raised in UDF 'mine')\nTraceback")


def test_exception_handling_return_null_as_in_duckdb(con, backend):
    def raises(x: int) -> int:
        raise AttributeError("error")

    register_both(con, backend, raises, exception_handling="return_null")
    assert same_as_duckdb(con, "SELECT {udf}(i) FROM range(5) t(i)") == [(None,)] * 5


# ---------------------------------------------------------------------------
# Arrow UDFs: DuckDB converts and checks what they return
# ---------------------------------------------------------------------------

ARROW_BACKENDS = ["inline", "processes"]


@pytest.fixture(params=ARROW_BACKENDS)
def arrow_backend(request: pytest.FixtureRequest) -> str:
    return request.param


def _two_columns(x):
    import pyarrow as pa

    return pa.table({"a": [5] * len(x), "b": ["t"] * len(x)})


def _too_many(x):
    import pyarrow as pa

    return pa.table({"c0": [5, 4, 3, 2, 1]})


def _strings(x):
    return x


def _plain_list(x):
    return [len(x)] * len(x)


def _null(x):
    return None


ARROW_RESULTS = [
    (_two_columns, ["BIGINT"], "BIGINT", "SELECT {udf}(5)"),
    (_too_many, ["BIGINT"], "BIGINT", "SELECT {udf}(5)"),
    (_null, ["BIGINT"], "BIGINT", "SELECT {udf}(5)"),
    (_strings, ["VARCHAR"], "BIGINT", "SELECT {udf}('5')"),
    (_strings, ["VARCHAR"], "BIGINT", "SELECT {udf}('test')"),
    (_plain_list, ["BIGINT"], "BIGINT", "SELECT {udf}(i) FROM range(3000) t(i)"),
]


@pytest.mark.parametrize(
    ("function", "parameters", "return_type", "query"),
    ARROW_RESULTS,
    ids=["two-columns", "too-many", "none", "cast", "bad-cast", "list"],
)
def test_arrow_results_are_converted_and_checked_by_duckdb(
    con, arrow_backend, function, parameters, return_type, query
):
    register_both(con, arrow_backend, function, parameters, return_type, type="arrow")
    assert outcome(con, query.format(udf="mine")) == outcome(con, query.format(udf="reference"))


def test_arrow_arguments_are_table_columns_named_as_duckdb_names_them(con, arrow_backend):
    def column_name(x, y):  # pyarrow keeps a table column's name as _name (to_pandas() names the Series by it)
        import pyarrow as pa

        return pa.array([f"{x._name}/{y._name}"] * len(x))

    register_both(con, arrow_backend, column_name, ["BIGINT", "BIGINT"], "VARCHAR", type="arrow")
    assert same_as_duckdb(con, "SELECT {udf}(1, 2)") == [("c0/c1",)]


def test_arrow_udfs_see_only_non_null_rows_under_default_null_handling(con, arrow_backend):
    def lengths(x):
        import pyarrow as pa

        return pa.array([len(x)] * len(x), pa.int64())

    register_both(con, arrow_backend, lengths, ["BIGINT"], "BIGINT", type="arrow")
    same_as_duckdb(con, "SELECT {udf}(CASE WHEN i % 3 = 0 THEN NULL ELSE i END) FROM range(3000) t(i)")


def test_a_numpy_nan_is_null_as_in_duckdb(con):
    import math

    def nan() -> float:
        return math.nan

    register_both(con, "processes", nan, None, "DOUBLE", null_handling="special")
    assert same_as_duckdb(con, "SELECT {udf}()") == [(None,)]


# ---------------------------------------------------------------------------
# Churn: remove_function while another thread's query runs the UDF
# ---------------------------------------------------------------------------

REMOVE_UNDER_LOAD = textwrap.dedent(
    """
    import sys, threading, time, duckdb, duckdb_subinterp

    backend = sys.argv[1]

    def slow(x: int) -> int:
        total = 0
        for i in range(50):
            total += i
        return x

    con = duckdb.connect()
    con.execute("SET threads=2")
    con.execute("CREATE TABLE t AS SELECT i FROM range(250000) t(i)")
    outcomes = []

    def query(cursor):
        try:
            outcomes.append(cursor.sql("SELECT sum(f(i)) FROM t").fetchall())
        except duckdb.CatalogException:
            outcomes.append("removed")

    for cycle in range(6):
        duckdb_subinterp.create_function(con, "f", slow, backend=backend)
        threads = [threading.Thread(target=query, args=(con.cursor(),)) for _ in range(2)]
        for thread in threads:
            thread.start()
        time.sleep(0.02 * cycle)
        duckdb_subinterp.remove_function(con, "f")
        for thread in threads:
            thread.join(120)
    expected = [(sum(range(250000)),)]
    assert all(result in (expected, "removed") for result in outcomes), outcomes
    print("ok", len(outcomes))
    """
)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("pooled", ["subinterpreters", "processes"])
def test_remove_function_under_a_running_query_never_crashes(pooled):
    run = run_python("-c", REMOVE_UNDER_LOAD, pooled, timeout=280)
    assert run.returncode == 0, run.report()
    assert run.stdout.startswith("ok 12")


# ---------------------------------------------------------------------------
# Fresh code: what the main interpreter has now, and one version per UDF
# ---------------------------------------------------------------------------


@pytest.fixture
def module_dir(tmp_path, monkeypatch, request):
    """A fresh directory on sys.path holding a uniquely named module."""
    name = "fresh_" + request.node.name.replace("[", "_").replace("]", "_").replace("-", "_")
    monkeypatch.setattr(sys, "path", [*sys.path, str(tmp_path)])
    yield tmp_path, name
    sys.modules.pop(name, None)


def _write(directory, name, body):
    path = directory / f"{name}.py"
    path.write_text(textwrap.dedent(body))
    return path


@pytest.fixture(params=["subinterpreters", "processes"])
def fresh_pool(request):
    pool = (
        duckdb_subinterp.InterpreterPool(2) if request.param == "subinterpreters" else duckdb_subinterp.ProcessPool(2)
    )
    yield request.param, pool
    pool.close()


def test_a_directory_added_to_sys_path_after_the_pool_started_is_seen(con, fresh_pool, module_dir):
    backend, pool = fresh_pool
    duckdb_subinterp.create_function(con, "warm", "udfs.udf_module:add_one", backend=backend, pool=pool)
    assert con.sql("SELECT warm(1)").fetchall() == [(2,)]
    directory, name = module_dir
    _write(directory, name, "def f(x: int) -> int:\n    return x * 10\n")
    module = __import__(name)
    duckdb_subinterp.create_function(con, "late", module.f, backend=backend, pool=pool)
    assert con.sql("SELECT late(4)").fetchall() == [(40,)]


def test_reload_and_register_again_runs_the_new_code(con, fresh_pool, module_dir):
    import importlib
    import importlib.util

    backend, pool = fresh_pool
    directory, name = module_dir
    path = _write(directory, name, "def f(x: int) -> int:\n    return 1\n")
    module = importlib.import_module(name)
    duckdb_subinterp.create_function(con, "f", module.f, backend=backend, pool=pool)
    assert con.sql("SELECT f(0)").fetchall() == [(1,)]
    path.write_text("def f(x: int) -> int:\n    return 2\n")
    # CPython checks a cached .pyc by the source's mtime, in whole seconds, and size: this edit, as
    # long and within the same second, would reload the old code (PYTHONDONTWRITEBYTECODE hides that).
    Path(importlib.util.cache_from_source(str(path))).unlink(missing_ok=True)
    importlib.reload(module)
    duckdb_subinterp.remove_function(con, "f")
    duckdb_subinterp.create_function(con, "f", module.f, backend=backend, pool=pool)
    assert con.sql("SELECT f(0)").fetchall() == [(2,)]


def test_a_module_broken_or_deleted_after_registration_keeps_working(con, fresh_pool, module_dir):
    import importlib

    backend, pool = fresh_pool
    directory, name = module_dir
    path = _write(directory, name, "LIMIT = 3\n\ndef f(x: int) -> int:\n    return min(x, LIMIT)\n")
    module = importlib.import_module(name)
    con.execute("SET threads=2")
    duckdb_subinterp.create_function(con, "f", module.f, backend=backend, pool=pool)
    path.write_text("def f(x: int) -> int:\n    return (\n")  # a syntax error
    # Workers started from now on run the registered source, not the file.
    assert con.sql("SELECT sum(f(i)) FROM range(400000) t(i)").fetchall() == [(3 * 400000 - 6,)]
    path.unlink()
    pool.close()  # a new pool: every worker loads the UDF from scratch
    fresh = duckdb_subinterp.InterpreterPool(2) if backend == "subinterpreters" else duckdb_subinterp.ProcessPool(2)
    with fresh:
        # Its file is gone: the function is shipped by value, as this interpreter has it, and says so.
        with pytest.warns(duckdb_subinterp.ModuleChangedWarning, match="cannot be read"):
            duckdb_subinterp.create_function(con, "g", module.f, backend=backend, pool=fresh)
        assert con.sql("SELECT g(10), g(1)").fetchall() == [(3, 1)]


def test_a_module_edited_since_import_runs_the_code_this_interpreter_has(con, fresh_pool, module_dir):
    import importlib

    backend, pool = fresh_pool
    directory, name = module_dir
    path = _write(directory, name, "def f(x: int) -> int:\n    return 1\n")
    module = importlib.import_module(name)
    path.write_text("def f(x: int) -> int:\n    return 2\n")  # edited, not reloaded
    con.create_function("reference", module.f)
    with pytest.warns(duckdb_subinterp.ModuleChangedWarning, match=rf"module '{name}' changed since it was imported"):
        duckdb_subinterp.create_function(con, "mine", module.f, backend=backend, pool=pool)
    assert con.sql("SELECT reference(0), mine(0)").fetchall() == [(1, 1)]


def test_a_module_loaded_from_a_file_path_runs_by_its_source(con, fresh_pool, tmp_path):
    import importlib.util

    backend, pool = fresh_pool
    path = tmp_path / "loose_udfs.py"
    path.write_text("def f(x: int) -> int:\n    return x + 100\n")
    spec = importlib.util.spec_from_file_location("loose_udfs_by_path", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["loose_udfs_by_path"] = module  # importable by that name here only, not on sys.path
    try:
        spec.loader.exec_module(module)
        duckdb_subinterp.create_function(con, "f", module.f, backend=backend, pool=pool)
        assert con.sql("SELECT f(1)").fetchall() == [(101,)]
    finally:
        del sys.modules["loose_udfs_by_path"]


# ---------------------------------------------------------------------------
# @duckdb_subinterp.export modules on every backend
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("chosen", ["subinterpreters", "processes", "auto", "inline"])
def test_a_module_using_export_loads_on_every_backend(con, module_dir, chosen):
    import importlib

    directory, name = module_dir
    _write(
        directory,
        name,
        """
        import duckdb_subinterp

        @duckdb_subinterp.export
        def slugify(text: str) -> str:
            return "-".join(text.lower().split())
        """,
    )
    module = importlib.import_module(name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        duckdb_subinterp.create_function(con, "slugify", module.slugify, backend=chosen)
    assert con.sql("SELECT slugify('Hello Big World')").fetchall() == [("hello-big-world",)]


def test_decimal_and_date_results_convert_as_duckdb(con, backend):
    register_both(con, backend, lambda x: decimal.Decimal("1.25") + x, [BIGINT], "DECIMAL(4,1)")
    same_as_duckdb(con, "SELECT {udf}(i) FROM range(3) t(i)")
    con.remove_function("reference")
    duckdb_subinterp.remove_function(con, "mine")
    register_both(con, backend, lambda x: datetime.date(2024, 1, 1 + x), [BIGINT], "DATE")
    same_as_duckdb(con, "SELECT {udf}(i) FROM range(3) t(i)")


# DECIMAL(38, 38) values under 0.1 have fewer than 38 digits: DuckDB's own UDFs turn such a returned
# Decimal into a DOUBLE (duckdb-python's PyDecimal::ToDuckValue: width = scale + 1 = 39 > 38), so
# digits past the 17th are lost, and a map mixing one with a 38-digit value becomes a map of DOUBLE
# that no longer casts back. The codec converts every Decimal exactly.
SMALL_38_38 = "'0.00000000000000000000006283996483144424'::DECIMAL(38,38)"
WIDE_38_38 = "'0.99999999999999994448884876874217297882'::DECIMAL(38,38)"
DECIMAL_MAP = "MAP(INTEGER, DECIMAL(38,38))"
MIXED_MAP = f"MAP {{1: {SMALL_38_38}, 2: {WIDE_38_38}}}"


def test_small_decimal_38_38_results_are_exact_where_duckdbs_own_go_through_double(con, backend):
    con.create_function("reference", udf_module.identity, ["DECIMAL(38,38)"], "DECIMAL(38,38)")
    con.create_function("reference_map", udf_module.identity, [DECIMAL_MAP], DECIMAL_MAP)
    # The defect this pins: if DuckDB's own gets these right, the domain test_types_property leaves
    # out for DECIMAL(38, 38) can come back, and this test goes back to comparing with DuckDB's own.
    assert con.sql(f"SELECT reference({SMALL_38_38})::VARCHAR").fetchall() == [
        (".00000000000000000000006283996483144423",)
    ]
    with pytest.raises(duckdb.Error, match=r"Could not cast value 1\.0+ to DECIMAL\(38,38\)"):
        con.sql(f"SELECT reference_map({MIXED_MAP})").fetchall()
    if backend != "inline":  # inline native UDFs are DuckDB's own
        register = duckdb_subinterp.create_function
        register(con, "mine", udf_module.identity, ["DECIMAL(38,38)"], "DECIMAL(38,38)", backend=backend)
        register(con, "mine_map", udf_module.identity, [DECIMAL_MAP], DECIMAL_MAP, backend=backend)
        assert con.sql(f"SELECT mine({SMALL_38_38}) = {SMALL_38_38}").fetchall() == [(True,)]
        assert con.sql(f"SELECT mine_map({MIXED_MAP}) = {MIXED_MAP}").fetchall() == [(True,)]
    duckdb_subinterp.create_function(
        con, "mine_batch", udf_module.as_list, [DECIMAL_MAP], DECIMAL_MAP, type="vectorized", backend=backend
    )
    assert con.sql(f"SELECT mine_batch({MIXED_MAP}) = {MIXED_MAP}").fetchall() == [(True,)]


def test_a_helper_module_deleted_after_registration_warns_naming_the_udf_and_module(con, fresh_pool, module_dir):
    """A second worker cannot import it: the UDF runs on the first, which has it, with one warning saying so."""
    import importlib

    backend, pool = fresh_pool
    directory, name = module_dir
    helper = _write(directory, f"{name}_helper", "FACTOR = 3\n")
    _write(directory, name, f"import {name}_helper\n\ndef f(x: int) -> int:\n    return x * {name}_helper.FACTOR\n")
    module = importlib.import_module(name)
    duckdb_subinterp.create_function(con, "f", module.f, backend=backend, pool=pool)  # loaded by one worker
    con.create_function("reference", module.f)  # DuckDB's own keeps the function object it was given
    helper.unlink()
    sys.modules.pop(f"{name}_helper", None)
    con.execute("SET threads=2")
    expected = con.sql("SELECT sum(reference(i)) FROM range(400000) t(i)").fetchall()

    def query_until_a_second_worker_tries_it() -> list[list[tuple[int]]]:
        results = []
        for _ in range(3):
            pool.start_all()
            results.append(con.sql("SELECT sum(f(i)) FROM range(400000) t(i)").fetchall())
        return results

    warning = rf"UDF 'f' could not be loaded in .*No module named '{name}_helper'.*it runs on the 1 worker"
    with pytest.warns(duckdb_subinterp.UDFLoadFailedWarning, match=warning) as warned:
        results = query_until_a_second_worker_tries_it()
    assert results == [expected] * 3
    assert len(warned) == 1
    assert "WorkerFailure" not in str(warned[0].message)


def test_inline_batches_call_the_function_object_itself(con, module_dir):
    import importlib

    directory, name = module_dir
    _write(directory, name, "CALLS = []\n\ndef f(xs):\n    CALLS.append(len(xs))\n    return list(xs)\n")
    module = importlib.import_module(name)
    duckdb_subinterp.create_function(con, "f", module.f, ["BIGINT"], "BIGINT", type="vectorized", backend="inline")
    assert con.sql("SELECT sum(f(i)) FROM range(3000) t(i)").fetchall() == [(sum(range(3000)),)]
    # The same module object, its state changed here, as DuckDB's own UDF would change it.
    assert sys.modules[name] is module
    assert sum(module.CALLS) == 3000
