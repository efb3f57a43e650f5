"""Aggregates and table functions: a scalar UDF of ours behind a temporary DuckDB macro.

DuckDB's Python client registers scalar functions only. So an aggregate or
a table function registered here is two catalog entries::

    SELECT k, py_median(x) FROM t GROUP BY k          FROM docs d, words(d.txt) w
            |  the macro, under the user's name               |
            v                                                 v
    "py_median (aggregate)"(list(x) FILTER (...))     unnest("words (table function)"(d.txt), max_depth := 2)
            |  a scalar UDF of ours (create_function): one row a group, or an input row
            v
    the pool's workers: _worker.adapters.AggregateCall / TableFunctionCall -> the user's function

- The scalar UDF has a name nobody types, ``"<name> (aggregate)"`` or
  ``"<name> (table function)"``: DuckDB has no hidden functions
  (``duckdb_functions()`` lists it). It is an ordinary UDF on any backend,
  so its batches are ordinary dispatcher batches: parallel across DuckDB's
  threads, and cut into slices for idle workers by the dispatcher's cost
  model (``_engine.costs``) as any costly batch is, down to one group or
  input row a slice where those are costly; ``fan_out=False`` turns that off.
- The macro is ``CREATE TEMP MACRO``: a file-backed database never stores
  it, so reopened later it holds no reference to a Python function. DuckDB
  keeps temporary objects per connection: the function is there on the
  connection that registered it, not on its cursors.

This module holds what both kinds share: the name checks, reading the
user's function, and the registration (scalar UDF first, then the macro,
undone together); ``connections`` keeps what was registered, for
``remove_function`` and ``udf_stats``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import duckdb
from duckdb.sqltypes import DuckDBPyType

from duckdb_subinterp._engine.pool import WorkerPool
from duckdb_subinterp._errors import UDFRegistrationError
from duckdb_subinterp._options import MacroExportOptions, NullHandlingName
from duckdb_subinterp._registration import connections
from duckdb_subinterp._registration.api import FunctionOptions, create_function, remove_function
from duckdb_subinterp._registration.connections import MacroFunction
from duckdb_subinterp._registration.signatures import callable_signature
from duckdb_subinterp._registration.validation import Registration, is_coroutine_udf, validate
from duckdb_subinterp._worker.adapters import UserFunction
from duckdb_subinterp._worker.runtime import is_class_udf


class MacroOptions(MacroExportOptions, total=False):
    """The keyword options an aggregate or a table function passes on to its scalar UDF.

    ``create_function``'s, less ``type`` and ``side_effects`` (a macro over a
    scalar UDF of ours cannot honour them): ``MacroExportOptions`` and ``pool``.
    """

    pool: WorkerPool | None


def macro_options(arguments: Mapping[str, Any]) -> MacroOptions:
    """Return the keyword options among a ``create_*_function``'s arguments (its ``locals()`` on entry)."""
    return cast("MacroOptions", {key: arguments[key] for key in MacroOptions.__optional_keys__})


