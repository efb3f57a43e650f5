"""``create_function``: DuckDB's registration surface, with a ``backend`` to run the UDF on."""

from __future__ import annotations

import atexit
import datetime
import inspect
import itertools
import threading
import uuid
import warnings
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import cloudpickle
import duckdb
from duckdb.sqltypes import DuckDBPyType

from duckdb_subinterp._arrow import ResultLayout, UnsupportedType, arrow_type_of, descriptor_for
from duckdb_subinterp._dispatch import BatchDispatcher
from duckdb_subinterp._errors import (
    BackendFallbackWarning,
    ModuleNotIsolatedError,
    UDFRegistrationError,
    UnsupportedTypeError,
)
from duckdb_subinterp._inline import InlinePool
from duckdb_subinterp._pool import WorkerFailure, WorkerPool
from duckdb_subinterp._processes import ProcessPool
from duckdb_subinterp._runtime import UdfSpec, describe_import_refusal, is_class_udf, resolve_reference
from duckdb_subinterp._subinterpreters import InterpreterPool

UDF_TYPES = ("native", "vectorized", "arrow")
NULL_HANDLING = ("default", "special")
EXCEPTION_HANDLING = ("default", "return_null")

_udf_ids = itertools.count(1)

# DuckDB's own methods, taken at import: code that redirects
# DuckDBPyConnection.create_function to this package (to switch a whole
# program at once) must not send our own registrations back here.
_duckdb_create_function = duckdb.DuckDBPyConnection.create_function
_duckdb_remove_function = duckdb.DuckDBPyConnection.remove_function


def _option(value: Any, allowed: Sequence[str], what: str, udf_name: str) -> str:
    """Normalize a string or one of duckdb's enums (``FunctionNullHandling.SPECIAL``...)."""
    text = value.name if hasattr(value, "name") and not isinstance(value, str) else value
    if isinstance(text, str) and text.lower() in allowed:
        return text.lower()
    raise UDFRegistrationError(f"UDF {udf_name!r}: {what}={value!r} is not one of {', '.join(map(repr, allowed))}")


# Python types DuckDBPyType() does not map itself; annotations use them.
_PYTHON_TYPE_NAMES = {
    datetime.date: "DATE",
    datetime.datetime: "TIMESTAMP",
    datetime.time: "TIME",
    datetime.timedelta: "INTERVAL",
    uuid.UUID: "UUID",
}


def _duckdb_type(value: Any, udf_name: str, what: str) -> DuckDBPyType:
    """Accept a DuckDBPyType, a type string such as "STRUCT(a INT)", or a Python type."""
    try:
        if isinstance(value, DuckDBPyType):
            return value
        if value in _PYTHON_TYPE_NAMES:
            return duckdb.sqltype(_PYTHON_TYPE_NAMES[value])
        if isinstance(value, str):
            return duckdb.sqltype(value)
        return DuckDBPyType(value)
    except Exception as error:
        raise UDFRegistrationError(
            f"UDF {udf_name!r}: {what} {value!r} is not a DuckDB type ({error}); pass a type string like "
            "'BIGINT', a duckdb.sqltypes value, or a Python type such as int"
        ) from None


def _callable_signature(function: Any) -> inspect.Signature:
    target = function.__call__ if is_class_udf(function) else function
    signature = inspect.signature(target, eval_str=True)
    if is_class_udf(function):
        # A class UDF is called as an instance: drop self.
        parameters = list(signature.parameters.values())[1:]
        signature = signature.replace(parameters=parameters)
    return signature


def _reference_of(function: Any) -> str | None:
    """Return ``"module:qualname"`` when importing it gives back ``function`` itself."""
    module = getattr(function, "__module__", None)
    qualname = getattr(function, "__qualname__", None)
    if not module or not qualname or module == "__main__" or "<" in qualname:
        return None
    reference = f"{module}:{qualname}"
    try:
        return reference if resolve_reference(reference) is function else None
    except Exception:
        return None


