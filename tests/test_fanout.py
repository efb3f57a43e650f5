"""Fan-out: a costly batch runs in slices on idle workers, with exactly the results and errors of one batch."""

from __future__ import annotations

import threading
import time
from itertools import pairwise

import duckdb
import pytest
from udfs import udf_module

import duckdb_subinterp
from duckdb_subinterp._engine import dispatch as _dispatch
from duckdb_subinterp._engine import pool as pool_module
from duckdb_subinterp._engine.costs import CHECK, FanOut
from duckdb_subinterp._engine.fanout import Slices
from duckdb_subinterp._registration.api import _dispatcher


@pytest.fixture(params=["subinterpreters", "processes"])
def wide_pool(request):
    pool = (
        duckdb_subinterp.InterpreterPool(4) if request.param == "subinterpreters" else duckdb_subinterp.ProcessPool(3)
    )
    pool.start_all()
    yield request.param, pool
    pool.close()


@pytest.fixture(params=["subinterpreters", "processes"])
def lazy_pool(request):
    """A pool of 2 not started: registration starts one worker, fan-out the other."""
    pool = (
        duckdb_subinterp.InterpreterPool(2) if request.param == "subinterpreters" else duckdb_subinterp.ProcessPool(2)
    )
    yield request.param, pool
    pool.close()


@pytest.fixture
def always_fan_out(monkeypatch):
    monkeypatch.setattr(_dispatch.BatchDispatcher, "always_fan_out", True)


@pytest.fixture
def one_thread():
    con = duckdb.connect()
    con.execute("SET threads=1")  # one DuckDB thread: only fan-out puts the other workers to work
    yield con
    con.close()


def fanned(con, name):
    return duckdb_subinterp.udf_stats(con, name)["fanned_batches"]


@pytest.mark.parametrize(
    ("sql_type", "function", "expression"),
    [
        ("BIGINT", udf_module.add_one, "CASE WHEN i % 7 = 0 THEN NULL ELSE i END"),
        ("VARCHAR", udf_module.shout, "CASE WHEN i % 5 = 0 THEN NULL ELSE 'héllo ' || i END"),
        ("INTEGER[]", lambda xs: [x * 2 for x in xs if x is not None], "[i, NULL, i + 1]"),
        ("STRUCT(a BIGINT, b VARCHAR)", lambda s: {"a": s["a"] + 1, "b": s["b"]}, "{'a': i, 'b': 'x' || i}"),
    ],
    ids=["bigint", "varchar", "list", "struct"],
)
def test_fanned_out_results_equal_duckdbs(one_thread, wide_pool, always_fan_out, sql_type, function, expression):
    backend, pool = wide_pool
    con = one_thread
    con.execute(f"CREATE TABLE t AS SELECT i, ({expression})::{sql_type} AS x FROM range(10000) r(i)")
    con.create_function("reference", function, [sql_type], sql_type)
    duckdb_subinterp.create_function(con, "mine", function, [sql_type], sql_type, backend=backend, pool=pool)
    rows = con.sql("SELECT i, reference(x), mine(x) FROM t ORDER BY i").fetchall()
    assert [row[1] for row in rows] == [row[2] for row in rows]
    assert fanned(con, "mine") >= 4
    stats = duckdb_subinterp.udf_stats(con, "mine")
    assert stats["rows"] == 10000 and stats["slices"] > stats["batches"]


def test_the_first_failing_row_wins_as_without_fan_out(one_thread, wide_pool, always_fan_out):
    backend, pool = wide_pool
    con = one_thread
    con.create_function("reference", udf_module.fail_on_1000_and_1900)
    duckdb_subinterp.create_function(con, "mine", udf_module.fail_on_1000_and_1900, backend=backend, pool=pool)
    for name in ("reference", "mine"):
        # Both failing rows lie in the first batch, in different slices; row 1000 comes first.
        with pytest.raises(duckdb.InvalidInputException, match="ValueError: refusing 1000"):
            con.sql(f"SELECT {name}(i) FROM range(2048) t(i)").fetchall()
    assert fanned(con, "mine") >= 1


