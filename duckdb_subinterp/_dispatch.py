"""The callable DuckDB sees: it moves one batch from DuckDB to a worker and back.

Data flow of one batch (2048 rows), on the DuckDB thread that called the UDF::

    DuckDB thread (holds the main GIL)
      |  pyarrow.ChunkedArray per argument   (DuckDB's arrow UDF call)
      v
    column_buffers()  -> (offset, validity, offsets, data, children...) as
                         read-only memoryviews (nested tuples for children),
                         read in C through the Arrow C data interface, no copy
    OutputBuffers()   -> one block here holding every result buffer, empty
      |
      |  pool.checkout(): an idle worker with the UDF loaded
      v
    worker.run()   ----------------------------------------------------------+
      |  subinterpreters: DirectCall on this same thread (its own thread     |
      |                   state there); the main GIL is released, the        |
      |                   interpreter's own is taken; buffers stay in place  |
      |  processes:       the views are copied into shared memory once,      |
      |                   the worker process is woken through a pipe         |
      v                                                                      |
    Runtime.run() inside the worker (pure Python, _codec)                    |
      decode_column -> the user's function (per row or per batch)            |
      -> encode_column -> written into the result buffers                    |
      |  status: null count, whether the result is pending, sizes, child     |
      |  shapes; a result that did not fit is kept by the worker until       |
      |  copy_pending() into bigger buffers                                  |
    <------------------------------------------------------------------------+
      v
    the block as an ArrowArray -> pyarrow.Array._import_from_c  -> DuckDB,  no copy

A result the codec does not take as it is (a str for a BIGINT...) comes
back pickled instead (status: PENDING_PICKLED) and DuckDB converts it
(``DuckDBConversion``), so it gets DuckDB's value or DuckDB's error; an
arrow UDF's result that is not an array of the return type goes back to
DuckDB as it is. ANY parameters are planned per batch from the Arrow type
each batch carries. A native UDF without parameters is registered with
DuckDB as a native UDF: ``call_row`` runs one row a call.
"""

from __future__ import annotations

import pickle
import threading
import time
from collections.abc import Sequence
from typing import Any

import duckdb
import pyarrow as pa
from duckdb.sqltypes import DuckDBPyType

from duckdb_subinterp._arrow import (
    ArgumentPlan,
    ArgumentTooLarge,
    OutputBuffers,
    ResultLayout,
    UnsupportedType,
    any_argument_plan,
    column_buffers,
    duckdb_conversion,
    output_buffers_type,
)
from duckdb_subinterp._errors import (
    BrokenPoolError,
    PoolTimeoutError,
    UDFExecutionError,
    UDFResultError,
    UnsupportedTypeError,
)
from duckdb_subinterp._pool import WorkerFailure, WorkerPool, wait_bound
from duckdb_subinterp._runtime import MODE_BUFFERS, MODE_PICKLED, PENDING_PICKLED, SIZES_SLOT

# Variable-width results start with this much room per row; then the
# largest size seen, plus a quarter, so a second copy is rare.
_INITIAL_BYTES_PER_ROW = 16


class UdfStats:
    """Counters of one registered UDF, updated by every batch."""

    __slots__ = ("__weakref__", "_first", "_last", "_lock", "batches", "rows", "wait_seconds", "worker_seconds")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.batches = 0
        self.rows = 0
        self.wait_seconds = 0.0
        self.worker_seconds = 0.0
        self._first: float | None = None
        self._last = 0.0

    def record(self, rows: int, started: float, leased: float, finished: float) -> None:
        """Add one batch: when it started, when it got a worker, when it finished."""
        with self._lock:
            self.batches += 1
            self.rows += rows
            self.wait_seconds += leased - started
            self.worker_seconds += finished - leased
            if self._first is None:
                self._first = started
            self._last = finished

    def as_dict(self) -> dict[str, float]:
        """Return the counters, plus the effective parallelism (worker time / elapsed time)."""
        with self._lock:
            elapsed = self._last - self._first if self._first is not None else 0.0
            return {
                "batches": self.batches,
                "rows": self.rows,
                "worker_seconds": self.worker_seconds,
                "wait_seconds": self.wait_seconds,
                "elapsed_seconds": elapsed,
                "parallelism": self.worker_seconds / elapsed if elapsed > 0 else 0.0,
            }


