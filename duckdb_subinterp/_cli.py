"""The ``duckdb-subinterp`` command: ``demo``, ``sql`` (run SQL with your UDFs) and ``bench``.

``bench`` is ``_cli_bench``'s: it runs the benchmarks of a checkout,
which are not part of the installed package.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from duckdb.func import PythonUDFType

from duckdb_subinterp import _cli_bench, examples
from duckdb_subinterp._baselines import ProcessPoolUDF
from duckdb_subinterp._engine.pool import WorkerPool
from duckdb_subinterp._errors import UDFError, UDFRegistrationError
from duckdb_subinterp._export import EXPORT_ATTRIBUTE, exported_functions
from duckdb_subinterp._options import BackendName
from duckdb_subinterp._registration.aggregates import create_aggregate_function, explaining_refusals
from duckdb_subinterp._registration.api import create_function, udf_stats
from duckdb_subinterp._registration.backends import BACKENDS, default_pool
from duckdb_subinterp._registration.table_functions import create_table_function
from duckdb_subinterp._version import __version__
from duckdb_subinterp._worker.protocol import resolve_reference


class _CtrlC:
    """Make Ctrl-C stop the running DuckDB query at once, and remember that it was pressed.

    Python runs a signal handler only when the main thread runs bytecode; while
    it waits inside a DuckDB query, Ctrl-C may go unseen until the query ends
    (minutes). The C-level wakeup fd is written at once: a watcher thread
    reads it and calls ``interrupt()`` on the connections in use, and the
    query fails with DuckDB's InterruptException. One per process: signals are.
    """

    def __init__(self) -> None:
        self.pressed = threading.Event()
        self._connections: list[duckdb.DuckDBPyConnection] = []
        self._watcher: threading.Thread | None = None

    def __enter__(self) -> _CtrlC:
        if threading.current_thread() is not threading.main_thread():
            return self  # signals are the main thread's; an embedding caller keeps its own handling
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._write_fd, False)
        self._closing = False
        self._previous_fd = signal.set_wakeup_fd(self._write_fd, warn_on_full_buffer=False)
        self._previous_handler = signal.signal(signal.SIGINT, self._handle)
        self._watcher = threading.Thread(target=self._watch, name="duckdb-subinterp-ctrl-c", daemon=True)
        self._watcher.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._watcher is None:
            return
        signal.set_wakeup_fd(self._previous_fd)
        signal.signal(signal.SIGINT, self._previous_handler)
        self._closing = True
        os.write(self._write_fd, b"\0")
        self._watcher.join(timeout=5)
        os.close(self._read_fd)
        os.close(self._write_fd)
        self._watcher = None

    def _handle(self, signum: int, frame: Any) -> None:
        self.pressed.set()
        signal.default_int_handler(signum, frame)  # KeyboardInterrupt, where Python code runs

    def _watch(self) -> None:
        while not self._closing:
            signals = os.read(self._read_fd, 64)
            if signal.SIGINT in signals:
                self.pressed.set()
                for con in list(self._connections):
                    with suppress(duckdb.Error):  # closed meanwhile: nothing left to stop
                        con.interrupt()

    @contextmanager
    def stops(self, con: duckdb.DuckDBPyConnection) -> Iterator[None]:
        """Interrupt ``con``'s query on Ctrl-C while in this block."""
        self._connections.append(con)
        try:
            yield
        finally:
            self._connections.remove(con)


_ctrl_c = _CtrlC()


def _timed(con: duckdb.DuckDBPyConnection, query: str) -> tuple[float, Any]:
    started = time.perf_counter()
    rows = con.sql(query).fetchall()
    return time.perf_counter() - started, rows


def demo(rows: int, threads: int) -> int:
    """Run one CPU-bound UDF through DuckDB's own UDF, our backends and a process-pool workaround."""
    function = examples.collatz
    print(
        f"duckdb-subinterp demo: {function.__name__}(BIGINT) on {rows:,} rows, SET threads={threads}, "
        f"Python {sys.version.split()[0]}, duckdb {duckdb.__version__}"
    )
    con = duckdb.connect()
    con.execute(f"SET threads={threads}")
    con.execute("SET enable_progress_bar=false")
    con.execute(f"CREATE TABLE numbers AS SELECT i AS x FROM range({rows}) t(i)")
    con.create_function("duckdb_udf", function)
    candidates = [("duckdb create_function", "duckdb_udf")]
    for backend in BACKENDS:
        if BACKENDS[backend].pool_type is None:  # inline is the reference above; auto picks one of the others
            continue
        if BACKENDS[backend].needs_cluster:  # runs where the user connected it, not on this machine's own pool
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
    con.create_function("process_pool_udf", workaround, ["BIGINT"], "BIGINT", type=PythonUDFType.ARROW)
    candidates.append(("arrow UDF + ProcessPoolExecutor", "process_pool_udf"))
    try:
        with _ctrl_c.stops(con):
            return _compare(con, candidates, rows)
    finally:
        workaround.close()
        con.close()


