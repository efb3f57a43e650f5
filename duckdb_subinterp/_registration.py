"""``create_function``: DuckDB's registration surface, with a ``backend`` to run the UDF on."""

from __future__ import annotations

import atexit
import datetime
import functools
import hashlib
import inspect
import io
import itertools
import math
import os
import sys
import sysconfig
import threading
import tokenize
import types
import uuid
import warnings
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, Unpack, cast

import cloudpickle
import duckdb
from duckdb.func import FunctionNullHandling, PythonUDFType
from duckdb.sqltypes import DuckDBPyType

from duckdb_subinterp import _connections
from duckdb_subinterp._arrow import (
    ArgumentPlan,
    ResultLayout,
    UnsupportedType,
    argument_plan,
    arrow_type_of,
    descriptor_for,
    duckdb_create_function,
    duckdb_remove_function,
    loses_in_arrow,
)
from duckdb_subinterp._connections import CatalogEntry, FunctionGone, Prepared
from duckdb_subinterp._dispatch import BatchDispatcher
from duckdb_subinterp._errors import (
    BackendFallbackWarning,
    ModuleChangedWarning,
    ModuleNotIsolatedError,
    NotCallableError,
    UDFRegistrationError,
    UnsupportedTypeError,
)
from duckdb_subinterp._inline import InlinePool
from duckdb_subinterp._options import (
    BackendName,
    ExceptionHandling,
    FunctionOptions,
    NullHandling,
    RetryOn,
    TypeLike,
    UdfType,
)
from duckdb_subinterp._pool import WorkerFailure, WorkerPool
from duckdb_subinterp._processes import ProcessPool
from duckdb_subinterp._ray import RayPool
from duckdb_subinterp._runtime import (
    UdfSpec,
    describe_import_refusal,
    is_class_udf,
    resolve_reference,
    source_digest,
    warn_if_codec_not_compiled,
)
from duckdb_subinterp._subinterpreters import InterpreterPool

if TYPE_CHECKING:
    from _duckdb._typing import IntoPyType

UDF_TYPES = ("native", "vectorized", "arrow")
NULL_HANDLING = ("default", "special")
EXCEPTION_HANDLING = ("default", "return_null")
# The options of async def UDFs, and their defaults (create_function's signature says the same).
ASYNC_DEFAULTS: dict[str, Any] = {
    "max_concurrency": 32,
    "retries": 0,
    "retry_backoff": 0.1,
    "retry_on": Exception,
    "timeout": None,
}

_udf_ids = itertools.count(1)


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
        return _as_duckdb_type(value)
    except Exception as error:
        raise UDFRegistrationError(
            f"UDF {udf_name!r}: {what} {value!r} is not a DuckDB type ({error}); pass a type string like "
            "'BIGINT', a duckdb.sqltypes value, or a Python type such as int"
        ) from None


def _as_duckdb_type(value: Any) -> DuckDBPyType:
    if isinstance(value, DuckDBPyType):
        return value
    if isinstance(value, type) and value in _PYTHON_TYPE_NAMES:
        return duckdb.sqltype(_PYTHON_TYPE_NAMES[value])
    if isinstance(value, str):
        return duckdb.sqltype(value)
    return DuckDBPyType(value)


def _annotation_type(annotation: Any) -> DuckDBPyType | None:
    """Return the DuckDB type an annotation names, or None (DuckDB's ANY) where it names none."""
    if annotation is inspect.Parameter.empty or annotation is None:
        return None
    try:
        return _as_duckdb_type(annotation)
    except Exception:
        return None


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


class _UdfPickler(cloudpickle.Pickler):  # type: ignore[misc]  # cloudpickle ships no types: its Pickler is Any
    """cloudpickle, with DuckDB types (annotations, defaults, constants) shipped as their names.

    A worker never needs a DuckDBPyType (types are resolved here, at
    registration), cannot unpickle one where duckdb does not load, and
    pickle refuses them anyway: ``def f(x: BIGINT) -> BIGINT`` in a
    notebook would otherwise be refused.
    """

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, DuckDBPyType):
            return str, (str(obj),)
        return super().reducer_override(obj)


