"""Bad input and failing UDFs give clear errors naming the UDF; the pool stays usable."""

from __future__ import annotations

import datetime
import decimal

import duckdb
import pytest
import udf_module

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
    assert "UDF 'picky'" in message
    assert "ValueError: three is not allowed (got 3)" in message
    assert "udf_module.py" in message and "in fail_on_three" in message
    assert "_runtime.py" not in message
    # The pool survives: the next query on the same workers works.
    assert con.sql("SELECT sum(picky(i)) FROM range(3) t(i)").fetchall() == [(3,)]


@pytest.mark.parametrize(
    ("function", "return_type", "udf_type", "pattern"),
    [
        (lambda x: "text", "BIGINT", "native", r"value 'text' of type str at row 0 cannot be stored as BIGINT"),
        (lambda x: 2**40, "INTEGER", "native", r"out of range for INTEGER"),
        (lambda x: None, "BIGINT", "native", r"returned None at row 0.*null_handling='special'"),
        (lambda x: 1.5, "BIGINT", "native", r"cannot be stored as BIGINT"),
        (lambda x: b"x", "VARCHAR", "native", r"is not a str"),
        (lambda x: "x", "BLOB", "native", r"is not bytes"),
        (lambda xs: [1], "BIGINT", "vectorized", r"returned 1 values for a batch of 5 rows"),
        (lambda xs: (x for x in xs), "BIGINT", "vectorized", r"returned generator, but a vectorized UDF must return"),
        (lambda xs: [None] * len(xs), "BIGINT", "vectorized", r"returned None at row 0"),
    ],
    ids=["str-for-bigint", "overflow", "none-default", "float-for-bigint", "bytes-for-varchar", "str-for-blob",
         "wrong-length", "generator", "vectorized-none"],
)
def test_bad_results_are_clear_errors(con, pooled, function, return_type, udf_type, pattern):
    duckdb_subinterp.create_function(con, "bad", function, ["BIGINT"], return_type, type=udf_type, backend=pooled)
    with pytest.raises(duckdb.InvalidInputException, match=pattern) as raised:
        con.sql("SELECT bad(i) FROM range(5) t(i)").fetchall()
    assert "UDF 'bad'" in str(raised.value)
    assert "UDFResultError" in str(raised.value)


def test_module_that_refuses_isolated_interpreters_is_reported_at_registration(con):
    with pytest.raises(ModuleNotIsolatedError, match=r"module 'numpy.*' refuses to load.*backend='processes'") as raised:
        duckdb_subinterp.create_function(con, "root", "numpy_udfs:root", backend="subinterpreters")
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
        ({"function": 42}, r"function must be a callable or 'module:qualname', got 42"),
        ({"function": "no_such_module_xyz:f"}, r"cannot import function 'no_such_module_xyz:f'"),
        ({"function": "udf_module.add_one"}, r"must be 'package.module:qualname'"),
        ({"parameters": ["BIGINT", "BIGINT"]}, r"takes 1 argument\(s\).*2 parameter type\(s\)"),
        ({"parameters": ["NOT_A_TYPE"]}, r"parameter 0 'NOT_A_TYPE' is not a DuckDB type"),
        ({"type": "columnar"}, r"type='columnar' is not one of 'native', 'vectorized', 'arrow'"),
        ({"null_handling": "skip"}, r"null_handling='skip' is not one of"),
        ({"exception_handling": "ignore"}, r"exception_handling='ignore' is not one of"),
        ({"backend": "threads"}, r"backend='threads' is not one of"),
        ({"type": "arrow", "backend": "subinterpreters"}, r"type='arrow'.*pyarrow cannot load.*backend='processes'"),
        ({"parameters": None, "function": lambda x: x}, r"x has no type annotation"),
        ({"name": ""}, r"name must be a non-empty str"),
    ],
)
def test_bad_registration_is_refused_with_the_fix(con, kwargs, pattern):
    arguments = {"name": "f", "function": udf_module.add_one, "parameters": ["BIGINT"], "return_type": "BIGINT"}
    arguments.update(kwargs)
    with pytest.raises(UDFRegistrationError, match=pattern):
        duckdb_subinterp.create_function(con, **arguments)


