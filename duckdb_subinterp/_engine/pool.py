"""The pool engine shared by every backend: lazy workers, checkout and checkin.

A backend only says what a worker is (``Worker``: start, load a UDF, run a
batch, close); this module decides when workers start, who gets one, and
what happens when the pool closes, a worker breaks, or a UDF fails to load
in some workers. A thread that finds no idle worker waits on a condition
with a deadline.

One thing, over 600 lines: the pool's state (idle, busy, started, growing,
forking, the UDFs' load failures) is one lock's, and every method of
``WorkerPool`` moves it from one consistent state to the next; cut in two,
each half would have to know the other's invariants. What runs beside the
batches lives elsewhere: the watchdog (``_engine.watchdog``), started here
with the first worker, and exit and fork (``_engine.lifecycle``), which call
the pools' ``_shut``/``_stop_busy`` and fork methods below and each kind of
pool's ``_after_pools_closed_at_exit``.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import warnings
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar, Self

from duckdb_subinterp._engine.watchdog import Watchdog
from duckdb_subinterp._errors import (
    BrokenPoolError,
    PoolTimeoutError,
    UDFError,
    UDFExecutionError,
    UDFLoadFailedWarning,
    UDFRegistrationError,
    UDFResultError,
    udf_execution_error,
)
from duckdb_subinterp._worker.protocol import DUCKDB_SENTENCES, FIELD_SEPARATOR, BatchRequest
from duckdb_subinterp._worker.runtime import describe_import_refusal, write_output

DEFAULT_TIMEOUT = 600.0
# How long close() lets a running batch finish before it stops the worker
# (where the backend can): exit and close() must not wait the pool's timeout.
CLOSE_GRACE = 1.0
THREAD_GRACE = 1.0  # threads a UDF started get this long to end when their worker closes
# How long run_to_the_end waits for its thread to say it started, where a KeyboardInterrupt
# left that unknown: a started thread says so within milliseconds.
START_SECONDS = 2.0
FORK_WAIT = 2.0  # before a fork, how long batches in workers that cannot be forked get to end
# A worker another DuckDB thread gave back this recently is not taken for a
# fan-out: that thread is between two of its batches and wants it back (with
# SET threads=2, a fan-out there only adds slices' overhead). Idle longer,
# the worker is spare: the other thread's query or its scan has ended.
RECLAIM_SECONDS = 2e-3
# A UDF that loaded in some workers and then fails to load in others (a
# class UDF whose __init__ starts failing: a model file removed, a resource
# exhausted) runs on the workers that have it. Another worker is tried only
# LOAD_RETRY_SECONDS after a failure, twice as long after each further one,
# LOAD_RETRIES times at most, until a load succeeds: each try runs __init__
# and retires the worker (on processes, a process start), and untried, the
# 74 batches of a one-thread query with fan-out paid 37 of them. Where no
# worker has the UDF any more, a batch tries once, and its query fails with
# the UDF's error, as when it fails on every worker.
LOAD_RETRY_SECONDS = 1.0
LOAD_RETRIES = 5


def wait_bound(seconds: float) -> float:
    """Return ``seconds`` capped to what a lock or condition accepts, so ``timeout=inf`` means no limit."""
    return min(seconds, threading.TIMEOUT_MAX)


# Runtime exception names (duckdb_subinterp._worker.runtime) -> the error a query raises.
_FAILURE_TYPES: dict[str, type[UDFError]] = {
    "UdfRaised": UDFExecutionError,
    "UdfResultInvalid": UDFResultError,
    "UdfArgumentInvalid": UDFExecutionError,
    "UdfLoadFailed": UDFRegistrationError,
}


class WorkerFailure(Exception):
    """Code in a worker raised; carries the exception's type name and text across the boundary."""

    def __init__(self, error_type: type[UDFError | KeyboardInterrupt], text: str) -> None:
        super().__init__(text)
        self.error_type = error_type
        self.text = text
        self.loading = False  # raised by Worker.load: the UDF could not be loaded there

    @classmethod
    def from_names(cls, type_name: str, message: str, display: str) -> WorkerFailure:
        """Build from what crossed the boundary; unknown types are the runtime's own bugs."""
        if type_name in _FAILURE_TYPES:
            return cls(_FAILURE_TYPES[type_name], message)
        return cls(BrokenPoolError, f"the worker failed unexpectedly:\n{display}")

    def for_udf(self, udf_name: str) -> UDFError | KeyboardInterrupt:
        """Return the error a query raises, naming the UDF.

        A UDF's own exception comes back as ``<type name>: <message>`` first,
        in DuckDB's words, then the UDF's name and its traceback.
        """
        if self.error_type is UDFExecutionError and self.text.count(FIELD_SEPARATOR) == 2:
            type_name, message, frames = self.text.split(FIELD_SEPARATOR)
            refused = describe_import_refusal(f"{message}\n{frames}")  # numpy wraps the refusal in its own
            if refused is not None:
                # Imported inside the function: registration, which loads the UDF's module in a
                # worker to see such refusals (and backend='auto' with it), did not run this import.
                message += (
                    f" (imported while the UDF ran: register it with backend='processes', or import "
                    f"{refused.partition('.')[0]!r} at the top of the UDF's module, where registration sees it and "
                    "backend='auto' falls back to processes)"
                )
            error = udf_execution_error(type_name, f"{message}\n(raised in UDF {udf_name!r})\n{frames}")
            error.refused_module = refused  # backend="auto" runs the batch on processes instead
            return error
        if self.error_type is UDFRegistrationError:
            return self.error_type(f"UDF {udf_name!r}: a worker cannot load it: {self.text}")
        if self.text.startswith(DUCKDB_SENTENCES):
            return self.error_type(f"{self.text} (UDF {udf_name!r})")
        return self.error_type(f"UDF {udf_name!r}: {self.text}")


