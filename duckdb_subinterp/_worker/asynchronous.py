"""Async UDFs: ``async def`` functions awaited on the worker's own event loop.

Standard library only: imported inside isolated interpreters and worker
processes, and only where an async UDF is loaded (asyncio costs an import).

One batch of a native async UDF, inside the worker::

    Runtime.run -> LoadedUdf.call = AsyncUdf.call_rows (instead of call_per_row)
      rows with a NULL argument skipped (null_handling="default")
      run(): this interpreter's event loop, made once and kept across batches
        min(max_concurrency, rows) tasks pull row indices from one iterator:
          each call:  await function(*row)  under asyncio.timeout(timeout)
          a failure in retry_on: sleep (backoff, jitter), call again, up to `retries` times
        -> results in row order; the first row that still fails stops the batch
           (or is NULL under exception_handling="return_null")
      what the batch leaves behind (tasks) is cancelled before run() returns
    the counters (calls, retries, timeouts, peak concurrency) -> status slots

A vectorized or arrow async UDF is awaited once per batch (``AsyncUdf.__call__``,
with the same retries and timeout), so the runtime calls it like a plain one.

The loop is kept because clients and their connection pools (in module
globals, or made in a class UDF's ``__init__``) are bound to the loop they
first ran on. It is closed, with the transports still open on it, when the
interpreter or process ends (``atexit``), or when a batch was stopped and
did not unwind within ``CANCEL_GRACE``.

A batch stopped from outside (``BatchStopped`` raised into the thread, a
``KeyboardInterrupt`` in the main thread under ``backend="inline"``) cancels
every call still pending at once and lets them unwind, then the exception
goes on. While a batch runs the loop wakes every ``TICK`` seconds, so such
an exception never waits for the slowest call to answer: an exception raised
into a thread lands only when that thread runs Python code again.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import pickle
import random
import threading
from asyncio import events
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Protocol, cast

from duckdb_subinterp._options import AsyncOptions
from duckdb_subinterp._worker.protocol import (
    COUNTERS_SLOT,
    FIELD_SEPARATOR,
    UDF_ERRORS,
    UdfRaised,
    UdfSpec,
    resolve_reference,
)
from duckdb_subinterp._worker.protocol import check_no_null_results as _check_no_null_results
from duckdb_subinterp._worker.protocol import raised as _raised

RETRY_BACKOFF_CAP = 10.0  # no retry waits longer than this
CANCEL_GRACE = 1.0  # cancelled calls get this long to unwind (their finally blocks) before the loop is discarded
TICK = 0.05  # while a batch runs, the loop wakes at least this often (see the module docstring)
LOOP_WAIT = 600.0  # backend="inline": how long a batch waits for the loop another thread is running


class LoadedUdf(Protocol):
    """A UDF as the runtime loaded it (``_worker.runtime.LoadedUdf``): what ``call_rows`` reads of it."""

    spec: UdfSpec


def resolve_exception_type(shipped: str | bytes) -> type[BaseException]:
    """Return the exception type a ``retry_on`` entry names: by reference, or unpickled by value."""
    target = pickle.loads(shipped) if isinstance(shipped, bytes) else resolve_reference(shipped)
    if not (isinstance(target, type) and issubclass(target, Exception)):
        raise TypeError(f"retry_on: {target!r} is not an Exception subclass")
    return target


class _Counters:
    """What one batch did: calls made (retries included), retries, timeouts, most calls in flight at once."""

    __slots__ = ("calls", "in_flight", "peak", "retries", "timeouts")

    def __init__(self) -> None:
        self.calls = self.retries = self.timeouts = self.in_flight = self.peak = 0


class _Failure:
    """A call that failed for good: its last exception, and how many calls were made."""

    __slots__ = ("attempts", "error")

    def __init__(self, error: BaseException, attempts: int) -> None:
        self.error: BaseException | None = error
        self.attempts = attempts

    def take(self) -> BaseException:
        """Return the exception, no longer held here (see the note on reference cycles below)."""
        error, self.error = self.error, None
        if error is None:
            raise RuntimeError("a failed call's exception was taken twice")
        return error


# Reference cycles: an exception kept after its except block holds its
# traceback's frames, and through their f_back every caller frame of the
# batch with its locals (the argument buffers among them) until the cyclic
# GC runs: a worker process could then not unmap a shared-memory region. So
# a failure is kept only as long as needed: a row's is formatted where it is
# caught, a batch's (__call__) is handed out once, tasks end without one.


class AsyncUdf:
    """An async function (or an instance with an async ``__call__``) as the runtime calls it: synchronously.

    ``status`` is the worker's status array: each batch's counters go to
    ``COUNTERS_SLOT`` on, for the main side (None where nobody reads them).
    """

    # Set on the instance where DuckDB itself calls it (backend="inline", type="arrow").
    __signature__: Any = None

    def __init__(
        self,
        function: Callable[..., Any],
        options: AsyncOptions,
        retry_on: tuple[type[BaseException], ...],
        status: Any = None,
    ) -> None:
        self.function = function
        self.max_concurrency = options.max_concurrency
        self.retries = options.retries
        self.retry_backoff = options.retry_backoff
        self.call_timeout = options.call_timeout
        self.retry_on = retry_on
        self.status = status

    @classmethod
    def load(cls, function: Callable[..., Any], options: tuple[Any, ...], status: Any = None) -> AsyncUdf:
        """Wrap ``function`` with the options a spec carries, importing or unpickling its ``retry_on`` types."""
        options = AsyncOptions(*options)
        shipped_types = cast("tuple[str | bytes, ...]", options.retry_on)  # as the main side shipped them
        retry_on = tuple(resolve_exception_type(shipped) for shipped in shipped_types)
        return cls(function, options, retry_on, status)

    # -- what the runtime calls --------------------------------------------------

    def __call__(self, *arguments: Any) -> Any:
        """Await one call (a vectorized or arrow UDF's batch); raise its exception if it fails for good."""
        counters = _Counters()
        try:
            outcome = run(lambda: self._attempts(arguments, counters))
        finally:
            self._report(counters)
        if type(outcome) is not _Failure:
            return outcome
        error = outcome.take()
        try:
            raise error
        finally:
            del error  # not kept by this frame, which the traceback holds

    def call_rows(self, udf: LoadedUdf, arguments: list[Sequence[Any]], length: int, skip_nulls: bool) -> list[Any]:
        """Await a native UDF's rows concurrently, with ``call_per_row``'s NULL and exception semantics."""
        spec = udf.spec
        rows: Sequence[tuple[Any, ...]] = list(zip(*arguments, strict=True)) if arguments else [()] * length
        todo = [index for index, row in enumerate(rows) if not (skip_nulls and None in row)]
        results: list[Any] = [None] * length
        failures: list[tuple[int, str]] = []
        counters = _Counters()
        try:
            if todo:
                run(lambda: self._rows(rows, todo, results, failures, spec.errors_to_null, counters))
        finally:
            self._report(counters)
        if failures and not spec.errors_to_null:
            raise UdfRaised(min(failures)[1])
        if not spec.special_nulls:
            # Rows whose call failed for good are NULL under exception_handling="return_null"; a None
            # the function returned is an error, as in DuckDB.
            _check_no_null_results(results, arguments, {index for index, _ in failures})
        return results

    # -- coroutines ------------------------------------------------------------------

    async def _rows(
        self,
        rows: Sequence[tuple[Any, ...]],
        todo: list[int],
        results: list[Any],
        failures: list[tuple[int, str]],
        errors_to_null: bool,
        counters: _Counters,
    ) -> None:
        """Call every row of ``todo``, at most ``max_concurrency`` at once, until one fails for good.

        ``failures`` gets (row index, UdfRaised text) of each row that did;
        the tasks still running then are cancelled by run(). Under
        ``errors_to_null`` every row runs, and a failed one's text is empty.
        """
        pending = iter(todo)  # shared: each task takes the next row when it is free

        async def take_rows() -> None:
            for index in pending:
                outcome = await self._attempts(rows[index], counters)
                if type(outcome) is not _Failure:
                    results[index] = outcome
                elif errors_to_null:  # results[index] stays None; the row is noted, the batch goes on
                    failures.append((index, ""))
                else:
                    failures.append((index, _row_failure_text(outcome, index, rows[index])))
                    return
                outcome = None

        loop = asyncio.get_running_loop()
        running = {loop.create_task(take_rows()) for _ in range(min(self.max_concurrency, len(todo)))}
        while running and (errors_to_null or not failures):
            _, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)

    async def _attempts(self, arguments: Sequence[Any], counters: _Counters) -> Any:
        """Call the function on ``arguments``, retrying failures of ``retry_on``; return its value or a _Failure."""
        attempt = 0
        while True:
            counters.calls += 1
            counters.in_flight += 1
            counters.peak = max(counters.peak, counters.in_flight)
            try:
                return await self._call_once(arguments, counters)
            except asyncio.CancelledError as error:
                task = asyncio.current_task()
                if task is not None and task.cancelling():  # the batch is being stopped: so is this call
                    raise
                return _Failure(error, attempt + 1)  # the function itself raised it: its failure
            except UDF_ERRORS as error:
                # Decided here, so that no exception outlives this block.
                if attempt >= self.retries or not isinstance(error, self.retry_on):
                    return _Failure(error, attempt + 1)
            finally:
                counters.in_flight -= 1
            attempt += 1
            counters.retries += 1
            delay = min(RETRY_BACKOFF_CAP, self.retry_backoff * 2 ** (attempt - 1))
            # Jitter: calls that failed together (a server's hiccup) do not all come back at once.
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))

    async def _call_once(self, arguments: Sequence[Any], counters: _Counters) -> Any:
        if self.call_timeout is None:
            return await self.function(*arguments)
        scope = asyncio.timeout(self.call_timeout)
        try:
            async with scope:
                return await self.function(*arguments)
        except TimeoutError as error:
            if not scope.expired():  # the function's own TimeoutError
                raise
            counters.timeouts += 1
            # asyncio's TimeoutError says nothing; its cause (the CancelledError
            # that ended the call) shows where the call was waiting.
            cause = error.__cause__
            if cause is not None and cause.__traceback__ is not None:
                cause.__traceback__ = cause.__traceback__.tb_next  # this frame
            try:
                raise TimeoutError(f"the call did not finish within timeout={self.call_timeout:g} s") from cause
            finally:
                del cause  # not kept by this frame, which the traceback holds

    def _report(self, counters: _Counters) -> None:
        status = self.status
        if status is not None:
            status[COUNTERS_SLOT] = counters.calls
            status[COUNTERS_SLOT + 1] = counters.retries
            status[COUNTERS_SLOT + 2] = counters.timeouts
            status[COUNTERS_SLOT + 3] = counters.peak


