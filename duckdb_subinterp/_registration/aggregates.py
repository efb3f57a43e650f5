"""``create_aggregate_function``: a Python function over each group's values, as a DuckDB aggregate.

The SQL shape (see ``macros`` for the registration)::

    CREATE TEMP MACRO "py_median"("x") AS
        "py_median (aggregate)"(list("x") FILTER (WHERE "x" IS NOT NULL))
    CREATE TEMP MACRO "dot"("x", "y") AS
        "dot (aggregate)"(list({'c0': "x", 'c1': "y"}) FILTER (WHERE "x" IS NOT NULL AND "y" IS NOT NULL))

One ``list()`` and no other aggregate in the body: DuckDB expands a macro
called with ``OVER (...)`` by putting the window on the one aggregate of its
body, so the same macro serves ``GROUP BY``, ``GROUPING SETS``, a whole
table and window frames. Several arguments travel as one list of structs,
which keeps each row's values together. Under ``null_handling="special"``
there is no FILTER: rows with NULLs reach the function, as None.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, cast

import duckdb
from duckdb.sqltypes import DuckDBPyType

from duckdb_subinterp._engine.pool import WorkerPool
from duckdb_subinterp._errors import UDFRegistrationError
from duckdb_subinterp._options import BackendName, ExceptionHandling, NullHandling, RetryOn, TypeLike
from duckdb_subinterp._registration import connections, macros
from duckdb_subinterp._registration.connections import quote
from duckdb_subinterp._worker.adapters import AggregateCall, AsyncAggregateCall

KIND = "aggregate"


def create_aggregate_function(
    con: duckdb.DuckDBPyConnection,
    name: str,
    function: Callable[..., Any] | str,
    parameters: Sequence[TypeLike] | None = None,
    return_type: TypeLike | None = None,
    *,
    null_handling: NullHandling = "default",
    exception_handling: ExceptionHandling = "default",
    backend: BackendName = "subinterpreters",
    pool: WorkerPool | None = None,
    max_workers: int | None = None,
    fan_out: bool = True,
    max_concurrency: int = 32,
    retries: int = 0,
    retry_backoff: float = 0.1,
    retry_on: RetryOn = Exception,
    timeout: float | None = None,
) -> duckdb.DuckDBPyConnection:
    """Register ``function`` as an aggregate function of ``con``: called once per group, run on ``backend``.

    ``function`` receives, for each group, one list per argument (the
    group's values, in the Python types scalar UDFs receive) and returns the
    group's value. Works with ``GROUP BY``, ``GROUPING SETS``, a whole table
    and ``OVER (...)``; see the Aggregates page for FILTER, DISTINCT and
    ORDER BY. Behind it, DuckDB holds a temporary macro over a scalar UDF of
    ours, which takes a group a row: its batches run as any UDF's do, cut
    into slices (down to one group) for idle workers where groups are costly.

    Args:
        con: The connection to register on. The aggregate is a temporary macro: it is there on this
            connection, not on its cursors, and never stored in a database file.
        name: The aggregate's name in SQL; a name DuckDB already has (a built-in included) is refused.
        function: A function, a class whose instances are the aggregate (``__init__`` runs once per worker),
            a callable instance, an ``async def`` function (the groups of a batch awaited concurrently), or a
            ``"module:qualname"`` string to import. One positional parameter per SQL argument.
        parameters: The SQL arguments' types, one per parameter (``["DOUBLE"]``). None reads the
            annotations: ``list[float]`` gives DOUBLE; an unannotated parameter is ANY.
        return_type: The result's type; None reads the return annotation.
        null_handling: ``"default"`` (as DuckDB's own aggregates: rows with a NULL argument are left out,
            and a group with no rows left is NULL without a call) or ``"special"`` (every row reaches the
            function, None for NULL, and every group, an empty one included, gets a call).
        exception_handling: As for ``create_function``: ``"return_null"`` makes a failing group NULL.
        backend: As for ``create_function``.
        pool: As for ``create_function``.
        max_workers: As for ``create_function``: at most that many batches of groups at once.
        fan_out: As for ``create_function``: False runs every batch of groups whole.
        max_concurrency: As for ``create_function`` (an async function's groups in flight per worker).
        retries: As for ``create_function`` (an async function's call for a group).
        retry_backoff: As for ``create_function``.
        retry_on: As for ``create_function``.
        timeout: As for ``create_function``: seconds each call of an async function may take.

    Returns:
        ``con``, as ``create_function`` returns it.

    Raises:
        UDFRegistrationError: An argument cannot be taken (a name DuckDB has, a function without
            parameters, ``*args``, a parameter annotated other than ``list[...]``); the message names it
            and the fix. Its subclasses as for ``create_function``.
        TypeError: As for ``create_function``.

    Example:
        ```python
        import statistics

        def py_median(values):
            return statistics.median(values)

        duckdb_subinterp.create_aggregate_function(con, "py_median", py_median, ["DOUBLE"], "DOUBLE")
        con.sql("SELECT k, py_median(x) FROM t GROUP BY k")
        ```
    """
    if not isinstance(con, duckdb.DuckDBPyConnection):
        raise UDFRegistrationError(f"con must be a duckdb.DuckDBPyConnection, got {con!r}")
    options = macros.macro_options(locals())  # before any other local: the keyword options as given
    registration, user, names = macros.user_function(KIND, name, function, parameters, return_type, options)
    if not names:
        raise UDFRegistrationError(
            f"aggregate {name!r}: the function takes no parameter; an aggregate takes the group's values of at least "
            "one argument (count rows with DuckDB's count(*))"
        )
    if registration.explicit_parameters:
        argument_types = registration.parameters
    else:
        argument_types = [
            _argument_type(name, parameter, annotated)
            for parameter, annotated in zip(names, registration.parameters, strict=True)
        ]
    skip_nulls = registration.null_handling == "default"
    call = AsyncAggregateCall if macros.is_async(registration.function) else AggregateCall
    adapter = call(name, user, len(names), skip_nulls=skip_nulls)
    collected = _collected_type(argument_types)
    macros.register(
        con,
        KIND,
        name,
        adapter,
        None if collected is None else [collected],
        registration.return_type,
        lambda scalar: _macro_sql(name, scalar, names, skip_nulls=skip_nulls),
        options,
        null_handling="special",  # the adapter decides what a NULL group gives
    )
    return con


def _argument_type(name: str, parameter: str, annotated: DuckDBPyType | None) -> DuckDBPyType | None:
    """Return a parameter's SQL argument type from its annotation: ``list[float]`` gives DOUBLE; none gives ANY."""
    if annotated is None:
        return None
    if annotated.id != "list":
        raise UDFRegistrationError(
            f"aggregate {name!r}: parameter {parameter!r} is annotated {annotated}, but it receives the group's "
            "values, a list: annotate it list[...] (list[float] makes the SQL argument DOUBLE), or pass "
            "parameters=[...] with the SQL argument types"
        )
    return cast(DuckDBPyType, dict(annotated.children)["child"])


def _collected_type(argument_types: Sequence[DuckDBPyType | None]) -> DuckDBPyType | None:
    """Return what the scalar UDF receives per group: ``T[]``, or a list of argument structs; None for ANY."""
    typed = [argument for argument in argument_types if argument is not None]
    if len(typed) < len(argument_types):
        return None  # DuckDB gives each call site's list type
    if len(typed) == 1:
        return duckdb.list_type(typed[0])
    fields = {f"c{index}": argument for index, argument in enumerate(typed)}
    return duckdb.list_type(duckdb.struct_type(fields))


def _macro_sql(name: str, scalar: str, parameters: Sequence[str], *, skip_nulls: bool) -> str:
    quoted = [quote(parameter) for parameter in parameters]
    if len(quoted) == 1:
        collected = f"list({quoted[0]})"
    else:
        fields = ", ".join(f"'c{index}': {parameter}" for index, parameter in enumerate(quoted))
        collected = f"list({{{fields}}})"
    if skip_nulls:
        collected += f" FILTER (WHERE {' AND '.join(f'{parameter} IS NOT NULL' for parameter in quoted)})"
    return f"CREATE TEMP MACRO {quote(name)}({', '.join(quoted)}) AS {quote(scalar)}({collected})"


# DuckDB's refusal of FILTER, DISTINCT or ORDER BY inside a call to a macro, outside a window.
_MODIFIERS_REFUSED = re.compile(r'Function "(?P<name>(?:[^"]|"")+)" is a Macro Function\. "DISTINCT", "FILTER"')


def refusal_hint(con: duckdb.DuckDBPyConnection, message: str) -> str | None:
    """Return the way out of DuckDB's refusal in ``message`` if it names an aggregate of ours on ``con``, else None."""
    match = _MODIFIERS_REFUSED.search(message)
    found = connections.macro(con, match["name"]) if match else None
    if found is None or found.kind != KIND:
        return None
    name = found.name
    return (
        f"{name} is an aggregate of duckdb_subinterp, which DuckDB holds as a macro: it takes FILTER and DISTINCT "
        f"inside the call only with OVER (...). Instead: FILTER (WHERE cond) -> {name}(CASE WHEN cond THEN x END); "
        f"DISTINCT -> {name}(x) over (SELECT DISTINCT ...); ORDER BY -> pass the column to order by as one more "
        "argument and sort in the function (see the Aggregates page of the docs)"
    )


@contextmanager
def explaining_refusals(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Add the way out to DuckDB's refusal of FILTER, DISTINCT or ORDER BY in a call to one of our aggregates."""
    try:
        yield
    except duckdb.InvalidInputException as error:
        hint = refusal_hint(con, str(error))
        if hint is None:
            raise
        raise duckdb.InvalidInputException(f"{error}\n{hint}") from None
