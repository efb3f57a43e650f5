"""The ``duckdb-subinterp`` command: ``demo``, ``sql`` (run SQL with your UDFs) and ``bench``."""

from __future__ import annotations

import argparse
import importlib
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
from duckdb_subinterp._errors import UDFError, UDFRegistrationError
from duckdb_subinterp._export import EXPORT_ATTRIBUTE, exported_functions
from duckdb_subinterp._pool import WorkerPool
from duckdb_subinterp._registration import BACKENDS, create_function, default_pool, udf_stats
from duckdb_subinterp._runtime import resolve_reference


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
        if BACKENDS[backend].pool_type is None:  # inline is the reference above; auto picks one of the others
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


def register_modules(
    con: duckdb.DuckDBPyConnection,
    modules: list[str],
    *,
    backend: str = "subinterpreters",
    pool: WorkerPool | None = None,
) -> list[str]:
    """Register UDFs named on the command line: ``module`` (all its exports) or ``module:function``."""
    names = []
    for target in modules:
        module_name, _, qualname = target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except Exception as error:
            raise UDFRegistrationError(
                f"-m {target}: cannot import module {module_name!r}: {error!r}; run from the directory that holds "
                "it or add that directory to PYTHONPATH"
            ) from None
        if qualname:
            try:
                function = resolve_reference(target)
            except AttributeError:
                raise UDFRegistrationError(f"-m {target}: module {module_name!r} has no {qualname!r}") from None
            chosen = [(function, getattr(function, EXPORT_ATTRIBUTE, None) or {"name": qualname.rsplit(".", 1)[-1]})]
        else:
            chosen = exported_functions(module)
            if not chosen:
                raise UDFRegistrationError(
                    f"-m {target}: module {module_name!r} marks no function with @duckdb_subinterp.export; "
                    f"mark some, or name one: -m {module_name}:FUNCTION"
                )
        for function, options in chosen:
            options = dict(options)
            name = options.pop("name")
            options.setdefault("backend", backend)
            # A function marked for another backend gets that backend's default pool.
            chosen_pool = pool if options["backend"] == backend else None
            create_function(
                con,
                name,
                function,
                options.pop("parameters", None),
                options.pop("return_type", None),
                pool=chosen_pool,
                **options,
            )
            names.append(name)
    return names


def add_working_directory_to_path() -> None:
    """Let ``-m module`` find modules in the current directory, as ``python -m`` does.

    An absolute path, not "": workers copy ``sys.path`` and must find the same module.
    """
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)


def sql(
    query: str,
    *,
    database: str,
    modules: list[str],
    output: str | None,
    backend: str,
    workers: int | None,
    threads: int | None,
    stats: bool,
) -> int:
    """Run a SQL string or .sql file with the UDFs of the given modules registered."""
    if query.endswith(".sql") and os.path.isfile(query):
        with open(query, encoding="utf-8") as file:
            query = file.read()
    if output is not None and not output.lower().endswith((".csv", ".parquet", ".pq")):
        print(f"duckdb-subinterp sql: -o {output!r}: name a .csv or .parquet file", file=sys.stderr)
        return 2
    pool = None
    if workers is not None:
        pool_type = BACKENDS[backend].pool_type
        if pool_type is None:
            print(f"duckdb-subinterp sql: --workers needs a pooled backend, not --backend {backend}", file=sys.stderr)
            return 2
        pool = pool_type(workers)
    add_working_directory_to_path()
    con = duckdb.connect(database)
    try:
        if threads is not None:
            con.execute(f"SET threads={threads}")
        # DuckDB draws its own progress bar for queries that run longer than two seconds.
        con.execute("SET enable_progress_bar=true")
        names = register_modules(con, modules, backend=backend, pool=pool)
        statements = con.extract_statements(query)
        if not statements:
            print("duckdb-subinterp sql: no SQL statement given", file=sys.stderr)
            return 2
        for statement in statements[:-1]:
            con.execute(statement).fetchall()
        relation = con.sql(statements[-1].query)
        if relation is not None:
            if output is None:
                relation.show(max_rows=100)
            elif output.lower().endswith(".csv"):
                relation.write_csv(output)
                print(f"wrote {output}", file=sys.stderr)
            else:
                relation.write_parquet(output)
                print(f"wrote {output}", file=sys.stderr)
        if stats:
            _print_stats(con, names)
    finally:
        con.close()
        if pool is not None:
            pool.close()
    return 0


