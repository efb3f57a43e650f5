"""How the UDF backends scale with DuckDB's thread count, measured side by side.

For each thread count (1, 2, 4, ... up to the CPU count) and each UDF, the same
query runs through DuckDB's own ``create_function`` and through every pooled
backend in ``duckdb_subinterp.BACKENDS``, each pool sized to the thread count,
interleaved and repeated; every result is checked against DuckDB's own.
Parallel efficiency is rows/s divided by (threads x rows/s of the bare UDF
loop in one interpreter), so 1.0 means every thread ran the UDF as fast as a
plain Python loop does.

Needs duckdb, pyarrow, numpy (DuckDB's arrow UDFs need it), cloudpickle and psutil, and
this repository (found from this file's location)::

    python bench/scaling.py --rows 2097152 --repeats 3 --out-dir bench/results/16-core

A run that would not finish in time can be split (``--workloads``,
``--threads``; ``--deadline`` skips a thread count that would end too late)
and the parts joined, on one kind of machine and one configuration::

    python bench/scaling.py --merge run1/scaling.json run2/scaling.json --out-dir bench/results/16-core
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
# Before importing the package: the interpreters it starts copy sys.path.
sys.path.insert(0, str(REPO))

import duckdb  # noqa: E402
import psutil  # noqa: E402
import pyarrow  # noqa: E402

import duckdb_subinterp  # noqa: E402
from duckdb_subinterp import examples  # noqa: E402

# DuckDB hands out a table scan one row group at a time. With its default
# 122,880 rows per group, 2M rows are 17 groups: 16 threads would run one
# group each and then wait for the 17th. 16,384-row groups (128 for 2^21 rows)
# split evenly over 1..16 threads, so the numbers show the backends, not the
# partitioning.
ROW_GROUP_SIZE = 16_384
DUCKDB_OWN = "duckdb"


@dataclass(frozen=True)
class Workload:
    """A UDF from ``duckdb_subinterp.examples`` and the column it reads."""

    name: str
    function: Callable[..., Any]
    column: str
    weight: str


WORKLOADS = {
    "collatz": Workload("collatz", examples.collatz, "x", "heavy"),
    "word_score": Workload("word_score", examples.word_score, "t", "heavy"),
    "slugify": Workload("slugify", examples.slugify, "t", "light"),
}

# x: 0..rows-1. t: mixed-case words and digits, 24-40 characters, every row different.
TABLE_SQL = """
CREATE TABLE data AS
SELECT i AS x,
       concat('Item ', i % 9973, ' of Batch-', i // 9973, ': ',
              repeat(chr(97 + (i % 26)::INTEGER), 1 + i % 13), ' Done') AS t