@dataclass(frozen=True)
class Registration:
    """A validated ``create_function`` call."""

    name: str
    function: Any
    shipped: str | bytes
    parameters: list[DuckDBPyType]
    return_type: DuckDBPyType
    varargs: bool
    type: str
    null_handling: str
    exception_handling: str
    side_effects: bool
    max_workers: int | None = None  # batches of this UDF at once, across DuckDB threads

    def spec(self) -> UdfSpec:
        """Return what a worker needs, made of shareable values only."""
        descriptors = []
        for index, parameter in enumerate(self.parameters):
            descriptors.append(self._descriptor(parameter, f"parameter {index}"))
        return UdfSpec(
            name=self.name,
            function=self.shipped,
            kind=self.type,
            arg_descriptors=tuple(descriptors),
            return_descriptor=self._descriptor(self.return_type, "return type"),
            return_type_name=str(self.return_type),
            special_nulls=self.null_handling == "special",
            errors_to_null=self.exception_handling == "return_null",
            varargs=self.varargs,
        )

    def _descriptor(self, duckdb_type: DuckDBPyType, what: str) -> tuple[Any, ...]:
        try:
            return descriptor_for(duckdb_type)
        except UnsupportedType as error:
            raise UnsupportedTypeError(f"UDF {self.name!r}: {what}: {error}") from None

    def result_layout(self) -> ResultLayout:
        """Return the buffer tree of the UDF's results."""
        try:
            return ResultLayout(descriptor_for(self.return_type), str(self.return_type))
        except UnsupportedType as error:
            raise UnsupportedTypeError(f"UDF {self.name!r}: return type: {error}") from None


def _validate(
    name: Any,
    function: Any,
    parameters: Any,
    return_type: Any,
    type: Any,
    null_handling: Any,
    exception_handling: Any,
    side_effects: Any,
) -> Registration:
    if not isinstance(name, str) or not name:
        raise UDFRegistrationError(f"name must be a non-empty str, got {name!r}")
    udf_type = _option(type, UDF_TYPES, "type", name)
    nulls = _option(null_handling, NULL_HANDLING, "null_handling", name)
    exceptions = _option(exception_handling, EXCEPTION_HANDLING, "exception_handling", name)
    if isinstance(function, str):
        if ":" not in function:
            raise UDFRegistrationError(f"UDF {name!r}: function {function!r} must be 'package.module:qualname'")
        reference = function
        try:
            function = resolve_reference(reference)
        except Exception as error:
            raise UDFRegistrationError(f"UDF {name!r}: cannot import function {reference!r}: {error!r}") from None
    elif callable(function):
        reference = _reference_of(function)
    else:
        raise UDFRegistrationError(f"UDF {name!r}: function must be a callable or 'module:qualname', got {function!r}")
    try:
        signature = _callable_signature(function)
    except (TypeError, ValueError) as error:
        raise UDFRegistrationError(f"UDF {name!r}: cannot read the function's signature: {error}") from None
    varargs = any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in signature.parameters.values())
    positional = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_POSITIONAL]
    if parameters is None:
        missing = [p.name for p in signature.parameters.values() if p.annotation is inspect.Parameter.empty]
        if missing:
            raise UDFRegistrationError(
                f"UDF {name!r}: parameters were not given and {', '.join(missing)} has no type annotation; "
                "pass parameters=[...] or annotate every parameter"
            )
        parameters = [p.annotation for p in signature.parameters.values()]
    elif not isinstance(parameters, (list, tuple)):
        raise UDFRegistrationError(f"UDF {name!r}: parameters must be a list of types, got {parameters!r}")
    if return_type is None:
        if signature.return_annotation is inspect.Signature.empty:
            raise UDFRegistrationError(f"UDF {name!r}: return_type was not given and the function has no return annotation")
        return_type = signature.return_annotation
    types = [_duckdb_type(value, name, f"parameter {index}") for index, value in enumerate(parameters)]
    expected = 1 if varargs else len(positional)
    if varargs and positional:
        raise UDFRegistrationError(f"UDF {name!r}: a varargs function must take *args only, not {signature}")
    if len(types) != expected:
        raise UDFRegistrationError(
            f"UDF {name!r}: the function takes {expected} argument(s) {signature} but {len(types)} parameter type(s) were given"
        )
    if not types:
        raise UDFRegistrationError(f"UDF {name!r}: a UDF needs at least one parameter")
    shipped: str | bytes
    if reference is not None:
        shipped = reference
    else:
        try:
            shipped = cloudpickle.dumps(function)
        except Exception as error:
            raise UDFRegistrationError(
                f"UDF {name!r}: the function is not importable by name (defined in __main__, a notebook or a "
                f"closure) and cannot be shipped by value: {error!r}; move it to a module"
            ) from None
    return Registration(
        name=name,
        function=function,
        shipped=shipped,
        parameters=types,
        return_type=_duckdb_type(return_type, name, "return_type"),
        varargs=varargs,
        type=udf_type,
        null_handling=nulls,
        exception_handling=exceptions,
        side_effects=bool(side_effects),
    )


