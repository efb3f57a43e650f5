"""Run UDF batches inside a worker: an isolated interpreter, a process, or inline.

Standard library only (plus cloudpickle for functions shipped by value),
because this module is imported where numpy and pyarrow cannot load.

A worker holds one ``Runtime``. The main side loads each UDF into it once
(``load``), then sends batches (``run``): column buffers in, result
buffers out. Sizes of the encoded result go to ``status`` so the caller
can allocate more room when a variable-width result did not fit; the
result is then kept until ``copy_pending`` is called.

A result the codec does not take as it is (a ``str`` for a BIGINT, ``bytes``
for a VARCHAR, a value of another type) goes back pickled instead
(``PENDING_PICKLED``): the main side has DuckDB convert it, so it gets
DuckDB's value or DuckDB's error, exactly as DuckDB's own UDF would.

One thing, over 600 lines: the batch loop, with the per-row and per-batch
calls and the standard streams it gives the UDFs, all on the status slots
of ``_worker.protocol``; the codec's own code is in ``_codec``.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import importlib.util
import io
import itertools
import pickle
import sys
from array import array
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, cast, final

from duckdb_subinterp._codec import (
    Descriptor,
    EncodedColumn,
    Typecode,
    decode_column,
    encode_column,
    fixed_values,
    nan_to_none,
    write_bytes,
)
from duckdb_subinterp._worker.protocol import (
    MODE_BUFFERS,
    MODE_PICKLED,
    OUTPUT_SIZE_SLOT,
    OUTPUT_SLOT,
    PENDING_BUFFERS,
    PENDING_NONE,
    PENDING_PICKLED,
    SIZES_SLOT,
    UDF_ERRORS,
    BatchRequest,
    UdfArgumentInvalid,
    UdfLoadFailed,
    UdfResultInvalid,
    UdfSpec,
    resolve_reference,
)
from duckdb_subinterp._worker.protocol import check_no_null_results as _check_no_null_results
from duckdb_subinterp._worker.protocol import null_result as _null_result
from duckdb_subinterp._worker.protocol import raised as _raised
from duckdb_subinterp._worker.protocol import user_traceback as _user_traceback

if TYPE_CHECKING:
    from duckdb_subinterp._worker.asynchronous import AsyncUdf

try:
    # The codec's hot paths in C; it loads in every interpreter (per-GIL ones included).
    from duckdb_subinterp import _codecc
except ImportError:  # not built: no C compiler at install time
    # mypy has no "module or None" type; COMPILED_CODEC (None here) is what code checks.
    _codecc = None  # type: ignore[assignment]


def is_class_udf(target: Any) -> bool:
    """Tell whether ``target`` is a class whose instances are the UDF (it defines ``__call__``)."""
    return isinstance(target, type) and any("__call__" in vars(klass) for klass in target.__mro__[:-1])


def load_function(spec: UdfSpec, status: Any = None) -> Callable[..., Any]:
    """Return the callable a spec names, instantiating a class UDF once for this worker.

    An async UDF comes back wrapped (``_async.AsyncUdf``): called like a plain
    one, its awaits run on this worker's event loop; its counters go to ``status``.
    """
    if spec.path:
        sys.path[:] = spec.path
    function = spec.function
    if isinstance(function, bytes):
        target = pickle.loads(function)
    elif not isinstance(function, str):
        target = function  # the inline backend's: the function object itself, in its own interpreter
    elif spec.module_source is not None:
        target = _pinned_module(*spec.module_source)
        for attribute in function.partition(":")[2].split("."):
            target = getattr(target, attribute)
    else:
        target = resolve_reference(function)
    if is_class_udf(target):
        # A class UDF keeps per-worker state: __init__ runs once here.
        target = target()
    if spec.asynchronous is not None:
        from duckdb_subinterp._worker.asynchronous import AsyncUdf  # asyncio is imported only where an async UDF runs

        target = AsyncUdf.load(target, spec.asynchronous, status)
    # What the spec names: registration checked that it is callable.
    return cast("Callable[..., Any]", target)


_SOURCE_ATTRIBUTE = "__duckdb_subinterp_source__"


def _pinned_module(name: str, filename: str, source: str, digest: str, is_package: bool) -> Any:
    """Return module ``name`` run from ``source``: the version the main interpreter registered.

    A worker keeps a module it ran until a UDF of another version of it is
    loaded; then the new version replaces it in ``sys.modules`` (UDFs loaded
    before keep the functions they have, as DuckDB keeps the function object
    it was given). The file itself is never read here: a module edited,
    broken or deleted on disk after registration changes nothing.
    """
    module = sys.modules.get(name)
    if module is not None and getattr(module, _SOURCE_ATTRIBUTE, None) == digest:
        return module
    parent, _, child = name.rpartition(".")
    if parent:
        importlib.import_module(parent)
    locations = [filename.rpartition("/")[0]] if is_package else None
    module_spec = importlib.util.spec_from_file_location(name, filename, submodule_search_locations=locations)
    if module_spec is None:  # never for a .py file, the only kind the main side ships
        raise ImportError(f"no loader for {filename!r}")
    module = importlib.util.module_from_spec(module_spec)
    setattr(module, _SOURCE_ATTRIBUTE, digest)
    previous = sys.modules.get(name)
    sys.modules[name] = module
    try:
        exec(compile(source, filename, "exec"), module.__dict__)
    except BaseException:
        if previous is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = previous
        raise
    if parent:
        setattr(sys.modules[parent], child, module)
    return module


def source_digest(source: str) -> str:
    """Return the version token of a module's source text."""
    return hashlib.sha256(source.encode("utf-8", "surrogatepass")).hexdigest()