def _row_failure_text(failure: _Failure, index: int, row: tuple[Any, ...]) -> str:
    """Return the UdfRaised text of a row that failed for good (the exception is let go): it names the row."""
    type_name, message, frames = _raised(failure.take()).args[0].split(FIELD_SEPARATOR, 2)
    attempts = f", {failure.attempts} calls" if failure.attempts > 1 else ""
    where = f"row {index} of the batch, arguments {_short_repr(row)}{attempts}"
    return FIELD_SEPARATOR.join((type_name, f"{message} ({where})" if message else f"({where})", frames))


def _short_repr(row: tuple[Any, ...], limit: int = 120) -> str:
    try:
        text = repr(row)
    except Exception:
        return "(unprintable)"
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---------------------------------------------------------------------------
# The event loop of this interpreter (or process)
# ---------------------------------------------------------------------------

_loop: asyncio.AbstractEventLoop | None = None
# Only backend="inline" runs batches from several threads in one interpreter; a loop runs in one at a time.
_loop_lock = threading.Lock()
_exit_hook_registered = False
# BaseExceptions (BatchStopped) that landed in a callback, which asyncio would only log: they stop the batch.
_stops: list[BaseException] = []


def event_loop() -> asyncio.AbstractEventLoop | None:
    """Return this interpreter's event loop, or None if no async UDF ran here yet (the tests look at its tasks)."""
    return _loop


