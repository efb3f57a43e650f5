"""Workers that are per-GIL (isolated) interpreters in this process.

The DuckDB thread that calls the UDF runs the batch itself: it switches to
the interpreter, which releases the main GIL and takes the interpreter's
own, so N DuckDB threads on N interpreters run Python in parallel. No
worker threads, no hand-off between threads (a pipe round trip to a thread
parked inside the interpreter measured ~27 us).

The switch is ``_direct.DirectCall`` (C, main side only): it keeps one
thread state per DuckDB thread and interpreter. ``_interpreters.exec``,
the only switch Python 3.13 offers, makes and frees a thread state every
call: ~10 us in a loop. The bench's dispatch overhead (identity UDF on
BIGINT, threads=1) is 71.1 us a batch through exec and 23.3 us through
DirectCall, same run (bench/results/dev-2core-epyc). Where the extension
was not built, batches go through ``_interpreters.exec``, with one warning.

Python 3.13 ships the private ``_interpreters`` module only; 3.14 adds the
public ``concurrent.interpreters`` on top of the same functions, which are
all this module uses besides DirectCall.

What cannot be left to Python's own teardown (stopping a batch and ending
a UDF's threads go through DirectCall: the ``direct=False`` path has neither):

- A batch that runs too long, or when Ctrl-C is pressed, is stopped by the
  pool's watchdog: DirectCall raises ``BatchStopped`` asynchronously in the
  thread running it, and the worker is retired (the UDF stopped at an
  arbitrary bytecode). Code busy in C is not stopped.
- Threads a UDF started (a refresher a class UDF's ``__init__`` starts)
  would make ``Py_EndInterpreter`` wait for them forever. Closing a worker
  raises SystemExit in them and gives them ``THREAD_GRACE``; an interpreter
  whose threads outlive that is kept, ready to be torn down at exit
  (``_abandon`` in the bootstrap), and destroyed later if they end.
- At exit, batches still running are stopped and every interpreter is
  destroyed; what cannot be (a batch busy in C code, a thread holding its
  interpreter's GIL) would hang or crash Python's teardown, so the process
  then ends with ``os._exit(EXIT_STATUS)``, saying why on stderr.
- ``os.fork()`` with a subinterpreter alive crashes the child on CPython
  3.13 (python/cpython#139759): every interpreter is destroyed before a
  fork and started again on demand after it.

One thing, a little over 600 lines: the interpreter worker, its bootstrap
and what its teardown needs; the exit and fork hooks are its pool class's
(called by ``_engine.lifecycle``).
"""

from __future__ import annotations

import _interpreters
import contextlib
import functools
import math
import os
import pickle
import sys
import threading
import time
import warnings
import weakref
from array import array
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, cast

from duckdb_subinterp._engine.lifecycle import SETTLE, let_queries_fail
from duckdb_subinterp._engine.pool import (
    DEFAULT_TIMEOUT,
    THREAD_GRACE,
    Worker,
    WorkerFailure,
    WorkerPool,
    close_all,
    live_pools,
    write_worker_output,
)
from duckdb_subinterp._engine.watchdog import STOP_GRACE
from duckdb_subinterp._errors import BrokenPoolError, CompiledPathUnavailableWarning
from duckdb_subinterp._worker.protocol import OUTPUT_SIZE_SLOT, OUTPUT_SLOT, STATUS_SLOTS, BatchRequest
from duckdb_subinterp._worker.runtime import main_streams

if TYPE_CHECKING:
    from duckdb_subinterp import _direct

DirectCall: type[_direct.DirectCall] | None
sigint_count: Callable[[], int] | None
watch_sigint: Callable[[], bool] | None
try:
    from duckdb_subinterp._direct import DirectCall, sigint_count, watch_sigint
except ImportError:  # not built: no C compiler at install time
    DirectCall = sigint_count = watch_sigint = None

EXIT_STATUS = 70  # os._exit status when interpreters cannot be torn down at exit (EX_SOFTWARE)
_last_stop = -math.inf  # time.monotonic() of the last batch stopped


PACKAGE_DIR = str(Path(__file__).resolve().parents[1])  # duckdb_subinterp/