_by_value_lock = threading.Lock()


def _pickled(function: Any, *, module: str | None = None) -> bytes:
    """Pickle ``function`` by value; with ``module``, that module's functions too (not imported by name)."""
    buffer = io.BytesIO()
    if module is None or module not in sys.modules:
        _UdfPickler(buffer, protocol=5).dump(function)
        return buffer.getvalue()
    with _by_value_lock:
        # cloudpickle's own switch, on only while this function is pickled.
        cloudpickle.register_pickle_by_value(sys.modules[module])
        try:
            _UdfPickler(buffer, protocol=5).dump(function)
        finally:
            cloudpickle.unregister_pickle_by_value(sys.modules[module])
    return buffer.getvalue()


# Modules imported by name in the workers, never pinned to their source:
# the standard library and installed packages change only with an install.
_INSTALLED_PREFIXES = tuple(
    str(Path(path).resolve()) + os.sep
    for key in ("stdlib", "platstdlib", "purelib", "platlib")
    if (path := sysconfig.get_paths().get(key))
)
_PACKAGE_DIR = str(Path(__file__).resolve().parent) + os.sep


class _ModuleChanged(Exception):
    """The UDF's module file no longer holds the code this interpreter runs."""


def _module_source(function: Any, reference: str) -> tuple[str, str, str, str, bool] | None:
    """Return the UDF's own module as this interpreter has it now: (name, file, source, digest, is package).

    None where the module is imported by name in the workers instead (the
    standard library, installed packages, this package, modules without a
    .py file). Raises ``_ModuleChanged`` where the file on disk no longer
    holds the code of ``function`` (edited since it was imported).
    """
    module_name = reference.partition(":")[0]
    module = sys.modules.get(module_name)
    filename = getattr(module, "__file__", None)
    if not isinstance(filename, str) or not filename.endswith(".py"):
        return None
    resolved = str(Path(filename).resolve())
    if resolved.startswith(_INSTALLED_PREFIXES) or resolved.startswith(_PACKAGE_DIR):
        return None
    try:
        with tokenize.open(filename) as file:  # honours the file's coding declaration
            source = file.read()
        code = compile(source, filename, "exec", dont_inherit=True)
    except (OSError, SyntaxError, ValueError) as error:
        raise _ModuleChanged(f"its file cannot be read or compiled now ({error})") from None
    compiled = _code_by_qualname(code)
    for own in _code_objects(function):
        other = compiled.get(own.co_qualname)
        if other is None or not _same_code(own, other):
            raise _ModuleChanged(f"{own.co_qualname} differs in the file on disk")
    is_package = getattr(module, "__path__", None) is not None
    return (module_name, filename, source, source_digest(source), is_package)


def _is_user_module(name: str) -> bool:
    """Tell whether module ``name`` is the user's own .py file (not __main__, the standard library or a package)."""
    filename = getattr(sys.modules.get(name), "__file__", None)
    if name == "__main__" or not isinstance(filename, str) or not filename.endswith(".py"):
        return False
    resolved = str(Path(filename).resolve())
    return not resolved.startswith(_INSTALLED_PREFIXES) and not resolved.startswith(_PACKAGE_DIR)


def _code_objects(target: Any) -> list[types.CodeType]:
    """Return the code objects a UDF runs: a function's, or the methods of a class (or of an instance's class)."""
    if isinstance(target, types.FunctionType):
        return [target.__code__]
    klass = target if isinstance(target, type) else type(target)
    return [value.__code__ for value in vars(klass).values() if isinstance(value, types.FunctionType)]


def _code_by_qualname(code: types.CodeType) -> dict[str, types.CodeType]:
    found = {code.co_qualname: code}
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            found.update(_code_by_qualname(constant))
    return found


def _same_code(first: types.CodeType, second: types.CodeType) -> bool:
    """Tell whether two code objects run the same bytecode on the same names and constants (lines aside)."""
    if (first.co_code, first.co_names, first.co_varnames) != (second.co_code, second.co_names, second.co_varnames):
        return False
    if len(first.co_consts) != len(second.co_consts):
        return False
    for one, other in zip(first.co_consts, second.co_consts, strict=True):
        if isinstance(one, types.CodeType):
            if not isinstance(other, types.CodeType) or not _same_code(one, other):
                return False
        elif type(one) is not type(other) or (one != other and repr(one) != repr(other)):
            return False
    return True


