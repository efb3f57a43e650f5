"""The values ``create_function``'s options take, as types for type checkers.

Standard library only at run time, like ``_export``, which uses it and loads
inside per-GIL interpreters: duckdb's enums are imported for type checkers
alone, and each alias is a ``type`` statement, whose value Python evaluates
only when asked. ``_registration`` checks the values at run time; a test
holds these Literals to its tuples.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, TypedDict

if TYPE_CHECKING:
    import datetime
    import uuid

    from _duckdb._typing import IntoPyType
    from duckdb import PythonExceptionHandling
    from duckdb.func import FunctionNullHandling, PythonUDFType

    from duckdb_subinterp._pool import WorkerPool

type BackendName = Literal["subinterpreters", "processes", "ray", "auto", "inline"]
type UdfTypeName = Literal["native", "vectorized", "arrow"]
type NullHandlingName = Literal["default", "special"]
type ExceptionHandlingName = Literal["default", "return_null"]

# create_function also takes DuckDB's own enums, as DuckDB's does.
type UdfType = UdfTypeName | PythonUDFType
type NullHandling = NullHandlingName | FunctionNullHandling
type ExceptionHandling = ExceptionHandlingName | PythonExceptionHandling
type RetryOn = type[Exception] | tuple[type[Exception], ...]
# A parameter or return type: what DuckDB's create_function takes (a DuckDBPyType,
# a type string, a Python type), and the Python types of dates, times and UUIDs.
type TypeLike = IntoPyType | type[datetime.date | datetime.time | datetime.timedelta | uuid.UUID]


class ExportOptions(TypedDict, total=False):
    """The keyword options ``@export`` carries to ``create_function`` (all but ``pool``)."""

    type: UdfType
    null_handling: NullHandling
    exception_handling: ExceptionHandling
    side_effects: bool
    backend: BackendName
    max_workers: int | None
    fan_out: bool
    max_concurrency: int
    retries: int
    retry_backoff: float
    retry_on: RetryOn
    timeout: float | None


class FunctionOptions(ExportOptions, total=False):
    """The keyword options of ``create_function``, which ``@udf`` passes on."""

    pool: WorkerPool | None
