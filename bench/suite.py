"""The benchmark suite behind ``duckdb-subinterp bench``: every way to run a Python UDF, side by side.

It lives in the repository's bench/, outside the package (the wheel has no
benchmark code): the command finds it in a checkout (see ``_cli_bench``), and the
tests import it as ``bench.suite``.

One run measures, on one DuckDB connection and one table:

- throughput: the same UDFs (light, medium, heavy; over DOUBLE and VARCHAR;
  plus a numpy arrow UDF) through DuckDB's own ``create_function`` (native
  and arrow types), each pooled backend in ``BACKENDS``, and the workarounds
  users write today (an arrow UDF farming batches to a ``ProcessPoolExecutor``
  or, on 3.14+, an ``InterpreterPoolExecutor``), for every thread count;
  each figure is repeated and the repetitions are interleaved, so a slow
  moment of the machine hits every candidate alike;
- the bare UDF loop in this interpreter (rows/s), which gives the parallel
  efficiency: achieved rows/s / (threads x bare rows/s);
- the dispatch overhead per 2048-row batch: identity UDFs minus DuckDB's own
  arrow-UDF overhead for an identity arrow UDF;
- start-up time and memory (USS and PSS, via psutil) per worker.

Besides the package's own dependencies only psutil is required (the
``bench`` extra; imported when a run starts, so that the command line can say
so): without numpy the numpy workload is skipped, without matplotlib the
plots, without tqdm the progress bar; each says so once.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import duckdb
import pyarrow as pa
from duckdb.func import PythonUDFType

from duckdb_subinterp import __version__, examples
from duckdb_subinterp._backends.subinterpreters import InterpreterPool
from duckdb_subinterp._baselines import InterpreterPoolUDF, ProcessPoolUDF, interpreter_pool_available, map_rows
from duckdb_subinterp._engine.pool import WorkerPool
from duckdb_subinterp._options import BackendName, UdfTypeName
from duckdb_subinterp._registration.api import create_function, udf_stats
from duckdb_subinterp._registration.backends import BACKENDS

SCHEMA = "duckdb_subinterp.bench/1"
BATCH_ROWS = 2048
REFERENCE = "duckdb-native"  # speed-ups are against DuckDB's own native UDF (its arrow UDF for numpy)
ACCEPTANCE_TARGET = 1.8
BARE_SAMPLE_ROWS = 50_000
# Other processes using more than this share of the cores during a run make
# its timings and memory figures noisy: the report says so.
LOADED_SHARE = 0.1

_COLUMNS = {"DOUBLE": "d", "VARCHAR": "s", "BIGINT": "n"}


@dataclass(frozen=True)
class Workload:
    """One UDF over one column; ``cost`` is light, medium or heavy."""

    name: str
    function: str  # "module:qualname", importable by every backend's workers
    column_type: str
    return_type: str
    cost: str
    udf_type: UdfTypeName = "native"

    @property
    def column(self) -> str:
        return _COLUMNS[self.column_type]

    def query(self, udf_name: str, source: str = "data") -> str:
        call = f"{udf_name}({self.column})"
        total = f"length({call})" if self.return_type == "VARCHAR" else call
        return f"SELECT sum({total}) FROM {source}"

    def callable(self) -> Callable[..., Any]:
        module_name, _, qualname = self.function.partition(":")
        module = __import__(module_name, fromlist=[qualname])
        function: Callable[..., Any] = getattr(module, qualname)
        return function


WORKLOADS = [
    Workload("light_double", "duckdb_subinterp.examples:scale", "DOUBLE", "DOUBLE", "light"),
    Workload("medium_double", "duckdb_subinterp.examples:series", "DOUBLE", "DOUBLE", "medium"),
    Workload("heavy_double", "duckdb_subinterp.examples:newton_sqrt", "DOUBLE", "DOUBLE", "heavy"),
    Workload("light_varchar", "duckdb_subinterp.examples:shout", "VARCHAR", "VARCHAR", "light"),
    Workload("medium_varchar", "duckdb_subinterp.examples:digest", "VARCHAR", "VARCHAR", "medium"),
    Workload("heavy_varchar", "duckdb_subinterp.examples:word_score", "VARCHAR", "BIGINT", "heavy"),
    # The core acceptance workload: a CPU-bound UDF of >= 5 us per row.
    Workload("heavy_bigint", "duckdb_subinterp.examples:collatz", "BIGINT", "BIGINT", "heavy"),
    Workload("numpy_double", "duckdb_subinterp.numpy_examples:series_numpy", "DOUBLE", "DOUBLE", "numpy", "arrow"),
]


# Tables smaller than one of DuckDB's row groups (122,880 rows) reach a UDF
# from one DuckDB thread: only fan-out puts the pool's other workers to work.
SMALL_TABLE = Workload("small_table", "duckdb_subinterp.examples:collatz_pair", "BIGINT", "BIGINT", "heavy")
SMALL_TABLE_ROWS = (20_000, 100_000)
SMALL_TABLE_BACKENDS: tuple[BackendName, ...] = ("subinterpreters", "processes")
SMALL_TABLE_CANDIDATES = (REFERENCE, *SMALL_TABLE_BACKENDS)
SMALL_TABLE_TARGETS = {20_000: 1.6, 100_000: 1.7}
# Its queries take 0.2 to 1.7 s, and move by a third from run to run on a shared
# 2-core VM: at least this many repeats (a minute and a half in all on 2 cores).
SMALL_TABLE_MIN_REPEATS = 9


@dataclass
class BenchConfig:
    """What to measure; the defaults are the quick run (about a minute on 2 cores)."""

    rows: int = 200_000
    threads: list[int] = field(default_factory=lambda: list(range(1, (os.cpu_count() or 1) + 1)))
    repeats: int = 3
    workloads: list[str] = field(default_factory=lambda: [w.name for w in WORKLOADS])
    dispatch_rows: int | None = None  # rows of the identity table; defaults to rows
    machine: str = field(default_factory=lambda: platform.node() or "machine")
    progress: bool = True
    small_tables: bool = False  # the small-table runs (SMALL_TABLE_ROWS), at every thread count

    @property
    def workers(self) -> int:
        return max(self.threads)


# ---------------------------------------------------------------------------
# Candidates: one way each to run a UDF
# ---------------------------------------------------------------------------


class Unavailable(Exception):
    """A candidate cannot run a workload here; the message says why."""


def _row_loop_arrow_udf(function: Callable[..., Any], return_type: pa.DataType) -> Callable[..., pa.Array]:
    """What users write for DuckDB's arrow type with a per-row Python function."""

    def arrow_udf(*arguments: pa.ChunkedArray) -> pa.Array:
        return pa.array(map_rows(function, [argument.to_pylist() for argument in arguments]), type=return_type)

    return arrow_udf


