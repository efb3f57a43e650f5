"""Decode Arrow columns from raw buffers into Python values, and encode them back.

This module runs inside per-GIL interpreters and worker processes, where
pyarrow and numpy cannot load, so it uses the standard library only.

A column arrives as ``(offset, validity, *buffers)``: the Arrow array's
offset in elements, its validity bitmap (``None`` when it has no NULLs) and
its value buffers, each a ``memoryview`` over memory owned by the caller.
A *descriptor* is a tuple naming the Arrow layout, built on the main side
by ``duckdb_subinterp._arrow.descriptor_of``; its first item is the kind.
"""

from __future__ import annotations

import datetime
import itertools
from array import array
from collections.abc import Sequence
from typing import Any

Descriptor = tuple[Any, ...]

_EPOCH_DATE_ORDINAL = datetime.date(1970, 1, 1).toordinal()
_EPOCH = datetime.datetime(1970, 1, 1)
_ONE_MICROSECOND = datetime.timedelta(microseconds=1)
_UNIT_TO_MICROSECONDS = {"s": 1_000_000, "ms": 1_000, "us": 1}

# Bit i of byte b, least significant bit first, as Arrow lays bitmaps out.
_BYTE_BITS = tuple(tuple(bool(byte >> bit & 1) for bit in range(8)) for byte in range(256))


class ResultTypeError(TypeError):
    """A UDF returned a value that does not fit its declared return type."""


def unpack_bits(bitmap: memoryview, offset: int, length: int) -> list[bool]:
    """Return ``length`` booleans from an Arrow bitmap, starting at bit ``offset``."""
    first_byte, skip = divmod(offset, 8)
    last_byte = (offset + length + 7) // 8
    bits = list(itertools.chain.from_iterable(map(_BYTE_BITS.__getitem__, bitmap[first_byte:last_byte])))
    return bits[skip : skip + length]


