"""Aggregates and table functions: ours on each backend against DuckDB's own create_function + list() / unnest.

Three cases, each timed side by side in one run, results checked equal:

- **aggregate**: ``--groups`` groups (2,000) of 100 DOUBLEs each, a pure-Python
  function of ~``--group-ms`` ms (2) per group. DuckDB's own: a UDF over
  ``list(x)``, ``GROUP BY k``. Ours: ``create_aggregate_function``.
- **few_groups**: the same with 40 groups of ~25 ms each: one batch of
  input for DuckDB's one call, cut into slices of a few groups over the
  workers (``--few-groups``, ``--few-group-ms``).
- **table function**: a generator used laterally over ``--rows`` input rows
  (100,000; one row group, so DuckDB scans it on one thread) of ~``--row-us``
  us (20) each, yielding three rows. DuckDB's own: a UDF returning a list of
  structs, unnested by a table macro. Ours: ``create_table_function``.

Each candidate runs ``--repeats`` times, interleaved with DuckDB's own; the
best run of each is compared. Ours is first warmed up on a few groups or rows
(two small queries): the dispatcher learns a UDF's cost from its first two
batches, and a batch fans out over idle workers only once that cost is known.
The cold time (the first full query after registration) is printed too::

    python bench/aggregates.py                       # SET threads=2, every local backend
    python bench/aggregates.py --backends subinterpreters --cases few_groups

Prints seconds, the ratio to DuckDB's own and whether the results are equal
(``duckdb-subinterp bench --targets aggregates`` also writes it to ``aggregates.txt``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # aggregate_udfs
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the package from this checkout

import duckdb
from aggregate_udfs import calibrate, make_aggregate, make_table_function, own_rows

import duckdb_subinterp

WORDS = {"word": "VARCHAR", "pos": "INTEGER"}


def timed(con: duckdb.DuckDBPyConnection, query: str) -> tuple[float, Any]:
    started = time.perf_counter()
    result = con.sql(query).fetchall()
    return time.perf_counter() - started, result


def compare(
    con: duckdb.DuckDBPyConnection, title: str, own_query: str, ours: dict[str, tuple[str, str]], repeats: int
) -> bool:
    """Time DuckDB's own query and each backend's (warm-up query, timed query), interleaved; print the ratios."""
    print(title)
    cold = {}
    for backend, (warm_up, query) in ours.items():
        seconds, _ = timed(con, query.replace("SELECT", "SELECT /* cold */", 1))
        cold[backend] = seconds
        for _ in range(2):
            timed(con, warm_up)
    own_times, own_result = [], None
    times: dict[str, list[float]] = {backend: [] for backend in ours}
    results: dict[str, Any] = {}
    for _ in range(repeats):
        seconds, own_result = timed(con, own_query)
        own_times.append(seconds)
        for backend, (_, query) in ours.items():
            seconds, results[backend] = timed(con, query)
            times[backend].append(seconds)
    own = min(own_times)
    print(f"  {'DuckDB create_function':<34} {own:7.2f} s   1.00x")
    all_equal = True
    for backend in ours:
        best = min(times[backend])
        same = results[backend] == own_result
        all_equal &= same
        print(
            f"  {'ours, backend=' + backend:<34} {best:7.2f} s  {own / best:5.2f}x  "
            f"{'results equal' if same else 'RESULTS DIFFER'}  (cold, first query: {cold[backend]:.2f} s, "
            f"{own / cold[backend]:.2f}x)"
        )
    return all_equal


def aggregate_case(
    con: duckdb.DuckDBPyConnection, table: str, groups: int, group_ms: float, backends: list[str], repeats: int
) -> bool:
    """Time ``groups`` groups of 100 values, ~``group_ms`` ms each: ours on each backend against DuckDB's own."""
    aggregate = make_aggregate(calibrate(group_ms / 1000))
    con.execute(
        f"CREATE TABLE {table} AS SELECT i % {groups} AS k, (i * 7919 % 100003) / 7.0 AS x "
        f"FROM range({groups * 100}) r(i)"
    )
    con.create_function(f"own_median_{table}", aggregate, ["DOUBLE[]"], "DOUBLE")
    ours = {}
    for backend in backends:
        name = f"median_{table}_{backend}"
        duckdb_subinterp.create_aggregate_function(con, name, aggregate, ["DOUBLE"], "DOUBLE", backend=backend)
        ours[backend] = (
            f"SELECT k, {name}(x) FROM {table} WHERE k < {min(groups, 40)} GROUP BY k",
            f"SELECT k, {name}(x) FROM {table} GROUP BY k ORDER BY k",
        )
    return compare(
        con,
        f"aggregate: {groups:,} groups of 100 values, ~{group_ms:g} ms of pure Python per group",
        f"SELECT k, own_median_{table}(list(x)) FROM {table} GROUP BY k ORDER BY k",
        ours,
        repeats,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=2000)
    parser.add_argument("--group-ms", type=float, default=2.0, help="pure-Python work per group, in ms")
    parser.add_argument("--rows", type=int, default=100_000, help="input rows of the lateral table function")
    parser.add_argument("--few-groups", type=int, default=40, help="groups of the few_groups case")
    parser.add_argument("--few-group-ms", type=float, default=25.0, help="pure-Python work per group there, in ms")
    parser.add_argument("--row-us", type=float, default=20.0, help="pure-Python work per input row, in us")
    parser.add_argument("--threads", type=int, default=2, help="DuckDB's SET threads")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backends", default="subinterpreters,processes,auto,inline")
    parser.add_argument("--cases", default="aggregate,few_groups,table", help="comma-separated: %(default)s")
    options = parser.parse_args(argv)
    backends = [name for name in options.backends.split(",") if name]
    cases = set(options.cases.split(","))

    if "ray" in backends:
        # Before any interpreter of ours starts: Ray's local cluster is started with subprocess's preexec_fn.
        import ray

        ray.init(num_cpus=options.threads, include_dashboard=False, log_to_driver=False)
    con = duckdb.connect()
    con.execute(f"SET threads={options.threads}")
    con.execute("SET enable_progress_bar=false")
    print(
        f"SET threads={options.threads}, Python {sys.version.split()[0]}, duckdb {duckdb.__version__}, "
        f"best of {options.repeats}; load average (1 min) at the start: {os.getloadavg()[0]:.2f}"
    )
    all_equal = True
    if "aggregate" in cases:
        all_equal &= aggregate_case(con, "t", options.groups, options.group_ms, backends, options.repeats)
    if "few_groups" in cases:
        all_equal &= aggregate_case(con, "few", options.few_groups, options.few_group_ms, backends, options.repeats)
    if "table" in cases:
        words = make_table_function(calibrate(options.row_us / 1e6))
        con.execute(
            "CREATE TABLE docs AS SELECT i AS id, 'w' || (i % 97) || ' x ' || i AS text "
            f"FROM range({options.rows}) r(i)"
        )
        fields = ", ".join(f"{name} {sql_type}" for name, sql_type in WORDS.items())
        con.create_function("own_words_rows", own_rows(words), ["VARCHAR"], f"STRUCT({fields})[]")
        con.execute("CREATE TEMP MACRO own_words(text) AS TABLE SELECT unnest(own_words_rows(text), max_depth := 2)")
        checksum = "SELECT count(*), sum(hash(d.id, w.word, w.pos)) FROM docs d, {}(d.text) w"
        ours = {}
        for backend in backends:
            name = f"words_{backend}"
            duckdb_subinterp.create_table_function(con, name, words, ["VARCHAR"], WORDS, backend=backend)
            ours[backend] = (checksum.format(name) + " WHERE d.id < 4096", checksum.format(name))
        all_equal &= compare(
            con,
            f"table function: laterally over {options.rows:,} input rows, ~{options.row_us:g} us of pure Python each, "
            "3 rows each",
            checksum.format("own_words"),
            ours,
            options.repeats,
        )
    con.close()
    # On a shared machine the ratios move with what else runs: a load near the core count halves ours.
    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.2f}")
    return 0 if all_equal else 1


if __name__ == "__main__":
    sys.exit(main())
