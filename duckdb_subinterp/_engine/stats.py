"""``UdfStats``: the counters of one registered UDF, which ``udf_stats`` reports."""

from __future__ import annotations

import threading


class UdfStats:
    """Counters of one registered UDF, updated by every batch.

    An async UDF also counts its calls (retries included), retries,
    timeouts, and the most calls one worker had in flight at once.
    """

    __slots__ = (
        "__weakref__",
        "_first",
        "_last",
        "_lock",
        "asynchronous",
        "batches",
        "calls",
        "fanned_batches",
        "in_thread_batches",
        "peak_concurrency",
        "retries",
        "rows",
        "slices",
        "timeouts",
        "wait_seconds",
        "worker_seconds",
    )

    def __init__(self, *, asynchronous: bool = False) -> None:
        self._lock = threading.Lock()
        self.batches = 0
        self.in_thread_batches = 0  # backend="auto": run in the calling DuckDB thread, not on the pool
        self.rows = 0
        self.slices = 0
        self.fanned_batches = 0
        self.wait_seconds = 0.0
        self.worker_seconds = 0.0
        self._first: float | None = None
        self._last = 0.0
        self.asynchronous = asynchronous
        self.calls = self.retries = self.timeouts = self.peak_concurrency = 0

    def record(self, rows: int, started: float, leased: float, finished: float, *, in_thread: bool = False) -> None:
        """Add one batch: when it started, got a worker (or ran in the calling thread) and finished."""
        with self._lock:
            self.batches += 1
            self.in_thread_batches += in_thread
            self.rows += rows
            self.slices += 1
            self.wait_seconds += leased - started
            self.worker_seconds += finished - leased
            if self._first is None:
                self._first = started
            self._last = max(self._last, finished)

    def record_in_thread(self, batches: int, rows: int, finished: float) -> None:
        """Add batches an arrow UDF settled in the calling thread ran, untimed (see BatchDispatcher.__call__)."""
        with self._lock:
            self.batches += batches
            self.in_thread_batches += batches
            self.rows += rows
            self.slices += batches
            self._last = max(self._last, finished)

    def record_slice(self, rows: int, seconds: float, finished: float) -> None:
        """Add a slice of a fanned-out batch."""
        with self._lock:
            self.rows += rows
            self.slices += 1
            self.worker_seconds += seconds
            self._last = max(self._last, finished)

    def record_fanned(self, started: float, leased: float) -> None:
        """Add one fanned-out batch (its slices are recorded one by one): when it started and got a worker."""
        with self._lock:
            self.batches += 1
            self.fanned_batches += 1
            self.wait_seconds += leased - started
            if self._first is None:
                self._first = started

    def record_calls(self, calls: int, retries: int, timeouts: int, peak_concurrency: int) -> None:
        """Add one async batch's counters (the worker's status slots from COUNTERS_SLOT on)."""
        with self._lock:
            self.calls += calls
            self.retries += retries
            self.timeouts += timeouts
            self.peak_concurrency = max(self.peak_concurrency, peak_concurrency)

    def as_dict(self) -> dict[str, float]:
        """Return the counters, plus the effective parallelism (worker time / elapsed time)."""
        with self._lock:
            elapsed = self._last - self._first if self._first is not None else 0.0
            counters = {
                "batches": self.batches,
                "in_thread_batches": self.in_thread_batches,
                "rows": self.rows,
                "slices": self.slices,
                "fanned_batches": self.fanned_batches,
                "worker_seconds": self.worker_seconds,
                "wait_seconds": self.wait_seconds,
                "elapsed_seconds": elapsed,
                "parallelism": self.worker_seconds / elapsed if elapsed > 0 else 0.0,
            }
            if self.asynchronous:
                counters.update(
                    calls=self.calls,
                    retries=self.retries,
                    timeouts=self.timeouts,
                    peak_concurrency=self.peak_concurrency,
                )
            return counters
