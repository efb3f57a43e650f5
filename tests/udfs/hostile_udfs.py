"""UDFs for the processes backend's hostile tests: module-level, imported by reference in the workers."""

from __future__ import annotations

import os
import re
import sys

# Where a UDF says that its batch is running (and in which process): the
# tests act on a worker only once it is inside a batch.
MARKER_VARIABLE = "DUCKDB_SUBINTERP_TEST_MARKER"


def _mark_running() -> None:
    path = os.environ.get(MARKER_VARIABLE)
    if path:
        with open(f"{path}.tmp", "w") as file:
            file.write(str(os.getpid()))
        os.replace(f"{path}.tmp", path)


def spin(xs):
    """Vectorized: say it runs, then loop in Python forever."""
    _mark_running()
    while True:
        pass


def spin_in_c(xs):
    """Vectorized: say it runs, then backtrack in the regex engine for ages: C code that never lets the GIL go."""
    _mark_running()
    re.fullmatch(r"(a|aa)+b", "a" * 80)
    return xs


def exit_bye(x: int) -> int:
    sys.exit("bye")


def exit_bye_batch(xs):
    """Vectorized, and arrow: end the batch with SystemExit."""
    sys.exit("bye")


def interrupt(x: int) -> int:
    raise KeyboardInterrupt("stop")


class Halt(BaseException):
    """A BaseException of the user's own, as some frameworks define to unwind."""


def halt(x: int) -> int:
    raise Halt("now")


def worker_pid(x: int) -> int:
    return os.getpid()


_kept: list = []


def keep_input(xs):
    """Vectorized: keep every batch's argument and a copy of it; return how many kept ones changed since."""
    _kept.append((xs, bytes(xs)))
    changed = sum(1 for view, copy in _kept if bytes(view) != copy)
    return [changed] * len(xs)


def keep_arrow(xs):
    """Arrow: keep every batch's argument and a copy of it; return how many kept ones changed since."""
    import pyarrow as pa

    _kept.append((xs, xs.to_pylist()))
    changed = sum(1 for array, copy in _kept if array.to_pylist() != copy)
    return pa.array([changed] * len(xs), pa.int64())


def forget_kept(x: int) -> int:
    _kept.clear()
    return x


def text_length(texts):
    """Vectorized: the length of each string."""
    return [len(text) for text in texts]


def repeat_text(texts):
    """Vectorized: each string repeated 2048 times, so a batch's result is far larger than its input."""
    return [text * 2048 for text in texts]


BIG_ROW = 1_100_000  # bytes: 2048 rows of it are over 2 GiB


def big_text(x: int) -> str:
    return chr(97 + x % 26) * BIG_ROW


def big_text_arrow(xs):
    import pyarrow as pa

    return pa.array([chr(97 + x % 26) * BIG_ROW for x in xs.to_pylist()], pa.large_string())


def big_text_chunks(xs):
    """Arrow: over 2 GiB of text as pyarrow makes it from a list: string chunks, not one array."""
    import pyarrow as pa

    return pa.array([chr(97 + x % 26) * BIG_ROW for x in xs.to_pylist()])