# The package's __init__ imports duckdb and pyarrow, which cannot load in an
# isolated interpreter, so the interpreter gets a bare package object whose
# path lets it import the pure-Python submodules (_codec, _worker) only.
_BOOTSTRAP = """
import sys, types
import _interpreters  # memoryviews are shareable only once this is imported
_package = types.ModuleType("duckdb_subinterp")
_package.__path__ = [_package_dir]
sys.modules["duckdb_subinterp"] = _package
sys.path[:] = list(_sys_path)
# UDF modules decorate with @duckdb_subinterp.export (and export_aggregate, export_table_function); stdlib-only.
from duckdb_subinterp import _export
_package.export = _export.export
_package.export_aggregate = _export.export_aggregate
_package.export_table_function = _export.export_table_function
from duckdb_subinterp._worker.runtime import Runtime as _Runtime
del _package, _package_dir, _sys_path, _export
# What DirectCall.stop raises into a runaway batch: the one exception the runtime does not catch.
from duckdb_subinterp._worker.protocol import BatchStopped

def _foreign_threads(request):
    '''Return the idents of live threads the UDFs started, or None: Py_EndInterpreter waits for them.'''
    threading = sys.modules.get("threading")
    if threading is None:
        return None
    current = threading.get_ident()
    idents = tuple(
        thread.ident
        for thread in threading.enumerate()
        if thread.ident != current
        and not thread.daemon
        and not isinstance(thread, (threading._MainThread, threading._DummyThread))
    )
    return idents or None

def _abandon(request):
    '''Let this interpreter be torn down at exit although threads a UDF started still run.

    Py_EndInterpreter, which Python's exit runs on every interpreter left,
    first calls threading._shutdown (joining those threads: forever), then
    refuses to go on while another thread state exists. At exit the runtime
    is finalizing: a thread that takes this interpreter's GIL again then
    exits on the spot without touching its thread state, as the main
    interpreter's daemon threads do. So at exit only, their thread states
    are deleted here, as CPython deletes those of daemon threads; any other
    time the join stays (the interpreter is destroyed once they ended).
    '''
    import ctypes, threading
    api = ctypes.pythonapi
    pointer = ctypes.c_void_p
    for name, result, arguments in (
        ("PyThreadState_Get", pointer, []),
        ("PyInterpreterState_Get", pointer, []),
        ("PyInterpreterState_ThreadHead", pointer, [pointer]),
        ("PyThreadState_Next", pointer, [pointer]),
        ("PyThreadState_Clear", None, [pointer]),
        ("PyThreadState_Delete", None, [pointer]),
    ):
        function = getattr(api, name)
        function.restype, function.argtypes = result, arguments
    join = threading._shutdown

    def _shutdown():
        if not sys.is_finalizing():
            return join()
        current = api.PyThreadState_Get()
        others = []
        state = api.PyInterpreterState_ThreadHead(api.PyInterpreterState_Get())
        while state:
            if state != current:
                others.append(state)
            state = api.PyThreadState_Next(state)
        for state in others:
            api.PyThreadState_Clear(state)
            api.PyThreadState_Delete(state)

    threading._shutdown = _shutdown
"""

# DirectCall calls _run_batch and _copy_pending; an exception comes back as
# (type name, message, traceback text), like the snapshot exec returns.
_START_RUNTIME = """
from duckdb_subinterp._worker.runtime import CapturedOutput as _CapturedOutput
_rt = _Runtime(_status.cast("q"), compiled=_compiled_codec)
_run_batch, _copy_pending = _rt.run, _rt.copy_pending
# What the UDFs print goes to the main interpreter's streams (see CapturedOutput).
_output = _CapturedOutput(_rt.status, _streams)
_output.install()
def _pack_output(request):
    _output.pack()
def _copy_output(request):
    _output.copy_into(request[0])
del _status, _compiled_codec, _streams, _CapturedOutput
"""
_RUN = compile("try:\n    _rt.run(_request)\nfinally:\n    del _request\n", "<duckdb_subinterp run>", "exec")
_COPY = compile("try:\n    _rt.copy_pending(_outputs)\nfinally:\n    del _outputs\n", "<duckdb_subinterp copy>", "exec")
_LOAD = compile(
    "try:\n    _rt.load(_udf_id, _spec)\nfinally:\n    del _udf_id, _spec\n", "<duckdb_subinterp load>", "exec"
)
_UNLOAD = compile("_rt.unload(_udf_id)\ndel _udf_id\n", "<duckdb_subinterp unload>", "exec")
_PACK_OUTPUT = compile("del _request\n_output.pack()\n", "<duckdb_subinterp pack output>", "exec")
_COPY_OUTPUT = compile(
    "try:\n    _output.copy_into(_request[0])\nfinally:\n    del _request\n", "<duckdb_subinterp copy output>", "exec"
)

