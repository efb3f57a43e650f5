"""backend="ray" beside "processes" and DuckDB's own UDF, side by side, on a local Ray cluster.

Starts a local cluster (``ray.init(num_cpus=N, ...)``, before any
subinterpreter exists in this process: CPython 3.13.0 aborts children that
``subprocess`` starts with ``preexec_fn`` once one does, and Ray starts its
local processes that way), then times, interleaved, with every result
checked against DuckDB's own:

- heavy_bigint (``examples.collatz``, ~7 us/row) over ``--rows`` rows;
- a ~50 us/row UDF (``examples.collatz_septet``) over ``--heavy-rows`` rows;
- the per-batch overhead: a vectorized identity UDF on BIGINT minus DuckDB's
  own identity arrow UDF, per 2048-row batch.

::

    python bench/ray_bench.py                      # 2 actors, SET threads=2, 3 repeats
    python bench/ray_bench.py --rows 2000000 --heavy-rows 200000 --repeats 3 > bench/results/NAME/ray.txt

Prints the medians and the ratios; writes nothing else.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--actors", type=int, default=2, help="actors (and CPUs of the local cluster)")
    parser.add_argument("--threads", type=int, default=2, help="DuckDB's SET threads")
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the heavy_bigint table")
    parser.add_argument("--heavy-rows", type=int, default=100_000, help="rows of the ~50 us/row table")
    parser.add_argument("--repeats", type=int, default=3)
    options = parser.parse_args(argv)

    import ray

    started = time.perf_counter()
    ray.init(num_cpus=options.actors, object_store_memory=200 * 1024**2, include_dashboard=False, log_to_driver=False)
    cluster_seconds = time.perf_counter() - started
    import duckdb

    import duckdb_subinterp
    from duckdb_subinterp import examples

    print(
        f"local Ray cluster of {options.actors} CPUs (ray {ray.__version__}, started in {cluster_seconds:.1f} s), "
        f"SET threads={options.threads}, {options.repeats} repeats interleaved, Python {sys.version.split()[0]}, "
        f"duckdb {duckdb.__version__}"
    )
    con = duckdb.connect()
    con.execute(f"SET threads={options.threads}")
    con.execute("SET enable_progress_bar=false")
    con.execute(f"CREATE TABLE bigints AS SELECT i AS n FROM range({options.rows}) t(i)")
    con.execute(f"CREATE TABLE heavy AS SELECT i AS n FROM range({options.heavy_rows}) t(i)")
    pools = {"processes": duckdb_subinterp.ProcessPool(options.actors), "ray": duckdb_subinterp.RayPool(options.actors)}
    workloads = {"heavy_bigint": (examples.collatz, "bigints"), "collatz_septet": (examples.collatz_septet, "heavy")}
    try:
        for workload, (function, _) in workloads.items():
            con.create_function(f"{workload}__duckdb", function)
            for backend, pool in pools.items():
                duckdb_subinterp.create_function(con, f"{workload}__{backend}", function, backend=backend, pool=pool)
        con.create_function("identity__duckdb", lambda x: x, ["BIGINT"], "BIGINT", type="arrow")
        for backend, pool in pools.items():
            duckdb_subinterp.create_function(
                con,
                f"identity__{backend}",
                examples.identity_batch,
                ["BIGINT"],
                "BIGINT",
                type="vectorized",
                backend=backend,
                pool=pool,
            )
            pool.start_all()
        for backend in pools:  # warm: every actor has loaded every UDF
            for workload, (_, table) in workloads.items():
                con.sql(f"SELECT sum({workload}__{backend}(n)) FROM (SELECT * FROM {table} LIMIT 20000)").fetchall()

        seconds: dict[tuple[str, str], list[float]] = {}
        results: dict[tuple[str, str], object] = {}
        candidates = ["duckdb", *pools]
        for _ in range(options.repeats):
            for workload, (_, table) in workloads.items():
                for candidate in candidates:
                    query = f"SELECT sum({workload}__{candidate}(n)) FROM {table}"
                    began = time.perf_counter()
                    results[workload, candidate] = con.sql(query).fetchall()
                    seconds.setdefault((workload, candidate), []).append(time.perf_counter() - began)
            for candidate in candidates:
                began = time.perf_counter()
                con.sql(f"SELECT sum(identity__{candidate}(n)) FROM bigints").fetchall()
                seconds.setdefault(("identity", candidate), []).append(time.perf_counter() - began)

        batches = options.rows / 2048
        for workload, (function, _) in workloads.items():
            rows = options.rows if workload == "heavy_bigint" else options.heavy_rows
            reference = statistics.median(seconds[workload, "duckdb"])
            print(f"\n{workload} ({function.__doc__.split(':')[0]}), {rows:,} rows:")
            for candidate in candidates:
                median = statistics.median(seconds[workload, candidate])
                same = results[workload, candidate] == results[workload, "duckdb"]
                print(
                    f"  {candidate:<10} {median:8.2f} s  {rows / median:12,.0f} rows/s  {reference / median:5.2f}x"
                    f"  (min {min(seconds[workload, candidate]):.2f}, max {max(seconds[workload, candidate]):.2f})"
                    f"  same result: {'yes' if same else 'NO'}"
                )
        identity = statistics.median(seconds["identity", "duckdb"])
        print(f"\nper-batch overhead over DuckDB's identity arrow UDF ({options.rows:,} rows, {batches:,.0f} batches):")
        for backend in pools:
            extra = (statistics.median(seconds["identity", backend]) - identity) / batches * options.threads
            print(f"  {backend:<10} {extra * 1e6:8.0f} us per batch (per DuckDB thread)")
    finally:
        con.close()
        for pool in pools.values():
            pool.close()
        ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
