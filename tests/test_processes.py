"""The processes backend: arrow UDFs with numpy, per-worker state, worker crashes, shared-memory hygiene."""

from __future__ import annotations

import os
import re
import textwrap
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from support.process_helpers import alive, mapped_regions, our_segments
from support.script_helper import run_python
from udfs import numpy_udfs, udf_module

import duckdb_subinterp
from duckdb_subinterp import BrokenPoolError, PoolTimeoutError, WorkerDiedError
from duckdb_subinterp._backends.processes.pool import ProcessPool
from duckdb_subinterp._backends.processes.shared_memory import Region as _Region
from duckdb_subinterp._engine.arrow import arrow_type_of
from duckdb_subinterp._registration.api import _dispatcher


@pytest.fixture(scope="module")
def pool() -> Iterator[ProcessPool]:
    with ProcessPool(2, timeout=60) as shared:
        yield shared


# ---------------------------------------------------------------------------
# type="arrow": the same results as DuckDB's own arrow UDFs
# ---------------------------------------------------------------------------

ARROW_CASES = [
    ("root", numpy_udfs.root_arrow, ["DOUBLE"], "DOUBLE", "CASE WHEN i % 7 = 0 THEN NULL ELSE i / 3 END"),
    ("labels", numpy_udfs.labels_arrow, ["BIGINT"], "VARCHAR", "CASE WHEN i % 7 = 0 THEN NULL ELSE i END"),
    ("table", numpy_udfs.table_arrow, ["INTEGER"], "INTEGER", "CASE WHEN i % 7 = 0 THEN NULL ELSE i::INTEGER END"),
    ("by-value", lambda xs: xs.to_numpy() * 2, ["BIGINT"], "DOUBLE", "CASE WHEN i % 7 = 0 THEN NULL ELSE i END"),
]


@pytest.mark.parametrize("null_handling", ["default", "special"])
@pytest.mark.parametrize(
    ("name", "function", "parameters", "return_type", "expression"), ARROW_CASES, ids=[case[0] for case in ARROW_CASES]
)
def test_arrow_udf_matches_duckdbs_arrow_udf(
    con, pool, name, function, parameters, return_type, expression, null_handling
):
    if null_handling == "special" and name in ("root", "table", "by-value"):
        expression = expression.replace("NULL", "1")  # these functions do not handle NULL themselves
    con.execute(f"CREATE TABLE t AS SELECT i, ({expression})::{parameters[0]} AS x FROM range(5000) r(i)")
    options = {"type": "arrow", "null_handling": null_handling}
    con.create_function("reference", function, parameters, return_type, **options)
    duckdb_subinterp.create_function(
        con, "mine", function, parameters, return_type, backend="processes", pool=pool, **options
    )
    rows = con.sql("SELECT reference(x), mine(x) FROM t ORDER BY i").fetchall()
    assert [row[0] for row in rows] == [row[1] for row in rows]
    assert any(row[0] is not None for row in rows)


def test_arrow_udf_with_two_arguments(con, pool):
    con.create_function("reference", numpy_udfs.scaled_arrow, ["DOUBLE", "DOUBLE"], "DOUBLE", type="arrow")
    duckdb_subinterp.create_function(
        con,
        "mine",
        numpy_udfs.scaled_arrow,
        ["DOUBLE", "DOUBLE"],
        "DOUBLE",
        type="arrow",
        backend="processes",
        pool=pool,
    )
    query = (
        "SELECT reference(a, b), mine(a, b) FROM (SELECT CASE WHEN i % 5 = 0 THEN NULL ELSE i END::DOUBLE a, "
        "CASE WHEN i % 3 = 0 THEN NULL ELSE i / 2 END::DOUBLE b FROM range(4100) t(i))"
    )
    rows = con.sql(query).fetchall()
    assert [row[0] for row in rows] == [row[1] for row in rows]


