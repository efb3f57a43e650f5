"""Long reliability runs: nothing grows over 200k batches and 4,000 connection cycles.

Run with ``bash .ci/env test -m slow`` (a few minutes on two cores). Each test
writes its figures to ``tests/results/reliability.json``.
"""

from __future__ import annotations

import _interpreters
import gc
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import duckdb
import psutil
import pyarrow as pa
import pytest
from udfs import reliability_udfs, udf_module

import duckdb_subinterp
from duckdb_subinterp import InterpreterPool

pytestmark = pytest.mark.slow

RESULTS = Path(__file__).parent / "results" / "reliability.json"
WAIT = 60  # seconds: bound of every wait on the pool
BATCHES = 200_000
BATCHES_PER_QUERY = 1_000
CYCLES = 4_000
WARM_UP_CYCLES = 200
RSS_TOLERANCE = 0.05


def record(section: str, figures: dict[str, Any]) -> None:
    """Merge one test's figures into the results file."""
    RESULTS.parent.mkdir(exist_ok=True)
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results[section] = figures
    RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")


def resources() -> dict[str, int]:
    """What a leak would grow: memory, interpreters, threads, file descriptors, shared memory, Arrow buffers."""
    gc.collect()
    process = psutil.Process()
    # This process's own shared-memory mappings (named, unlinked, or memfd regions);
    # /dev/shm as a whole also holds other processes' segments.
    maps = Path(f"/proc/{os.getpid()}/maps")
    lines = maps.read_text().splitlines() if maps.exists() else []
    shm = sum("/dev/shm/" in line or "/memfd:duckdb_subinterp" in line for line in lines)
    return {
        "rss_bytes": process.memory_info().rss,
        "interpreters": len(_interpreters.list_all()),
        "threads": process.num_threads(),
        "fds": process.num_fds(),
        "shm_segments": shm,
        "arrow_allocated_bytes": pa.total_allocated_bytes(),  # result buffers not yet freed
        "python_blocks": sys.getallocatedblocks(),  # recorded, not asserted: a few blocks of noise
    }


def assert_nothing_grew(before: dict[str, int], after: dict[str, int]) -> None:
    for key in ("interpreters", "threads", "fds", "shm_segments", "arrow_allocated_bytes"):
        assert after[key] <= before[key], f"{key} grew from {before[key]} to {after[key]}"
    assert after["rss_bytes"] <= before["rss_bytes"] * (1 + RSS_TOLERANCE), (
        f"RSS grew {after['rss_bytes'] / before['rss_bytes'] - 1:.1%} after warm-up"
    )


