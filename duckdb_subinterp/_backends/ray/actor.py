"""What runs in each Ray actor (a ``ProcessRuntime``), and the one-message format of a batch both sides read."""

from __future__ import annotations

import contextlib
import functools
import os
import pickle
import signal
import struct
import sys
import traceback
from array import array
from collections.abc import Sequence
from typing import Any, NamedTuple

from duckdb_subinterp._backends.processes.arrow_udfs import ProcessRuntime
from duckdb_subinterp._backends.processes.wire import Packer, align, layout, unpack_column
from duckdb_subinterp._worker.protocol import (
    PENDING_NONE,
    PENDING_PICKLED,
    SIZES_SLOT,
    STATUS_SLOTS,
    BatchRequest,
    UdfSpec,
)

_LENGTH = struct.Struct("<Q")  # a batch message's header size
STATUS_BYTES = 8 * STATUS_SLOTS  # the status slots at the head of a batch's answer


def node_path(own: Sequence[str], registered: Sequence[str]) -> list[str]:
    """Return the import path a UDF loads with on this node: ``own`` first, then what of ``registered`` exists here.

    The runtime would set the main interpreter's ``sys.path`` as it is
    (``UdfSpec.path``): on another node its entries may not exist, and the
    actor's own ones (what runtime_env's working_dir and py_modules put
    there) would be lost. On a local cluster the driver's entries (its
    tests folder, its current directory) exist and come after.
    """
    path = list(own)
    for entry in registered:
        if entry and entry not in path and os.path.exists(entry):
            path.append(entry)
    return path


class RayRuntimeActor:
    """The body of each actor: a ``ProcessRuntime`` and one method per request.

    Every method answers ``("ok", ...)``, or ``("error", type name, message,
    traceback)`` for an exception, so that a UDF's error reaches the query
    as the other backends report it, not as Ray's ``RayTaskError``.
    """

    def __init__(self) -> None:
        self._own_path = list(sys.path)
        self._status = array("q", bytes(8 * STATUS_SLOTS))
        self.runtime = ProcessRuntime(memoryview(self._status))
        self._terminated = False
        self._watch_sigterm()

    def _watch_sigterm(self) -> None:
        """Note a SIGTERM before Ray's handler raises SystemExit, which would reach the UDF as its own exception.

        Ray ends a worker with SIGTERM at ray.shutdown() or when its node
        goes away; the batch running then answers "terminated", not the
        UDF's SystemExit.
        """
        previous = signal.getsignal(signal.SIGTERM)

        def terminated(number: int, frame: Any) -> None:
            self._terminated = True
            if callable(previous):
                previous(number, frame)
            else:
                raise SystemExit(128 + number)

        with contextlib.suppress(ValueError):  # not the main thread: Ray's own handler stays
            signal.signal(signal.SIGTERM, terminated)

    def hello(self) -> tuple[str, str, int, str]:
        import ray

        return "ok", ray.get_runtime_context().get_actor_id(), os.getpid(), ray.util.get_node_ip_address()

    def load(self, udf_id: int, spec: tuple[Any, ...]) -> tuple[Any, ...]:
        fields = UdfSpec(*spec)
        spec = tuple(fields._replace(path=tuple(node_path(self._own_path, fields.path))))
        return _answer(self.runtime.load, udf_id, spec)

    def unload(self, udf_id: int) -> tuple[Any, ...]:
        return _answer(self.runtime.unload, udf_id)

    def run(self, message: bytes) -> bytes | tuple[Any, ...]:
        """Run the batch a ``pack_batch`` message holds; answer its status slots and result bytes, back to back."""
        header, payload = unpack_batch(message)
        capacities = header.capacities
        if header.udf_id not in self.runtime.udfs:
            return ("unloaded",)  # Ray restarted this actor: the caller loads the UDFs again
        columns = [unpack_column(column, payload) for column in header.layout]
        outputs = _regions(capacities)
        request = BatchRequest(header.udf_id, header.length, columns, outputs, header.descriptors, header.mode)
        answer = _answer(self.runtime.run, request)
        del request
        if self._terminated:
            return "terminated", "was terminated (SIGTERM) while running a batch: Ray is stopping it"
        if answer[0] != "ok":
            return answer
        status = self._status
        sizes = result_sizes(status, len(capacities))
        if status[1] != PENDING_NONE:
            # Too big for the caller's buffers, or pickled: copied now into
            # buffers of its size and returned with the pending flag still
            # set, so the dispatcher's copy_pending needs no round trip.
            outputs = _regions(sizes)
            answer = _answer(self.runtime.copy_pending, outputs)
            if answer[0] != "ok":
                return answer
        return b"".join([status, *(output[:size] for output, size in zip(outputs, sizes, strict=True))])