class Candidate:
    """A way to register a workload's UDF on a connection."""

    key: str
    label: str
    pooled = False  # runs on a duckdb_subinterp pool (start-up and dispatch are measured)

    def unavailable_reason(self) -> str | None:
        """Return why this candidate cannot run at all here, or None."""
        return None

    def register(self, con: duckdb.DuckDBPyConnection, name: str, workload: Workload, workers: int) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Release pools and processes."""

    measures_startup = False  # has workers of its own, whose start-up and memory are measured

    def started_pool(self, workers: int) -> AbstractContextManager[int]:
        """Start a fresh pool of ``workers`` running the identity UDF; yield how many started."""
        raise NotImplementedError


class DuckDBNative(Candidate):
    key, label = "duckdb-native", "DuckDB create_function (native)"

    def register(self, con: duckdb.DuckDBPyConnection, name: str, workload: Workload, workers: int) -> None:
        if workload.udf_type != "native":
            raise Unavailable("an arrow-type UDF has no native form")
        con.create_function(name, workload.callable(), [workload.column_type], workload.return_type)


class DuckDBArrow(Candidate):
    key, label = "duckdb-arrow", "DuckDB create_function (arrow)"

    def register(self, con: duckdb.DuckDBPyConnection, name: str, workload: Workload, workers: int) -> None:
        function = workload.callable()
        if workload.udf_type == "native":
            function = _row_loop_arrow_udf(function, _arrow_type(workload.return_type))
        con.create_function(name, function, [workload.column_type], workload.return_type, type=PythonUDFType.ARROW)


class PooledBackend(Candidate):
    """One entry of ``BACKENDS`` that runs UDFs on a pool of workers."""

    pooled = True

    def __init__(self, backend: BackendName) -> None:
        self.backend = backend
        self.key = backend
        self.label = f"duckdb_subinterp backend={backend}"
        self.pool: WorkerPool | None = None

    def make_pool(self, workers: int) -> WorkerPool:
        return _new_pool(self.backend, workers)

    def register(self, con: duckdb.DuckDBPyConnection, name: str, workload: Workload, workers: int) -> None:
        if workload.udf_type == "arrow" and not BACKENDS[self.backend].accepts_arrow_udfs:
            raise Unavailable(f"backend={self.backend} cannot load numpy/pyarrow")
        if self.pool is None:
            self.pool = self.make_pool(workers)
        create_function(
            con,
            name,
            workload.function,
            [workload.column_type],
            workload.return_type,
            type=workload.udf_type,
            backend=self.backend,
            pool=self.pool,
        )

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool = None

    measures_startup = True

    @contextmanager
    def started_pool(self, workers: int) -> Iterator[int]:
        pool = self.make_pool(workers)
        con = duckdb.connect()
        try:
            # create_function starts the first worker (it loads the UDF there);
            # holding every worker checked out makes the pool start the others.
            create_function(con, "identity", "duckdb_subinterp.examples:identity", backend=self.backend, pool=pool)
            udf_id = _dispatcher_udf_id(con, "identity")
            held = [pool.checkout(udf_id, "identity") for _ in range(workers)]
            try:
                yield pool.started
            finally:
                for worker in held:
                    pool.checkin(worker)
        finally:
            con.close()
            pool.close()


class ExecutorWorkaround(Candidate):
    """An arrow UDF pickling each batch's lists to a ``concurrent.futures`` pool."""

    udf_class: type[ProcessPoolUDF] = ProcessPoolUDF

    def __init__(self) -> None:
        self.udfs: list[ProcessPoolUDF] = []

    def register(self, con: duckdb.DuckDBPyConnection, name: str, workload: Workload, workers: int) -> None:
        reason = self.unavailable_reason()
        if reason is not None:
            raise Unavailable(reason)
        if workload.udf_type != "native":
            raise Unavailable("the workaround maps a per-row function")
        udf = self.udf_class(workload.callable(), _arrow_type(workload.return_type), workers)
        self.udfs.append(udf)
        udf.warm_up()
        con.create_function(name, udf, [workload.column_type], workload.return_type, type=PythonUDFType.ARROW)

    def close(self) -> None:
        for udf in self.udfs:
            udf.close()
        self.udfs.clear()

    measures_startup = True

    @contextmanager
    def started_pool(self, workers: int) -> Iterator[int]:
        udf = self.udf_class(examples.identity, pa.int64(), workers)
        try:
            udf.warm_up()  # the executor starts its workers concurrently
            yield workers
        finally:
            udf.close()


class ProcessPoolWorkaround(ExecutorWorkaround):
    key, label = "process-pool", "arrow UDF + ProcessPoolExecutor (pickled lists)"


class InterpreterPoolWorkaround(ExecutorWorkaround):
    key, label = "interpreter-pool", "arrow UDF + InterpreterPoolExecutor (stdlib, 3.14+)"
    udf_class = InterpreterPoolUDF

    def unavailable_reason(self) -> str | None:
        return interpreter_pool_available()


def candidates() -> list[Candidate]:
    """Every candidate, pooled backends taken from ``BACKENDS`` as they are registered."""
    # A backend that needs a cluster (ray) is left out: its pool needs a connection the user makes.
    pooled = [
        PooledBackend(name)
        for name, backend in BACKENDS.items()
        if backend.pool_type is not None and not backend.needs_cluster
    ]
    return [DuckDBNative(), DuckDBArrow(), *pooled, ProcessPoolWorkaround(), InterpreterPoolWorkaround()]


def _new_pool(backend: BackendName, workers: int) -> WorkerPool:
    """Return a fresh pool of a pooled backend (the only kind the benchmark makes candidates of)."""
    pool_type = BACKENDS[backend].pool_type
    assert pool_type is not None, backend
    return pool_type(workers)


def _arrow_type(duckdb_type: str) -> pa.DataType:
    return {"DOUBLE": pa.float64(), "VARCHAR": pa.string(), "BIGINT": pa.int64()}[duckdb_type]


# ---------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------


def _timed(con: duckdb.DuckDBPyConnection, query: str) -> tuple[float, Any]:
    started = time.perf_counter()
    result = con.sql(query).fetchall()[0][0]
    return time.perf_counter() - started, result


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        # Parallel sums of doubles add in a different order.
        return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9)
    return bool(a == b)


def _make_table(con: duckdb.DuckDBPyConnection, name: str, rows: int) -> None:
    con.execute(
        f"""CREATE OR REPLACE TABLE {name} AS SELECT
            i AS n,
            i / 7.0 - 1000.0 AS d,
            concat('Post ', i % 977, ': ', ['The Quick Fox', 'a lazy dog', 'Jumps Over', 'Hello World'][i % 4 + 1]) AS s
        FROM range({rows}) t(i)"""
    )


def _bare_us_per_row(con: duckdb.DuckDBPyConnection, workload: Workload, repeats: int) -> float:
    """Time the UDF's own loop in this interpreter, without DuckDB: the best one core can do."""
    sample: int = min(BARE_SAMPLE_ROWS, con.sql("SELECT count(*) FROM data").fetchall()[0][0])
    function = workload.callable()
    if workload.udf_type == "arrow":
        table = con.sql(f"SELECT {workload.column} FROM data LIMIT {sample}").fetch_arrow_table()
        batches = [table.column(0).slice(start, BATCH_ROWS) for start in range(0, sample, BATCH_ROWS)]

        def loop() -> None:
            for batch in batches:
                function(batch)
    else:
        values = [row[0] for row in con.sql(f"SELECT {workload.column} FROM data LIMIT {sample}").fetchall()]

        def loop() -> None:
            for value in values:
                function(value)

    times: list[float] = []
    for _ in range(max(repeats, 3)):
        started = time.perf_counter()
        loop()
        times.append(time.perf_counter() - started)
    return statistics.median(times) / sample * 1e6