def test_an_error_names_the_row_of_the_batch_not_of_its_slice(one_thread, wide_pool, always_fan_out):
    backend, pool = wide_pool
    con = one_thread
    # None under null_handling="default" at row 1500 of the first batch, which lies in a later slice.
    duckdb_subinterp.create_function(
        con, "mine", lambda x: None if x == 1500 else x, ["BIGINT"], "BIGINT", backend=backend, pool=pool
    )
    with pytest.raises(duckdb.InvalidInputException, match="returned None at row 1500, whose arguments"):
        con.sql("SELECT mine(i) FROM range(2048) t(i)").fetchall()
    assert fanned(con, "mine") >= 1


def test_return_null_under_fan_out_is_duckdbs(one_thread, wide_pool, always_fan_out):
    backend, pool = wide_pool
    con = one_thread
    con.create_function("reference", udf_module.fail_on_1000_and_1900, exception_handling="return_null")
    duckdb_subinterp.create_function(
        con, "mine", udf_module.fail_on_1000_and_1900, exception_handling="return_null", backend=backend, pool=pool
    )
    rows = con.sql("SELECT reference(i) IS NOT DISTINCT FROM mine(i) FROM range(6000) t(i)").fetchall()
    assert rows == [(True,)] * 6000
    assert fanned(con, "mine") >= 2


def test_results_duckdb_converts_join_with_the_others(one_thread, wide_pool, always_fan_out):
    backend, pool = wide_pool
    con = one_thread

    con.create_function("reference", udf_module.text_some_rows)
    duckdb_subinterp.create_function(con, "mine", udf_module.text_some_rows, backend=backend, pool=pool)
    assert con.sql("SELECT sum(reference(i)) = sum(mine(i)) FROM range(6000) t(i)").fetchall() == [(True,)]
    assert fanned(con, "mine") >= 2


def test_a_busy_worker_takes_fewer_slices(one_thread, always_fan_out):
    # Two workers, one batch of 2048 rows cut in eight slices (two each of
    # 546, 273, 137 and 68 rows); the first slice takes 0.6 s, the others
    # nothing: the worker that runs it takes no other slice, since the other
    # one has taken them all by then.
    con = one_thread
    with duckdb_subinterp.InterpreterPool(2) as pool:
        pool.start_all()
        duckdb_subinterp.create_function(con, "whoami", udf_module.slow_first_rows_then_whoami, pool=pool)
        rows = con.sql("SELECT i, whoami(i) FROM range(2048) t(i) ORDER BY i").fetchall()
    slow_worker = rows[0][1]
    ran_by_slow = [i for i, worker in rows if worker == slow_worker]
    assert ran_by_slow == list(range(len(ran_by_slow))) and 300 <= len(ran_by_slow) < 1024
    assert len({worker for _, worker in rows}) == 2
    assert duckdb_subinterp.udf_stats(con, "whoami")["slices"] == 8


def test_a_worker_another_thread_just_gave_back_is_not_taken_for_a_fan_out(con):
    # With SET threads=2, each DuckDB thread gives its worker back between two
    # of its batches; the other thread's fan-out must not take it then.
    with duckdb_subinterp.InterpreterPool(2) as pool:
        duckdb_subinterp.create_function(con, "f", udf_module.add_one, pool=pool)
        udf_id = _dispatcher(con, "f").udf_id
        pool.start_all()
        mine = pool.checkout(udf_id, "f")
        other_threads = []

        def between_two_batches():
            other_threads.append(pool.checkout(udf_id, "f"))
            pool.checkin(other_threads[0])

        thread = threading.Thread(target=between_two_batches)
        thread.start()
        thread.join(10)
        assert pool.take_idle(udf_id, "f", 1) == []
        time.sleep(pool_module.RECLAIM_SECONDS * 5)  # that thread's query has moved on: the worker is spare
        taken = pool.take_idle(udf_id, "f", 1)
        assert taken == other_threads
        # This thread's own worker, just given back, is its to take again at once.
        pool.checkin(taken[0], lent=True)
        pool.checkin(mine)
        both = pool.take_idle(udf_id, "f", 2)
        assert len(both) == 2
        for worker in both:
            pool.checkin(worker)


def test_max_workers_caps_the_slices_too(one_thread, wide_pool, always_fan_out):
    backend, pool = wide_pool
    con = one_thread
    duckdb_subinterp.create_function(con, "mine", udf_module.add_one, backend=backend, pool=pool, max_workers=1)
    assert con.sql("SELECT sum(mine(i)) FROM range(10000) t(i)").fetchall() == [(sum(range(1, 10001)),)]
    stats = duckdb_subinterp.udf_stats(con, "mine")
    assert stats["fanned_batches"] == 0 and stats["slices"] == stats["batches"]