def test_arrow_udf_errors_match_duckdbs(con, pool):
    def wrong_length(xs):
        return pa.array([1])

    def boom(xs):
        raise ValueError("no arrow today")

    duckdb_subinterp.create_function(
        con, "short", wrong_length, ["BIGINT"], "BIGINT", type="arrow", backend="processes", pool=pool
    )
    con.create_function("short_reference", wrong_length, ["BIGINT"], "BIGINT", type="arrow")
    for name in ("short", "short_reference"):  # DuckDB checks the result's length itself, for both
        with pytest.raises(
            duckdb.InvalidInputException,
            match=r"^Invalid Input Error: Returned pyarrow table should have 3 tuples, found 1$",
        ):
            con.sql(f"SELECT {name}(i) FROM range(3) t(i)").fetchall()
    duckdb_subinterp.create_function(
        con, "boom", boom, ["BIGINT"], "BIGINT", type="arrow", backend="processes", pool=pool
    )
    with pytest.raises(duckdb.InvalidInputException, match=r"UDF: ValueError: no arrow today\n.*UDF 'boom'"):
        con.sql("SELECT boom(i) FROM range(3) t(i)").fetchall()
    con.create_function("reference", boom, ["BIGINT"], "BIGINT", type="arrow", exception_handling="return_null")
    duckdb_subinterp.create_function(
        con,
        "quiet",
        boom,
        ["BIGINT"],
        "BIGINT",
        type="arrow",
        backend="processes",
        pool=pool,
        exception_handling="return_null",
    )
    assert con.sql("SELECT quiet(i), reference(i) FROM range(3) t(i)").fetchall() == [(None, None)] * 3


@pytest.mark.parametrize(("start", "length"), [(0, 2048), (3, 2000), (1021, 5)])
@pytest.mark.parametrize("sql_type", ["BOOLEAN", "INTEGER", "VARCHAR", "DATE"])
def test_arrow_udf_sliced_input_round_trips(pool, sql_type, start, length):
    values = {
        "BOOLEAN": [None if i % 7 == 0 else i % 3 == 0 for i in range(3000)],
        "INTEGER": [None if i % 7 == 0 else i * 13 - 20000 for i in range(3000)],
        "VARCHAR": [None if i % 7 == 0 else "ü" * (i % 4) + f"s{i}" for i in range(3000)],
        "DATE": [None if i % 7 == 0 else __import__("datetime").date(1990, 1, 1 + i % 28) for i in range(3000)],
    }[sql_type]
    con = duckdb.connect()
    duckdb_subinterp.create_function(
        con,
        "ident",
        udf_module.identity,
        [sql_type],
        sql_type,
        type="arrow",
        null_handling="special",
        backend="processes",
        pool=pool,
    )
    dispatcher = _dispatcher(con, "ident")
    arrow_type = arrow_type_of(sql_type)
    sliced = pa.array(values, type=arrow_type).slice(start, length)
    assert dispatcher(pa.chunked_array([sliced])).to_pylist() == values[start : start + length]
    con.close()


def test_numpy_module_loads_by_reference(con, pool):
    duckdb_subinterp.create_function(con, "root", "udfs.numpy_udfs:root", backend="processes", pool=pool)
    assert con.sql("SELECT root(16.0)").fetchall() == [(4.0,)]


# ---------------------------------------------------------------------------
# Per-worker state
# ---------------------------------------------------------------------------


def test_class_udf_state_is_per_worker(con):
    with ProcessPool(2, timeout=60) as pool:
        duckdb_subinterp.create_function(
            con,
            "tick",
            udf_module.BatchCounter,
            ["BIGINT"],
            "VARCHAR",
            type="vectorized",
            backend="processes",
            pool=pool,
        )
        rows = con.sql("SELECT DISTINCT tick(i) FROM range(20 * 2048) t(i)").fetchall()
        # A batch fanned out is several calls, one per slice.
        calls = duckdb_subinterp.udf_stats(con, "tick")["slices"]
    counts: dict[str, list[int]] = {}
    for (label,) in rows:
        pid, count = label.split(":")
        counts.setdefault(pid, []).append(int(count))
    # Each worker counted its own batches from 1: __init__ ran once per worker, never per batch.
    assert 1 <= len(counts) <= 2
    for seen in counts.values():
        assert sorted(seen) == list(range(1, len(seen) + 1))
    assert sum(len(seen) for seen in counts.values()) == calls >= 20


# ---------------------------------------------------------------------------
# Crashes: the query fails naming the UDF and the cause; the pool heals
# ---------------------------------------------------------------------------