_ISOLATED: tuple[Literal["isolated"]] = ("isolated",)  # create()'s config, for map() (see InterpreterWorker)
_THREADS_LEFT = compile("if _foreign_threads(None):\n    raise RuntimeError", "<duckdb_subinterp threads>", "exec")


class InterpreterWorker(Worker):
    """One isolated interpreter with its own GIL and a loaded ``Runtime``.

    ``compiled_codec=False`` makes its runtime use the pure-Python codec, as
    where ``_codecc`` was not built.
    """

    def __init__(self, *, direct: bool = True, compiled_codec: bool = True) -> None:
        super().__init__()
        # Before the interpreter exists: once it does, only code under the try below may run
        # here, or a KeyboardInterrupt landing there would leak it.
        self._stopped: WorkerFailure | None = None  # why the batch stop() stopped will fail
        self._threads_asked: float | None = None  # when begin_close asked leftover threads to end
        self._threads_left: tuple[int, ...] | None = None  # the threads it found (None: no answer)
        self._close_lock = threading.Lock()
        self._closed = False
        created: list[int] = []
        try:
            # A signal that arrives while create() runs (milliseconds) raises
            # KeyboardInterrupt at the next bytecode, which would drop the new
            # id and leak the interpreter. extend(map(...)) stores the id from C
            # code, before any bytecode can run.
            created.extend(map(_interpreters.create, _ISOLATED))
            self.interpreter_id = created[0]
            self.description = f"interpreter {self.interpreter_id}"
            self._status = array("q", bytes(8 * STATUS_SLOTS))
            self._exec(_BOOTSTRAP, {"_package_dir": PACKAGE_DIR, "_sys_path": tuple(sys.path)})
            # A view of the worker's status array, for the interpreter's whole
            # life; shareable now that the bootstrap imported _interpreters.
            self._exec(
                _START_RUNTIME,
                {
                    "_status": memoryview(self._status).cast("B"),
                    "_compiled_codec": compiled_codec,
                    "_streams": main_streams(),
                },
            )
            self._direct = _direct_call(self.interpreter_id) if direct else None
            # close() stops a batch that outlives its grace, through DirectCall.
            self.abortable = self._direct is not None
            _live_workers.add(self)
        except BaseException:
            _live_workers.discard(self)
            for interpreter_id in created:
                _destroy(interpreter_id)
            raise

    def _exec(self, code: Any, shared: dict[str, Any]) -> None:
        snapshot = _interpreters.exec(self.interpreter_id, code, shared)
        if snapshot is not None:
            raise WorkerFailure.from_names(snapshot.type.__name__, snapshot.msg, snapshot.errdisplay)

    def load(self, udf_id: int, spec: tuple[Any, ...]) -> None:
        try:
            self._exec(_LOAD, {"_udf_id": udf_id, "_spec": spec})
        except BaseException:
            if self._status[OUTPUT_SLOT]:
                self._hand_over_output(quiet=True)
            raise
        if self._status[OUTPUT_SLOT]:  # a class UDF's __init__ printed
            self._hand_over_output()

    def unload(self, udf_id: int) -> None:
        self._exec(_UNLOAD, {"_udf_id": udf_id})

    def _enter(self, entry_point: str, exec_code: Any, name: str, value: tuple[Any, ...]) -> None:
        """Call the interpreter's ``entry_point`` with ``value`` through DirectCall, else exec ``exec_code``."""
        if self._direct is None:
            self._exec(exec_code, {name: value})
            return
        # _run_batch and _copy_pending return None; an exception comes back as (type name, message, traceback).
        failure = cast("tuple[str, str, str] | None", self._direct.call(entry_point, value))
        if failure is not None:
            raise self._failure(failure)

    def _failure(self, failure: tuple[str, str, str]) -> WorkerFailure:
        if failure[0] == "BatchStopped":
            # Stopped at an arbitrary bytecode: what the UDF was changing may
            # be half changed, so this interpreter is not used again.
            self.broken = True
            stopped, self._stopped = self._stopped, None
            if stopped is not None:
                return stopped
        return WorkerFailure.from_names(*failure)

    def run(self, request: BatchRequest) -> Sequence[int]:
        try:
            # As a plain tuple: what crosses into an interpreter is shareable values only (a tuple subclass is not).
            self._enter("_run_batch", _RUN, "_request", tuple(request))
        except BaseException:
            if self._status[OUTPUT_SLOT]:
                self._hand_over_output(quiet=True)
            raise
        # An index into the status, no call: a batch that printed nothing costs nothing more.
        if self._status[OUTPUT_SLOT]:
            self._hand_over_output()
        return self._status

    def _hand_over_output(self, *, quiet: bool = False) -> None:
        """Write what code in this interpreter printed to the main interpreter's streams, now.

        ``quiet``: a failure to write is not raised (where the batch's own
        error is, or at close, which must not raise).
        """
        try:
            self._enter("_pack_output", _PACK_OUTPUT, "_request", ())
            packed = bytearray(self._status[OUTPUT_SIZE_SLOT])
            self._enter("_copy_output", _COPY_OUTPUT, "_request", (memoryview(packed),))
            write_worker_output(pickle.loads(packed))
        except Exception:
            if not quiet:
                raise

    def copy_pending(self, outputs: Sequence[memoryview]) -> None:
        self._enter("_copy_pending", _COPY, "_outputs", tuple(outputs))

    def running_batch(self) -> tuple[int, bool] | None:
        running = None if self._direct is None else self._direct.running
        if running is None or sigint_count is None:  # both come with the extension
            return None
        number, sigints = running
        return number, sigints != sigint_count()

    def stop(self, batch: Hashable, failure: WorkerFailure) -> bool:
        global _last_stop
        self._stopped = failure
        if self._direct is None:  # not abortable: running_batch() gave no batch to stop
            return False
        try:
            stopped = self._direct.stop(cast(int, batch), "BatchStopped")  # the call number running_batch() gave
        except Exception:  # detached meanwhile: nothing runs there
            return False
        if stopped:
            _last_stop = time.monotonic()
        return stopped

    def abort(self, reason: str) -> None:
        running = None if self._direct is None else self._direct.running  # None: not abortable, never asked
        if running is not None:  # stopping waits for the interpreter's GIL: not under the pool's lock
            failure = WorkerFailure(BrokenPoolError, f"the batch {reason}")
            threading.Thread(target=self.stop, args=(running[0], failure), daemon=True).start()

    def begin_close(self) -> None:
        """Raise SystemExit in the threads the UDFs started here, so they end while other workers close too."""
        if not self._closed:
            self._ask_threads_to_end()

    def _ask_threads_to_end(self) -> None:
        if self._direct is None or self._threads_asked is not None:
            return
        self._threads_asked = time.monotonic()
        threads = self._threads_left = self._foreign_threads(self._direct)
        if threads:
            _bounded(self._direct.raise_in_threads, threads)

    def close(self) -> None:
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        _live_workers.discard(self)
        if self._direct is not None:
            ended = self._threads_ended(self._direct)
            if self._status[OUTPUT_SLOT]:
                # What the UDFs' own threads printed since the last batch. Bounded: such a
                # thread may hold this interpreter's GIL, which a call here waits for.
                _bounded(functools.partial(self._hand_over_output, quiet=True))
            if not ended:
                self._abandon(self._direct)
                return
            try:
                # Py_EndInterpreter refuses an interpreter with thread states
                # besides its own: DirectCall's go first.
                self._direct.detach()
            except RuntimeError:  # a batch is still running in it: leave it
                return
        elif self._status[OUTPUT_SLOT]:
            self._hand_over_output(quiet=True)
        _destroy(self.interpreter_id)

    def forget(self) -> None:
        # The parent's interpreter is not in this process (deleted by CPython's
        # fork handling, or destroyed by the pool before the fork).
        self._closed = True
        _live_workers.discard(self)
        if self._direct is not None:
            self._direct.forget()

    def _foreign_threads(self, direct: _direct.DirectCall) -> tuple[int, ...] | None:
        """Return the idents of live threads the UDFs started here; None if the interpreter did not say in time."""
        done, reply = _bounded(direct.call, "_foreign_threads", ())
        # The idents (never empty) or None; an exception comes back as (type name, message, traceback).
        result = cast("tuple[int, ...] | tuple[str, str, str] | None", reply)
        if not done or (result is not None and isinstance(result[0], str)):  # no answer, or it raised
            return None
        return result or ()

    def _threads_ended(self, direct: _direct.DirectCall) -> bool:
        """Ask the threads the UDFs started here to end; return whether all did within THREAD_GRACE."""
        self._ask_threads_to_end()
        if self._threads_left == ():  # none when asked: none could have started since
            return True
        asked = self._threads_asked
        assert asked is not None  # _ask_threads_to_end() asked: this worker has a DirectCall
        deadline = asked + THREAD_GRACE
        while (threads := self._foreign_threads(direct)) != ():
            if threads is None or time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True

    def _abandon(self, direct: _direct.DirectCall) -> None:
        """Keep an interpreter whose UDF threads outlived the grace: destroyed if they end, torn down at exit."""
        done, failure = _bounded(direct.call, "_abandon", ())
        ready = done and failure is None
        try:
            direct.detach()
        except RuntimeError:
            ready = False
        _abandoned.append(_AbandonedInterpreter(self.interpreter_id, direct, ready))