def missing_requirement() -> str | None:
    """Return what a run needs and lacks here (psutil), with the fix, or None."""
    try:
        import psutil  # noqa: F401
    except ImportError:
        return "needs psutil, for memory per worker: pip install 'duckdb-subinterp[bench]'"
    return None


def _memory() -> tuple[int, int]:
    """USS and PSS of this process and its children, in bytes (PSS is USS where the OS has none)."""
    import psutil

    uss = pss = 0
    me = psutil.Process()
    for process in [me, *me.children(recursive=True)]:
        try:
            info = process.memory_full_info()
        except (psutil.Error, OSError):
            continue
        uss += info.uss
        pss += getattr(info, "pss", info.uss)
    return uss, pss


def _measure_startup(candidate: Candidate, workers: int) -> dict[str, Any]:
    """Start a fresh pool of ``workers`` and report time and memory per worker."""
    uss_before, pss_before = _memory()
    started = time.perf_counter()
    with candidate.started_pool(workers) as started_workers:
        ready = time.perf_counter() - started
        uss_after, pss_after = _memory()
    return {
        "candidate": candidate.key,
        "workers": started_workers,
        "pool_ready_seconds": ready,
        "seconds_per_worker": ready / started_workers,
        "uss_per_worker_mib": (uss_after - uss_before) / started_workers / 2**20,
        "pss_per_worker_mib": (pss_after - pss_before) / started_workers / 2**20,
    }


def _dispatcher_udf_id(con: duckdb.DuckDBPyConnection, name: str) -> int:
    from duckdb_subinterp._registration.api import _dispatcher

    return _dispatcher(con, name).udf_id


def _progress(total: int, enabled: bool, description: str) -> Any:
    if enabled:
        try:
            from tqdm import tqdm
        except ImportError:
            print("tqdm is not installed: no progress bar", file=sys.stderr)
        else:
            return tqdm(total=total, desc=description, unit="run", dynamic_ncols=True)

    class _NoBar:
        def update(self, n: int = 1) -> None:
            pass

        def set_postfix_str(self, text: str) -> None:
            pass

        def close(self) -> None:
            pass

    return _NoBar()


def _numpy_missing() -> str | None:
    try:
        import numpy  # noqa: F401
    except ImportError:
        return "numpy is not installed"
    return None


def run_benchmark(config: BenchConfig) -> dict[str, Any]:
    """Run every measurement of ``config`` and return the results (the JSON document)."""
    missing = missing_requirement()
    if missing is not None:
        raise RuntimeError(f"duckdb-subinterp bench {missing}")
    begun = time.time()
    other_load = _OtherLoad()
    workloads = [w for w in WORKLOADS if w.name in config.workloads]
    unknown = set(config.workloads) - {w.name for w in WORKLOADS}
    if unknown:
        raise ValueError(f"unknown workloads {sorted(unknown)}; choose from {[w.name for w in WORKLOADS]}")
    numpy_reason = _numpy_missing()
    skipped: list[dict[str, str]] = []
    if numpy_reason is not None:
        skipped += [
            {"workload": w.name, "candidate": "*", "reason": numpy_reason} for w in workloads if w.udf_type == "arrow"
        ]
        workloads = [w for w in workloads if w.udf_type != "arrow"]
    all_candidates = candidates()
    workers = config.workers
    extra_pools: list[Any] = []
    con = duckdb.connect()
    con.execute("SET enable_progress_bar=false")
    _make_table(con, "data", config.rows)
    results: dict[str, Any] = {
        "schema": SCHEMA,
        "machine": describe_machine(config.machine),
        "config": {**asdict(config), "batch_rows": BATCH_ROWS, "reference": REFERENCE},
        "candidates": [
            {
                "key": c.key,
                "label": c.label,
                "available": c.unavailable_reason() is None,
                "reason": c.unavailable_reason(),
            }
            for c in all_candidates
        ],
        "workloads": [],
        "runs": [],
        "skipped": skipped,
    }
    try:
        # Register every (workload, candidate) once; workers start here, not in timed runs.
        registered: list[tuple[Workload, Candidate, str]] = []
        for workload in workloads:
            for candidate in all_candidates:
                name = f"{workload.name}__{candidate.key.replace('-', '_')}"
                try:
                    candidate.register(con, name, workload, workers)
                except Unavailable as reason:
                    skipped.append({"workload": workload.name, "candidate": candidate.key, "reason": str(reason)})
                    continue
                registered.append((workload, candidate, name))
            results["workloads"].append(
                {**asdict(workload), "bare_us_per_row": _bare_us_per_row(con, workload, config.repeats)}
            )
        con.execute(f"SET threads={workers}")
        warm_rows = min(config.rows, BATCH_ROWS * workers * 4)
        working = []
        for workload, candidate, name in registered:
            try:
                con.sql(workload.query(name, f"(SELECT * FROM data LIMIT {warm_rows})")).fetchall()
            except duckdb.Error as error:
                # One broken candidate must not cost the whole run: report it and go on.
                failure = f"failed on a warm-up query: {str(error).strip().splitlines()[0]}"
                print(f"{workload.name} on {candidate.key} {failure}", file=sys.stderr)
                skipped.append({"workload": workload.name, "candidate": candidate.key, "reason": failure})
            else:
                working.append((workload, candidate, name))
        registered = working

        dispatch_plan = _dispatch_plan(con, all_candidates, workers, config.dispatch_rows or config.rows, extra_pools)
        total = config.repeats * len(config.threads) * (len(registered) + len(dispatch_plan))
        bar = _progress(total, config.progress, f"bench {config.rows:,} rows")
        references: dict[str, Any] = {}
        try:
            for repeat in range(config.repeats):
                for threads in config.threads:
                    con.execute(f"SET threads={threads}")
                    for workload, candidate, name in registered:
                        bar.set_postfix_str(f"{workload.name} {candidate.key} threads={threads}")
                        before = udf_stats(con, name) if candidate.pooled else None
                        seconds, value = _timed(con, workload.query(name))
                        reference = references.setdefault(workload.name, value)
                        run = {
                            "workload": workload.name,
                            "candidate": candidate.key,
                            "threads": threads,
                            "repeat": repeat,
                            "seconds": seconds,
                            "rows": config.rows,
                            "matches_reference": _same(value, reference),
                        }
                        if before is not None:
                            # The UDF's own counters over this query: time in workers and waiting for one.
                            after = udf_stats(con, name)
                            run["worker_seconds"] = after["worker_seconds"] - before["worker_seconds"]
                            run["wait_seconds"] = after["wait_seconds"] - before["wait_seconds"]
                        results["runs"].append(run)
                        bar.update()
                    for entry in dispatch_plan:
                        bar.set_postfix_str(f"dispatch {entry['candidate']} threads={threads}")
                        seconds, _ = _timed(con, entry["query"])
                        results["runs"].append(
                            {
                                "workload": "dispatch",
                                "candidate": entry["candidate"],
                                "udf": entry["udf"],
                                "threads": threads,
                                "repeat": repeat,
                                "seconds": seconds,
                                "rows": entry["rows"],
                                "matches_reference": True,
                            }
                        )
                        bar.update()
        finally:
            bar.close()
    finally:
        con.close()
        for closable in [*all_candidates, *extra_pools]:
            closable.close()
    if config.small_tables:
        results["small_tables"] = run_small_tables(config)
    results["startup"] = [
        _measure_startup(c, workers) for c in all_candidates if c.measures_startup and c.unavailable_reason() is None
    ]
    results["machine"]["duration_seconds"] = time.time() - begun
    results["machine"]["other_processes_cores"] = other_load.cores()
    results["machine"]["loaded"] = results["machine"]["other_processes_cores"] > LOADED_SHARE * (os.cpu_count() or 1)
    summarize(results)
    return results