CRASHES = [
    (udf_module.segfault, WorkerDiedError, r"killed by signal SIGSEGV \(11\): a crash in native code"),
    (udf_module.exit_three, WorkerDiedError, r"exited with code 3: .*os\._exit\(\)"),
    (udf_module.kill_self, WorkerDiedError, r"killed by signal SIGKILL \(9\): .*out-of-memory killer"),
    (udf_module.exhaust_memory, WorkerDiedError, r"ran out of memory \(MemoryError\)"),
]


@pytest.fixture(scope="module")
def crash_pool() -> Iterator[ProcessPool]:
    # A short timeout: a crash that hangs instead fails the test in seconds.
    with ProcessPool(1, timeout=20) as pool:
        yield pool


@pytest.mark.parametrize(("function", "error", "pattern"), CRASHES, ids=[case[0].__name__ for case in CRASHES])
def test_crash_matrix(con, crash_pool, function, error, pattern):
    before = mapped_regions()
    duckdb_subinterp.create_function(
        con, "fragile", function, ["BIGINT"], "BIGINT", backend="processes", pool=crash_pool
    )
    with pytest.raises(duckdb.InvalidInputException) as raised:
        con.sql("SELECT fragile(i) FROM range(10) t(i)").fetchall()
    message = str(raised.value)
    assert f"{error.__name__}: UDF 'fragile': worker process" in message
    assert re.search(pattern, message), message
    assert "while running a batch" in message
    assert mapped_regions() <= before  # the dead worker's regions are unmapped here too
    # The dead worker was replaced: the next query on the same pool works.
    duckdb_subinterp.create_function(con, "fine", udf_module.add_one, backend="processes", pool=crash_pool)
    assert con.sql("SELECT sum(fine(i)) FROM range(5000) t(i)").fetchall() == [(sum(range(1, 5001)),)]
    assert crash_pool.started == 1


def test_crash_while_loading_is_a_registration_error(con, crash_pool):
    pattern = r"(?s)UDF 'dies'.*exited with code 5.*while loading the UDF"
    with pytest.raises(duckdb_subinterp.UDFRegistrationError, match=pattern):
        duckdb_subinterp.create_function(
            con, "dies", udf_module.ExitOnInit, ["BIGINT"], "BIGINT", backend="processes", pool=crash_pool
        )
    duckdb_subinterp.create_function(con, "fine", udf_module.add_one, backend="processes", pool=crash_pool)
    assert con.sql("SELECT fine(1)").fetchall() == [(2,)]


def test_wedged_worker_is_killed_after_the_timeout(con):
    with ProcessPool(1, timeout=1) as pool:
        duckdb_subinterp.create_function(con, "stuck", udf_module.sleep_forever, backend="processes", pool=pool)
        with pytest.raises(duckdb.InvalidInputException, match=r"PoolTimeoutError: UDF 'stuck'.*did not answer"):
            con.sql("SELECT stuck(i) FROM range(1) t(i)").fetchall()
        duckdb_subinterp.create_function(con, "fine", udf_module.add_one, backend="processes", pool=pool)
        assert con.sql("SELECT fine(1)").fetchall() == [(2,)]


def test_closed_pool_fails_queries_cleanly(con):
    pool = ProcessPool(1)
    duckdb_subinterp.create_function(con, "f", udf_module.add_one, backend="processes", pool=pool)
    pool.close()
    with pytest.raises(duckdb.InvalidInputException, match=r"BrokenPoolError: UDF 'f': its pool was closed"):
        con.sql("SELECT f(i) FROM range(10) t(i)").fetchall()
    assert issubclass(WorkerDiedError, BrokenPoolError) and issubclass(PoolTimeoutError, BrokenPoolError)


# ---------------------------------------------------------------------------
# Shared memory: owner-only, and nothing left behind
# ---------------------------------------------------------------------------


def test_regions_have_no_name_and_are_unmapped_on_close():
    before = mapped_regions()
    region = _Region(1000)
    assert os.readlink(f"/proc/self/fd/{region.fd}").startswith("/memfd:duckdb_subinterp")
    assert mapped_regions() == before + 1
    region.close()
    assert mapped_regions() == before and region.fd == -1