def user_function(
    kind: str,
    name: Any,
    function: Any,
    parameters: Any,
    return_type: Any,
    options: MacroOptions,
) -> tuple[Registration, UserFunction, list[str]]:
    """Read the user's function as ``create_function`` does; return it, how it ships, and its parameters' names.

    Its parameters are the SQL function's: one argument each, no ``*args``
    (a macro takes a fixed number), nothing keyword-only (calls are positional).
    """
    if not isinstance(name, str) or not name:
        raise UDFRegistrationError(f"{kind} name must be a non-empty str, got {name!r}")
    registration = validate(
        name,
        function,
        parameters,
        return_type,
        "native",
        options["null_handling"],
        options["exception_handling"],
        False,
    )
    signature = callable_signature(registration.function)
    names = []
    for parameter in signature.parameters.values():
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            raise UDFRegistrationError(
                f"{kind} {name!r}: *{parameter.name} takes any number of arguments, but DuckDB's macros take a fixed "
                f"number; name each parameter"
            )
        if parameter.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.VAR_KEYWORD):
            raise UDFRegistrationError(
                f"{kind} {name!r}: parameter {parameter.name!r} is keyword-only; the function is called with "
                "positional arguments, one per SQL argument"
            )
        names.append(parameter.name)
    untyped = [name for name, type_ in zip(names, registration.parameters, strict=False) if type_ is None]
    if untyped and len(untyped) < len(registration.parameters):
        # One ANY argument makes the scalar UDF behind the macro take ANY for all: the others' types would be lost.
        raise UDFRegistrationError(
            f"{kind} {name!r}: parameter{'s' if len(untyped) > 1 else ''} {', '.join(map(repr, untyped))} "
            "not annotated while the others are; annotate every parameter or none (unannotated, each takes "
            "whatever type the call gives), or pass parameters=[...] with every argument's DuckDB type"
        )
    # str or bytes: only the inline backend's own copy of a registration ships the function object itself.
    shipped_as = cast("str | bytes", registration.shipped)
    shipped = UserFunction(name, registration.function, shipped_as, registration.module_source, ())
    return registration, shipped, names


def is_async(function: Any) -> bool:
    """Tell whether calling ``function`` (or an instance of it) gives a coroutine or an async iterator."""
    target = function.__call__ if is_class_udf(function) else function
    return is_coroutine_udf(function) or inspect.isasyncgenfunction(target)


def register(
    con: duckdb.DuckDBPyConnection,
    kind: str,
    name: str,
    adapter: Any,
    parameters: Sequence[DuckDBPyType] | None,
    return_type: DuckDBPyType,
    macro: Callable[[str], str],
    options: MacroOptions,
    *,
    null_handling: NullHandlingName,
) -> None:
    """Register ``adapter`` as the scalar UDF behind ``name``, then the macro ``macro(scalar name)`` gives.

    The name is checked first: DuckDB lets a temporary macro hide any
    function, a built-in included, so a name DuckDB already has is refused.
    """
    scalar = _free_names(con, kind, name)
    create_function(
        con,
        scalar,
        adapter,
        list(parameters) if parameters is not None else None,
        return_type,
        **cast("FunctionOptions", {**options, "null_handling": null_handling}),
    )
    try:
        con.execute(macro(scalar))
    except BaseException:
        remove_function(con, scalar)
        raise
    connections.add_macro(con, MacroFunction(name, kind, scalar, adapter))


def _free_names(con: duckdb.DuckDBPyConnection, kind: str, name: str) -> str:
    """Refuse ``name`` if DuckDB has a function of that name; return a free name for its scalar UDF."""
    own = connections.macro(con, name)
    if own is not None:
        raise UDFRegistrationError(
            f"{kind} {name!r}: this connection has {own.kind} {own.name!r} already; "
            f"remove_function(con, {own.name!r}) first"
        )
    # Case-insensitive, as DuckDB's catalog is.
    prefix = f"{name} ({kind}"
    rows = con.execute(
        "SELECT function_name, function_type, database_name, schema_name FROM duckdb_functions() "
        "WHERE lower(function_name) = lower($1) OR starts_with(lower(function_name), lower($2))",
        [name, prefix],
    ).fetchall()
    taken = {str(row[0]).lower() for row in rows}
    for function_name, function_type, database, schema in rows:
        if str(function_name).lower() == name.lower():
            raise UDFRegistrationError(
                f"{kind} {name!r}: DuckDB already has {function_type} function {function_name!r} "
                f"({database}.{schema}); a temporary macro of that name would hide it, even a built-in. Choose "
                f"another name, or remove_function(con, {name!r}) first if it is one of yours"
            )
    # Another connection to the same database may have registered one: DuckDB's catalog is shared.
    candidate, number = f"{name} ({kind})", 1
    while candidate.lower() in taken:
        number += 1
        candidate = f"{name} ({kind} {number})"
    return candidate