@pytest.mark.timeout(900)
def test_200k_batches_through_one_pool_keep_memory_and_resources_flat():
    pool = InterpreterPool(2, timeout=WAIT)
    con = duckdb.connect()
    con.execute("SET threads=2")
    rows = BATCHES_PER_QUERY * 2048
    con.execute(f"CREATE TABLE big AS SELECT i FROM range({rows}) t(i)")
    con.execute("CREATE TABLE small AS SELECT i, CASE WHEN i % 7 = 0 THEN NULL ELSE i END AS x FROM range(12000) t(i)")
    reference = duckdb.connect()
    reference.execute(
        "CREATE TABLE small AS SELECT i, CASE WHEN i % 7 = 0 THEN NULL ELSE i END AS x FROM range(12000) t(i)"
    )
    for target, backend, chosen in ((con, "subinterpreters", pool), (reference, "inline", None)):
        duckdb_subinterp.create_function(target, "label", reliability_udfs.as_text, backend=backend, pool=chosen)
        duckdb_subinterp.create_function(
            target,
            "nulls",
            reliability_udfs.fail_on_multiples_of_5000,
            exception_handling="return_null",
            backend=backend,
            pool=chosen,
        )
    duckdb_subinterp.create_function(
        con, "ident", udf_module.identity, ["BIGINT"], "BIGINT", type="vectorized", pool=pool
    )
    duckdb_subinterp.create_function(con, "picky", reliability_udfs.fail_on_multiples_of_5000, pool=pool)
    duckdb_subinterp.create_function(
        con, "slow", reliability_udfs.slow_batch, ["BIGINT"], "BIGINT", type="vectorized", pool=pool
    )
    checked = ["SELECT i, label(x) FROM small ORDER BY i", "SELECT i, nulls(x) FROM small ORDER BY i"]
    expected = {query: reference.sql(query).fetchall() for query in checked}
    total = rows * (rows - 1) // 2
    faults = {"udf_raised": 0, "interrupted": 0}

    def big_query() -> None:
        assert con.sql("SELECT sum(ident(i)) FROM big").fetchall() == [(total,)]

    def faults_and_checks() -> None:
        with pytest.raises(duckdb.InvalidInputException, match=r"refusing 4999\n\(raised in UDF 'picky'\)"):
            con.sql("SELECT sum(picky(x)) FROM small").fetchall()
        faults["udf_raised"] += 1
        timer = threading.Timer(0.05, con.interrupt)
        timer.start()
        with pytest.raises(duckdb.InterruptException):
            con.sql(f"SELECT sum(slow(i)) FROM range({100 * 2048}) t(i)").fetchall()
        timer.join(WAIT)
        faults["interrupted"] += 1
        for query in checked:
            assert con.sql(query).fetchall() == expected[query]

    for _ in range(10):  # warm-up: every path runs, caches and pools fill
        big_query()
        faults_and_checks()
    before = resources()
    batches_before = duckdb_subinterp.udf_stats(con, "ident")["batches"]
    rss_samples = [before["rss_bytes"]]
    queries = 0
    started = time.monotonic()
    while duckdb_subinterp.udf_stats(con, "ident")["batches"] - batches_before < BATCHES:
        big_query()
        queries += 1
        if queries % 10 == 0:
            faults_and_checks()
            queries += 2 + len(checked)
            rss_samples.append(psutil.Process().memory_info().rss)
    elapsed = time.monotonic() - started
    after = resources()
    batches = duckdb_subinterp.udf_stats(con, "ident")["batches"] - batches_before
    con.close()
    reference.close()
    pool.close()
    record(
        "long_run",
        {
            "batches": batches,
            "rows_per_batch": 2048,
            "queries": queries,
            "faults_survived": faults,
            "pool_size": pool.size,
            "duckdb_threads": 2,
            "seconds": round(elapsed, 1),
            "rss_mib_after_warm_up": round(before["rss_bytes"] / 2**20, 1),
            "rss_mib_at_end": round(after["rss_bytes"] / 2**20, 1),
            "rss_mib_max": round(max(rss_samples) / 2**20, 1),
            "rss_mib_every_10_queries": [round(sample / 2**20, 1) for sample in rss_samples],
            "rss_growth": round(after["rss_bytes"] / before["rss_bytes"] - 1, 4),
            "before": before,
            "after": after,
        },
    )
    assert batches >= BATCHES
    assert_nothing_grew(before, after)


@pytest.mark.timeout(900)
def test_4000_connect_register_query_close_cycles_do_not_grow():
    pool = InterpreterPool(2, timeout=WAIT)
    # Both workers now: a lazy pool may start its second only when a batch first finds use for it,
    # after the warm-up, and an interpreter's start is not what this measures.
    pool.start_all()
    expected = [(sum(range(1, 3001)) + 2 * sum(range(3000)),)]

    def cycle(index: int) -> None:
        con = duckdb.connect()
        duckdb_subinterp.create_function(con, "f", udf_module.add_one, pool=pool)
        duckdb_subinterp.create_function(con, "g", lambda x: x * 2, ["BIGINT"], "BIGINT", pool=pool)
        assert con.sql("SELECT sum(f(i)) + sum(g(i)) FROM range(3000) t(i)").fetchall() == expected
        con.close()

    for index in range(WARM_UP_CYCLES):
        cycle(index)
    before = resources()
    started = time.monotonic()
    for index in range(CYCLES):
        cycle(index)
    elapsed = time.monotonic() - started
    after = resources()
    specs_left = len(pool._specs)
    loaded_per_worker = [len(worker.loaded) for worker in pool._idle]
    pool.close()
    record(
        "connection_cycles",
        {
            "cycles": CYCLES,
            "udfs_registered": 2 * CYCLES,
            "seconds": round(elapsed, 1),
            "rss_mib_after_warm_up": round(before["rss_bytes"] / 2**20, 1),
            "rss_mib_at_end": round(after["rss_bytes"] / 2**20, 1),
            "rss_growth": round(after["rss_bytes"] / before["rss_bytes"] - 1, 4),
            "udfs_left_in_pool": specs_left,
            "before": before,
            "after": after,
        },
    )
    # Closed connections release their UDFs: the pool and its workers forget them.
    assert specs_left == 0
    assert all(loaded <= 2 for loaded in loaded_per_worker)  # the last cycle's, dropped on the next checkout
    assert_nothing_grew(before, after)
