"""By-reference UDFs of test_fidelity: standard library only (numpy only where a function imports it itself)."""

from __future__ import annotations

import datetime
import decimal
import uuid

# Results of every kind, the ones DuckDB's own UDFs take and the ones they refuse or convert: `picked`
# returns RESULTS[i], so one UDF per return type covers them all.
RESULTS = [
    None,
    True,
    0,
    -7,
    1 << 63,
    1 << 64,
    1 << 100,
    1 << 130,
    1.5,
    1.005,
    1e30,
    float("nan"),
    float("inf"),
    "42",
    "x",
    "0101",
    "2020-01-02",
    "",
    b"abc",
    bytearray(b"ab"),
    memoryview(b"mv"),
    decimal.Decimal("1.25"),
    decimal.Decimal("1.005"),
    decimal.Decimal("NaN"),
    uuid.UUID(int=5),
    datetime.date(2020, 1, 2),
    datetime.datetime(2020, 1, 2, 3, 4, 5),
    datetime.datetime(2020, 1, 2, 3, 4, 5, tzinfo=datetime.timezone(datetime.timedelta(hours=3))),
    datetime.time(1, 2, 3, 456789),
    datetime.time(1, 2, 3, tzinfo=datetime.timezone(datetime.timedelta(hours=5, minutes=30))),
    datetime.time(1, 2, 3, tzinfo=datetime.timezone(datetime.timedelta(hours=-2))),
    datetime.time(1, 2, 3, tzinfo=datetime.timezone(datetime.timedelta(seconds=37))),
    datetime.timedelta(days=1, seconds=5),
    # POINT(1 2) as WKB
    b"\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\xf0?\x00\x00\x00\x00\x00\x00\x00@",
    "POINT(1 2)",
    [1, 2],
    (1, 2),
    [],
    {"a": 1, "b": 2},
    {"A": 1, "B": 2},
    {"key": [1, 2], "value": [3, 4]},
    {"key": [1, 1], "value": [3, 4]},
    {1: 2},
    {},
    object(),
]


def picked(index):
    return RESULTS[index]


def picked_in(index, shape):
    """RESULTS[index] inside a LIST, an ARRAY, a STRUCT or a MAP."""
    value = RESULTS[index]
    return {"list": [value], "array": (value,), "struct": {"f": value}, "map": {1: value}}[shape]


def describe(value):
    return f"{type(value).__name__}: {value!r}"


def identity(value):
    return value


def as_list(values):
    return list(values)


def decode_bytes(value):
    return b"\xff".decode()


def encode_text(value):
    return "\ud800".encode("ascii")


def raise_group(value):
    raise ExceptionGroup("several", [ValueError("a"), KeyError("b")])


class TwoArgumentError(Exception):
    """A user's exception whose constructor takes two arguments."""

    def __init__(self, code, detail):
        super().__init__(f"{code}: {detail}")
        self.code = code


def raise_two_argument_error(value):
    raise TwoArgumentError(7, "seven")


def none_or_raise(x):
    """None for even rows, an exception for odd ones."""
    if x % 2:
        raise ValueError("odd")
    return None


def raise_or_none(x):
    """An exception for even rows, None for odd ones (under return_null: the first row raised)."""
    if x % 2 == 0:
        raise ValueError("even")
    return None


async def none_or_raise_async(x):
    if x % 2:
        raise ValueError("odd")
    return None


def none_or_raise_batch(xs):
    return [None for _ in xs]


class Hostile:
    """A result whose __eq__, __hash__ and __repr__ raise."""

    def __eq__(self, other):
        raise RuntimeError("__eq__")

    def __hash__(self):
        raise RuntimeError("__hash__")

    def __repr__(self):
        raise RuntimeError("__repr__")


def hostile(x):
    return Hostile()


def hostile_in_list(x):
    return [Hostile()]


def as_double(x):
    """x / 1000 as a float, for a DECIMAL result: DuckDB rounds it as a DOUBLE."""
    return x / 1000


def numpy_scalar(kind):
    """A numpy scalar of ``kind`` (numpy loads where this runs: processes, inline)."""
    import numpy

    return {"int64": numpy.int64(5), "float64": numpy.float64(1.005), "float32": numpy.float32(1.5)}[kind]


def imports_numpy(x):
    """A body that imports a module refusing per-GIL interpreters at call time."""
    import numpy

    return int(numpy.int64(x) + 1)


def arrow_describe(values):
    """An arrow UDF: the Arrow type and the values it was handed, as text."""
    import pyarrow

    return pyarrow.array([f"{values.type}: {values.to_pylist()!r}"] * len(values))