FROM range({rows}) r(i)
"""

# count, non-NULL count, extremes and an XOR of per-row hashes that tie each
# result to its input: equal checksums mean equal results row by row, short of
# a hash collision, without fetching 2M rows into Python.
QUERY = "SELECT count(*), count(y), min(y), max(y), bit_xor(hash(x, y)) FROM (SELECT x, {udf}({column}) AS y FROM data)"


def cpu_description() -> dict[str, Any]:
    """Describe the machine the numbers come from."""
    cpuinfo: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            cpuinfo.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    cpu_max = Path("/sys/fs/cgroup/cpu.max")
    smt = Path("/sys/devices/system/cpu/cpu0/topology/thread_siblings_list")
    return {
        "cpu_model": cpuinfo.get("model name", platform.processor()),
        "cpu_mhz_at_start": cpuinfo.get("cpu MHz"),
        "os_cpu_count": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "physical_cores": psutil.cpu_count(logical=False),
        "siblings_per_socket": cpuinfo.get("siblings"),
        "cores_per_socket": cpuinfo.get("cpu cores"),
        "cpu0_thread_siblings": smt.read_text().strip() if smt.exists() else None,
        "cgroup_cpu_max": cpu_max.read_text().strip() if cpu_max.exists() else None,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "duckdb": duckdb.__version__,
        "pyarrow": pyarrow.__version__,
        "load_average_at_start": os.getloadavg(),
    }


def timed_query(con: duckdb.DuckDBPyConnection, query: str) -> tuple[float, tuple[Any, ...]]:
    """Run ``query``; return the wall time and its one result row."""
    started = time.perf_counter()
    rows = con.sql(query).fetchall()
    return time.perf_counter() - started, tuple(rows[0])


def udf_rows(con: duckdb.DuckDBPyConnection, udf_name: str) -> int:
    """Return how many rows a pooled UDF has run so far."""
    return int(duckdb_subinterp.udf_stats(con, udf_name)["rows"])


def bare_loop(con: duckdb.DuckDBPyConnection, workload: Workload, sample_rows: int, repeats: int) -> dict[str, Any]:
    """Time the UDF over a random sample of the column in a plain loop: the per-core ceiling."""
    values = [row[0] for row in con.sql(f"SELECT {workload.column} FROM data").fetchall()]
    # A random sample, not a prefix or a stride: collatz's cost depends on x's residues.
    sample = random.Random(0).sample(values, min(sample_rows, len(values)))
    del values
    function = workload.function
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        for value in sample:
            function(value)
        seconds.append(time.perf_counter() - started)
    median = statistics.median(seconds)
    return {"rows": len(sample), "seconds": seconds, "rows_per_s": len(sample) / median}


def pooled_backends(selected: Sequence[str] | None) -> list[str]:
    """Return the backends that run UDFs on a pool, in BACKENDS order."""
    names = [name for name, backend in duckdb_subinterp.BACKENDS.items() if backend.pool_type is not None]
    if selected is not None:
        missing = sorted(set(selected) - set(names))
        if missing:
            raise SystemExit(f"--backends: {', '.join(missing)} not among the pooled backends {names}")
        names = [name for name in names if name in selected]
    return names


class Results:
    """Raw timings plus the summary the Markdown table shows, written after every step."""

    def __init__(self, out_dir: Path | None, config: dict[str, Any]) -> None:
        self.out_dir = out_dir
        self.data: dict[str, Any] = {"machine": cpu_description(), "config": config, "workloads": {}}

    def save(self) -> None:
        """Write scaling.json and scaling.md (partial results survive a killed run)."""
        if self.out_dir is None:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / "scaling.json").write_text(json.dumps(self.data, indent=1) + "\n")
        (self.out_dir / "scaling.md").write_text(markdown(self.data))


def summarize(cell: dict[str, Any], rows: int, bare_rows_per_s: float, own_rows_per_s: float) -> None:
    """Add median, spread, speed-up and efficiency to one (workload, threads, backend) cell."""
    seconds = cell["seconds"]
    median = statistics.median(seconds)
    rows_per_s = rows / median
    cell["summary"] = {
        "median_s": round(median, 3),
        "spread_pct": round(100 * (max(seconds) - min(seconds)) / median, 1),
        "rows_per_s": round(rows_per_s),
        "speedup_vs_duckdb": round(rows_per_s / own_rows_per_s, 2),
        "efficiency": round(rows_per_s / (cell["threads"] * bare_rows_per_s), 2),
        "bare_rows_per_s": round(bare_rows_per_s),
    }


def run_workload(
    con: duckdb.DuckDBPyConnection,
    workload: Workload,
    results: Results,
    *,
    rows: int,
    repeats: int,
    thread_counts: Sequence[int],
    backends: Sequence[str],
    bare_rows: int,
    deadline: float,
) -> bool:
    """Measure one workload at every thread count; return False if the deadline made it skip one."""
    print(f"\n== {workload.name} ({workload.weight}) on {rows:,} rows", flush=True)
    con.execute("SET threads=1")
    bare = bare_loop(con, workload, bare_rows, repeats)
    print(f"  bare loop, one interpreter: {bare['rows_per_s']:,.0f} rows/s", flush=True)
    entry: dict[str, Any] = {"weight": workload.weight, "column": workload.column, "bare_loop": bare, "cells": []}
    results.data["workloads"][workload.name] = entry
    con.create_function(f"own_{workload.name}", workload.function)
    reference: tuple[Any, ...] | None = None
    own_rows_per_s = bare["rows_per_s"]  # until measured: DuckDB's own runs on one core
    complete = True
    for threads in thread_counts:
        # Pooled backends at t threads: assume no better than t bare loops.
        expected = repeats * rows * (1 / own_rows_per_s + len(backends) / (threads * bare["rows_per_s"]))
        if time.monotonic() + expected > deadline:
            print(f"  threads={threads} skipped: it would take ~{expected:.0f} s, past the deadline", flush=True)
            complete = False
            continue
        con.execute(f"SET threads={threads}")
        udf_names = {DUCKDB_OWN: f"own_{workload.name}"}
        pools = {}
        cells: dict[str, dict[str, Any]] = {}
        try:
            for backend in backends:
                pool = pools[backend] = duckdb_subinterp.BACKENDS[backend].pool_type(threads)
                udf_names[backend] = f"{backend}_{workload.name}_{threads}"
                duckdb_subinterp.create_function(con, udf_names[backend], workload.function, backend=backend, pool=pool)
                # Start every worker before timing: the first 2 row groups per thread.
                started = time.perf_counter()
                timed_query(
                    con,
                    f"SELECT count({udf_names[backend]}({workload.column})) FROM data "
                    f"WHERE x < {2 * ROW_GROUP_SIZE * threads}",
                )
                print(
                    f"  threads={threads}: {backend} pool {pool!r} warmed in {time.perf_counter() - started:.2f} s",
                    flush=True,
                )
            for name in (DUCKDB_OWN, *backends):
                cells[name] = {"threads": threads, "backend": name, "seconds": [], "same_result": True}
                if name != DUCKDB_OWN:
                    cells[name]["workers_started"] = pools[name].started
                    cells[name]["udf_rows_per_query"] = []
                entry["cells"].append(cells[name])
            for repeat in range(repeats):
                for name in (DUCKDB_OWN, *backends):
                    pooled = name != DUCKDB_OWN
                    before = udf_rows(con, udf_names[name]) if pooled else 0
                    seconds, checksum = timed_query(con, QUERY.format(udf=udf_names[name], column=workload.column))
                    cell = cells[name]
                    cell["seconds"].append(seconds)
                    if pooled:
                        # The checksum query must call the UDF once per row, not once per aggregate.
                        cell["udf_rows_per_query"].append(udf_rows(con, udf_names[name]) - before)
                    if reference is None:
                        reference = checksum
                        results.data["workloads"][workload.name]["checksum"] = [str(v) for v in checksum]
                    if checksum != reference:
                        cell["same_result"] = False
                        print(f"  DIFFERENT RESULT: {name} threads={threads}: {checksum} != {reference}", flush=True)
                    print(
                        f"  threads={threads:>2} repeat {repeat + 1}/{repeats} {name:<16} {seconds:7.2f} s "
                        f"{rows / seconds:>12,.0f} rows/s",
                        flush=True,
                    )
        finally:
            for backend, pool in pools.items():
                duckdb_subinterp.remove_function(con, udf_names[backend])
                pool.close()
        own_rows_per_s = rows / statistics.median(cells[DUCKDB_OWN]["seconds"])
        for name in (DUCKDB_OWN, *backends):
            summarize(cells[name], rows, bare["rows_per_s"], own_rows_per_s)
        results.save()
    return complete


def markdown(data: dict[str, Any]) -> str:
    """Render the summary as Markdown tables, one per workload."""
    machine, config = data["machine"], data["config"]
    merged = "parts" in data
    lines = [
        "# Scaling past 2 cores",
        "",
        f"{machine['cpu_model']}, {machine['usable_cpus']} usable CPUs ({machine['physical_cores']} physical cores "
        f"reported), {machine['memory_gib']} GiB; Python {machine['python']}, duckdb {machine['duckdb']}, "
        f"pyarrow {machine['pyarrow']}, duckdb_subinterp at commit {config.get('package_commit')}. "
        f"{config['rows']:,} rows, {config['row_group_size']:,}-row row groups, "
        f"median of {config['repeats']} repeats per cell, backends interleaved. "
        "rows/s: median (spread = (max - min) / median). speed-up: against DuckDB's own `create_function` "
        "at the same thread count. efficiency: rows/s / (threads x rows/s of the bare UDF loop in one "
        "interpreter, measured in the same run).",
    ]
    if merged:
        lines[-1] += (
            f" The rows come from {len(data['parts'])} runs (`run`), each on a freshly lent machine of "
            "this description: compare rows/s within a row, and ratios across rows."
        )
    wrong = [cell for entry in data["workloads"].values() for cell in entry["cells"] if not cell["same_result"]]
    lines[-1] += (
        " **Some results differ from DuckDB's own.**"
        if wrong
        else " Every result equals DuckDB's own (row-by-row checksum)."
    )
    for name, entry in data["workloads"].items():
        cells = [cell for cell in entry["cells"] if "summary" in cell]
        if not cells:
            continue
        backends = list(dict.fromkeys(cell["backend"] for cell in cells))
        header = ["threads", "bare loop rows/s", "DuckDB's own rows/s", "eff."]
        for backend in backends[1:]:
            header += [f"{backend} rows/s", "speed-up", "eff."]
        if merged:
            header.insert(1, "run")
        lines += [
            "",
            f"## {name} ({entry['weight']}, {entry['column']} column)",
            "",
            "| " + " | ".join(header) + " |",
            "|" + "---:|" * len(header),
        ]
        by_threads: dict[int, dict[str, dict[str, Any]]] = {}
        for cell in cells:
            by_threads.setdefault(cell["threads"], {})[cell["backend"]] = cell
        for threads, row in sorted(by_threads.items()):
            own = row[DUCKDB_OWN]["summary"]
            out = [
                str(threads),
                f"{own['bare_rows_per_s']:,}",
                f"{own['rows_per_s']:,} (±{own['spread_pct']}%)",
                f"{own['efficiency']:.2f}",
            ]
            if merged:
                out.insert(1, str(row[DUCKDB_OWN]["run"]))
            for backend in backends[1:]:
                cell = row.get(backend)
                if cell is None:
                    out += ["", "", ""]
                    continue
                summary = cell["summary"]
                mark = "" if cell["same_result"] else " **WRONG RESULT**"
                out += [
                    f"{summary['rows_per_s']:,} (±{summary['spread_pct']}%){mark}",
                    f"{summary['speedup_vs_duckdb']:.2f}x",
                    f"{summary['efficiency']:.2f}",
                ]
            lines.append("| " + " | ".join(out) + " |")
    return "\n".join(lines) + "\n"


def package_commit() -> str | None:
    """Return the commit of the measured checkout, if it is a git checkout."""
    try:
        done = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


def merge(paths: Sequence[Path], out_dir: Path, commit: str | None) -> int:
    """Join runs made on one kind of machine with one configuration (but any thread counts) into one result."""
    parts = [json.loads(path.read_text()) for path in paths]
    first = parts[0]
    same_machine = ("cpu_model", "usable_cpus", "python", "duckdb", "pyarrow")

    def comparable(config: dict[str, Any]) -> dict[str, Any]:
        return {key: value for key, value in config.items() if key != "thread_counts"}

    for path, part in zip(paths[1:], parts[1:], strict=True):
        machine_differs = any(part["machine"][key] != first["machine"][key] for key in same_machine)
        if machine_differs or comparable(part["config"]) != comparable(first["config"]):
            raise SystemExit(f"--merge: {path} was measured on another machine or configuration than {paths[0]}")
    config = dict(first["config"])
    config["thread_counts"] = sorted({t for part in parts for t in part["config"]["thread_counts"]})
    if commit is not None:
        config["package_commit"] = commit
    merged: dict[str, Any] = {"machine": first["machine"], "config": config, "workloads": {}, "parts": []}
    for number, (path, part) in enumerate(zip(paths, parts, strict=True), start=1):
        for name, entry in part["workloads"].items():
            target = merged["workloads"].setdefault(
                name,
                {
                    "weight": entry["weight"],
                    "column": entry["column"],
                    "checksum": entry["checksum"],
                    "bare_loops": [],
                    "cells": [],
                },
            )
            if entry["checksum"] != target["checksum"]:
                raise SystemExit(f"--merge: {path}: {name}'s result differs from the one in an earlier run")
            target["bare_loops"].append({"run": number, **entry["bare_loop"]})
            for cell in entry["cells"]:
                cell = {"run": number, **cell}
                cell["summary"].setdefault("bare_rows_per_s", round(entry["bare_loop"]["rows_per_s"]))
                target["cells"].append(cell)
        merged["parts"].append(
            {
                "run": number,
                "file": f"{path.parent.name}/{path.name}",
                "workloads": list(part["workloads"]),
                "thread_counts": part["config"]["thread_counts"],
                "machine": part["machine"],
            }
        )
    measured = {
        name: sorted({cell["threads"] for cell in entry["cells"]}) for name, entry in merged["workloads"].items()
    }
    merged["thread_counts_measured"] = measured
    merged["complete"] = all(threads == config["thread_counts"] for threads in measured.values())
    merged["all_results_equal_duckdb"] = all(part["all_results_equal_duckdb"] for part in parts)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "scaling.json").write_text(json.dumps(merged, indent=1) + "\n")
    (out_dir / "scaling.md").write_text(markdown(merged))
    print(markdown(merged))
    return 0 if merged["all_results_equal_duckdb"] else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Parse options, build the table, measure every workload."""
    cpus = len(os.sched_getaffinity(0))
    default_threads = [t for t in (1, 2, 4, 8, 16, 32, 64) if t <= cpus]
    if cpus not in default_threads:
        default_threads.append(cpus)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2**21)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=default_threads)
    parser.add_argument("--workloads", nargs="+", choices=sorted(WORKLOADS), default=["collatz", "word_score"])
    parser.add_argument("--backends", nargs="+", default=None, help="pooled backends to run (default: all)")
    parser.add_argument("--bare-rows", type=int, default=2**18, help="sample size of the bare-loop baseline")
    parser.add_argument("--out-dir", type=Path, default=None, help="write scaling.json and scaling.md here")
    parser.add_argument(
        "--deadline", type=float, default=3600.0, help="seconds from start; skip a thread count that would end after it"
    )
    parser.add_argument("--merge", type=Path, nargs="+", help="join these scaling.json files into --out-dir; no run")
    parser.add_argument("--package-commit", help="with --merge: the commit the runs measured, if they had no git")
    options = parser.parse_args(argv)
    if options.merge:
        if options.out_dir is None:
            parser.error("--merge needs --out-dir")
        return merge(options.merge, options.out_dir, options.package_commit)
    deadline = time.monotonic() + options.deadline
    backends = pooled_backends(options.backends)
    config = {
        "rows": options.rows,
        "repeats": options.repeats,
        "thread_counts": options.threads,
        "row_group_size": ROW_GROUP_SIZE,
        "backends": [DUCKDB_OWN, *backends],
        "bare_loop_sample_rows": options.bare_rows,
        "query": QUERY,
        "package_commit": package_commit(),
    }
    results = Results(options.out_dir, config)
    print(json.dumps(results.data["machine"]), flush=True)
    complete = True
    with tempfile.TemporaryDirectory(prefix="duckdb_subinterp_scaling_") as scratch:
        con = duckdb.connect()
        # An in-memory database ignores ROW_GROUP_SIZE; a file one honours it (and stays cached).
        con.execute(f"ATTACH '{Path(scratch) / 'scaling.duckdb'}' AS bench (ROW_GROUP_SIZE {ROW_GROUP_SIZE})")
        con.execute("USE bench")
        con.execute("SET enable_progress_bar=false")
        con.execute(TABLE_SQL.format(rows=options.rows))
        for name in options.workloads:
            complete = (
                run_workload(
                    con,
                    WORKLOADS[name],
                    results,
                    rows=options.rows,
                    repeats=options.repeats,
                    thread_counts=options.threads,
                    backends=backends,
                    bare_rows=options.bare_rows,
                    deadline=deadline,
                )
                and complete
            )
        con.close()
    results.data["complete"] = complete
    results.data["machine"]["load_average_at_end"] = os.getloadavg()
    wrong = [cell for entry in results.data["workloads"].values() for cell in entry["cells"] if not cell["same_result"]]
    results.data["all_results_equal_duckdb"] = not wrong
    results.save()
    print("\n" + markdown(results.data), flush=True)
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