def run(main: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """Run the coroutine ``main()`` makes on this interpreter's loop; cancel what it leaves running."""
    if not _loop_lock.acquire(timeout=LOOP_WAIT):
        raise RuntimeError(f"the event loop of async UDFs stayed busy for {LOOP_WAIT:g} s (backend='inline')")
    try:
        loop = _current_loop()
        # A loop already running in this thread (a notebook's) is suspended
        # while ours runs: the thread is busy in this call either way.
        outer = events._get_running_loop()
        if outer is loop:
            raise RuntimeError("an async UDF ran a query that calls an async UDF in the same thread (backend='inline')")
        if outer is not None:
            events._set_running_loop(None)
        try:
            return _run_batch(loop, main)
        finally:
            if outer is not None:
                events._set_running_loop(outer)
    finally:
        _loop_lock.release()


def _current_loop() -> asyncio.AbstractEventLoop:
    global _loop, _exit_hook_registered
    if _loop is None:
        _loop = asyncio.new_event_loop()
        _loop.set_exception_handler(_exception_handler)
        if not _exit_hook_registered:
            # Runs when the interpreter ends (Py_EndInterpreter runs atexit
            # hooks of subinterpreters too) or the worker process exits.
            atexit.register(close_loop)
            _exit_hook_registered = True
    return _loop


def _exception_handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    error = context.get("exception")
    if isinstance(error, BaseException) and not isinstance(error, (Exception, asyncio.CancelledError)):
        _stops.append(error)
        loop.stop()
        return
    loop.default_exception_handler(context)


def _run_batch(loop: asyncio.AbstractEventLoop, main: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    task = loop.create_task(main())
    ticker = _Ticker(loop)
    try:
        try:
            result = loop.run_until_complete(task)
        except RuntimeError:
            if _stops:  # "Event loop stopped before Future completed": a stop landed in a callback
                raise _stops.pop() from None
            raise
        if _stops:
            raise _stops.pop()
        return result
    finally:
        ticker.cancel()
        _stops.clear()
        # Cancel what is still pending: the other rows after a failure, all
        # of them after a stop, tasks a call left behind. A loop whose tasks
        # do not unwind in time is discarded with its transports.
        if not _settle(loop):
            _discard(loop)


class _Ticker:
    """Wake the loop every TICK while a batch runs (see the module docstring)."""

    __slots__ = ("handle", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.handle = loop.call_later(TICK, self._tick)

    def _tick(self) -> None:
        self.handle = self.loop.call_later(TICK, self._tick)

    def cancel(self) -> None:
        self.handle.cancel()


def _settle(loop: asyncio.AbstractEventLoop) -> bool:
    """Cancel the tasks left on ``loop`` and let them unwind; return whether all ended within CANCEL_GRACE."""
    if loop.is_closed():
        return True
    tasks = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in tasks:
        task.cancel()
    try:
        if tasks:
            loop.run_until_complete(asyncio.wait(tasks, timeout=CANCEL_GRACE))
        # One more step: a transport closed in the last one (a cancelled
        # call's finally) closes its socket now, not at the next batch.
        loop.call_soon(loop.stop)
        loop.run_forever()
    except BaseException:  # a second stop while unwinding: give up on this loop
        return False
    finally:
        for task in tasks:
            # Retrieving the outcome lets the task drop the exception it
            # keeps (a CancelledError too, with the frames it unwound), and
            # asyncio does not log "exception was never retrieved".
            if task.done():
                with contextlib.suppress(asyncio.CancelledError):
                    task.exception()
    return all(task.done() for task in tasks)


def _discard(loop: asyncio.AbstractEventLoop) -> None:
    """Close ``loop`` and what is still open on it; the next batch makes a fresh loop."""
    global _loop
    if _loop is loop:
        _loop = None
    _close(loop)


def close_loop() -> None:
    """Close this interpreter's loop, its pending tasks and the transports open on it (at exit)."""
    global _loop
    loop, _loop = _loop, None
    if loop is not None:
        _settle(loop)
        _close(loop)


def _close(loop: asyncio.AbstractEventLoop) -> None:
    if loop.is_closed() or loop.is_running():
        return
    # Selector loops keep their transports (fd -> transport); aborting them
    # closes their sockets at the next iteration, which runs here.
    transports = list(getattr(loop, "_transports", {}).values())
    try:
        for transport in transports:
            transport.abort()
        if transports:
            loop.call_soon(loop.stop)
            loop.run_forever()
        loop.run_until_complete(loop.shutdown_asyncgens())
    except BaseException:
        # A second stop while a stopped batch is being cleaned up, or an error
        # at exit: the first one is on its way already; the loop closes below.
        pass
    finally:
        loop.close()
