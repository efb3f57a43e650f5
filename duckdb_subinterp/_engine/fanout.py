"""A fanned-out batch's parts: its slices, the helper threads that run them, the rows errors name.

``BatchDispatcher`` (``_engine.dispatch``) decides whether and how to cut a
batch (``_engine.costs``); this holds what the cutting needs. The helper
threads' fork hook lives here, with the executor whose state it resets (one
hook per module that owns state, as in CPython's concurrent.futures; the
pools' hooks are ``_engine.lifecycle``'s).
"""

from __future__ import annotations

import concurrent.futures
import os
import queue
import re
import threading
from collections.abc import Callable, Sequence
from typing import Any

import pyarrow as pa

from duckdb_subinterp._engine.pool import WorkerFailure
from duckdb_subinterp._worker.protocol import FIELD_SEPARATOR

_Job = tuple[concurrent.futures.Future[Any], Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class HelperThreads:
    """Daemon threads that run a fanned-out batch's slices beside the DuckDB thread that cut it.

    As ``ThreadPoolExecutor.submit``, started on demand up to ``most``, but
    daemon threads: Python joins an executor's threads at exit before any
    ``atexit`` hook runs, so a slice of a query left running on a daemon
    thread (a UDF that never returns) would hold the exit forever; these
    are not joined, and the pools' exit hook (``_engine.lifecycle``) stops
    the batches they run.
    """

    def __init__(self, most: int) -> None:
        self._most = most
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)  # released by a thread each time it waits for a job
        self._started = 0
        self._lock = threading.Lock()

    def submit[Result](
        self, function: Callable[..., Result], *arguments: Any, **keywords: Any
    ) -> concurrent.futures.Future[Result]:
        """Run ``function(*arguments, **keywords)`` on a helper thread; return its future."""
        future: concurrent.futures.Future[Result] = concurrent.futures.Future()
        self._jobs.put((future, function, arguments, keywords))
        if self._idle.acquire(blocking=False):
            return future  # a waiting thread takes it
        with self._lock:
            if self._started < self._most:
                self._started += 1
                threading.Thread(target=self._work, name="duckdb_subinterp fan-out", daemon=True).start()
        return future

    def _work(self) -> None:
        while True:
            future, function, arguments, keywords = self._jobs.get()
            if future.set_running_or_notify_cancel():
                try:
                    result = function(*arguments, **keywords)
                except BaseException as error:  # the future carries it to the batch's thread
                    future.set_exception(error)
                else:
                    future.set_result(result)
            del future, function, arguments, keywords  # nothing of a batch is held while waiting
            self._idle.release()


_executor: HelperThreads | None = None
_executor_lock = threading.Lock()


def fan_out_executor() -> HelperThreads:
    """Return the helper threads that run fanned-out slices (started on first use, not at import)."""
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = HelperThreads(most=2 * (os.cpu_count() or 1))
        return _executor


def _forget_executor_in_child() -> None:
    # A forked child has none of the parent's threads: it starts its own on first use.
    global _executor
    _executor = None


os.register_at_fork(after_in_child=_forget_executor_in_child)


def _bounds(length: int, count: int, probe: bool, workers: int) -> list[int]:
    """Return the rows where ``count`` slices of ``length`` rows start, and ``length``.

    A probe (see _costs): equal slices, the last one half the others' size.
    Otherwise the slices come in rounds of one per worker, each round's half
    the size of the one before, as OpenMP's guided schedule shrinks its
    chunks: workers that start together take one slice each a round and end
    together, and one that started late or runs on a slower core ends at
    most a last, small slice after the others, where equal slices left the
    others idle for up to a whole one (1.2 ms a 17 ms batch, the median over
    a 100,000-row query cut in six on two workers, ad hoc).
    """
    rounds = count // workers if workers > 1 else 0
    if probe or rounds < 2 or count % workers or length < 2 * count:
        shares = count - 0.5 if probe and count > 1 and length >= 2 * count else count
        return [min(length, round(length * index / shares)) for index in range(count)] + [length]
    # Halving stops at an eighth: many rounds (costly rows cut fine) end in rounds of equal slices.
    weights = [0.5 ** min(turn, 3) for turn in range(rounds) for _ in range(workers)]
    total = sum(weights)
    bounds = [0]
    reached = 0.0
    for index, weight in enumerate(weights[:-1], 1):
        reached += weight
        # At least a row each, and a row left for each slice after it.
        bounds.append(min(max(bounds[-1] + 1, round(length * reached / total)), length - (count - index)))
    return [*bounds, length]