def pack_bits(flags: Sequence[Any]) -> bytearray:
    """Pack truthy/falsy flags into an Arrow bitmap (least significant bit first)."""
    packed = bytearray((len(flags) + 7) // 8)
    for index, flag in enumerate(flags):
        if flag:
            packed[index >> 3] |= 1 << (index & 7)
    return packed


# ---------------------------------------------------------------------------
# Decoding: raw buffers -> Python values
# ---------------------------------------------------------------------------


def decode_column(descriptor: Descriptor, length: int, column: tuple[Any, ...]) -> Sequence[Any]:
    """Return the Python values of one Arrow column.

    Null-free fixed-width numeric columns come back as a zero-copy
    ``memoryview``; everything else is a ``list`` with ``None`` for NULL.
    """
    offset, validity, *buffers = column
    valid = None if validity is None else unpack_bits(validity, offset, length)
    return _DECODERS[descriptor[0]](descriptor, length, offset, buffers, valid)


def _convert(convert: Any, raw: Sequence[Any], valid: list[bool] | None) -> list[Any]:
    """Apply ``convert`` to the valid slots only: NULL slots may hold any bytes."""
    if valid is None:
        return list(map(convert, raw))
    return [convert(value) if ok else None for value, ok in zip(raw, valid)]


def _masked(values: Sequence[Any], valid: list[bool] | None) -> Sequence[Any]:
    if valid is None:
        return values
    return [value if ok else None for value, ok in zip(values, valid)]


def _fixed(buffers: list[memoryview], typecode: str, offset: int, length: int) -> memoryview:
    return buffers[0].cast("B").cast(typecode)[offset : offset + length]


def _decode_number(
    descriptor: Descriptor, length: int, offset: int, buffers: list[memoryview], valid: list[bool] | None
) -> Sequence[Any]:
    return _masked(_fixed(buffers, descriptor[1], offset, length), valid)


def _decode_bool(
    descriptor: Descriptor, length: int, offset: int, buffers: list[memoryview], valid: list[bool] | None
) -> Sequence[Any]:
    return _masked(unpack_bits(buffers[0], offset, length), valid)


def _decode_bytes_slices(length: int, offset: int, buffers: list[memoryview], offset_format: str) -> tuple[bytes, list[int]]:
    bounds = buffers[0].cast("B").cast(offset_format)[offset : offset + length + 1].tolist()
    start = bounds[0] if bounds else 0
    raw = bytes(buffers[1][start : bounds[-1]]) if bounds else b""
    return raw, [bound - start for bound in bounds]


def _decode_utf8(
    descriptor: Descriptor, length: int, offset: int, buffers: list[memoryview], valid: list[bool] | None
) -> Sequence[Any]:
    raw, bounds = _decode_bytes_slices(length, offset, buffers, descriptor[1])
    if raw.isascii():
        # One decode and str slicing is ~3x faster than decoding each value,
        # and byte offsets equal character offsets in ASCII text.
        text = raw.decode("ascii")
        return _masked([text[start:end] for start, end in itertools.pairwise(bounds)], valid)
    return _masked([raw[start:end].decode("utf-8") for start, end in itertools.pairwise(bounds)], valid)


def _decode_binary(
    descriptor: Descriptor, length: int, offset: int, buffers: list[memoryview], valid: list[bool] | None
) -> Sequence[Any]:
    raw, bounds = _decode_bytes_slices(length, offset, buffers, descriptor[1])
    return _masked([raw[start:end] for start, end in itertools.pairwise(bounds)], valid)


def _date_from_days(day: int) -> datetime.date:
    return datetime.date.fromordinal(_EPOCH_DATE_ORDINAL + day)


def _decode_date32(
    descriptor: Descriptor, length: int, offset: int, buffers: list[memoryview], valid: list[bool] | None
) -> Sequence[Any]:
    return _convert(_date_from_days, _fixed(buffers, "i", offset, length), valid)


def _decode_timestamp(
    descriptor: Descriptor, length: int, offset: int, buffers: list[memoryview], valid: list[bool] | None
) -> Sequence[Any]:
    scale = _UNIT_TO_MICROSECONDS[descriptor[1]]

    def to_datetime(tick: int) -> datetime.datetime:
        return _EPOCH + datetime.timedelta(microseconds=tick * scale)

    return _convert(to_datetime, _fixed(buffers, "q", offset, length), valid)


_DECODERS = {
    "number": _decode_number,
    "bool": _decode_bool,
    "utf8": _decode_utf8,
    "binary": _decode_binary,
    "date32": _decode_date32,
    "timestamp": _decode_timestamp,
}


# ---------------------------------------------------------------------------
# Encoding: Python values -> raw buffers
# ---------------------------------------------------------------------------


class EncodedColumn:
    """An encoded result column: its null count, validity bitmap and value buffers."""

    __slots__ = ("buffers", "null_count", "validity")

    def __init__(self, null_count: int, validity: bytes | bytearray | None, buffers: list[Any]) -> None:
        self.null_count = null_count
        self.validity = validity
        self.buffers = buffers

    def sizes(self) -> list[int]:
        """Return the byte size of the validity bitmap and of each value buffer."""
        validity_size = len(self.validity) if self.validity is not None else 0
        return [validity_size, *(memoryview(buffer).nbytes for buffer in self.buffers)]

    def write_into(self, targets: Sequence[memoryview]) -> None:
        """Copy the bitmap and buffers into caller-owned memory of sufficient size."""
        sources = [self.validity or b"", *self.buffers]
        for source, target in zip(sources, targets):
            raw = memoryview(source).cast("B")
            if raw.nbytes:
                target.cast("B")[: raw.nbytes] = raw


def encode_column(descriptor: Descriptor, values: Sequence[Any]) -> EncodedColumn:
    """Encode Python values (``None`` for NULL) into Arrow buffers of ``descriptor``'s layout."""
    null_count = values.count(None) if isinstance(values, list) else 0
    validity = None
    if null_count:
        validity = pack_bits([value is not None for value in values])
    return EncodedColumn(null_count, validity, _ENCODERS[descriptor[0]](descriptor, values, null_count))


def _without_nulls(values: Sequence[Any], null_count: int, filler: Any) -> Sequence[Any]:
    if not null_count:
        return values
    return [filler if value is None else value for value in values]


def _encode_number(descriptor: Descriptor, values: Sequence[Any], null_count: int) -> list[array]:
    typecode = descriptor[1]
    values = _without_nulls(values, null_count, 0)
    if isinstance(values, (memoryview, array)) and _typecode(values) == typecode:
        # Same layout: the buffer is copied once, straight into the output.
        return [values]
    try:
        return [array(typecode, values)]
    except (TypeError, OverflowError) as error:
        _raise_first_misfit(descriptor, values, error)
        raise


def _typecode(values: memoryview | array) -> str:
    return values.format if isinstance(values, memoryview) else values.typecode


def _raise_first_misfit(descriptor: Descriptor, values: Sequence[Any], error: Exception) -> None:
    """Name the first value that ``array`` refused, so the message points at the row."""
    typecode = descriptor[1]
    for index, value in enumerate(values):
        try:
            array(typecode, [value])
        except OverflowError:
            raise OverflowError(f"value {value!r} at row {index} is out of range for {descriptor[2]}") from error
        except TypeError:
            raise ResultTypeError(
                f"value {value!r} of type {type(value).__name__} at row {index} cannot be stored as {descriptor[2]}"
            ) from error


def _encode_bool(descriptor: Descriptor, values: Sequence[Any], null_count: int) -> list[bytearray]:
    for index, value in enumerate(values):
        if value is not None and not isinstance(value, bool):
            raise ResultTypeError(f"value {value!r} of type {type(value).__name__} at row {index} is not a bool")
    return [pack_bits(values)]


def _encode_variable(descriptor: Descriptor, values: Sequence[Any], null_count: int, encode: Any) -> list[Any]:
    offset_format = descriptor[1]
    pieces = [b"" if value is None else encode(index, value) for index, value in enumerate(values)]
    bounds = array(offset_format, itertools.accumulate(map(len, pieces), initial=0))
    return [bounds, b"".join(pieces)]


def _encode_utf8(descriptor: Descriptor, values: Sequence[Any], null_count: int) -> list[Any]:
    if all(type(value) is str for value in values) and (text := "".join(values)).isascii():
        # All-ASCII batches (the common case) encode in one call: ~4x faster.
        bounds = array(descriptor[1], itertools.accumulate(map(len, values), initial=0))
        return [bounds, text.encode("ascii")]

    def encode(index: int, value: Any) -> bytes:
        if type(value) is not str:
            raise ResultTypeError(f"value {value!r} of type {type(value).__name__} at row {index} is not a str")
        return value.encode("utf-8")

    return _encode_variable(descriptor, values, null_count, encode)


def _encode_binary(descriptor: Descriptor, values: Sequence[Any], null_count: int) -> list[Any]:
    def encode(index: int, value: Any) -> bytes:
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise ResultTypeError(f"value {value!r} of type {type(value).__name__} at row {index} is not bytes")
        return bytes(value)

    return _encode_variable(descriptor, values, null_count, encode)


def _encode_date32(descriptor: Descriptor, values: Sequence[Any], null_count: int) -> list[array]:
    days = array("i")
    for index, value in enumerate(values):
        if value is None:
            days.append(0)
        elif type(value) is datetime.date:
            days.append(value.toordinal() - _EPOCH_DATE_ORDINAL)
        else:
            raise ResultTypeError(f"value {value!r} of type {type(value).__name__} at row {index} is not a datetime.date")
    return [days]


def _encode_timestamp(descriptor: Descriptor, values: Sequence[Any], null_count: int) -> list[array]:
    scale = _UNIT_TO_MICROSECONDS[descriptor[1]]
    ticks = array("q")
    for index, value in enumerate(values):
        if value is None:
            ticks.append(0)
        elif isinstance(value, datetime.datetime) and value.tzinfo is None:
            ticks.append((value - _EPOCH) // _ONE_MICROSECOND // scale)
        else:
            raise ResultTypeError(
                f"value {value!r} of type {type(value).__name__} at row {index} is not a naive datetime.datetime"
            )
    return [ticks]


_ENCODERS = {
    "number": _encode_number,
    "bool": _encode_bool,
    "utf8": _encode_utf8,
    "binary": _encode_binary,
    "date32": _encode_date32,
    "timestamp": _encode_timestamp,
}

SUPPORTED_KINDS = frozenset(_DECODERS)
