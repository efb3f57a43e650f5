"""DuckDB's own UDF micro-benchmarks, with ``create_function`` redirected to duckdb_subinterp.

duckdb-python's ``benchmarks/test_udf_perf.py`` is the executable definition
of "as fast as DuckDB's own UDFs": native lambdas called per row and
``pyarrow.compute`` arrow UDFs called per 2048-row batch, each summed over
``range()``. This runs every one of its ``test_udf_*`` functions from a
duckdb-python checkout (or a fetched copy), once with DuckDB's own
``create_function`` and once per backend, interleaved (each round starting
one candidate further along), at each ``SET threads`` value, and prints the
ratio own/ours of the mean times (>1: ours is faster). Means, not medians: at
``SET threads=2`` DuckDB runs such a query at one of two speeds (~29 or ~45 ms
for an arrow UDF over ``range(1_000_000)``, its own UDF as ours, changing from
one registration or query to the next), and a median over that mixture lands
in whichever speed drew more runs, so it swings by half from run to run::

    python bench/duckdb_udf_perf.py PATH/TO/duckdb-python
    python bench/duckdb_udf_perf.py PATH --backends auto,subinterpreters --threads 1,2 --repeats 5

Nothing of duckdb-python is copied here: the test module is imported from the
given checkout. Its ``con`` and ``benchmark`` fixtures are stood in for: the
connection is DuckDB's own, wrapped so that ``create_function`` goes to
``duckdb_subinterp.create_function(con, ..., backend=...)``; ``benchmark``
times the query ``--repeats`` times after the test's own warm-up run. Every
result is checked against DuckDB's own.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import duckdb

import duckdb_subinterp

OWN = "duckdb"


class RedirectedConnection:
    """A DuckDB connection whose ``create_function`` registers through duckdb_subinterp on ``backend``."""

    def __init__(self, con: duckdb.DuckDBPyConnection, backend: str) -> None:
        self._con = con
        self._backend = backend

    def create_function(
        self, name: str, function: Any, parameters: Any = None, return_type: Any = None, **options: Any
    ):
        with warnings.catch_warnings():
            # auto falls back to processes for arrow UDFs: that is the point being measured, not a problem.
            warnings.simplefilter("ignore", duckdb_subinterp.BackendFallbackWarning)
            return duckdb_subinterp.create_function(
                self._con, name, function, parameters, return_type, backend=self._backend, **options
            )

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)


class Timer:
    """Stands in for pytest-codspeed's ``benchmark`` fixture: times ``function`` ``repeats`` times."""

    def __init__(self, repeats: int) -> None:
        self.repeats = repeats
        self.seconds: list[float] = []
        self.result: Any = None

    def __call__(self, function: Callable[[], Any]) -> Any:
        for _ in range(self.repeats):
            started = time.perf_counter()
            self.result = function()
            self.seconds.append(time.perf_counter() - started)
        return self.result


def load_benchmarks(checkout: Path) -> ModuleType:
    """Import ``benchmarks/test_udf_perf.py`` from a duckdb-python checkout."""
    folder = checkout / "benchmarks"
    path = folder / "test_udf_perf.py"
    if not path.exists():
        raise SystemExit(f"{path} not found: pass the root of a duckdb-python checkout")
    sys.path.insert(0, str(folder))  # its `from _scale import scaled`
    spec = importlib.util.spec_from_file_location("duckdb_udf_perf_benchmarks", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_once(test: Callable[..., Any], backend: str, threads: int, repeats: int) -> tuple[list[float], Any]:
    """Run one benchmark function on a fresh connection; return its timed runs' seconds and its last result."""
    con = duckdb.connect(config={"threads": threads})
    try:
        timer = Timer(repeats)
        target = con if backend == OWN else RedirectedConnection(con, backend)
        test(timer, target)
        return timer.seconds, timer.result
    finally:
        con.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkout", type=Path, help="a duckdb-python checkout (its benchmarks/ folder is used)")
    parser.add_argument("--backends", default="auto", help="comma-separated backends to compare (default: auto)")
    parser.add_argument("--threads", default="1,2", help="comma-separated SET threads values")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each query, after one warm-up")
    parser.add_argument("--rounds", type=int, default=3, help="times each (benchmark, backend) is run, interleaved")
    parser.add_argument("--only", default="", help="run only benchmarks whose name contains this")
    options = parser.parse_args(argv)
    module = load_benchmarks(options.checkout)
    tests = {
        name: function
        for name, function in inspect.getmembers(module, inspect.isfunction)
        if name.startswith("test_udf") and options.only in name
    }
    backends = [name for name in options.backends.split(",") if name]
    thread_counts = [int(value) for value in options.threads.split(",")]
    print(
        f"duckdb-python benchmarks/test_udf_perf.py from {options.checkout}; {options.rounds} rounds of "
        f"{options.repeats} timed runs, interleaved, each round starting one candidate further along; "
        f"mean times; Python {sys.version.split()[0]}, duckdb {duckdb.__version__}"
    )
    print(
        f"{'benchmark':<32} {'threads':>7} {'own ms':>9}",
        *(f"{backend + ' ms':>18} {'ratio':>6}" for backend in backends),
    )
    worst = {backend: float("inf") for backend in backends}
    refused_anywhere = dict.fromkeys(backends, False)
    for threads in thread_counts:
        for name, test in tests.items():
            times: dict[str, list[float]] = {OWN: [], **{backend: [] for backend in backends}}
            refused: set[str] = set()  # an arrow UDF on subinterpreters: pyarrow cannot load there
            expected = None
            candidates = (OWN, *backends)
            for round_number in range(options.rounds):
                # Each round starts one candidate further along: none always runs right after another.
                start = round_number % len(candidates)
                for backend in candidates[start:] + candidates[:start]:
                    if backend in refused:
                        continue
                    try:
                        seconds, result = run_once(test, backend, threads, options.repeats)
                    except duckdb_subinterp.UDFRegistrationError:
                        refused.add(backend)
                        continue
                    if backend == OWN:
                        expected = result
                    elif result != expected:
                        raise SystemExit(f"{name} on {backend}: {result!r} differs from DuckDB's own {expected!r}")
                    times[backend].extend(seconds)
            own = statistics.fmean(times[OWN])
            cells = []
            for backend in backends:
                if backend in refused:
                    refused_anywhere[backend] = True
                    cells.append(f"{'refused':>18} {'':>6}")
                    continue
                ours = statistics.fmean(times[backend])
                worst[backend] = min(worst[backend], own / ours)
                cells.append(f"{ours * 1e3:>18.1f} {own / ours:>5.2f}x")
            print(f"{name:<32} {threads:>7} {own * 1e3:>9.1f}", *cells)
    print(
        "worst ratio (own/ours):",
        ", ".join(
            f"{backend} {ratio:.2f}x" if ratio != float("inf") else f"{backend} refused every one"
            for backend, ratio in worst.items()
        ),
    )
    if any(refused_anywhere.values()):
        print("refused: the backend does not take the UDF (an arrow UDF on subinterpreters: pyarrow cannot load there)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
