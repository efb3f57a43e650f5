"""The worker process's main: answer the parent's requests on the pipe until it says exit or goes away.

Started by ``worker.ProcessWorker`` through a bare package object (its
bootstrap), so it imports only what a worker needs: the runtime, the codec,
these modules. A worker never outlives its parent: on Linux it asks the
kernel to kill it when its parent goes (PR_SET_PDEATHSIG, which also stops a
UDF stuck in C code holding the GIL), and on every platform a thread in it
exits the process once the pipe to the parent closes or the parent pid changes.
"""

from __future__ import annotations

import contextlib
import math
import os
import select
import signal
import sys
import threading
import traceback
from array import array
from collections.abc import Sequence
from multiprocessing import connection
from typing import Any, cast

from duckdb_subinterp._backends.processes.arrow_udfs import ProcessRuntime
from duckdb_subinterp._backends.processes.shared_memory import MappedRegion, RegionUnavailable, receive_fds
from duckdb_subinterp._backends.processes.wire import (
    START_TIMEOUT,
    Copy,
    Exit,
    Hello,
    Load,
    Reply,
    Request,
    Run,
    Unload,
    unpack_column,
)
from duckdb_subinterp._worker.protocol import OUTPUT_SLOT, PENDING_PICKLED, STATUS_SLOTS, BatchRequest, raised
from duckdb_subinterp._worker.runtime import CapturedOutput, PickledResult

# How often a worker checks that its parent is still the same process.
_PARENT_CHECK_SECONDS = 1.0
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _die_with_parent(fd: int, parent_pid: int) -> None:
    """Make this worker end when its parent does, even in the middle of a batch."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            # SIGKILL from the kernel: stops a UDF looping in C code with the GIL held.
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, ctypes.c_ulong(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError, ImportError):  # no libc prctl: the watch below still works
            pass
    if os.getppid() != parent_pid:  # the parent died before the kernel knew to tell
        os._exit(0)
    threading.Thread(
        target=_watch_parent, args=(fd, parent_pid), name="duckdb_subinterp parent watch", daemon=True
    ).start()


def _watch_parent(fd: int, parent_pid: int) -> None:
    """Exit the process once the pipe to the parent closed or the parent changed (the platform-independent watch)."""
    poller = select.poll()
    # Peer closed: POLLHUP (always reported), POLLRDHUP where it exists.
    poller.register(fd, getattr(select, "POLLRDHUP", 0))
    while True:
        if poller.poll(math.ceil(_PARENT_CHECK_SECONDS * 1000)) or os.getppid() != parent_pid:
            os._exit(0)


def _error(error: BaseException, request: Request) -> tuple[str, str, str]:
    """Say what went wrong, as the parent's ``WorkerFailure.from_names`` reads it: type name, message, traceback."""
    display = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    if not isinstance(error, Exception) and type(request) in (Run, Copy):
        # SystemExit, KeyboardInterrupt... raised by the UDF: the query fails
        # as for any exception, and the worker goes on (DuckDB's own UDFs
        # report "SystemExit: bye" and keep the process too).
        return ("UdfRaised", str(raised(error)), display)
    return (type(error).__name__, str(error), display)


def serve(fd: int, parent_pid: int, streams: Sequence[tuple[str, str, bool]]) -> None:
    """Answer requests from the parent on ``fd`` until it says exit or goes away.

    ``streams``: (encoding, errors, isatty) of the parent's stdout and stderr.
    """
    import faulthandler

    faulthandler.enable()  # a crash prints the worker's stack to stderr (its file descriptor, taken now)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    os.set_inheritable(fd, False)
    _die_with_parent(fd, parent_pid)
    conn = connection.Connection(fd)
    status = array("q", bytes(8 * STATUS_SLOTS))
    runtime = ProcessRuntime(memoryview(status))
    # What the UDFs print goes back with each reply and the last words at exit, to the parent's
    # streams, as on subinterpreters; what is left when the parent cannot take it (gone, or the worker
    # ends on a fatal error) goes to the worker's own (the parent's file descriptors).
    output = CapturedOutput(runtime.status, streams)
    output.install()
    try:
        _serve(conn, fd, status, runtime, output)
    finally:
        output.spill()


