"""Starting worker processes: from one long-lived thread, with native thread pools sized to the worker's share.

Workers are started with ``subprocess`` (fork + exec of a fresh Python),
never a bare ``fork`` of this multi-threaded process.
"""

from __future__ import annotations

import contextlib
import os
import queue
import subprocess
import threading
from typing import Any

from duckdb_subinterp._backends.processes.wire import CLOSE_TIMEOUT, START_TIMEOUT
from duckdb_subinterp._engine.pool import WorkerFailure
from duckdb_subinterp._errors import PoolTimeoutError

# Thread pools of native libraries (BLAS under numpy, OpenMP), which each
# worker would otherwise size to every CPU: N workers x N threads.
_NATIVE_THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


def worker_environment(native_threads: int | None) -> dict[str, str] | None:
    """Return the worker's environment: ours, with native thread pools sized to its share of the CPUs."""
    if native_threads is None:
        return None
    environment = dict(os.environ)
    for variable in _NATIVE_THREAD_VARIABLES:
        environment.setdefault(variable, str(native_threads))  # what the user set wins
    return environment


class _SpawnJob:
    """One worker process to start on the spawner thread, and its outcome."""

    def __init__(self, arguments: list[str], options: dict[str, Any]) -> None:
        self.arguments = arguments
        self.options = options
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._abandoned = False
        self._process: subprocess.Popen[bytes] | None = None
        self._error: BaseException | None = None

    def run(self) -> None:
        try:
            process = subprocess.Popen(self.arguments, **self.options)
        except BaseException as error:
            self._error = error
        else:
            with self._lock:
                self._process = process
                abandoned = self._abandoned
            if abandoned:
                _kill(process)
        self._done.set()

    def result(self, timeout: float) -> subprocess.Popen[bytes]:
        try:
            finished = self._done.wait(timeout)
        except BaseException:
            self._abandon()
            raise
        if not finished:
            self._abandon()
            raise WorkerFailure(PoolTimeoutError, f"a worker process did not start within {timeout:g} s")
        if self._error is not None:
            raise self._error
        assert self._process is not None  # run() set the process where it set no error
        return self._process

    def _abandon(self) -> None:
        """Nobody will use the process: kill it, now or as soon as it exists."""
        with self._lock:
            self._abandoned = True
            process = self._process
        if process is not None:
            _kill(process)


def _kill(process: subprocess.Popen[bytes]) -> None:
    """Kill a worker that never served and reap it (a kill takes effect at once)."""
    process.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(CLOSE_TIMEOUT)


class Spawner:
    """Start worker processes from one long-lived thread of this process.

    Linux sends a worker's PR_SET_PDEATHSIG signal when the *thread* that
    started it exits, not the process; workers start lazily on DuckDB
    threads, which end with their query or database, so they start here.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: queue.SimpleQueue[_SpawnJob] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def popen(self, arguments: list[str], **options: Any) -> subprocess.Popen[bytes]:
        job = _SpawnJob(arguments, options)
        with self._lock:
            # Not started yet, or this is a forked child, where it does not run.
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._serve, name="duckdb_subinterp spawner", daemon=True)
                self._thread.start()
            self._jobs.put(job)
        return job.result(START_TIMEOUT)

    def _serve(self) -> None:
        while True:
            # No timeout: an idle daemon thread waiting for work; each caller
            # waits for its own job with one. Returning would kill the workers.
            self._jobs.get().run()


spawner = Spawner()
