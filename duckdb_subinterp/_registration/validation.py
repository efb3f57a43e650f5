"""A ``create_function`` call checked: one ``Registration`` record, everything a backend needs to set it up.

``validate`` reads the signature (``signatures``), normalizes the options
(strings or duckdb's enums), decides how the code ships (``shipping``), and
says, naming the argument, the value and the fix, what it cannot take;
``async_options`` checks an ``async def`` UDF's options (``AsyncOptions``).
"""

from __future__ import annotations

import hashlib
import inspect
import math
import sys
import types
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from duckdb.sqltypes import DuckDBPyType

from duckdb_subinterp._engine.arrow import (
    ArgumentPlan,
    ResultLayout,
    UnsupportedType,
    argument_plan,
    arrow_type_of,
    descriptor_for,
)
from duckdb_subinterp._errors import ModuleChangedWarning, NotCallableError, UDFRegistrationError, UnsupportedTypeError
from duckdb_subinterp._options import ASYNC_KEYWORDS, AsyncOptions
from duckdb_subinterp._registration.shipping import (
    ModuleChanged,
    is_user_module,
    pickled,
    pinned_source,
    reference_of,
)
from duckdb_subinterp._registration.signatures import annotation_type, callable_signature, duckdb_type
from duckdb_subinterp._worker.protocol import UdfSpec, resolve_reference
from duckdb_subinterp._worker.runtime import is_class_udf

UDF_TYPES = ("native", "vectorized", "arrow")
NULL_HANDLING = ("default", "special")
EXCEPTION_HANDLING = ("default", "return_null")


def _option(value: Any, allowed: Sequence[str], what: str, udf_name: str) -> str:
    """Normalize a string or one of duckdb's enums (``FunctionNullHandling.SPECIAL``...)."""
    text = value.name if hasattr(value, "name") and not isinstance(value, str) else value
    if isinstance(text, str) and text.lower() in allowed:
        return text.lower()
    raise UDFRegistrationError(f"UDF {udf_name!r}: {what}={value!r} is not one of {', '.join(map(repr, allowed))}")


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
    fan_out: bool = True  # a costly batch may be cut into slices for idle workers
    module_source: tuple[str, str, str, str, bool] | None = None
    asynchronous: AsyncOptions | None = None  # an async def UDF's options, as the workers take them

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
            asynchronous=None if self.asynchronous is None else tuple(self.asynchronous),  # as an interpreter shares it
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


def validate(
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
        reference = reference_of(function)
    else:
        raise NotCallableError(
            f"UDF {name!r}: function must be a callable or a 'package.module:qualname' string, got {function!r}"
        )
    try:
        signature = callable_signature(function)
    except (TypeError, ValueError, NameError, SyntaxError) as error:
        raise UDFRegistrationError(f"UDF {name!r}: cannot read the function's signature: {error!r}") from None
    annotated = [annotation_type(p.annotation) for p in signature.parameters.values()]
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
        types = [duckdb_type(value, name, f"parameter {index}") for index, value in enumerate(parameters)]
    else:
        raise UDFRegistrationError(f"UDF {name!r}: parameters must be a list of types, got {parameters!r}")
    if return_type is None:
        return_type = annotation_type(signature.return_annotation)
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
            module_source = pinned_source(function, reference)
        except ModuleChanged as change:
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
            shipped = pickled(function, module=by_value_module)
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
        return_type=duckdb_type(return_type, name, "return_type"),
        varargs=varargs,
        type=udf_type,
        null_handling=nulls,
        exception_handling=exceptions,
        side_effects=bool(side_effects),
        module_source=module_source,
    )


def is_coroutine_udf(function: Any) -> bool:
    """Tell whether calling ``function`` gives a coroutine: an async def, or a class or instance whose call is one."""
    if is_class_udf(function):
        return inspect.iscoroutinefunction(function.__call__)
    if inspect.iscoroutinefunction(function):  # also a functools.partial or bound method of one
        return True
    if isinstance(function, (types.FunctionType, types.MethodType, types.BuiltinFunctionType, type)):
        return False
    return inspect.iscoroutinefunction(type(function).__call__)


def async_options(registration: Registration, options: AsyncOptions) -> AsyncOptions | None:
    """Check create_function's async options; return them as the workers take them, or None for a plain UDF."""
    name, function = registration.name, registration.function
    target = function.__call__ if is_class_udf(function) or not inspect.isroutine(function) else function
    if inspect.isasyncgenfunction(target):
        raise UDFRegistrationError(
            f"UDF {name!r}: {function!r} is an async generator (it yields many values); a UDF returns one value "
            "per row: make it an async def that returns"
        )
    if not is_coroutine_udf(function):
        defaults = AsyncOptions._field_defaults
        given = options._asdict().items()
        changed = [f"{ASYNC_KEYWORDS[field]}={value!r}" for field, value in given if value != defaults[field]]
        if changed:
            raise UDFRegistrationError(
                f"UDF {name!r}: {', '.join(changed)}: these options apply to async def UDFs only, and {function!r} "
                "is a plain function; make it async def (its calls then run concurrently), or leave them out"
            )
        return None
    max_concurrency, retries, backoff, retry_on, timeout = options

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
    types_given: tuple[Any, ...] = tuple(retry_on) if isinstance(retry_on, (tuple, list)) else (retry_on,)
    for error_type in types_given:
        if not (isinstance(error_type, type) and issubclass(error_type, Exception)):
            raise UDFRegistrationError(
                f"UDF {name!r}: retry_on must be an Exception subclass or a tuple of them, got {retry_on!r}"
            )
    if not types_given:
        raise UDFRegistrationError(f"UDF {name!r}: retry_on is empty; leave retries=0 instead")
    shipped = tuple(_shipped_type(error_type, registration) for error_type in types_given)
    return AsyncOptions(max_concurrency, retries, float(backoff), shipped, None if timeout is None else float(timeout))


def _shipped_type(error_type: type, registration: Registration) -> str | bytes:
    """Ship a ``retry_on`` type as the UDF goes: by reference if it is, and if importing gives the type back.

    A UDF shipped by value carries its own module's classes by value too;
    cloudpickle gives a worker one class for both pickles, so the type the
    function raises is the one retry_on names.
    """
    if isinstance(registration.shipped, str):
        reference = reference_of(error_type)
        if reference is not None:
            return reference
    own = getattr(registration.function, "__module__", None)
    module = error_type.__module__ if error_type.__module__ == own and is_user_module(own) else None
    try:
        return pickled(error_type, module=module)
    except Exception as error:
        raise UDFRegistrationError(
            f"UDF {registration.name!r}: retry_on type {error_type!r} is not importable by name and cannot be "
            f"shipped by value: {error!r}; define it in a module"
        ) from None