def test_regions_without_memfd_are_unlinked_at_once(con, monkeypatch):
    """Where memfd_create is missing (macOS), a POSIX object is unlinked the moment it exists."""
    monkeypatch.delattr(os, "memfd_create")
    region = _Region(1000)
    assert os.fstat(region.fd).st_mode & 0o777 == 0o600
    assert "/dsi_" in os.readlink(f"/proc/self/fd/{region.fd}") and not our_segments()
    region.close()
    with ProcessPool(1) as pool:
        duckdb_subinterp.create_function(
            con, "widen", lambda s: s * 50, ["VARCHAR"], "VARCHAR", backend="processes", pool=pool
        )
        rows = con.sql("SELECT widen('ab' || i) FROM range(10000) t(i) ORDER BY i").fetchall()
        assert rows == [(f"ab{i}" * 50,) for i in range(10000)]
    assert not our_segments()


def test_no_segment_outlives_the_pool(con):
    before = mapped_regions()
    with ProcessPool(2) as pool:
        duckdb_subinterp.create_function(
            con, "widen", lambda s: s * 50, ["VARCHAR"], "VARCHAR", backend="processes", pool=pool
        )
        rows = con.sql("SELECT widen('ab' || i) FROM range(10000) t(i)").fetchall()
        assert len(rows) == 10000 and rows[0][0].startswith("ab")
        assert mapped_regions() > before
        pids = [worker.pid for worker in pool._idle]
    assert mapped_regions() == before
    assert not our_segments() and not alive(pids)


def test_parent_exit_leaves_no_process_no_segment_and_no_warning(tmp_path):
    script = textwrap.dedent(
        """
        import duckdb, duckdb_subinterp
        con = duckdb.connect()
        pool = duckdb_subinterp.ProcessPool(2)   # never closed: the exit must clean up
        duckdb_subinterp.create_function(con, "f", lambda x: x + 1, ["BIGINT"], "BIGINT",
                                         backend="processes", pool=pool)
        duckdb_subinterp.create_function(con, "g", lambda x: x + 1, ["BIGINT"], "BIGINT", backend="processes")
        assert con.sql("SELECT sum(f(i)), sum(g(i)) FROM range(50000) t(i)").fetchall()
        default = duckdb_subinterp.default_pool("processes")
        print(" ".join(str(worker.pid) for worker in [*pool._idle, *default._idle]))
        """
    )
    result = run_python("-W", "error", "-c", script, timeout=60, cwd=Path(__file__).parent.parent)
    assert result.returncode == 0, result.report()
    pids = [int(pid) for pid in result.stdout.split()]
    assert pids and not alive(pids, wait=5)
    assert not our_segments()
    assert "resource_tracker" not in result.stderr and "Warning" not in result.stderr, result.stderr


def test_default_pool_and_start_all():
    pool = duckdb_subinterp.default_pool("processes")
    assert isinstance(pool, ProcessPool)
    pool.start_all()
    assert pool.started == pool.size
    assert pool.start_all() == 0  # already started


# ---------------------------------------------------------------------------
# backend="auto"
# ---------------------------------------------------------------------------


def test_auto_uses_subinterpreters_when_the_module_loads_there(con):
    # No warning: pytest's filterwarnings=error would fail the test.
    duckdb_subinterp.create_function(con, "mine", udf_module.add_one, backend="auto")
    assert isinstance(_dispatcher(con, "mine").pool, duckdb_subinterp.InterpreterPool)
    assert con.sql("SELECT mine(41)").fetchall() == [(42,)]


def test_auto_falls_back_to_processes_with_one_warning_naming_the_module(con):
    with pytest.warns(duckdb_subinterp.BackendFallbackWarning) as caught:
        duckdb_subinterp.create_function(con, "root", "udfs.numpy_udfs:root", ["DOUBLE"], "DOUBLE", backend="auto")
    assert len(caught) == 1
    warning = caught[0]
    assert warning.filename == __file__  # points at the create_function call
    assert re.search(r"UDF 'root': module 'numpy.*' refuses .*backend='processes'", str(warning.message))
    assert warning.message.module.startswith("numpy") and warning.message.udf_name == "root"
    assert isinstance(_dispatcher(con, "root").pool, ProcessPool)
    con.create_function("reference", numpy_udfs.root, ["DOUBLE"], "DOUBLE")
    rows = con.sql("SELECT root(i::DOUBLE), reference(i::DOUBLE) FROM range(5000) t(i)").fetchall()
    assert all(mine == reference for mine, reference in rows)


