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
    Runtime.run() inside the worker (_codecc in C, _codec for the rest)      |
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
DuckDB as a native UDF: ``call_row`` runs one row a call. An ``async def``
UDF's calls are awaited inside the worker, on its event loop
(``duckdb_subinterp._worker.asynchronous``); the batch's call counters come back in the
status slots after the layout's (``COUNTERS_SLOT``).
"""

from __future__ import annotations

import concurrent.futures
import inspect
import math
import pickle
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa
from duckdb.sqltypes import DuckDBPyType

from duckdb_subinterp._engine.arrow import (
    ROW_DESCRIPTOR,
    ArgumentPlan,
    ArgumentTooLarge,
    OutputBuffers,
    ResultLayout,
    UnsupportedType,
    any_argument_plan,
    column_buffers,
    duckdb_conversion,
    output_buffers_type,
    row_column,
)
from duckdb_subinterp._engine.costs import MIN_SAVING, CallCosts, FanOut, Placement, plan_fan_out
from duckdb_subinterp._engine.fanout import Slices, fan_out_executor, rows_of_the_batch
from duckdb_subinterp._engine.pool import Worker, WorkerFailure, WorkerPool, wait_bound
from duckdb_subinterp._engine.stats import UdfStats
from duckdb_subinterp._errors import (
    BrokenPoolError,
    PoolTimeoutError,
    UDFExecutionError,
    UDFResultError,
    UnsupportedTypeError,
    refused_result_error,
)
from duckdb_subinterp._worker.protocol import (
    COUNTERS_SLOT,
    MODE_BUFFERS,
    MODE_PICKLED,
    OUTPUT_SLOT,
    PENDING_PICKLED,
    SIZES_SLOT,
    BatchRequest,
    raised,
)

if TYPE_CHECKING:
    from duckdb_subinterp import _direct
    from duckdb_subinterp._backends.inthread import InThread

# backend="auto": a UDF whose batches are far cheaper here than on the pool
# runs this many batches the lean way (a call and a count, in C) between two
# that are timed and placed again; twice as many plus one each time the
# placement stays (a placed batch costs ~17 us more than a settled one), up
# to SETTLED_MOST (half a million rows of 2,048-row batches). A batch far
# costlier than the estimate ends a streak early, and so does one from another
# DuckDB thread where one was calling (see _direct.SettledCall); more threads
# joining those that took turns in a streak show at its end.
SETTLED_BATCHES = 15
SETTLED_MOST = 255

_SettledCall: type[_direct.SettledCall] | None
try:
    from duckdb_subinterp._direct import SettledCall as _SettledCall
except ImportError:  # not built: every batch goes through the dispatcher
    _SettledCall = None

# backend="auto": a DuckDB thread that ended a batch in the calling thread
# within this many batches' time (at least RECENT_MIN, at most RECENT_MAX
# seconds) is still calling (see BatchDispatcher._threads_calling).
RECENT_BATCHES = 4
RECENT_MIN = 0.0005
RECENT_MAX = 0.5

# backend="auto": a native or vectorized UDF's batch one DuckDB thread calls
# settles in it (see BatchDispatcher._placed_batch) only while it costs less
# than this: above it, what settling saves (~18 us a batch) is under 1%.
SETTLE_MAX_SECONDS = 0.002

# A fanned-out batch's slices wait for workers the pool has yet to start:
# a batch whose cost nothing told yet (a first probe) only once it ran this long
# (a cheap query starts no worker), looking for an idle one this often.
LATE_JOIN_SECONDS = 0.02
LATE_JOIN_POLL_SECONDS = 0.005

# Variable-width results start with this much room per row; then the
# largest size seen, plus a quarter, so a second copy is rare.
_INITIAL_BYTES_PER_ROW = 16


class BatchDispatcher:
    """The arrow UDF registered in DuckDB, running each batch on a pooled worker."""

    # Every batch of two rows or more fans out over the idle workers, whatever it costs (the tests).
    always_fan_out = False
    # Set at registration: the signature DuckDB reads, the function's own (ANY parameters, *args).
    __signature__: inspect.Signature

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
        asynchronous: bool = False,
        fan_out: bool = True,
        in_thread: InThread | None = None,
    ) -> None:
        self.name = name
        self.udf_id = udf_id
        self.pool = pool
        self.result_layout = result_layout
        self.return_type = result_layout.arrow_type
        self.duckdb_return_type = return_type
        self.kind = kind
        self.asynchronous = asynchronous  # an async def UDF: its batches report call counters
        self.stats = UdfStats(asynchronous=asynchronous)
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
        planned = [plan for plan in parameters if plan is not None] if not self._per_batch else []
        self._types = [plan.arrow_type for plan in planned]
        self._descriptors = [plan.descriptor for plan in planned]
        self._signatures = [plan.signature for plan in planned]
        self._outputs = output_buffers_type()
        # Fan-out: a costly batch is cut into slices for idle workers, where
        # the costs of its calls, learned from its own batches and slices
        # (_costs), say it pays. Native and vectorized UDFs only: their rows
        # do not depend on how a batch is cut (an arrow UDF's result may be
        # anything DuckDB then checks as a whole); not with fan_out=False.
        self.costs = CallCosts()
        self._fans_out = fan_out and kind != "arrow" and pool.size > 1
        self._most_workers = min(pool.size, max_workers or pool.size)
        # backend="auto": each batch runs here or on the pool (see _costs.Placement).
        self._in_thread = in_thread
        self._placement = (
            Placement(pool.round_trip_seconds, self.costs, holds_gil=kind != "arrow") if in_thread is not None else None
        )
        self._fan_out_floor = 2 * pool.slice_overhead_seconds / MIN_SAVING  # below it no batch fans out
        self._settled: Callable[[], _direct.SettledCall | None] = lambda: None  # see settled_call
        self._streak = 0  # the last settled streak's length; 0: none since a batch was not settled
        # The DuckDB threads in a call now, and when each last ended one:
        # how many call at once (see _threads_calling).
        self._calling: set[int] = set()
        self._last_ended: dict[int, float] = {}
        # backend="auto" on per-GIL interpreters: called with the module that refused to load in one
        # while the function ran; sets the UDF up on processes and returns what DuckDB calls now.
        self.on_import_refused: Callable[[str], Callable[..., Any]] | None = None

    def __call__(self, *arguments: pa.ChunkedArray) -> Any:
        started = time.perf_counter()
        if not arguments:
            return self._unsized_batch(started)
        length = len(arguments[0])
        if length == 0 and self.kind != "arrow":
            # DuckDB calls arrow UDFs with the rows it left after dropping NULL ones, none included.
            # pa.nulls: pa.array([]) cannot make every type (a UNION's).
            return pa.nulls(0, type=self.return_type)
        try:
            if self._in_thread is not None:
                return self._placed_batch(started, arguments, length)
            return self._pooled_batch(started, arguments, length)
        except UDFExecutionError as error:
            if self.on_import_refused is None or error.refused_module is None:
                raise
            # backend="auto": the function imported a module that refuses per-GIL interpreters
            # while running, where registration could not see it: it runs on processes now.
            return self.on_import_refused(error.refused_module)(*arguments)

    def _pooled_batch(self, started: float, arguments: Sequence[pa.ChunkedArray], length: int) -> Any:
        """Run a batch on the pool: whole, or cut into slices for idle workers where that pays."""
        if self._fans_out:
            plan = self._fan_out_plan(length)
            if plan is not None:
                return self._fanned_batch(started, arguments, length, plan)
        return self._batch(started, arguments, length)

    def _placed_batch(self, started: float, arguments: Sequence[pa.ChunkedArray], length: int) -> Any:
        """backend="auto": run a batch in this DuckDB thread or on the pool, whichever costs less (see _costs)."""
        placement = self._placement
        assert placement is not None
        calling = self._calling
        thread = threading.get_ident()
        calling.add(thread)  # set.add and discard are atomic under the GIL
        settled = self._settled()
        if settled is not None and settled.left == -2:
            # This thread ended another's streak (see _settle): that one calls too if its last
            # settled batch ended lately (an arrow UDF's settled calls are timed in C; a native
            # or vectorized UDF's _settled_batch notes its end itself), not if DuckDB ran the
            # last query on it and this one on another thread.
            other = settled.thread
            self._last_ended[other] = max(settled.ended, self._last_ended.get(other, 0.0))
            settled.left = -1
        try:
            threads = len(calling)  # DuckDB threads in a call now: on the pool their batches run side by side
            parallel = min(self._threads_calling(thread, started, length), self.pool.size)
            if self._fans_out and placement.here_per_row() * length > self._fan_out_floor:
                parallel = self._most_workers  # a batch this costly fans out over the pool's workers
            if placement.on_pool(length, parallel):
                self._streak = 0
                return self._pooled_batch(started, arguments, length)  # timed on the worker (self.costs)
            result, seconds = self._in_thread_batch(started, arguments, length)
            placement.observe_here(length, seconds, threads)
            if settled is not None:
                self._count_settled(settled)
                # A cheap native or vectorized UDF's batch that one DuckDB thread calls
                # (so it does not fan out): the pool would run it as here, a round trip later.
                alone = parallel == 1 and self.kind != "arrow" and seconds < SETTLE_MAX_SECONDS
                if alone or placement.settled_here(length, parallel):
                    self._settle(
                        settled, placement.settled_slow_per_row(length, parallel), thread if parallel == 1 else 0
                    )
                else:
                    self._streak = 0
            return result
        finally:
            calling.discard(thread)
            self._last_ended[thread] = time.perf_counter()

    def _settle(self, settled: _direct.SettledCall, slow_per_row: float, thread: int) -> None:
        """Start a streak of settled batches (see settled_call): longer if the last one ran to its end."""
        streak = self._streak
        if streak == 0:  # the first streak since a batch was placed elsewhere or not settled
            streak = SETTLED_BATCHES
        elif settled.left == 0:  # the last one ran to its end (< 0: a guard ended it, see _direct.SettledCall)
            streak = min(2 * streak + 1, SETTLED_MOST)
        self._streak = settled.left = streak
        settled.thread = thread  # 0: DuckDB's threads take turns, each may call
        if self.kind == "arrow":  # its calls are timed in C (a native UDF's run in _settled_batch)
            settled.slow_per_row = slow_per_row

    def _threads_calling(self, thread: int, now: float, length: int) -> int:
        """Return how many DuckDB threads call this UDF at once: those in a call, and those that lately ended one.

        Batches run here hold the main GIL, so DuckDB's threads take turns
        and are seldom in a call together: a thread that ended a batch within
        the last RECENT_BATCHES batches' time is calling too (its next batch
        may wait for the GIL). On the pool they would run side by side.
        """
        calling = len(self._calling)
        ended = self._last_ended
        if not ended or (len(ended) == 1 and thread in ended):
            return calling  # no other thread ended a batch: none to count (the common case)
        here = self._placement.here_per_row() if self._placement is not None else math.inf
        window = min(max(RECENT_BATCHES * here * length, RECENT_MIN), RECENT_MAX)
        lately = [other for other, at in ended.items() if now - at < window]
        if len(lately) < len(ended) and len(ended) > 64:
            self._last_ended = {other: ended[other] for other in lately}  # threads long gone
        return calling + sum(1 for other in lately if other != thread and other not in self._calling)

    def settled_call(self) -> _direct.SettledCall | None:
        """Return what DuckDB calls for this UDF where its settled batches can be called from C, else None.

        backend="auto" runs a cheap UDF in the calling thread as DuckDB's
        own does; once its batches are timed there and the pool is far off,
        the next SETTLED_BATCHES batches are only run and counted
        (``_direct.SettledCall``), then one goes through this dispatcher
        again to be timed and placed. An arrow UDF's function is called
        from C as it is; a native or vectorized UDF's batch runs through
        ``_settled_batch``, its placement and timing left out.
        """
        in_thread = self._in_thread
        if in_thread is None or _SettledCall is None:
            return None
        if self.kind == "arrow":
            function = in_thread.shared_arrow_function()
            if function is None:
                return None
            settled = _SettledCall(function, self, self._settled_error)
        elif self._parameters or self._per_batch:  # its batches have arguments, so rows to count
            settled = _SettledCall(self._settled_batch, self)
        else:
            return None
        self._settled = weakref.ref(settled)  # it holds this dispatcher: no cycle
        return settled

    def _settled_batch(self, *arguments: pa.ChunkedArray) -> Any:
        """Run a batch of a native or vectorized UDF auto settled in this thread: the run alone (see settled_call)."""
        length = len(arguments[0])
        if length == 0:
            return pa.nulls(0, type=self.return_type)  # as __call__
        try:
            result, run = self._run_here(arguments, length)
        except WorkerFailure as failure:
            raise failure.for_udf(self.name) from None
        self._last_ended[threading.get_ident()] = time.perf_counter()  # for _threads_calling
        placement = self._placement
        if placement is not None and run > 2 * placement.here_per_row() * length:
            # Its rows cost more than they did (a costlier part of the data): place the next batch,
            # which may go to the pool or fan out.
            placement.observe_here(length, run, 1)
            settled = self._settled()
            if settled is not None:
                settled.left = -1  # ended early (see _settle)
        return result

    def _settled_error(self, error: BaseException) -> None:
        raise WorkerFailure.from_names("UdfRaised", str(raised(error)), "").for_udf(self.name) from None

    def drain_settled(self) -> None:
        """Count the batches the settled call ran (see settled_call) in the stats."""
        settled = self._settled()
        if settled is not None:
            self._count_settled(settled)

    def _count_settled(self, settled: _direct.SettledCall) -> None:
        batches, rows = settled.take_counts()
        if batches:
            self.stats.record_in_thread(batches, rows, time.perf_counter())

    def _in_thread_batch(self, started: float, arguments: Sequence[pa.ChunkedArray], length: int) -> tuple[Any, float]:
        """Run a batch in this DuckDB thread, in this interpreter (backend="auto", a cheap UDF).

        Return its result and the seconds to weigh against the pool's: the
        run alone, as the pool's cost model times it on the worker (both
        places pay the same for the argument and result buffers here).
        """
        in_thread = self._in_thread
        assert in_thread is not None
        try:
            if self.kind == "arrow":
                result = in_thread.call_arrow(arguments, length)
                run = time.perf_counter() - started
            else:
                result, run = self._run_here(arguments, length)
        except WorkerFailure as failure:
            raise failure.for_udf(self.name) from None
        finished = time.perf_counter()
        self.stats.record(length, started, started, finished, in_thread=True)
        return result, run

    def _run_here(self, arguments: Sequence[pa.ChunkedArray], length: int) -> tuple[Any, float]:
        """Run a native or vectorized UDF's batch on this thread's inline worker; return its result and run time."""
        in_thread = self._in_thread
        assert in_thread is not None
        worker = in_thread.worker()
        columns, descriptors = self._columns(arguments)
        outputs = self._outputs(self.result_layout, length, self._bytes_per_row)
        request = BatchRequest(self.udf_id, length, columns, outputs.views(), descriptors, MODE_BUFFERS)
        started = time.perf_counter()
        status = self._status_of(worker, length, request, outputs)
        run = time.perf_counter() - started
        return self._array_of(status, outputs), run

    def _columns(self, arguments: Sequence[pa.ChunkedArray]) -> tuple[tuple[Any, ...], tuple[Any, ...] | None]:
        """Return the arguments' column tuples, and their descriptors when they come from the batch."""
        try:
            if self._per_batch:
                plans = [self._plan(index, argument) for index, argument in enumerate(arguments)]
                columns = tuple(
                    [column_buffers(argument, *plan) for argument, plan in zip(arguments, plans, strict=True)]
                )
                return columns, tuple([plan.descriptor for plan in plans])
            return tuple(map(column_buffers, arguments, self._types, self._descriptors, self._signatures)), None
        except ArgumentTooLarge as error:
            raise UDFExecutionError(f"UDF {self.name!r}: {error}") from None

    def _batch(
        self, started: float, arguments: Sequence[pa.ChunkedArray], length: int, *, worker: Worker | None = None
    ) -> Any:
        """Run one batch on one worker (the hot path); on ``worker``, with its slot held, if given."""
        try:
            columns, descriptors = self._columns(arguments)
            outputs = self._outputs(self.result_layout, length, self._bytes_per_row)
        except BaseException:
            if worker is not None:
                self._give_back(worker)
            raise
        request = BatchRequest(self.udf_id, length, columns, outputs.views(), descriptors, MODE_BUFFERS)
        result = self._run(started, length, request, outputs, worker=worker)
        return self._array_of(result, outputs)

    def _give_back(self, worker: Worker) -> None:
        """Check in a worker taken with a slot, unused."""
        self.pool.checkin(worker)
        if self._slots is not None:
            self._slots.release()

    def _array_of(self, result: Any, outputs: OutputBuffers) -> Any:
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

    def call_row(self, *arguments: Any) -> Any:
        """Run the function once for one row; return its value as it is.

        For a native UDF without arguments, and one whose arguments DuckDB
        converts itself (see ``loses_in_arrow``): they come as Python values,
        and go to the worker pickled. DuckDB converts the value returned
        itself, exactly as for its own UDF.
        """
        started = time.perf_counter()
        layout = self.result_layout
        outputs = self._outputs(layout, 1, self._bytes_per_row)
        columns = tuple(map(row_column, arguments))
        descriptors = (ROW_DESCRIPTOR,) * len(arguments) if arguments else None
        request = BatchRequest(self.udf_id, 1, columns, outputs.views(), descriptors, MODE_PICKLED)
        try:
            payload = self._run(started, 1, request, outputs)
        except UDFExecutionError as error:
            if self.on_import_refused is None or error.refused_module is None:
                raise
            return self.on_import_refused(error.refused_module)(*arguments)  # see __call__
        _, values = self._unpickled(payload)
        return values[0]

    def _unsized_batch(self, started: float) -> Any:
        """Run a batch UDF without arguments: DuckDB does not say the row count, and checks the result's."""
        outputs = self._outputs(self.result_layout, 1, self._bytes_per_row)
        return self._result_of(
            self._run(started, 0, BatchRequest(self.udf_id, -1, (), outputs.views(), None, MODE_PICKLED), outputs)
        )

    def _take_slot(self, slots: threading.BoundedSemaphore) -> None:
        """Wait for one of this UDF's max_workers slots."""
        if not slots.acquire(timeout=wait_bound(self.pool.timeout)):
            raise PoolTimeoutError(
                f"UDF {self.name!r}: no batch of the {self.max_workers} it may run at once (max_workers) "
                f"finished within {self.pool.timeout:g} s; raise max_workers= or the pool's timeout="
            )

    def _run(
        self,
        started: float,
        length: int,
        request: BatchRequest,
        outputs: OutputBuffers,
        *,
        worker: Worker | None = None,
    ) -> Any:
        """Run ``request`` on a worker (``worker``, with its slot held, if given).

        Return (null count, child shapes), or the bytes of a pickled payload.
        """
        # A plain try/finally: contextlib's generator costs ~8 us a batch here.
        slots = self._slots
        if slots is not None and worker is None:
            self._take_slot(slots)
        try:
            if worker is None:
                worker = self._checkout()
            leased = time.perf_counter()
            result = self._on_worker(worker, length, request, outputs)
        finally:
            if slots is not None:
                slots.release()
        finished = time.perf_counter()
        self.stats.record(max(length, 0), started, leased, finished)
        if length > 0:
            self._learn_cost(finished - leased, length)
        return result

    def _checkout(self) -> Worker:
        try:
            return self.pool.checkout(self.udf_id, self.name)
        except WorkerFailure as failure:  # a worker started now could not load the UDF
            raise failure.for_udf(self.name) from None

    def _on_worker(self, worker: Worker, length: int, request: BatchRequest, outputs: OutputBuffers) -> Any:
        """Run ``request`` on ``worker``, checked out, and give it back; see ``_run`` for the result."""
        broken = False
        try:
            return self._status_of(worker, length, request, outputs)
        except WorkerFailure as failure:
            raise failure.for_udf(self.name) from None
        except BrokenPoolError:
            broken = True
            raise
        finally:
            self.pool.checkin(worker, broken=broken)

    def _status_of(self, worker: Worker, length: int, request: BatchRequest, outputs: OutputBuffers) -> Any:
        """Run ``request`` on ``worker``, checked out, and keep it; see ``_run`` for the result."""
        layout = self.result_layout
        # The status lives in the worker: read it before checkin.
        status = worker.run(request)
        null_count, pending = status[0], status[1]
        if self.asynchronous:
            self.stats.record_calls(*status[COUNTERS_SLOT:OUTPUT_SLOT])
        if pending == PENDING_PICKLED:
            payload = bytearray(status[SIZES_SLOT])
            worker.copy_pending((memoryview(payload),))
            return payload
        if pending or layout.width is None:
            sizes = status[SIZES_SLOT : SIZES_SLOT + layout.buffer_count]
            if pending:
                outputs.grow(sizes)
                worker.copy_pending(outputs.views())
            if layout.width is None:
                self._learn(sizes, length)
        shapes = status[SIZES_SLOT + layout.buffer_count : layout.status_slots] if layout.nested else ()
        return null_count, shapes

    def _learn_cost(self, seconds: float, rows: int) -> None:
        self.costs.observe(rows, seconds)

    def _fan_out_plan(self, length: int) -> FanOut | None:
        """Return how to cut a batch of ``length`` rows over the pool, or None to run it whole."""
        pool = self.pool
        if self.always_fan_out:
            slices = min(length, self._most_workers * pool.slices_per_worker)
            return FanOut(self._most_workers, slices) if slices > 1 else None
        return plan_fan_out(
            self.costs,
            length,
            self._most_workers,
            pool.slice_overhead_seconds,
            pool.slices_per_worker,
            unseen=self.kind == "native",
            # An async UDF's rows wait at once: their cost is not the sum of its rows'.
            per_row_calls=self.kind == "native" and not self.asynchronous,
        )

    def _fanned_batch(self, started: float, arguments: Sequence[pa.ChunkedArray], length: int, plan: FanOut) -> Any:
        """Run a costly batch in slices, on this thread's worker and on idle ones at once; join in order.

        The slices are taken in row order by whichever worker is free, this
        thread's included, so a worker slowed by something else takes fewer.
        Their results are joined in row order; where slices fail, the error
        of the first failing one is raised, as the serial batch would have
        raised at its first failing row.
        """
        wanted = plan.workers - 1  # this thread runs slices itself
        slots = self._slots
        # This thread's own slot and worker first, as for any batch; the helpers' only if spare and idle.
        if slots is not None:
            self._take_slot(slots)
        try:
            own = self._checkout()
        except BaseException:
            if slots is not None:
                slots.release()
            raise
        leased = time.perf_counter()
        try:
            if slots is not None:
                wanted = min(wanted, self._spare_slots(slots, wanted))
            # A batch whose cost nothing told yet uses the workers there are: it starts none (see _late_slices).
            grow = self.costs.known
            helpers = self.pool.take_idle(self.udf_id, self.name, wanted, grow=grow) if wanted > 0 else []
        except BaseException:
            self._give_back(own)
            raise
        if slots is not None:
            for _ in range(wanted - len(helpers)):
                slots.release()
        # Workers the pool has yet to start join as they become idle (see _late_slices), but
        # not a check's (plan.idle_only): its two slices are to run at once, and a worker that
        # came after this thread ran both would make a cost per call paid twice in a row. Such
        # a check runs whole; the worker take_idle started meanwhile takes a later one.
        late = wanted - len(helpers) if self.pool.may_grow and not plan.idle_only else 0
        if not helpers and not late:
            return self._batch(started, arguments, length, worker=own)
        self.stats.record_fanned(started, leased)
        # The plan's slices per worker, for the workers there are or may be.
        per_worker = max(plan.slices // plan.workers, 1)
        workers = len(helpers) + late + 1
        slices = Slices(arguments, length, min(length, per_worker * workers), probe=plan.probe, workers=workers)
        futures: list[concurrent.futures.Future[None]] = []
        try:
            executor = fan_out_executor()
            for worker in helpers:  # one at a time: after an error, len(futures) says which were handed a job
                futures.append(executor.submit(self._run_slices, worker, slices, lent=True))  # noqa: PERF401
            # A batch whose cost nothing told yet starts a worker only once it proved costly
            # (not a probe planned on a kept split: see CallCosts.fit).
            costs = self.costs
            delay = LATE_JOIN_SECONDS if not costs.known or (plan.probe and not costs.kept) else 0.0
            for _ in range(late):
                futures.append(executor.submit(self._late_slices, slices, delay))  # noqa: PERF401
        except BaseException:
            slices.stop()
            for worker in [*helpers[len(futures) :], own]:  # each submitted helper gives its worker back itself
                self._give_back(worker)
            raise
        self._run_slices(own, slices, lent=False)
        deadline = time.monotonic() + self.pool.timeout
        for future in futures:
            try:
                future.result(timeout=max(0.0, deadline - time.monotonic()))
            except concurrent.futures.TimeoutError:
                slices.fail(
                    slices.count,
                    PoolTimeoutError(
                        f"UDF {self.name!r}: a slice of a batch did not finish within the pool's "
                        f"{self.pool.timeout:g} s"
                    ),
                )
        arrays = slices.results()
        if any(not array.type.equals(self.return_type) for array in arrays):
            # A slice DuckDB converted (see DuckDBConversion) has DuckDB's Arrow type.
            arrays = [array.cast(self.return_type) for array in arrays]
        return pa.concat_arrays(arrays)

    def _late_slices(self, slices: Slices, delay: float) -> None:
        """Run slices of a fanned-out batch on a worker that was not idle when it was cut.

        In a helper thread: after ``delay`` seconds, while slices are left,
        take a worker as soon as one is idle (starting one in the background
        where the pool is not full), then run slices on it as the others do.
        A lazy pool's first costly batch is so cut over workers started for
        it, not run on the one there was. Where no worker comes (the pool's
        timeout, a start that failed), the other workers run every slice; an
        error taking one fails the batch, as it would in the calling thread.
        """
        start_at = time.monotonic() + delay
        deadline = start_at + self.pool.timeout
        grow = True  # one start asked for at most
        while slices.left() and time.monotonic() < deadline:
            if time.monotonic() >= start_at:
                coming = self.pool.may_grow  # read first: a start that ends meanwhile leaves its worker idle
                taken = self.pool.take_idle(self.udf_id, self.name, 1, grow=grow)
                grow = False
                if not taken and not coming:
                    return  # no worker is to start (the pool is full, or closed): the others run the slices
                if taken:
                    if self._slots is not None and not self._spare_slots(self._slots, 1):
                        self.pool.checkin(taken[0], lent=True)
                        return
                    self._run_slices(taken[0], slices, lent=True)
                    return
            time.sleep(LATE_JOIN_POLL_SECONDS)

    def _spare_slots(self, slots: threading.BoundedSemaphore, wanted: int) -> int:
        """Take up to ``wanted`` of this UDF's max_workers slots without waiting; return how many."""
        taken = 0
        while taken < wanted and slots.acquire(blocking=False):
            taken += 1
        return taken

    def _run_slices(self, worker: Worker, slices: Slices, *, lent: bool) -> None:
        """Run the slices ``slices`` hands out on ``worker``, checked out with its slot, until none is left.

        Runs in this thread for its own worker, and in a helper thread for
        each idle one; a slice that fails stops this worker's turn.
        """
        broken = False
        try:
            while (index := slices.take()) is not None:
                started = time.perf_counter()
                length = slices.length(index)
                try:
                    arguments = slices.arguments(index)
                    columns, descriptors = self._columns(arguments)
                    outputs = self._outputs(self.result_layout, length, self._bytes_per_row)
                    request = BatchRequest(self.udf_id, length, columns, outputs.views(), descriptors, MODE_BUFFERS)
                    result = self._status_of(worker, length, request, outputs)
                    slices.done(index, self._array_of(result, outputs))
                except WorkerFailure as failure:
                    error = rows_of_the_batch(failure, slices.start(index)).for_udf(self.name)
                    error.__suppress_context__ = True
                    slices.fail(index, error)
                    return
                except BaseException as error:
                    broken = isinstance(error, BrokenPoolError)
                    slices.fail(index, error)
                    return
                finished = time.perf_counter()
                self.stats.record_slice(length, finished - started, finished)
                self._learn_cost(finished - started, length)
        finally:
            self.pool.checkin(worker, broken=broken, lent=lent)
            if self._slots is not None:
                self._slots.release()

    def _unpickled(self, payload: bytearray) -> tuple[str, Any]:
        try:
            result: tuple[str, Any] = pickle.loads(payload)  # a PickledResult's payload
            return result
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
            raise refused_result_error(
                error,
                f"{error} (UDF {self.name!r} returned values DuckDB converts to {self.duckdb_return_type}, "
                "as for its own UDFs)",
            ) from None

    def _learn(self, sizes: Sequence[int], length: int) -> None:
        """Size the next batch's variable-width buffers from this one's, with a quarter to spare."""
        learned = zip(self._bytes_per_row, sizes, strict=True)
        self._bytes_per_row = [max(known, size * 5 // 4 // length + 1) for known, size in learned]