class LoadedUdf:
    """A UDF loaded in this worker: its spec, the callable, and how a batch calls it."""

    __slots__ = ("argument_typecodes", "call", "function", "result_typecode", "spec")

    def __init__(
        self, spec: UdfSpec, function: Callable[..., Any], per_row: Callable[..., Sequence[Any]] | None = None
    ) -> None:
        self.spec = spec
        self.function = function
        self.call = (per_row or call_per_row) if spec.kind == "native" else call_per_batch
        # Set for a vectorized or native UDF of numbers only: Runtime.run_numbers or
        # Runtime.run_row_numbers may take its batches.
        self.argument_typecodes: list[Typecode] | None = None
        self.result_typecode: Typecode | None = None
        descriptors = (*spec.arg_descriptors, spec.return_descriptor)
        numbers = all(descriptor is not None and descriptor[0] == "number" for descriptor in descriptors)
        by_row = spec.kind == "native" and spec.asynchronous is None
        if (spec.kind == "vectorized" or by_row) and numbers and not spec.varargs:
            # Only batches whose descriptors are the registered ones (no ANY argument) take this path.
            self.argument_typecodes = [descriptor[1] for descriptor in spec.arg_descriptors if descriptor is not None]
            self.result_typecode = spec.return_descriptor[1]
        if spec.asynchronous is not None and spec.kind == "native":
            # The rows of a batch are awaited concurrently (load_function made it an _async.AsyncUdf).
            self.call = cast("AsyncUdf", function).call_rows