def _serve(
    conn: connection.Connection[Any, Any], fd: int, status: array[int], runtime: ProcessRuntime, output: CapturedOutput
) -> None:
    inputs: MappedRegion | None = None
    outputs: MappedRegion | None = None

    def remap(input_size: int, output_size: int) -> None:
        """Map the regions the parent handed over with this message (a size of 0: none), replacing the old ones."""
        nonlocal inputs, outputs
        fds = iter(receive_fds(fd, bool(input_size) + bool(output_size), START_TIMEOUT))
        if input_size:
            fresh = MappedRegion(next(fds), input_size)
            if inputs is not None:
                inputs.close()  # a UDF that kept views of it keeps the mapping alive
            inputs = fresh
        if output_size:
            fresh = MappedRegion(next(fds), output_size)
            if outputs is not None:
                outputs.close()
            outputs = fresh

    def views(region: MappedRegion | None, spans: Sequence[Any]) -> list[Any]:
        assert region is not None  # the first run maps both regions
        return [None if span is None else region.view[span[0] : span[0] + span[1]] for span in spans]

    def handle(request: Request) -> Any:
        # The views made here die with this call, so a region can be
        # replaced (closed) at the next request.
        kind = type(request)
        if kind is Run:
            run = cast(Run, request)
            if run.input_size or run.output_size:
                remap(run.input_size, run.output_size)
            assert inputs is not None  # the first run maps both regions
            batch = inputs.batch_view()
            columns = [unpack_column(column, batch) for column in run.layout]
            del batch
            outputs_views = views(outputs, run.output_spans)
            runtime.run(BatchRequest(run.udf_id, run.length, columns, outputs_views, run.descriptors, run.mode))
            del outputs_views
            pending = runtime.pending
            if status[1] == PENDING_PICKLED:
                runtime.pending = None
                return status.tobytes(), cast(PickledResult, pending).data  # what deliver() kept
            return status.tobytes(), None
        if kind is Copy:
            copy = cast(Copy, request)
            if copy.output_size:
                remap(0, copy.output_size)
            runtime.copy_pending(views(outputs, copy.output_spans))
            return None
        if kind is Load:
            load = cast(Load, request)
            return runtime.load(load.udf_id, load.spec)
        if kind is Unload:
            return runtime.unload(cast(Unload, request).udf_id)
        if kind is Hello:
            return os.getpid()
        raise RuntimeError(f"unknown request {request!r}")

    while True:
        try:
            request: Request = conn.recv()
        except (EOFError, OSError):
            return  # the parent went away
        if type(request) is Exit:
            with contextlib.suppress(OSError):
                conn.send(Reply("bye", None, False, output.take() if status[OUTPUT_SLOT] else None))
            return
        try:
            kind, payload = "ok", handle(request)
        except BaseException as error:
            if isinstance(error, RegionUnavailable):
                # The parent believes this worker holds a region it does not: it cannot go on.
                why = f"could not take a shared-memory region from the parent: {error}"
                conn.send(Reply("fatal", why, False, None))
                output.spill()
                os._exit(71)
            if isinstance(error, MemoryError) or isinstance(error.__context__, MemoryError):
                # The process may be in no state to go on: report, then exit.
                why = f"ran out of memory (MemoryError) while running a batch:\n{error}"
                conn.send(Reply("fatal", why, False, None))
                output.spill()
                os._exit(70)
            kind, payload = "error", _error(error, request)
        # Asked only now: the except block above dropped the exception, and
        # with it the frames (and argument views) its traceback held.
        kept = type(request) in (Run, Copy) and inputs is not None and inputs.in_use()
        conn.send(Reply(kind, payload, kept, output.take() if status[OUTPUT_SLOT] else None))