# ---------------------------------------------------------------------------
# Backends: registered by name; differences live in the class, not the caller
# ---------------------------------------------------------------------------


class Backend:
    """How a validated registration reaches DuckDB."""

    name: ClassVar[str]
    accepts_arrow_udfs: ClassVar[bool] = False
    pool_type: ClassVar[type[WorkerPool] | None] = None

    def register(
        self, con: duckdb.DuckDBPyConnection, registration: Registration, pool: WorkerPool | None
    ) -> BatchDispatcher | None:
        """Register ``registration`` on ``con``; return the dispatcher DuckDB calls, if it is ours."""
        raise NotImplementedError


def _duckdb_register(
    con: duckdb.DuckDBPyConnection, registration: Registration, function: Any, *, arrow: bool, own_semantics: bool
) -> None:
    # Our dispatchers apply null and exception handling themselves (per row,
    # as DuckDB's native UDFs do), so DuckDB passes every row through.
    _duckdb_create_function(
        con,
        registration.name,
        function,
        registration.parameters,
        registration.return_type,
        type="arrow" if arrow else "native",
        null_handling="special" if own_semantics else registration.null_handling,
        exception_handling="default" if own_semantics else registration.exception_handling,
        side_effects=registration.side_effects,
    )


class _PooledBackend(Backend):
    """Batches go through a ``BatchDispatcher`` to workers of a pool."""

    def _pool(self, pool: WorkerPool | None) -> WorkerPool:
        return pool if pool is not None else default_pool(self.name)

    def register(
        self, con: duckdb.DuckDBPyConnection, registration: Registration, pool: WorkerPool | None
    ) -> BatchDispatcher | None:
        if registration.type == "arrow" and not self.accepts_arrow_udfs:
            raise UDFRegistrationError(
                f"UDF {registration.name!r}: type='arrow' hands pyarrow arrays to the function, and pyarrow cannot "
                f"load in the {self.name} backend; use backend='processes' or type='vectorized'"
            )
        pool = self._pool(pool)
        if pool.closed:
            raise UDFRegistrationError(f"UDF {registration.name!r}: the pool {pool!r} is closed")
        spec = registration.spec()
        layout = registration.result_layout()
        udf_id = next(_udf_ids)
        pool.register(udf_id, tuple(spec))
        try:
            self._load_once(pool, udf_id, registration.name)
        except BaseException:
            pool.unregister(udf_id)
            raise
        dispatcher = BatchDispatcher(
            registration.name,
            udf_id,
            pool,
            [arrow_type_of(str(t)) for t in registration.parameters],
            list(spec.arg_descriptors),
            layout,
            registration.varargs,
            max_workers=registration.max_workers,
        )
        weakref.finalize(dispatcher, pool.unregister, udf_id)
        _duckdb_register(con, registration, dispatcher, arrow=True, own_semantics=True)
        return dispatcher

    def _load_once(self, pool: WorkerPool, udf_id: int, name: str) -> None:
        """Load the UDF in one worker now, so import problems surface at registration."""
        try:
            with pool.lease(udf_id, name):
                pass
        except WorkerFailure as failure:
            refused = describe_import_refusal(failure.text)
            if refused is not None:
                raise ModuleNotIsolatedError(
                    f"UDF {name!r}: module {refused!r} refuses to load in a per-GIL interpreter (it does not support "
                    "subinterpreters); use backend='processes' or backend='auto' for this UDF",
                    refused,
                ) from None
            raise UDFRegistrationError(f"UDF {name!r}: cannot load the function in a worker:\n{failure.text}") from None