@dataclass(frozen=True)
class Registration:
    """A validated ``create_function`` call."""

    name: str
    function: Any
    # "module:qualname" or pickled bytes; the inline backend gives its Runtime the function itself.
    shipped: str | bytes | Callable[..., Any]
    parameters: list[DuckDBPyType | None]  # None: DuckDB's ANY, typed by each call site
    explicit_parameters: bool  # the caller passed parameters=[...] (DuckDB then reads no annotation)
    return_type: DuckDBPyType
    varargs: bool  # DuckDB passes any number of further arguments, each of ANY type
    type: str
    null_handling: str
    exception_handling: str
    side_effects: bool
    max_workers: int | None = None  # batches of this UDF at once, across DuckDB threads
    module_source: tuple[str, str, str, str, bool] | None = None
    asynchronous: tuple[Any, ...] | None = None  # an async def UDF's _async.AsyncOptions, as a plain tuple

    @property
    def typed_per_batch(self) -> bool:
        """Tell whether a batch's argument types come from the batch (an ANY parameter, or varargs)."""
        return self.varargs or None in self.parameters

    def spec(self) -> UdfSpec:
        """Return what a worker needs, made of shareable values only."""
        descriptors = []
        for index, parameter in enumerate(self.parameters):
            descriptors.append(None if parameter is None else self._descriptor(parameter, f"parameter {index}"))
        return UdfSpec(
            name=self.name,
            function=self.shipped,
            kind=self.type,
            arg_descriptors=tuple(descriptors),
            return_descriptor=self._descriptor(self.return_type, "return type"),
            return_type_name=str(self.return_type),
            special_nulls=self.null_handling == "special",
            errors_to_null=self.exception_handling == "return_null",
            varargs=self.typed_per_batch,
            module_source=self.module_source,
            path=tuple(sys.path),
            asynchronous=self.asynchronous,
        )

    def _descriptor(self, duckdb_type: DuckDBPyType, what: str) -> tuple[Any, ...]:
        try:
            return descriptor_for(duckdb_type)
        except UnsupportedType as error:
            raise UnsupportedTypeError(f"UDF {self.name!r}: {what}: {error}") from None

    def argument_plans(self) -> list[ArgumentPlan | None]:
        """Return how each declared parameter's batches are read; None for an ANY parameter."""
        plans: list[ArgumentPlan | None] = []
        for index, parameter in enumerate(self.parameters):
            try:
                plans.append(None if parameter is None else argument_plan(parameter))
            except UnsupportedType as error:
                raise UnsupportedTypeError(f"UDF {self.name!r}: parameter {index}: {error}") from None
        return plans

    def result_layout(self) -> ResultLayout:
        """Return the buffer tree of the UDF's results."""
        try:
            arrow_type_of(str(self.return_type))  # refuses what cannot travel as Arrow
            return ResultLayout(descriptor_for(self.return_type), str(self.return_type))
        except UnsupportedType as error:
            raise UnsupportedTypeError(f"UDF {self.name!r}: return type: {error}") from None

    def version(self) -> str:
        """Return a token of the code the workers load: the same token, the same code."""
        if self.module_source is not None:  # then shipped is the reference
            return f"{cast(str, self.shipped)}@{self.module_source[3]}"
        if isinstance(self.shipped, bytes):
            return hashlib.sha256(self.shipped).hexdigest()
        # A reference: only the inline backend's copy holds the function itself, and nothing asks its version.
        return cast(str, self.shipped)


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
    """Read the function's signature as DuckDB's ``create_function`` does, then decide how to ship it.

    As in DuckDB: an annotation that names a type gives the parameter's type,
    any other (or none) makes it ANY; an unannotated ``*args`` takes any
    number of further arguments of ANY type; ``parameters`` overrides every
    parameter's type, one type per parameter of the signature, ``*args``
    included; the return type is ``return_type`` or the return annotation.
    """
    if not isinstance(name, str) or not name:
        raise UDFRegistrationError(f"name must be a non-empty str, got {name!r}")
    udf_type = _option(type, UDF_TYPES, "type", name)
    nulls = _option(null_handling, NULL_HANDLING, "null_handling", name)
    exceptions = _option(exception_handling, EXCEPTION_HANDLING, "exception_handling", name)
    if isinstance(function, str):
        if ":" not in function:
            raise UDFRegistrationError(f"UDF {name!r}: function {function!r} must be 'package.module:qualname'")
        reference: str | None = function
        try:
            function = resolve_reference(function)
        except Exception as error:
            raise UDFRegistrationError(f"UDF {name!r}: cannot import function {reference!r}: {error!r}") from None
    elif callable(function):
        reference = _reference_of(function)
    else:
        raise NotCallableError(
            f"UDF {name!r}: function must be a callable or a 'package.module:qualname' string, got {function!r}"
        )
    try:
        signature = _callable_signature(function)
    except (TypeError, ValueError, NameError, SyntaxError) as error:
        raise UDFRegistrationError(f"UDF {name!r}: cannot read the function's signature: {error!r}") from None
    annotated = [_annotation_type(p.annotation) for p in signature.parameters.values()]
    varargs = any(
        p.kind is inspect.Parameter.VAR_POSITIONAL and declared is None
        for p, declared in zip(signature.parameters.values(), annotated, strict=True)
    )
    if parameters is None:
        types: list[DuckDBPyType | None] = annotated
    elif isinstance(parameters, (list, tuple)):
        if len(parameters) != len(annotated):
            raise UDFRegistrationError(
                f"UDF {name!r}: {len(parameters)} types provided, but the provided function takes {len(annotated)} "
                f"parameters {signature}; give one type per parameter (*args counts as one)"
            )
        types = [_duckdb_type(value, name, f"parameter {index}") for index, value in enumerate(parameters)]
    else:
        raise UDFRegistrationError(f"UDF {name!r}: parameters must be a list of types, got {parameters!r}")
    if return_type is None:
        return_type = _annotation_type(signature.return_annotation)
        if return_type is None:
            raise UDFRegistrationError(
                f"UDF {name!r}: could not infer the return type: pass return_type=... or annotate the function's "
                "return with a DuckDB type"
            )
    module_source = None
    shipped: str | bytes | None = reference
    by_value_module = None
    if reference is not None:
        try:
            module_source = _module_source(function, reference)
        except _ModuleChanged as change:
            module_name = reference.partition(":")[0]
            warnings.warn(
                ModuleChangedWarning(
                    f"UDF {name!r}: module {module_name!r} changed since it was imported ({change}); the UDF runs the "
                    f"code this interpreter has, shipped by value; importlib.reload({module_name}) and register it "
                    "again to run the new code"
                ),
                stacklevel=3,  # the create_function call
            )
            shipped, by_value_module = None, module_name
    if shipped is None:
        try:
            shipped = _pickled(function, module=by_value_module)
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
        explicit_parameters=parameters is not None,
        return_type=_duckdb_type(return_type, name, "return_type"),
        varargs=varargs,
        type=udf_type,
        null_handling=nulls,
        exception_handling=exceptions,
        side_effects=bool(side_effects),
        module_source=module_source,
    )