class Runtime:
    """The per-worker registry of loaded UDFs and the batch loop.

    ``status`` (STATUS_SLOTS integers, which the main side reads after every
    batch) is given once: passing it with each batch cost ~1 us of sharing.
    ``compiled=False`` runs the pure-Python codec even where the compiled
    one is built (the tests run the contract suite both ways).
    """

    def __init__(self, status: Any, *, compiled: bool = True) -> None:
        self.udfs: dict[int, LoadedUdf] = {}
        self.pending: EncodedResult | PickledResult | None = None
        self.status = status
        # The one place that chooses the decode, encode and per-row call implementations.
        self.codec = COMPILED_CODEC if compiled and COMPILED_CODEC is not None else PYTHON_CODEC

    def load(self, udf_id: int, spec: tuple[Any, ...]) -> None:
        """Import (or unpickle) the UDF's function and keep it under ``udf_id``."""
        spec = UdfSpec(*spec)
        try:
            function = load_function(spec, self.status)
        except UDF_ERRORS as error:
            raise UdfLoadFailed(_user_traceback(error)) from None
        self.udfs[udf_id] = LoadedUdf(spec, function, self.codec.call_per_row)

    def unload(self, udf_id: int) -> None:
        """Forget a UDF (no error if it was never loaded here)."""
        self.udfs.pop(udf_id, None)

    def run(self, request: BatchRequest) -> None:
        """Run one batch: ``(udf_id, length, columns, outputs, descriptors, mode)``.

        ``descriptors`` are the columns' own when a parameter is ANY (each
        call site may pass another type), else None for the registered ones.
        ``length`` is -1 for a UDF without arguments called once per batch:
        DuckDB does not say how many rows it wants, and checks what it gets.
        """
        udf_id, length, columns, outputs, descriptors, mode = request
        self.pending = None
        udf = self.udfs[udf_id]
        if udf.result_typecode is not None and descriptors is None and length > 0 and mode == MODE_BUFFERS:
            if udf.spec.kind == "native":
                if self.run_row_numbers(udf, length, columns, outputs):
                    return
            elif self.run_numbers(udf, length, columns, outputs):
                return
        values = self.compute(udf_id, length, columns, descriptors)
        if mode == MODE_PICKLED:
            self.deliver_pickled(("values", values))
        else:
            self.deliver(self.encode(udf, values), outputs)

    def run_numbers(self, udf: LoadedUdf, length: int, columns: Sequence[tuple[Any, ...]], outputs: Any) -> bool:
        """Run a batch of a numbers-only vectorized UDF; return False, having done nothing, if it has NULLs.

        Null-free number columns in, a buffer of the result's type out: the
        layout the codec passes through unchanged. Its per-column dispatch
        and EncodedColumn cost ~6 us a batch inside a query (the bench's
        identity on BIGINT: 29.1 before, 23.3 us after, over DuckDB's
        identity arrow UDF); every other result goes on to the codec as usual.
        """
        argument_typecodes, typecode = udf.argument_typecodes, udf.result_typecode
        if argument_typecodes is None or typecode is None:  # not numbers only: run() does not ask then
            return False
        arguments = []
        for (offset, validity, raw), argument_typecode in zip(columns, argument_typecodes, strict=True):
            if validity is not None:
                return False
            arguments.append(fixed_values(raw, argument_typecode, offset, length))
        try:
            values = udf.function(*arguments)
        except UDF_ERRORS as error:
            self.deliver(self.encode(udf, _failed_batch(udf, error, length)), outputs)
            return True
        if (
            not (
                (type(values) is memoryview and values.format == typecode and values.c_contiguous)
                or (type(values) is array and values.typecode == typecode)
            )
            or len(values) != length
            or (typecode in "fd" and nan_to_none(values) is not values)
        ):
            self.deliver(self.encode(udf, _checked_batch(udf, values, length, None)), outputs)
            return True
        raw = memoryview(values).cast("B")
        status, output = self.status, outputs[1]
        status[0] = status[SIZES_SLOT] = 0
        status[SIZES_SLOT + 1] = size = raw.nbytes
        if size <= output.nbytes:
            write_bytes(output, raw)
            status[1] = 0
        else:
            self.pending = EncodedColumn(0, None, [values], None, length)
            status[1] = 1
        return True

    def run_row_numbers(self, udf: LoadedUdf, length: int, columns: Sequence[tuple[Any, ...]], outputs: Any) -> bool:
        """Run a batch of a native UDF of numbers in one loop in C; return False, having called nothing, if it cannot.

        The loop reads each row's numbers where they lie and writes each
        result into the outputs as the codec would encode it: no list of
        arguments, no list of results, no encode pass. A result the codec
        decides on (a str for a BIGINT, an int out of range) hands every
        row's result to it as ``run`` would. Its calls, results and errors are
        ``call_per_row``'s.
        """
        call_numbers, result_typecode = self.codec.call_numbers, udf.result_typecode
        if call_numbers is None or result_typecode is None:
            return False
        spec = udf.spec
        try:
            answer = call_numbers(
                udf.function,
                columns,
                udf.argument_typecodes,
                length,
                not spec.special_nulls,
                spec.errors_to_null,
                not spec.special_nulls,  # the loop leaves rows made NULL by an exception out of it
                UDF_ERRORS,
                result_typecode,
                outputs[0],
                outputs[1],
            )
        except UDF_ERRORS as error:
            raise _raised(error) from None
        if answer is NotImplemented:
            return False
        null_count, null_row, results = answer
        if null_row >= 0:
            raise _null_result(null_row)
        if results is not None:
            self.deliver(self.encode(udf, results), outputs)
            return True
        status = self.status
        status[0] = null_count
        status[SIZES_SLOT] = (length + 7) // 8 if null_count else 0
        status[SIZES_SLOT + 1] = length * _ITEM_SIZES[result_typecode]
        status[1] = PENDING_NONE
        return True

    def compute(
        self, udf_id: int, length: int, columns: Sequence[tuple[Any, ...]], descriptors: Sequence[Descriptor] | None
    ) -> Sequence[Any]:
        """Decode the columns and call the UDF; return its results, one per row."""
        udf = self.udfs[udf_id]
        spec = udf.spec
        # Without descriptors of its own a batch has no ANY argument: every registered one is described.
        described = descriptors or cast("tuple[Descriptor, ...]", spec.arg_descriptors)
        try:
            arguments = list(map(self.codec.decode, described, itertools.repeat(length), columns))
        except (ValueError, OverflowError) as error:
            raise UdfArgumentInvalid(f"an argument has no Python value: {error}") from None
        skip_nulls = not spec.special_nulls and [column[1] for column in columns].count(None) != len(columns)
        return udf.call(udf, arguments, length, skip_nulls)

    def encode(self, udf: LoadedUdf, values: Sequence[Any]) -> EncodedColumn | PickledResult:
        """Encode a batch's results in the UDF's return type, or pickle them for DuckDB to convert."""
        try:
            return self.codec.encode(udf.spec.return_descriptor, values)
        except Exception as error:
            # Not a value of the type as the codec takes it (its own errors, or any a value's
            # methods raise: an __eq__ that fails): DuckDB decides (a str for a number is cast,
            # a bool for a BIGINT is refused, an object it cannot transform is named...).
            return PickledResult.of(("values", values), udf, error)

    def deliver_pickled(self, payload: tuple[str, Any], udf: LoadedUdf | None = None) -> None:
        """Keep ``payload`` pickled for ``copy_pending``; its size goes to the status."""
        self.deliver(PickledResult.of(payload, udf, None), ())

    def deliver(self, encoded: EncodedResult | PickledResult, outputs: Sequence[memoryview]) -> None:
        """Write ``encoded`` into ``outputs`` if it fits, else keep it for ``copy_pending``."""
        if type(encoded) is PickledResult:
            self.pending = encoded
            self.status[SIZES_SLOT] = len(encoded.data)
            self.status[1] = PENDING_PICKLED
            return
        # One pass over one byte view per buffer: its size into the status,
        # its bytes into the output. A result that turns out not to fit is
        # copied again, whole, by copy_pending; ~3 us a batch less inside a
        # query than sizing, checking and copying in three passes.
        status = self.status
        status[0] = encoded.null_count
        fits = True
        slot = SIZES_SLOT
        for raw, output in zip(encoded.raw_buffers(), outputs, strict=True):
            status[slot] = size = raw.nbytes
            slot += 1
            if size > output.nbytes:
                fits = False
            elif fits and size:
                write_bytes(output, raw)
        if encoded.children:
            shapes = encoded.shapes()
            status[slot : slot + len(shapes)] = _int64_array(shapes)
        if not fits:
            self.pending = encoded
        status[1] = PENDING_NONE if fits else PENDING_BUFFERS

    def copy_pending(self, outputs: Sequence[memoryview]) -> None:
        """Write the result kept by the last ``run`` into larger outputs."""
        pending, self.pending = self.pending, None
        if pending is None:
            raise RuntimeError("no pending result to copy")
        pending.write_into(outputs)


