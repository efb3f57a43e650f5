"""What the scalar UDF behind an aggregate or a table function runs: the user's function, adapted.

Standard library only: imported inside per-GIL interpreters and worker
processes (through the bare package), where duckdb and pyarrow cannot load.

The main side (``_registration.aggregates``, ``_registration.table_functions``)
registers one of these callables as an ordinary scalar UDF and wraps it in a
temporary DuckDB macro; DuckDB then calls it once per group, or once per
input row::

    aggregate:       list(x) per group  ->  AggregateCall(values)
                         one list per group (a list of argument structs for several arguments)
                         -> function(xs, ys, ...) -> the group's value
    table function:  the row's arguments  ->  TableFunctionCall(*arguments)
                         -> function(*arguments) returns or yields rows (tuples or dicts)
                         -> a list of row tuples, which the macro unnests into columns

Pickled for the workers, an adapter carries how the user's function is
shipped (a ``module:qualname`` reference, its module's source, or the
function pickled by value), never the function object: each worker loads
it once, as the runtime loads a scalar UDF, and a class is instantiated
once there (per-worker state).
"""

from __future__ import annotations

import datetime
import decimal
import inspect
import numbers
import operator
import reprlib
import threading
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from duckdb_subinterp._worker.protocol import UdfSpec
from duckdb_subinterp._worker.runtime import is_class_udf, load_function

# Long argument values (a document's text) are shortened in error messages.
_short = reprlib.Repr(maxstring=60, maxother=60, maxlist=4, maxtuple=4, maxdict=4)