def test_a_costly_udf_fans_out_on_its_own_and_a_cheap_one_never(one_thread, wide_pool):
    backend, pool = wide_pool
    con = one_thread
    duckdb_subinterp.create_function(con, "costly", udf_module.slow_square, backend=backend, pool=pool)
    duckdb_subinterp.create_function(con, "cheap", udf_module.add_one, backend=backend, pool=pool)
    assert con.sql("SELECT sum(costly(i)) FROM range(12000) t(i)").fetchall() == [(sum(i * i for i in range(12000)),)]
    assert con.sql("SELECT sum(cheap(i)) FROM range(100000) t(i)").fetchall() == [(sum(range(1, 100001)),)]
    # The first batch teaches the dispatcher the UDF's cost; the costly one fans out after it.
    assert fanned(con, "costly") >= 3
    # The cheap one stays below the threshold by ~7x; only two batches in a row slowed that much by
    # a busy machine could cross it (the test below checks the rule itself, without timings).
    assert fanned(con, "cheap") <= duckdb_subinterp.udf_stats(con, "cheap")["batches"] // 10


def test_the_dispatcher_learns_its_udfs_costs_from_batches_and_slices(one_thread):
    con = one_thread
    with duckdb_subinterp.InterpreterPool(2) as pool:
        pool.start_all()
        duckdb_subinterp.create_function(con, "costly", udf_module.slow_square, pool=pool)
        con.sql("SELECT sum(costly(i)) FROM range(6000) t(i)").fetchall()
        per_call, per_row, split = _dispatcher(con, "costly").costs.fit()
        # ~0.2 ms a row (a sleep), and a little per call: the fan-out's slices told them apart.
        assert split
        assert 0.15e-3 < per_row < 0.6e-3
        assert per_call < 20e-3


def test_fan_out_starts_idle_workers_of_a_lazy_pool(one_thread):
    con = one_thread
    with duckdb_subinterp.InterpreterPool(2) as pool:
        duckdb_subinterp.create_function(con, "costly", udf_module.slow_square, pool=pool)
        assert pool.started == 1  # registration loaded the UDF in one worker
        con.sql("SELECT sum(costly(i)) FROM range(12000) t(i)").fetchall()
        assert pool.started == 2
        assert fanned(con, "costly") >= 1


def test_vectorized_udfs_fan_out_with_the_same_results(one_thread, wide_pool, always_fan_out):
    backend, pool = wide_pool
    con = one_thread
    function = udf_module.as_list
    con.create_function("reference", lambda x: x, ["VARCHAR"], "VARCHAR")
    duckdb_subinterp.create_function(
        con, "mine", function, ["VARCHAR"], "VARCHAR", type="vectorized", backend=backend, pool=pool
    )
    query = (
        "SELECT list(reference(x) ORDER BY i) = list(mine(x) ORDER BY i) "
        "FROM (SELECT i, 'v' || i AS x FROM range(9000) t(i))"
    )
    assert con.sql(query).fetchall() == [(True,)]
    assert fanned(con, "mine") >= 3
    assert _dispatcher(con, "mine").kind == "vectorized"


def test_a_lazy_pools_first_costly_batch_is_cut_over_a_worker_started_for_it(one_thread, lazy_pool):
    # One batch of 400 rows of 5 ms: nothing is known of its cost and one worker is there. After
    # LATE_JOIN_SECONDS a second one starts and takes the slice the first has not reached.
    backend, pool = lazy_pool
    duckdb_subinterp.create_function(
        one_thread, "whoami", udf_module.costly_whoami, ["BIGINT"], "VARCHAR", backend=backend, pool=pool
    )
    assert pool.started == 1  # the registration's own
    workers = one_thread.sql("SELECT count(DISTINCT whoami(i)) FROM range(400) r(i)").fetchall()
    assert workers == [(2,)]
    assert pool.started == 2
    stats = duckdb_subinterp.udf_stats(one_thread, "whoami")
    assert stats["fanned_batches"] == 1 and stats["slices"] == 2