# The worker's standard streams, as DuckDB's own UDFs have them: what a UDF
# writes to sys.stdout or sys.stderr goes to the main interpreter's current
# sys.stdout or sys.stderr (a file it was redirected to, pytest's capture,
# contextlib.redirect_stdout), in the order of the main program's own
# output, instead of the worker's own buffered stream on the same file
# descriptor, flushed whenever it fills or the worker ends. The worker only
# collects the text and raises a status flag; the main side reads the flag
# after each batch (an index into the status it reads anyway, no call) and
# takes the text only when it is set.
_STREAM_NAMES = ("stdout", "stderr", "__stdout__", "__stderr__")

STDIN_REFUSAL = (
    "sys.stdin cannot be read in a duckdb_subinterp worker: the worker (an isolated interpreter or a process) "
    "does not share the main program's buffered stdin, and reading file descriptor 0 here would take input "
    "the main program expects; read stdin in the main program and pass the data to the UDF as arguments"
)


class CapturedOutput:
    """What code in this worker wrote to its standard streams, kept in order for the main side."""

    def __init__(self, status: Any, streams: Sequence[tuple[str, str, bool]]) -> None:
        """``streams``: (encoding, errors, isatty) of the main interpreter's stdout and stderr."""
        import collections

        self.status = status
        # deque: appends from the UDFs' own threads and the main side's take need no lock.
        self.chunks: collections.deque[tuple[int, str]] = collections.deque()
        self.pending = b""  # pack()'s result, until the main side copies it
        self.originals = [getattr(sys, name) for name in _STREAM_NAMES]
        self.streams = [
            _CapturedStream(self, index, *streams[index % 2], name=f"<{name} of a duckdb_subinterp worker>")
            for index, name in enumerate(_STREAM_NAMES)
        ]

    def install(self) -> None:
        """Make this worker's standard streams these, and its stdin one that refuses to be read."""
        for name, stream in zip(_STREAM_NAMES, self.streams, strict=True):
            setattr(sys, name, stream)
        refused = _RefusedStdin()
        for name in ("stdin", "__stdin__"):
            setattr(sys, name, refused)

    def write(self, index: int, text: str) -> None:
        if text:
            self.chunks.append((index, text))
            self.status[OUTPUT_SLOT] = 1

    def take(self) -> list[tuple[str, str]]:
        """Return what was written since the last take, as (stream name, text), runs to one stream joined."""
        self.status[OUTPUT_SLOT] = 0  # before draining: a write that lands meanwhile raises it again
        taken: list[tuple[str, str]] = []
        chunks = self.chunks
        while chunks:
            index, text = chunks.popleft()
            name = _STREAM_NAMES[index]
            if taken and taken[-1][0] == name:
                taken[-1] = (name, taken[-1][1] + text)
            else:
                taken.append((name, text))
        return taken

    def pack(self) -> None:
        """Keep what was written, pickled, for ``copy_into``; its size goes to the status."""
        self.pending = pickle.dumps(self.take(), protocol=5)
        self.status[OUTPUT_SIZE_SLOT] = len(self.pending)

    def copy_into(self, target: memoryview) -> None:
        pending, self.pending = self.pending, b""
        write_bytes(target, memoryview(pending))

    def spill(self) -> None:
        """Write what is left to the worker's own streams (at its exit, when no main side will take it)."""
        for name, text in self.take():
            stream = self.originals[_STREAM_NAMES.index(name)]
            if stream is not None:
                stream.write(text)
                stream.flush()


