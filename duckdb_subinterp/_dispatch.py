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
"""

from __future__ import annotations

import inspect
import itertools
import threading
import time
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from duckdb_subinterp._arrow import ResultLayout, column_buffers, layout_signature, output_buffers_type
from duckdb_subinterp._codec import Descriptor
from duckdb_subinterp._errors import BrokenPoolError, PoolTimeoutError
from duckdb_subinterp._pool import WorkerFailure, WorkerPool
from duckdb_subinterp._runtime import SIZES_SLOT

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
        argument_types: list[pa.DataType],
        argument_descriptors: list[Descriptor],
        result_layout: ResultLayout,
        varargs: bool,
        max_workers: int | None = None,
    ) -> None:
        self.name = name
        self.udf_id = udf_id
        self.pool = pool
        self.argument_types = argument_types
        self.argument_descriptors = argument_descriptors
        self.result_layout = result_layout
        self.return_type = result_layout.arrow_type
        self.stats = UdfStats()
        # max_workers caps this UDF's batches in flight across all DuckDB
        # threads and connections, whatever the pool's size.
        self.max_workers = max_workers
        self._slots = threading.BoundedSemaphore(max_workers) if max_workers is not None else None
        # Learned per output buffer (all nodes, depth first) from the batches so far.
        self._bytes_per_row = [_INITIAL_BYTES_PER_ROW] * result_layout.buffer_count
        # Per argument, for map(); varargs repeat the one declared type.
        self._types = itertools.repeat(argument_types[0]) if varargs else argument_types
        self._descriptors = itertools.repeat(argument_descriptors[0]) if varargs else argument_descriptors
        signatures = [layout_signature(arrow_type) for arrow_type in argument_types]
        self._signatures = itertools.repeat(signatures[0]) if varargs else signatures
        self._outputs = output_buffers_type()
        kind = inspect.Parameter.VAR_POSITIONAL if varargs else inspect.Parameter.POSITIONAL_ONLY
        names = ["args"] if varargs else [f"arg{index}" for index in range(len(argument_types))]
        # DuckDB reads the arity (and varargs) from the callable's signature.
        self.__signature__ = inspect.Signature([inspect.Parameter(name, kind) for name in names])

    def __call__(self, *arguments: pa.ChunkedArray) -> pa.Array:
        started = time.perf_counter()
        length = len(arguments[0])
        if length == 0:
            return pa.array([], type=self.return_type)
        columns = tuple(map(column_buffers, arguments, self._types, self._descriptors, self._signatures))
        layout = self.result_layout
        outputs = self._outputs(layout, length, self._bytes_per_row)
        # A plain try/finally: contextlib's generator costs ~8 us a batch here.
        slots = self._slots
        if slots is not None and not slots.acquire(timeout=self.pool.timeout):
            raise PoolTimeoutError(
                f"UDF {self.name!r}: no batch of the {self.max_workers} it may run at once (max_workers) "
                f"finished within {self.pool.timeout:g} s; raise max_workers= or the pool's timeout="
            )
        try:
            worker = self.pool.checkout(self.udf_id, self.name)
            broken = False
            try:
                leased = time.perf_counter()
                # The status lives in the worker: read it before checkin.
                status = worker.run((self.udf_id, length, columns, outputs.views()))
                null_count, pending = status[0], status[1]
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
        result = outputs.to_array(null_count, shapes)
        self.stats.record(length, started, leased, time.perf_counter())
        return result

    def _learn(self, sizes: Sequence[int], length: int) -> None:
        """Size the next batch's variable-width buffers from this one's, with a quarter to spare."""
        learned = zip(self._bytes_per_row, sizes)
        self._bytes_per_row = [max(known, size * 5 // 4 // length + 1) for known, size in learned]