def test_unsupported_type_is_refused_naming_it(con):
    union = "UNION(a INTEGER, b VARCHAR)"
    with pytest.raises(UnsupportedTypeError, match=r"UDF 'f': parameter 0: type UNION\(a INTEGER, b VARCHAR\) is not"):
        duckdb_subinterp.create_function(con, "f", lambda x: x, [union], "BIGINT", backend="subinterpreters")


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


# Results that do not fit a type of the codec: the error names the UDF, the
# value and the type, as DuckDB's own UDFs fail on the same results.
MISFITS = [
    ("bool-for-bigint", lambda x: True, "BIGINT", r"value True of type bool at row 0 cannot be stored as BIGINT"),
    ("hugeint-overflow", lambda x: 2**127, "HUGEINT", r"value 170141183460469231731687303715884105728 .*out of range for HUGEINT"),
    ("uhugeint-negative", lambda x: -1, "UHUGEINT", r"value -1 at row 0 is out of range for UHUGEINT"),
    ("decimal-overflow", lambda x: decimal.Decimal("12345.6"), "DECIMAL(4,1)", r"'12345.6'.*out of range for DECIMAL\(4,1\)"),
    ("decimal-nan", lambda x: decimal.Decimal("nan"), "DECIMAL(4,1)", r"cannot be stored as DECIMAL\(4,1\)"),
    ("text-for-decimal", lambda x: "1.5x", "DECIMAL(4,1)", r"value '1.5x' of type str .*cannot be stored as DECIMAL"),
    ("enum-label", lambda x: "c", "ENUM('a', 'b')", r"could not convert string 'c' at row 0 to ENUM\('a', 'b'\)"),
    ("uuid-text", lambda x: "not-a-uuid", "UUID", r"'not-a-uuid' of type str at row 0 is not a uuid.UUID"),
    ("naive-for-timestamptz", lambda x: datetime.datetime(2020, 1, 1), "TIMESTAMPTZ", r"naive datetime.*needs a tzinfo"),
    ("bad-timestamp-text", lambda x: "yesterday", "TIMESTAMP", r"'yesterday' at row 0 is not a TIMESTAMP"),
    ("int-for-interval", lambda x: 5, "INTERVAL", r"value 5 of type int at row 0 is not a datetime.timedelta"),
    ("str-for-time", lambda x: "noon", "TIME", r"'noon' of type str at row 0 is not a datetime.time"),
    ("array-size", lambda x: [1, 2, 3], "INTEGER[2]", r"array size mismatch at row 0: expected 2 items, got 3"),
    ("list-item", lambda x: [1, "two"], "INTEGER[]", r"value 'two' of type str at row 1 cannot be stored as INTEGER"),
    ("list-overflow", lambda x: [2**40], "INTEGER[]", r"out of range for INTEGER"),
    ("struct-fields", lambda x: {"a": 1}, "STRUCT(a INTEGER, b INTEGER)", r"does not have exactly the fields a, b"),
    ("struct-type", lambda x: 5, "STRUCT(a INTEGER)", r"value 5 of type int at row 0 is not a dict with the fields a"),
    ("map-null-key", lambda x: {None: 1}, "MAP(VARCHAR, INTEGER)", r"map keys can not be NULL"),
    ("map-type", lambda x: [("a", 1)], "MAP(VARCHAR, INTEGER)", r"is not a dict"),
]


@pytest.mark.parametrize(("function", "return_type", "pattern"), [case[1:] for case in MISFITS], ids=[case[0] for case in MISFITS])
def test_results_that_do_not_fit_the_type_name_the_udf(con, pooled, function, return_type, pattern):
    duckdb_subinterp.create_function(con, "misfit", function, ["BIGINT"], return_type, backend=pooled)
    with pytest.raises(duckdb.InvalidInputException, match=pattern) as raised:
        con.sql("SELECT misfit(i) FROM range(3) t(i)").fetchall()
    assert "UDF 'misfit'" in str(raised.value)
    assert "UDFResultError" in str(raised.value)
    # DuckDB's own UDF refuses the same result too.
    con.create_function("reference", function, ["BIGINT"], return_type)
    with pytest.raises(duckdb.Error):
        con.sql("SELECT reference(i) FROM range(3) t(i)").fetchall()


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