def _compare(con: duckdb.DuckDBPyConnection, candidates: list[tuple[str, str]], rows: int) -> int:
    """Time each candidate UDF on the table; the first is the reference every result must equal."""
    reference_seconds, reference_rows = _timed(con, f"SELECT sum({candidates[0][1]}(x)), count(*) FROM numbers")
    for index, (label, udf_name) in enumerate(candidates):
        if index == 0:
            seconds, result = reference_seconds, reference_rows
        else:
            seconds, result = _timed(con, f"SELECT sum({udf_name}(x)), count(*) FROM numbers")
        same = "same result" if result == reference_rows else f"DIFFERENT RESULT {result} != {reference_rows}"
        speedup = reference_seconds / seconds
        print(f"  {label:<40} {seconds:7.2f} s  {rows / seconds / 1e6:6.2f} M rows/s  {speedup:5.2f}x  {same}")
        if result != reference_rows:
            return 1
    return 0


def register_modules(
    con: duckdb.DuckDBPyConnection,
    modules: list[str],
    *,
    backend: BackendName = "subinterpreters",
    pool: WorkerPool | None = None,
) -> list[str]:
    """Register UDFs named on the command line: ``module`` (all its exports) or ``module:function``."""
    names = []
    for target in modules:
        module_name, _, qualname = target.partition(":")
        if module_name.endswith(".py") or os.sep in module_name:
            module_name = _module_from_path(target, module_name)
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name != module_name:
                raise UDFRegistrationError(f"-m {target}: importing {module_name!r} failed: {error}") from None
            raise UDFRegistrationError(
                f"-m {target}: no module {module_name!r}; run from the directory that holds {module_name}.py, "
                "add that directory to PYTHONPATH, or give the file's path (-m path/to/module.py)"
            ) from None
        except Exception as error:
            raise UDFRegistrationError(
                f"-m {target}: importing {module_name!r} raised {type(error).__name__}: {error}"
            ) from None
        if qualname:
            try:
                function = resolve_reference(f"{module_name}:{qualname}")
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
            kind = options.pop("kind", "function")  # @export_aggregate and @export_table_function say which
            register = {
                "function": create_function,
                "aggregate": create_aggregate_function,
                "table function": create_table_function,
            }[kind]
            types = options.pop("columns" if kind == "table function" else "return_type", None)
            register(con, name, function, options.pop("parameters", None), types, pool=chosen_pool, **options)
            names.append(name)
    return names


def _module_from_path(target: str, path_text: str) -> str:
    """Put a module file's directory on ``sys.path`` and return the module's name.

    An absolute directory: workers copy ``sys.path`` and must find the same module.
    """
    path = Path(path_text)
    if path.suffix != ".py" or not path.is_file():
        raise UDFRegistrationError(f"-m {target}: no such file {path_text!r}; give a module name or a .py file")
    directory = str(path.resolve().parent)
    if directory not in sys.path:
        sys.path.insert(0, directory)
    return path.stem


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
    backend: BackendName,
    workers: int | None,
    threads: int | None,
    stats: bool,
) -> int:
    """Run a SQL string or .sql file with the UDFs of the given modules registered."""
    sql_text = _read_query(query)
    if sql_text is None:
        return 2
    if output is not None and not output.lower().endswith((".csv", ".parquet", ".pq")):
        return _usage_error("sql", f"-o {output!r}: name a .csv or .parquet file")
    pool = None
    if workers is not None:
        pool_type = BACKENDS[backend].pool_type
        if pool_type is None:
            return _usage_error("sql", f"--workers needs a pooled backend, not --backend {backend}")
        pool = pool_type(workers)
    add_working_directory_to_path()
    con = duckdb.connect(database)
    try:
        if threads is not None:
            con.execute(f"SET threads={threads}")
        # DuckDB draws a progress bar for queries longer than two seconds, on
        # stdout: only where a person watches, never into a redirected result.
        con.execute(f"SET enable_progress_bar={'true' if sys.stdout.isatty() else 'false'}")
        names = register_modules(con, modules, backend=backend, pool=pool)
        statements = con.extract_statements(sql_text)
        if not statements:
            return _usage_error("sql", "no SQL statement given")
        with _ctrl_c.stops(con), explaining_refusals(con):
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


