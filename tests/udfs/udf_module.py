"""UDFs imported by reference in the tests: module-level, standard library only."""

from __future__ import annotations

import ctypes
import datetime
import os
import signal
import sys
import time


def add_one(x: int) -> int:
    return x + 1


def negate_float(x: float) -> float:
    return -x


def shout(text: str) -> str:
    return text.upper() + "!"


def reverse_bytes(data: bytes) -> bytes:
    return data[::-1]


def next_day(day: datetime.date) -> datetime.date:
    return day + datetime.timedelta(days=1)


def add_second(moment: datetime.datetime) -> datetime.datetime:
    return moment + datetime.timedelta(seconds=1)


def invert(flag: bool) -> bool:
    return not flag


def describe(x):
    """Special null handling: NULL becomes a string."""
    return "null" if x is None else f"value {x}"


def fail_on_three(x: int) -> int:
    if x == 3:
        raise ValueError(f"three is not allowed (got {x})")
    return x


def uses_numpy(x: float) -> float:
    import numpy

    return float(numpy.sqrt(x))


def concat_all(*parts):
    return "".join(str(part) for part in parts)


def doubled_batch(xs):
    return [None if x is None else x * 2 for x in xs]


class Counter:
    """A class UDF: state lives once per worker."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, x: int) -> int:
        self.calls += 1
        return x


def call_length(xs):
    """A vectorized UDF: each row gets the number of rows of the call it came in."""
    return [len(xs)] * len(xs)


def identity(value):
    return value


def as_list(values):
    return list(values)


class BatchCounter:
    """A vectorized class UDF: labels each batch with this worker's pid and its own batch count."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.batches = 0

    def __call__(self, xs):
        self.batches += 1
        return [f"{self.pid}:{self.batches}"] * len(xs)


class ExitOnInit:
    """A class UDF whose per-worker set-up ends the process."""

    def __init__(self) -> None:
        os._exit(5)

    def __call__(self, x: int) -> int:
        return x


def sleep_forever(x: int) -> int:
    import time

    time.sleep(3600)
    return x


# Worker crashes, for the processes backend's crash matrix.


def segfault(x: int) -> int:
    return ctypes.string_at(0)[0]


def exit_three(x: int) -> int:
    os._exit(3)


def kill_self(x: int) -> int:
    os.kill(os.getpid(), signal.SIGKILL)
    return x


def exhaust_memory(x: int) -> int:
    return len(bytearray(1 << 62))


def system_exit(x: int) -> int:
    sys.exit(4)


def probe_concurrency(paths):
    """Vectorized: count the batches inside this UDF at once, across processes and interpreters.

    The file at paths[0] holds "inside peak wait"; until two batches have been inside
    at once, each batch waits up to `wait` seconds for a second one to come in, so two
    batches that may overlap do overlap.
    """
    import fcntl
    import time

    path = paths[0]

    def update(change):
        with open(path, "r+") as file:
            fcntl.flock(file, fcntl.LOCK_EX)
            inside, peak, wait = file.read().split()
            inside = int(inside) + change
            peak = max(int(peak), inside)
            file.seek(0)
            file.truncate()
            file.write(f"{inside} {peak} {wait}")
            return peak, float(wait)

    _, wait = update(1)
    deadline = time.monotonic() + wait
    # Once two batches have met, nobody needs to wait any more.
    while time.monotonic() < deadline and update(0)[0] < 2:
        time.sleep(0.005)
    update(-1)
    return [len(paths)] * len(paths)


def reverse_list(values):
    return values[::-1]


def append_z(lists):
    return [*lists, ["z"]]


def bump_struct(record):
    return {"a": record["a"] + 1, "b": record["b"] * 2}


def type_names(values):
    """An arrow UDF: the Arrow type it was handed, once per row."""
    return [str(values.type)] * len(values)


def environment_variable(name: str) -> str:
    return os.environ.get(name, "")


def slow_square(x: int) -> int:
    """About 0.2 ms a row: costly enough for a batch to fan out."""
    time.sleep(0.0002)
    return x * x


def slow_first_rows_then_whoami(x: int) -> str:
    """Rows under 300 take 2 ms each, the others nothing; returns which worker ran the row."""
    if x < 300:
        time.sleep(0.002)
    return f"{os.getpid()}:{id(sys)}"


def costly_whoami(x: int) -> str:
    """5 ms a row; returns which worker ran the row."""
    time.sleep(0.005)
    return f"{os.getpid()}:{id(sys)}"


def fail_on_1000_and_1900(x: int) -> int:
    if x in (1000, 1900):
        raise ValueError(f"refusing {x}")
    return x


def text_some_rows(x: int) -> int:
    """A str for a BIGINT on some rows: DuckDB casts those."""
    return str(x) if x % 1000 == 3 else x


def codec_in_use(_: int) -> str:
    """Name the codec of the interpreter's runtime (the subinterpreters backend keeps it in __main__._rt)."""
    runtime = sys.modules["duckdb_subinterp._worker.runtime"]
    return "compiled" if sys.modules["__main__"]._rt.codec is runtime.COMPILED_CODEC else "python"


def codec_loaded(_: int) -> bool:
    """Tell whether this worker imported the compiled codec."""
    return "duckdb_subinterp._codecc" in sys.modules
