"""The public functions: ``create_function``, ``udf``, ``remove_function``, ``udf_stats``.

``create_function`` is DuckDB's registration surface, with a ``backend`` to
run the UDF on: it checks the call (``validation``), has the backend make
what DuckDB calls (``backends``), registers that with DuckDB through a
catalog entry, and records the entry with the connection (``connections``),
along with a recipe that sets the registration up again if DuckDB calls the
UDF after the registering connection object is gone.
"""

from __future__ import annotations

import functools
import sys
import weakref
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, NamedTuple, Unpack, cast

import duckdb
from duckdb.func import FunctionNullHandling, PythonUDFType

from duckdb_subinterp._engine.arrow import duckdb_create_function, duckdb_remove_function
from duckdb_subinterp._engine.pool import WorkerPool
from duckdb_subinterp._errors import UDFRegistrationError
from duckdb_subinterp._options import (
    AsyncOptions,
    BackendName,
    ExceptionHandling,
    ExportOptions,
    NullHandling,
    RetryOn,
    TypeLike,
    UdfType,
)
from duckdb_subinterp._registration import connections
from duckdb_subinterp._registration.backends import BACKENDS, AutoBackend
from duckdb_subinterp._registration.connections import CatalogEntry, FunctionGone, Prepared
from duckdb_subinterp._registration.validation import Registration, async_options, validate

if TYPE_CHECKING:
    from _duckdb._typing import IntoPyType


class FunctionOptions(ExportOptions, total=False):
    """The keyword options of ``create_function``, which ``@udf`` passes on."""

    pool: WorkerPool | None


# DuckDB's enums of the option values validate normalized, as its create_function takes them.
_DUCKDB_NULL_HANDLING = {"default": FunctionNullHandling.DEFAULT, "special": FunctionNullHandling.SPECIAL}
_DUCKDB_EXCEPTION_HANDLING = {
    "default": duckdb.PythonExceptionHandling.DEFAULT,
    "return_null": duckdb.PythonExceptionHandling.RETURN_NULL,
}


def _duckdb_register(
    con: duckdb.DuckDBPyConnection, registration: Registration, entry: CatalogEntry, prepared: Prepared
) -> None:
    # The parameters go as given (DuckDB then reads no annotation), else
    # DuckDB reads them from the entry's signature, which is the function's
    # (DuckDB's own machinery) or mirrors it (ours): ANY parameters and *args stay ANY.
    entry.__signature__ = prepared.signature
    parameters = registration.parameters if registration.explicit_parameters else None
    duckdb_create_function(
        con,
        registration.name,
        entry,
        cast("list[IntoPyType] | None", parameters),  # given ones are all types: validate resolved them
        registration.return_type,
        type=PythonUDFType.ARROW if prepared.arrow else PythonUDFType.NATIVE,
        null_handling=_DUCKDB_NULL_HANDLING[prepared.null_handling],
        exception_handling=_DUCKDB_EXCEPTION_HANDLING[prepared.exception_handling],
        side_effects=registration.side_effects,
    )
    del entry.__signature__  # read once, at registration: a released entry keeps as little as it can