# Every worker whose interpreter is not destroyed yet: closed at exit, and
# before a fork. Python's own teardown of interpreters left at exit fails
# on the thread states DirectCall keeps, and hangs on threads UDFs started.
_live_workers: weakref.WeakSet[InterpreterWorker] = weakref.WeakSet()


class _AbandonedInterpreter(NamedTuple):
    """An interpreter kept at close because threads a UDF started outlived the grace."""

    interpreter_id: int
    direct: _direct.DirectCall  # detached, it keeps buffers the interpreter may still view
    ready_for_exit: bool  # its thread states are released at exit (see _abandon); else os._exit


_abandoned: list[_AbandonedInterpreter] = []


def _bounded[*Arguments, Result](
    function: Callable[[*Arguments], Result], *arguments: *Arguments, timeout: float = THREAD_GRACE
) -> tuple[bool, Result | None]:
    """Call ``function`` on a helper thread; return (whether it returned within ``timeout``, its result).

    For calls that take an interpreter's GIL, which a thread a UDF started
    may hold for as long as its C code runs. One that raised did not return.
    """
    outcome: list[Result] = []

    def call() -> None:
        with contextlib.suppress(Exception):  # detached, or a batch runs in it: no answer
            outcome.append(function(*arguments))

    helper = threading.Thread(target=call, name="duckdb_subinterp close", daemon=True)
    helper.start()
    helper.join(timeout)
    return (True, outcome[0]) if outcome else (False, None)