def result_sizes(status: Sequence[int], buffer_count: int) -> Sequence[int]:
    """Return the sizes of a batch's result buffers, by the status: one pickled payload, or the encoded buffers."""
    if status[1] == PENDING_PICKLED:
        return status[SIZES_SLOT : SIZES_SLOT + 1]
    return status[SIZES_SLOT : SIZES_SLOT + buffer_count]


class BatchHeader(NamedTuple):
    """What a ``pack_batch`` message says of its batch, before the buffers."""

    udf_id: int
    length: int
    layout: list[tuple[Any, ...]]  # each column's tree, its buffers replaced by their Span in the message
    capacities: list[int]  # the caller's result buffers' sizes
    descriptors: tuple[Any, ...] | None
    mode: int


def pack_batch(request: BatchRequest, capacities: Sequence[int]) -> bytearray:
    """Return one message holding a batch: a header (pickled), then every column buffer, aligned.

    One bytes-like argument: Ray sends it as it is, where five arguments
    (the header's parts and the buffers) cost ~0.2 ms more a call, each
    serialized on its own (measured ad hoc on this 2-core machine, ~1.0 vs
    ~1.3 ms a round trip with 16 KB of data).
    """
    packer = Packer()
    packed = [packer.pack(column) for column in request.columns]
    fields = BatchHeader(request.udf_id, request.length, packed, list(capacities), request.descriptors, request.mode)
    # As a plain tuple: the actor need not import this module to read it.
    header = pickle.dumps(tuple(fields), pickle.HIGHEST_PROTOCOL)
    start = align(_LENGTH.size + len(header))
    message = bytearray(start + packer.size)
    _LENGTH.pack_into(message, 0, len(header))
    message[_LENGTH.size : _LENGTH.size + len(header)] = header
    packer.copy_into(memoryview(message)[start:])
    return message


def unpack_batch(message: bytes) -> tuple[BatchHeader, memoryview]:
    """Return the header of a ``pack_batch`` message, and a view of its buffers."""
    view = memoryview(message)
    (size,) = _LENGTH.unpack_from(view, 0)
    header = BatchHeader(*pickle.loads(view[_LENGTH.size : _LENGTH.size + size]))
    return header, view[align(_LENGTH.size + size) :]


def _regions(capacities: Sequence[int]) -> list[memoryview]:
    """Return one writable buffer per capacity, laid out aligned in one allocation."""
    spans, total = layout(capacities)
    region = memoryview(bytearray(total))
    return [region[start : start + size] for start, size in spans]


def _answer(method: Any, *arguments: Any) -> tuple[Any, ...]:
    try:
        return "ok", method(*arguments)
    except Exception as error:
        if isinstance(error, MemoryError) or isinstance(error.__context__, MemoryError):
            # The actor may be in no state to go on: the caller retires it.
            return "fatal", f"ran out of memory (MemoryError):\n{error}"
        return "error", type(error).__name__, str(error), traceback.format_exc()


@functools.cache
def actor_class(ray: Any) -> Any:
    # Made on first use: ray.remote needs ray imported.
    return ray.remote(RayRuntimeActor)
