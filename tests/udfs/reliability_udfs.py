"""UDFs for the reliability tests, imported by reference: module-level, standard library only."""

from __future__ import annotations

import os
import signal
import sys
import time

BATCH_SECONDS = 0.02


def slow_batch(xs):
    """Vectorized: sleep a fixed time per batch, then return the input."""
    time.sleep(BATCH_SECONDS)
    return xs


def fail_on_multiples_of_5000(x: int) -> int:
    if x % 5000 == 4999:
        raise ValueError(f"refusing {x}")
    return x * 2


def triple(x: int) -> int:
    return x * 3


def as_text(x: int) -> str:
    return f"row-{x}-" + "é" * (x % 7)


def vectorized_square(xs):
    return [None if x is None else x * x for x in xs]


def mutate_input(xs):
    """Vectorized: try to write into the batch DuckDB handed over."""
    xs[0] = -1
    return xs


def huge_text(x: int) -> str:
    """One 32 MiB string per row: results far larger than any first guess of the buffer size."""
    return chr(ord("a") + x % 26) * (32 << 20)


def recurse(x: int) -> int:
    return recurse(x + 1)


def deep_repr(x: int) -> int:
    """Recursion in C code: raise the Python limit so only the C stack guard can stop it."""
    sys.setrecursionlimit(1_000_000)
    nested: list = []
    for _ in range(200_000):
        nested = [nested]
    return len(repr(nested))


def exhaust_memory(x: int) -> int:
    return len(bytearray(1 << 60))


def crash_on_4999(x: int) -> int:
    """Kill the process it runs in on one row, as a crash in native code would: processes backend only."""
    if x == 4999:
        os.kill(os.getpid(), signal.SIGSEGV)
    return x * 2


def spin(x: int) -> int:
    """Never return: an endless loop of bytecode."""
    while True:
        pass


def spin_off_main(x: int) -> int:
    """Spin on every DuckDB thread but the one whose native id is in DUCKDB_SUBINTERP_TEST_MAIN."""
    import threading

    if threading.get_native_id() != int(os.environ["DUCKDB_SUBINTERP_TEST_MAIN"]):
        spin(x)
    time.sleep(0.001)  # leave batches to the other threads too
    return x


def spin_on_main(x: int) -> int:
    """Spin only on the DuckDB thread whose native id is in DUCKDB_SUBINTERP_TEST_MAIN; be slow elsewhere.

    Slow, so that the other threads leave batches to that one.
    """
    import threading

    if threading.get_native_id() == int(os.environ["DUCKDB_SUBINTERP_TEST_MAIN"]):
        spin(x)
    time.sleep(0.001)
    return x


def busy_in_c(x: int) -> int:
    """Never return from C code that neither releases the GIL nor looks for asynchronous exceptions."""
    return sum(range(1 << 62)) + x


def swallow_stops(x: int) -> int:
    """Spin and catch everything, the exception meant to stop it included."""
    while True:
        try:
            while True:
                pass
        except BaseException:
            pass


def plus_one(x: int) -> int:
    return x + 1


class Refreshed:
    """Per-worker state with a refresher thread that sleeps a minute between refreshes."""

    def __init__(self) -> None:
        import threading

        self.value = 1
        threading.Thread(target=self._refresh, name="refresher").start()

    def _refresh(self) -> None:
        while True:
            time.sleep(60)
            self.value += 1

    def __call__(self, x: int) -> int:
        return x + self.value


class RefreshedOften:
    """Per-worker state with refresher threads that wake every few milliseconds."""

    def __init__(self) -> None:
        import threading

        self.value = 1
        for _ in range(3):
            threading.Thread(target=self._refresh, name="refresher").start()

    def _refresh(self) -> None:
        while True:
            time.sleep(0.005)

    def __call__(self, x: int) -> int:
        return x + self.value


# Where LoadsOnce counts its __init__ calls, one file each, across workers
# (interpreters and processes alike).
INIT_LOG_VARIABLE = "DUCKDB_SUBINTERP_TEST_INIT_LOG"


def _count_init() -> int:
    """Record one __init__ call in the INIT_LOG_VARIABLE folder; return its number, from 1."""
    folder = os.environ[INIT_LOG_VARIABLE]
    attempt = 1
    while True:
        try:
            os.close(os.open(os.path.join(folder, f"init-{attempt}"), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            attempt += 1
            continue
        return attempt


def init_calls(folder: str) -> int:
    """Return how many times LoadsOnce.__init__ ran, in any worker, with INIT_LOG_VARIABLE set to ``folder``."""
    return sum(1 for name in os.listdir(folder) if name.startswith("init-"))


# While this file exists in the INIT_LOG_VARIABLE folder, LoadsOnce loads again (its model is back).
LOADS_AGAIN = "loads-again"


class LoadsOnce:
    """A class UDF whose __init__ works once: in any later worker it fails, as when its model file is gone."""

    def __init__(self) -> None:
        attempt = _count_init()
        if attempt > 1 and not os.path.exists(os.path.join(os.environ[INIT_LOG_VARIABLE], LOADS_AGAIN)):
            raise FileNotFoundError(f"model.bin is gone (__init__ call {attempt})")
        self.factor = 3

    def __call__(self, x: int) -> int:
        if x < 0:  # never returns: the pool's timeout stops the batch and retires the worker
            spin(x)
        return x * self.factor


class Noisy:
    """A class UDF that prints: once when made, on stdout for some rows, on stderr for fewer."""

    def __init__(self) -> None:
        print("Noisy is ready")

    def __call__(self, x: int) -> int:
        if x % 512 == 0:
            print(f"row {x}")
        if x % 1024 == 0:
            print(f"row {x} to stderr", file=sys.stderr)
        return x + 1


def read_stdin_line(x: int) -> int:
    return len(sys.stdin.readline())


def read_stdin_bytes(x: int) -> int:
    return len(sys.stdin.buffer.read())


def read_input(x: int) -> int:
    return len(input())


class PrintsLater:
    """A class UDF whose first call starts a thread that prints a while later, when no batch may run."""

    def __init__(self) -> None:
        self.started = False

    def __call__(self, x: int) -> int:
        if not self.started:
            import threading

            self.started = True
            threading.Thread(target=self._later).start()
        return x

    def _later(self) -> None:
        time.sleep(0.3)
        print("printed by the UDF's own thread")
