"""Workers that are separate Python processes, fed through shared memory.

For UDFs that cannot run in an isolated interpreter (numpy, pyarrow,
pandas...) and for ``type="arrow"``. One batch, on the DuckDB thread that
checked the worker out::

    DuckDB thread                                 worker process (its own GIL)
      argument memoryviews                          |
      --copy once--> input region (shared memory)   |
      --pipe: ("run", udf id, buffer spans) ------> views over the input region
                                                    Runtime.run (_codec, or pyarrow
                                                    for type="arrow") writes the
                                                    result into the output region
      <-pipe: ("ok", status slots) -----------------+
      output region --copy once--> OutputBuffers of the dispatcher

Workers are started with ``subprocess`` (fork + exec of a fresh Python),
never a bare ``fork`` of this multi-threaded process; the worker imports
only ``_runtime`` and ``_codec`` through a bare package object (as the
interpreters do), so it neither re-runs the user's ``__main__`` (what
multiprocessing's spawn does) nor imports duckdb and pyarrow until an arrow
UDF needs them: measured 0.10 s to start a worker here, against 0.43 s for
a multiprocessing "spawn" child that imports the package.

Shared-memory regions belong to the parent, are created owner-only (0600)
without multiprocessing's resource tracker, and their names are unlinked
as soon as the worker replied to the request that made it map them: from
then on nothing is left in /dev/shm for a crash, a kill or an exit to leak.
"""

from __future__ import annotations

import json
import math
import mmap
import os
import select
import signal
import subprocess
import sys
import time
import traceback
from array import array
from collections.abc import Sequence
from multiprocessing import connection
from multiprocessing.shared_memory import SharedMemory
from pathlib import Path
from typing import Any, NamedTuple

