"""``type="arrow"`` UDFs through pyarrow, in a worker process or a Ray actor (pyarrow cannot load in an interpreter).

``ProcessRuntime`` is the interpreters' ``Runtime`` plus arrow UDFs: a batch's
columns become pyarrow arrays over the shared buffers, without a copy
(``_input_array``), and the result goes back as its buffers (``ArrowResult``)
or, where it is not an array of the return type, pickled for DuckDB to check
and convert as it does for its own arrow UDFs. pyarrow and duckdb are
imported only when an arrow UDF runs: the module itself is standard library
only, as the worker process needs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from duckdb_subinterp._codec import MAX_BATCH_BYTES, OffsetFormat, copy_buffers
from duckdb_subinterp._worker.protocol import NULL_RESULT_ERROR, UDF_ERRORS, BatchRequest, UdfResultInvalid, raised
from duckdb_subinterp._worker.runtime import LoadedUdf, PickledResult, Runtime


class ProcessRuntime(Runtime):
    """The interpreters' ``Runtime``, plus ``type="arrow"`` UDFs through pyarrow."""

    def run(self, request: BatchRequest) -> None:
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

    from duckdb_subinterp._engine.arrow import result_arrow_type  # imports pyarrow and duckdb: arrow UDFs only

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

        from duckdb_subinterp._engine.arrow import _buffer_count

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
    """Call an arrow UDF in a worker process over the rows DuckDB passed; see ``call_arrow_udf``."""
    from duckdb_subinterp._engine.arrow import converted_by_duckdb, result_arrow_type  # pyarrow: arrow UDFs only

    spec = udf.spec
    arrays = [
        _input_array(descriptor, length, column)
        for descriptor, column in zip(descriptors or spec.arg_descriptors, columns, strict=True)
    ]
    if converted_by_duckdb(spec.return_descriptor):
        # A UNION result has no layout of the codec's: it goes back as it is, DuckDB converts it.
        result = call_arrow_object(udf.function, arrays, length, spec.errors_to_null, spec.special_nulls)
        return PickledResult.of(("object", result), udf, None)
    return_type = result_arrow_type(spec.return_descriptor)
    fits, result = call_arrow_udf(udf.function, arrays, length, return_type, spec.errors_to_null, spec.special_nulls)
    return ArrowResult(result) if fits else PickledResult.of(("object", result), udf, None)


def call_arrow_object(
    function: Any, arrays: Sequence[Any], length: int, errors_to_null: bool, special_nulls: bool
) -> Any:
    """Call an arrow UDF whose result DuckDB converts whatever it is (a UNION's); return the result as it is.

    Under exception_handling='return_null' a failed call's NULLs are of
    Arrow's null type (DuckDB's own arrow UDFs return pyarrow.nulls too).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    arrays, valid = _non_null_rows(arrays) if errors_to_null and not special_nulls else (arrays, None)
    try:
        result = function(*_as_columns(arrays))
    except UDF_ERRORS as error:
        if not errors_to_null or length < 0:
            raise raised(error) from None
        return pa.nulls(length)
    if valid is not None:
        column = result.column(0) if isinstance(result, pa.Table) and result.num_columns == 1 else result
        if isinstance(column, (pa.Array, pa.ChunkedArray)) and len(column) == len(arrays[0]):
            positions = pc.subtract(pc.cumulative_sum(pc.cast(valid, pa.int64())), 1)
            result = column.take(pc.if_else(valid, positions, pa.scalar(None, pa.int64())))
    return result


def call_arrow_udf(
    function: Any, arrays: Sequence[Any], length: int, return_type: Any, errors_to_null: bool, special_nulls: bool
) -> tuple[bool, Any]:
    """Call an arrow UDF as DuckDB does, with the rows DuckDB passed (it left out NULL ones itself).

    The arguments are the columns of a table named c0, c1..., as DuckDB's
    own arrow UDFs get them. Return (True, the array) for an array of the
    return type and of the batch's length; else (False, the result as it
    is: another type, another length, a table of several columns, a list,
    None), which DuckDB converts and checks exactly as it does its own
    arrow UDFs' results. A worker process writes the array into its
    outputs; backend="auto" calls this in the calling thread too
    (``_backends.inthread``).

    Under exception_handling='return_null' with null_handling='default',
    DuckDB passes every row (it checks no NULL result after a failed call,
    but would after our NULLs), so NULL rows are left out and put back
    here, and the result is converted and checked here.
    """
    import pyarrow as pa

    filters_nulls = errors_to_null and not special_nulls
    arrays, valid = _non_null_rows(arrays) if filters_nulls else (arrays, None)
    try:
        result = function(*_as_columns(arrays))
    except UDF_ERRORS as error:
        if not errors_to_null or length < 0:
            raise raised(error) from None
        return True, pa.nulls(length, return_type)
    if filters_nulls:
        return True, _restored(result, len(arrays[0]) if arrays else length, return_type, valid)
    array = result.column(0) if isinstance(result, pa.Table) and result.num_columns == 1 else result
    if isinstance(array, pa.ChunkedArray) and array.type.equals(return_type):
        # Over 2 GiB of text it cannot: DuckDB takes the chunks as they are.
        with contextlib.suppress(pa.ArrowInvalid, pa.ArrowCapacityError):
            array = array.combine_chunks()
    if isinstance(array, pa.Array) and array.type.equals(return_type) and len(array) == length:
        return True, array
    return False, result


def _non_null_rows(arrays: Sequence[Any]) -> tuple[Sequence[Any], Any]:
    """Return the rows of ``arrays`` without a NULL argument, and which rows those are (None: all of them)."""
    import pyarrow.compute as pc

    if not any(array.null_count for array in arrays):
        return arrays, None
    valid = pc.is_valid(arrays[0])
    for array in arrays[1:]:
        valid = pc.and_(valid, pc.is_valid(array))
    return [array.filter(valid) for array in arrays], valid


def _as_columns(arrays: Sequence[Any]) -> list[Any]:
    """Return ``arrays`` as the columns of a table named c0, c1..., as DuckDB's own arrow UDFs get their arguments."""
    import pyarrow as pa

    columns: list[Any] = pa.Table.from_arrays(list(arrays), names=[f"c{index}" for index in range(len(arrays))]).columns
    return columns


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
