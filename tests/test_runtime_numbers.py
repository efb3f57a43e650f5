"""The runtime's paths for UDFs of numbers only do exactly what the codec's general path does.

``Runtime.run_numbers`` (vectorized UDFs) and ``Runtime.run_row_numbers``
(native UDFs: one loop in C from the argument buffers to the result's). Each
case runs one batch twice on a Runtime: once as it is, once with the numbers
path switched off, and compares the status slots, the bytes written, the
pending result and the error raised.
"""

from __future__ import annotations

import math
import re
from array import array
from typing import Any

import cloudpickle
import pytest

from duckdb_subinterp._worker.protocol import MODE_BUFFERS, SIZES_SLOT, STATUS_SLOTS, UdfSpec
from duckdb_subinterp._worker.runtime import COMPILED_CODEC, Runtime

LENGTH = 100
BIGINT, DOUBLE = ("number", "q", "BIGINT"), ("number", "d", "DOUBLE")
INTEGER, FLOAT = ("number", "i", "INTEGER"), ("number", "f", "FLOAT")


def _column(typecode: str, values: list[Any], offset: int = 0) -> tuple[Any, ...]:
    padded = [values[0]] * offset + values
    return (offset, None, memoryview(array(typecode, padded)).cast("B").toreadonly())


RANGE = _column("q", list(range(LENGTH)))

# (name, function, argument descriptors, result descriptor, columns, options)
CASES = [
    ("memoryview passed through", lambda xs: xs, [BIGINT], BIGINT, [RANGE], {}),
    ("sliced input", lambda xs: xs, [BIGINT], BIGINT, [_column("q", list(range(LENGTH)), offset=37)], {}),
    (
        "array of doubles",
        lambda xs: array("d", [x * 2.5 for x in xs]),
        [DOUBLE],
        DOUBLE,
        [_column("d", [i / 3 for i in range(LENGTH)])],
        {},
    ),
    (
        "NaN becomes NULL",
        lambda xs: array("d", [math.nan if i % 3 == 0 else x for i, x in enumerate(xs)]),
        [DOUBLE],
        DOUBLE,
        [_column("d", [float(i) for i in range(LENGTH)])],
        {},
    ),
    ("FLOAT in, FLOAT out", lambda xs: xs, [FLOAT], FLOAT, [_column("f", [i / 7 for i in range(LENGTH)])], {}),
    (
        "two arguments, a list out",
        lambda xs, ys: [x + y for x, y in zip(xs, ys, strict=True)],
        [INTEGER, BIGINT],
        BIGINT,
        [_column("i", list(range(LENGTH))), _column("q", list(range(LENGTH)), offset=5)],
        {},
    ),
    ("a tuple out", lambda xs: tuple(xs), [BIGINT], BIGINT, [RANGE], {}),
    ("None out, default null handling", lambda xs: [None] * len(xs), [BIGINT], BIGINT, [RANGE], {}),
    (
        "None out, special null handling",
        lambda xs: [None if x % 2 else x for x in xs],
        [BIGINT],
        BIGINT,
        [RANGE],
        {"special_nulls": True},
    ),
    ("wrong length", lambda xs: xs[1:], [BIGINT], BIGINT, [RANGE], {}),
    ("another type's buffer", lambda xs: array("d", [0.5] * len(xs)), [BIGINT], BIGINT, [RANGE], {}),
    (
        "a same-typed buffer that would narrow",
        lambda xs: xs,
        [BIGINT],
        INTEGER,
        [_column("q", [2**40 + i for i in range(LENGTH)])],
        {},
    ),
    (
        "a strided view",
        lambda xs: memoryview(array("q", range(2 * len(xs))))[::2],
        [BIGINT],
        BIGINT,
        [RANGE],
        {},
    ),
    ("bools for BIGINT", lambda xs: [True] * len(xs), [BIGINT], BIGINT, [RANGE], {}),
    ("overflow", lambda xs: [2**70] * len(xs), [BIGINT], BIGINT, [RANGE], {}),
    ("not a sequence", lambda xs: 42, [BIGINT], BIGINT, [RANGE], {}),
    ("raises", lambda xs: 1 / 0, [BIGINT], BIGINT, [RANGE], {}),
    ("raises, return_null", lambda xs: 1 / 0, [BIGINT], BIGINT, [RANGE], {"errors_to_null": True}),
    ("no arguments", lambda: array("q", [7]), [], BIGINT, [], {}),
]


def _loaded(case: tuple[Any, ...], kind: str) -> tuple[Runtime, list[int]]:
    """Return a runtime with the case's UDF loaded as ``kind`` (id 1), and the status slots it writes."""
    _, function, arguments, result, _, options = case
    status = [0] * STATUS_SLOTS
    runtime = Runtime(status)
    spec = UdfSpec(
        "case",
        cloudpickle.dumps(function),
        kind,
        tuple(arguments),
        result,
        result[2],
        options.get("special_nulls", False),
        options.get("errors_to_null", False),
        options.get("varargs", False),
    )
    runtime.load(1, tuple(spec))
    assert runtime.udfs[1].result_typecode == result[1]  # every case is one for the numbers path
    return runtime, status