def main_streams() -> tuple[tuple[str, str, bool], ...]:
    """Return (encoding, errors, isatty) of this interpreter's stdout and stderr, for a worker's CapturedOutput."""
    described = []
    for stream in (sys.stdout, sys.stderr):
        try:
            described.append((stream.encoding or "utf-8", stream.errors or "strict", bool(stream.isatty())))
        except Exception:  # None, closed, or a replacement without these: what a plain file would say
            described.append(("utf-8", "strict", False))
    return tuple(described)


def write_output(taken: Sequence[tuple[str, str]]) -> None:
    """Write what a worker's code printed to the main interpreter's streams of the same names, as they are now."""
    for name, text in taken:
        stream = getattr(sys, name, None)
        if stream is not None:  # print() itself writes nothing where sys.stdout is None
            stream.write(text)


class _CapturedStream(io.TextIOBase):
    """sys.stdout or sys.stderr in a worker: collects the text for the main interpreter's stream."""

    def __init__(self, output: CapturedOutput, index: int, encoding: str, errors: str, isatty: bool, name: str):
        self._output = output
        self._index = index
        self._encoding = encoding
        self._errors = errors
        self._isatty = isatty
        self.name = name
        self.buffer = _CapturedBytes(self)

    # io.TextIOBase's are read-only attributes: properties are the way to give them per stream.
    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self._encoding

    @property
    def errors(self) -> str:  # type: ignore[override]
        return self._errors

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return self._isatty  # the main interpreter's stream's: colour and progress output decide on it

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        self._output.write(self._index, text)
        return len(text)

    def fileno(self) -> int:
        raise io.UnsupportedOperation(
            f"{self.name} has no file descriptor: what is written to it goes to the main interpreter's stream"
        )