def _reap_abandoned() -> None:
    """Destroy kept interpreters whose UDF threads have ended by now."""
    for kept in list(_abandoned):
        done, snapshot = _bounded(_interpreters.exec, kept.interpreter_id, _THREADS_LEFT, timeout=0.5)
        if done and snapshot is None:
            _destroy(kept.interpreter_id)
            _abandoned.remove(kept)


def _direct_call(interpreter_id: int) -> _direct.DirectCall | None:
    """Return the DirectCall into ``interpreter_id``, or None (warning once) where it was not built."""
    if DirectCall is None:
        _warn_direct_unavailable()
        return None
    return DirectCall(interpreter_id)


@functools.cache
def _warn_direct_unavailable() -> None:
    warnings.warn(
        "duckdb_subinterp._direct (a C extension) was not built, so every batch enters its interpreter through "
        "_interpreters.exec, ~50 us slower; reinstall the package where a C compiler is available",
        CompiledPathUnavailableWarning,
        stacklevel=4,
    )


def _close_live_workers(pools: Sequence[InterpreterPool]) -> None:
    """Destroy every interpreter before Python's teardown reaches it; end the process where one cannot be.

    At exit, after every pool was closed (``_engine.lifecycle``): what is
    left are workers no pool holds any more (given up by the watchdog, or
    whose pool was collected) and batches the pools could not stop.
    """
    workers = list(_live_workers)
    # Batches still running (a given-up worker's, one the pools' stop missed)
    # are stopped; their DuckDB threads close the workers when they return.
    exiting = WorkerFailure(BrokenPoolError, "the process is exiting")
    stopped = []
    for worker in workers:
        batch = worker.running_batch()
        if batch is not None:
            stopped.append(worker)
            threading.Thread(target=worker.stop, args=(batch[0], exiting), daemon=True).start()
    if stopped:
        # Until they are given back too: then each says which thread ran it.
        deadline = time.monotonic() + STOP_GRACE
        while time.monotonic() < deadline and (
            any(worker.running_batch() for worker in workers) or any(pool._busy & set(stopped) for pool in pools)
        ):
            time.sleep(0.01)
    # The threads whose queries just failed (stopped here) get to finish
    # them: one still in DuckDB when Python's teardown begins is ended there
    # by CPython, as a daemon thread is, which aborts the process (see
    # _engine.lifecycle).
    if time.monotonic() < _last_stop + SETTLE:
        let_queries_fail(stopped, _last_stop, STOP_GRACE)
    busy = [worker for worker in workers if worker.running_batch() is not None]
    close_all([worker for worker in workers if worker not in busy])
    _reap_abandoned()
    problems = [
        f"a batch in interpreter {worker.interpreter_id} did not stop (code busy in C, or catching the "
        "exception meant to stop it)"
        for worker in busy
    ]
    problems += [
        f"threads a UDF started in interpreter {kept.interpreter_id} still run and hold it"
        for kept in _abandoned
        if not kept.ready_for_exit or not _bounded(_interpreters.exec, kept.interpreter_id, "pass", timeout=0.5)[0]
    ]
    if problems:
        _exit_now("; ".join(problems))