class InlineBackend(_PooledBackend):
    """DuckDB's own ``create_function``, in this interpreter: the serial reference."""

    name = "inline"
    accepts_arrow_udfs = True

    def _pool(self, pool: WorkerPool | None) -> WorkerPool:
        return InlinePool()

    def register(
        self, con: duckdb.DuckDBPyConnection, registration: Registration, pool: WorkerPool | None
    ) -> BatchDispatcher | None:
        if registration.type == "vectorized":
            return super().register(con, registration, pool)
        function = registration.function() if is_class_udf(registration.function) else registration.function
        _duckdb_register(con, registration, function, arrow=registration.type == "arrow", own_semantics=False)
        return None


class SubinterpreterBackend(_PooledBackend):
    """Per-GIL interpreters in this process: parallel, no copies, stdlib-only UDFs."""

    name = "subinterpreters"
    pool_type = InterpreterPool


class ProcessBackend(_PooledBackend):
    """Worker processes fed through shared memory: any package loads there, arrow UDFs included."""

    name = "processes"
    pool_type = ProcessPool
    accepts_arrow_udfs = True


class AutoBackend(Backend):
    """Per-GIL interpreters when the UDF loads in one, else worker processes (with one warning)."""

    name = "auto"

    def register(
        self, con: duckdb.DuckDBPyConnection, registration: Registration, pool: WorkerPool | None
    ) -> BatchDispatcher | None:
        if pool is not None:
            raise UDFRegistrationError(
                f"UDF {registration.name!r}: backend='auto' chooses the pool itself; pass the backend that fits "
                f"pool {pool!r} instead"
            )
        if registration.type == "arrow":
            # Not a fallback: arrow UDFs need pyarrow, which only worker processes can load.
            return ProcessBackend().register(con, registration, None)
        try:
            return SubinterpreterBackend().register(con, registration, None)
        except ModuleNotIsolatedError as refusal:
            warnings.warn(
                BackendFallbackWarning(
                    f"UDF {registration.name!r}: module {refusal.module!r} refuses to load in a per-GIL interpreter; "
                    "running the UDF on backend='processes' instead (pass backend='processes' to silence this)",
                    registration.name,
                    refusal.module,
                ),
                stacklevel=3,  # the create_function call
            )
            return ProcessBackend().register(con, registration, None)


BACKENDS: dict[str, type[Backend]] = {
    InlineBackend.name: InlineBackend,
    SubinterpreterBackend.name: SubinterpreterBackend,
    ProcessBackend.name: ProcessBackend,
    AutoBackend.name: AutoBackend,
}

_default_pools: dict[str, WorkerPool] = {}
_default_pools_lock = threading.Lock()


def default_pool(backend: str = "subinterpreters") -> WorkerPool:
    """Return the process-wide pool of ``backend``, starting it (lazily) on first use."""
    backend_type = BACKENDS.get(backend)
    if backend_type is None or backend_type.pool_type is None:
        raise ValueError(f"backend {backend!r} has no pool; choose one of {sorted(_pooled_backends())}")
    with _default_pools_lock:
        pool = _default_pools.get(backend)
        if pool is None or pool.closed:
            pool = _default_pools[backend] = backend_type.pool_type()
        return pool


def _pooled_backends() -> list[str]:
    return [name for name, backend in BACKENDS.items() if backend.pool_type is not None]


@atexit.register
def _close_default_pools() -> None:
    with _default_pools_lock:
        pools = list(_default_pools.values())
        _default_pools.clear()
    for pool in pools:
        pool.close()