# ---------------------------------------------------------------------------
# Backends: registered by name; differences live in the class, not the caller
# ---------------------------------------------------------------------------


class Backend:
    """How a validated registration reaches DuckDB."""

    name: ClassVar[BackendName]
    accepts_arrow_udfs: ClassVar[bool] = False
    pool_type: ClassVar[type[WorkerPool] | None] = None
    # Its pool needs a connection the user makes (ray.init()): the demo and
    # the benchmark, which make their own pools, leave it out.
    needs_cluster: ClassVar[bool] = False

    def prepare(self, registration: Registration, pool: WorkerPool | None) -> Prepared:
        """Return what DuckDB is to call for ``registration``, and how."""
        raise NotImplementedError


# DuckDB's enums of the option values _validate normalized, as its create_function takes them.
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
        cast("list[IntoPyType] | None", parameters),  # given ones are all types: _validate resolved them
        registration.return_type,
        type=PythonUDFType.ARROW if prepared.arrow else PythonUDFType.NATIVE,
        null_handling=_DUCKDB_NULL_HANDLING[prepared.null_handling],
        exception_handling=_DUCKDB_EXCEPTION_HANDLING[prepared.exception_handling],
        side_effects=registration.side_effects,
    )
    del entry.__signature__  # read once, at registration: a released entry keeps as little as it can


