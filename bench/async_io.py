"""An I/O-bound UDF: an HTTP GET per row, through DuckDB's own UDF and as an async UDF, side by side.

A local server (``SlowServer`` of examples/async_http.py, a child
process on 127.0.0.1, bounded in time and requests) answers every request
after a fixed delay. DuckDB's own ``create_function`` calls it with urllib,
one row at a time; ``duckdb_subinterp.create_function`` calls it with an
``async def`` UDF (asyncio streams), awaiting the rows of a batch
concurrently, with a new connection per call (``fetch``) and over
connections kept open in the worker between calls and batches
(``fetch_kept``, as aiohttp's and httpx's clients do). All get the same
answers, which are checked row by row::

    python bench/async_io.py                     # 5,000 rows of a 20 ms call, SET threads=2
    python bench/async_io.py --rows 20000 --backends subinterpreters,processes --max-concurrency 64

Prints seconds, rows/s and the ratio to DuckDB's own for each backend; writes nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))  # async_http

import duckdb
from async_http import SlowServer, fetch, fetch_kept, fetch_sync

import duckdb_subinterp


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--delay", type=float, default=0.02, help="seconds the server waits before each answer")
    parser.add_argument("--threads", type=int, default=2, help="DuckDB's SET threads")
    parser.add_argument("--backends", default="subinterpreters,processes,inline")
    parser.add_argument("--max-concurrency", type=int, default=32, help="calls in flight at once per worker")
    options = parser.parse_args(argv)

    backends = [name for name in options.backends.split(",") if name]
    # Enough for every query below (DuckDB's own takes rows x delay), then the server exits by itself.
    budget = options.rows * options.delay * 2 + 300
    requests = options.rows * (2 * len(backends) + 1) + 100
    with SlowServer(options.delay, max_seconds=budget, max_requests=requests) as server:
        con = duckdb.connect()
        con.execute(f"SET threads={options.threads}")
        con.execute(
            f"CREATE TABLE places AS SELECT i, '{server.base}/geocode?q=place' || i AS url "
            f"FROM range({options.rows}) t(i)"
        )
        print(
            f"{options.rows:,} rows, one HTTP GET each to a local server answering after {options.delay * 1000:g} ms, "
            f"SET threads={options.threads}, max_concurrency={options.max_concurrency}, "
            f"Python {sys.version.split()[0]}, duckdb {duckdb.__version__}"
        )
        con.create_function("geocode_duckdb", fetch_sync)
        candidates = []
        for backend in backends:
            for function, how in ((fetch, "a connection per call"), (fetch_kept, "kept connections")):
                name = f"{function.__name__}_{backend}"
                duckdb_subinterp.create_function(
                    con, name, function, backend=backend, max_concurrency=options.max_concurrency
                )
                # Start the workers and their event loops: start-up is not what is measured.
                con.sql(f"SELECT count({name}(url)) FROM (FROM places LIMIT 8)").fetchall()
                candidates.append((f"async, {backend}, {how}", name))

        def timed(name: str) -> tuple[float, list[tuple]]:
            started = time.perf_counter()
            rows = con.sql(f"SELECT i, {name}(url) FROM places ORDER BY i").fetchall()
            return time.perf_counter() - started, rows

        reference_seconds, reference = timed("geocode_duckdb")
        label = "DuckDB create_function (urllib)"
        print(f"  {label:<46} {reference_seconds:8.2f} s  {options.rows / reference_seconds:7,.0f} rows/s   1.0x")
        same = True
        for label, name in candidates:
            seconds, rows = timed(name)
            equal = rows == reference
            same &= equal
            stats = duckdb_subinterp.udf_stats(con, name)
            print(
                f"  {label:<46} {seconds:8.2f} s  {options.rows / seconds:7,.0f} rows/s  "
                f"{reference_seconds / seconds:5.1f}x  {'same results' if equal else 'DIFFERENT RESULTS'}  "
                f"(peak {stats['peak_concurrency']} calls in flight per worker)"
            )
        con.close()
    print("every result equal to DuckDB's own" if same else "RESULTS DIFFER from DuckDB's own")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