from duckdb_subinterp._codec import copy_buffers, write_bytes
from duckdb_subinterp._errors import PoolTimeoutError, WorkerDiedError
from duckdb_subinterp._pool import DEFAULT_TIMEOUT, Worker, WorkerFailure, WorkerPool
from duckdb_subinterp._runtime import (
    SIZES_SLOT,
    STATUS_SLOTS,
    NULL_RESULT_ERROR,
    PENDING_PICKLED,
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

# The worker's first lines: a bare package object, as in the interpreters,
# so `import duckdb_subinterp._processes` does not run the package's
# __init__ (which imports duckdb and pyarrow).
_BOOTSTRAP = """
import json, sys, types
_package_dir, _path, _fd = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
_package = types.ModuleType("duckdb_subinterp")
_package.__path__ = [_package_dir]
sys.modules["duckdb_subinterp"] = _package
sys.path[:] = _path
# UDF modules decorate with @duckdb_subinterp.export; it is stdlib-only.
from duckdb_subinterp._export import export as _export
_package.export = _export
from duckdb_subinterp._processes import serve
serve(_fd)
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


def _grown(region: _Region | None, size: int) -> tuple[_Region, str | None]:
    """Return a region of at least ``size`` bytes (doubling), and its name if it is a new one."""
    if region is not None and region.size >= size:
        return region, None
    fresh = _Region(max(size, 2 * (region.size if region is not None else 0)))
    if region is not None:
        region.close()
    return fresh, fresh.name


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


# ---------------------------------------------------------------------------
# Parent side
# ---------------------------------------------------------------------------


class _Region:
    """A parent-owned shared-memory block; its name lives only until the worker mapped it."""

    def __init__(self, size: int) -> None:
        size = max(_MIN_REGION, (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE * mmap.PAGESIZE)
        # track=False: the parent unlinks the name itself, right after the
        # worker mapped it, so the resource tracker has nothing to do (and
        # would warn at exit about segments it never saw unlinked).
        self.shared = SharedMemory(create=True, size=size, track=False)
        self.size = size
        self.view = self.shared.buf
        self.linked = True

    @property
    def name(self) -> str:
        return self.shared.name

    def unlink(self) -> None:
        if self.linked:
            self.linked = False
            try:
                self.shared.unlink()
            except FileNotFoundError:
                pass

    def close(self) -> None:
        self.unlink()
        self.view = None
        try:
            self.shared.close()
        except BufferError:  # a view is still exported; the mapping goes with its last user
            pass


# Thread pools of native libraries (BLAS under numpy, OpenMP), which each
# worker would otherwise size to every CPU: N workers x N threads.
_NATIVE_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
                            "NUMEXPR_NUM_THREADS")


def _worker_environment(native_threads: int | None) -> dict[str, str] | None:
    """Return the worker's environment: ours, with native thread pools sized to its share of the CPUs."""
    if native_threads is None:
        return None
    environment = dict(os.environ)
    for variable in _NATIVE_THREAD_VARIABLES:
        environment.setdefault(variable, str(native_threads))  # what the user set wins
    return environment


class ProcessWorker(Worker):
    """One worker process: a pipe for requests, shared memory for the batches."""

    def __init__(self, timeout: float = DEFAULT_TIMEOUT, *, native_threads: int | None = None) -> None:
        super().__init__()
        self.timeout = timeout
        self.broken = False
        self._inputs: _Region | None = None
        self._outputs: _Region | None = None
        self._output_spans: list[tuple[int, int]] = []
        self._result_sizes: Sequence[int] = ()
        self._pickled: bytes | None = None  # the last batch's pickled result, sent with its status
        self._conn, child = connection.Pipe(duplex=True)
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-c", _BOOTSTRAP, PACKAGE_DIR, json.dumps(sys.path), str(child.fileno())],
                pass_fds=(child.fileno(),),
                stdin=subprocess.DEVNULL,
                close_fds=True,
                env=_worker_environment(native_threads),
            )
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
        fresh_inputs = self._ensure_inputs(packer.size)
        packer.copy_into(self._inputs.view)
        fresh_outputs = self._ensure_outputs([view.nbytes for view in outputs])
        # The status slots travel as raw bytes: pickling 256 ints cost ~10 us a batch.
        # A pickled result rides along in the reply: no second round trip.
        raw_status, self._pickled = self._request(
            ("run", udf_id, length, layout, self._output_spans, fresh_inputs, fresh_outputs, descriptors, mode)
        )
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
        fresh_outputs = self._ensure_outputs([view.nbytes for view in outputs])
        self._request(("copy", self._output_spans, fresh_outputs))
        self._copy_results(outputs, self._result_sizes)

    def close(self) -> None:
        try:
            if self.process.poll() is None and not self.broken:
                try:
                    self._conn.send(("exit",))
                except OSError:
                    pass
            try:
                self.process.wait(CLOSE_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(CLOSE_TIMEOUT)
        except Exception:  # close must not raise
            pass
        self._conn.close()
        if self._sentinel is not None:
            os.close(self._sentinel)
            self._sentinel = None
        for region in (self._inputs, self._outputs):
            if region is not None:
                region.close()
        self._inputs = self._outputs = None

    # -- shared memory ---------------------------------------------------------

    def _ensure_inputs(self, size: int) -> str | None:
        """Make the input region hold ``size`` bytes; return the new region's name if it was replaced."""
        self._inputs, name = _grown(self._inputs, size)
        return name

    def _ensure_outputs(self, sizes: Sequence[int]) -> str | None:
        self._output_spans, total = _layout(sizes)
        self._outputs, name = _grown(self._outputs, total)
        return name

    def _copy_results(self, outputs: Sequence[memoryview], sizes: Sequence[int]) -> None:
        region = self._outputs.view
        for view, size, (start, _) in zip(outputs, sizes, self._output_spans):
            if size:
                view.cast("B")[:size] = region[start : start + size]

    # -- the pipe ----------------------------------------------------------------

    def _request(self, message: tuple[Any, ...], timeout: float | None = None) -> Any:
        """Send ``message``, wait for the reply (or the worker's death, or the timeout)."""
        try:
            try:
                self._conn.send(message)
            except OSError:
                self._died(message[0])
            try:
                reply = self._receive(message[0], self.timeout if timeout is None else timeout)
            except BaseException:
                # Interrupted (KeyboardInterrupt...) between request and reply:
                # a late reply would answer the next request, so the worker
                # is not used again.
                self.broken = True
                raise
        finally:
            # Whatever happened, the worker has mapped any region this message
            # named, or never will: the name is no longer needed.
            for region in (self._inputs, self._outputs):
                if region is not None:
                    region.unlink()
        kind = reply[0]
        if kind == "ok":
            return reply[1]
        if kind == "fatal":
            self.broken = True
            self.process.wait(CLOSE_TIMEOUT)
            raise WorkerFailure(WorkerDiedError, f"worker process {self.pid} {reply[1]}")
        raise WorkerFailure.from_names(*reply[1:])

    def _receive(self, command: str, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.broken = True
                self.process.kill()
                raise WorkerFailure(
                    PoolTimeoutError,
                    f"worker process {self.pid} did not answer within {timeout:g} s and was killed; "
                    "pass a larger timeout= to the pool if batches legitimately take this long",
                )
            ready = self._poller.poll(max(1, math.ceil(remaining * 1000)))
            if not ready:
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
        raise WorkerFailure(
            WorkerDiedError,
            f"worker process {self.pid} {describe_exit(returncode)}. It died {_DOING[command]}; "
            "the pool starts a fresh worker for the next batch",
        )


class ProcessPool(WorkerPool):
    """A pool of worker processes, started lazily, shared by UDFs and connections.

    ``size`` defaults to the CPU count. Each worker imports the UDF's module
    (or unpickles a by-value function) once; any package can load there,
    numpy and pyarrow included. A worker that dies is replaced. Native
    thread pools (OMP_NUM_THREADS and the BLAS ones) get the worker's share
    of the CPUs, unless those variables are set already.
    """

    # Fan-out: a hand-off to a helper thread, copies in and out of shared memory, a pipe round trip.
    slice_overhead_seconds = 300e-6

    def __init__(self, size: int | None = None, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        super().__init__(size, timeout=timeout)

    def _start_worker(self) -> Worker:
        return ProcessWorker(self.timeout, native_threads=max(1, (os.cpu_count() or 1) // self.size))


# ---------------------------------------------------------------------------
# Worker side (runs in the worker process)
# ---------------------------------------------------------------------------


class _MappedRegion:
    """The worker's mapping of a parent's region."""

    def __init__(self, name: str) -> None:
        self.shared = SharedMemory(name, track=False)
        self.view = self.shared.buf

    def close(self) -> None:
        self.view = None
        try:
            self.shared.close()
        except BufferError:  # a UDF kept an array over it; the mapping goes with it
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

    def bound(offsets: memoryview, format: str) -> int:
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
        fields = [_input_array(field, offset + length, child) for field, child in zip(descriptor[2], rest)]
        arrow_type = pa.struct([pa.field(name, field.type) for name, field in zip(descriptor[1], fields)])
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
    if kind == "timestamp" and descriptor[2]:
        data, zone = rest
        arrow_type = pa.timestamp(descriptor[1], tz=zone)
        return pa.Array.from_buffers(arrow_type, length, [bitmap, wrap(data)], offset=offset)
    if kind == "int128":
        arrow_type = pa.decimal128(38, 0)  # DuckDB exports HUGEINT and UHUGEINT alike
    elif kind == "uuid":
        arrow_type = pa.string()  # DuckDB hands UUIDs to arrow UDFs as text
    else:
        arrow_type = result_arrow_type(descriptor)
    return pa.Array.from_buffers(arrow_type, length, [bitmap, *map(wrap, rest)], offset=offset)


class ArrowResult:
    """An arrow UDF's result as the dispatcher's ``OutputBuffers`` expect it.

    Every node depth first (the ``ResultLayout`` order): its buffers,
    validity first, cut to size; and each child node's length and null count.
    """

    __slots__ = ("buffers", "null_count", "_shapes", "_sizes")

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
        self.buffers += [None if size == 0 else buffer for buffer, size in zip(own, sizes)]
        self._sizes += sizes
        if pa.types.is_struct(arrow_type):
            for index in range(arrow_type.num_fields):
                self._walk(array.field(index), root=False)
        elif arrow_type.num_fields:  # list, fixed-size list, map: one child (map: its entries)
            self._walk(array.values, root=False)

    def raw_buffers(self) -> list[memoryview]:
        return [
            memoryview(source).cast("B")[:size] if size else memoryview(b"")
            for source, size in zip(self.buffers, self._sizes)
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

    from duckdb_subinterp._arrow import result_arrow_type  # imports pyarrow and duckdb: arrow UDFs only

    spec = udf.spec
    arrays = [
        _input_array(descriptor, length, column)
        for descriptor, column in zip(descriptors or spec.arg_descriptors, columns)
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
        array = array.combine_chunks()
    if isinstance(array, pa.Array) and array.type.equals(return_type) and len(array) == length:
        return ArrowResult(array)
    return PickledResult.of(("object", result), udf, None)


def _restored(result: Any, kept: int, return_type: Any, valid: Any) -> Any:
    """Convert an arrow UDF's result of the ``kept`` rows to ``return_type`` and put NULL rows back (``valid``)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(result, pa.Table):
        if result.num_columns != 1:
            raise UdfResultInvalid(
                f"The returned table from a pyarrow scalar udf should only contain one column, found {result.num_columns}"
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
            raise UdfResultInvalid(f"result of type {result.type} does not convert to {return_type}: {error}") from None
    if result.null_count:
        raise UdfResultInvalid(
            f"{NULL_RESULT_ERROR}: register it with null_handling='special' to return NULL"
        )
    if valid is None:
        return result
    positions = pc.subtract(pc.cumulative_sum(pc.cast(valid, pa.int64())), 1)
    return result.take(pc.if_else(valid, positions, pa.scalar(None, pa.int64())))


def serve(fd: int) -> None:
    """Answer requests from the parent on ``fd`` until it says exit or goes away."""
    import faulthandler

    faulthandler.enable()  # a crash prints the worker's stack to stderr
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    os.set_inheritable(fd, False)
    conn = connection.Connection(fd)
    status = array("q", bytes(8 * STATUS_SLOTS))
    runtime = ProcessRuntime(memoryview(status))
    inputs: _MappedRegion | None = None
    outputs: _MappedRegion | None = None

    def remap(region: _MappedRegion | None, name: str | None) -> _MappedRegion | None:
        if name is None:
            return region
        if region is not None:
            region.close()
        return _MappedRegion(name)

    def views(region: _MappedRegion, spans: Sequence[Any]) -> list[Any]:
        return [None if span is None else region.view[span[0] : span[0] + span[1]] for span in spans]

    def handle(message: tuple[Any, ...]) -> Any:
        # The views made here die with this call, so a region can be
        # replaced (closed) at the next request.
        nonlocal inputs, outputs
        command = message[0]
        if command == "run":
            _, udf_id, length, layout, output_spans, input_name, output_name, descriptors, mode = message
            inputs = remap(inputs, input_name)
            outputs = remap(outputs, output_name)
            columns = [_unpack_column(column, inputs.view) for column in layout]
            runtime.run((udf_id, length, columns, views(outputs, output_spans), descriptors, mode))
            pending = runtime.pending
            if status[1] == PENDING_PICKLED:
                runtime.pending = None
                return status.tobytes(), pending.data
            return status.tobytes(), None
        if command == "copy":
            _, output_spans, output_name = message
            outputs = remap(outputs, output_name)
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
        if message[0] == "exit":
            return
        try:
            reply: tuple[Any, ...] = ("ok", handle(message))
        except Exception as error:
            if isinstance(error, MemoryError) or isinstance(error.__context__, MemoryError):
                # The process may be in no state to go on: report, then exit.
                conn.send(("fatal", f"ran out of memory (MemoryError) while running a batch:\n{error}"))
                os._exit(70)
            reply = ("error", type(error).__name__, str(error), traceback.format_exc())
        conn.send(reply)