def _duckdb_signature(target: Any) -> inspect.Signature:
    """Return the signature DuckDB reads from ``target`` (string annotations evaluated where they can be)."""
    try:
        return inspect.signature(target, eval_str=True)
    except Exception:
        return inspect.signature(target)


class _PooledBackend(Backend):
    """Batches go through a ``BatchDispatcher`` to workers of a pool."""

    def _pool(self, pool: WorkerPool | None) -> WorkerPool:
        return pool if pool is not None else default_pool(self.name)

    def prepare(self, registration: Registration, pool: WorkerPool | None) -> Prepared:
        if registration.type == "arrow" and not self.accepts_arrow_udfs:
            raise UDFRegistrationError(
                f"UDF {registration.name!r}: type='arrow' hands pyarrow arrays to the function, and pyarrow cannot "
                f"load in the {self.name} backend; use backend='processes' or type='vectorized'"
            )
        pool = self._pool(pool)
        warn_if_codec_not_compiled()
        if pool.closed:
            raise UDFRegistrationError(f"UDF {registration.name!r}: the pool {pool!r} is closed")
        spec = registration.spec()
        # DuckDB's Arrow export drops a TIMETZ's offset: a UDF with such a parameter gets its arguments
        # from DuckDB's own conversion, a row a call, and DuckDB applies its own NULL and exception
        # handling to what the worker returns, as for its own UDFs (the worker just calls).
        by_row = registration.type != "arrow" and any(
            parameter is not None and loses_in_arrow(parameter) for parameter in registration.parameters
        )
        if by_row:
            spec = spec._replace(special_nulls=True, errors_to_null=False)
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
            registration.argument_plans(),
            registration.varargs,
            layout,
            registration.return_type,
            kind=registration.type,
            max_workers=registration.max_workers,
            asynchronous=registration.asynchronous is not None,
        )
        weakref.finalize(dispatcher, pool.unregister, udf_id)
        signature = _signature_for_duckdb(registration)
        if by_row:
            nulls, exceptions = registration.null_handling, registration.exception_handling
            return Prepared(dispatcher.call_row, False, nulls, exceptions, dispatcher, signature, self.name)
        if not registration.parameters and registration.type == "native":
            # DuckDB calls a native UDF without arguments once per row and says
            # how many rows only that way: each call runs one row in a worker.
            return Prepared(dispatcher.call_row, False, "special", "default", dispatcher, signature, self.name)
        if not registration.parameters:
            # A batch UDF without arguments learns no row count from DuckDB,
            # which checks the result's length itself and, under
            # exception_handling='return_null', makes its NULLs.
            return Prepared(
                dispatcher, True, "special", registration.exception_handling, dispatcher, signature, self.name
            )
        if registration.type == "arrow":
            # DuckDB itself leaves NULL rows out (null_handling='default'),
            # checks the result's length and NULLs, and casts it, as it does
            # for its own arrow UDFs; exceptions become NULLs in the worker,
            # which then also leaves NULL rows out itself (see compute_arrow).
            errors_to_null = registration.exception_handling == "return_null"
            nulls = "special" if errors_to_null else registration.null_handling
            return Prepared(dispatcher, True, nulls, "default", dispatcher, signature, self.name)
        # Native and vectorized UDFs apply null and exception handling in
        # the worker (per row, as DuckDB's native UDFs do), so DuckDB
        # passes every row through.
        return Prepared(dispatcher, True, "special", "default", dispatcher, signature, self.name)

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