class UserFunction:
    """The user's function as a worker loads it: shipped by reference or by value, instantiated once if a class."""

    def __init__(
        self,
        name: str,
        function: Any,
        shipped: str | bytes,
        module_source: tuple[str, str, str, str, bool] | None,
        path: tuple[str, ...],
    ) -> None:
        self.name = name
        self.shipped = shipped
        self.module_source = module_source
        self.path = path
        self._given = function  # the object itself: what backend="inline" calls, in this interpreter
        self._loaded: Callable[..., Any] | None = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {"name": self.name, "shipped": self.shipped, "module_source": self.module_source, "path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._given = None
        self._lock = threading.Lock()
        # Unpickled in a worker, as its scalar UDF loads: import problems surface at registration.
        self._loaded = load_function(
            UdfSpec(
                name=self.name,
                function=self.shipped,
                kind="native",
                arg_descriptors=(),
                return_descriptor=("bool",),
                return_type_name="BOOLEAN",
                special_nulls=False,
                errors_to_null=False,
                varargs=False,
                module_source=self.module_source,
                path=self.path,
            )
        )

    def __call__(self) -> Callable[..., Any]:
        """Return the callable: the function, or the worker's one instance of a class."""
        loaded = self._loaded
        if loaded is None:
            with self._lock:  # backend="inline": DuckDB's threads may make the first call together
                if self._loaded is None:
                    given = self._given
                    self._loaded = given() if is_class_udf(given) else given
                loaded = self._loaded
        return loaded

    def describe(self) -> str:
        return self.shipped if isinstance(self.shipped, str) else repr(self._given)


def _positional(count: int) -> inspect.Signature:
    """The signature DuckDB and create_function read: ``count`` unannotated positional parameters."""
    return inspect.Signature(
        [inspect.Parameter(f"arg{index}", inspect.Parameter.POSITIONAL_ONLY) for index in range(count)]
    )


class AggregateCall:
    """One group's values in, the user's function's value out.

    ``arity`` arguments: one list of values for one argument, else one list
    of structs (``c0``, ``c1``...), one per row, which becomes one list per
    argument. A group no row reached (an empty group, or one whose rows all
    had a NULL argument, under ``skip_nulls``) arrives as None: NULL without
    a call when NULLs are skipped, else a call with empty sequences.
    """

    def __init__(self, name: str, function: UserFunction, arity: int, *, skip_nulls: bool) -> None:
        self.name = name
        self.function = function
        self.arity = arity
        self.skip_nulls = skip_nulls
        self.fields = tuple(operator.itemgetter(f"c{index}") for index in range(arity))

    @property
    def __signature__(self) -> inspect.Signature:
        return _positional(1)

    def __repr__(self) -> str:
        return f"<aggregate {self.name!r}: {self.function.describe()}>"

    def columns(self, values: list[Any] | None) -> list[list[Any]] | None:
        """Return one sequence per argument, or None where the group is NULL without a call."""
        if values is None:
            return None if self.skip_nulls else [[] for _ in range(self.arity)]
        if self.arity == 1:
            return [values]
        return [list(map(field, values)) for field in self.fields]

    def __call__(self, values: list[Any] | None) -> Any:
        columns = self.columns(values)
        if columns is None:
            return None
        try:
            return self.function()(*columns)
        except BaseException as error:
            error.add_note(f"(in aggregate {self.name!r}, for a group of {len(columns[0])} rows)")
            raise


class AsyncAggregateCall(AggregateCall):
    """An aggregate whose function is ``async def``: the groups of a batch are awaited together."""

    async def __call__(self, values: list[Any] | None) -> Any:
        columns = self.columns(values)
        if columns is None:
            return None
        try:
            return await self.function()(*columns)
        except BaseException as error:
            error.add_note(f"(in aggregate {self.name!r}, for a group of {len(columns[0])} rows)")
            raise


# The Python values a column takes as they are, by the codec's descriptor kind
# (docs/types.md, "results also"): anything else fails naming the row, where
# DuckDB's own conversion would cast some (a str for an INTEGER) and not say
# which row failed otherwise. Nested values are checked at their top only.
_ACCEPTED: dict[str, tuple[type, ...]] = {
    "bool": (bool,),
    "int128": (numbers.Integral,),
    "decimal": (decimal.Decimal, numbers.Real, str),
    "utf8": (str,),
    "binary": (bytes, bytearray, memoryview),
    "uuid": (uuid.UUID, str),
    "date32": (datetime.date,),
    "time64": (datetime.time,),
    "timestamp": (datetime.date,),  # a datetime, or a date (midnight)
    "interval": (datetime.timedelta,),
    "enum": (str,),
    "list": (list, tuple),
    "array": (tuple, list),
    "struct": (dict, tuple),
    "map": (dict,),
}
_PYTHON_TYPE_NAMES = {
    "bool": "bool",
    "int128": "int",
    "decimal": "decimal.Decimal (or int, float, str)",
    "utf8": "str",
    "binary": "bytes",
    "uuid": "uuid.UUID (or str)",
    "date32": "datetime.date",
    "time64": "datetime.time",
    "timestamp": "datetime.datetime",
    "interval": "datetime.timedelta",
    "enum": "str (one of its labels)",
    "list": "list",
    "array": "tuple",
    "struct": "dict (or tuple)",
    "map": "dict",
}


class ColumnCheck:
    """What one column of a table function's rows accepts: a type test cheap enough for every value."""

    __slots__ = ("bounds", "exact", "expected", "name", "numeric", "sql_type", "types")

    def __init__(
        self, name: str, sql_type: str, kind: str, typecode: str | None, bounds: tuple[int, int] | None = None
    ) -> None:
        self.name = name
        self.sql_type = sql_type
        self.bounds = bounds  # an integer column's smallest and largest value
        if kind == "number":
            floating = typecode in ("f", "d")
            self.types: tuple[type, ...] = (numbers.Real,) if floating else (numbers.Integral,)
            self.expected = "float (or int)" if floating else "int"
            exact: set[type] = {int, float} if floating else {int}
        else:
            self.types = _ACCEPTED.get(kind, (object,))
            self.expected = _PYTHON_TYPE_NAMES.get(kind, "its type")
            exact = {kind_type for kind_type in self.types if not inspect.isabstract(kind_type)}
            exact |= {int} if kind == "int128" else {int, float} if kind == "decimal" else set()
        # A bool is an int to Python, never a number to DuckDB.
        self.numeric = kind != "bool"
        # The common exact types first: an isinstance() against an ABC costs ~0.3 us.
        self.exact = frozenset({*exact, type(None)})

    def refuses(self, value: Any) -> bool:
        if type(value) in self.exact:
            return False
        return not isinstance(value, self.types) or (self.numeric and isinstance(value, bool))

    def out_of_range(self, value: Any) -> bool:
        """Tell whether an integer column's value (of its type) is beyond the column's type."""
        return self.bounds is not None and value is not None and not self.bounds[0] <= value <= self.bounds[1]

    def holds(self, column: Sequence[Any]) -> bool:
        """Tell whether every value of ``column`` (all of the column's type, NULLs too) is within its bounds."""
        if self.bounds is None:
            return True
        values = [value for value in column if value is not None] if None in column else column
        return not values or (self.bounds[0] <= min(values) and max(values) <= self.bounds[1])


class TableFunctionCall:
    """One input row's arguments in, the rows the user's function returned or yielded out, as tuples.

    Each row is checked: a tuple of one value per column, or a dict with a
    key per column; each value of its column's Python type. A row that is
    not fails the query naming the table function, the input and the row;
    an exception the function raises part-way carries a note saying the same.
    """

    def __init__(
        self,
        name: str,
        function: UserFunction,
        arity: int,
        columns: Sequence[tuple[str, str, str, str | None, tuple[int, int] | None]],
    ) -> None:
        self.name = name
        self.function = function
        self.arity = arity
        self.checks = tuple(ColumnCheck(*column) for column in columns)
        self.names = tuple(check.name for check in self.checks)
        self.exact = tuple(check.exact for check in self.checks)
        self.width = frozenset({len(self.checks)})

    @property
    def __signature__(self) -> inspect.Signature:
        return _positional(self.arity)

    def __repr__(self) -> str:
        return f"<table function {self.name!r}: {self.function.describe()}>"

    def __call__(self, *arguments: Any) -> list[tuple[Any, ...]]:
        try:
            produced = self.function()(*arguments)
        except BaseException as error:
            error.add_note(f"(in table function {self.name!r}, for the input {_short.repr(arguments)})")
            raise
        if produced is None:
            return []
        self._check_iterable(produced, arguments)
        rows: list[Any] = []
        try:
            rows.extend(produced)  # a generator runs to its end here, in C; what it yielded stays on a failure
        except BaseException as error:
            error.add_note(self._part_way(arguments, len(rows)))
            raise
        return self.checked(rows, arguments)

    def _check_iterable(self, produced: Any, arguments: tuple[Any, ...]) -> None:
        if isinstance(produced, (str, bytes, dict)) or not (
            hasattr(produced, "__iter__") or hasattr(produced, "__aiter__")
        ):
            raise TypeError(
                f"table function {self.name!r} returned {type(produced).__name__} {_short.repr(produced)} for the "
                f"input {_short.repr(arguments)}; return or yield rows: tuples of {len(self.names)} values or dicts "
                f"with the keys {', '.join(map(repr, self.names))}"
            )

    def _part_way(self, arguments: tuple[Any, ...], count: int) -> str:
        return f"(in table function {self.name!r}, for the input {_short.repr(arguments)}, after {count} rows)"

    def checked(self, rows: list[Any], arguments: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """Return ``rows`` as tuples in column order, or raise naming the first bad one.

        Plain tuples whose values have their columns' exact types are
        checked a column at a time, in C (map, set, zip): ~0.1 us a row of
        two columns, where a row at a time in Python cost ~1.4 us, more than
        a cheap function's own work per row (bench/aggregates.py). Anything
        else (dicts, NamedTuples, numpy numbers, a bad row) goes row by row.
        """
        if rows and set(map(type, rows)) == _TUPLE and set(map(len, rows)) <= self.width:
            columns = list(zip(*rows, strict=True))
            if all(map(frozenset.issuperset, self.exact, map(_types, columns))) and all(
                map(ColumnCheck.holds, self.checks, columns)
            ):
                return rows
        return [self.row(row, index, arguments) for index, row in enumerate(rows)]

    def row(self, row: Any, index: int, arguments: tuple[Any, ...]) -> tuple[Any, ...]:
        """Return ``row`` as a tuple in column order, or raise naming what is wrong with it."""
        names = self.names
        if isinstance(row, tuple):
            if len(row) != len(names):
                raise ValueError(
                    f"{self._where(index, arguments)} has {len(row)} values, but the table has {len(names)} columns "
                    f"({', '.join(names)}); yield one value per column"
                )
            values = row if type(row) is tuple else tuple(row)  # a NamedTuple, as the codec takes it
        elif isinstance(row, dict):
            if len(row) != len(names) or any(name not in row for name in names):
                missing = [name for name in names if name not in row]
                unknown = [key for key in row if key not in names]
                said = [f"no {', '.join(map(repr, missing))}"] if missing else []
                said += [f"unknown {', '.join(map(repr, unknown))}"] if unknown else []
                raise ValueError(
                    f"{self._where(index, arguments)} has {' and '.join(said)}: the keys are the columns "
                    f"{', '.join(map(repr, names))}"
                )
            values = tuple([row[name] for name in names])
        else:
            raise TypeError(
                f"{self._where(index, arguments)} is {type(row).__name__} {_short.repr(row)}: a row is a tuple of "
                f"{len(names)} values or a dict with the keys {', '.join(map(repr, names))}"
            )
        for value, check in zip(values, self.checks, strict=True):
            if check.refuses(value):
                raise TypeError(
                    f"{self._where(index, arguments)}: column {check.name!r} ({check.sql_type}) takes "
                    f"{check.expected}, got {type(value).__name__} {_short.repr(value)}"
                )
            if check.out_of_range(value):
                low, high = check.bounds or (0, 0)
                raise ValueError(
                    f"{self._where(index, arguments)}: column {check.name!r} ({check.sql_type}) takes {low} to "
                    f"{high}, got {_short.repr(value)}; give the column a wider type"
                )
        return values

    def _where(self, index: int, arguments: tuple[Any, ...]) -> str:
        return f"table function {self.name!r}: row {index} for the input {_short.repr(arguments)}"


class AsyncTableFunctionCall(TableFunctionCall):
    """A table function that is ``async def`` (returns rows) or an async generator (yields them)."""

    async def __call__(self, *arguments: Any) -> list[tuple[Any, ...]]:  # type: ignore[override]  # awaited
        try:
            produced = self.function()(*arguments)
            if not hasattr(produced, "__aiter__"):
                produced = await produced
        except BaseException as error:
            error.add_note(f"(in table function {self.name!r}, for the input {_short.repr(arguments)})")
            raise
        if produced is None:
            return []
        self._check_iterable(produced, arguments)
        rows: list[Any] = []
        try:
            if hasattr(produced, "__aiter__"):
                async for row in produced:
                    rows.append(row)  # noqa: PERF401  # one at a time: what came before a failure is counted
            else:
                rows.extend(produced)
        except BaseException as error:
            error.add_note(self._part_way(arguments, len(rows)))
            raise
        return self.checked(rows, arguments)


_TUPLE = {tuple}


def _types(column: tuple[Any, ...]) -> set[type]:
    return set(map(type, column))
