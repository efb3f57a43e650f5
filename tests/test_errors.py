"""Bad input and failing UDFs give clear errors naming the UDF; the pool stays usable."""

from __future__ import annotations

import datetime
import decimal

import duckdb
import pytest
from udfs import udf_module

import duckdb_subinterp
from duckdb_subinterp import ModuleNotIsolatedError, UDFRegistrationError, UnsupportedTypeError

POOLED = ["subinterpreters", "processes"]


@pytest.fixture(params=POOLED)
def pooled(request: pytest.FixtureRequest) -> str:
    return request.param


def test_exception_names_udf_type_message_and_traceback(con, pooled):
    duckdb_subinterp.create_function(con, "picky", udf_module.fail_on_three, backend=pooled)
    with pytest.raises(duckdb.InvalidInputException) as raised:
        con.sql("SELECT picky(i) FROM range(10) t(i)").fetchall()
    message = str(raised.value)
    # DuckDB's words first, as its own UDF gives them, then the UDF's name and traceback.
    assert "Python exception occurred while executing the UDF: ValueError: three is not allowed (got 3)\n" in message
    assert "UDF 'picky'" in message
    assert "udf_module.py" in message and "in fail_on_three" in message
    assert "_worker/runtime.py" not in message
    # The pool survives: the next query on the same workers works.
    assert con.sql("SELECT sum(picky(i)) FROM range(3) t(i)").fetchall() == [(3,)]


def _outcome(con: duckdb.DuckDBPyConnection, query: str) -> tuple[str, object]:
    try:
        return "rows", con.sql(query).fetchall()
    except duckdb.Error as error:
        return "error", str(error)


# Results the codec does not take as they are. DuckDB decides, as for its own
# UDF: a value it casts gives DuckDB's value, one it refuses DuckDB's error.
RESULTS = [
    ("str-for-bigint", lambda x: "text", "BIGINT"),
    ("numeric-str-for-bigint", lambda x: "42", "BIGINT"),
    ("padded-str-for-integer", lambda x: " 7 ", "INTEGER"),
    ("exponent-str-for-bigint", lambda x: "1e3", "BIGINT"),
    ("str-for-boolean", lambda x: "true", "BOOLEAN"),
    ("str-for-double", lambda x: "2.5", "DOUBLE"),
    ("float-for-bigint", lambda x: 3.5, "BIGINT"),
    ("int-for-varchar", lambda x: 5, "VARCHAR"),
    ("bytes-for-varchar", lambda x: b"abc", "VARCHAR"),
    ("str-for-blob", lambda x: "x", "BLOB"),
    ("overflow", lambda x: 2**40, "INTEGER"),
    ("bool-for-bigint", lambda x: True, "BIGINT"),
    ("hugeint-overflow", lambda x: 2**127, "HUGEINT"),
    ("uhugeint-negative", lambda x: -1, "UHUGEINT"),
    ("decimal-overflow", lambda x: decimal.Decimal("12345.6"), "DECIMAL(4,1)"),
    ("decimal-nan", lambda x: decimal.Decimal("nan"), "DECIMAL(4,1)"),
    ("text-for-decimal", lambda x: "1.5x", "DECIMAL(4,1)"),
    ("enum-label", lambda x: "c", "ENUM('a', 'b')"),
    ("uuid-text", lambda x: "not-a-uuid", "UUID"),
    ("naive-for-timestamptz", lambda x: datetime.datetime(2020, 1, 1), "TIMESTAMPTZ"),
    ("bad-timestamp-text", lambda x: "yesterday", "TIMESTAMP"),
    ("int-for-interval", lambda x: 5, "INTERVAL"),
    ("str-for-time", lambda x: "noon", "TIME"),
    ("array-size", lambda x: [1, 2, 3], "INTEGER[2]"),
    ("list-item", lambda x: [1, "two"], "INTEGER[]"),
    ("list-item-cast", lambda x: [1, "2"], "INTEGER[]"),
    ("list-overflow", lambda x: [2**40], "INTEGER[]"),
    ("struct-fields", lambda x: {"a": 1}, "STRUCT(a INTEGER, b INTEGER)"),
    ("struct-type", lambda x: 5, "STRUCT(a INTEGER)"),
    ("map-null-key", lambda x: {None: 1}, "MAP(VARCHAR, INTEGER)"),
    ("map-type", lambda x: [("a", 1)], "MAP(VARCHAR, INTEGER)"),
    ("lone-surrogate", lambda x: "lone \udc80 surrogate", "VARCHAR"),
    ("bytes-not-utf8-for-varchar", lambda x: b"\xff\xfe not utf-8", "VARCHAR"),
    ("list-for-bigint", lambda x: [x], "BIGINT"),
]