def test_auto_runs_arrow_udfs_on_processes_without_warning(con):
    duckdb_subinterp.create_function(
        con, "root", numpy_udfs.root_arrow, ["DOUBLE"], "DOUBLE", type="arrow", backend="auto"
    )
    assert isinstance(_dispatcher(con, "root").pool, ProcessPool)
    assert con.sql("SELECT root(9.0)").fetchall() == [(3.0,)]


def test_auto_refuses_an_explicit_pool(con, pool):
    with pytest.raises(duckdb_subinterp.UDFRegistrationError, match=r"backend='auto' chooses the pool itself"):
        duckdb_subinterp.create_function(con, "f", udf_module.add_one, backend="auto", pool=pool)


# ---------------------------------------------------------------------------
# max_workers: a per-UDF cap on batches in flight, in the dispatcher
# ---------------------------------------------------------------------------


def _peak_concurrency(tmp_path: Path, backend: str, max_workers: int | None, wait: float) -> int:
    """Call the UDF's dispatcher from 4 threads at once (2 workers); return the most batches seen inside."""
    import threading

    counter = tmp_path / f"counter-{backend}-{max_workers}"
    counter.write_text(f"0 0 {wait}")
    pool_type = ProcessPool if backend == "processes" else duckdb_subinterp.InterpreterPool
    con = duckdb.connect()
    with pool_type(2, timeout=60) as pool:
        duckdb_subinterp.create_function(
            con,
            "probe",
            udf_module.probe_concurrency,
            ["VARCHAR"],
            "BIGINT",
            type="vectorized",
            backend=backend,
            pool=pool,
            max_workers=max_workers,
        )
        dispatcher = _dispatcher(con, "probe")
        column = pa.chunked_array([pa.array([str(counter)] * 10)])
        results: list[object] = []
        threads = [threading.Thread(target=lambda: results.append(dispatcher(column))) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert len(results) == 4 and not any(thread.is_alive() for thread in threads)
    con.close()
    inside, peak, _ = counter.read_text().split()
    assert inside == "0"
    return int(peak)


@pytest.mark.parametrize("backend", ["subinterpreters", "processes"])
def test_max_workers_caps_batches_in_flight(tmp_path, backend):
    # Without a cap two batches meet inside (each waits up to 10 s for the other)...
    assert _peak_concurrency(tmp_path, backend, None, wait=10) == 2
    # ...with max_workers=1 never, though the pool has two idle workers.
    assert _peak_concurrency(tmp_path, backend, 1, wait=0.2) == 1


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "2"])
def test_max_workers_must_be_a_positive_int(con, value):
    with pytest.raises(duckdb_subinterp.UDFRegistrationError, match=r"max_workers must be a positive int"):
        duckdb_subinterp.create_function(con, "f", udf_module.add_one, max_workers=value)


def test_a_pool_of_another_backend_names_the_backend_it_fits(con):
    with ProcessPool(1) as pool:  # never started: registration refuses it first
        fix = "pass an InterpreterPool, or backend='processes' for this pool"
        with pytest.raises(duckdb_subinterp.UDFRegistrationError, match=re.escape(fix)):
            duckdb_subinterp.create_function(con, "f", udf_module.add_one, pool=pool)


# ---------------------------------------------------------------------------
# Column trees: nested types cross the shared memory like flat ones
# ---------------------------------------------------------------------------

NESTED_CASES = [
    ("INTEGER[]", "CASE WHEN i % 5 = 0 THEN NULL ELSE [i::INTEGER, NULL, i::INTEGER + 1] END", udf_module.reverse_list),
    ("VARCHAR[][]", "CASE WHEN i % 5 = 0 THEN NULL ELSE [['a' || i], [], NULL] END", udf_module.append_z),
    (
        "STRUCT(a INTEGER, b VARCHAR)",
        "CASE WHEN i % 5 = 0 THEN NULL ELSE {'a': i::INTEGER, 'b': 's' || i} END",
        udf_module.bump_struct,
    ),
    ("MAP(VARCHAR, INTEGER)", "CASE WHEN i % 5 = 0 THEN NULL ELSE MAP {'k' || i: i::INTEGER} END", udf_module.identity),
    (
        "TIMESTAMPTZ",
        "CASE WHEN i % 5 = 0 THEN NULL ELSE TIMESTAMPTZ '2020-01-01 00:00:00+00' + i * INTERVAL 1 HOUR END",
        udf_module.identity,
    ),
]