def _print_stats(con: duckdb.DuckDBPyConnection, names: list[str]) -> None:
    for name in names:
        try:
            counters = udf_stats(con, name)
        except KeyError:
            print(f"{name}: runs on DuckDB's own UDF machinery (backend=inline): no counters", file=sys.stderr)
            continue
        print(
            f"{name}: {counters['batches']:,} batches, {counters['rows']:,} rows, "
            f"{counters['worker_seconds']:.3f} s in workers, {counters['wait_seconds']:.3f} s waiting for a worker, "
            f"{counters['elapsed_seconds']:.3f} s elapsed, parallelism {counters['parallelism']:.2f}",
            file=sys.stderr,
        )


def bench(options: argparse.Namespace) -> int:
    """Measure DuckDB's own UDFs, our backends and the workarounds side by side (quick by default)."""
    from pathlib import Path

    from duckdb_subinterp import _bench

    defaults = _bench.BenchConfig()
    config = _bench.BenchConfig(
        rows=options.rows or (2_000_000 if options.full else defaults.rows),
        repeats=options.repeats or defaults.repeats,
        threads=options.threads or defaults.threads,
        workloads=options.workloads or defaults.workloads,
        machine=options.machine or defaults.machine,
        progress=not options.no_progress,
    )
    out_dir = Path(options.out or Path("bench", "out", config.machine))
    print(
        f"duckdb-subinterp bench: {config.rows:,} rows, SET threads in {config.threads}, {config.repeats} repeats, "
        f"{len(config.workloads)} workloads -> {out_dir}",
        file=sys.stderr,
    )
    results = _bench.run_benchmark(config)
    for path in _bench.write_reports(results, out_dir):
        print(f"wrote {path}", file=sys.stderr)
    _bench.print_summary(results)
    return 0 if all(s["all_results_match"] for s in results["summary"]) else 1


def _int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive numbers, got {text!r}")
    return values


def _name_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run the subcommand."""
    parser = argparse.ArgumentParser(prog="duckdb-subinterp", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo_parser = commands.add_parser("demo", help=inspect.getdoc(demo))
    demo_parser.add_argument("--rows", type=int, default=2_000_000)
    demo_parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)

    sql_parser = commands.add_parser("sql", help=inspect.getdoc(sql), description=inspect.getdoc(sql))
    sql_parser.add_argument("query", help="a SQL string, or a .sql file (several statements: the last one's result is shown)")
    sql_parser.add_argument("--db", "-d", default=":memory:", help="database file (default: in memory)")
    sql_parser.add_argument(
        "-m",
        "--module",
        action="append",
        default=[],
        dest="modules",
        metavar="MODULE[:FUNCTION]",
        help="register the module's @duckdb_subinterp.export functions, or one function; repeatable",
    )
    sql_parser.add_argument("-o", "--output", help="write the result to a .csv or .parquet file instead of printing it")
    sql_parser.add_argument("--backend", default="subinterpreters", choices=list(BACKENDS))
    sql_parser.add_argument("--workers", type=int, help="pool size (default: the CPU count)")
    sql_parser.add_argument("--threads", type=int, help="DuckDB's SET threads (default: DuckDB's own)")
    sql_parser.add_argument("--stats", action="store_true", help="print each UDF's counters after the query")

    bench_parser = commands.add_parser("bench", help=inspect.getdoc(bench), description=inspect.getdoc(bench))
    bench_parser.add_argument("--full", action="store_true", help="the committed run: 2,000,000 rows, 3 repeats")
    bench_parser.add_argument("--rows", type=int, help="rows per query (quick: 200,000; --full: 2,000,000)")
    bench_parser.add_argument("--threads", type=_int_list, help="SET threads values, e.g. 1,2,4 (default: 1..cores)")
    bench_parser.add_argument("--repeats", type=int, help="repeats of every figure (default 3)")
    bench_parser.add_argument("--workloads", type=_name_list, help="comma-separated subset of the workloads")
    bench_parser.add_argument("--machine", help="machine name for the report (default: the host name)")
    bench_parser.add_argument("--out", help="output directory (default: bench/out/MACHINE)")
    bench_parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    options = parser.parse_args(argv)
    if options.command == "demo":
        return demo(options.rows, options.threads)
    if options.command == "sql":
        try:
            return sql(
                options.query,
                database=options.db,
                modules=options.modules,
                output=options.output,
                backend=options.backend,
                workers=options.workers,
                threads=options.threads,
                stats=options.stats,
            )
        except (UDFError, duckdb.Error) as error:
            # The message names the UDF, the module or the SQL at fault: no traceback needed.
            print(f"duckdb-subinterp sql: {type(error).__name__}: {error}", file=sys.stderr)
            return 1
    if options.command == "bench":
        return bench(options)
    parser.error(f"unknown command {options.command!r}")
    return 2