def test_a_check_is_cut_over_idle_workers_or_not_at_all(one_thread, lazy_pool, monkeypatch):
    # Every batch of known cost planned as a check (an unsure cut, a recheck): two slices at once.
    # With no idle worker it runs whole, as a worker started for it could come after this thread
    # ran both slices (a cost per call paid twice in a row); the worker it started takes a later one.
    backend, pool = lazy_pool
    monkeypatch.setattr(_dispatch, "plan_fan_out", lambda costs, *_, **__: CHECK if costs.known else None)
    duckdb_subinterp.create_function(
        one_thread, "call_length", udf_module.call_length, ["BIGINT"], "BIGINT", type="vectorized",
        backend=backend, pool=pool,
    )  # fmt: skip
    query = "SELECT DISTINCT call_length(i) FROM range(2048) r(i) ORDER BY 1"
    assert one_thread.sql(query).fetchall() == [(2048,)]  # cost unknown: whole
    assert one_thread.sql(query).fetchall() == [(2048,)]  # the check: no idle worker, whole
    assert fanned(one_thread, "call_length") == 0
    assert pool.started == 2  # the check asked for one
    deadline = time.monotonic() + 60
    while len(pool._idle) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(pool._idle) == 2, "the worker the check asked for did not start"
    assert [size for (size,) in one_thread.sql(query).fetchall()] == [683, 1365]  # the next check, cut
    assert fanned(one_thread, "call_length") == 1


def test_a_first_cut_is_shared_with_a_worker_started_for_it(one_thread, lazy_pool, monkeypatch, tmp_path):
    # The first cut of a vectorized UDF (its parts not told apart yet) is a probe but not a check:
    # on a lazy pool a worker started for it takes the slice this thread has not reached. Each
    # call of probe_concurrency waits (up to 20 s) for another to be inside at once.
    backend, pool = lazy_pool
    monkeypatch.setattr(
        _dispatch, "plan_fan_out", lambda costs, *_, **__: FanOut(2, 2, probe=True) if costs.known else None
    )
    counter = tmp_path / "counter"
    counter.write_text("0 0 0")  # no wait for the first, whole batch
    duckdb_subinterp.create_function(
        one_thread, "probe", udf_module.probe_concurrency, ["VARCHAR"], "BIGINT", type="vectorized",
        backend=backend, pool=pool,
    )  # fmt: skip
    path = f"regexp_replace('{counter}' || i, '[0-9]+$', '')"  # a flat column, not a constant vector
    query = f"SELECT DISTINCT probe({path}) FROM range(2048) r(i) ORDER BY 1"
    assert one_thread.sql(query).fetchall() == [(2048,)]
    counter.write_text("0 0 20")
    assert one_thread.sql(query).fetchall() == [(683,), (1365,)]
    assert counter.read_text().split()[:2] == ["0", "2"]  # the two slices were inside at once
    assert pool.started == 2


def test_a_cheap_first_batch_starts_no_worker(one_thread):
    pool = duckdb_subinterp.InterpreterPool(2)
    try:
        duckdb_subinterp.create_function(
            one_thread, "add_one", udf_module.add_one, backend="subinterpreters", pool=pool
        )
        assert one_thread.sql("SELECT sum(add_one(i)) FROM range(2000) r(i)").fetchall() == [(2001000,)]
        time.sleep(3 * _dispatch.LATE_JOIN_SECONDS)  # a helper that would start one has had its time
        assert pool.started == 1
    finally:
        pool.close()


def test_slices_come_in_rounds_one_per_worker_each_half_the_one_before():
    sizes = [end - start for start, end in pairwise(Slices([], 2048, 8, workers=2)._bounds)]
    assert sizes == [546, 546, 273, 273, 137, 136, 69, 68]  # a late or slow worker ends a 68-row slice late
    # One slice per worker, a probe (equal, its last half), or too few rows: equal slices, as before.
    assert [b - a for a, b in pairwise(Slices([], 2048, 2, workers=2)._bounds)] == [1024, 1024]
    assert [b - a for a, b in pairwise(Slices([], 2048, 8, probe=True, workers=2)._bounds)][-2:] == [273, 137]
    for length in range(1, 200):
        for count in range(1, min(length, 24) + 1):
            for workers in range(1, 5):
                bounds = Slices([], length, count, workers=workers)._bounds
                assert bounds[0] == 0 and bounds[-1] == length and len(bounds) == count + 1
                assert all(end > start for start, end in pairwise(bounds)), (length, count, workers, bounds)
