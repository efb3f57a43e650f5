"""The ``duckdb-subinterp`` command: ``demo`` (and more subcommands as they land)."""

from __future__ import annotations

import argparse
import inspect
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import duckdb
import pyarrow as pa

from duckdb_subinterp import examples
from duckdb_subinterp._baselines import ProcessPoolUDF
from duckdb_subinterp._registration import BACKENDS, create_function, default_pool


def _timed(con: duckdb.DuckDBPyConnection, query: str) -> tuple[float, Any]:
    started = time.perf_counter()
    rows = con.sql(query).fetchall()
    return time.perf_counter() - started, rows


def demo(rows: int, threads: int) -> int:
    """Run one CPU-bound UDF through DuckDB's own UDF, our backends and a process-pool workaround."""
    function = examples.collatz
    print(f"duckdb-subinterp demo: {function.__name__}(BIGINT) on {rows:,} rows, SET threads={threads}, "
          f"Python {sys.version.split()[0]}, duckdb {duckdb.__version__}")
    con = duckdb.connect()
    con.execute(f"SET threads={threads}")
    con.execute("SET enable_progress_bar=false")
    con.execute(f"CREATE TABLE numbers AS SELECT i AS x FROM range({rows}) t(i)")
    con.create_function("duckdb_udf", function)
    candidates = [("duckdb create_function", "duckdb_udf")]
    for backend in BACKENDS:
        if backend == "inline":
            continue
        pool = default_pool(backend)
        started = time.perf_counter()
        create_function(con, f"udf_{backend}", function, backend=backend)
        # Start every worker now: start-up is reported, not timed as work.
        _timed(con, f"SELECT sum(udf_{backend}(x)) FROM range({2048 * pool.size * 4}) t(x)")
        print(f"  {backend} pool of {pool.size} workers ready in {time.perf_counter() - started:.2f} s")
        candidates.append((f"duckdb_subinterp backend={backend}", f"udf_{backend}"))
    workaround = ProcessPoolUDF(function, pa.int64(), threads)
    workaround.warm_up()
    con.create_function("process_pool_udf", workaround, ["BIGINT"], "BIGINT", type="arrow")
    candidates.append(("arrow UDF + ProcessPoolExecutor", "process_pool_udf"))
    reference_seconds = None
    reference_rows = None
    try:
        for label, udf_name in candidates:
            seconds, result = _timed(con, f"SELECT sum({udf_name}(x)), count(*) FROM numbers")
            if reference_rows is None:
                reference_seconds, reference_rows = seconds, result
            same = "same result" if result == reference_rows else f"DIFFERENT RESULT {result} != {reference_rows}"
            speedup = reference_seconds / seconds
            print(f"  {label:<40} {seconds:7.2f} s  {rows / seconds / 1e6:6.2f} M rows/s  {speedup:5.2f}x  {same}")
            if result != reference_rows:
                return 1
    finally:
        workaround.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run the subcommand."""
    parser = argparse.ArgumentParser(prog="duckdb-subinterp", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo_parser = commands.add_parser("demo", help=inspect.getdoc(demo))
    demo_parser.add_argument("--rows", type=int, default=2_000_000)
    demo_parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    options = parser.parse_args(argv)
    if options.command == "demo":
        return demo(options.rows, options.threads)
    parser.error(f"unknown command {options.command!r}")
    return 2
