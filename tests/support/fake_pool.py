"""An in-memory backend for the pool engine's tests: fake workers that do as told and record what they were asked.

A ``FakePool`` starts ``FakeWorker``s that run nothing. Its ``Script`` holds
the knobs (a start that fails or waits, a load that fails, a batch that
blocks until released, a worker that dies in a batch, one that can be
aborted or stopped) and the record of every call the engine made, in order.
Workers hold the script, never the pool, so a pool nobody holds is still
collected. Every wait in here has a timeout (``WAIT``): a test that goes
wrong fails instead of hanging.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Hashable, Sequence
from typing import Any

from duckdb_subinterp._engine import lifecycle  # noqa: F401 - exit and fork hooks in place, as every backend has them
from duckdb_subinterp._engine.pool import Worker, WorkerFailure, WorkerPool
from duckdb_subinterp._errors import BrokenPoolError, UDFExecutionError, UDFRegistrationError
from duckdb_subinterp._worker.protocol import MODE_BUFFERS, BatchRequest

WAIT = 5.0  # seconds: the longest anything here waits before the test fails


class StartFailed(Exception):
    """What a fake start raises when told to fail."""


class Script:
    """What the fake workers of one pool do (the knobs), and what the engine asked of them (``calls``)."""

    def __init__(self) -> None:
        # -- knobs: set them before the call they are about (or between calls).
        self.fail_starts = 0  # the next N starts raise StartFailed
        self.start_gate: threading.Event | None = None  # when set, starts wait for it (a slow start)
        self.fail_loads: float = 0  # the next N loads fail; math.inf: every load
        self.fail_loads_from: int | None = None  # workers numbered this or more fail every load
        self.fail_runs = False  # a batch fails as a UDF that raised does: WorkerFailure
        self.block_runs = False  # a batch blocks until its worker's ``release`` is set
        self.die_in_runs = False  # a batch finds its worker dead: broken, and BrokenPoolError
        self.abortable = False  # Worker.abortable of the workers started from now on
        self.stoppable = False  # a blocked batch is reported by running_batch(), so the watchdog can stop it
        self.stop_takes = True  # stop() ends the blocked batch (else it goes on running)
        self.interrupted = False  # running_batch() says Ctrl-C came since the batch started
        # -- the record.
        self.calls: list[tuple[Any, ...]] = []  # (what, worker number, arguments...), in order
        self.workers: list[FakeWorker] = []  # every worker started, by number
        self.starting = threading.Event()  # set when a start begins, before the gate (clear it to wait for the next)
        self._lock = threading.Lock()
        self._numbers = itertools.count()

    def record(self, what: str, worker: FakeWorker | None, *arguments: Any) -> None:
        with self._lock:
            self.calls.append((what, None if worker is None else worker.number, *arguments))

    def called(self, what: str) -> list[tuple[Any, ...]]:
        """Return the calls of one kind, without their name: ``called("load") == [(0, 1), (1, 1)]``."""
        with self._lock:
            return [call[1:] for call in self.calls if call[0] == what]

    def start(self) -> FakeWorker:
        """What ``FakePool._start_worker`` does: wait at the gate, fail if told to, else a new worker."""
        with self._lock:
            number = next(self._numbers)
        self.record("start", None, number)
        self.starting.set()
        if self.start_gate is not None and not self.start_gate.wait(WAIT):
            raise AssertionError(f"a start waited at the gate longer than {WAIT} s")
        with self._lock:
            failing = self.fail_starts > 0
            self.fail_starts -= failing
        if failing:
            raise StartFailed(f"fake start {number} failed")
        worker = FakeWorker(self, number)
        with self._lock:
            self.workers.append(worker)
        return worker

    def load_fails(self, worker: FakeWorker) -> bool:
        with self._lock:
            if self.fail_loads_from is not None and worker.number >= self.fail_loads_from:
                return True
            failing = self.fail_loads > 0
            self.fail_loads -= failing
        return failing


class FakeWorker(Worker):
    """A worker that runs nothing: it does what its pool's ``Script`` says and records each call there."""

    def __init__(self, script: Script, number: int) -> None:
        super().__init__()
        self.script = script
        self.number = number
        self.description = f"fake worker {number}"
        self.abortable = script.abortable
        self.running = threading.Event()  # set while a batch blocks
        self.release = threading.Event()  # a blocked batch ends when set
        self.closes = 0
        self.forgotten = False
        self._batch = 0  # the token of the batch running now (running_batch)
        self._ending: BaseException | None = None  # what a blocked batch raises when released: a stop, an abort

    def load(self, udf_id: int, spec: tuple[Any, ...]) -> None:
        self.script.record("load", self, udf_id)
        if self.script.load_fails(self):
            raise WorkerFailure(UDFRegistrationError, f"{self.description} cannot load UDF {udf_id}")

    def unload(self, udf_id: int) -> None:
        self.script.record("unload", self, udf_id)

    def run(self, request: BatchRequest) -> Sequence[int]:
        self.script.record("run", self, request.udf_id)
        if self.script.die_in_runs:
            self.broken = True
            raise BrokenPoolError(f"{self.description} died in a batch")
        if self.script.fail_runs:
            raise WorkerFailure(UDFExecutionError, "the UDF raised")
        if self.script.block_runs:
            self._batch += 1
            self._ending = None
            self.release.clear()
            self.running.set()
            try:
                if not self.release.wait(WAIT):
                    raise AssertionError(f"a batch on {self.description} was not released within {WAIT} s")
            finally:
                self.running.clear()
            if self._ending is not None:
                raise self._ending
        return (0, 0)

    def copy_pending(self, outputs: Sequence[memoryview]) -> None:
        self.script.record("copy_pending", self)

    def close(self) -> None:
        self.script.record("close", self)
        self.closes += 1

    def abort(self, reason: str) -> None:
        self.script.record("abort", self, reason)
        self.broken = True
        self._ending = BrokenPoolError(f"the batch {reason}")
        self.release.set()

    def running_batch(self) -> tuple[Hashable, bool] | None:
        if not (self.script.stoppable and self.running.is_set()):
            return None
        return self._batch, self.script.interrupted

    def stop(self, batch: Hashable, failure: WorkerFailure) -> bool:
        self.script.record("stop", self, failure.error_type)
        if self.script.stop_takes and batch == self._batch and self.running.is_set():
            self._ending = failure
            self.release.set()
        return True

    def begin_close(self) -> None:
        self.script.record("begin_close", self)

    def forget(self) -> None:
        self.script.record("forget", self)
        self.forgotten = True


class FakePool(WorkerPool):
    """A pool of ``FakeWorker``s; ``script`` holds the knobs and the record."""

    def __init__(self, size: int = 2, *, timeout: float = WAIT) -> None:
        super().__init__(size, timeout=timeout)
        self.script = Script()

    def _start_worker(self) -> FakeWorker:
        return self.script.start()


class ForkFragileFakePool(FakePool):
    """A fake pool whose workers would not survive a fork (as per-GIL interpreters do not)."""

    close_workers_before_fork = True


def batch(udf_id: int) -> BatchRequest:
    """A batch for ``udf_id``: the fakes read only its UDF."""
    return BatchRequest(udf_id, 1, (), (), None, MODE_BUFFERS)
