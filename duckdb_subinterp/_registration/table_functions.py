"""``create_table_function``: a Python function that returns or yields rows, as a DuckDB table function.

The SQL shape (see ``macros`` for the registration)::

    CREATE TEMP MACRO "words"("text") AS TABLE
        SELECT unnest("words (table function)"("text"), max_depth := 2)

The scalar UDF returns each input row's rows as one list of structs; the
unnest makes them rows again, one column per struct field: two levels
(the list, then the struct) and no deeper, so a LIST or STRUCT column stays
one column. The rows of an input stay together and in the order the
function yielded them. ``FROM words('a b')`` calls it once; ``FROM docs d,
words(d.text) w`` (a lateral join) once per row of ``docs``, in the scalar
UDF's ordinary batches of rows.
"""

from __future__ import annotations

import collections.abc
import struct
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import duckdb
from duckdb.sqltypes import DuckDBPyType

from duckdb_subinterp._engine.arrow import UnsupportedType, descriptor_for
from duckdb_subinterp._engine.pool import WorkerPool
from duckdb_subinterp._errors import UDFRegistrationError, UnsupportedTypeError
from duckdb_subinterp._options import (
    BackendName,
    ExceptionHandling,
    NullHandling,
    NullHandlingName,
    RetryOn,
    TypeLike,
)
from duckdb_subinterp._registration import macros
from duckdb_subinterp._registration.connections import quote
from duckdb_subinterp._registration.signatures import annotation_type, callable_signature, duckdb_type
from duckdb_subinterp._worker.adapters import AsyncTableFunctionCall, TableFunctionCall

KIND = "table function"

# Return annotations whose argument is the row type: Iterator[Row], list[Row]...
_ROW_CONTAINERS = (
    collections.abc.Iterator,
    collections.abc.Iterable,
    collections.abc.Generator,
    collections.abc.Sequence,
    collections.abc.AsyncIterator,
    collections.abc.AsyncIterable,
    collections.abc.AsyncGenerator,
    list,
)