class _CapturedBytes(io.RawIOBase):
    """``sys.stdout.buffer`` in a worker: bytes written are decoded and go the way of the text."""

    def __init__(self, stream: _CapturedStream) -> None:
        self._stream = stream

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        raw = memoryview(data).cast("B")
        self._stream.write(str(raw, self._stream.encoding, "replace"))
        return raw.nbytes


class _RefusedStdin(io.TextIOBase):
    """sys.stdin in a worker: reading it fails, saying why (see STDIN_REFUSAL)."""

    name = "<stdin of a duckdb_subinterp worker>"
    encoding = "utf-8"

    def __init__(self) -> None:
        self.buffer = _RefusedBinaryStdin()

    def readable(self) -> bool:
        return True  # so that reading reaches read(), which says why it cannot

    def read(self, size: int | None = -1, /) -> str:
        raise io.UnsupportedOperation(STDIN_REFUSAL)

    # As typeshed's own TextIOWrapper: its bases declare readline as text and as bytes.
    def readline(self, size: int = -1, /) -> str:  # type: ignore[override]
        raise io.UnsupportedOperation(STDIN_REFUSAL)

    def fileno(self) -> int:
        raise io.UnsupportedOperation(STDIN_REFUSAL)


class _RefusedBinaryStdin(io.RawIOBase):
    """``sys.stdin.buffer`` in a worker: reading it fails, saying why."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any, /) -> int:
        raise io.UnsupportedOperation(STDIN_REFUSAL)

    def fileno(self) -> int:
        raise io.UnsupportedOperation(STDIN_REFUSAL)


def _int64_array(values: list[int]) -> memoryview:
    return memoryview(array("q", values))


class EncodedResult(Protocol):
    """What ``Runtime.deliver`` writes out: an ``EncodedColumn``, or the processes backend's ``ArrowResult``."""

    @property
    def null_count(self) -> int: ...
    @property
    def children(self) -> Sequence[object]: ...
    def raw_buffers(self) -> list[memoryview]: ...
    def shapes(self) -> list[int]: ...
    def write_into(self, targets: Sequence[memoryview]) -> None: ...