def run_small_tables(config: BenchConfig) -> list[dict[str, Any]]:
    """Time SMALL_TABLE over one-row-group tables: DuckDB's own UDF and each pooled backend, interleaved.

    Each run records the UDF's own counters over the query: batches, the
    slices they were fanned out into, and worker time / query time.
    """
    con = duckdb.connect()
    con.execute("SET enable_progress_bar=false")
    pools: dict[str, WorkerPool] = {backend: _new_pool(backend, config.workers) for backend in SMALL_TABLE_BACKENDS}
    repeats = max(config.repeats, SMALL_TABLE_MIN_REPEATS)
    runs: list[dict[str, Any]] = []
    try:
        for rows in SMALL_TABLE_ROWS:
            con.execute(f"CREATE TABLE small_{rows} AS SELECT i AS n FROM range({rows}) t(i)")
        names = {}
        for candidate in SMALL_TABLE_CANDIDATES:
            name = names[candidate] = f"small_table__{candidate.replace('-', '_')}"
            if candidate == REFERENCE:
                con.create_function(name, SMALL_TABLE.callable(), ["BIGINT"], "BIGINT")
            else:
                backend = cast(BackendName, candidate)  # every candidate but the reference is a backend
                create_function(
                    con, name, SMALL_TABLE.function, ["BIGINT"], "BIGINT", backend=backend, pool=pools[backend]
                )
                pools[backend].start_all()
                con.sql(SMALL_TABLE.query(name, f"(SELECT * FROM small_{SMALL_TABLE_ROWS[0]} LIMIT 8192)")).fetchall()
        bar = _progress(
            repeats * len(config.threads) * len(SMALL_TABLE_ROWS) * len(names),
            config.progress,
            "bench small tables",
        )
        references: dict[int, Any] = {}
        try:
            for repeat in range(repeats):
                for threads in config.threads:
                    con.execute(f"SET threads={threads}")
                    for rows in SMALL_TABLE_ROWS:
                        for candidate, name in names.items():
                            before = udf_stats(con, name) if candidate != REFERENCE else None
                            seconds, value = _timed(con, SMALL_TABLE.query(name, f"small_{rows}"))
                            run = {
                                "candidate": candidate,
                                "threads": threads,
                                "rows": rows,
                                "repeat": repeat,
                                "seconds": seconds,
                                "matches_reference": _same(value, references.setdefault(rows, value)),
                            }
                            if before is not None:
                                after = udf_stats(con, name)
                                for counter in ("batches", "slices", "fanned_batches", "worker_seconds"):
                                    run[counter] = after[counter] - before[counter]
                            runs.append(run)
                            bar.update()
        finally:
            bar.close()
    finally:
        con.close()
        for pool in pools.values():
            pool.close()
    return runs


def _small_table_summary(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Median seconds per (rows, threads, candidate), the speed-up over DuckDB's own, fan-out counters."""
    groups: dict[tuple[int, int, str], list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["rows"], run["threads"], run["candidate"]), []).append(run)
    summary = []
    for (rows, threads, candidate), group in sorted(groups.items()):
        median = statistics.median(run["seconds"] for run in group)
        reference = groups.get((rows, threads, REFERENCE))
        entry: dict[str, Any] = {
            "rows": rows,
            "threads": threads,
            "candidate": candidate,
            "seconds": _spread([run["seconds"] for run in group]),
            "speedup_vs_reference": statistics.median(r["seconds"] for r in reference) / median if reference else None,
            "all_results_match": all(run["matches_reference"] for run in group),
        }
        if "slices" in group[0]:
            entry["slices_per_batch"] = statistics.median(run["slices"] / max(run["batches"], 1) for run in group)
            entry["worker_parallelism"] = statistics.median(run["worker_seconds"] / run["seconds"] for run in group)
        summary.append(entry)
    return summary


def _dispatch_plan(
    con: duckdb.DuckDBPyConnection,
    all_candidates: Sequence[Candidate],
    workers: int,
    rows: int,
    extra_pools: list[Any],
) -> list[dict[str, Any]]:
    """Register the identity UDFs on BIGINT whose times give the per-batch dispatch overhead.

    Pools made here besides the candidates' own go to ``extra_pools``, for the caller to close.
    """
    _make_table(con, "numbers", rows)
    plan: list[dict[str, Any]] = []
    con.create_function("identity__duckdb_arrow", lambda x: x, ["BIGINT"], "BIGINT", type=PythonUDFType.ARROW)
    plan.append({"candidate": "duckdb-arrow", "udf": "identity (arrow)", "name": "identity__duckdb_arrow"})
    con.create_function("identity__duckdb_native", examples.identity, ["BIGINT"], "BIGINT")
    plan.append({"candidate": "duckdb-native", "udf": "identity (native)", "name": "identity__duckdb_native"})
    for candidate in all_candidates:
        if not isinstance(candidate, PooledBackend):
            continue
        variants: tuple[tuple[UdfTypeName, str], ...] = (("vectorized", "identity_batch"), ("native", "identity"))
        for udf_type, function in variants:
            name = f"identity__{candidate.key}_{udf_type}"
            if candidate.pool is None:
                candidate.pool = candidate.make_pool(workers)
            create_function(
                con,
                name,
                f"duckdb_subinterp.examples:{function}",
                ["BIGINT"],
                "BIGINT",
                type=udf_type,
                backend=candidate.backend,
                pool=candidate.pool,
            )
            plan.append({"candidate": candidate.key, "udf": f"identity ({udf_type})", "name": name})
        if candidate.backend == "subinterpreters":
            # The same UDF entering its interpreters through _interpreters.exec,
            # side by side with the compiled DirectCall that replaced it.
            exec_pool = InterpreterPool(workers, direct=False)
            extra_pools.append(exec_pool)
            name = f"identity__{candidate.key}_exec_vectorized"
            function = "duckdb_subinterp.examples:identity_batch"
            create_function(con, name, function, ["BIGINT"], "BIGINT", type="vectorized", pool=exec_pool)
            plan.append({"candidate": candidate.key, "udf": "identity (vectorized, _interpreters.exec)", "name": name})
    for entry in plan:
        entry["query"] = f"SELECT sum({entry['name']}(n)) FROM numbers"
        entry["rows"] = rows
        con.sql(
            f"SELECT sum({entry['name']}(n)) FROM (SELECT * FROM numbers LIMIT {BATCH_ROWS * workers * 4})"
        ).fetchall()
    return plan


def describe_machine(name: str) -> dict[str, Any]:
    """Say what the figures were taken on, and with which version of this package."""
    import psutil

    versions: dict[str, str | None] = {"duckdb_subinterp": __version__}
    for package in ("duckdb", "pyarrow", "numpy", "cloudpickle", "psutil"):
        try:
            versions[package] = __import__(package).__version__
        except ImportError:
            versions[package] = None
    return {
        "name": name,
        "cores": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "versions": versions,
        "commit": _package_commit(),
        "started_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "load_average_at_start": list(os.getloadavg()),
    }