def create_table_function(
    con: duckdb.DuckDBPyConnection,
    name: str,
    function: Callable[..., Any] | str,
    parameters: Sequence[TypeLike] | None = None,
    columns: Mapping[str, TypeLike] | Sequence[tuple[str, TypeLike]] | None = None,
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
    """Register ``function`` as a table function of ``con``, run on ``backend``: ``FROM name(args)``.

    ``function`` takes the SQL arguments and returns or yields rows: each a
    tuple of one value per column, or a dict with a key per column; a
    returned list (any iterable) of rows, or None for none. Works in ``FROM
    name(...)`` and laterally (``FROM docs d, name(d.text)``: once per input
    row, the pool's workers taking the rows in parallel); an input row's rows
    stay together, in the order yielded. A row of the wrong shape or type
    fails the query naming the function, the input and the row.

    Args:
        con: The connection to register on. The table function is a temporary macro: it is there on this
            connection, not on its cursors, and never stored in a database file.
        name: The table function's name in SQL; a name DuckDB already has (a built-in included) is refused.
        function: A function or generator, a class whose instances are it (``__init__`` runs once per
            worker), an ``async def`` function or async generator (the input rows of a batch awaited
            concurrently), or a ``"module:qualname"`` string to import.
        parameters: The SQL arguments' types, as for ``create_function``; None reads the annotations.
        columns: The columns' names and DuckDB types, in order (``{"word": "VARCHAR", "pos": "INTEGER"}``
            or a list of pairs). None reads the return annotation's row type (``Iterator[Word]`` for a
            ``NamedTuple`` or ``TypedDict`` ``Word``, or ``tuple[str, int]``).
        null_handling: ``"default"`` (an input with a NULL argument has no rows, and no call) or
            ``"special"`` (the function gets None).
        exception_handling: As for ``create_function``: ``"return_null"`` gives a failing input no rows.
        backend: As for ``create_function``.
        pool: As for ``create_function``.
        max_workers: As for ``create_function``: at most that many batches of input rows at once.
        fan_out: As for ``create_function``: False runs every batch of input rows whole.
        max_concurrency: As for ``create_function`` (an async function's input rows in flight per worker).
        retries: As for ``create_function`` (an async function's call for an input row).
        retry_backoff: As for ``create_function``.
        retry_on: As for ``create_function``.
        timeout: As for ``create_function``: seconds each call of an async function may take.

    Returns:
        ``con``, as ``create_function`` returns it.

    Raises:
        UDFRegistrationError: An argument cannot be taken (a name DuckDB has, no columns, a column named
            twice, ``*args``); the message names it and the fix. ``UnsupportedTypeError`` for a column type
            the backends cannot carry; the other subclasses as for ``create_function``.
        TypeError: As for ``create_function``.

    Example:
        ```python
        def words(text: str):
            for position, word in enumerate(text.split()):
                yield word, position

        duckdb_subinterp.create_table_function(con, "words", words, columns={"word": "VARCHAR", "pos": "INTEGER"})
        con.sql("SELECT d.id, w.word FROM docs d, words(d.text) w")
        ```
    """
    if not isinstance(con, duckdb.DuckDBPyConnection):
        raise UDFRegistrationError(f"con must be a duckdb.DuckDBPyConnection, got {con!r}")
    options = macros.macro_options(locals())  # before any other local: the keyword options as given
    # The return type is the columns': create_function's reading of the return annotation does not apply.
    registration, user, names = macros.user_function(KIND, name, function, parameters, "BOOLEAN", options)
    table = _columns(name, columns, registration.function)
    checks = []
    for column, column_type in table:
        try:
            descriptor = descriptor_for(column_type)
        except UnsupportedType as error:
            raise UnsupportedTypeError(f"{KIND} {name!r}: column {column!r}: {error}") from None
        typecode = descriptor[1] if descriptor[0] == "number" else None
        checks.append((column, str(column_type), str(descriptor[0]), typecode, _integer_bounds(descriptor)))
    call = AsyncTableFunctionCall if macros.is_async(registration.function) else TableFunctionCall
    adapter = call(name, user, len(names), checks)
    rows_type = duckdb.list_type(duckdb.struct_type(dict(table)))
    typed = [argument for argument in registration.parameters if argument is not None]
    macros.register(
        con,
        KIND,
        name,
        adapter,
        typed if len(typed) == len(registration.parameters) else None,  # None: the ANY ones make all ANY
        rows_type,
        lambda scalar: _macro_sql(name, scalar, names),
        options,
        # "default": a NULL argument gives NULL, which unnests to no rows.
        null_handling=cast("NullHandlingName", registration.null_handling),
    )
    return con


def _integer_bounds(descriptor: tuple[Any, ...]) -> tuple[int, int] | None:
    """Return the smallest and largest value of an integer column's type, None for any other."""
    if descriptor[0] == "int128":
        bits, signed = 128, bool(descriptor[1])
    elif descriptor[0] == "number" and descriptor[1] not in ("f", "d"):
        bits, signed = 8 * struct.calcsize(descriptor[1]), descriptor[1].islower()
    else:
        return None
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


def _columns(name: str, columns: Any, function: Any) -> list[tuple[str, DuckDBPyType]]:
    """Return the table's (column name, type) pairs, from ``columns`` or the function's return annotation."""
    if columns is None:
        pairs = _annotated_columns(name, function)
    elif isinstance(columns, Mapping):
        pairs = list(columns.items())
    elif isinstance(columns, (list, tuple)) and all(isinstance(pair, tuple) and len(pair) == 2 for pair in columns):
        pairs = list(columns)
    else:
        raise UDFRegistrationError(
            f"{KIND} {name!r}: columns must be a dict of column names to DuckDB types ({{'word': 'VARCHAR'}}) or a "
            f"list of (name, type) pairs, got {columns!r}"
        )
    if not pairs:
        raise UDFRegistrationError(f"{KIND} {name!r}: a table needs at least one column; columns is empty")
    table: list[tuple[str, DuckDBPyType]] = []
    seen: set[str] = set()
    for column, column_type in pairs:
        if not isinstance(column, str) or not column:
            raise UDFRegistrationError(f"{KIND} {name!r}: column names must be non-empty str, got {column!r}")
        if column.lower() in seen:  # DuckDB's names are case-insensitive
            raise UDFRegistrationError(f"{KIND} {name!r}: column {column!r} is named twice (case aside)")
        seen.add(column.lower())
        table.append((column, duckdb_type(column_type, name, f"column {column!r} type")))
    return table


def _annotated_columns(name: str, function: Any) -> list[tuple[str, Any]]:
    """Read the columns from a return annotation such as ``Iterator[Word]``, ``Word`` a NamedTuple or TypedDict."""
    try:
        annotation = callable_signature(function).return_annotation
    except (TypeError, ValueError, NameError, SyntaxError):
        annotation = None
    row = annotation
    if typing.get_origin(annotation) in _ROW_CONTAINERS and typing.get_args(annotation):
        row = typing.get_args(annotation)[0]
    named_tuple = isinstance(row, type) and issubclass(row, tuple) and hasattr(row, "_fields")
    if named_tuple or typing.is_typeddict(row):
        hints = typing.get_type_hints(row)
    elif typing.get_origin(row) is tuple and typing.get_args(row) and Ellipsis not in typing.get_args(row):
        # Unnamed values: named as DuckDB names the columns of VALUES.
        hints = {f"col{index}": hint for index, hint in enumerate(typing.get_args(row))}
    else:
        raise UDFRegistrationError(
            f"{KIND} {name!r}: no columns: pass columns={{'name': 'VARCHAR', ...}} (names and DuckDB types, in "
            "order), or annotate the return as Iterator[Row], Row a NamedTuple, a TypedDict or tuple[str, int, ...]"
        )
    pairs = []
    for field, hint in hints.items():
        column_type = annotation_type(hint)
        if column_type is None:
            raise UDFRegistrationError(
                f"{KIND} {name!r}: column {field!r} of the return annotation is {hint!r}, which names no DuckDB "
                "type; annotate it with one (str, int, float, ...) or pass columns=..."
            )
        pairs.append((field, column_type))
    return pairs


def _macro_sql(name: str, scalar: str, parameters: Sequence[str]) -> str:
    quoted = ", ".join(quote(parameter) for parameter in parameters)
    return (
        f"CREATE TEMP MACRO {quote(name)}({quoted}) AS TABLE SELECT unnest({quote(scalar)}({quoted}), max_depth := 2)"
    )
