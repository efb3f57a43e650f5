"""Parallel Python UDFs for DuckDB on a pool of per-GIL interpreters.

Switch a UDF from DuckDB's own machinery by changing one call::

    import duckdb_subinterp
    duckdb_subinterp.create_function(con, "slugify", slugify)   # was: con.create_function(...)

Importing this package starts no interpreter, thread or process.
"""

from duckdb_subinterp._backends.processes.pool import ProcessPool
from duckdb_subinterp._backends.ray.pool import RayPool
from duckdb_subinterp._backends.subinterpreters import InterpreterPool
from duckdb_subinterp._engine.pool import WorkerPool
from duckdb_subinterp._engine.stats import UdfStats
from duckdb_subinterp._errors import (
    BackendFallbackWarning,
    BackendUnavailableError,
    BrokenPoolError,
    CompiledPathUnavailableWarning,
    ModuleChangedWarning,
    ModuleNotIsolatedError,
    PoolTimeoutError,
    UDFError,
    UDFExecutionError,
    UDFLoadFailedWarning,
    UDFRegistrationError,
    UDFResultError,
    UnsupportedTypeError,
    WorkerDiedError,
)
from duckdb_subinterp._export import export, export_aggregate, export_table_function
from duckdb_subinterp._registration.aggregates import create_aggregate_function
from duckdb_subinterp._registration.api import create_function, remove_function, udf, udf_stats
from duckdb_subinterp._registration.backends import BACKENDS, default_pool
from duckdb_subinterp._registration.table_functions import create_table_function
from duckdb_subinterp._version import __version__

__all__ = [
    "BACKENDS",
    "BackendFallbackWarning",
    "BackendUnavailableError",
    "BrokenPoolError",
    "CompiledPathUnavailableWarning",
    "InterpreterPool",
    "ModuleChangedWarning",
    "ModuleNotIsolatedError",
    "PoolTimeoutError",
    "ProcessPool",
    "RayPool",
    "UDFError",
    "UDFExecutionError",
    "UDFLoadFailedWarning",
    "UDFRegistrationError",
    "UDFResultError",
    "UdfStats",
    "UnsupportedTypeError",
    "WorkerDiedError",
    "WorkerPool",
    "__version__",
    "create_aggregate_function",
    "create_function",
    "create_table_function",
    "default_pool",
    "export",
    "export_aggregate",
    "export_table_function",
    "remove_function",
    "udf",
    "udf_stats",
]
