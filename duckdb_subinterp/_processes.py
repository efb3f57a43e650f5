"""Workers that are separate Python processes, fed through shared memory.

For UDFs that cannot run in an isolated interpreter (numpy, pyarrow,
pandas...) and for ``type="arrow"``. One batch, on the DuckDB thread that
checked the worker out::

    DuckDB thread                                 worker process (its own GIL)
      argument memoryviews                          |
      --copy once--> input region (shared memory)   |
      --pipe: ("run", udf id, buffer spans) ------> views over the input region
        [+ the fd of a new region, when replaced]   Runtime.run (_codecc/_codec, or
                                                    pyarrow for type="arrow") writes the
                                                    result into the output region
      <-pipe: ("ok", status slots, inputs kept) ----+
      output region --copy once--> OutputBuffers of the dispatcher

Workers are started with ``subprocess`` (fork + exec of a fresh Python),
never a bare ``fork`` of this multi-threaded process; the worker imports
only ``_runtime`` and the codec through a bare package object (as the
interpreters do), so it neither re-runs the user's ``__main__`` (what
multiprocessing's spawn does) nor imports duckdb and pyarrow until an arrow
UDF needs them: measured 0.10 s to start a worker here, against 0.43 s for
a multiprocessing "spawn" child that imports the package.

Shared-memory regions belong to the parent and have no name: a memfd on
Linux (elsewhere a POSIX shared-memory object unlinked the moment it is
created), whose descriptor travels to the worker over the pipe
(SCM_RIGHTS). Nothing ever appears in /dev/shm, so no crash, kill or exit
can leave a segment behind; the memory goes with the last process mapping it.

A worker never outlives this process: on Linux it asks the kernel to kill
it when its parent goes (PR_SET_PDEATHSIG, which also stops a UDF stuck in C
code holding the GIL), and on every platform a thread in it exits the
process once the pipe to the parent closes or the parent pid changes.

A process forked from this one (``os.fork``, multiprocessing's "fork"
start method) shares these pipes and regions but never uses them: the pool
engine's fork hook makes its pools drop the workers (``forget``) and start
their own on first use.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import math
import mmap
import os
import queue
import secrets
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import weakref
from array import array
from collections.abc import Sequence
from multiprocessing import connection
from pathlib import Path
from typing import Any, NamedTuple, cast

from duckdb_subinterp._codec import MAX_BATCH_BYTES, OffsetFormat, copy_buffers, write_bytes
from duckdb_subinterp._errors import BrokenPoolError, PoolTimeoutError, WorkerDiedError
from duckdb_subinterp._pool import CLOSE_GRACE, DEFAULT_TIMEOUT, Worker, WorkerFailure, WorkerPool
from duckdb_subinterp._runtime import (
    NULL_RESULT_ERROR,
    PENDING_PICKLED,
    SIZES_SLOT,
    STATUS_SLOTS,
    UDF_ERRORS,
    LoadedUdf,
    PickledResult,
    Runtime,
    UdfResultInvalid,
    _raised,
)

PACKAGE_DIR = str(Path(__file__).resolve().parent)
START_TIMEOUT = 60.0  # a worker that is not ready by then is reported, not waited for
CLOSE_TIMEOUT = 2.0  # a worker asked to exit gets this long before it is killed
_ALIGNMENT = 64  # Arrow's buffer alignment, so pyarrow in the worker never copies to realign
_MIN_REGION = 1 << 16
# A region shrinks when SHRINK_AFTER batches in a row needed less than a
# SHRINK_FACTOR-th of it: to twice the largest of them.
SHRINK_AFTER = 32
SHRINK_FACTOR = 4
# A wait for a reply wakes at least this often: with timeout=inf, and where
# no pidfd tells at once that the worker died.
_POLL_SLICE = 1.0
# How often a worker checks that its parent is still the same process.
_PARENT_CHECK_SECONDS = 1.0
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>

# The worker's first lines: a bare package object, as in the interpreters,
# so `import duckdb_subinterp._processes` does not run the package's
# __init__ (which imports duckdb and pyarrow).
_BOOTSTRAP = """
import json, sys, types
_package_dir, _path, _fd, _parent = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
_package = types.ModuleType("duckdb_subinterp")
_package.__path__ = [_package_dir]
sys.modules["duckdb_subinterp"] = _package
sys.path[:] = _path
# UDF modules decorate with @duckdb_subinterp.export; it is stdlib-only.
from duckdb_subinterp._export import export as _export
_package.export = _export
from duckdb_subinterp._processes import serve
serve(_fd, _parent)
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


# What a worker was doing when it died, by the request it was answering.
_DOING = {
    "hello": "while starting",
    "load": "while loading the UDF (importing its module or unpickling it, then __init__ of a class UDF)",
    "unload": "while dropping a removed UDF",
    "run": "while running a batch",
    "copy": "while copying a batch's result",
}


