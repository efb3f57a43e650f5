"""Run a batch in the calling DuckDB thread, in this interpreter: where DuckDB's own UDF runs it.

``backend="auto"`` places each batch (``_costs.Placement``): a UDF whose
batches cost less than a round trip to a worker runs here, as DuckDB's own
arrow and native UDFs do, and moves to the pool once its batches cost more.
Here it runs the function object the user registered (DuckDB's own calls
that one too), through the same ``Runtime`` and codec as the workers
(native and vectorized UDFs) or as DuckDB's own arrow UDFs call it (arrow
UDFs), so results and errors are the same wherever a batch ran.

Module state and a class UDF's instance live here too: a class UDF has one
instance per DuckDB thread that ran a batch here, besides one per worker.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from duckdb_subinterp._backends.inline import InlineWorker
from duckdb_subinterp._engine.pool import WorkerFailure
from duckdb_subinterp._worker.protocol import UDF_ERRORS, raised
from duckdb_subinterp._worker.runtime import is_class_udf


class InThread:
    """The UDF as this interpreter runs it: one ``InlineWorker`` per DuckDB thread, or the arrow function itself."""

    def __init__(
        self,
        udf_id: int,
        spec: tuple[Any, ...],
        function: Any,
        *,
        return_type: Any = None,  # an arrow UDF's (None for the others)
        errors_to_null: bool = False,
        special_nulls: bool = False,
    ) -> None:
        self.udf_id = udf_id
        self._spec = spec  # shipped as the function object itself (see InlineBackend)
        self._function = function
        # An arrow UDF's: its result's Arrow type, and its null and exception handling.
        self._return_type = return_type
        self.errors_to_null = errors_to_null
        self._special_nulls = special_nulls
        # A Runtime is not re-entrant (a batch's status and pending result),
        # and DuckDB's threads call at once: one per thread, made on first use.
        # Keyed by the OS thread, not in a threading.local: DuckDB's own threads
        # take the GIL with a thread state made for the call and dropped after
        # it, which would empty a threading.local at every batch (a worker
        # loaded, a class UDF's instance made, every batch).
        self._workers: dict[int, InlineWorker] = {}
        self._functions: dict[int, Any] = {}  # an arrow UDF's: a class UDF's instance, per thread

    def worker(self) -> InlineWorker:
        """Return this thread's worker, with the UDF loaded (a class UDF's instance made on first use)."""
        thread = threading.get_ident()
        worker = self._workers.get(thread)
        if worker is None:
            worker = InlineWorker()
            worker.load(self.udf_id, self._spec)  # WorkerFailure: __init__ failed, as it would in a worker
            worker.loaded.add(self.udf_id)
            self._workers[thread] = worker
        return worker

    def call_arrow(self, arguments: Sequence[Any], length: int) -> Any:
        """Call an arrow UDF on DuckDB's arrays; return its result as it is, for DuckDB to check, as its own."""
        thread = threading.get_ident()
        function = self._functions.get(thread)
        if function is None:
            function = self._functions[thread] = self._made()
        if not self.errors_to_null:
            # DuckDB's arguments are already what its own arrow UDF gets (the
            # columns of a table), and it checks the result: the call is all.
            try:
                return function(*arguments)
            except UDF_ERRORS as error:
                raise self._failure(raised(error)) from None
        import pyarrow as pa

        from duckdb_subinterp._backends.processes import arrow_udfs  # pyarrow: arrow UDFs only

        # Exceptions become NULLs: NULL rows are left out and put back by position, one chunk each.
        arrays = [argument.combine_chunks() for argument in arguments]
        try:
            if pa.types.is_union(self._return_type):  # DuckDB converts it, whatever it is
                return arrow_udfs.call_arrow_object(function, arrays, length, True, self._special_nulls)
            return arrow_udfs.call_arrow_udf(function, arrays, length, self._return_type, True, self._special_nulls)[1]
        except Exception as error:  # the runtime's UdfRaised, UdfResultInvalid
            raise self._failure(error) from None

    def shared_arrow_function(self) -> Any:
        """Return the arrow function all threads may call as it is, or None (a class UDF, exceptions to NULLs...)."""
        shared = self._return_type is not None and not self.errors_to_null and not is_class_udf(self._function)
        return self._function if shared else None

    def _made(self) -> Any:
        """Return the function this thread calls: a class UDF's instance is made once per thread."""
        if not is_class_udf(self._function):
            return self._function
        try:
            return self._function()
        except UDF_ERRORS as error:
            raise WorkerFailure.from_names("UdfLoadFailed", f"raised {type(error).__name__}: {error}", "") from None

    @staticmethod
    def _failure(error: Exception) -> WorkerFailure:
        # As InlineWorker reports the runtime's exceptions: the query's error names the UDF.
        return WorkerFailure.from_names(type(error).__name__, str(error), repr(error))
