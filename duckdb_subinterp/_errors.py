"""The package's exception tree: one base, one class per thing a user can act on."""

from __future__ import annotations


class UDFError(Exception):
    """Base class of every error this package raises."""


class UDFRegistrationError(UDFError, ValueError):
    """A UDF cannot be registered as asked; the message says which argument and the fix."""


class UnsupportedTypeError(UDFRegistrationError, TypeError):
    """A parameter or return type the chosen backend cannot carry."""


class ModuleNotIsolatedError(UDFRegistrationError):
    """The UDF's code imports a module that refuses to load in a per-GIL interpreter."""

    def __init__(self, message: str, module: str) -> None:
        super().__init__(message)
        self.module = module


class UDFExecutionError(UDFError):
    """The user's function raised; the message carries its type, message and traceback."""


class UDFResultError(UDFError):
    """The user's function returned a result that does not fit the UDF's declaration."""


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


class CompiledPathUnavailableWarning(RuntimeWarning):
    """A C extension of the package was not built; a slower path in Python is used instead."""