def write_worker_output(taken: Sequence[tuple[str, str]]) -> None:
    """Write what code in a worker printed to the main interpreter's streams; failing, fail as the print would have."""
    try:
        write_output(taken)
    except Exception as error:
        message = f"{error} (writing what it printed to the main interpreter's sys.stdout or sys.stderr)"
        raise WorkerFailure(UDFExecutionError, FIELD_SEPARATOR.join((type(error).__name__, message, ""))) from None


class _LoadFailures:
    """How one UDF failed to load in further workers of a pool since it last loaded."""

    __slots__ = ("count", "retry_at", "warned")

    def __init__(self) -> None:
        self.count = 0
        self.retry_at = 0.0
        self.warned = False

    def may_retry(self, now: float) -> bool:
        """Tell whether another worker may be tried now; if so, the next is not tried before the backoff."""
        if self.count > LOAD_RETRIES or now < self.retry_at:
            return False
        # Charged now, not at the outcome: a try that is interrupted must not block the later ones.
        self.retry_at = now + self.backoff()
        return True

    def failed(self, now: float) -> None:
        """Count a failed try: the next waits twice as long as the one before it."""
        self.count += 1
        self.retry_at = max(self.retry_at, now + self.backoff())

    def backoff(self) -> float:
        return LOAD_RETRY_SECONDS * (1 << max(self.count - 1, 0))


class Worker(ABC):
    """One place where UDF batches run: an interpreter, a process."""

    # Whether abort() can stop a batch that is running (a process can be
    # killed; an interpreter cannot be stopped from outside).
    abortable = False
    # How messages name it: "interpreter 3", "worker process 1234".
    description = "a worker"

    def __init__(self) -> None:
        self.loaded: set[int] = set()
        self.synced_generation = -1
        # Set by a backend whose worker died or stopped answering: the
        # pool then closes it at checkin instead of handing it out again.
        self.broken = False
        self.given_up = False  # by the watchdog: no longer counted by its pool
        # The thread that last gave it back from a batch of its own, and when (see RECLAIM_SECONDS).
        self.returned_by = 0
        self.returned_at = 0.0

    @abstractmethod
    def load(self, udf_id: int, spec: tuple[Any, ...]) -> None:
        """Import or unpickle the UDF's function in this worker."""

    @abstractmethod
    def unload(self, udf_id: int) -> None:
        """Drop a UDF that was removed."""

    @abstractmethod
    def run(self, request: BatchRequest) -> Sequence[int]:
        """Run one batch; return the status slots (null count, buffer sizes)."""

    @abstractmethod
    def copy_pending(self, outputs: Sequence[memoryview]) -> None:
        """Write the last result, which did not fit, into larger outputs."""

    @abstractmethod
    def close(self) -> None:
        """Release the worker's resources; must not raise."""

    def abort(self, reason: str) -> None:  # noqa: B027 - optional: called only on an ``abortable`` worker
        """Stop the batch running now, from another thread; it then fails saying ``reason``.

        Called with the pool lock held, only on an ``abortable`` worker that
        is checked out; must be quick and must not raise.
        """

    # Optional: what a backend supports beyond running batches.

    def running_batch(self) -> tuple[Hashable, bool] | None:
        """Return (a token, whether Ctrl-C came since it started) for the batch running now, else None.

        None also where the backend cannot stop batches. Called by the
        watchdog only, never on a batch's path.
        """
        return None

    def stop(self, batch: Hashable, failure: WorkerFailure) -> bool:
        """Stop ``batch`` if it still runs, making it fail with ``failure``; return whether it was asked to.

        May wait (for the worker to let go); the watchdog calls it on a thread of its own.
        """
        return False

    def alive(self) -> bool:
        """Tell, without asking it, whether the worker could run a batch (a process may have died meanwhile)."""
        return not self.broken

    def begin_close(self) -> None:  # noqa: B027 - optional: most workers have nothing to ask
        """Start closing: ask what the UDFs left running to end, so ``close`` waits once for all workers."""

    def forget(self) -> None:  # noqa: B027 - optional: an in-process worker has nothing of the parent's
        """In a forked child: let go of the parent's worker without talking to it or freeing what it owns."""