def _exit_now(why: str) -> None:
    """End the process now: Python's teardown of these interpreters would hang or crash."""
    message = (
        f"duckdb_subinterp: {why}; Python's teardown would hang or crash on it, so the process ends now "
        f"with os._exit({EXIT_STATUS})\n"
    )
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is sys.stderr:
                stream.write(message)
            stream.flush()
        except Exception:
            pass
    os._exit(EXIT_STATUS)


def _destroy(interpreter_id: int) -> None:
    with contextlib.suppress(Exception):  # already destroyed, or torn down at exit
        _interpreters.destroy(interpreter_id)


class InterpreterPool(WorkerPool):
    """A pool of per-GIL interpreters, started lazily, shared by UDFs and connections.

    A DuckDB thread calling a UDF checks out an idle interpreter and runs the
    batch there itself; threads beyond ``size`` wait for one. UDFs here load
    in an isolated interpreter: the standard library and pure-Python modules,
    not numpy or pyarrow (use ``ProcessPool``).

    Args:
        size: How many interpreters at most; None for the CPU count.
        timeout: Seconds a batch may wait for a free interpreter, and may run before it is stopped
            (``PoolTimeoutError``); ``math.inf`` for no limit.
        direct: False enters the interpreters through ``_interpreters.exec`` instead of the compiled
            ``DirectCall``: about 50 us slower a batch, for comparison.

    Raises:
        ValueError: ``size`` is not a positive int, or ``timeout`` not a positive number.

    Example:
        ```python
        with duckdb_subinterp.InterpreterPool(4) as pool:
            duckdb_subinterp.create_function(con, "slugify", slugify, pool=pool)
            con.sql("SELECT slugify(title) FROM posts").fetchall()
        ```
    """

    # Fan-out: a hand-off to a helper thread and a DirectCall per slice,
    # cheap enough to cut a batch finer (on processes, each slice is a
    # round trip through a pipe, whose wake-ups cost more on a busy machine).
    slice_overhead_seconds = 100e-6
    # the dispatch overhead bench/ measures: 26 us a batch at threads=1 (dev-2core-epyc)
    round_trip_seconds = 30e-6
    slices_per_worker = 4

    # CPython 3.13 cannot fork a process that has subinterpreters: the child crashes.
    close_workers_before_fork = True
    # Its exit step runs after every other backend's: it may end the process (os._exit).
    exit_order = 1

    def __init__(self, size: int | None = None, *, timeout: float = DEFAULT_TIMEOUT, direct: bool = True) -> None:
        super().__init__(size, timeout=timeout)
        self.direct = direct

    def _start_worker(self) -> Worker:
        return InterpreterWorker(direct=self.direct)

    def _watch_interrupts(self) -> None:
        if watch_sigint is not None:
            watch_sigint()  # again, if Python's signal.signal() replaced the counter

    def _close(self) -> None:
        super()._close()
        _reap_abandoned()

    @classmethod
    def _after_pools_closed_at_exit(cls) -> None:
        _close_live_workers([pool for pool in live_pools() if isinstance(pool, InterpreterPool)])

    def _prepare_fork(self) -> None:
        super()._prepare_fork()
        _reap_abandoned()
        if _abandoned:
            warnings.warn(
                f"os.fork() while threads UDFs started still run in {len(_abandoned)} interpreter(s) that could not "
                "be destroyed for that reason: a child forked with them crashes (a CPython limitation); end such "
                "threads in the UDF, or use multiprocessing's 'spawn' or 'forkserver' start method",
                RuntimeWarning,
                stacklevel=2,
            )

    def _reset_after_fork(self) -> None:
        super()._reset_after_fork()
        for worker in list(_live_workers):  # workers no pool holds any more (given up, being closed)
            worker.forget()
        _abandoned.clear()