def create_function(
    con: duckdb.DuckDBPyConnection,
    name: str,
    function: Callable[..., Any] | str,
    parameters: Sequence[TypeLike] | None = None,
    return_type: TypeLike | None = None,
    *,
    type: UdfType = "native",
    null_handling: NullHandling = "default",
    exception_handling: ExceptionHandling = "default",
    side_effects: bool = False,
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
    """Register ``function`` as a scalar UDF of ``con``, run on ``backend``.

    The same arguments as ``DuckDBPyConnection.create_function``, read as
    DuckDB reads them, plus where the function runs. An ``async def``
    function (or a class whose ``__call__`` is one) has the rows of each
    batch awaited concurrently on each worker's event loop.

    Args:
        con: The connection to register on; the UDF lands in its database's catalog, as DuckDB's own does.
        name: The UDF's name in SQL.
        function: A function, a class whose instances are the UDF (``__init__`` runs once per worker), a
            callable instance, or a ``"module:qualname"`` string to import.
        parameters: One type per parameter: a type string (``"BIGINT"``), a ``duckdb.sqltypes`` value or a
            Python type. None reads the annotations; an unannotated parameter is ANY.
        return_type: The result's type, as for ``parameters``; None reads the return annotation.
        type: ``"native"`` (one call per row), ``"vectorized"`` (one call per batch, one sequence per
            argument) or ``"arrow"`` (pyarrow arrays; not on subinterpreters); or DuckDB's ``PythonUDFType``.
        null_handling: ``"default"`` (a row with a NULL argument is NULL, without a call) or ``"special"``
            (the function gets None); or DuckDB's ``FunctionNullHandling``.
        exception_handling: ``"default"`` (the query fails) or ``"return_null"`` (the row is NULL); or
            DuckDB's ``PythonExceptionHandling``.
        side_effects: As DuckDB's: the function may return something else for the same arguments.
        backend: ``"subinterpreters"``, ``"processes"``, ``"ray"``, ``"auto"`` (interpreters where the
            function loads in one, else processes, with a warning) or ``"inline"`` (DuckDB's own machinery).
        pool: The pool to run on; None for the backend's shared pool (``default_pool``).
        max_workers: At most that many batches of this UDF at once, across all DuckDB threads; None: no cap.
        fan_out: False runs every batch whole, in one call of a vectorized function, never cut into slices
            for idle workers (a metered or rate-limited service, where the number of calls matters).
        max_concurrency: An async UDF's calls in flight at once, per worker.
        retries: How many times an async UDF's call that raised one of ``retry_on`` is called again.
        retry_backoff: Seconds before the first retry, doubled for each further one (with jitter).
        retry_on: The exception type, or tuple of types, an async UDF's call is retried on.
        timeout: Seconds each call of an async UDF may take; a longer one raises TimeoutError (a failure
            like any other). Not the pool's ``timeout``, which bounds a whole batch.

    Returns:
        ``con``, as DuckDB's ``create_function`` returns it.

    Raises:
        UDFRegistrationError: An argument cannot be taken; the message names it, the value and the fix.
            Its subclasses say more: ``UnsupportedTypeError`` (a type the backend cannot carry),
            ``ModuleNotIsolatedError`` (the code imports a module that refuses per-GIL interpreters),
            ``BackendUnavailableError`` (ray not installed, or not connected).
        TypeError: ``function`` is neither a callable nor a ``"module:qualname"`` string.

    Example:
        ```python
        import duckdb
        import duckdb_subinterp

        def slugify(text: str) -> str:
            return "-".join(text.lower().split())

        con = duckdb.connect()
        duckdb_subinterp.create_function(con, "slugify", slugify)  # was: con.create_function(...)
        con.sql("SELECT slugify('Hello World')").fetchall()  # [('hello-world',)]
        ```
    """
    if not isinstance(con, duckdb.DuckDBPyConnection):
        raise UDFRegistrationError(f"con must be a duckdb.DuckDBPyConnection, got {con!r}")
    backend_type = BACKENDS.get(backend) if isinstance(backend, str) else None
    if backend_type is None:
        raise UDFRegistrationError(f"UDF {name!r}: backend={backend!r} is not one of {', '.join(map(repr, BACKENDS))}")
    if pool is not None and not isinstance(pool, WorkerPool):
        raise UDFRegistrationError(f"UDF {name!r}: pool must be a pool such as InterpreterPool(), got {pool!r}")
    if pool is not None and backend_type.pool_type is not None and not isinstance(pool, backend_type.pool_type):
        fits = [other for other, kind in BACKENDS.items() if kind.pool_type and isinstance(pool, kind.pool_type)]
        instead = f", or backend={fits[0]!r} for this pool" if fits else ""
        raise UDFRegistrationError(
            f"UDF {name!r}: pool {pool!r} does not fit backend={backend!r}; "
            f"pass {_a(backend_type.pool_type.__name__)}{instead}"
        )
    # bool is an int, but max_workers=True is a mistake, not a cap of 1.
    bad_cap = not isinstance(max_workers, int) or isinstance(max_workers, bool) or max_workers < 1
    if max_workers is not None and bad_cap:
        raise UDFRegistrationError(
            f"UDF {name!r}: max_workers must be a positive int (or None for no cap), got {max_workers!r}"
        )
    if not isinstance(fan_out, bool):
        raise UDFRegistrationError(f"UDF {name!r}: fan_out must be True or False, got {fan_out!r}")
    # timeout= of an async def UDF is a limit per call (AsyncOptions.call_timeout), not the pool's.
    options = AsyncOptions(max_concurrency, retries, retry_backoff, retry_on, call_timeout=timeout)
    registration = validate(
        name, function, parameters, return_type, type, null_handling, exception_handling, side_effects
    )
    asynchronous = async_options(registration, options)
    registration = replace(registration, max_workers=max_workers, fan_out=fan_out, asynchronous=asynchronous)
    prepared = backend_type().prepare(registration, pool)
    entry = CatalogEntry.create(name, prepared, None)
    entry.recipe = _recipe(entry, function, parameters, return_type, options, pool, prepared.backend, registration)
    _duckdb_register(con, registration, entry, prepared)
    connections.add(con, entry)
    if backend_type is AutoBackend:
        AutoBackend.watch_imports(entry, registration)
    return con


class _Recipe(NamedTuple):
    """A registration's arguments, to set it up again (see ``connections``); the function and pool held weakly."""

    name: str
    function: Callable[[], Any]  # returns the function, or None once it was collected
    parameters: Any
    return_type: Any
    type: Any
    null_handling: Any
    exception_handling: Any
    side_effects: Any
    max_workers: int | None
    fan_out: bool
    options: AsyncOptions  # as create_function was given them
    pool: weakref.ReferenceType[WorkerPool] | None  # None: the backend's default pool
    backend: str  # the one that took it first (backend="auto" chose one)

    def __call__(self) -> Prepared:
        function = self.function()
        pool = self.pool() if self.pool is not None else None
        if function is None:
            raise FunctionGone
        if self.pool is not None and pool is None:
            raise UDFRegistrationError(
                f"UDF {self.name!r}: the pool it was registered on was garbage-collected after the connection "
                "object that registered it; keep the pool, or register the UDF again on the connection you query from"
            )
        registration = validate(
            self.name,
            function,
            self.parameters,
            self.return_type,
            self.type,
            self.null_handling,
            self.exception_handling,
            self.side_effects,
        )
        asynchronous = async_options(registration, self.options)
        registration = replace(
            registration, max_workers=self.max_workers, fan_out=self.fan_out, asynchronous=asynchronous
        )
        return BACKENDS[cast(BackendName, self.backend)]().prepare(registration, pool)


# Recipes of functions that live as long as their module, shared by every
# registration of the same UDF: registering it on a connection per request
# then keeps nothing more per connection than its entry.
_shared_recipes: dict[_Recipe, _Recipe] = {}


def _recipe(
    entry: CatalogEntry,
    function: Any,
    parameters: Any,
    return_type: Any,
    options: AsyncOptions,
    pool: WorkerPool | None,
    backend: str,
    registration: Registration,
) -> _Recipe:
    """Return the recipe that sets ``entry``'s registration up again: shared where it can be (see above)."""
    if isinstance(parameters, list):
        parameters = tuple(parameters)
    arguments = (
        parameters,
        return_type,
        registration.type,
        registration.null_handling,
        registration.exception_handling,
        registration.side_effects,
        registration.max_workers,
        registration.fan_out,
        options,
        None if pool is None else weakref.ref(pool),
        backend,
    )
    if isinstance(function, str) or _lives_with_its_module(function):
        recipe = _Recipe(entry.name, _held_weakly(function), *arguments)
        try:
            return _shared_recipes.setdefault(recipe, recipe)
        except TypeError:  # an unhashable argument (a DuckDB type object, say): not shared
            return recipe
    # A lambda or closure: once it is collected, the entry keeps its name only.
    forget = functools.partial(_forget_recipe, entry)
    try:
        reference: Callable[[], Any] = weakref.ref(function, forget)
    except TypeError:  # a builtin or an object without __weakref__: kept, as DuckDB keeps it
        reference = functools.partial(_same, function)
    return _Recipe(entry.name, reference, *arguments)


def _forget_recipe(entry: CatalogEntry, reference: object) -> None:
    entry.recipe = None


def _lives_with_its_module(function: Any) -> bool:
    """Tell whether ``function`` is a top-level name of its module (``__main__`` included), as it is there now."""
    module = sys.modules.get(getattr(function, "__module__", None) or "")
    qualname = getattr(function, "__qualname__", "")
    return module is not None and "." not in qualname and getattr(module, qualname, None) is function


def _held_weakly(function: Any) -> Callable[[], Any]:
    """Return a callable giving ``function`` back while it lives: DuckDB's own UDF needs it alive too."""
    if isinstance(function, str):  # "module:qualname": imported again
        return functools.partial(_same, function)
    try:
        return weakref.ref(function)  # one shared reference object per function
    except TypeError:
        return functools.partial(_same, function)


def _same(value: Any) -> Any:
    return value


def remove_function(con: duckdb.DuckDBPyConnection, name: str) -> duckdb.DuckDBPyConnection:
    """Remove a UDF registered with ``create_function`` (or DuckDB's own), an aggregate or a table function.

    A query already running keeps calling it until it ends, as with DuckDB's own.
    An aggregate's or table function's macro goes first, then the scalar UDF behind it.

    Args:
        con: The connection it was registered on.
        name: The UDF's (aggregate's, table function's) name.

    Returns:
        ``con``, as DuckDB's ``remove_function`` returns it.

    Raises:
        duckdb.InvalidInputException: No UDF of that name is registered (DuckDB's own error).

    Example:
        ```python
        duckdb_subinterp.remove_function(con, "slugify")
        ```
    """
    scalar = connections.drop_macro(con, name)
    if scalar is not None:
        name = scalar
    duckdb_remove_function(con, name)
    connections.remove(con, name)
    return con


def udf_stats(con: duckdb.DuckDBPyConnection, name: str) -> dict[str, float]:
    """Return the counters of a UDF (aggregate, table function) registered on ``con``: batches, rows, worker time.

    An aggregate's rows are its groups; a table function's, its input rows.

    Args:
        con: The connection it was registered on.
        name: The UDF's (aggregate's, table function's) name.

    Returns:
        ``batches``, ``rows``, ``slices``, ``fanned_batches``, ``worker_seconds``, ``wait_seconds``,
        ``elapsed_seconds`` and ``parallelism`` (worker time over elapsed time); where its batches ran
        (``in_thread_batches``: in the calling DuckDB thread, under ``backend="auto"``); what a call costs
        on a worker as the dispatcher learned it (``per_call_seconds`` + ``per_row_seconds`` x rows, 0
        until a batch ran on the pool); an async UDF's also ``calls``, ``retries``, ``timeouts`` and
        ``peak_concurrency``.

    Raises:
        KeyError: No UDF of that name runs on a pool of this package on ``con`` (DuckDB's own, or
            ``backend="inline"`` for native and arrow UDFs, keep no counters).

    Example:
        ```python
        con.sql("SELECT slugify(x) FROM names").fetchall()
        print(duckdb_subinterp.udf_stats(con, "slugify")["parallelism"])
        ```
    """
    dispatcher = _dispatcher(con, connections.scalar_name(con, name))
    dispatcher.drain_settled()
    counters = dispatcher.stats.as_dict()
    per_call, per_row, _ = dispatcher.costs.fit()
    counters.update(per_call_seconds=per_call, per_row_seconds=per_row)
    return counters


_dispatcher = connections.dispatcher


def udf[Function: Callable[..., Any]](
    con: duckdb.DuckDBPyConnection,
    name: str | None = None,
    parameters: Sequence[TypeLike] | None = None,
    return_type: TypeLike | None = None,
    **options: Unpack[FunctionOptions],
) -> Callable[[Function], Function]:
    """Decorate a function to register it on ``con``; the function is returned unchanged.

    Args:
        con: The connection to register on.
        name: The UDF's name in SQL; None for the function's own name.
        parameters: As for ``create_function``.
        return_type: As for ``create_function``.
        **options: ``create_function``'s keyword options (``type``, ``backend``, ``pool``...).

    Returns:
        The decorator.

    Raises:
        UDFRegistrationError: As ``create_function``, when the decorator is applied.

    Example:
        ```python
        @duckdb_subinterp.udf(con, backend="processes")
        def shout(text: str) -> str:
            return text.upper()
        ```
    """

    def register(function: Function) -> Function:
        create_function(con, name or function.__name__, function, parameters, return_type, **options)
        return function

    return register


def _a(noun: str) -> str:
    """Return ``noun`` after its article: "an InterpreterPool", "a ProcessPool"."""
    return f"{'an' if noun[:1] in 'AEIOU' else 'a'} {noun}"
