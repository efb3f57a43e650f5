"""Main-side half of the codec: pyarrow arrays <-> raw buffers, DuckDB types -> descriptors."""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from typing import Any

import duckdb
import pyarrow as pa

from duckdb_subinterp._codec import Descriptor

_NUMBER_TYPECODES = {
    pa.int8(): "b",
    pa.int16(): "h",
    pa.int32(): "i",
    pa.int64(): "q",
    pa.uint8(): "B",
    pa.uint16(): "H",
    pa.uint32(): "I",
    pa.uint64(): "Q",
    pa.float32(): "f",
    pa.float64(): "d",
}

_type_lock = threading.Lock()
_type_connection: duckdb.DuckDBPyConnection | None = None


class UnsupportedType(TypeError):
    """A DuckDB type the raw-buffer codec cannot carry yet."""


@functools.cache
def arrow_type_of(duckdb_type: str) -> pa.DataType:
    """Return the Arrow type DuckDB uses for ``duckdb_type`` when it exports to Arrow."""
    global _type_connection
    with _type_lock:
        if _type_connection is None:
            _type_connection = duckdb.connect()
        table = _type_connection.sql(f"SELECT CAST(NULL AS {duckdb_type}) AS value").to_arrow_table()
    return table.schema.field(0).type


# DuckDB type ids the codec carries; DuckDB's Arrow export alone is not
# enough to tell (BIT also travels as Arrow binary, but is not bytes).
SUPPORTED_TYPE_IDS = frozenset(
    {
        "boolean", "tinyint", "smallint", "integer", "bigint", "utinyint", "usmallint", "uinteger", "ubigint",
        "float", "double", "varchar", "blob", "date", "timestamp", "timestamp_s", "timestamp_ms",
    }
)


def descriptor_for(duckdb_type: duckdb.sqltypes.DuckDBPyType) -> Descriptor:
    """Return the codec descriptor of a DuckDB type, or raise ``UnsupportedType``."""
    sql_name = str(duckdb_type)
    if duckdb_type.id not in SUPPORTED_TYPE_IDS:
        raise UnsupportedType(f"type {sql_name} is not supported by the raw-buffer codec yet")
    return descriptor_of(arrow_type_of(sql_name), sql_name)


def descriptor_of(arrow_type: pa.DataType, sql_name: str) -> Descriptor:
    """Return the codec descriptor of ``arrow_type``, or raise ``UnsupportedType``."""
    if arrow_type in _NUMBER_TYPECODES:
        return ("number", _NUMBER_TYPECODES[arrow_type], sql_name)
    if pa.types.is_boolean(arrow_type):
        return ("bool",)
    if pa.types.is_string(arrow_type):
        return ("utf8", "i")
    if pa.types.is_large_string(arrow_type):
        return ("utf8", "q")
    if pa.types.is_binary(arrow_type):
        return ("binary", "i")
    if pa.types.is_large_binary(arrow_type):
        return ("binary", "q")
    if pa.types.is_date32(arrow_type):
        return ("date32",)
    if pa.types.is_timestamp(arrow_type) and arrow_type.tz is None and arrow_type.unit != "ns":
        return ("timestamp", arrow_type.unit)
    raise UnsupportedType(f"type {sql_name} (Arrow {arrow_type}) is not supported by the raw-buffer codec yet")


def fixed_width(arrow_type: pa.DataType) -> int | None:
    """Return the byte width of a fixed-width, non-boolean Arrow type, else ``None``."""
    try:
        bits = arrow_type.bit_width
    except ValueError:
        return None
    return bits // 8 if bits >= 8 else None


def column_buffers(argument: pa.ChunkedArray | pa.Array, arrow_type: pa.DataType) -> tuple[tuple[Any, ...], Any]:
    """Return ``(offset, validity, *buffers)`` as memoryviews, and the array keeping them alive."""
    if isinstance(argument, pa.ChunkedArray):
        array = argument.chunk(0) if argument.num_chunks == 1 else argument.combine_chunks()
    else:
        array = argument
    if not array.type.equals(arrow_type):
        array = array.cast(arrow_type)
    validity, *buffers = array.buffers()
    # Read-only whatever pyarrow says (a cast makes writable buffers): a UDF
    # must not write into its input. toreadonly() costs ~0.1 us a view.
    views = [memoryview(buffer).toreadonly() if buffer is not None else None for buffer in buffers]
    validity_view = memoryview(validity).toreadonly() if validity is not None and array.null_count else None
    return (array.offset, validity_view, *views), array


class OutputBuffers:
    """Main-allocated result buffers that a worker writes into, then an Arrow array over them."""

    __slots__ = ("arrow_type", "buffers", "length")

    def __init__(self, arrow_type: pa.DataType, length: int, data_estimate: int) -> None:
        self.arrow_type = arrow_type
        self.length = length
        width = fixed_width(arrow_type)
        validity_size = (length + 7) // 8
        if width is not None:
            sizes = [validity_size, width * length]
        elif pa.types.is_boolean(arrow_type):
            sizes = [validity_size, validity_size]
        else:
            offset_width = 8 if pa.types.is_large_string(arrow_type) or pa.types.is_large_binary(arrow_type) else 4
            sizes = [validity_size, offset_width * (length + 1), data_estimate]
        self.buffers = [pa.allocate_buffer(size) for size in sizes]

    def views(self) -> tuple[memoryview, ...]:
        """Return writable views of the buffers, validity first."""
        return tuple(memoryview(buffer) for buffer in self.buffers)

    def grow(self, sizes: Sequence[int]) -> None:
        """Reallocate every buffer smaller than the size the worker reported."""
        self.buffers = [
            buffer if buffer.size >= size else pa.allocate_buffer(size) for buffer, size in zip(self.buffers, sizes)
        ]

    def fits(self, sizes: Sequence[int]) -> bool:
        """Tell whether results of ``sizes`` bytes fit the current buffers."""
        return all(size <= buffer.size for size, buffer in zip(sizes, self.buffers))

    def to_array(self, null_count: int, sizes: Sequence[int]) -> pa.Array:
        """Wrap the written buffers as an Arrow array, without copying."""
        validity = self.buffers[0] if null_count else None
        values = [buffer if buffer.size == size else buffer.slice(0, size) for buffer, size in zip(self.buffers[1:], sizes[1:])]
        return pa.Array.from_buffers(self.arrow_type, self.length, [validity, *values], null_count=null_count)
