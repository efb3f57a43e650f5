"""What travels between the parent and a worker process: named requests and replies, and batch layouts.

Every request on the pipe is one of the records below (pickled by
``multiprocessing.connection``); the worker answers each with a ``Reply``.
A batch's column buffers do not travel on the pipe: they are copied into a
shared-memory region one after the other, aligned (``Packer``), and the
request carries their spans; the worker rebuilds the column tree over its
mapping (``unpack_column``). The Ray backend packs a batch into one message
the same way. Standard library only: the worker process imports it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

START_TIMEOUT = 60.0  # a worker that is not ready by then is reported, not waited for
CLOSE_TIMEOUT = 2.0  # a worker asked to exit gets this long before it is killed
_ALIGNMENT = 64  # Arrow's buffer alignment, so pyarrow in the worker never copies to realign


class Hello(NamedTuple):
    """Answer with your process id: the worker is ready."""


class Load(NamedTuple):
    """Load a UDF: import or unpickle it, then run a class UDF's ``__init__``."""

    udf_id: int
    spec: tuple[Any, ...]  # a _worker.protocol.UdfSpec, as a plain tuple


class Unload(NamedTuple):
    """Drop a UDF that was removed."""

    udf_id: int


class Run(NamedTuple):
    """Run one batch: its columns lie in the input region, its result goes into the output region."""

    udf_id: int
    length: int  # rows; -1 for a UDF without arguments (see _worker.protocol.BatchRequest)
    layout: list[tuple[Any, ...]]  # each column's tree, its buffers replaced by their Span in the input region
    output_spans: list[tuple[int, int]]  # (start, size) of each result buffer in the output region
    # Nonzero: the size of a fresh region handed over with this message (its descriptor follows it).
    input_size: int
    output_size: int
    descriptors: tuple[Any, ...] | None  # the columns' own, where a parameter is ANY
    mode: int  # _worker.protocol.MODE_BUFFERS or MODE_PICKLED


class Copy(NamedTuple):
    """Write the last result, which did not fit, into the output region (a fresh one if ``output_size``)."""

    output_spans: list[tuple[int, int]]
    output_size: int


class Exit(NamedTuple):
    """Send what the UDFs printed since the last reply, then exit."""


type Request = Hello | Load | Unload | Run | Copy | Exit


class Reply(NamedTuple):
    """The worker's answer to a request."""

    # "ok" (payload: the request's result), "error" (payload: the exception's
    # type name, message and traceback), "fatal" (payload: why the worker
    # exits now), "bye" (the answer to Exit).
    kind: str
    payload: Any
    inputs_kept: bool  # the UDF kept views of the batch's arguments: the parent retires that input region
    printed: list[tuple[str, str]] | None  # what code in the worker wrote to stdout and stderr meanwhile


def command(request: Request) -> str:
    """Return the name of a request ("run", "load"...), as ``DOING`` and the error messages say it."""
    return type(request).__name__.lower()


# What a worker was doing when it died, by the request it was answering.
DOING = {
    "hello": "while starting",
    "load": "while loading the UDF (importing its module or unpickling it, then __init__ of a class UDF)",
    "unload": "while dropping a removed UDF",
    "run": "while running a batch",
    "copy": "while copying a batch's result",
}


def align(size: int) -> int:
    return (size + _ALIGNMENT - 1) // _ALIGNMENT * _ALIGNMENT


class Span(NamedTuple):
    """Where one buffer of a column lies in the input region."""

    start: int
    nbytes: int


class Packer:
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
                packed.append(Span(self.size, raw.nbytes))
                self.sources.append(raw)
                self.size += align(raw.nbytes)
            elif type(item) is tuple:
                packed.append(self.pack(item))
            else:
                packed.append(item)
        return tuple(packed)

    def copy_into(self, region: memoryview) -> None:
        start = 0
        for raw in self.sources:
            region[start : start + raw.nbytes] = raw
            start += align(raw.nbytes)


def unpack_column(column: tuple[Any, ...], region: memoryview) -> tuple[Any, ...]:
    """Rebuild a column tree over the input region (read-only views)."""
    unpacked: list[Any] = []
    for item in column:
        if type(item) is Span:
            unpacked.append(region[item.start : item.start + item.nbytes].toreadonly())
        elif type(item) is tuple:
            unpacked.append(unpack_column(item, region))
        else:
            unpacked.append(item)
    return tuple(unpacked)


def layout(sizes: Sequence[int]) -> tuple[list[tuple[int, int]], int]:
    """Place buffers of ``sizes`` one after the other, aligned; return the spans and the total."""
    spans, position = [], 0
    for size in sizes:
        spans.append((position, size))
        position += align(size)
    return spans, position