@pytest.mark.parametrize(("sql_type", "expression", "function"), NESTED_CASES, ids=[case[0] for case in NESTED_CASES])
def test_nested_types_match_duckdb(con, pool, sql_type, expression, function):
    con.execute(f"CREATE TABLE t AS SELECT i, ({expression})::{sql_type} AS x FROM range(5000) r(i)")
    con.create_function("reference", function, [sql_type], sql_type)
    duckdb_subinterp.create_function(con, "mine", function, [sql_type], sql_type, backend="processes", pool=pool)
    rows = con.sql("SELECT reference(x), mine(x) FROM t ORDER BY i").fetchall()
    assert [row[0] for row in rows] == [row[1] for row in rows]
    assert any(row[0] is not None for row in rows)


ARROW_TYPES = [
    ("INTEGER[]", "[i::INTEGER, NULL, i::INTEGER + 1]"),
    ("INTEGER[2]", "[i::INTEGER, NULL]"),
    ("VARCHAR[][]", "[['a' || i], [], NULL]"),
    ("STRUCT(a INTEGER, b VARCHAR)", "{'a': i::INTEGER, 'b': 's' || i}"),
    ("MAP(VARCHAR, INTEGER)", "MAP {'k' || i: i::INTEGER}"),
    ("STRUCT(l INTEGER[], m MAP(VARCHAR, VARCHAR))", "{'l': [i::INTEGER], 'm': MAP {'x': 'y' || i}}"),
    ("DECIMAL(18,3)", "i / 7"),
    ("HUGEINT", "i::HUGEINT * 100000000000000000000"),
    ("UHUGEINT", "i::UHUGEINT * 100000000000000000000"),
    ("UUID", "uuid()"),
    ("TIMESTAMPTZ", "TIMESTAMPTZ '2020-01-01 00:00:00+00' + i * INTERVAL 1 HOUR"),
    ("ENUM('a', 'b')", "CASE WHEN i % 2 = 0 THEN 'a' ELSE 'b' END"),
    ("INTERVAL", "i * INTERVAL 1 SECOND"),
    ("TIME", "TIME '00:00:00' + i * INTERVAL 1 SECOND"),
]


@pytest.mark.parametrize("null_handling", ["default", "special"])
@pytest.mark.parametrize(("sql_type", "expression"), ARROW_TYPES, ids=[case[0] for case in ARROW_TYPES])
def test_arrow_udf_gets_and_returns_every_type_as_duckdb_does(con, pool, sql_type, expression, null_handling):
    con.execute(
        f"CREATE TABLE t AS SELECT i, CASE WHEN i % 5 = 0 THEN NULL ELSE ({expression}) END::{sql_type} AS x "
        "FROM range(3000) r(i)"
    )
    options = {"type": "arrow", "null_handling": null_handling}
    con.create_function("reference", udf_module.identity, [sql_type], sql_type, **options)
    con.create_function("reference_type", udf_module.type_names, [sql_type], "VARCHAR", **options)
    duckdb_subinterp.create_function(
        con, "mine", udf_module.identity, [sql_type], sql_type, backend="processes", pool=pool, **options
    )
    duckdb_subinterp.create_function(
        con, "mine_type", udf_module.type_names, [sql_type], "VARCHAR", backend="processes", pool=pool, **options
    )
    rows = con.sql("SELECT reference(x), mine(x), reference_type(x), mine_type(x) FROM t ORDER BY i").fetchall()
    assert [row[0] for row in rows] == [row[1] for row in rows]
    assert [row[2] for row in rows] == [row[3] for row in rows]  # the UDF sees DuckDB's Arrow types
    assert any(row[0] is not None for row in rows) and any(row[0] is None for row in rows)


def test_native_thread_pools_get_the_workers_share_of_the_cpus(con, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("MKL_NUM_THREADS", "7")  # set by the user: kept
    with ProcessPool(1) as pool:
        duckdb_subinterp.create_function(
            con, "env", udf_module.environment_variable, ["VARCHAR"], "VARCHAR", backend="processes", pool=pool
        )
        rows = con.sql("SELECT env('OMP_NUM_THREADS'), env('MKL_NUM_THREADS')").fetchall()
    assert rows == [(str(os.cpu_count() or 1), "7")]