class WorkerPool(ABC):
    """A fixed-size pool of lazily started workers shared by UDFs and connections.

    The base of ``InterpreterPool``, ``ProcessPool`` and ``RayPool``; a backend
    says only what a worker is. Usable as a context manager, which closes it.

    Args:
        size: How many workers at most; None for the CPU count.
        timeout: Seconds a batch may wait for a free worker, and may run on one before it is stopped
            (``PoolTimeoutError``); ``math.inf`` for no limit.

    Raises:
        ValueError: ``size`` is not a positive int, or ``timeout`` not a positive number.
    """

    # What running one more slice of a batch costs on this backend besides the
    # slice's own call: cutting the batch, a hand-off to a helper thread,
    # joining the results. A fan-out must save more than its slices cost (_costs).
    slice_overhead_seconds: float = 1e-3
    # What running a batch on this backend costs beyond the batch's own work
    # (reading the arguments, the switch or round trip, the result): where
    # backend="auto" has not timed a batch on the pool, it predicts one so.
    round_trip_seconds: float = 1e-3
    # Slices per worker of a fanned-out batch, taken by whichever worker is
    # free: more balance a slower worker out, each costs one more round trip.
    slices_per_worker: int = 1

    # Workers that a fork would break in the child (CPython 3.13's
    # subinterpreters): closed before every fork, started again after.
    close_workers_before_fork: ClassVar[bool] = False

    def __init__(self, size: int | None = None, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        if size is not None and (not isinstance(size, int) or size < 1):
            raise ValueError(f"pool size must be a positive int, got {size!r}")
        if not timeout > 0:  # NaN fails this too; inf is accepted: no limit
            raise ValueError(f"timeout must be a positive number of seconds (or math.inf), got {timeout!r}")
        self.size = size or os.cpu_count() or 1
        self.timeout = float(timeout)
        # Blocks take the C lock itself, never `with self._condition`: the
        # Condition's __enter__/__exit__ are Python frames, where a
        # KeyboardInterrupt can land before the release and leave the lock
        # held, blocking every later checkout forever. Re-entrant: a
        # dispatcher's finalizer calls unregister, and the garbage collector
        # may run it inside one of these blocks, on the thread holding the lock.
        self._lock = threading.RLock()
        self._condition = threading.Condition(self._lock)
        self._idle: list[Worker] = []
        self._busy: set[Worker] = set()  # checked out, so close() can stop them
        self._waiting = 0  # threads in _checkout's wait, so checkin notifies only when one is
        self._started = 0
        self._growing = False  # take_idle is starting a worker in the background
        self._grower: threading.Thread | None = None
        self._closed = False
        self._specs: dict[int, tuple[Any, ...]] = {}
        self._generation = 0  # bumped when a UDF is removed, so workers drop it
        # UDFs that failed to load in a worker while others have them (see LOAD_RETRIES).
        self._load_failures: dict[int, _LoadFailures] = {}
        self._waiting_for_loaded = 0  # of _waiting: threads that take only a worker with their UDF loaded
        self._forking = False  # no worker is handed out or started while they are closed for a fork
        # Not closed and not forking: the one flag checkout's fast path reads.
        self._accepting = True
        # Exit and fork (_engine.lifecycle) visit every live pool; a forked child adopts the pools it inherits.
        self._owner_pid = os.getpid()
        _live_pools.add(self)
        _pool_types.setdefault(type(self))
        # A pool nobody closed is released when collected, as a dropped
        # ThreadPoolExecutor's threads are: its idle workers close (a pool is
        # collected only when no batch runs on it: a running batch's
        # dispatcher holds it). At exit, the backends close what is left.
        # _idle is the one list for the pool's life, so the callback (which
        # must not hold the pool) sees the workers idle at that moment.
        weakref.finalize(self, _close_idle_of_collected_pool, self._idle).atexit = False

    @abstractmethod
    def _start_worker(self) -> Worker:
        """Start one worker (called without the pool lock held)."""

    def _watch_interrupts(self) -> None:  # noqa: B027 - optional: a backend that stops nothing on Ctrl-C
        """Make sure Ctrl-C is noticed for ``Worker.running_batch`` (the watchdog calls it before every look)."""

    @property
    def closed(self) -> bool:
        """Tell whether ``close`` was called."""
        return self._closed

    @property
    def started(self) -> int:
        """Return how many workers are alive now."""
        return self._started

    @property
    def may_grow(self) -> bool:
        """Tell whether a worker not started yet may become idle: the pool is not full, or one is starting."""
        return self._accepting and (self._started < self.size or self._growing)

    def register(self, udf_id: int, spec: tuple[Any, ...]) -> None:
        """Make a UDF known to the pool; workers load it on first use."""
        with self._lock:
            self._specs[udf_id] = spec

    def unregister(self, udf_id: int) -> None:
        """Forget a UDF; workers drop it the next time they are checked out."""
        with self._lock:
            self._specs.pop(udf_id, None)
            self._load_failures.pop(udf_id, None)
            self._generation += 1

    def checkout(self, udf_id: int, udf_name: str) -> Worker:
        """Take an idle worker (starting one if the pool is not full) with ``udf_id`` loaded."""
        with self._lock:
            # Any idle worker; once a UDF failed to load in one, _checkout_loaded chooses.
            worker = self._idle.pop() if self._idle and self._accepting and not self._load_failures else None
            if worker is not None:
                self._busy.add(worker)
        if worker is None:
            if udf_id in self._load_failures:
                return self._checkout_loaded(udf_id, udf_name, None)
            worker = self._checkout(udf_name)
        try:
            return self._ready(worker, udf_id, udf_name)
        except WorkerFailure as failure:
            if not failure.loading:
                raise
            return self._checkout_loaded(udf_id, udf_name, failure)

    def _checkout_loaded(self, udf_id: int, udf_name: str, failure: WorkerFailure | None) -> Worker:
        """Check out a worker for a UDF that failed to load in one: one that has it, else one to try as allowed.

        Waits for a busy worker that has it rather than try more than
        LOAD_RETRIES allow. Where no worker has it any more, raises
        ``failure`` (this checkout's own try failed), else tries once.
        """
        deadline = time.monotonic() + self.timeout
        while True:
            self._retire_lost(udf_id)
            holder = None
            with self._lock:
                while self._accepting and (failures := self._load_failures.get(udf_id)) is not None:
                    holder = next((worker for worker in reversed(self._idle) if udf_id in worker.loaded), None)
                    if holder is not None:
                        self._idle.remove(holder)
                        self._busy.add(holder)
                        break
                    if not self._holds(udf_id):
                        if failure is not None:
                            raise failure
                        break  # none has it: try, as a first load would
                    now = time.monotonic()
                    if failure is None and failures.may_retry(now):  # after its own failure, it waits
                        break
                    if now >= deadline:
                        raise PoolTimeoutError(
                            f"UDF {udf_name!r}: no worker that has it loaded became free within {self.timeout:g} s "
                            "(it failed to load in others); pass a larger timeout= to the pool"
                        )
                    # Woken by a checkin; by the clock only when a try will be allowed then. After its own
                    # failure a checkout never tries again: waking at retry_at, it would poll with a zero wait.
                    tries_later = failure is None and failures.count <= LOAD_RETRIES
                    wake = min(deadline, failures.retry_at) if tries_later else deadline
                    self._waiting += 1
                    self._waiting_for_loaded += 1
                    try:
                        self._condition.wait(wait_bound(max(wake - now, 0.0)))
                    finally:
                        self._waiting -= 1
                        self._waiting_for_loaded -= 1
            # Loaded since, closed or forking: _checkout takes any worker, or says why not.
            worker = holder if holder is not None else self._checkout(udf_name)
            try:
                return self._ready(worker, udf_id, udf_name)
            except WorkerFailure as error:
                if holder is not None or not error.loading:
                    raise
                failure = error

    def _retire_lost(self, udf_id: int) -> None:
        """Close idle workers with ``udf_id`` loaded that died meanwhile, so a checkout does not count on them."""
        with self._lock:
            lost = [worker for worker in self._idle if udf_id in worker.loaded and not worker.alive()]
            for worker in lost:
                self._idle.remove(worker)
                self._busy.add(worker)
        for worker in lost:
            self.checkin(worker, broken=True)

    def _holds(self, udf_id: int) -> bool:
        """Tell whether a worker that runs batches again has ``udf_id`` loaded; called with the lock held."""
        return any(udf_id in worker.loaded and not worker.broken for worker in (*self._idle, *self._busy))

    def take_idle(self, udf_id: int, udf_name: str, count: int, *, grow: bool = True) -> list[Worker]:
        """Take up to ``count`` idle workers with ``udf_id`` loaded, without waiting (a batch's fan-out).

        Where the pool is not full (and ``grow``), one more worker starts in the
        background meanwhile, for the batches that follow. Where the UDF failed to load
        in a worker, only workers that have it are taken, and one more to
        try as LOAD_RETRIES allow.
        """
        caller, now = threading.get_ident(), time.monotonic()
        with self._lock:
            if not self._accepting or count <= 0:  # [-0:] below would take every spare worker
                return []
            spare = [
                worker
                for worker in self._idle
                if worker.returned_by == caller or now - worker.returned_at >= RECLAIM_SECONDS
            ]
            if udf_id in self._load_failures:
                spare = self._loaded_or_tried(udf_id, spare, count, now)
            taken = spare[-count:]
            for worker in taken:
                self._idle.remove(worker)
            self._busy.update(taken)
            grow = grow and self._started < self.size and not self._growing
            if grow:
                self._started += 1  # reserved, as _checkout does
                self._growing = True
        if grow:
            self._grower = threading.Thread(target=self._grow, name="duckdb_subinterp start", daemon=True)
            self._grower.start()
        ready = []
        failed = False
        for index, worker in enumerate(taken):
            try:
                if failed and udf_id not in worker.loaded:
                    self.checkin(worker, lent=True)  # one failed load per fan-out at most (see LOAD_RETRIES)
                    continue
                ready.append(self._ready(worker, udf_id, udf_name))
            except WorkerFailure:
                failed = True  # that worker could not load the UDF; the batch runs on the others
            except BaseException:
                for unused in taken[index + 1 :]:
                    self.checkin(unused)
                for worker in ready:
                    self.checkin(worker)
                raise
        return ready

    def _loaded_or_tried(self, udf_id: int, spare: list[Worker], count: int, now: float) -> list[Worker]:
        """Of ``spare``, the workers that have ``udf_id`` loaded, after one to try it in where too few and allowed."""
        loaded = [worker for worker in spare if udf_id in worker.loaded]
        if len(loaded) >= count:
            return loaded
        untried = next((worker for worker in reversed(spare) if udf_id not in worker.loaded), None)
        if untried is None or not self._load_failures[udf_id].may_retry(now):
            return loaded
        return [untried, *loaded]

    def _grow(self) -> None:
        """Start one worker (reserved by take_idle) and make it idle."""
        try:
            watchdog.ensure_running()
            worker = self._start_worker()
        except BaseException:
            with self._lock:
                self._started -= 1
                self._growing = False
                self._condition.notify()
            return
        self.checkin(worker, lent=True)  # no thread waits to take it back: any may take it at once
        with self._lock:
            self._growing = False  # after: may_grow says a worker is coming until it is idle

    def _ready(self, worker: Worker, udf_id: int, udf_name: str) -> Worker:
        """Return ``worker`` with ``udf_id`` loaded (and removed UDFs dropped); give it back on failure."""
        try:
            if worker.synced_generation != self._generation or udf_id not in worker.loaded:
                self._sync_loaded(worker, udf_id)
        except WorkerFailure as failure:
            # The UDF's import failed part-way: modules it imported or changed
            # before failing stay in this worker and a later load would see them.
            self.checkin(worker, broken=True)
            if failure.loading:
                self._load_failed(udf_id, udf_name, worker, failure)
            raise
        except BaseException:
            self.checkin(worker)
            raise
        return worker

    def _load_failed(self, udf_id: int, udf_name: str, worker: Worker, failure: WorkerFailure) -> None:
        """Count a failed load of ``udf_id``; warn the first time since it last loaded, if other workers have it."""
        with self._lock:
            if udf_id not in self._specs:  # removed meanwhile
                return
            failures = self._load_failures.setdefault(udf_id, _LoadFailures())
            failures.failed(time.monotonic())
            holders = sum(1 for held in (*self._idle, *self._busy) if udf_id in held.loaded and not held.broken)
            # Where none has it, the query fails with the error itself: nothing is silent.
            warn = holders > 0 and not failures.warned
            failures.warned |= warn
            backoff = failures.backoff()
        if warn:
            headline = failure.text.strip().partition("\n")[0]
            warnings.warn(
                UDFLoadFailedWarning(
                    f"UDF {udf_name!r} could not be loaded in {worker.description} ({headline}); it runs on the "
                    f"{holders} worker(s) of its pool that have it. Another worker is tried in {backoff:g} s, then "
                    f"twice as long after each failure, {LOAD_RETRIES} times at most until one loads it; a query "
                    "fails with this error once no worker has it",
                    udf_name,
                    worker.description,
                    failure.text,
                ),
                stacklevel=2,
            )

    def checkin(self, worker: Worker, *, broken: bool = False, lent: bool = False) -> None:
        """Give a worker back; a broken one is closed and replaced on demand.

        ``lent``: it ran slices of another thread's batch (a fan-out), so no
        thread is waiting to take it back.
        """
        if not lent:
            worker.returned_by, worker.returned_at = threading.get_ident(), time.monotonic()
        with self._lock:
            self._busy.discard(worker)
            if not broken and not worker.broken and not self._closed:
                self._idle.append(worker)
                if self._waiting:  # Condition.notify costs ~0.6 us a batch even with nobody waiting
                    if self._waiting_for_loaded:  # one of those may pass this worker by: wake every waiter
                        self._condition.notify_all()
                    else:
                        self._condition.notify()
                return
            if not worker.given_up:  # the watchdog's give-up already stopped counting it
                self._started -= 1
            # A waiting checkout, close() waiting for busy workers, a fork waiting for them.
            self._condition.notify_all()
        worker.close()

    @contextmanager
    def lease(self, udf_id: int, udf_name: str) -> Iterator[Worker]:
        """Check out a worker for a ``with`` block; a ``BrokenPoolError`` retires it."""
        worker = self.checkout(udf_id, udf_name)
        broken = False
        try:
            yield worker
        except BrokenPoolError:
            broken = True
            raise
        finally:
            self.checkin(worker, broken=broken)

    def start_all(self) -> int:
        """Start every worker not started yet, in parallel; return how many were started.

        Workers start lazily on first use; call this to pay (and time)
        start-up before a query.

        Returns:
            How many workers were started now.

        Raises:
            BrokenPoolError: The pool was closed.
        """
        with self._lock:
            if self._closed:
                raise BrokenPoolError("the pool was closed")
            missing = self.size - self._started
            self._started += missing  # reserved, so concurrent checkouts do not start more
        if missing:
            watchdog.ensure_running()  # before the workers exist, as in _checkout
        started: list[Worker] = []
        errors: list[BaseException] = []

        def start_one() -> None:
            # Each worker joins the pool as it starts, not after the wait
            # below: one that starts later than that (a start slower than the
            # pool's timeout) is still the pool's, not a slot counted for the
            # pool's life with no worker in it.
            try:
                worker = self._start_worker()
            except BaseException as error:
                errors.append(error)
                with self._lock:
                    self._started -= 1
                    self._condition.notify_all()
                return
            started.append(worker)
            self.checkin(worker, lent=True)  # idle; closed if close() ran meanwhile. lent: nobody wants it back

        threads = [threading.Thread(target=start_one, name="duckdb_subinterp start") for _ in range(missing)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(wait_bound(self.timeout))  # each start has its own, shorter, deadline
        if errors:
            raise errors[0]
        return len(started)

    def _sync_loaded(self, worker: Worker, udf_id: int) -> None:
        with self._lock:
            specs = dict(self._specs)
            generation = self._generation
        for stale in worker.loaded - specs.keys():
            worker.unload(stale)
            worker.loaded.discard(stale)
        if udf_id not in specs:
            raise BrokenPoolError(f"UDF {udf_id} was removed from this pool")
        if udf_id not in worker.loaded:
            try:
                worker.load(udf_id, specs[udf_id])
            except WorkerFailure as failure:
                failure.loading = True
                raise
            worker.loaded.add(udf_id)
            if udf_id in self._load_failures:  # it loads again: start counting afresh (see LOAD_RETRIES)
                with self._lock:
                    self._load_failures.pop(udf_id, None)
        worker.synced_generation = generation

    def _checkout(self, udf_name: str) -> Worker:
        deadline = time.monotonic() + self.timeout
        with self._lock:
            while True:
                if self._closed:
                    raise BrokenPoolError(f"UDF {udf_name!r}: its pool was closed; register it on an open pool")
                if self._idle and not self._forking:
                    worker = self._idle.pop()
                    self._busy.add(worker)
                    return worker
                if self._started < self.size and not self._forking:
                    self._started += 1
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise PoolTimeoutError(
                        f"UDF {udf_name!r}: no worker of the pool ({self.size} workers) became free within "
                        f"{self.timeout:g} s; pass a larger timeout= to the pool or make the pool bigger"
                    )
                self._waiting += 1
                try:
                    self._condition.wait(wait_bound(remaining))
                finally:
                    self._waiting -= 1
        try:
            # Before the worker exists: once it is busy, nothing but the
            # return may run here, or an interrupt landing there would lose it.
            watchdog.ensure_running()
            worker = self._start_worker()
        except BaseException:
            with self._lock:
                self._started -= 1
                self._condition.notify()
            raise
        with self._lock:
            self._busy.add(worker)
            closed: bool = self._closed  # close() may have run since the check above
        if closed:  # closed while it started: close() did not see it, so it must not run a batch
            self.checkin(worker)
            raise BrokenPoolError(f"UDF {udf_name!r}: its pool was closed; register it on an open pool")
        return worker

    def close(self) -> None:
        """Close idle workers now and busy ones when their batch ends; idempotent.

        A batch still running after ``CLOSE_GRACE`` seconds is stopped where
        the backend can (a worker process is killed, an interpreter's batch
        gets an exception) and its query fails with ``BrokenPoolError``; so
        close(), and the exit that calls it, takes a few seconds at most, not
        the pool's timeout. Threads the UDFs started in a worker get
        ``THREAD_GRACE`` seconds in all to end (where the backend can ask them).
        A KeyboardInterrupt meanwhile is raised once every worker is closed.
        """
        run_to_the_end(self._close)

    def _close(self) -> None:
        """Do what close() says, in whichever thread runs it."""
        self._shut()
        self._stop_busy(time.monotonic() + CLOSE_GRACE)

    def _shut(self) -> None:
        """Refuse new batches and close the idle workers."""
        with self._lock:
            self._closed = True
            self._accepting = False
            idle = self._idle[:]
            self._idle.clear()
            self._started -= len(idle)
            self._condition.notify_all()
            grower = self._grower
        close_all(idle)
        if grower is not None and grower is not threading.current_thread():
            # A worker starting in the background is closed as it arrives (checkin of a closed pool).
            grower.join(wait_bound(self.timeout))

    def _stop_busy(self, deadline: float) -> None:
        """Wait until ``deadline`` for abortable busy workers to come back, abort the rest, wait for them a little."""
        with self._lock:
            while any(worker.abortable for worker in self._busy) and (remaining := deadline - time.monotonic()) > 0:
                self._condition.wait(remaining)
            # Under the lock: a worker in _busy is not checked in (and closed) meanwhile.
            stopped = [worker for worker in self._busy if worker.abortable]
            for worker in stopped:
                worker.abort("was stopped because its pool was closed while it ran a batch")
            # The threads that ran them see the worker die at once and check it in.
            deadline = time.monotonic() + CLOSE_GRACE
            while any(worker in self._busy for worker in stopped) and (remaining := deadline - time.monotonic()) > 0:
                self._condition.wait(remaining)

    # -- the watchdog's side -----------------------------------------------------

    def _give_up(self, worker: Worker) -> bool:
        """Stop counting a worker whose batch would not stop, so the pool can start another."""
        with self._lock:
            if worker not in self._busy or worker.given_up:
                return False
            self._busy.discard(worker)
            self._started -= 1
            worker.given_up = worker.broken = True  # closed at checkin, if its batch ever ends
            self._condition.notify_all()
        return True

    # -- exit ----------------------------------------------------------------------

    # Where this kind of pool's _after_pools_closed_at_exit runs among the
    # others' (ascending; ties in the order of their first pool).
    exit_order: ClassVar[int] = 0

    @classmethod  # noqa: B027 - optional: most backends need nothing more at exit
    def _after_pools_closed_at_exit(cls) -> None:
        """At exit, after every pool was closed (``_engine.lifecycle``): what this kind of pool still must do."""

    # -- fork ----------------------------------------------------------------------

    def _prepare_fork(self) -> None:
        """Before a fork: close workers the child could not survive, waiting ``FORK_WAIT`` for busy ones."""
        if not self.close_workers_before_fork:
            return
        deadline = time.monotonic() + FORK_WAIT
        closing: list[Worker] = []
        with self._lock:
            self._forking = True
            self._accepting = False
            while True:
                idle = self._idle[:]
                self._idle.clear()
                self._started -= len(idle)
                closing += idle
                remaining = deadline - time.monotonic()
                # The idle ones gone, those still counted are busy or starting: in take_idle's
                # growth, in start_all, or in a checkout that reserved its slot before the fork
                # began and hands the worker out after it.
                if not self._started or remaining <= 0:
                    break
                # A checkin wakes one waiter, maybe a checkout held back by
                # the fork rather than this: look again every 50 ms.
                self._waiting += 1
                try:
                    self._condition.wait(min(remaining, 0.05))
                finally:
                    self._waiting -= 1
            busy = self._started
        close_all(closing)
        if busy:
            warnings.warn(
                f"os.fork() while {busy} worker(s) of {self!r} still run a batch (or start) after {FORK_WAIT:g} s: "
                "they cannot be closed first, and a child forked with them crashes (a CPython limitation); fork "
                "when no query runs, or use multiprocessing's 'spawn' or 'forkserver' start method",
                RuntimeWarning,
                stacklevel=2,
            )

    def _resume_after_fork(self) -> None:
        """In the parent, after a fork: checkouts go on; closed workers start again on demand."""
        with self._lock:
            self._forking = False
            self._accepting = not self._closed
            self._condition.notify_all()

    def _reset_after_fork(self) -> None:
        """In a forked child: forget the parent's workers (they are its own); start fresh ones on first use."""
        self._owner_pid = os.getpid()  # adopted: its workers from now on are this process's
        # The parent's threads that held these are not in the child.
        self._lock = threading.RLock()
        self._condition = threading.Condition(self._lock)
        workers = self._busy | set(self._idle)
        self._busy = set()
        self._idle.clear()
        self._started = 0
        self._waiting = 0
        self._waiting_for_loaded = 0
        self._growing = False
        self._grower = None
        self._forking = False
        self._accepting = not self._closed
        for worker in workers:
            worker.forget()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self._started}/{self.size} started"
        return f"<{type(self).__name__} {state}>"


def _close_idle_of_collected_pool(idle: list[Worker]) -> None:
    """Close the idle workers of a pool that was garbage-collected without ``close()``."""
    workers = idle[:]
    idle.clear()
    close_all(workers)


def run_to_the_end(function: Callable[[], None]) -> None:
    """Call ``function`` where no KeyboardInterrupt can stop it part-way; raise one that came meanwhile after.

    A signal interrupts only the main thread, between any two bytecodes: one
    landing in close() after a worker left the pool's lists and before it was
    closed would leak it (an interpreter kept for the process's life). From the
    main thread, ``function`` so runs in a helper thread, joined to its end.
    """
    if threading.current_thread() is not threading.main_thread():
        function()
        return
    # No Event or Condition waits here: an interrupt landing in their Python frames can leave
    # their lock held, and the thread setting them would then block for good. A list's append
    # and Thread.join (C) cannot.
    raised: list[BaseException] = []
    entered: list[bool] = []

    def run() -> None:
        entered.append(True)
        try:
            function()
        except BaseException as error:
            raised.append(error)

    helper = threading.Thread(target=run, name="duckdb_subinterp close", daemon=True)
    interrupted: KeyboardInterrupt | None = None
    try:
        helper.start()
    except RuntimeError:  # no thread starts while the interpreter shuts down: run it here
        function()
        return
    except KeyboardInterrupt as error:  # in start(), after the thread started or (rarely) before
        interrupted = error
        started_by = time.monotonic() + START_SECONDS
        while not entered and time.monotonic() < started_by:
            with contextlib.suppress(KeyboardInterrupt):
                time.sleep(0.01)
        if not entered:
            function()  # it did not start: close here, as before
            raise
    while helper.is_alive():  # function's own waits are bounded (CLOSE_GRACE, THREAD_GRACE, the pool's timeout)
        try:
            helper.join(0.1)
        except KeyboardInterrupt as error:
            interrupted = error
    if raised:
        raise raised[0]
    if interrupted is not None:
        raise interrupted


def close_all(workers: Sequence[Worker]) -> None:
    """Close workers, letting each one's leftover threads end at the same time as the others'."""
    for worker in workers:
        with contextlib.suppress(Exception):  # close() still runs, and must not raise either
            worker.begin_close()
    for worker in workers:
        worker.close()


# Pools alive in this process, and the kinds of pool made so far: the
# watchdog, exit and fork (``_engine.lifecycle``) visit them. A pool is held
# weakly: one nobody holds any more is collected (see WorkerPool.__init__).
_live_pools: weakref.WeakSet[WorkerPool] = weakref.WeakSet()
_pool_types: dict[type[WorkerPool], None] = {}  # ordered: by their first pool


def live_pools() -> list[WorkerPool]:
    """Return the pools alive in this process now."""
    return list(_live_pools)


def pool_types() -> list[type[WorkerPool]]:
    """Return the kinds of pool this process made, in the order of their first pool."""
    return list(_pool_types)


watchdog = Watchdog(live_pools, WorkerFailure)
