"""The package's exception tree: one base, one class per thing a user can act on."""

from __future__ import annotations

import builtins
import threading


class UDFError(Exception):
    """Base class of every error this package raises."""

    def __str__(self) -> str:
        # The message as given, also where a builtin base (KeyError) would quote it.
        return str(self.args[0]) if self.args else ""


class UDFRegistrationError(UDFError, ValueError):
    """A UDF cannot be registered as asked; the message says which argument and the fix."""


class UnsupportedTypeError(UDFRegistrationError, TypeError):
    """A parameter or return type the chosen backend cannot carry."""


class ModuleNotIsolatedError(UDFRegistrationError):
    """The UDF's code imports a module that refuses to load in a per-GIL interpreter."""

    def __init__(self, message: str, module: str) -> None:
        super().__init__(message)
        self.module = module


class NotCallableError(UDFRegistrationError, TypeError):
    """``function`` is neither a callable nor a ``"module:qualname"`` string (a TypeError, as in DuckDB)."""


class BackendUnavailableError(UDFRegistrationError):
    """The chosen backend cannot run here: its package is not installed, or its cluster is not connected."""


class UDFExecutionError(UDFError):
    """The user's function raised; the message carries its type, message and traceback.

    The error a query raises is of a subclass named as the user's exception
    (``AttributeError``...), which also derives from that builtin where there
    is one: DuckDB words the failure ``<type name>: <message>``, as its own
    UDFs do, and code that matches on that keeps working.
    """

    # The module that refused to load in a per-GIL interpreter when the
    # function imported it while running, if that is what failed.
    refused_module: str | None = None


_named_errors: dict[str, type[UDFExecutionError]] = {}
_named_errors_lock = threading.Lock()


def udf_execution_error(type_name: str, message: str) -> UDFExecutionError:
    """Return a ``UDFExecutionError`` whose class is named ``type_name``, carrying ``message``."""
    with _named_errors_lock:
        error_type = _named_errors.get(type_name)
        if error_type is None:
            error_type = _named_errors[type_name] = _named_error_type(type_name)
    return error_type(message)


def _message_only_init(self: BaseException, message: str) -> None:
    BaseException.__init__(self, message)


def _named_error_type(type_name: str) -> type[UDFExecutionError]:
    """Return a class named ``type_name``, deriving from that builtin too where it can be made from a message.

    A builtin whose constructor takes more than a message (UnicodeDecodeError's
    five arguments) gets a constructor that takes the message alone; one that
    checks its arguments in ``__new__`` as well (ExceptionGroup's) is left out.
    """
    builtin = getattr(builtins, type_name, None)
    candidates: list[tuple[tuple[type, ...], dict[str, object]]] = []
    namespace: dict[str, object] = {"__module__": __name__}
    if isinstance(builtin, type) and issubclass(builtin, Exception) and not issubclass(builtin, UDFError):
        candidates += [
            ((UDFExecutionError, builtin), namespace),
            ((UDFExecutionError, builtin), {**namespace, "__init__": _message_only_init}),
        ]
    candidates.append(((UDFExecutionError,), namespace))
    for bases, body in candidates:
        try:
            error_type = type(type_name, bases, body)
            error_type("a message")  # made as the query's error will be
        except TypeError:  # a layout that cannot be combined, a constructor that wants more
            continue
        return error_type
    raise AssertionError("a plain UDFExecutionError subclass is always made")


class UDFResultError(UDFError):
    """The user's function returned a result that does not fit the UDF's declaration."""


_refusal_errors: dict[type[Exception], type[UDFResultError]] = {}


def refused_result_error(refusal: Exception, message: str) -> UDFResultError:
    """Return the ``UDFResultError`` for a result DuckDB's conversion refused with ``refusal``.

    DuckDB's own UDFs fail such a query with the class of ``refusal``
    (``duckdb.TypeMismatchException``...); ours fail it with DuckDB's
    ``InvalidInputException``, as every error a Python arrow UDF raises does.
    Where the classes differ, the error is of a subclass named as DuckDB's
    (and deriving from it), so the query's message names it:
    ``...: TypeMismatchException: Mismatch Type Error: ...``.
    """
    refusal_type = type(refusal)
    if refusal_type.__name__ == "InvalidInputException":
        return UDFResultError(message)
    with _named_errors_lock:
        error_type = _refusal_errors.get(refusal_type)
        if error_type is None:
            namespace = {"__module__": __name__, "__init__": _message_only_init}
            try:
                error_type = type(refusal_type.__name__, (UDFResultError, refusal_type), namespace)
            except TypeError:  # a layout that cannot be combined
                error_type = type(refusal_type.__name__, (UDFResultError,), namespace)
            _refusal_errors[refusal_type] = error_type
    return error_type(message)


class BrokenPoolError(UDFError):
    """The pool is closed or lost a worker; the query fails instead of waiting forever."""


class PoolTimeoutError(BrokenPoolError, TimeoutError):
    """No worker became free within the pool's timeout."""


class WorkerDiedError(BrokenPoolError):
    """A worker process exited while it ran a batch."""


class BackendFallbackWarning(UserWarning):
    """backend='auto' ran a UDF on worker processes because a module refused per-GIL interpreters."""

    def __init__(self, message: str, udf_name: str, module: str) -> None:
        super().__init__(message)
        self.udf_name = udf_name
        self.module = module


class UDFLoadFailedWarning(RuntimeWarning):
    """A UDF loaded in some workers fails to load in another (a class UDF's ``__init__`` started failing).

    It keeps running on the workers that have it; a query fails with the
    load error once none has it. Warned once until a load succeeds again.
    """

    def __init__(self, message: str, udf_name: str, worker: str, error: str) -> None:
        super().__init__(message)
        self.udf_name = udf_name
        self.worker = worker  # "interpreter 3", "worker process 1234"
        self.error = error  # what the load raised, with the worker's traceback


class ModuleChangedWarning(UserWarning):
    """A UDF's module file changed since it was imported: the UDF runs the code this interpreter has."""


class CompiledPathUnavailableWarning(RuntimeWarning):
    """A C extension of the package was not built; a slower path in Python is used instead."""
