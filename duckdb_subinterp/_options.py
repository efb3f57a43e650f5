"""The values ``create_function``'s options take, as types for type checkers; and the async options' record.

Standard library only at run time: ``_export`` uses it, and the workers
(per-GIL interpreters among them) read ``AsyncOptions``. duckdb's enums are
imported for type checkers alone, and each alias is a ``type`` statement,
whose value Python evaluates only when asked. ``_registration`` checks the
values at run time; a test holds these Literals to its tuples.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, NamedTuple, TypedDict

if TYPE_CHECKING:
    import datetime
    import uuid

    from _duckdb._typing import IntoPyType
    from duckdb import PythonExceptionHandling
    from duckdb.func import FunctionNullHandling, PythonUDFType


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


class MacroExportOptions(TypedDict, total=False):
    """The keyword options ``@export_aggregate`` and ``@export_table_function`` carry.

    ``ExportOptions`` less ``type`` and ``side_effects``, which an aggregate or
    a table function (a macro over a scalar UDF of ours) cannot honour.
    """

    null_handling: NullHandling
    exception_handling: ExceptionHandling
    backend: BackendName
    max_workers: int | None
    fan_out: bool
    max_concurrency: int
    retries: int
    retry_backoff: float
    retry_on: RetryOn
    timeout: float | None


class ExportOptions(MacroExportOptions, total=False):
    """The keyword options ``@export`` carries to ``create_function`` (all but ``pool``)."""

    type: UdfType
    side_effects: bool


class AsyncOptions(NamedTuple):
    """How an ``async def`` UDF's calls run in each worker: ``create_function``'s async options, as one record.

    Made from create_function's keywords on the main side and checked at
    registration (``_registration.validation``), shipped in the UDF's spec as
    a plain tuple (what an interpreter can share), made again in the worker,
    which calls the UDF by it (``_worker.asynchronous.AsyncUdf``). Its
    defaults are create_function's.

    ``call_timeout`` is create_function's ``timeout=``: a limit on each call
    of the UDF, where a pool's ``timeout`` limits a batch on a worker and a
    wait for one.
    """

    max_concurrency: int = 32  # calls in flight at once, per worker
    retries: int = 0  # further calls after a failure in retry_on
    retry_backoff: float = 0.1  # seconds before the first retry; doubled for each further one (with jitter)
    # The exception types to retry: as create_function takes them (a type, or a
    # tuple of types), and once checked, each shipped as "module:qualname"
    # (imported in the worker) or pickled by value.
    retry_on: RetryOn | tuple[str | bytes, ...] = Exception
    call_timeout: float | None = None  # seconds per call


# create_function's keyword for each AsyncOptions field: its own name, but timeout= for call_timeout.
ASYNC_KEYWORDS = {field: "timeout" if field == "call_timeout" else field for field in AsyncOptions._fields}