@pytest.mark.parametrize(("function", "return_type"), [case[1:] for case in RESULTS], ids=[case[0] for case in RESULTS])
def test_results_are_converted_as_duckdb_converts_them(con, pooled, function, return_type):
    con.create_function("reference", function, ["BIGINT"], return_type)
    duckdb_subinterp.create_function(con, "mine", function, ["BIGINT"], return_type, backend=pooled)
    expected = _outcome(con, "SELECT reference(i) FROM range(3) t(i)")
    got = _outcome(con, "SELECT mine(i) FROM range(3) t(i)")
    if expected[0] == "rows":
        assert got == expected
        return
    assert got[0] == "error", f"DuckDB refuses the result ({expected[1]}), but it gave {got[1]}"
    # DuckDB's own message, without its "... Error: " prefix, then the UDF's name.
    assert expected[1].partition(": ")[2] in got[1]
    assert "UDF 'mine'" in got[1]


@pytest.mark.parametrize("udf_type", ["native", "vectorized"])
def test_null_results_under_default_null_handling_fail_in_duckdbs_words(con, pooled, udf_type):
    function = (lambda x: None) if udf_type == "native" else (lambda xs: [None] * len(xs))
    duckdb_subinterp.create_function(con, "bad", function, ["BIGINT"], "BIGINT", type=udf_type, backend=pooled)
    pattern = (
        r"UDFResultError: The returned result contained NULL values.*The UDF is not expected to return NULL.*row 0"
    )
    with pytest.raises(duckdb.InvalidInputException, match=pattern) as raised:
        con.sql("SELECT bad(i) FROM range(5) t(i)").fetchall()
    assert "null_handling='special'" in str(raised.value)


@pytest.mark.parametrize(
    ("function", "pattern"),
    [
        (lambda xs: [1], r"returned 1 values for a batch of 5 rows"),
        (lambda xs: (x for x in xs), r"returned generator, but a vectorized UDF must return"),
    ],
    ids=["wrong-length", "generator"],
)
def test_bad_vectorized_results_are_clear_errors(con, pooled, function, pattern):
    duckdb_subinterp.create_function(con, "bad", function, ["BIGINT"], "BIGINT", type="vectorized", backend=pooled)
    with pytest.raises(duckdb.InvalidInputException, match=pattern) as raised:
        con.sql("SELECT bad(i) FROM range(5) t(i)").fetchall()
    assert "UDFResultError: UDF 'bad'" in str(raised.value)


def test_module_that_refuses_isolated_interpreters_is_reported_at_registration(con):
    with pytest.raises(
        ModuleNotIsolatedError, match=r"module 'numpy.*' refuses to load.*backend='processes'"
    ) as raised:
        duckdb_subinterp.create_function(con, "root", "udfs.numpy_udfs:root", backend="subinterpreters")
    assert raised.value.module.startswith("numpy")


def test_by_value_function_using_numpy_is_reported_at_registration(con):
    import numpy

    def root(x: float) -> float:
        return float(numpy.sqrt(x))

    with pytest.raises(ModuleNotIsolatedError, match=r"UDF 'root'.*numpy"):
        duckdb_subinterp.create_function(con, "root", root, backend="subinterpreters")


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"function": 42}, r"function must be a callable or a 'package.module:qualname' string, got 42"),
        ({"function": "no_such_module_xyz:f"}, r"cannot import function 'no_such_module_xyz:f'"),
        ({"function": "udf_module.add_one"}, r"must be 'package.module:qualname'"),
        ({"parameters": ["BIGINT", "BIGINT"]}, r"2 types provided, but the provided function takes 1 parameters"),
        ({"parameters": ["NOT_A_TYPE"]}, r"parameter 0 'NOT_A_TYPE' is not a DuckDB type"),
        ({"type": "columnar"}, r"type='columnar' is not one of 'native', 'vectorized', 'arrow'"),
        ({"null_handling": "skip"}, r"null_handling='skip' is not one of"),
        ({"exception_handling": "ignore"}, r"exception_handling='ignore' is not one of"),
        ({"backend": "threads"}, r"backend='threads' is not one of"),
        ({"type": "arrow", "backend": "subinterpreters"}, r"type='arrow'.*pyarrow cannot load.*backend='processes'"),
        ({"return_type": None, "function": lambda x: x}, r"could not infer the return type: pass return_type="),
        ({"name": ""}, r"name must be a non-empty str"),
    ],
)
def test_bad_registration_is_refused_with_the_fix(con, kwargs, pattern):
    arguments = {"name": "f", "function": udf_module.add_one, "parameters": ["BIGINT"], "return_type": "BIGINT"}
    arguments.update(kwargs)
    with pytest.raises(UDFRegistrationError, match=pattern):
        duckdb_subinterp.create_function(con, **arguments)


def test_a_function_that_is_not_callable_is_a_type_error_as_in_duckdb(con):
    with pytest.raises(TypeError):
        con.create_function("f", 5, ["BIGINT"], "BIGINT")
    with pytest.raises(TypeError, match="function must be a callable"):
        duckdb_subinterp.create_function(con, "f", 5, ["BIGINT"], "BIGINT")