@final
class PickledResult:
    """A batch's result the main side converts itself: ``("values", list)`` or ``("object", anything)``."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    @classmethod
    def of(cls, payload: tuple[str, Any], udf: LoadedUdf | None, cause: Exception | None) -> PickledResult:
        """Pickle ``payload``; a value that cannot be pickled fails the batch, naming it."""
        try:
            return cls(pickle.dumps(payload, protocol=5))
        except Exception as error:
            kind, values = payload
            if kind == "values":
                # DuckDB's own UDFs read a memoryview as the bytes it shows; pickle refuses it.
                with contextlib.suppress(Exception):
                    return cls(pickle.dumps(("values", _without_memoryviews(values)), protocol=5))
            stranger = _first_unpicklable(values) if kind == "values" else None
            if stranger is not None and type(stranger) not in _DUCKDB_CONVERTS:
                # What DuckDB's own UDFs say of a value they do not know (and this one cannot
                # travel to DuckDB to say it: a class of __main__, an object holding a lock...).
                raise UdfResultInvalid(
                    f"Not implemented Error: Unable to transform python value of type '{type(stranger)}' to DuckDB "
                    "LogicalType"
                ) from None
            what = f" {udf.spec.return_type_name}" if udf is not None else ""
            detail = f"{cause}; " if cause is not None else ""
            raise UdfResultInvalid(
                f"result does not fit return type{what}: {detail}it cannot be handed to DuckDB to convert either "
                f"({type(error).__name__}: {error})"
            ) from None

    def write_into(self, targets: Sequence[memoryview]) -> None:
        write_bytes(targets[0], memoryview(self.data))


# Types DuckDB's own UDFs convert (or look into): a value of another type that cannot be pickled is named in
# DuckDB's words, as one it cannot transform.
_DUCKDB_CONVERTS = frozenset({type(None), bool, int, float, str, bytes, bytearray, memoryview, list, tuple, dict})


def _without_memoryviews(value: Any, depth: int = 0) -> Any:
    """Return ``value`` with every memoryview (in lists, tuples and dicts too) made bytes."""
    if isinstance(value, memoryview):
        return value.tobytes()
    if depth > 20:
        return value
    if type(value) is list:
        return [_without_memoryviews(item, depth + 1) for item in value]
    if type(value) is tuple:
        return tuple(_without_memoryviews(item, depth + 1) for item in value)
    if type(value) is dict:
        return {
            _without_memoryviews(key, depth + 1): _without_memoryviews(item, depth + 1) for key, item in value.items()
        }
    return value


def _first_unpicklable(values: Any, depth: int = 0) -> Any:
    """Return the first value (looking into lists, tuples and dicts) that pickle refuses; None if none."""
    items = [*values.keys(), *values.values()] if isinstance(values, dict) else values
    for value in items:
        try:
            pickle.dumps(value, protocol=5)
        except Exception:
            if isinstance(value, (list, tuple, dict)) and depth < 20:
                inner = _first_unpicklable(value, depth + 1)
                return value if inner is None else inner
            return value
    return None


def call_per_row(udf: LoadedUdf, arguments: list[Sequence[Any]], length: int, skip_nulls: bool) -> list[Any]:
    """Call a native UDF once per row, with DuckDB's NULL and exception semantics."""
    spec, function = udf.spec, udf.function
    if not skip_nulls and not spec.errors_to_null:
        try:
            # map() passes the columns side by side without a tuple per row:
            # ~1.5x faster than [function(*row) for row in zip(...)].
            results = list(map(function, *arguments)) if arguments else [function() for _ in range(length)]
        except UDF_ERRORS as error:
            raise _raised(error) from None
    else:
        # As map() above and the compiled loop do: as many rows as the shortest column.
        rows: Any = zip(*arguments, strict=False) if arguments else ((),) * length
        results = []
        failed = set()  # rows exception_handling="return_null" made NULL: not the function's None
        for row in rows:
            if skip_nulls and None in row:
                results.append(None)
                continue
            try:
                results.append(function(*row))
            except UDF_ERRORS as error:
                if not spec.errors_to_null:
                    raise _raised(error) from None
                failed.add(len(results))
                results.append(None)
        if not spec.special_nulls:
            _check_no_null_results(results, arguments, failed)
        return results
    if not spec.special_nulls:
        _check_no_null_results(results, arguments)
    return results


def call_per_row_compiled(udf: LoadedUdf, arguments: list[Sequence[Any]], length: int, skip_nulls: bool) -> list[Any]:
    """``call_per_row``, its loop in C: the same calls, results and errors."""
    spec = udf.spec
    try:
        results, null_row = _codecc.call_per_row(
            udf.function,
            arguments,
            length,
            skip_nulls,
            spec.errors_to_null,
            not spec.special_nulls,  # the loop leaves rows made NULL by an exception out of it
            UDF_ERRORS,
        )
    except UDF_ERRORS as error:  # under exception_handling="return_null" the loop made these None
        raise _raised(error) from None
    if null_row >= 0:
        raise _null_result(null_row)
    return results


def call_per_batch(udf: LoadedUdf, arguments: list[Sequence[Any]], length: int, skip_nulls: bool) -> Sequence[Any]:
    """Call a vectorized UDF once with one sequence per argument."""
    keep = None
    if skip_nulls:
        # Default NULL handling: NULL rows never reach the function, as in DuckDB.
        keep = [all(argument[index] is not None for argument in arguments) for index in range(length)]
        arguments = [[value for value, kept in zip(argument, keep, strict=True) if kept] for argument in arguments]
    try:
        values = udf.function(*arguments)
    except UDF_ERRORS as error:
        return _failed_batch(udf, error, length)
    return _checked_batch(udf, values, length, keep)