def _read_query(text: str) -> str | None:
    """Return the SQL that the argument gives: itself, a file's contents, or stdin's for ``-``."""
    if text == "-":
        return sys.stdin.read()
    looks_like_a_path = text.strip() == text and not any(char.isspace() for char in text)
    if looks_like_a_path and os.path.isfile(text):
        try:
            with open(text, encoding="utf-8") as file:
                return file.read()
        except (OSError, UnicodeDecodeError) as error:
            _usage_error("sql", f"cannot read {text!r}: {error}")
            return None
    if looks_like_a_path and text.lower().endswith(".sql"):
        _usage_error("sql", f"no such file {text!r} (a query with spaces is taken as SQL)")
        return None
    return text


def _usage_error(command: str, message: str) -> int:
    print(f"duckdb-subinterp {command}: {message}", file=sys.stderr)
    return 2


def _print_stats(con: duckdb.DuckDBPyConnection, names: list[str]) -> None:
    for name in names:
        try:
            counters = udf_stats(con, name)
        except KeyError:
            print(f"{name}: runs on DuckDB's own UDF machinery (backend=inline): no counters", file=sys.stderr)
            continue
        calls = ""
        if "calls" in counters:  # an async UDF
            calls = (
                f", {counters['calls']:,} calls, {counters['retries']:,} retries, {counters['timeouts']:,} timeouts, "
                f"peak concurrency {counters['peak_concurrency']}"
            )
        print(
            f"{name}: {counters['batches']:,} batches, {counters['rows']:,} rows, "
            f"{counters['worker_seconds']:.3f} s in workers, {counters['wait_seconds']:.3f} s waiting for a worker, "
            f"{counters['elapsed_seconds']:.3f} s elapsed, parallelism {counters['parallelism']:.2f}{calls}",
            file=sys.stderr,
        )


def bench(options: argparse.Namespace) -> int:
    """Measure DuckDB's own UDFs, our backends and the workarounds side by side (quick by default)."""
    try:
        return _cli_bench.run(options)
    except _cli_bench.BenchUsageError as error:
        return _usage_error("bench", str(error))