def _package_commit() -> str | None:
    """Return the git commit of the package's source (with "-dirty" for local changes), or None if installed."""
    source = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=source, capture_output=True, text=True, timeout=10
        )
        if commit.returncode != 0:
            return None
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "."],
            cwd=source,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return commit.stdout.strip() + ("-dirty" if status.stdout.strip() else "")


class _OtherLoad:
    """Measure the CPU that processes other than this one and its descendants use during a run.

    A descendant's time counts as this run's while it lives (the live
    processes' own times) and once it ended (its reaper's children times:
    ours, or a live child's, as multiprocessing's forkserver reaps the
    ProcessPoolExecutor workers it forked).
    """

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.busy, self.own = self._cpu_seconds()

    @staticmethod
    def _cpu_seconds() -> tuple[float, float]:
        import psutil

        system = psutil.cpu_times()
        busy = sum(system) - system.idle - getattr(system, "iowait", 0.0)
        me = psutil.Process()
        times = me.cpu_times()
        own = times.user + times.system + times.children_user + times.children_system
        for child in me.children(recursive=True):
            try:
                child_times = child.cpu_times()
            except (psutil.Error, OSError):
                continue
            own += child_times.user + child_times.system + child_times.children_user + child_times.children_system
        return busy, own

    def cores(self) -> float:
        """Return how many cores the other processes kept busy on average since the start."""
        busy, own = self._cpu_seconds()
        elapsed = max(time.monotonic() - self.started, 1e-9)
        return max(0.0, (busy - self.busy) - (own - self.own)) / elapsed


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# ---------------------------------------------------------------------------
# Summaries: medians and spreads, speed-ups, efficiency, overhead, acceptance
# ---------------------------------------------------------------------------


