"""The watchdog: one daemon thread for every pool, stopping batches that outran their timeout or met Ctrl-C.

It runs while any pool has workers, and looks at the batches running (a
backend that can stop one says which, by ``Worker.running_batch``) a few
times a second: one that outran its pool's ``timeout``, or that ran when
Ctrl-C was pressed, is stopped (``Worker.stop``); a worker whose batch does
not end within ``STOP_GRACE`` after that is given up, so the pool starts
another. It runs beside the batches, never on their path, and knows a pool
only by what it asks of it (``WatchedPool``), so the pool engine can own it.
"""

from __future__ import annotations

import contextlib
import threading
import time
import warnings
from collections.abc import Callable, Hashable, Iterable
from typing import Any, Protocol

from duckdb_subinterp._errors import PoolTimeoutError

STOP_GRACE = 2.0  # a batch asked to stop that still runs this long after is given up on
# The watchdog's tick while a batch runs, and while none does: a timeout or a
# Ctrl-C is acted on within about one busy tick of being seen.
_BUSY_TICK = 0.1
_IDLE_TICK = 0.5


class Running(Protocol):
    """A worker, as the watchdog sees it (``_engine.pool.Worker``)."""

    def running_batch(self) -> tuple[Hashable, bool] | None: ...
    def stop(self, batch: Hashable, failure: Any) -> bool: ...


class WatchedPool(Protocol):
    """A pool, as the watchdog sees it (``_engine.pool.WorkerPool``)."""

    timeout: float

    @property
    def _started(self) -> int: ...
    @property
    def _busy(self) -> set[Any]: ...
    def _watch_interrupts(self) -> None: ...
    def _give_up(self, worker: Any) -> bool: ...


class Watchdog:
    """One daemon thread for every pool, started with the first worker: stops runaway and interrupted batches."""

    def __init__(self, pools: Callable[[], Iterable[WatchedPool]], failure: Callable[[type, str], Any]) -> None:
        self._pools = pools  # the live pools, as the pool engine keeps them
        self._failure = failure  # makes the error a stopped batch fails with: the engine's WorkerFailure
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        # Batches running: (worker, token) -> [when first seen, when asked to stop or 0].
        self._seen: dict[tuple[Running, Hashable], list[float]] = {}
        self._helpers: dict[Running, threading.Thread] = {}

    def ensure_running(self) -> None:
        """Start the thread if it is not running (an attribute read when it is)."""
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="duckdb_subinterp watchdog", daemon=True)
                self._thread.start()

    def reset_after_fork(self) -> None:
        """In a forked child: the thread is gone; the next worker starts another."""
        self._lock = threading.Lock()
        self._thread = None
        self._seen.clear()
        self._helpers.clear()

    def _run(self) -> None:
        while True:
            running = self._look()
            if running is None:
                return
            time.sleep(_BUSY_TICK if running else _IDLE_TICK)

    def _look(self) -> set[tuple[Running, Hashable]] | None:
        """Visit every pool with workers once; return the batches running, or None (the thread ends) if none has.

        A method of its own so that no pool is referenced while the thread
        sleeps: a pool nobody else holds is collected (and its workers closed).
        """
        with self._lock:
            # Cleared while it looks, so that a worker starting meanwhile does
            # not count on this thread (ensure_running reads it unlocked) just
            # as it ends: it finds none, waits for this lock, and starts one.
            thread, self._thread = self._thread, None
            pools = [pool for pool in self._pools() if pool._started]
            if not pools:
                return None
            self._thread = thread
        running: set[tuple[Running, Hashable]] = set()
        for pool in pools:
            with contextlib.suppress(Exception):  # a backend's bug must not end the watchdog for every pool
                running |= self._visit(pool)
        # Forget batches that ended, and helpers that are done.
        self._seen = {key: times for key, times in self._seen.items() if key in running}
        self._helpers = {worker: helper for worker, helper in self._helpers.items() if helper.is_alive()}
        return running

    def _visit(self, pool: WatchedPool) -> set[tuple[Running, Hashable]]:
        """Act on the pool's running batches once; return them."""
        now = time.monotonic()
        pool._watch_interrupts()
        running = set()
        for worker in list(pool._busy):
            batch = worker.running_batch()
            if batch is None:
                continue
            token, interrupted = batch
            running.add((worker, token))
            # Timed from when first seen: a batch is stopped between its
            # pool's timeout and that plus one idle tick.
            times = self._seen.setdefault((worker, token), [now, 0.0])
            first_seen, stopped = times
            if stopped:
                if now - stopped >= STOP_GRACE and pool._give_up(worker):
                    _warn_from_thread(
                        f"a batch in {pool!r} did not stop within {STOP_GRACE:g} s of being asked to (a UDF "
                        "busy in C code, or one that catches BaseException): its worker is given up and replaced, "
                        "and the DuckDB thread running the batch stays blocked until it ends"
                    )
                continue
            if interrupted:
                failure = self._failure(KeyboardInterrupt, "the batch was stopped by Ctrl-C (SIGINT)")
            elif now - first_seen >= pool.timeout:
                failure = self._failure(
                    PoolTimeoutError,
                    f"the batch ran longer than the pool's timeout ({pool.timeout:g} s) and was stopped; "
                    "pass a larger timeout= to the pool if batches legitimately take this long",
                )
            else:
                continue
            times[1] = now
            self._stop(worker, token, failure)
        return running

    def _stop(self, worker: Running, token: Hashable, failure: Any) -> None:
        # Stopping may wait for the worker (an interpreter's GIL held by C
        # code): never on the watchdog's own thread, one wait per worker.
        helper = self._helpers.get(worker)
        if helper is not None and helper.is_alive():
            return
        helper = threading.Thread(target=worker.stop, args=(token, failure), name="duckdb_subinterp stop", daemon=True)
        self._helpers[worker] = helper
        helper.start()


def _warn_from_thread(message: str) -> None:
    """Warn from a background thread, where a filter turning warnings into errors has nobody to raise to."""
    with contextlib.suppress(Warning):
        warnings.warn(message, RuntimeWarning, stacklevel=2)