def _pending(runtime: Runtime, status: list[int]) -> list[bytes] | None:
    """Return the result left pending (outputs too small), copied into outputs of the sizes asked for."""
    if runtime.pending is None:
        return None
    grown = [memoryview(bytearray(size)) for size in status[SIZES_SLOT : SIZES_SLOT + 2]]
    runtime.copy_pending(grown)
    return [bytes(view) for view in grown]


def _run(case: tuple[Any, ...], *, numbers_path: bool, capacity: int) -> tuple[Any, ...]:
    columns = case[4]
    runtime, status = _loaded(case, "vectorized")
    if not numbers_path:
        runtime.udfs[1].result_typecode = None
    length = 1 if not columns else LENGTH
    outputs = [memoryview(bytearray(16)), memoryview(bytearray(capacity))]
    try:
        runtime.run((1, length, columns, outputs, None, MODE_BUFFERS))
    except Exception as error:
        return ("raised", type(error).__name__, str(error))
    return ("ran", status[: SIZES_SLOT + 2], [bytes(view) for view in outputs], _pending(runtime, status))


@pytest.mark.parametrize("capacity", [8 * LENGTH, 8], ids=["fits", "too small"])
@pytest.mark.parametrize("case", CASES, ids=[case[0] for case in CASES])
def test_numbers_path_matches_the_general_one(case, capacity):
    general = _run(case, numbers_path=False, capacity=capacity)
    assert _run(case, numbers_path=True, capacity=capacity) == general


def test_nulls_take_the_general_path():
    status = [0] * STATUS_SLOTS
    runtime = Runtime(status)
    spec = UdfSpec(
        "case", cloudpickle.dumps(lambda xs: xs), "vectorized", (BIGINT,), BIGINT, "BIGINT", True, False, False
    )
    runtime.load(1, tuple(spec))
    column = (0, memoryview(bytes([0b101])), memoryview(array("q", [1, 2, 3])).cast("B"))
    assert not runtime.run_numbers(runtime.udfs[1], 3, [column], [memoryview(bytearray(1)), memoryview(bytearray(24))])
    runtime.run((1, 3, [column], outputs := [memoryview(bytearray(1)), memoryview(bytearray(24))], None, MODE_BUFFERS))
    assert status[0] == 1 and bytes(outputs[0]) == bytes([0b101])