def _align(size: int) -> int:
    return (size + _ALIGNMENT - 1) // _ALIGNMENT * _ALIGNMENT


class _Span(NamedTuple):
    """Where one buffer of a column lies in the input region."""

    start: int
    nbytes: int


class _Packer:
    """Collect a batch's buffers, placing each one after the other (aligned) in the input region."""

    def __init__(self) -> None:
        self.sources: list[memoryview] = []
        self.size = 0

    def pack(self, column: tuple[Any, ...]) -> tuple[Any, ...]:
        """Replace the column tree's memoryviews by spans; everything else is relayed as it is."""
        packed: list[Any] = []
        for item in column:
            if isinstance(item, memoryview):
                raw = item if item.format == "B" else item.cast("B")
                packed.append(_Span(self.size, raw.nbytes))
                self.sources.append(raw)
                self.size += _align(raw.nbytes)
            elif type(item) is tuple:
                packed.append(self.pack(item))
            else:
                packed.append(item)
        return tuple(packed)

    def copy_into(self, region: memoryview) -> None:
        start = 0
        for raw in self.sources:
            region[start : start + raw.nbytes] = raw
            start += _align(raw.nbytes)


def _unpack_column(column: tuple[Any, ...], region: memoryview) -> tuple[Any, ...]:
    """Rebuild a column tree over the input region (read-only views)."""
    unpacked: list[Any] = []
    for item in column:
        if type(item) is _Span:
            unpacked.append(region[item.start : item.start + item.nbytes].toreadonly())
        elif type(item) is tuple:
            unpacked.append(_unpack_column(item, region))
        else:
            unpacked.append(item)
    return tuple(unpacked)


def _layout(sizes: Sequence[int]) -> tuple[list[tuple[int, int]], int]:
    """Place buffers of ``sizes`` one after the other, aligned; return the spans and the total."""
    spans, position = [], 0
    for size in sizes:
        spans.append((position, size))
        position += _align(size)
    return spans, position


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


class _RegionUnavailable(Exception):
    """A region the parent handed over could not be received or mapped: the worker cannot go on."""