def _is_coroutine_udf(function: Any) -> bool:
    """Tell whether calling ``function`` gives a coroutine: an async def, or a class or instance whose call is one."""
    if is_class_udf(function):
        return inspect.iscoroutinefunction(function.__call__)
    if inspect.iscoroutinefunction(function):  # also a functools.partial or bound method of one
        return True
    if isinstance(function, (types.FunctionType, types.MethodType, types.BuiltinFunctionType, type)):
        return False
    return inspect.iscoroutinefunction(type(function).__call__)


def _async_options(registration: Registration, options: dict[str, Any]) -> tuple[Any, ...] | None:
    """Validate the async options of create_function; return the spec's AsyncOptions tuple, None for a plain UDF."""
    name, function = registration.name, registration.function
    target = function.__call__ if is_class_udf(function) or not inspect.isroutine(function) else function
    if inspect.isasyncgenfunction(target):
        raise UDFRegistrationError(
            f"UDF {name!r}: {function!r} is an async generator (it yields many values); a UDF returns one value "
            "per row: make it an async def that returns"
        )
    if not _is_coroutine_udf(function):
        changed = [f"{option}={value!r}" for option, value in options.items() if value != ASYNC_DEFAULTS[option]]
        if changed:
            raise UDFRegistrationError(
                f"UDF {name!r}: {', '.join(changed)}: these options apply to async def UDFs only, and {function!r} "
                "is a plain function; make it async def (its calls then run concurrently), or leave them out"
            )
        return None
    max_concurrency, retries, backoff, retry_on, timeout = (options[key] for key in ASYNC_DEFAULTS)

    def number(value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

    if not isinstance(max_concurrency, int) or isinstance(max_concurrency, bool) or max_concurrency < 1:
        raise UDFRegistrationError(
            f"UDF {name!r}: max_concurrency must be a positive int (calls in flight at once per worker), "
            f"got {max_concurrency!r}"
        )
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise UDFRegistrationError(f"UDF {name!r}: retries must be an int >= 0, got {retries!r}")
    if not number(backoff) or backoff < 0:
        raise UDFRegistrationError(
            f"UDF {name!r}: retry_backoff must be a number of seconds >= 0 (before the first retry), got {backoff!r}"
        )
    if timeout is not None and (not number(timeout) or timeout <= 0):
        raise UDFRegistrationError(
            f"UDF {name!r}: timeout must be a positive number of seconds per call, or None, got {timeout!r}"
        )
    types_given = tuple(retry_on) if isinstance(retry_on, (tuple, list)) else (retry_on,)
    for error_type in types_given:
        if not (isinstance(error_type, type) and issubclass(error_type, Exception)):
            raise UDFRegistrationError(
                f"UDF {name!r}: retry_on must be an Exception subclass or a tuple of them, got {retry_on!r}"
            )
    if not types_given:
        raise UDFRegistrationError(f"UDF {name!r}: retry_on is empty; leave retries=0 instead")
    shipped = tuple(_shipped_type(error_type, registration) for error_type in types_given)
    return (max_concurrency, retries, float(backoff), shipped, None if timeout is None else float(timeout))


def _shipped_type(error_type: type, registration: Registration) -> str | bytes:
    """Ship a ``retry_on`` type as the UDF goes: by reference if it is, and if importing gives the type back.

    A UDF shipped by value carries its own module's classes by value too;
    cloudpickle gives a worker one class for both pickles, so the type the
    function raises is the one retry_on names.
    """
    if isinstance(registration.shipped, str):
        reference = _reference_of(error_type)
        if reference is not None:
            return reference
    own = getattr(registration.function, "__module__", None)
    module = error_type.__module__ if error_type.__module__ == own and _is_user_module(own) else None
    try:
        return _pickled(error_type, module=module)
    except Exception as error:
        raise UDFRegistrationError(
            f"UDF {registration.name!r}: retry_on type {error_type!r} is not importable by name and cannot be "
            f"shipped by value: {error!r}; define it in a module"
        ) from None


def _signature_for_duckdb(registration: Registration) -> inspect.Signature:
    """Return the signature DuckDB reads from the dispatcher: the function's parameters, typed as resolved."""
    parameters = []
    for index, parameter in enumerate(registration.parameters):
        last = index == len(registration.parameters) - 1
        if last and registration.varargs:
            parameters.append(inspect.Parameter("args", inspect.Parameter.VAR_POSITIONAL))
        else:
            annotation = inspect.Parameter.empty if parameter is None else parameter
            parameters.append(
                inspect.Parameter(f"arg{index}", inspect.Parameter.POSITIONAL_ONLY, annotation=annotation)
            )
    return inspect.Signature(parameters)


class InlineBackend(_PooledBackend):
    """DuckDB's own ``create_function``, in this interpreter: the serial reference."""

    name = "inline"
    accepts_arrow_udfs = True

    def _pool(self, pool: WorkerPool | None) -> WorkerPool:
        return InlinePool()

    def prepare(self, registration: Registration, pool: WorkerPool | None) -> Prepared:
        options = registration.asynchronous
        if registration.type == "vectorized" or (options is not None and registration.type == "native"):
            # DuckDB calls a native UDF once per row: an async one goes
            # through the Runtime instead, so a batch's rows are awaited together.
            # The Runtime runs in this interpreter: it gets the function object
            # itself, as DuckDB would, never a copy or a re-run of its module.
            inline = replace(registration, shipped=registration.function, module_source=None)
            return super().prepare(inline, pool)
        function = registration.function() if is_class_udf(registration.function) else registration.function
        if options is not None:  # an arrow UDF: awaited once per batch, on this interpreter's event loop
            from duckdb_subinterp._async import AsyncUdf

            function = AsyncUdf.load(function, options)
            signature = _signature_for_duckdb(registration)
        else:
            signature = _duckdb_signature(function)
        arrow = registration.type == "arrow"
        return Prepared(
            function, arrow, registration.null_handling, registration.exception_handling, None, signature, self.name
        )


class SubinterpreterBackend(_PooledBackend):
    """Per-GIL interpreters in this process: parallel, no copies, stdlib-only UDFs."""

    name = "subinterpreters"
    pool_type = InterpreterPool


class ProcessBackend(_PooledBackend):
    """Worker processes fed through shared memory: any package loads there, arrow UDFs included."""

    name = "processes"
    pool_type = ProcessPool
    accepts_arrow_udfs = True


class RayBackend(_PooledBackend):
    """Actors of a Ray cluster: batches go out as packed buffers, any package loads there, arrow UDFs included."""

    name = "ray"
    pool_type = RayPool
    accepts_arrow_udfs = True
    needs_cluster = True


class AutoBackend(Backend):
    """Per-GIL interpreters when the UDF loads in one, else worker processes (with one warning)."""

    name = "auto"

    def prepare(self, registration: Registration, pool: WorkerPool | None) -> Prepared:
        if pool is not None:
            raise UDFRegistrationError(
                f"UDF {registration.name!r}: backend='auto' chooses the pool itself; pass the backend that fits "
                f"pool {pool!r} instead"
            )
        if registration.type == "arrow":
            # Not a fallback: arrow UDFs need pyarrow, which only worker processes can load.
            return ProcessBackend().prepare(registration, None)
        version = registration.version()
        refused = _refusals.get(version)
        if refused is None:
            try:
                return SubinterpreterBackend().prepare(registration, None)
            except ModuleNotIsolatedError as refusal:
                # Trying again would run the module's top-level code once more, in a fresh interpreter.
                refused = _refusals[version] = refusal.module
        warnings.warn(
            BackendFallbackWarning(
                f"UDF {registration.name!r}: module {refused!r} refuses to load in a per-GIL interpreter; "
                "running the UDF on backend='processes' instead (pass backend='processes' to silence this)",
                registration.name,
                refused,
            ),
            stacklevel=3,  # the create_function call
        )
        return ProcessBackend().prepare(registration, None)


# backend='auto': the module that refused per-GIL interpreters, by the version of the UDF's code.
_refusals: dict[str, str] = {}


BACKENDS: dict[BackendName, type[Backend]] = {
    InlineBackend.name: InlineBackend,
    SubinterpreterBackend.name: SubinterpreterBackend,
    ProcessBackend.name: ProcessBackend,
    RayBackend.name: RayBackend,
    AutoBackend.name: AutoBackend,
}

_default_pools: dict[str, WorkerPool] = {}
_default_pools_lock = threading.Lock()


def default_pool(backend: BackendName = "subinterpreters") -> WorkerPool:
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
    max_concurrency: int = 32,
    retries: int = 0,
    retry_backoff: float = 0.1,
    retry_on: RetryOn = Exception,
    timeout: float | None = None,
) -> duckdb.DuckDBPyConnection:
    """Register ``function`` as a scalar UDF of ``con``, run on ``backend``.

    The same arguments as ``DuckDBPyConnection.create_function``, plus
    ``backend`` ("subinterpreters", "processes", "ray", "auto", "inline"),
    ``pool`` (defaults to a shared pool of the backend) and
    ``max_workers`` (at most that many batches of this UDF at once, across
    all DuckDB threads). ``type`` is "native" (one call per row),
    "vectorized" (one call per batch with one sequence per argument) or
    "arrow" (pyarrow arrays; not on subinterpreters).

    An ``async def`` function (or a class whose ``__call__`` is one) has
    its rows awaited concurrently on each worker's event loop, at most
    ``max_concurrency`` at once per worker; a call that raises one of
    ``retry_on`` is retried up to ``retries`` times, after
    ``retry_backoff`` seconds doubled each time (with jitter); a call
    longer than ``timeout`` seconds raises TimeoutError (a failure too).
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
    options = {
        "max_concurrency": max_concurrency,
        "retries": retries,
        "retry_backoff": retry_backoff,
        "retry_on": retry_on,
        "timeout": timeout,
    }
    registration = _validate(
        name, function, parameters, return_type, type, null_handling, exception_handling, side_effects
    )
    registration = replace(registration, max_workers=max_workers, asynchronous=_async_options(registration, options))
    prepared = backend_type().prepare(registration, pool)
    entry = CatalogEntry.create(name, prepared, None)
    entry.recipe = _recipe(entry, function, parameters, return_type, options, pool, prepared.backend, registration)
    _duckdb_register(con, registration, entry, prepared)
    _connections.add(con, entry)
    return con


class _Recipe(NamedTuple):
    """A registration's arguments, to set it up again (see ``_connections``); the function and pool held weakly."""

    name: str
    function: Callable[[], Any]  # returns the function, or None once it was collected
    parameters: Any
    return_type: Any
    type: Any
    null_handling: Any
    exception_handling: Any
    side_effects: Any
    max_workers: int | None
    options: tuple[tuple[str, Any], ...]  # the async options that are not the default
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
        registration = _validate(
            self.name,
            function,
            self.parameters,
            self.return_type,
            self.type,
            self.null_handling,
            self.exception_handling,
            self.side_effects,
        )
        options = {**ASYNC_DEFAULTS, **dict(self.options)}
        asynchronous = _async_options(registration, options)
        registration = replace(registration, max_workers=self.max_workers, asynchronous=asynchronous)
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
    options: dict[str, Any],
    pool: WorkerPool | None,
    backend: str,
    registration: Registration,
) -> _Recipe:
    """Return the recipe that sets ``entry``'s registration up again: shared where it can be (see above)."""
    changed = tuple((key, value) for key, value in options.items() if value != ASYNC_DEFAULTS[key])
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
        changed,
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
    """Remove a UDF registered with ``create_function`` (or DuckDB's own)."""
    duckdb_remove_function(con, name)
    _connections.remove(con, name)
    return con


def udf_stats(con: duckdb.DuckDBPyConnection, name: str) -> dict[str, float]:
    """Return the counters of a UDF registered on ``con``: batches, rows, worker and wait time."""
    return _dispatcher(con, name).stats.as_dict()


_dispatcher = _connections.dispatcher


def udf[Function: Callable[..., Any]](
    con: duckdb.DuckDBPyConnection,
    name: str | None = None,
    parameters: Sequence[TypeLike] | None = None,
    return_type: TypeLike | None = None,
    **options: Unpack[FunctionOptions],
) -> Callable[[Function], Function]:
    """Decorate a function to register it on ``con``; the function is returned unchanged."""

    def register(function: Function) -> Function:
        create_function(con, name or function.__name__, function, parameters, return_type, **options)
        return function

    return register
