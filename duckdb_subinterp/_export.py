"""``@export``: mark module functions as UDFs, registered by ``duckdb-subinterp sql -m module``.

``@export_aggregate`` and ``@export_table_function`` mark aggregates and
table functions the same way (``create_aggregate_function``,
``create_table_function``).

Standard library only (``_options`` too): a UDF module that uses
``@duckdb_subinterp.export`` is imported inside per-GIL interpreters too,
where the package is a bare object that exposes this decorator and nothing
that needs duckdb.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any, Unpack, overload

from duckdb_subinterp._options import ExportOptions, MacroExportOptions

if TYPE_CHECKING:
    from collections.abc import Mapping

    from duckdb_subinterp._options import TypeLike

EXPORT_ATTRIBUTE = "__duckdb_subinterp_export__"
# create_function's keyword options that a mark can carry (a pool cannot: it
# belongs to the process that registers, not to the module).
OPTIONS = tuple(ExportOptions.__annotations__)
# What create_aggregate_function and create_table_function take besides their types (and a pool).
MACRO_OPTIONS = tuple(MacroExportOptions.__annotations__)


@overload
def export[Function: Callable[..., Any]](function: Function, /) -> Function: ...


@overload
def export[Function: Callable[..., Any]](
    function: None = None,
    /,
    *,
    name: str | None = None,
    parameters: Sequence[TypeLike] | None = None,
    return_type: TypeLike | None = None,
    **options: Unpack[ExportOptions],
) -> Callable[[Function], Function]: ...


def export[Function: Callable[..., Any]](
    function: Function | None = None,
    /,
    *,
    name: str | None = None,
    parameters: Sequence[TypeLike] | None = None,
    return_type: TypeLike | None = None,
    **options: Any,
) -> Function | Callable[[Function], Function]:
    """Mark a function (no connection needed) as a UDF for ``duckdb-subinterp sql -m module``.

    ``@export`` or ``@export(name=..., parameters=..., return_type=..., type=...,
    null_handling=...)``: the options of ``create_function``. The function is
    returned unchanged; nothing is registered until a connection asks.

    Args:
        function: The function, when used bare (``@export``).
        name: The UDF's name in SQL; None for the function's own name.
        parameters: As for ``create_function``.
        return_type: As for ``create_function``.
        **options: ``create_function``'s keyword options, but ``pool``.

    Returns:
        The function, marked; or, called with options, the decorator that marks it.

    Raises:
        TypeError: An unknown option (here, at import, naming it and the closest valid one), or a mark on
            something that is not callable.

    Example:
        ```python
        import duckdb_subinterp

        @duckdb_subinterp.export(type="vectorized", parameters=["BIGINT"], return_type="BIGINT")
        def plus_one(xs):
            return [x + 1 for x in xs]
        ```
    """
    fields = {"parameters": parameters, "return_type": return_type}
    return _marker("export", "function", OPTIONS, function, name, fields, options)


@overload
def export_aggregate[Function: Callable[..., Any]](function: Function, /) -> Function: ...


@overload
def export_aggregate[Function: Callable[..., Any]](
    function: None = None,
    /,
    *,
    name: str | None = None,
    parameters: Sequence[TypeLike] | None = None,
    return_type: TypeLike | None = None,
    **options: Unpack[MacroExportOptions],
) -> Callable[[Function], Function]: ...


def export_aggregate[Function: Callable[..., Any]](
    function: Function | None = None,
    /,
    *,
    name: str | None = None,
    parameters: Sequence[TypeLike] | None = None,
    return_type: TypeLike | None = None,
    **options: Any,
) -> Function | Callable[[Function], Function]:
    """Mark a function as an aggregate for ``duckdb-subinterp sql -m module``.

    ``@export_aggregate`` or ``@export_aggregate(name=..., parameters=...,
    return_type=..., null_handling=...)``: the options of
    ``create_aggregate_function``. The function is returned unchanged.

    Args:
        function: The function, when used bare (``@export_aggregate``).
        name: The aggregate's name in SQL; None for the function's own name.
        parameters: As for ``create_aggregate_function``: the SQL arguments' types.
        return_type: As for ``create_aggregate_function``.
        **options: ``create_aggregate_function``'s keyword options, but ``pool``.

    Returns:
        The function, marked; or, called with options, the decorator that marks it.

    Raises:
        TypeError: An unknown option (here, at import, naming it and the closest valid one), or a mark on
            something that is not callable.

    Example:
        ```python
        import statistics

        import duckdb_subinterp

        @duckdb_subinterp.export_aggregate(parameters=["DOUBLE"], return_type="DOUBLE")
        def py_median(values):
            return statistics.median(values)
        ```
    """
    fields = {"parameters": parameters, "return_type": return_type}
    return _marker("export_aggregate", "aggregate", MACRO_OPTIONS, function, name, fields, options)


@overload
def export_table_function[Function: Callable[..., Any]](function: Function, /) -> Function: ...


@overload
def export_table_function[Function: Callable[..., Any]](
    function: None = None,
    /,
    *,
    name: str | None = None,
    parameters: Sequence[TypeLike] | None = None,
    columns: Mapping[str, TypeLike] | Sequence[tuple[str, TypeLike]] | None = None,
    **options: Unpack[MacroExportOptions],
) -> Callable[[Function], Function]: ...


def export_table_function[Function: Callable[..., Any]](
    function: Function | None = None,
    /,
    *,
    name: str | None = None,
    parameters: Sequence[TypeLike] | None = None,
    columns: Mapping[str, TypeLike] | Sequence[tuple[str, TypeLike]] | None = None,
    **options: Any,
) -> Function | Callable[[Function], Function]:
    """Mark a function as a table function for ``duckdb-subinterp sql -m module``.

    ``@export_table_function`` or ``@export_table_function(name=...,
    parameters=..., columns=..., null_handling=...)``: the options of
    ``create_table_function``. The function is returned unchanged.

    Args:
        function: The function, when used bare (``@export_table_function``).
        name: The table function's name in SQL; None for the function's own name.
        parameters: As for ``create_table_function``.
        columns: As for ``create_table_function``: the columns' names and types, in order.
        **options: ``create_table_function``'s keyword options, but ``pool``.

    Returns:
        The function, marked; or, called with options, the decorator that marks it.

    Raises:
        TypeError: An unknown option (here, at import, naming it and the closest valid one), or a mark on
            something that is not callable.

    Example:
        ```python
        import duckdb_subinterp

        @duckdb_subinterp.export_table_function(columns={"word": "VARCHAR", "pos": "INTEGER"})
        def words(text: str):
            for position, word in enumerate(text.split()):
                yield word, position
        ```
    """
    fields = {"parameters": parameters, "columns": columns}
    return _marker("export_table_function", "table function", MACRO_OPTIONS, function, name, fields, options)


def _marker[Function: Callable[..., Any]](
    decorator: str,
    kind: str,
    allowed: Sequence[str],
    function: Function | None,
    name: str | None,
    fields: dict[str, Any],
    options: dict[str, Any],
) -> Function | Callable[[Function], Function]:
    """Check the options of ``@decorator``; mark ``function`` (now, or when decorated) with them and its ``kind``."""
    unknown = [option for option in options if option not in allowed]
    if unknown:
        valid = ("name", *fields, *allowed)
        close = difflib.get_close_matches(unknown[0], valid, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise TypeError(
            f"@duckdb_subinterp.{decorator} got unknown option {unknown[0]!r}{hint} (options: {', '.join(valid)})"
        )

    def mark(target: Function) -> Function:
        if not callable(target):
            raise TypeError(f"@duckdb_subinterp.{decorator} marks functions or UDF classes, got {target!r}")
        # "kind" only where it is not a scalar UDF: marks made before it existed read the same.
        marked_kind = {} if kind == "function" else {"kind": kind}
        setattr(target, EXPORT_ATTRIBUTE, {"name": name or target.__name__, **marked_kind, **fields, **options})
        return target

    return mark(function) if function is not None else mark


def exported_functions(module: ModuleType) -> list[tuple[Callable[..., Any], dict[str, Any]]]:
    """Return the functions of ``module`` marked with ``@export`` (or its kin), with their options."""
    found: list[tuple[Callable[..., Any], dict[str, Any]]] = []
    for value in vars(module).values():
        options = getattr(value, EXPORT_ATTRIBUTE, None) if callable(value) else None
        if isinstance(options, dict) and all(value is not seen for seen, _ in found):
            found.append((value, options))
    return found