class BatchDispatcher:
    """The arrow UDF registered in DuckDB, running each batch on a pooled worker."""

    def __init__(
        self,
        name: str,
        udf_id: int,
        pool: WorkerPool,
        parameters: list[ArgumentPlan | None],
        varargs: bool,
        result_layout: ResultLayout,
        return_type: DuckDBPyType,
        *,
        kind: str = "native",
        max_workers: int | None = None,
    ) -> None:
        self.name = name
        self.udf_id = udf_id
        self.pool = pool
        self.result_layout = result_layout
        self.return_type = result_layout.arrow_type
        self.duckdb_return_type = return_type
        self.kind = kind
        self.stats = UdfStats()
        # max_workers caps this UDF's batches in flight across all DuckDB
        # threads and connections, whatever the pool's size.
        self.max_workers = max_workers
        self._slots = threading.BoundedSemaphore(max_workers) if max_workers is not None else None
        # Learned per output buffer (all nodes, depth first) from the batches so far.
        self._bytes_per_row = [_INITIAL_BYTES_PER_ROW] * result_layout.buffer_count
        # ANY parameters and the further arguments of *args take their plan
        # from each batch; the others (the hot path) are planned once here.
        self._parameters = parameters
        self._per_batch = varargs or None in parameters
        self._types = [plan.arrow_type for plan in parameters] if not self._per_batch else []
        self._descriptors = [plan.descriptor for plan in parameters] if not self._per_batch else []
        self._signatures = [plan.signature for plan in parameters] if not self._per_batch else []
        self._outputs = output_buffers_type()

    def __call__(self, *arguments: pa.ChunkedArray) -> Any:
        started = time.perf_counter()
        if not arguments:
            return self._unsized_batch(started)
        length = len(arguments[0])
        if length == 0 and self.kind != "arrow":
            # DuckDB calls arrow UDFs with the rows it left after dropping NULL ones, none included.
            return pa.array([], type=self.return_type)
        descriptors = None
        try:
            if self._per_batch:
                plans = [self._plan(index, argument) for index, argument in enumerate(arguments)]
                columns = tuple([column_buffers(argument, *plan) for argument, plan in zip(arguments, plans)])
                descriptors = tuple([plan.descriptor for plan in plans])
            else:
                columns = tuple(map(column_buffers, arguments, self._types, self._descriptors, self._signatures))
        except ArgumentTooLarge as error:
            raise UDFExecutionError(f"UDF {self.name!r}: {error}") from None
        layout = self.result_layout
        outputs = self._outputs(layout, length, self._bytes_per_row)
        request = (self.udf_id, length, columns, outputs.views(), descriptors, MODE_BUFFERS)
        result = self._run(started, length, request, outputs)
        if type(result) is bytearray:
            return self._result_of(result)
        return outputs.to_array(*result)

    def _plan(self, index: int, argument: pa.ChunkedArray) -> ArgumentPlan:
        plan = self._parameters[index] if index < len(self._parameters) else None
        if plan is None:
            try:
                plan = any_argument_plan(argument.type)
            except UnsupportedType as error:
                raise UnsupportedTypeError(f"UDF {self.name!r}: argument {index}: {error}") from None
        return plan

    def call_row(self) -> Any:
        """Run the function once for one row (a native UDF without arguments); return its value as it is.

        DuckDB converts the value itself, exactly as for its own UDF.
        """
        started = time.perf_counter()
        layout = self.result_layout
        outputs = self._outputs(layout, 1, self._bytes_per_row)
        payload = self._run(started, 1, (self.udf_id, 1, (), outputs.views(), None, MODE_PICKLED), outputs)
        _, values = self._unpickled(payload)
        return values[0]

    def _unsized_batch(self, started: float) -> Any:
        """Run a batch UDF without arguments: DuckDB does not say the row count, and checks the result's."""
        outputs = self._outputs(self.result_layout, 1, self._bytes_per_row)
        return self._result_of(self._run(started, 0, (self.udf_id, -1, (), outputs.views(), None, MODE_PICKLED), outputs))

    def _run(
        self, started: float, length: int, request: tuple[Any, ...], outputs: OutputBuffers
    ) -> Any:
        """Run ``request`` on a worker; return (null count, child shapes), or the bytes of a pickled payload."""
        layout = self.result_layout
        # A plain try/finally: contextlib's generator costs ~8 us a batch here.
        slots = self._slots
        if slots is not None and not slots.acquire(timeout=wait_bound(self.pool.timeout)):
            raise PoolTimeoutError(
                f"UDF {self.name!r}: no batch of the {self.max_workers} it may run at once (max_workers) "
                f"finished within {self.pool.timeout:g} s; raise max_workers= or the pool's timeout="
            )
        try:
            try:
                worker = self.pool.checkout(self.udf_id, self.name)
            except WorkerFailure as failure:  # a worker started now could not load the UDF
                raise failure.for_udf(self.name) from None
            broken = False
            payload = None
            try:
                leased = time.perf_counter()
                # The status lives in the worker: read it before checkin.
                status = worker.run(request)
                null_count, pending = status[0], status[1]
                if pending == PENDING_PICKLED:
                    payload = bytearray(status[SIZES_SLOT])
                    worker.copy_pending((memoryview(payload),))
                    shapes: Sequence[int] = ()
                else:
                    if pending or layout.width is None:
                        sizes = status[SIZES_SLOT : SIZES_SLOT + layout.buffer_count]
                        if pending:
                            outputs.grow(sizes)
                            worker.copy_pending(outputs.views())
                        if layout.width is None:
                            self._learn(sizes, length)
                    shapes = status[SIZES_SLOT + layout.buffer_count : layout.status_slots] if layout.nested else ()
            except WorkerFailure as failure:
                raise failure.for_udf(self.name) from None
            except BrokenPoolError:
                broken = True
                raise
            finally:
                self.pool.checkin(worker, broken=broken)
        finally:
            if slots is not None:
                slots.release()
        self.stats.record(max(length, 0), started, leased, time.perf_counter())
        return payload if payload is not None else (null_count, shapes)

    def _unpickled(self, payload: bytearray) -> tuple[str, Any]:
        try:
            return pickle.loads(payload)
        except Exception as error:
            raise UDFResultError(
                f"UDF {self.name!r}: its result cannot be read back in this interpreter ({type(error).__name__}: "
                f"{error}); return values of standard types"
            ) from None

    def _result_of(self, payload: bytearray) -> Any:
        """Turn a pickled result into what DuckDB gets: an array DuckDB converted, or the arrow UDF's object."""
        kind, value = self._unpickled(payload)
        if kind == "object":  # an arrow UDF's result: DuckDB converts and checks it as for its own
            return value
        try:
            return duckdb_conversion.to_array(value, self.duckdb_return_type)
        except duckdb.Error as error:
            raise UDFResultError(
                f"{error} (UDF {self.name!r} returned values DuckDB converts to {self.duckdb_return_type}, "
                "as for its own UDFs)"
            ) from None

    def _learn(self, sizes: Sequence[int], length: int) -> None:
        """Size the next batch's variable-width buffers from this one's, with a quarter to spare."""
        learned = zip(self._bytes_per_row, sizes)
        self._bytes_per_row = [max(known, size * 5 // 4 // length + 1) for known, size in learned]