# Dispatchers live as long as DuckDB keeps the UDF; this index does not extend that.
_dispatchers: weakref.WeakValueDictionary[tuple[int, str], BatchDispatcher] = weakref.WeakValueDictionary()


def create_function(
    con: duckdb.DuckDBPyConnection,
    name: str,
    function: Callable[..., Any] | str,
    parameters: Sequence[Any] | None = None,
    return_type: Any = None,
    *,
    type: Any = "native",
    null_handling: Any = "default",
    exception_handling: Any = "default",
    side_effects: bool = False,
    backend: str = "subinterpreters",
    pool: WorkerPool | None = None,
    max_workers: int | None = None,
) -> duckdb.DuckDBPyConnection:
    """Register ``function`` as a scalar UDF of ``con``, run on ``backend``.

    The same arguments as ``DuckDBPyConnection.create_function``, plus
    ``backend`` ("subinterpreters", "processes", "auto", "inline"),
    ``pool`` (defaults to a shared pool of the backend) and
    ``max_workers`` (at most that many batches of this UDF at once, across
    all DuckDB threads). ``type`` is "native" (one call per row),
    "vectorized" (one call per batch with one sequence per argument) or
    "arrow" (pyarrow arrays; not on subinterpreters).
    """
    if not isinstance(con, duckdb.DuckDBPyConnection):
        raise UDFRegistrationError(f"con must be a duckdb.DuckDBPyConnection, got {con!r}")
    backend_type = BACKENDS.get(backend) if isinstance(backend, str) else None
    if backend_type is None:
        raise UDFRegistrationError(f"UDF {name!r}: backend={backend!r} is not one of {', '.join(map(repr, BACKENDS))}")
    if pool is not None and not isinstance(pool, WorkerPool):
        raise UDFRegistrationError(f"UDF {name!r}: pool must be a pool such as InterpreterPool(), got {pool!r}")
    if pool is not None and backend_type.pool_type is not None and not isinstance(pool, backend_type.pool_type):
        raise UDFRegistrationError(
            f"UDF {name!r}: pool {pool!r} does not fit backend={backend!r}; pass a {backend_type.pool_type.__name__}"
        )
    # bool is an int, but max_workers=True is a mistake, not a cap of 1.
    bad_cap = not isinstance(max_workers, int) or isinstance(max_workers, bool) or max_workers < 1
    if max_workers is not None and bad_cap:
        raise UDFRegistrationError(
            f"UDF {name!r}: max_workers must be a positive int (or None for no cap), got {max_workers!r}"
        )
    registration = _validate(name, function, parameters, return_type, type, null_handling, exception_handling, side_effects)
    registration = replace(registration, max_workers=max_workers)
    dispatcher = backend_type().register(con, registration, pool)
    if dispatcher is not None:
        _dispatchers[(id(con), name)] = dispatcher
    else:
        _dispatchers.pop((id(con), name), None)
    return con


def remove_function(con: duckdb.DuckDBPyConnection, name: str) -> duckdb.DuckDBPyConnection:
    """Remove a UDF registered with ``create_function`` (or DuckDB's own)."""
    _duckdb_remove_function(con, name)
    dispatcher = _dispatchers.pop((id(con), name), None)
    if dispatcher is not None:
        dispatcher.pool.unregister(dispatcher.udf_id)
    return con


def udf_stats(con: duckdb.DuckDBPyConnection, name: str) -> dict[str, float]:
    """Return the counters of a UDF registered on ``con``: batches, rows, worker and wait time."""
    try:
        return _dispatchers[(id(con), name)].stats.as_dict()
    except KeyError:
        raise KeyError(f"no UDF {name!r} runs on a duckdb_subinterp pool on this connection") from None


def udf(
    con: duckdb.DuckDBPyConnection,
    name: str | None = None,
    parameters: Sequence[Any] | None = None,
    return_type: Any = None,
    **options: Any,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a function to register it on ``con``; the function is returned unchanged."""

    def register(function: Callable[..., Any]) -> Callable[..., Any]:
        create_function(con, name or function.__name__, function, parameters, return_type, **options)
        return function

    return register