def _positive_int(text: str) -> int:
    try:
        value = int(text.replace("_", "").replace(",", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected 1 or more, got {text!r}")
    return value


def _int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive numbers, got {text!r}")
    return values


def _version() -> str:
    python = sys.version.split()[0]
    return f"duckdb-subinterp {__version__} (Python {python}, duckdb {duckdb.__version__}, pyarrow {pa.__version__})"


def make_parser() -> argparse.ArgumentParser:
    """Build the command line: ``demo``, ``sql``, ``bench``, ``--version``."""
    parser = argparse.ArgumentParser(
        prog="duckdb-subinterp",
        description="Parallel Python UDFs for DuckDB on a pool of per-GIL interpreters.",
        epilog="Run 'duckdb-subinterp COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=_version())
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    cores = os.cpu_count() or 1

    summary = "time one CPU-bound UDF through DuckDB's own UDF, each backend and a process-pool workaround"
    demo_parser = commands.add_parser("demo", help=summary, description=summary[0].upper() + summary[1:] + ".")
    demo_parser.add_argument(
        "--rows", type=_positive_int, default=2_000_000, metavar="N", help="rows in the table (default: %(default)s)"
    )
    demo_parser.add_argument(
        "--threads",
        type=_positive_int,
        default=cores,
        metavar="N",
        help="DuckDB's SET threads (default: the CPU count, %(default)s)",
    )
    demo_parser.set_defaults(run=lambda options: demo(options.rows, options.threads))

    summary = "run SQL with the UDFs of your modules registered"
    sql_parser = commands.add_parser(
        "sql",
        help=summary,
        description="Run a SQL string or a .sql file with the UDFs of your modules registered. Several statements: "
        "the last one's result is printed (or written with -o). Output on stdout is the result alone.",
    )
    sql_parser.add_argument(
        "query", help="a SQL string, a .sql file, or - for standard input (several statements: the last one's result)"
    )
    sql_parser.add_argument("--db", "-d", default=":memory:", help="database file (default: in memory)")
    sql_parser.add_argument(
        "-m",
        "--module",
        action="append",
        default=[],
        dest="modules",
        metavar="MODULE[:FUNCTION]",
        help="register a module's @duckdb_subinterp.export functions, or one function; a module name or a .py file; "
        "repeatable",
    )
    sql_parser.add_argument("-o", "--output", metavar="FILE", help="write the result to a .csv or .parquet file")
    sql_parser.add_argument(
        "--backend",
        default="subinterpreters",
        choices=list(BACKENDS),
        help="where the UDFs run: %(choices)s (default: %(default)s)",
    )
    sql_parser.add_argument(
        "--workers", type=_positive_int, metavar="N", help=f"pool size (default: the CPU count, {cores})"
    )
    sql_parser.add_argument(
        "--threads", type=_positive_int, metavar="N", help="DuckDB's SET threads (default: DuckDB's own)"
    )
    sql_parser.add_argument("--stats", action="store_true", help="print each UDF's counters to stderr after the query")
    sql_parser.set_defaults(
        run=lambda options: sql(
            options.query,
            database=options.db,
            modules=options.modules,
            output=options.output,
            backend=options.backend,
            workers=options.workers,
            threads=options.threads,
            stats=options.stats,
        )
    )

    summary = "measure DuckDB's own UDFs, each backend and the workarounds side by side"
    bench_parser = commands.add_parser(
        "bench",
        help=summary,
        description=summary[0].upper() + summary[1:] + ": quick by default (about a minute on 2 cores), "
        "--full for a committed run. Needs psutil (pip install 'duckdb-subinterp[bench]').",
    )
    bench_parser.add_argument("--full", action="store_true", help="the committed run: 2,000,000 rows, 3 repeats")
    bench_parser.add_argument(
        "--rows", type=_positive_int, metavar="N", help="rows per query (default: 200,000; --full: 2,000,000)"
    )
    bench_parser.add_argument(
        "--threads",
        type=_int_list,
        metavar="N,N,...",
        help=f"SET threads values, e.g. 1,2,4 (default: 1 to the CPU count, {cores})",
    )
    bench_parser.add_argument("--repeats", type=_positive_int, metavar="N", help="repeats of every figure (default: 3)")
    bench_parser.add_argument(
        "--workloads",
        type=_cli_bench.workload_list,
        metavar="NAME,...",
        help=f"comma-separated subset of: {_cli_bench.workload_names()} (default: all)",
    )
    bench_parser.add_argument("--machine", help="machine name for the report (default: the host name)")
    bench_parser.add_argument("--out", metavar="DIR", help="output directory (default: bench/out/MACHINE)")
    bench_parser.add_argument(
        "--small-tables",
        action="store_true",
        help="also time a ~15 us/row UDF over 20,000 and 100,000-row tables (one row group: fan-out); on with --full",
    )
    bench_parser.add_argument(
        "--targets",
        type=_cli_bench.target_list,
        metavar="NAME,...",
        help="what to run: suite (the workloads above), dispatch (bench/dispatch.py: per-call-cost, few costly "
        "rows, cheap arrow UDFs), aggregates (bench/aggregates.py: aggregates and table functions), "
        "duckdb-udf-perf (duckdb-python's UDF micro-benchmarks, redirected) (default: suite; --full: "
        "suite,dispatch,aggregates)",
    )
    bench_parser.add_argument(
        "--duckdb-python",
        type=Path,
        metavar="DIR",
        help="a duckdb-python checkout or fetched copy: runs its benchmarks/test_udf_perf.py redirected to each "
        "backend (the duckdb-udf-perf target)",
    )
    bench_parser.add_argument(
        "--udf-perf-backends",
        default="auto,subinterpreters,processes",
        metavar="NAME,...",
        help="the backends duckdb-udf-perf compares with DuckDB's own (default: auto,subinterpreters,processes)",
    )
    bench_parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    bench_parser.set_defaults(run=bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run the subcommand; return the exit status."""
    options = make_parser().parse_args(argv)
    run: Callable[[argparse.Namespace], int] = options.run
    try:
        with _ctrl_c:
            return run(options)
    except (KeyboardInterrupt, Exception) as error:
        if _ctrl_c.pressed.is_set() or isinstance(error, (KeyboardInterrupt, duckdb.InterruptException)):
            # Ctrl-C ends up as KeyboardInterrupt, as DuckDB's InterruptException or RuntimeError
            # ("Query interrupted"), or as the query error that a UDF's KeyboardInterrupt became:
            # whichever, 130, the shell's code for SIGINT.
            print(f"duckdb-subinterp {options.command}: interrupted", file=sys.stderr)
            return 130
        if not isinstance(error, (UDFError, duckdb.Error, OSError)):
            raise  # a bug of ours: the traceback is wanted
        # The message names the UDF, the module, the SQL or the file at fault: no traceback needed.
        print(f"duckdb-subinterp {options.command}: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    finally:
        _ctrl_c.pressed.clear()