def test_unsupported_type_is_refused_naming_it(con):
    variant = "STRUCT(v VARIANT)"
    with pytest.raises(UnsupportedTypeError, match=r"UDF 'f': parameter 0: type VARIANT is not"):
        duckdb_subinterp.create_function(con, "f", lambda x: x, [variant], "BIGINT", backend="subinterpreters")


def test_unshippable_function_is_refused_saying_why(con):
    import threading

    lock = threading.Lock()

    def holds_lock(x: int) -> int:
        with lock:
            return x

    with pytest.raises(UDFRegistrationError, match=r"cannot be shipped by value.*lock.*move it to a module"):
        duckdb_subinterp.create_function(con, "f", holds_lock, backend="subinterpreters")


def test_closed_pool_is_refused_and_fails_queries_cleanly(con):
    pool = duckdb_subinterp.InterpreterPool(1)
    duckdb_subinterp.create_function(con, "f", udf_module.add_one, pool=pool)
    assert con.sql("SELECT f(1)").fetchall() == [(2,)]
    pool.close()
    with pytest.raises(duckdb.InvalidInputException, match=r"BrokenPoolError: UDF 'f': its pool was closed"):
        con.sql("SELECT f(i) FROM range(10) t(i)").fetchall()
    with pytest.raises(UDFRegistrationError, match="is closed"):
        duckdb_subinterp.create_function(con, "g", udf_module.add_one, pool=pool)


def test_nan_results_are_null_as_in_duckdb(con, pooled):
    function = lambda x: float("nan") if x % 2 else x / 2  # noqa: E731
    con.create_function("reference", function, ["BIGINT"], "DOUBLE")
    duckdb_subinterp.create_function(con, "mine", function, ["BIGINT"], "DOUBLE", backend=pooled)
    rows = con.sql("SELECT reference(i), mine(i) FROM range(6) t(i)").fetchall()
    assert rows == [(0.0, 0.0), (None, None), (1.0, 1.0), (None, None), (2.0, 2.0), (None, None)]


def test_timestamptz_beyond_datetime_is_a_clear_error(con, pooled):
    duckdb_subinterp.create_function(con, "f", udf_module.identity, ["TIMESTAMPTZ"], "TIMESTAMPTZ", backend=pooled)
    with pytest.raises(duckdb.InvalidInputException, match=r"UDF 'f'.*outside datetime's range"):
        con.sql("SELECT f(TIMESTAMPTZ '10000-01-01 00:00:00+00')").fetchall()


def test_result_type_too_wide_for_the_status_slots_is_refused_at_registration(con):
    wide = "STRUCT(" + ", ".join(f"f{i} VARCHAR" for i in range(100)) + ")"
    with pytest.raises(UnsupportedTypeError, match=r"UDF 'f': return type: type STRUCT\(f0 VARCHAR.*nested columns"):
        duckdb_subinterp.create_function(con, "f", udf_module.identity, ["BIGINT"], wide, backend="subinterpreters")
    # As a parameter it is fine: arguments need no status slots.
    duckdb_subinterp.create_function(con, "g", lambda s: s["f99"], [wide], "VARCHAR", backend="subinterpreters")
    row = "{" + ", ".join(f"'f{i}': 'v{i}'" for i in range(100)) + "}"
    assert con.sql(f"SELECT g({row}::{wide})").fetchall() == [("v99",)]


def test_types_nested_deeper_than_arrow_takes_are_refused_at_registration(con, pooled):
    deep = "INTEGER" + "[]" * 63
    for parameters, return_type, what in (([deep], "BIGINT", "parameter 0"), (["BIGINT"], deep, "return type")):
        with pytest.raises(UnsupportedTypeError, match=rf"UDF 'f': {what}: type INTEGER\[\].*cannot travel as Arrow"):
            duckdb_subinterp.create_function(con, "f", lambda x: x, parameters, return_type, backend=pooled)
    # One level less travels, and matches DuckDB's own.
    fits = "INTEGER" + "[]" * 62
    value = "[" * 62 + "1" + "]" * 62
    con.create_function("reference", lambda x: x, [fits], fits)
    duckdb_subinterp.create_function(con, "mine", lambda x: x, [fits], fits, backend=pooled)
    rows = con.sql(f"SELECT reference({value}::{fits}) = mine({value}::{fits})").fetchall()
    assert rows == [(True,)]


def test_a_nan_map_key_is_refused_as_duckdb_refuses_it_not_a_crash(con, pooled):
    # NaN results become NULL, and a MAP may have no NULL key: pyarrow would abort the process.
    function = lambda x: {float("nan"): 1, 1.5: 2}  # noqa: E731
    con.create_function("reference", function, ["BIGINT"], "MAP(DOUBLE, INTEGER)")
    duckdb_subinterp.create_function(con, "mine", function, ["BIGINT"], "MAP(DOUBLE, INTEGER)", backend=pooled)
    for name in ("reference", "mine"):
        with pytest.raises(duckdb.InvalidInputException, match="Map keys can not be NULL"):
            con.sql(f"SELECT {name}(1)").fetchall()
