"""``ProcessPool``: a pool of worker processes (see the package's docstring for how a batch travels)."""

from __future__ import annotations

import os

from duckdb_subinterp._backends.processes.worker import ProcessWorker
from duckdb_subinterp._engine import lifecycle  # noqa: F401 - exit and fork hooks in place before a pool exists
from duckdb_subinterp._engine.pool import DEFAULT_TIMEOUT, Worker, WorkerPool


class ProcessPool(WorkerPool):
    """A pool of worker processes, started lazily, shared by UDFs and connections.

    Each worker imports the UDF's module (or unpickles a by-value function)
    once; any package can load there, numpy and pyarrow included, and
    ``type="arrow"`` UDFs run there. A worker that dies is replaced. Native
    thread pools (OMP_NUM_THREADS and the BLAS ones) get the worker's share
    of the CPUs, unless those variables are set already.

    Args:
        size: How many worker processes at most; None for the CPU count.
        timeout: Seconds a batch may wait for a free worker, and may run before its worker is killed
            (``PoolTimeoutError``); ``math.inf`` for no limit.

    Raises:
        ValueError: ``size`` is not a positive int, or ``timeout`` not a positive number.

    Example:
        ```python
        with duckdb_subinterp.ProcessPool(2) as pool:
            duckdb_subinterp.create_function(
                con, "score", numpy_score, ["DOUBLE"], "DOUBLE", type="arrow", backend="processes", pool=pool
            )
        ```
    """

    # Fan-out: a hand-off to a helper thread, copies in and out of shared memory, a pipe round trip.
    slice_overhead_seconds = 300e-6
    # a query over an arrow UDF costs ~0.46 ms a batch through a worker process, ~0.13 here
    round_trip_seconds = 350e-6

    def __init__(self, size: int | None = None, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        super().__init__(size, timeout=timeout)

    def _start_worker(self) -> Worker:
        return ProcessWorker(self.timeout, native_threads=max(1, (os.cpu_count() or 1) // self.size))