class Slices:
    """The slices of one fanned-out batch: handed out in row order, their results kept in row order."""

    __slots__ = ("_arguments", "_bounds", "_errors", "_limit", "_lock", "_next", "_results", "count")

    def __init__(
        self, arguments: Sequence[pa.ChunkedArray], length: int, count: int, *, probe: bool = False, workers: int = 1
    ) -> None:
        self.count = count
        self._arguments = arguments
        self._bounds = _bounds(length, count, probe, workers)
        self._results: list[Any] = [None] * count
        self._errors: list[tuple[int, BaseException]] = []
        self._next = 0
        self._limit = count  # no slice from here on is handed out: one before it failed
        self._lock = threading.Lock()

    def take(self) -> int | None:
        """Hand out the next slice's index; None once all are taken, or after a failure before the next one."""
        with self._lock:
            if self._next >= self._limit:
                return None
            self._next += 1
            return self._next - 1

    def left(self) -> bool:
        """Tell whether a slice is still to be handed out (a hint: another thread may take it first)."""
        return self._next < self._limit

    def length(self, index: int) -> int:
        return self._bounds[index + 1] - self._bounds[index]

    def start(self, index: int) -> int:
        """Return the row of the batch that slice ``index`` starts at."""
        return self._bounds[index]

    def arguments(self, index: int) -> list[pa.ChunkedArray]:
        start = self._bounds[index]
        return [argument.slice(start, self.length(index)) for argument in self._arguments]

    def done(self, index: int, result: Any) -> None:
        self._results[index] = result

    def fail(self, index: int, error: BaseException) -> None:
        """Note slice ``index``'s error; the slices after it are not handed out, those before it still run."""
        with self._lock:
            self._limit = min(self._limit, index)
            self._errors.append((index, error))

    def stop(self) -> None:
        """Hand out no more slices."""
        with self._lock:
            self._limit = 0

    def results(self) -> list[Any]:
        """The slices' arrays in row order; raise the error of the first failing slice, as one batch would."""
        if self._errors:
            raise min(self._errors, key=lambda failure: failure[0])[1]
        return [result.combine_chunks() if isinstance(result, pa.ChunkedArray) else result for result in self._results]


# The rows our own messages name ("value ... at row 3", "map keys can not
# be NULL (row 3)", an async call's "row 3 of the batch, arguments ..."),
# counted in the slice that ran: a user's own exception text is never changed.
_OUR_ROWS = re.compile(r"\b(at row |\(row )(\d+)")
_ASYNC_ROWS = re.compile(r"\b(row )(\d+)( of the batch, arguments )")


def rows_of_the_batch(failure: WorkerFailure, start: int) -> WorkerFailure:
    """Return ``failure`` with the rows its text names counted from the batch's first row, not its slice's."""
    if not start:
        return failure

    def shifted(match: re.Match[str]) -> str:
        return f"{match.group(1)}{int(match.group(2)) + start}{match.group(3) if match.lastindex == 3 else ''}"

    # A UDF's own exception crosses as type, message and traceback: only our async phrase is ours there.
    raised = failure.text.count(FIELD_SEPARATOR) == 2
    text = (_ASYNC_ROWS if raised else _OUR_ROWS).sub(shifted, failure.text, count=1)
    return WorkerFailure(failure.error_type, text) if text != failure.text else failure
