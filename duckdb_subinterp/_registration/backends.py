"""The backends as ``create_function`` sees them: registered by name, each a strategy class.

``BACKENDS`` maps a name to its ``Backend``, which turns a checked
``Registration`` into what DuckDB calls (``Prepared``): a dispatcher over a
pool of its kind (``_PooledBackend``), or DuckDB's own machinery (inline).
What differs between backends is said by class attributes (``pool_type``,
``accepts_arrow_udfs``, ``needs_cluster``), not by tests of the name
elsewhere. Each pooled backend has a process-wide default pool, started
lazily (``default_pool``); at exit every pool is closed by
``_engine.lifecycle``.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import threading
import warnings
import weakref
from collections.abc import Callable
from dataclasses import replace
from typing import Any, ClassVar

from duckdb_subinterp._backends.inline import InlinePool
from duckdb_subinterp._backends.inthread import InThread
from duckdb_subinterp._backends.processes.pool import ProcessPool
from duckdb_subinterp._backends.ray.pool import RayPool
from duckdb_subinterp._backends.subinterpreters import InterpreterPool
from duckdb_subinterp._engine.arrow import ResultLayout, loses_in_arrow
from duckdb_subinterp._engine.dispatch import BatchDispatcher
from duckdb_subinterp._engine.pool import WorkerFailure, WorkerPool
from duckdb_subinterp._errors import BackendFallbackWarning, ModuleNotIsolatedError, UDFRegistrationError
from duckdb_subinterp._options import BackendName
from duckdb_subinterp._registration.connections import CatalogEntry, Prepared
from duckdb_subinterp._registration.signatures import duckdb_signature
from duckdb_subinterp._registration.validation import Registration
from duckdb_subinterp._worker.runtime import describe_import_refusal, is_class_udf, warn_if_codec_not_compiled

_udf_ids = itertools.count(1)


class Backend:
    """How a validated registration reaches DuckDB."""

    name: ClassVar[BackendName]
    accepts_arrow_udfs: ClassVar[bool] = False
    pool_type: ClassVar[type[WorkerPool] | None] = None
    # Its pool needs a connection the user makes (ray.init()): the demo and
    # the benchmark, which make their own pools, leave it out.
    needs_cluster: ClassVar[bool] = False

    def prepare(self, registration: Registration, pool: WorkerPool | None, *, in_thread: bool = False) -> Prepared:
        """Return what DuckDB is to call for ``registration``, and how."""
        raise NotImplementedError


class _PooledBackend(Backend):
    """Batches go through a ``BatchDispatcher`` to workers of a pool."""

    def _pool(self, pool: WorkerPool | None) -> WorkerPool:
        return pool if pool is not None else default_pool(self.name)

    def prepare(self, registration: Registration, pool: WorkerPool | None, *, in_thread: bool = False) -> Prepared:
        """Return the dispatcher of ``registration`` on ``pool``; ``in_thread``: it may also run batches here (auto)."""
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
            fan_out=registration.fan_out,
            asynchronous=registration.asynchronous is not None,
            in_thread=self._in_thread(registration, udf_id, layout) if in_thread else None,
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
            target = dispatcher.settled_call() or dispatcher
            return Prepared(target, True, nulls, "default", dispatcher, signature, self.name)
        # Native and vectorized UDFs apply null and exception handling in
        # the worker (per row, as DuckDB's native UDFs do), so DuckDB
        # passes every row through.
        target = dispatcher.settled_call() or dispatcher
        return Prepared(target, True, "special", "default", dispatcher, signature, self.name)

    def _in_thread(self, registration: Registration, udf_id: int, layout: ResultLayout) -> InThread | None:
        """Return how a batch runs in the calling thread: with the function object itself, as DuckDB's own would."""
        if registration.asynchronous is not None:
            return None  # awaited on a worker's event loop; a costly I/O-bound call belongs on the pool
        itself = replace(registration, shipped=registration.function, module_source=None)
        return InThread(
            udf_id,
            tuple(itself.spec()),
            registration.function,
            return_type=layout.arrow_type if registration.type == "arrow" else None,
            errors_to_null=registration.exception_handling == "return_null",
            special_nulls=registration.null_handling == "special",
        )

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

    def prepare(self, registration: Registration, pool: WorkerPool | None, *, in_thread: bool = False) -> Prepared:
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
            from duckdb_subinterp._worker.asynchronous import AsyncUdf

            function = AsyncUdf.load(function, options)
            signature = _signature_for_duckdb(registration)
        else:
            signature = duckdb_signature(function)
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

    def prepare(self, registration: Registration, pool: WorkerPool | None, *, in_thread: bool = False) -> Prepared:
        if pool is not None:
            raise UDFRegistrationError(
                f"UDF {registration.name!r}: backend='auto' chooses the pool itself; pass the backend that fits "
                f"pool {pool!r} instead"
            )
        if registration.type == "arrow":
            # Not a fallback: arrow UDFs need pyarrow, which only worker processes can load.
            return self._placed(ProcessBackend().prepare(registration, None, in_thread=True))
        version = registration.version()
        refused = _refusals.get(version)
        if refused is None:
            try:
                return self._placed(SubinterpreterBackend().prepare(registration, None, in_thread=True))
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
        return self._placed(ProcessBackend().prepare(registration, None, in_thread=True))

    def _placed(self, prepared: Prepared) -> Prepared:
        # Set up again (see connections) by auto, which places it again.
        return prepared._replace(backend=self.name)

    @classmethod
    def watch_imports(cls, entry: CatalogEntry, registration: Registration) -> None:
        """Move ``entry``'s UDF to processes if its function imports a module that refuses interpreters as it runs.

        Registration loads the UDF's module in an interpreter and sees the
        modules it imports; one the function imports only when called
        (``import numpy`` in its body) is seen at the first batch that runs
        on an interpreter: that batch runs again on processes, and the UDF
        stays there, with one BackendFallbackWarning, as at registration.
        """
        dispatcher = entry.dispatcher
        if dispatcher is not None and isinstance(dispatcher.pool, InterpreterPool):
            dispatcher.on_import_refused = functools.partial(cls._fall_back, entry, registration, dispatcher)

    @classmethod
    def _fall_back(
        cls, entry: CatalogEntry, registration: Registration, refusing: BatchDispatcher, module: str
    ) -> Callable[..., Any]:
        with _fallback_lock:
            if entry.dispatcher is refusing:  # the first batch to see it: the others find it moved
                _refusals[registration.version()] = module
                warnings.warn(
                    BackendFallbackWarning(
                        f"UDF {registration.name!r}: module {module!r}, which the function imported as it ran, "
                        "refuses to load in a per-GIL interpreter; running the UDF on backend='processes' from "
                        "now on (import it at the top of the UDF's module to decide at registration, or pass "
                        "backend='processes')",
                        registration.name,
                        module,
                    ),
                    stacklevel=2,
                )
                entry.switch(cls()._placed(ProcessBackend().prepare(registration, None, in_thread=True)))
            return entry.func


_fallback_lock = threading.Lock()


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
    """Return the process-wide pool of ``backend``, the one ``create_function`` uses without ``pool=``.

    Made on first use, its workers started lazily; made again if it was closed. At exit it is closed
    with every other pool.

    Args:
        backend: A backend that has pools: ``"subinterpreters"``, ``"processes"`` or ``"ray"``.

    Returns:
        The pool (an ``InterpreterPool``, a ``ProcessPool`` or a ``RayPool``), sized to the CPU count
        (a ``RayPool`` to the cluster's CPUs).

    Raises:
        ValueError: ``backend`` has no pool (``"inline"``, ``"auto"``) or is not a backend.
        BackendUnavailableError: ``"ray"`` where ray is not installed or not connected.

    Example:
        ```python
        pool = duckdb_subinterp.default_pool("processes")
        pool.start_all()  # pay the start-up now, not in the first query
        ```
    """
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