def _spread(values: Sequence[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def summarize(results: dict[str, Any]) -> None:
    """Add ``summary``, ``dispatch_overhead`` and ``acceptance`` to ``results`` from its raw runs."""
    bare = {w["name"]: w["bare_us_per_row"] for w in results["workloads"]}
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for run in results["runs"]:
        if run["workload"] != "dispatch":
            groups.setdefault((run["workload"], run["candidate"], run["threads"]), []).append(run)
    medians = {key: statistics.median(r["seconds"] for r in runs) for key, runs in groups.items()}
    summary = []
    for (workload, candidate, threads), runs in groups.items():
        seconds = _spread([r["seconds"] for r in runs])
        rows = runs[0]["rows"]
        rows_per_second = rows / seconds["median"]
        # An arrow-only workload (numpy) has no native form: DuckDB's arrow UDF is its reference.
        reference = medians.get((workload, REFERENCE, threads), medians.get((workload, "duckdb-arrow", threads)))
        summary.append(
            {
                "workload": workload,
                "candidate": candidate,
                "threads": threads,
                "seconds": seconds,
                "rows_per_second": rows_per_second,
                "speedup_vs_reference": reference / seconds["median"] if reference else None,
                # The best N cores could do is N times the bare loop in one interpreter.
                "parallel_efficiency": rows_per_second / (threads * 1e6 / bare[workload]),
                # Our backends' counters: worker time / query time, the workers busy on average.
                "worker_parallelism": (
                    statistics.median(r["worker_seconds"] / r["seconds"] for r in runs)
                    if "worker_seconds" in runs[0]
                    else None
                ),
                "all_results_match": all(r["matches_reference"] for r in runs),
            }
        )
    results["summary"] = summary
    results["dispatch_overhead"] = _dispatch_overhead(results["runs"])
    if results.get("small_tables"):
        results["small_tables_summary"] = _small_table_summary(results["small_tables"])
    results["acceptance"] = _acceptance(results)


def _dispatch_overhead(runs: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str, int], list[float]] = {}
    rows: dict[int, int] = {}
    for run in runs:
        if run["workload"] == "dispatch":
            groups.setdefault((run["candidate"], run["udf"], run["threads"]), []).append(run["seconds"])
            rows[run["threads"]] = run["rows"]
    overhead = []
    for (candidate, udf, threads), seconds in groups.items():
        baseline = groups.get(("duckdb-arrow", "identity (arrow)", threads))
        if baseline is None:
            continue
        batches = math.ceil(rows[threads] / BATCH_ROWS)
        base = statistics.median(baseline)
        per_batch = [(s - base) / batches * 1e6 for s in seconds]
        overhead.append(
            {
                "candidate": candidate,
                "udf": udf,
                "threads": threads,
                "seconds": _spread(seconds),
                "us_per_batch": _spread([s / batches * 1e6 for s in seconds]),
                "us_per_batch_over_duckdb_arrow": _spread(per_batch),
            }
        )
    return overhead


def _acceptance(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Heavy UDFs at SET threads=2: subinterpreters against DuckDB's own create_function."""
    threads = 2 if 2 in results["config"]["threads"] else max(results["config"]["threads"])
    entries = {(s["workload"], s["candidate"], s["threads"]): s for s in results["summary"]}
    accepted = []
    for workload in results["workloads"]:
        if workload["cost"] != "heavy":
            continue
        ours = entries.get((workload["name"], "subinterpreters", threads))
        theirs = entries.get((workload["name"], REFERENCE, threads))
        if ours is None or theirs is None:
            continue
        ratio = theirs["seconds"]["median"] / ours["seconds"]["median"]
        accepted.append(
            {
                "workload": workload["name"],
                "threads": threads,
                "rows": results["config"]["rows"],
                "duckdb_seconds": theirs["seconds"]["median"],
                "subinterpreters_seconds": ours["seconds"]["median"],
                "ratio": ratio,
                "target": ACCEPTANCE_TARGET,
                "meets_target": ratio >= ACCEPTANCE_TARGET,
            }
        )
    for entry in results.get("small_tables_summary", []):
        # Small tables: one DuckDB thread sees the whole table; the target is met by fan-out.
        if entry["candidate"] != "subinterpreters" or entry["rows"] not in SMALL_TABLE_TARGETS:
            continue
        if entry["threads"] not in (1, threads) or entry["speedup_vs_reference"] is None:
            continue
        accepted.append(
            {
                "workload": (
                    f"small_table ({entry['rows']:,} rows, fan-out, pool of {max(results['config']['threads'])})"
                ),
                "threads": entry["threads"],
                "rows": entry["rows"],
                "duckdb_seconds": entry["seconds"]["median"] * entry["speedup_vs_reference"],
                "subinterpreters_seconds": entry["seconds"]["median"],
                "ratio": entry["speedup_vs_reference"],
                "target": SMALL_TABLE_TARGETS[entry["rows"]],
                "meets_target": entry["speedup_vs_reference"] >= SMALL_TABLE_TARGETS[entry["rows"]],
            }
        )
    return accepted


# ---------------------------------------------------------------------------
# Reports: JSON, Markdown, PNG
# ---------------------------------------------------------------------------


def _label(results: dict[str, Any], key: str) -> str:
    return next((c["label"] for c in results["candidates"] if c["key"] == key), key)


def _candidate_order(results: dict[str, Any]) -> list[str]:
    return [c["key"] for c in results["candidates"]]


def _busy(entry: dict[str, Any]) -> str:
    parallelism = entry.get("worker_parallelism")
    return "-" if parallelism is None else f"{parallelism:.2f}"


def _color(results: dict[str, Any], key: str) -> str:
    """Give each candidate the same colour in every panel and plot."""
    return f"C{_candidate_order(results).index(key) % 10}"


def markdown_report(results: dict[str, Any]) -> str:
    """Render the results as Markdown: machine, headline, acceptance, full tables."""
    machine = results["machine"]
    config = results["config"]
    versions = machine["versions"]
    top = max(config["threads"])
    lines = [
        f"# duckdb_subinterp benchmark: {machine['name']}",
        "",
        f"- Machine: {machine['cores']} cores, {machine['cpu_model']}, {machine['memory_gib']} GiB, "
        f"{machine['platform']}",
        f"- Python {machine['python']}; duckdb {versions['duckdb']}, pyarrow {versions['pyarrow']}, "
        f"numpy {versions['numpy']}",
        f"- {config['rows']:,} rows per query; SET threads in {config['threads']}; {config['repeats']} repeats, "
        "interleaved; median (min-max) shown",
        f"- Started {machine['started_at']}, took {machine.get('duration_seconds', 0) / 60:.1f} min",
    ]
    if "duckdb_subinterp" in versions:  # runs from before the package recorded itself lack these
        commit = machine.get("commit")
        lines.append(
            f"- duckdb_subinterp {versions['duckdb_subinterp']}"
            + (f", commit {commit}" if commit else " (installed, no git commit)")
        )
    if "other_processes_cores" in machine:
        load = machine["load_average_at_start"]
        lines.append(
            f"- Other processes used {machine['other_processes_cores']:.2f} of {machine['cores']} cores on average "
            f"during the run; load average at start {load[0]:.2f} (1 min), {load[1]:.2f} (5 min)"
        )
        if machine["loaded"]:
            lines += [
                "",
                f"**Warning: the machine was busy with other work** (more than {LOADED_SHARE:.0%} of its cores): "
                "timings and memory figures below are noisy; rerun on an idle machine before quoting them.",
            ]
    lines.append("")
    acceptance = results["acceptance"]
    if acceptance:
        lines += ["## Acceptance: heavy UDF, subinterpreters vs DuckDB's own create_function", ""]
        for entry in acceptance:
            verdict = "meets" if entry["meets_target"] else "MISSES"
            lines.append(
                f"- {entry['workload']}, {entry['rows']:,} rows, SET threads={entry['threads']}: "
                f"DuckDB {entry['duckdb_seconds']:.2f} s, subinterpreters {entry['subinterpreters_seconds']:.2f} s: "
                f"**{entry['ratio']:.2f}x** ({verdict} the {entry['target']}x target)"
            )
        lines.append("")
    lines += [headline_table(results), ""]
    lines += ["## Throughput (M rows/s) and speed-up vs DuckDB native, all thread counts", ""]
    lines += [
        "| workload | bare us/row | candidate | threads | seconds | M rows/s | speed-up | efficiency | workers busy "
        "| same result |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    bare = {w["name"]: w["bare_us_per_row"] for w in results["workloads"]}
    order = _candidate_order(results)
    for entry in sorted(results["summary"], key=lambda s: (s["workload"], order.index(s["candidate"]), s["threads"])):
        seconds = entry["seconds"]
        speedup = entry["speedup_vs_reference"]
        lines.append(
            f"| {entry['workload']} | {bare[entry['workload']]:.2f} | {_label(results, entry['candidate'])} | "
            f"{entry['threads']} | {seconds['median']:.3f} ({seconds['min']:.3f}-{seconds['max']:.3f}) | "
            f"{entry['rows_per_second'] / 1e6:.2f} | {'-' if speedup is None else f'{speedup:.2f}x'} | "
            f"{entry['parallel_efficiency']:.0%} | {_busy(entry)} | {'yes' if entry['all_results_match'] else 'NO'} |"
        )
    lines += [
        "",
        "Seconds: the median of the repeats, with the fastest and the slowest in brackets (the plots' error bars "
        "span the same range). "
        "Efficiency: achieved rows/s / (threads x rows/s of the bare UDF loop in one interpreter). "
        "Workers busy: our backends' counters (`udf_stats`), time in workers / query time.",
        "",
    ]
    if results.get("small_tables_summary"):
        lines += [
            f"## Small tables: one row group, `{SMALL_TABLE.function}` (pools of {max(results['config']['threads'])})",
            "",
            "A table smaller than DuckDB's row group reaches the UDF from one DuckDB thread; the pooled backends "
            "fan each costly batch out over idle workers. Seconds: the median of "
            f"{max(results['config']['repeats'], SMALL_TABLE_MIN_REPEATS)} repeats (fastest-slowest).",
            "",
            "| rows | threads | candidate | seconds | speed-up | slices per batch | workers busy | same result |",
            "|---:|---:|---|---:|---:|---:|---:|---|",
        ]
        for entry in results["small_tables_summary"]:
            seconds = entry["seconds"]
            speedup = entry["speedup_vs_reference"]
            slices = entry.get("slices_per_batch")
            busy = entry.get("worker_parallelism")
            lines.append(
                f"| {entry['rows']:,} | {entry['threads']} | {_label(results, entry['candidate'])} | "
                f"{seconds['median']:.3f} ({seconds['min']:.3f}-{seconds['max']:.3f}) | "
                f"{'-' if speedup is None else f'{speedup:.2f}x'} | {'-' if slices is None else f'{slices:.2f}'} | "
                f"{'-' if busy is None else f'{busy:.2f}'} | {'yes' if entry['all_results_match'] else 'NO'} |"
            )
        lines.append("")
    lines += [
        "## Dispatch overhead per 2048-row batch (identity UDF on BIGINT minus DuckDB's identity arrow UDF)",
        "",
        "| candidate | UDF | threads | us per batch, whole query | us per batch over DuckDB's identity arrow UDF |",
        "|---|---|---:|---:|---:|",
    ]
    for entry in sorted(
        results["dispatch_overhead"], key=lambda e: (order.index(e["candidate"]), e["udf"], e["threads"])
    ):
        total = entry["us_per_batch"]
        us = entry["us_per_batch_over_duckdb_arrow"]
        lines.append(
            f"| {_label(results, entry['candidate'])} | {entry['udf']} | {entry['threads']} | {total['median']:.1f} | "
            f"{us['median']:.1f} ({us['min']:.1f} to {us['max']:.1f}) |"
        )
    lines += [
        "",
        "A negative overhead means cheaper than DuckDB's own identity arrow UDF at that thread count: "
        "DuckDB's threads queue for the one GIL to call it.",
    ]
    lines += [
        "",
        f"## Start-up and memory per worker (pools of {top})",
        "",
        "| candidate | pool ready (s) | s per worker | USS per worker (MiB) | PSS per worker (MiB) |",
        "|---|---:|---:|---:|---:|",
    ]
    for entry in results["startup"]:
        lines.append(
            f"| {_label(results, entry['candidate'])} | {entry['pool_ready_seconds']:.3f} | "
            f"{entry['seconds_per_worker']:.3f} | {entry['uss_per_worker_mib']:.1f} | "
            f"{entry['pss_per_worker_mib']:.1f} |"
        )
    lines += [
        "",
        "Our pools start workers one after another (the times add up); the executor workarounds start them "
        "concurrently. Memory is the growth of this process and its child processes from before a pool starts to "
        "when all its workers are up, divided by the workers. USS (unique set size): memory that no other process "
        "shares, what closing the pool would give back. PSS (proportional set size): USS plus each shared page "
        "(libraries, copy-on-write memory) divided among the processes that share it; for interpreters, which live "
        "in this process, the two come out the same. One measurement each, not repeated: a figure near zero or below "
        "(memory freed meanwhile, by the garbage collector or other work) is within noise.",
    ]
    negative = [e for e in results["startup"] if e["uss_per_worker_mib"] < 0 or e["pss_per_worker_mib"] < 0]
    if negative:
        lines.append(
            "Below zero here: "
            + ", ".join(_label(results, e["candidate"]) for e in negative)
            + " (not a saving: noise; see above)."
        )
    missing = [c for c in results["candidates"] if not c["available"]]
    if missing or results["skipped"]:
        lines += ["", "## Not measured", ""]
        lines += [f"- {c['label']}: {c['reason']}" for c in missing]
        lines += [
            f"- {s['workload']} on {s['candidate']}: {s['reason']}"
            for s in results["skipped"]
            if s["candidate"] not in {c["key"] for c in missing}
        ]
    return "\n".join(lines) + "\n"


def headline_table(results: dict[str, Any]) -> str:
    """Markdown table: M rows/s (speed-up vs DuckDB native) per workload and candidate at the most threads."""
    top = max(results["config"]["threads"])
    entries = {(s["workload"], s["candidate"]): s for s in results["summary"] if s["threads"] == top}
    keys = [k for k in _candidate_order(results) if any(c == k for _, c in entries)]
    lines = [
        f"## Headline: M rows/s (speed-up vs DuckDB native) at SET threads={top}, {results['config']['rows']:,} rows",
        "",
        "| workload | bare us/row | " + " | ".join(_label(results, k) for k in keys) + " |",
        "|---|---:|" + "---:|" * len(keys),
    ]
    for workload in results["workloads"]:
        cells = []
        for key in keys:
            entry = entries.get((workload["name"], key))
            if entry is None:
                cells.append("n/a")
                continue
            speedup = entry["speedup_vs_reference"]
            cells.append(f"{entry['rows_per_second'] / 1e6:.2f}" + ("" if speedup is None else f" ({speedup:.2f}x)"))
        lines.append(f"| {workload['name']} | {workload['bare_us_per_row']:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def project_url() -> str:
    """Return the project's home page, as pyproject.toml's [project.urls] gives it to the installed metadata."""
    entries: list[str] = importlib.metadata.metadata("duckdb-subinterp").get_all("Project-URL") or []
    for entry in entries:
        label, _, url = entry.partition(",")
        if label.strip() == "Homepage":
            return url.strip()
    raise LookupError("the installed duckdb-subinterp metadata has no Homepage in Project-URL")


def _machine_line(results: dict[str, Any], tables: str) -> str:
    machine = results["machine"]
    versions = machine["versions"]
    return (
        f"Machine `{machine['name']}`: {machine['cores']} cores ({machine['cpu_model']}), Python {machine['python']}, "
        f"duckdb {versions['duckdb']}, pyarrow {versions['pyarrow']}; {results['config']['repeats']} repeats, "
        f"median shown; {tables}."
    )


def _acceptance_lines(results: dict[str, Any]) -> list[str]:
    return [
        f"- **{entry['ratio']:.2f}x**: {entry['workload']} on {entry['rows']:,} rows "
        f"at SET threads={entry['threads']}, "
        f"subinterpreters {entry['subinterpreters_seconds']:.2f} s vs DuckDB's create_function "
        f"{entry['duckdb_seconds']:.2f} s (target {entry['target']}x: {_verdict(entry)})"
        for entry in results["acceptance"]
    ]


def readme_section(results: dict[str, Any], results_dir: str) -> str:
    """Render the README's benchmark block for one committed run: the headline figures (tests check the JSON).

    Links are absolute, to the repository: the README is also the package's page on PyPI.
    """
    tables = (
        f"every workload and backend on [the benchmarks page]({project_url()}/blob/main/docs/benchmarks.md), "
        f"full tables in [{results_dir}/results.md]({project_url()}/blob/main/{results_dir}/results.md)"
    )
    lines = [f"<!-- bench:{results['machine']['name']} -->", _machine_line(results, tables), ""]
    lines += [*_acceptance_lines(results), "<!-- /bench -->"]
    return "\n".join(lines)


def docs_section(results: dict[str, Any], results_dir: str) -> str:
    """Render the docs' benchmark block for one committed run: headline, every workload, dispatch overhead, plots.

    The committed results sit outside the docs folder, so links to them are absolute, to the repository.
    """
    tree, raw = f"{project_url()}/blob/main/{results_dir}", f"{project_url()}/raw/main/{results_dir}"
    tables = f"full tables in [{results_dir}/results.md]({tree}/results.md)"
    lines = [f"<!-- bench:{results['machine']['name']} -->", _machine_line(results, tables), ""]
    lines += _acceptance_lines(results)
    lines += ["", headline_table(results).replace("## Headline: ", "**").replace(" rows\n", " rows**\n", 1), ""]
    lines += [dispatch_table(results), ""]
    lines += [
        f"![throughput vs threads]({raw}/throughput_vs_threads.png)",
        "",
        f"![speed-up vs cost per row]({raw}/speedup_vs_cost.png)",
        "<!-- /bench -->",
    ]
    return "\n".join(lines)


def dispatch_table(results: dict[str, Any]) -> str:
    """Markdown table: us per 2048-row batch over DuckDB's own identity arrow UDF, per UDF and thread count."""
    threads = sorted({entry["threads"] for entry in results["dispatch_overhead"]})
    order = _candidate_order(results)
    cells: dict[tuple[str, str], dict[int, str]] = {}
    for entry in sorted(results["dispatch_overhead"], key=lambda e: (order.index(e["candidate"]), e["udf"])):
        if entry["candidate"] == "duckdb-arrow":  # the baseline: zero by definition
            continue
        us = entry["us_per_batch_over_duckdb_arrow"]
        cells.setdefault((entry["candidate"], entry["udf"]), {})[entry["threads"]] = (
            f"{us['median']:.1f} ({us['min']:.1f} to {us['max']:.1f})"
        )
    lines = [
        f"**Dispatch overhead: us per {BATCH_ROWS}-row batch over DuckDB's own identity arrow UDF "
        "(identity UDF on BIGINT; median, min to max)**",
        "",
        "| candidate | UDF | " + " | ".join(f"SET threads={t}" for t in threads) + " |",
        "|---|---|" + "---:|" * len(threads),
    ]
    lines.extend(
        f"| {_label(results, candidate)} | {udf} | " + " | ".join(row.get(t, "n/a") for t in threads) + " |"
        for (candidate, udf), row in cells.items()
    )
    return "\n".join(lines)


def _verdict(entry: dict[str, Any]) -> str:
    # Said in words: 1.797 prints as 1.80, which alone would read as met.
    return "met" if entry["meets_target"] else f"missed, {entry['ratio']:.3f}x"


def plot_throughput(results: dict[str, Any], figure: Any = None) -> Any:
    """Draw M rows/s against SET threads, one panel per workload, one line per candidate."""
    import matplotlib.pyplot as plt

    workloads = [w["name"] for w in results["workloads"]]
    columns = min(4, len(workloads))
    rows = math.ceil(len(workloads) / columns)
    figure = figure or plt.figure(figsize=(4 * columns, 3.2 * rows))
    order = _candidate_order(results)
    for index, workload in enumerate(workloads):
        axes = figure.add_subplot(rows, columns, index + 1)
        for key in order:
            points = sorted(
                (s["threads"], s) for s in results["summary"] if s["workload"] == workload and s["candidate"] == key
            )
            if not points:
                continue
            threads = [t for t, _ in points]
            rate = [s["rows_per_second"] / 1e6 for _, s in points]
            # rows/s is inversely proportional to seconds: the slowest repeat gives the low end.
            low = [
                max(0.0, r - r * s["seconds"]["median"] / s["seconds"]["max"])
                for r, (_, s) in zip(rate, points, strict=True)
            ]
            high = [
                max(0.0, r * s["seconds"]["median"] / s["seconds"]["min"] - r)
                for r, (_, s) in zip(rate, points, strict=True)
            ]
            axes.errorbar(
                threads,
                rate,
                yerr=[low, high],
                marker="o",
                capsize=3,
                label=_label(results, key),
                color=_color(results, key),
            )
        axes.set_title(workload)
        axes.set_xlabel("SET threads")
        axes.set_ylabel("M rows/s")
        axes.set_xticks(sorted(results["config"]["threads"]))
        axes.set_ylim(bottom=0)
    legend: dict[str, Any] = {}
    for axes in figure.axes:
        for handle, label in zip(*axes.get_legend_handles_labels(), strict=True):
            legend.setdefault(label, handle)
    figure.legend(list(legend.values()), list(legend), loc="lower center", ncol=3, fontsize="small")
    figure.suptitle(
        f"Throughput vs threads ({results['machine']['name']}, {results['config']['rows']:,} rows): "
        f"median of {results['config']['repeats']} repeats, error bars from the slowest to the fastest"
    )
    figure.tight_layout(rect=(0, 0.1, 1, 0.95))
    return figure


def plot_speedup_vs_cost(results: dict[str, Any], figure: Any = None) -> Any:
    """Draw the speed-up over DuckDB native per workload, the workloads ordered by their cost per row.

    Grouped bars, one per candidate, at the most threads; no line joins the
    workloads, which are different UDFs. The numpy workload is left out: its
    cost is per batch, not per Python call.
    """
    import matplotlib.pyplot as plt

    top = max(results["config"]["threads"])
    workloads = sorted(
        (w for w in results["workloads"] if w["udf_type"] == "native"), key=lambda w: w["bare_us_per_row"]
    )
    entries = {
        (s["workload"], s["candidate"]): s
        for s in results["summary"]
        if s["threads"] == top and s["speedup_vs_reference"] is not None
    }
    keys = [k for k in _candidate_order(results) if k != REFERENCE and any(c == k for _, c in entries)]
    figure = figure or plt.figure(figsize=(max(8.0, 1.4 * len(workloads) + 3), 4.8))
    axes = figure.add_subplot(1, 1, 1)
    width = 0.8 / max(1, len(keys))
    for index, key in enumerate(keys):
        positions, heights = [], []
        for position, workload in enumerate(workloads):
            entry = entries.get((workload["name"], key))
            if entry is not None:
                positions.append(position - 0.4 + width * (index + 0.5))
                heights.append(entry["speedup_vs_reference"])
        axes.bar(positions, heights, width, label=_label(results, key), color=_color(results, key))
    axes.axhline(1.0, color="grey", linewidth=0.8, label="DuckDB create_function (native) = 1")
    axes.set_xticks(
        range(len(workloads)),
        [f"{w['name']}\n{w['bare_us_per_row']:.2f} us/row" for w in workloads],
        fontsize="small",
        rotation=30,
        ha="right",
        rotation_mode="anchor",
    )
    axes.set_xlabel("workload, cheapest to costliest (bare loop in one interpreter, us per row)")
    axes.set_ylabel(f"speed-up vs DuckDB native (SET threads={top})")
    axes.set_title(f"Speed-up by UDF cost ({results['machine']['name']}, {top} threads, median of the repeats)")
    axes.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.tight_layout()
    return figure


def plot_startup_memory(results: dict[str, Any], figure: Any = None) -> Any:
    """Draw start-up seconds and USS/PSS MiB per worker for each pooled candidate."""
    import matplotlib.pyplot as plt

    figure = figure or plt.figure(figsize=(10, 3.8))
    entries = results["startup"]
    labels = [_label(results, e["candidate"]) for e in entries]
    positions = range(len(entries))
    left = figure.add_subplot(1, 2, 1)
    left.barh(list(positions), [e["seconds_per_worker"] * 1000 for e in entries])
    left.set_yticks(list(positions), labels, fontsize="small")
    left.set_xlabel("start-up ms per worker")
    right = figure.add_subplot(1, 2, 2)
    width = 0.4
    right.barh([p - width / 2 for p in positions], [e["uss_per_worker_mib"] for e in entries], width, label="USS")
    right.barh([p + width / 2 for p in positions], [e["pss_per_worker_mib"] for e in entries], width, label="PSS")
    right.set_yticks(list(positions), [""] * len(entries))
    right.set_xlabel("MiB per worker (USS: unique to it; PSS: with its share of shared pages)")
    right.legend(fontsize="small")
    figure.suptitle(f"Start-up time and memory per worker ({results['machine']['name']})")
    figure.tight_layout()
    return figure


PLOTS = {
    "throughput_vs_threads.png": plot_throughput,
    "speedup_vs_cost.png": plot_speedup_vs_cost,
    "startup_memory.png": plot_startup_memory,
}


def write_reports(results: dict[str, Any], out_dir: Path) -> list[Path]:
    """Write results.json, results.md and the PNG plots (skipped, with a message, without matplotlib)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / "results.json", out_dir / "results.md"]
    written[0].write_text(json.dumps(results, indent=1) + "\n")
    written[1].write_text(markdown_report(results))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: plots skipped", file=sys.stderr)
        return written
    for filename, plot in PLOTS.items():
        figure = plot(results)
        figure.savefig(out_dir / filename, dpi=110)
        plt.close(figure)
        written.append(out_dir / filename)
    return written


def print_summary(results: dict[str, Any], out: Any = None) -> None:
    """Print the headline table and the acceptance ratio."""
    out = out or sys.stdout  # looked up now: sys.stdout may have been replaced since import
    print(headline_table(results), file=out)
    for entry in results["acceptance"]:
        print(
            f"\nheavy UDF {entry['workload']} on {entry['rows']:,} rows, SET threads={entry['threads']}: "
            f"subinterpreters vs DuckDB create_function = {entry['ratio']:.2f}x (target {entry['target']}x: "
            f"{_verdict(entry)})",
            file=out,
        )
    mismatched = [s for s in results["summary"] if not s["all_results_match"]]
    for entry in mismatched:
        print(f"RESULT MISMATCH: {entry['workload']} on {entry['candidate']}", file=out)