# Native UDFs: the function is called once per row, NULL rows included where null handling is special.
UBIGINT, UINTEGER, SMALLINT = ("number", "Q", "UBIGINT"), ("number", "I", "UINTEGER"), ("number", "h", "SMALLINT")
EVERY_THIRD_NULL = bytes(sum(1 << bit for bit in range(8) if (index * 8 + bit) % 3) for index in range(LENGTH // 8 + 4))


def _nullable(typecode: str, values: list[Any], offset: int = 0) -> tuple[Any, ...]:
    """A column whose rows ``offset + i`` with ``(offset + i) % 3 == 0`` are NULL."""
    return (*_column(typecode, values, offset)[:1], memoryview(EVERY_THIRD_NULL), _column(typecode, values, offset)[2])


def _interrupted_at_20(x: int) -> int:
    if x == 20:
        raise KeyboardInterrupt
    return x


def _string_at_50(x: int) -> Any:
    return str(x) if x == 50 else x


NATIVE_CASES = [
    ("plus one", lambda x: x + 1, [BIGINT], BIGINT, [RANGE], {}),
    ("NULL rows skipped", lambda x: x + 1, [BIGINT], BIGINT, [_nullable("q", list(range(LENGTH)))], {}),
    (
        "NULL rows skipped, bit offset",
        lambda x: x * 2,
        [INTEGER],
        BIGINT,
        [_nullable("i", list(range(LENGTH)), offset=5)],
        {},
    ),
    (
        "NULL rows passed, special",
        lambda x: -1 if x is None else x,
        [BIGINT],
        BIGINT,
        [_nullable("q", list(range(LENGTH)))],
        {"special_nulls": True},
    ),
    (
        "two arguments, one nullable",
        lambda x, y: x + y,
        [SMALLINT, UBIGINT],
        UBIGINT,
        [_column("h", list(range(LENGTH))), _nullable("Q", [2**63 + i for i in range(LENGTH)], offset=2)],
        {},
    ),
    ("UINTEGER in, DOUBLE out", lambda x: x / 3, [UINTEGER], DOUBLE, [_column("I", list(range(LENGTH)))], {}),
    ("ints for DOUBLE", lambda x: x * 2**40, [BIGINT], DOUBLE, [RANGE], {}),
    ("NaN becomes NULL", lambda x: math.nan if x % 4 == 0 else x / 2, [BIGINT], DOUBLE, [RANGE], {}),
    ("FLOAT out", lambda x: x / 7, [DOUBLE], FLOAT, [_column("d", [float(i) for i in range(LENGTH)])], {}),
    ("None for a value, default null handling", lambda x: None if x == 40 else x, [BIGINT], BIGINT, [RANGE], {}),
    (
        "None for a value, special",
        lambda x: None if x == 40 else x,
        [BIGINT],
        BIGINT,
        [RANGE],
        {"special_nulls": True},
    ),
    ("raises", lambda x: 1 // (x - 30), [BIGINT], BIGINT, [RANGE], {}),
    ("raises, return_null", lambda x: 1 // (x - 30), [BIGINT], BIGINT, [RANGE], {"errors_to_null": True}),
    ("a str from row 50 on", _string_at_50, [BIGINT], BIGINT, [_nullable("q", list(range(LENGTH)))], {}),
    ("a bool at row 10", lambda x: x == 10 or x, [BIGINT], BIGINT, [RANGE], {}),
    ("overflow at row 30", lambda x: 2**70 if x == 30 else x, [BIGINT], BIGINT, [RANGE], {}),
    ("beyond INTEGER at row 60", lambda x: 2**40 if x == 60 else x, [BIGINT], INTEGER, [RANGE], {}),
    ("an int beyond a FLOAT's at row 70", lambda x: 2**60 + 1 if x == 70 else x, [BIGINT], FLOAT, [RANGE], {}),
    ("KeyboardInterrupt at row 20", _interrupted_at_20, [BIGINT], BIGINT, [RANGE], {"errors_to_null": True}),
    (
        "two NULL layouts, special, return_null",
        lambda x, y: 1 // (x - 12) if y is None else x,
        [BIGINT, DOUBLE],
        BIGINT,
        [_nullable("q", list(range(LENGTH)), offset=3), _nullable("d", [i / 2 for i in range(LENGTH)], offset=13)],
        {"special_nulls": True, "errors_to_null": True},
    ),
]


def _run_native(
    case: tuple[Any, ...], *, numbers_path: bool, capacity: int, container: type = tuple
) -> tuple[Any, ...]:
    """Run the case; return what it gave (with every call's arguments, in order) and whether the loop ran."""
    columns = case[4]
    runtime, status = _loaded(case, "native")
    udf = runtime.udfs[1]
    seen: list[tuple[Any, ...]] = []
    loaded = udf.function

    def recorded(*arguments: Any) -> Any:
        seen.append(arguments)
        return loaded(*arguments)

    udf.function = recorded
    calls = []
    if numbers_path:
        assert COMPILED_CODEC is not None and runtime.codec.call_numbers is not None
        call_numbers = runtime.codec.call_numbers

        def counted(*arguments: Any) -> Any:
            try:
                answer = call_numbers(*arguments)
            except Exception:
                calls.append(True)  # raised from a call of the function: it ran
                raise
            calls.append(answer is not NotImplemented)
            return answer

        runtime.codec = runtime.codec._replace(call_numbers=counted)
    else:
        runtime.codec = runtime.codec._replace(call_numbers=None)
    outputs = [memoryview(bytearray(16)), memoryview(bytearray(capacity))]
    try:
        # A tuple of columns from this interpreter or a per-GIL one, a list from a worker process or an actor.
        runtime.run((1, LENGTH, container(columns), outputs, None, MODE_BUFFERS))
    except Exception as error:
        # The user's traceback, less the frame of the counting wrapper above.
        message = re.sub(r'  File "[^"]*", line \d+, in counted\n.*\n', "", str(error))
        return ("raised", type(error).__name__, message, seen), calls
    pending = _pending(runtime, status)
    # What the outputs hold counts only for a result not pending, and the validity only with NULLs (its size
    # slot is 0 without): the fused loop writes both until a result is left to the codec.
    written = None if status[1] else (bytes(outputs[0]) if status[0] else None, bytes(outputs[1]))
    return ("ran", status[: SIZES_SLOT + 2], written, pending, seen), calls


@pytest.mark.skipif(COMPILED_CODEC is None, reason="duckdb_subinterp._codecc was not built")
@pytest.mark.parametrize("container", [tuple, list])
@pytest.mark.parametrize("capacity", [8 * LENGTH, 8], ids=["fits", "too small"])
@pytest.mark.parametrize("case", NATIVE_CASES, ids=[case[0] for case in NATIVE_CASES])
def test_row_numbers_path_matches_the_general_one(case, capacity, container):
    general, _ = _run_native(case, numbers_path=False, capacity=capacity, container=container)
    fused, calls = _run_native(case, numbers_path=True, capacity=capacity, container=container)
    assert fused == general
    # The fused loop ran the batch where the outputs had room, and left it untouched where not.
    assert calls == [capacity >= 8 * LENGTH]
