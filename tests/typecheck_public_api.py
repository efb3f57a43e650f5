"""What a type checker makes of the public API: mypy checks this file, pytest does not run it.

pyproject.toml's ``[tool.mypy] files`` lists it beside the package. Each
``# type: ignore[code]`` marks a call the API's types must refuse: mypy is
strict (``warn_unused_ignores``), so it fails where one of them is accepted.
"""

from __future__ import annotations

from typing import assert_type

import duckdb
from duckdb.func import FunctionNullHandling, PythonUDFType

import duckdb_subinterp


@duckdb_subinterp.export
def slug(text: str) -> str:
    return "-".join(text.split())


@duckdb_subinterp.export(name="plus_one", type="vectorized", parameters=["BIGINT"], return_type="BIGINT")
def plus_one(values: list[int]) -> list[int]:
    return [value + 1 for value in values]


class Counter:
    """A class UDF: @export marks the class, which stays a class."""

    def __call__(self, text: str) -> int:
        return len(text)


Exported = duckdb_subinterp.export(backend="processes", max_workers=2)(Counter)


def decorators_keep_the_function_type(con: duckdb.DuckDBPyConnection) -> None:
    assert_type(slug("a b"), str)
    assert_type(plus_one([1]), list[int])
    assert_type(Exported, type[Counter])
    slug(1)  # type: ignore[arg-type]

    @duckdb_subinterp.udf(con, "twice", backend="inline", null_handling="special")
    def twice(value: int) -> int:
        return 2 * value

    assert_type(twice(2), int)


def options_are_checked(con: duckdb.DuckDBPyConnection) -> None:
    duckdb_subinterp.create_function(con, "a", slug, backend="processes", type="native")
    duckdb_subinterp.create_function(con, "b", slug, ["VARCHAR"], "VARCHAR", exception_handling="return_null")
    # DuckDB's own enums, as its create_function takes them.
    duckdb_subinterp.create_function(
        con,
        "c",
        slug,
        type=PythonUDFType.NATIVE,
        null_handling=FunctionNullHandling.SPECIAL,
        exception_handling=duckdb.PythonExceptionHandling.RETURN_NULL,
    )
    duckdb_subinterp.create_function(con, "d", slug, backend="threads")  # type: ignore[arg-type]
    duckdb_subinterp.create_function(con, "e", slug, type="columnar")  # type: ignore[arg-type]
    duckdb_subinterp.create_function(con, "f", slug, null_handling="skip")  # type: ignore[arg-type]
    duckdb_subinterp.create_function(con, "g", slug, exception_handling="ignore")  # type: ignore[arg-type]
    duckdb_subinterp.default_pool("threads")  # type: ignore[arg-type]
    duckdb_subinterp.export(typo=True)  # type: ignore[call-overload]
    duckdb_subinterp.udf(con, "h", retries="2")  # type: ignore[arg-type]


@duckdb_subinterp.export_aggregate(parameters=["DOUBLE"], return_type="DOUBLE", null_handling="special")
def spread(values: list[float]) -> float:
    return max(values) - min(values)


@duckdb_subinterp.export_table_function(columns={"word": "VARCHAR"})
def words(text: str) -> list[tuple[str]]:
    return [(word,) for word in text.split()]


def aggregates_and_table_functions(con: duckdb.DuckDBPyConnection) -> None:
    assert_type(spread([1.0]), float)
    assert_type(words("a b"), list[tuple[str]])
    duckdb_subinterp.create_aggregate_function(con, "a", spread, ["DOUBLE"], "DOUBLE", backend="processes")
    duckdb_subinterp.create_table_function(con, "b", words, ["VARCHAR"], [("word", "VARCHAR")], max_workers=2)
    duckdb_subinterp.create_aggregate_function(con, "c", spread, type="native")  # type: ignore[call-arg]
    duckdb_subinterp.create_table_function(con, "d", words, null_handling="skip")  # type: ignore[arg-type]
    duckdb_subinterp.export_aggregate(columns={})  # type: ignore[call-overload]


def pools_enter_as_themselves() -> None:
    with duckdb_subinterp.InterpreterPool(2) as interpreters:
        assert_type(interpreters, duckdb_subinterp.InterpreterPool)
    with duckdb_subinterp.ProcessPool(2) as processes:
        assert_type(processes, duckdb_subinterp.ProcessPool)
    with duckdb_subinterp.RayPool(2) as actors:
        assert_type(actors, duckdb_subinterp.RayPool)