def _failed_batch(udf: LoadedUdf, error: BaseException, length: int) -> list[None]:
    """Fail the batch with the UDF's exception, or under exception_handling='return_null' make it all NULL.

    A batch of unknown length (a UDF without arguments) always fails: the
    main side registered it with DuckDB's own exception handling, which
    makes the NULLs, knowing how many.
    """
    if not udf.spec.errors_to_null or length < 0:
        raise _raised(error) from None
    return [None] * length


def _checked_batch(udf: LoadedUdf, values: object, length: int, keep: list[bool] | None) -> Sequence[Any]:
    """Check what a vectorized UDF returned and put NULL back where rows were skipped (``keep``)."""
    spec = udf.spec
    if isinstance(values, tuple):
        values = list(values)
    elif not isinstance(values, (list, memoryview, array)):
        raise UdfResultInvalid(
            f"returned {type(values).__name__}, but a vectorized UDF must return a list, tuple, array or memoryview"
        )
    expected = length if keep is None else sum(keep)
    if len(values) != expected and length >= 0:
        raise UdfResultInvalid(f"returned {len(values)} values for a batch of {expected} rows")
    if not spec.special_nulls and isinstance(values, list):
        # Every row that reached the function has non-NULL arguments here.
        _check_no_null_results(values, [])
    if keep is not None:
        filled = iter(values)
        values = [next(filled) if kept else None for kept in keep]
    return values


def decode_column_compiled(descriptor: Descriptor, length: int, column: tuple[Any, ...]) -> Sequence[Any]:
    """``decode_column``, in C where it can: the same values, or the Python codec for this column."""
    values = _codecc.decode_column(descriptor, length, column)
    return decode_column(descriptor, length, column) if values is NotImplemented else values


def encode_column_compiled(descriptor: Descriptor, values: Sequence[Any]) -> EncodedColumn:
    """``encode_column``, in C where it can: the same buffers, or the Python codec (and its errors) for this column."""
    encoded = _codecc.encode_column(descriptor, values)
    if encoded is NotImplemented:
        return encode_column(descriptor, values)
    null_count, validity, buffers = encoded
    return EncodedColumn(null_count, validity, buffers, None, len(values))


class Codec(NamedTuple):
    """How a worker decodes argument columns, calls a native UDF per row and encodes results."""

    decode: Callable[[Descriptor, int, tuple[Any, ...]], Sequence[Any]]
    encode: Callable[[Descriptor, Sequence[Any]], EncodedColumn]
    call_per_row: Callable[[LoadedUdf, list[Sequence[Any]], int, bool], Sequence[Any]]
    call_numbers: Callable[..., Any] | None = None  # Runtime.run_row_numbers' loop, compiled only


PYTHON_CODEC = Codec(decode_column, encode_column, call_per_row)
COMPILED_CODEC: Codec | None = (
    None
    if _codecc is None
    else Codec(decode_column_compiled, encode_column_compiled, call_per_row_compiled, _codecc.call_numbers)
)
_ITEM_SIZES = {code: array(code).itemsize for code in "bBhHiIqQfd"}


@functools.cache
def warn_if_codec_not_compiled() -> None:
    """Warn once, on the main side, where the workers run the pure-Python codec."""
    if COMPILED_CODEC is not None:
        return
    import warnings

    from duckdb_subinterp._errors import CompiledPathUnavailableWarning

    warnings.warn(
        "duckdb_subinterp._codecc (a C extension) was not built, so the workers decode arguments, call native UDFs "
        "and encode results in pure Python, ~0.1 us a value slower; reinstall the package where a C compiler is "
        "available",
        CompiledPathUnavailableWarning,
        stacklevel=4,  # the caller of create_function
    )


def describe_import_refusal(text: str) -> str | None:
    """Return the module named by a "does not support loading in subinterpreters" error."""
    marker = " does not support loading in subinterpreters"
    for line in text.splitlines():
        if marker in line and "module " in line:
            return line.split("module ", 1)[1].split(marker, 1)[0].strip()
    return None


def set_path(path: Sequence[str]) -> None:
    """Make this worker's import path the main interpreter's."""
    sys.path[:] = list(path)
