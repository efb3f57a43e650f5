"""The parent's side of one worker process: a pipe for requests, shared memory for the batches.

``ProcessWorker`` starts the process (through ``spawner``), speaks ``wire``'s
records to it, hands it ``shared_memory`` regions, and says, when it dies,
what it was doing and what most likely killed it.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import select
import signal
import subprocess
import sys
import time
from array import array
from collections.abc import Sequence
from multiprocessing import connection
from pathlib import Path
from typing import Any

from duckdb_subinterp._backends.processes import wire
from duckdb_subinterp._backends.processes.shared_memory import Region, RegionSlot, send_fds
from duckdb_subinterp._backends.processes.spawner import spawner, worker_environment
from duckdb_subinterp._backends.processes.wire import (
    CLOSE_TIMEOUT,
    DOING,
    START_TIMEOUT,
    Copy,
    Exit,
    Hello,
    Load,
    Packer,
    Reply,
    Request,
    Run,
    Unload,
    layout,
)
from duckdb_subinterp._codec import write_bytes
from duckdb_subinterp._engine.pool import DEFAULT_TIMEOUT, Worker, WorkerFailure, write_worker_output
from duckdb_subinterp._errors import BrokenPoolError, PoolTimeoutError, WorkerDiedError
from duckdb_subinterp._worker.protocol import SIZES_SLOT, BatchRequest
from duckdb_subinterp._worker.runtime import main_streams, write_output

PACKAGE_DIR = str(Path(__file__).resolve().parents[2])  # duckdb_subinterp/
# A wait for a reply wakes at least this often: with timeout=inf, and where
# no pidfd tells at once that the worker died.
_POLL_SLICE = 1.0


# The worker's first lines: a bare package object, as in the interpreters,
# so importing the worker's modules does not run the package's
# __init__ (which imports duckdb and pyarrow).
_BOOTSTRAP = """
import json, sys, types
_package_dir, _path, _fd, _parent = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
_streams = [tuple(stream) for stream in json.loads(sys.argv[5])]
_package = types.ModuleType("duckdb_subinterp")
_package.__path__ = [_package_dir]
sys.modules["duckdb_subinterp"] = _package
sys.path[:] = _path
# UDF modules decorate with @duckdb_subinterp.export (and export_aggregate, export_table_function); stdlib-only.
from duckdb_subinterp import _export
_package.export = _export.export
_package.export_aggregate = _export.export_aggregate
_package.export_table_function = _export.export_table_function
from duckdb_subinterp._backends.processes.child import serve
serve(_fd, _parent, _streams)
"""

# Why a worker that died most likely did, by the signal that ended it.
_SIGNAL_CAUSES = {
    signal.SIGSEGV: "a crash in native code (a C extension, ctypes or a library bug)",
    signal.SIGBUS: "a crash in native code (bad memory access)",
    signal.SIGILL: "a crash in native code (illegal instruction)",
    signal.SIGFPE: "a crash in native code (arithmetic fault)",
    signal.SIGABRT: "an abort in native code (a failed assertion or abort())",
    signal.SIGKILL: "killed from outside, often by the kernel's out-of-memory killer; check memory use",
    signal.SIGTERM: "terminated by a signal from outside",
}


def describe_exit(returncode: int | None) -> str:
    """Say how a worker process ended and what most likely made it."""
    if returncode is None:
        return "stopped answering"
    if returncode < 0:
        try:
            number = signal.Signals(-returncode)
        except ValueError:
            return f"was killed by signal {-returncode}"
        cause = _SIGNAL_CAUSES.get(number, "killed by a signal")
        return f"was killed by signal {number.name} ({-returncode}): {cause}"
    return (
        f"exited with code {returncode}: the UDF or a library it calls ended the process "
        "(os._exit(), sys.exit(), or a fatal interpreter error)"
    )


class ProcessWorker(Worker):
    """One worker process: a pipe for requests, shared memory for the batches."""

    abortable = True

    def __init__(self, timeout: float = DEFAULT_TIMEOUT, *, native_threads: int | None = None) -> None:
        super().__init__()
        self.timeout = timeout
        self.broken = False
        self._inputs = RegionSlot()
        self._outputs = RegionSlot()
        self._output_spans: list[tuple[int, int]] = []
        self._result_sizes: Sequence[int] = ()
        self._pickled: bytes | None = None  # the last batch's pickled result, sent with its status
        self._abort_reason: str | None = None
        self._conn, child = connection.Pipe(duplex=True)
        try:
            self.process = spawner.popen(
                [
                    sys.executable,
                    "-c",
                    _BOOTSTRAP,
                    PACKAGE_DIR,
                    json.dumps(sys.path),
                    str(child.fileno()),
                    str(os.getpid()),
                    json.dumps(main_streams()),
                ],
                pass_fds=(child.fileno(),),
                stdin=subprocess.DEVNULL,
                close_fds=True,
                env=worker_environment(native_threads),
            )
        except BaseException:
            self._conn.close()
            raise
        finally:
            child.close()
        self.pid = self.process.pid
        self.description = f"worker process {self.pid}"
        # A pidfd becomes readable the moment the process exits, even if
        # something it started still holds the pipe open.
        self._sentinel = os.pidfd_open(self.pid) if hasattr(os, "pidfd_open") else None
        # One poll object for the worker's life: multiprocessing.connection.wait
        # builds a selector per call, ~10 us of each batch here.
        self._conn_fd = self._conn.fileno()
        self._poller = select.poll()
        for fd in (self._conn_fd, self._sentinel):
            if fd is not None:
                self._poller.register(fd, select.POLLIN)
        try:
            self._request(Hello(), timeout=min(START_TIMEOUT, timeout))
        except BaseException:
            self.close()
            raise

    # -- the Worker interface ------------------------------------------------

    def load(self, udf_id: int, spec: tuple[Any, ...]) -> None:
        self._request(Load(udf_id, spec))

    def unload(self, udf_id: int) -> None:
        self._request(Unload(udf_id))

    def run(self, request: BatchRequest) -> Sequence[int]:
        outputs = request.outputs
        # Every buffer of every column (children included) is copied into the
        # input region and replaced by its span in the request.
        packer = Packer()
        packed = [packer.pack(column) for column in request.columns]
        fresh_inputs = self._inputs.fit(packer.size)
        assert self._inputs.region is not None  # fit() made one if there was none
        packer.copy_into(self._inputs.region.view)
        fresh_outputs = self._fit_outputs([view.nbytes for view in outputs])
        input_size, output_size = _sizes(fresh_inputs, fresh_outputs)
        message = Run(
            request.udf_id,
            request.length,
            packed,
            self._output_spans,
            input_size,
            output_size,
            request.descriptors,
            request.mode,
        )
        # The status slots travel as raw bytes: pickling 256 ints cost ~10 us a batch.
        # A pickled result rides along in the reply: no second round trip.
        raw_status, self._pickled = self._request(message, handing=(fresh_inputs, fresh_outputs))
        status = array("q", raw_status)
        # From SIZES_SLOT on: the result's sizes, validity first; any further
        # slots are relayed untouched.
        self._result_sizes = status[SIZES_SLOT : SIZES_SLOT + len(outputs)]
        if not status[1]:  # written into the worker's outputs: copy them to ours
            self._copy_results(outputs, self._result_sizes)
        return status

    def copy_pending(self, outputs: Sequence[memoryview]) -> None:
        if self._pickled is not None:
            pickled, self._pickled = self._pickled, None
            write_bytes(outputs[0], memoryview(pickled))
            return
        fresh_outputs = self._fit_outputs([view.nbytes for view in outputs])
        self._request(Copy(self._output_spans, *_sizes(fresh_outputs)), handing=(fresh_outputs,))
        self._copy_results(outputs, self._result_sizes)

    def alive(self) -> bool:
        return not self.broken and self.process.poll() is None

    def abort(self, reason: str) -> None:
        self._abort_reason = reason
        with contextlib.suppress(OSError):
            self.process.kill()  # the thread in _receive sees it through the pidfd (or the pipe) at once

    def close(self) -> None:
        deadline = time.monotonic() + CLOSE_TIMEOUT  # for the last words and the exit together
        try:
            if self.process.poll() is None:
                if self.broken:  # interrupted or timed out in a batch: it may be busy for long, and is not reused
                    self.process.kill()
                else:
                    with contextlib.suppress(OSError, EOFError):
                        self._conn.send(Exit())
                        self._last_output(deadline)
            try:
                self.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(CLOSE_TIMEOUT)
        except Exception:  # close must not raise
            pass
        self._release_handles()

    def _last_output(self, deadline: float) -> None:
        """Write what the UDFs' own threads printed since the last batch, which the worker sends as it exits."""
        if self._conn.poll(max(0.0, deadline - time.monotonic())):
            printed = self._conn.recv().printed  # the Reply("bye") to Exit
            if printed:
                with contextlib.suppress(Exception):  # close must not raise
                    write_output(printed)

    def forget(self) -> None:
        # In a forked child: the process and its pipe are the parent's, in
        # use by the parent. Close only this process's copies of the pipe,
        # the pidfd and the regions' mappings: no "exit" on the pipe, no kill.
        self.broken = True
        self._release_handles()

    def _release_handles(self) -> None:
        """Close this process's end of the pipe, the pidfd and the regions' mappings."""
        self._conn.close()
        if self._sentinel is not None:
            os.close(self._sentinel)
            self._sentinel = None
        self._inputs.retire()
        self._outputs.retire()

    # -- shared memory ---------------------------------------------------------

    def _fit_outputs(self, sizes: Sequence[int]) -> Region | None:
        self._output_spans, total = layout(sizes)
        return self._outputs.fit(total)

    def _copy_results(self, outputs: Sequence[memoryview], sizes: Sequence[int]) -> None:
        assert self._outputs.region is not None  # _fit_outputs() made one for this batch
        region = self._outputs.region.view
        for view, size, (start, _) in zip(outputs, sizes, self._output_spans, strict=True):
            if size:
                view.cast("B")[:size] = region[start : start + size]

    # -- the pipe ----------------------------------------------------------------

    def _request(self, message: Request, timeout: float | None = None, handing: Sequence[Region | None] = ()) -> Any:
        """Send ``message`` (and the regions it announces), wait for the reply, the worker's death or the timeout."""
        command = wire.command(message)
        regions = [region for region in handing if region is not None]
        try:
            self._conn.send(message)
            if regions:
                send_fds(self._conn_fd, [region.fd for region in regions])
        except OSError:
            self._died(command)
        except BaseException:
            self.broken = True  # the worker may have half a message: it cannot be used again
            raise
        finally:
            for region in regions:
                region.handed_over()
        try:
            reply: Reply = self._receive(command, self.timeout if timeout is None else timeout)
        except BaseException:
            # Interrupted (KeyboardInterrupt...) between request and reply:
            # a late reply would answer the next request, so the worker
            # is not used again.
            self.broken = True
            raise
        if reply.printed is not None:  # what the UDF printed, in the main interpreter's streams (see CapturedOutput)
            if reply.kind == "ok":
                write_worker_output(reply.printed)
            else:
                with contextlib.suppress(Exception):  # the request's own error is the one to raise
                    write_output(reply.printed)
        if reply.inputs_kept:
            # The UDF kept views of this batch's arguments: the next batch goes
            # to a fresh region, and the worker's mapping of this one lives on.
            self._inputs.retire()
        if reply.kind == "ok":
            return reply.payload
        if reply.kind == "fatal":
            self.broken = True
            try:
                self.process.wait(CLOSE_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
            raise WorkerFailure(WorkerDiedError, f"worker process {self.pid} {reply.payload}")
        raise WorkerFailure.from_names(*reply.payload)

    def _receive(self, command: str, timeout: float) -> Reply:
        deadline = time.monotonic() + timeout  # inf: no limit
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.broken = True
                self.process.kill()
                raise WorkerFailure(
                    PoolTimeoutError,
                    f"worker process {self.pid} did not answer within {timeout:g} s {DOING[command]} and was "
                    "killed; pass a larger timeout= to the pool if batches legitimately take this long",
                )
            ready = self._poller.poll(max(1, math.ceil(min(remaining, _POLL_SLICE) * 1000)))
            if not ready:
                if self._sentinel is None and self.process.poll() is not None:
                    self._died(command)  # a process it started may hold the pipe open
                continue
            # A reply already in the pipe wins over the exit that may follow it.
            if any(fd == self._conn_fd for fd, _ in ready) or self._conn.poll(0):
                try:
                    reply: Reply = self._conn.recv()
                    return reply
                except (EOFError, OSError):
                    self._died(command)
            self._died(command)

    def _died(self, command: str) -> None:
        self.broken = True
        try:
            returncode = self.process.wait(CLOSE_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            returncode = None
        if self._abort_reason is not None:
            raise WorkerFailure(BrokenPoolError, f"worker process {self.pid} {self._abort_reason}")
        raise WorkerFailure(
            WorkerDiedError,
            f"worker process {self.pid} {describe_exit(returncode)}. It died {DOING[command]}; "
            "the pool starts a fresh worker for the next batch",
        )


def _sizes(*regions: Region | None) -> tuple[int, ...]:
    """Return the size of each region handed over with a message, 0 for one that was not replaced."""
    return tuple(0 if region is None else region.size for region in regions)