def _anonymous_memory(size: int) -> int:
    """Return the descriptor of ``size`` bytes of shared memory that has no name anywhere."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("duckdb_subinterp", os.MFD_CLOEXEC)
    else:  # pragma: no cover - macOS and the BSDs: a POSIX object, unlinked before anyone else can see it
        import _posixshmem  # type: ignore[import-not-found]  # CPython's own, private: typeshed has no stub

        name = f"/dsi_{secrets.token_hex(8)}"  # macOS allows 31 characters
        fd = _posixshmem.shm_open(name, os.O_CREAT | os.O_EXCL | os.O_RDWR, mode=0o600)
        _posixshmem.shm_unlink(name)
    try:
        os.ftruncate(fd, size)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _send_fds(fd: int, fds: Sequence[int]) -> None:
    """Pass ``fds`` over the socket ``fd`` (SCM_RIGHTS), after the message that announced them."""
    with socket.fromfd(fd, socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        socket.send_fds(sock, [b"r"], fds)


def _receive_fds(fd: int, count: int, timeout: float) -> list[int]:
    """Receive the ``count`` descriptors the parent sent right after its message."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    if not poller.poll(math.ceil(timeout * 1000)):
        raise _RegionUnavailable(f"the parent announced {count} shared-memory regions but sent none")
    # MSG_CMSG_CLOEXEC: the descriptors must not leak into processes the UDF starts.
    with socket.fromfd(fd, socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        data, ancillary, _, _ = sock.recvmsg(1, socket.CMSG_SPACE(count * 4), getattr(socket, "MSG_CMSG_CLOEXEC", 0))
    fds = array("i")
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
    if not data or len(fds) != count:
        for received in fds:
            os.close(received)
        raise _RegionUnavailable(f"expected {count} shared-memory regions from the parent, got {len(fds)}")
    return list(fds)


# ---------------------------------------------------------------------------
# Parent side
# ---------------------------------------------------------------------------


class _Region:
    """A parent-owned block of shared memory; its descriptor is held until the worker has it."""

    def __init__(self, size: int) -> None:
        size = max(_MIN_REGION, (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE * mmap.PAGESIZE)
        try:
            fd = _anonymous_memory(size)
        except OSError as error:
            raise WorkerFailure(
                BrokenPoolError, f"could not allocate {size} bytes of shared memory for a batch: {error}"
            ) from None
        try:
            # trackfd=False: the mapping keeps no descriptor of its own, so a
            # region costs none once the worker received it.
            self.mmap = mmap.mmap(fd, size, trackfd=False)
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd
        self.size = size
        self.view = memoryview(self.mmap)

    def handed_over(self) -> None:
        """Drop the descriptor: the worker received it (or never will, being dead)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def close(self) -> None:
        self.handed_over()
        self.view.release()
        with contextlib.suppress(BufferError):  # a view is still exported; the mapping goes with its last user
            self.mmap.close()


class _RegionSlot:
    """One of a worker's two regions: grown to fit a batch, shrunk after a run of much smaller ones."""

    def __init__(self) -> None:
        self.region: _Region | None = None
        self._peak = 0  # the largest size needed since the last resize or shrink check
        self._batches = 0

    def fit(self, size: int) -> _Region | None:
        """Make the region hold ``size`` bytes; return it if it is a new one the worker must map."""
        region = self.region
        if region is not None and size <= region.size:
            self._peak = max(self._peak, size)
            self._batches += 1
            if self._batches < SHRINK_AFTER:
                return None
            peak, self._peak, self._batches = self._peak, 0, 0
            if region.size <= max(_MIN_REGION, SHRINK_FACTOR * peak):
                return None
            target = 2 * peak
        else:
            # Doubling: a batch that grows a little at a time replaces the region rarely.
            target = max(size, 2 * region.size if region is not None else 0)
            self._peak = self._batches = 0
        fresh = _Region(target)  # if this fails, the region in place stays
        self.retire()
        self.region = fresh
        return fresh

    def retire(self) -> None:
        """Give the region up; the next batch gets a fresh one (the worker keeps its mapping while in use)."""
        if self.region is not None:
            self.region.close()
            self.region = None


# Thread pools of native libraries (BLAS under numpy, OpenMP), which each
# worker would otherwise size to every CPU: N workers x N threads.
_NATIVE_THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


def _worker_environment(native_threads: int | None) -> dict[str, str] | None:
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


class _Spawner:
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


_spawner = _Spawner()


class ProcessWorker(Worker):
    """One worker process: a pipe for requests, shared memory for the batches."""

    abortable = True

    def __init__(self, timeout: float = DEFAULT_TIMEOUT, *, native_threads: int | None = None) -> None:
        super().__init__()
        self.timeout = timeout
        self.broken = False
        self._inputs = _RegionSlot()
        self._outputs = _RegionSlot()
        self._output_spans: list[tuple[int, int]] = []
        self._result_sizes: Sequence[int] = ()
        self._pickled: bytes | None = None  # the last batch's pickled result, sent with its status
        self._abort_reason: str | None = None
        self._conn, child = connection.Pipe(duplex=True)
        try:
            self.process = _spawner.popen(
                [
                    sys.executable,
                    "-c",
                    _BOOTSTRAP,
                    PACKAGE_DIR,
                    json.dumps(sys.path),
                    str(child.fileno()),
                    str(os.getpid()),
                ],
                pass_fds=(child.fileno(),),
                stdin=subprocess.DEVNULL,
                close_fds=True,
                env=_worker_environment(native_threads),
            )
        except BaseException:
            self._conn.close()
            raise
        finally:
            child.close()
        self.pid = self.process.pid
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
            self._request(("hello",), timeout=min(START_TIMEOUT, timeout))
        except BaseException:
            self.close()
            raise

    # -- the Worker interface ------------------------------------------------

    def load(self, udf_id: int, spec: tuple[Any, ...]) -> None:
        self._request(("load", udf_id, spec))

    def unload(self, udf_id: int) -> None:
        self._request(("unload", udf_id))

    def run(self, request: tuple[Any, ...]) -> Sequence[int]:
        udf_id, length, columns, outputs, descriptors, mode = request
        # Every buffer of every column (children included) is copied into the
        # input region and replaced by its span in the request.
        packer = _Packer()
        layout = [packer.pack(column) for column in columns]
        fresh_inputs = self._inputs.fit(packer.size)
        assert self._inputs.region is not None  # fit() made one if there was none
        packer.copy_into(self._inputs.region.view)
        fresh_outputs = self._fit_outputs([view.nbytes for view in outputs])
        message = (
            "run",
            udf_id,
            length,
            layout,
            self._output_spans,
            *_sizes(fresh_inputs, fresh_outputs),
            descriptors,
            mode,
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
        self._request(("copy", self._output_spans, *_sizes(fresh_outputs)), handing=(fresh_outputs,))
        self._copy_results(outputs, self._result_sizes)

    def abort(self, reason: str) -> None:
        self._abort_reason = reason
        with contextlib.suppress(OSError):
            self.process.kill()  # the thread in _receive sees it through the pidfd (or the pipe) at once

    def close(self) -> None:
        try:
            if self.process.poll() is None:
                if self.broken:  # interrupted or timed out in a batch: it may be busy for long, and is not reused
                    self.process.kill()
                else:
                    with contextlib.suppress(OSError):
                        self._conn.send(("exit",))
            try:
                self.process.wait(CLOSE_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(CLOSE_TIMEOUT)
        except Exception:  # close must not raise
            pass
        self._release_handles()

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

    def _fit_outputs(self, sizes: Sequence[int]) -> _Region | None:
        self._output_spans, total = _layout(sizes)
        return self._outputs.fit(total)

    def _copy_results(self, outputs: Sequence[memoryview], sizes: Sequence[int]) -> None:
        assert self._outputs.region is not None  # _fit_outputs() made one for this batch
        region = self._outputs.region.view
        for view, size, (start, _) in zip(outputs, sizes, self._output_spans, strict=True):
            if size:
                view.cast("B")[:size] = region[start : start + size]

    # -- the pipe ----------------------------------------------------------------

    def _request(
        self, message: tuple[Any, ...], timeout: float | None = None, handing: Sequence[_Region | None] = ()
    ) -> Any:
        """Send ``message`` (and the regions it announces), wait for the reply, the worker's death or the timeout."""
        command = message[0]
        regions = [region for region in handing if region is not None]
        try:
            self._conn.send(message)
            if regions:
                _send_fds(self._conn_fd, [region.fd for region in regions])
        except OSError:
            self._died(command)
        except BaseException:
            self.broken = True  # the worker may have half a message: it cannot be used again
            raise
        finally:
            for region in regions:
                region.handed_over()
        try:
            kind, payload, inputs_kept = self._receive(command, self.timeout if timeout is None else timeout)
        except BaseException:
            # Interrupted (KeyboardInterrupt...) between request and reply:
            # a late reply would answer the next request, so the worker
            # is not used again.
            self.broken = True
            raise
        if inputs_kept:
            # The UDF kept views of this batch's arguments: the next batch goes
            # to a fresh region, and the worker's mapping of this one lives on.
            self._inputs.retire()
        if kind == "ok":
            return payload
        if kind == "fatal":
            self.broken = True
            try:
                self.process.wait(CLOSE_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
            raise WorkerFailure(WorkerDiedError, f"worker process {self.pid} {payload}")
        raise WorkerFailure.from_names(*payload)

    def _receive(self, command: str, timeout: float) -> Any:
        deadline = time.monotonic() + timeout  # inf: no limit
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.broken = True
                self.process.kill()
                raise WorkerFailure(
                    PoolTimeoutError,
                    f"worker process {self.pid} did not answer within {timeout:g} s {_DOING[command]} and was "
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
                    return self._conn.recv()
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
            f"worker process {self.pid} {describe_exit(returncode)}. It died {_DOING[command]}; "
            "the pool starts a fresh worker for the next batch",
        )


def _sizes(*regions: _Region | None) -> tuple[int, ...]:
    """Return the size of each region handed over with a message, 0 for one that was not replaced."""
    return tuple(0 if region is None else region.size for region in regions)


class ProcessPool(WorkerPool):
    """A pool of worker processes, started lazily, shared by UDFs and connections.

    ``size`` defaults to the CPU count. Each worker imports the UDF's module
    (or unpickles a by-value function) once; any package can load there,
    numpy and pyarrow included. A worker that dies is replaced. Native
    thread pools (OMP_NUM_THREADS and the BLAS ones) get the worker's share
    of the CPUs, unless those variables are set already. ``timeout`` bounds
    a wait for a free worker and each batch; ``math.inf`` means no limit.
    """

    # Fan-out: a hand-off to a helper thread, copies in and out of shared memory, a pipe round trip.
    slice_overhead_seconds = 300e-6

    def __init__(self, size: int | None = None, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        super().__init__(size, timeout=timeout)
        self._owner_pid = os.getpid()
        _live_pools.add(self)
        _close_live_pools_at_exit()

    def _start_worker(self) -> Worker:
        return ProcessWorker(self.timeout, native_threads=max(1, (os.cpu_count() or 1) // self.size))


# Pools the user never closed: at exit, their busy workers are stopped too,
# within CLOSE_GRACE, so exit waits neither for a stuck batch nor for the timeout.
_live_pools: weakref.WeakSet[ProcessPool] = weakref.WeakSet()


@functools.cache
def _close_live_pools_at_exit() -> None:
    # Registered with the first pool, after _registration's own hook, so it
    # runs first (atexit is last in, first out) and every pool shares one grace.
    atexit.register(_close_live_pools)


def _close_live_pools() -> None:
    # A forked child inherits the set, but the workers are its parent's to stop.
    pools = [pool for pool in _live_pools if pool._owner_pid == os.getpid()]
    for pool in pools:
        pool._shut()
    deadline = time.monotonic() + CLOSE_GRACE
    for pool in pools:
        pool._stop_busy(deadline)


# ---------------------------------------------------------------------------
# Worker side (runs in the worker process)
# ---------------------------------------------------------------------------


class _MappedRegion:
    """The worker's mapping of one of the parent's regions."""

    def __init__(self, fd: int, size: int) -> None:
        try:
            self.mmap = mmap.mmap(fd, size, trackfd=False)
        except OSError as error:
            raise _RegionUnavailable(f"could not map {size} bytes of shared memory: {error}") from None
        finally:
            os.close(fd)
        self.view = memoryview(self.mmap)
        # Every memoryview made straight from the mmap (self.view, batch_view)
        # holds one reference to it, shared by all views sliced or cast from it.
        self._resting = self._references()

    def _references(self) -> int:
        return sys.getrefcount(self.mmap)

    def batch_view(self) -> memoryview:
        """Return a view for one batch's arguments; ``in_use`` tells whether anything sliced from it lives on."""
        return memoryview(self.mmap)

    def in_use(self) -> bool:
        """Tell whether views of an earlier ``batch_view`` are still alive (a UDF kept its arguments)."""
        return self._references() > self._resting

    def close(self) -> None:
        try:
            self.view.release()
            self.mmap.close()
        except BufferError:  # a UDF kept a view or an array over it; the mapping goes with the last one
            pass


class ProcessRuntime(Runtime):
    """The interpreters' ``Runtime``, plus ``type="arrow"`` UDFs through pyarrow."""

    def run(self, request: tuple[Any, ...]) -> None:
        udf = self.udfs[request[0]]
        if udf.spec.kind != "arrow":
            return super().run(request)
        _, length, columns, outputs, descriptors, _ = request
        self.pending = None
        self.deliver(compute_arrow(udf, length, columns, descriptors), outputs)
        return None


def _input_array(descriptor: tuple[Any, ...], length: int, column: tuple[Any, ...]) -> Any:
    """Rebuild the pyarrow array DuckDB handed over from a column tree of views, without copying.

    ``length`` counts the elements from the column's offset on; children get
    the length their parent's offsets reach, as in the Arrow C data interface.
    """
    import pyarrow as pa

    from duckdb_subinterp._arrow import result_arrow_type  # imports pyarrow and duckdb: arrow UDFs only

    kind = descriptor[0]
    offset, validity, *rest = column
    bitmap = None if validity is None else pa.py_buffer(validity)

    def wrap(view: memoryview | None) -> Any:
        return pa.py_buffer(view if view is not None else b"")

    def bound(offsets: memoryview | None, format: OffsetFormat) -> int:
        return offsets.cast("B").cast(format)[offset + length] if offsets is not None else 0

    if kind == "list":
        offsets, child = rest
        values = _input_array(descriptor[2], bound(offsets, descriptor[1]), child)
        arrow_type = pa.list_(pa.field("l", values.type))  # DuckDB's name for the child field
        return pa.Array.from_buffers(arrow_type, length, [bitmap, wrap(offsets)], offset=offset, children=[values])
    if kind == "array":
        size = descriptor[1]
        values = _input_array(descriptor[2], (offset + length) * size, rest[0])
        arrow_type = pa.list_(pa.field("", values.type), size)
        return pa.Array.from_buffers(arrow_type, length, [bitmap], offset=offset, children=[values])
    if kind == "struct":
        fields = [_input_array(field, offset + length, child) for field, child in zip(descriptor[2], rest, strict=True)]
        arrow_type = pa.struct([pa.field(name, field.type) for name, field in zip(descriptor[1], fields, strict=True)])
        return pa.Array.from_buffers(arrow_type, length, [bitmap], offset=offset, children=fields)
    if kind == "map":
        offsets, (entries_offset, _, keys_column, items_column) = rest
        count = bound(offsets, "i")
        keys = _input_array(descriptor[1], entries_offset + count, keys_column)
        items = _input_array(descriptor[2], entries_offset + count, items_column)
        entry_type = pa.struct([pa.field("key", keys.type, nullable=False), pa.field("value", items.type)])
        entries = pa.Array.from_buffers(entry_type, count, [None], offset=entries_offset, children=[keys, items])
        arrow_type = pa.map_(keys.type, items.type)
        return pa.Array.from_buffers(arrow_type, length, [bitmap, wrap(offsets)], offset=offset, children=[entries])
    if kind == "enum":
        index_type = result_arrow_type(("number", descriptor[1]))
        indices = pa.Array.from_buffers(index_type, length, [bitmap, wrap(rest[0])], offset=offset)
        return pa.DictionaryArray.from_arrays(indices, pa.array(descriptor[3], pa.string()))
    if kind == "union":  # sparse: every member as long as the union, which has no validity
        type_ids, *children = rest
        members = [
            _input_array(member, offset + length, child) for member, child in zip(descriptor[2], children, strict=True)
        ]
        fields = [pa.field(name, member.type) for name, member in zip(descriptor[1], members, strict=True)]
        arrow_type = pa.sparse_union(fields, list(descriptor[3]))
        return pa.Array.from_buffers(arrow_type, length, [None, wrap(type_ids)], offset=offset, children=members)
    if kind == "null":
        return pa.nulls(length)
    if kind == "bignum":  # DuckDB's opaque Arrow type over its bytes, as its own arrow UDFs get it
        storage = pa.Array.from_buffers(pa.binary(), length, [bitmap, *map(wrap, rest)], offset=offset)
        return pa.ExtensionArray.from_storage(pa.opaque(pa.binary(), "bignum", "DuckDB"), storage)
    if kind == "timestamp" and descriptor[2]:
        data, zone = rest
        arrow_type = pa.timestamp(descriptor[1], tz=zone)
        return pa.Array.from_buffers(arrow_type, length, [bitmap, wrap(data)], offset=offset)
    if kind == "int128":
        arrow_type = pa.decimal128(38, 0)  # DuckDB exports HUGEINT and UHUGEINT alike
    elif kind == "uuid":
        arrow_type = pa.string()  # DuckDB hands UUIDs to arrow UDFs as text
    elif kind == "bit":
        arrow_type = pa.binary()  # DuckDB's bytes of it
    elif kind == "timetz":
        arrow_type = pa.time64("us")  # the local time: DuckDB's Arrow export drops the offset
    else:
        arrow_type = result_arrow_type(descriptor)
    return pa.Array.from_buffers(arrow_type, length, [bitmap, *map(wrap, rest)], offset=offset)


class ArrowResult:
    """An arrow UDF's result as the dispatcher's ``OutputBuffers`` expect it.

    Every node depth first (the ``ResultLayout`` order): its buffers,
    validity first, cut to size; and each child node's length and null count.
    """

    __slots__ = ("_shapes", "_sizes", "buffers", "null_count")

    def __init__(self, array: Any) -> None:
        import pyarrow as pa

        if array.offset or array.type.num_fields:
            # Re-based at offset 0, offsets from 0, children cut to what is used.
            array = pa.concat_arrays([array])
        self.null_count = array.null_count
        self.buffers: list[Any] = []
        self._sizes: list[int] = []
        self._shapes: list[int] = []
        self._walk(array, root=True)

    @property
    def children(self) -> list[int]:
        # Runtime.deliver only asks whether there are child nodes (then for their shapes).
        return self._shapes

    def _walk(self, array: Any, *, root: bool) -> None:
        import pyarrow as pa

        from duckdb_subinterp._arrow import _buffer_count

        arrow_type = array.type
        length = len(array)
        if not root:
            self._shapes += [length, array.null_count]
        own = array.buffers()[: _buffer_count(arrow_type)]
        bitmap_size = (length + 7) // 8
        sizes = [bitmap_size if array.null_count else 0]
        if pa.types.is_boolean(arrow_type):
            sizes.append(bitmap_size)
        elif pa.types.is_string(arrow_type) or pa.types.is_binary(arrow_type):
            sizes += [4 * (length + 1), memoryview(own[1]).cast("B").cast("i")[length] if length else 0]
        elif pa.types.is_large_string(arrow_type) or pa.types.is_large_binary(arrow_type):
            sizes += [8 * (length + 1), memoryview(own[1]).cast("B").cast("q")[length] if length else 0]
        elif pa.types.is_list(arrow_type) or pa.types.is_map(arrow_type):
            sizes.append(4 * (length + 1))
        elif pa.types.is_large_list(arrow_type):
            sizes.append(8 * (length + 1))
        elif len(own) == 2:
            sizes.append(arrow_type.bit_width // 8 * length)
        self.buffers += [None if size == 0 else buffer for buffer, size in zip(own, sizes, strict=True)]
        self._sizes += sizes
        if pa.types.is_struct(arrow_type):
            for index in range(arrow_type.num_fields):
                self._walk(array.field(index), root=False)
        elif arrow_type.num_fields:  # list, fixed-size list, map: one child (map: its entries)
            self._walk(array.values, root=False)

    def raw_buffers(self) -> list[memoryview]:
        return [
            memoryview(source).cast("B")[:size] if size else memoryview(b"")
            for source, size in zip(self.buffers, self._sizes, strict=True)
        ]

    def shapes(self) -> list[int]:
        return list(self._shapes)

    def write_into(self, targets: Sequence[memoryview]) -> None:
        copy_buffers(self.raw_buffers(), targets)


def compute_arrow(
    udf: LoadedUdf, length: int, columns: Sequence[tuple[Any, ...]], descriptors: Sequence[Any] | None
) -> ArrowResult | PickledResult:
    """Call an arrow UDF as DuckDB does, with the rows DuckDB passed (it left out NULL ones itself).

    The arguments are the columns of a table named c0, c1..., as DuckDB's
    own arrow UDFs get them. A result that is an array of the return type
    and of the batch's length is written into the outputs; anything else
    (another type, another length, a table of several columns, a list,
    None) goes back to the main side as it is, where DuckDB converts and
    checks it exactly as it does its own arrow UDFs' results.

    Under exception_handling='return_null' with null_handling='default',
    DuckDB passes every row (it checks no NULL result after a failed call,
    but would after our NULLs), so NULL rows are left out and put back
    here, and the result is converted and checked here.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    from duckdb_subinterp._arrow import converted_by_duckdb, result_arrow_type  # imports pyarrow: arrow UDFs only

    spec = udf.spec
    if converted_by_duckdb(spec.return_descriptor):
        # A UNION result has no layout of the codec's: it goes back as it is, DuckDB converts it.
        return _arrow_object(udf, length, columns, descriptors)
    arrays = [
        _input_array(descriptor, length, column)
        for descriptor, column in zip(descriptors or spec.arg_descriptors, columns, strict=True)
    ]
    return_type = result_arrow_type(spec.return_descriptor)
    filters_nulls = spec.errors_to_null and not spec.special_nulls
    valid = None
    if filters_nulls and any(array.null_count for array in arrays):
        valid = pc.is_valid(arrays[0])
        for array in arrays[1:]:
            valid = pc.and_(valid, pc.is_valid(array))
        arrays = [array.filter(valid) for array in arrays]
    arguments = pa.Table.from_arrays(arrays, names=[f"c{index}" for index in range(len(arrays))]).columns
    try:
        result = udf.function(*arguments)
    except UDF_ERRORS as error:
        if not spec.errors_to_null or length < 0:
            raise _raised(error) from None
        return ArrowResult(pa.nulls(length, return_type))
    if filters_nulls:
        return ArrowResult(_restored(result, len(arrays[0]) if arrays else length, return_type, valid))
    array = result.column(0) if isinstance(result, pa.Table) and result.num_columns == 1 else result
    if isinstance(array, pa.ChunkedArray) and array.type.equals(return_type):
        # Over 2 GiB of text it cannot: DuckDB takes the chunks as they are.
        with contextlib.suppress(pa.ArrowInvalid, pa.ArrowCapacityError):
            array = array.combine_chunks()
    if isinstance(array, pa.Array) and array.type.equals(return_type) and len(array) == length:
        return ArrowResult(array)
    return PickledResult.of(("object", result), udf, None)


def _arrow_object(
    udf: LoadedUdf, length: int, columns: Sequence[tuple[Any, ...]], descriptors: Sequence[Any] | None
) -> PickledResult:
    """Call an arrow UDF whose result DuckDB converts whatever it is: back to the main side as it is.

    Under exception_handling='return_null' a failed call's NULLs are of
    Arrow's null type (DuckDB's own arrow UDFs return pyarrow.nulls too).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    spec = udf.spec
    arrays = [
        _input_array(descriptor, length, column)
        for descriptor, column in zip(descriptors or spec.arg_descriptors, columns, strict=True)
    ]
    valid = None
    if spec.errors_to_null and not spec.special_nulls and any(array.null_count for array in arrays):
        valid = pc.is_valid(arrays[0])
        for array in arrays[1:]:
            valid = pc.and_(valid, pc.is_valid(array))
        arrays = [array.filter(valid) for array in arrays]
    arguments = pa.Table.from_arrays(arrays, names=[f"c{index}" for index in range(len(arrays))]).columns
    try:
        result = udf.function(*arguments)
    except UDF_ERRORS as error:
        if not spec.errors_to_null or length < 0:
            raise _raised(error) from None
        return PickledResult.of(("object", pa.nulls(length)), udf, None)
    if valid is not None:
        column = result.column(0) if isinstance(result, pa.Table) and result.num_columns == 1 else result
        if isinstance(column, (pa.Array, pa.ChunkedArray)) and len(column) == len(arrays[0]):
            positions = pc.subtract(pc.cumulative_sum(pc.cast(valid, pa.int64())), 1)
            result = column.take(pc.if_else(valid, positions, pa.scalar(None, pa.int64())))
    return PickledResult.of(("object", result), udf, None)


def _restored(result: Any, kept: int, return_type: Any, valid: Any) -> Any:
    """Convert an arrow UDF's result of the ``kept`` rows to ``return_type`` and put NULL rows back (``valid``)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(result, pa.Table):
        if result.num_columns != 1:
            raise UdfResultInvalid(
                "The returned table from a pyarrow scalar udf should only contain one column, "
                f"found {result.num_columns}"
            )
        result = result.column(0)
    if isinstance(result, pa.ChunkedArray):
        result = result.combine_chunks()
    elif not isinstance(result, pa.Array):
        try:
            result = pa.array(result)
        except (pa.ArrowException, TypeError, ValueError):
            raise UdfResultInvalid("Could not convert the result into an Arrow Table") from None
    if len(result) != kept:
        raise UdfResultInvalid(f"Returned pyarrow table should have {kept} tuples, found {len(result)}")
    if not result.type.equals(return_type):
        try:
            result = result.cast(return_type)
        except (pa.ArrowException, ValueError) as error:
            raise UdfResultInvalid(
                f"result of type {result.type} does not convert to {return_type}: {error}{_limit(return_type)}"
            ) from None
    if result.null_count:
        raise UdfResultInvalid(f"{NULL_RESULT_ERROR}: register it with null_handling='special' to return NULL")
    if valid is None:
        return result
    positions = pc.subtract(pc.cumulative_sum(pc.cast(valid, pa.int64())), 1)
    return result.take(pc.if_else(valid, positions, pa.scalar(None, pa.int64())))


def _limit(arrow_type: Any) -> str:
    """Say how much a batch's result of ``arrow_type`` can hold, where 32-bit offsets bound it."""
    import pyarrow as pa

    if pa.types.is_string(arrow_type) or pa.types.is_binary(arrow_type):
        return f"; a batch's {arrow_type} result holds at most {MAX_BATCH_BYTES:,} bytes (2 GiB)"
    return ""


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


def _error_reply(error: BaseException, command: str) -> tuple[str, Any]:
    """Say what went wrong, as the parent's ``WorkerFailure.from_names`` reads it."""
    display = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    if not isinstance(error, Exception) and command in ("run", "copy"):
        # SystemExit, KeyboardInterrupt... raised by the UDF: the query fails
        # as for any exception, and the worker goes on (DuckDB's own UDFs
        # report "SystemExit: bye" and keep the process too).
        return ("error", ("UdfRaised", str(_raised(error)), display))
    return ("error", (type(error).__name__, str(error), display))


def serve(fd: int, parent_pid: int) -> None:
    """Answer requests from the parent on ``fd`` until it says exit or goes away."""
    import faulthandler

    faulthandler.enable()  # a crash prints the worker's stack to stderr
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    os.set_inheritable(fd, False)
    _die_with_parent(fd, parent_pid)
    conn = connection.Connection(fd)
    status = array("q", bytes(8 * STATUS_SLOTS))
    runtime = ProcessRuntime(memoryview(status))
    inputs: _MappedRegion | None = None
    outputs: _MappedRegion | None = None

    def remap(input_size: int, output_size: int) -> None:
        """Map the regions the parent handed over with this message (a size of 0: none), replacing the old ones."""
        nonlocal inputs, outputs
        fds = iter(_receive_fds(fd, bool(input_size) + bool(output_size), START_TIMEOUT))
        if input_size:
            fresh = _MappedRegion(next(fds), input_size)
            if inputs is not None:
                inputs.close()  # a UDF that kept views of it keeps the mapping alive
            inputs = fresh
        if output_size:
            fresh = _MappedRegion(next(fds), output_size)
            if outputs is not None:
                outputs.close()
            outputs = fresh

    def views(region: _MappedRegion | None, spans: Sequence[Any]) -> list[Any]:
        assert region is not None  # the first run maps both regions
        return [None if span is None else region.view[span[0] : span[0] + span[1]] for span in spans]

    def handle(message: tuple[Any, ...]) -> Any:
        # The views made here die with this call, so a region can be
        # replaced (closed) at the next request.
        command = message[0]
        if command == "run":
            _, udf_id, length, layout, output_spans, input_size, output_size, descriptors, mode = message
            if input_size or output_size:
                remap(input_size, output_size)
            assert inputs is not None  # the first run maps both regions
            batch = inputs.batch_view()
            columns = [_unpack_column(column, batch) for column in layout]
            del batch
            runtime.run((udf_id, length, columns, views(outputs, output_spans), descriptors, mode))
            pending = runtime.pending
            if status[1] == PENDING_PICKLED:
                runtime.pending = None
                return status.tobytes(), cast(PickledResult, pending).data  # what deliver() kept
            return status.tobytes(), None
        if command == "copy":
            _, output_spans, output_size = message
            if output_size:
                remap(0, output_size)
            runtime.copy_pending(views(outputs, output_spans))
            return None
        if command == "load":
            return runtime.load(message[1], message[2])
        if command == "unload":
            return runtime.unload(message[1])
        if command == "hello":
            return os.getpid()
        raise RuntimeError(f"unknown request {command!r}")

    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return  # the parent went away
        command = message[0]
        if command == "exit":
            return
        try:
            reply = ("ok", handle(message))
        except BaseException as error:
            if isinstance(error, _RegionUnavailable):
                # The parent believes this worker holds a region it does not: it cannot go on.
                conn.send(("fatal", f"could not take a shared-memory region from the parent: {error}", False))
                os._exit(71)
            if isinstance(error, MemoryError) or isinstance(error.__context__, MemoryError):
                # The process may be in no state to go on: report, then exit.
                conn.send(("fatal", f"ran out of memory (MemoryError) while running a batch:\n{error}", False))
                os._exit(70)
            reply = _error_reply(error, command)
        # Asked only now: the except block above dropped the exception, and
        # with it the frames (and argument views) its traceback held.
        conn.send((*reply, command in ("run", "copy") and inputs is not None and inputs.in_use()))
