"""backend="auto" places each batch: in the calling DuckDB thread, as DuckDB's own UDF, or on the pool."""

from __future__ import annotations

import math
import threading
import time
import warnings

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from udfs import udf_module

import duckdb_subinterp
from duckdb_subinterp import examples
from duckdb_subinterp._direct import SettledCall
from duckdb_subinterp._engine import dispatch
from duckdb_subinterp._engine.costs import Placement
from duckdb_subinterp._engine.dispatch import RECENT_MAX, RECENT_MIN, SETTLED_BATCHES, SETTLED_MOST, BatchDispatcher
from duckdb_subinterp._registration.api import _dispatcher

ROWS = 200_000


@pytest.fixture
def con():
    connection = duckdb.connect()
    connection.execute("SET threads=2")
    yield connection
    connection.close()


def auto(con, name, function, *args, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", duckdb_subinterp.BackendFallbackWarning)
        duckdb_subinterp.create_function(con, name, function, *args, backend="auto", **options)


def add_one_arrow(x):
    return pc.add(x, 1)


def test_a_cheap_arrow_udf_runs_in_the_calling_thread_as_duckdbs_own(con):
    con.create_function("own", add_one_arrow, ["BIGINT"], "BIGINT", type="arrow")
    auto(con, "mine", add_one_arrow, ["BIGINT"], "BIGINT", type="arrow")
    query = "SELECT sum({}(i)), count({}(i)) FROM range({}) t(i)"
    assert (
        con.sql(query.format("mine", "mine", ROWS)).fetchall() == con.sql(query.format("own", "own", ROWS)).fetchall()
    )
    stats = duckdb_subinterp.udf_stats(con, "mine")
    assert stats["batches"] == stats["in_thread_batches"] > 0
    assert stats["rows"] == ROWS  # every batch counted, the settled ones too (DuckDB calls it once a row)


def test_its_errors_and_nulls_are_those_of_the_pool_path(con):
    def fails_on_odd(x):
        if pc.any(pc.equal(pc.bit_wise_and(x, 1), 1)).as_py():
            raise ValueError("an odd value")
        return x

    auto(con, "mine", fails_on_odd, ["BIGINT"], "BIGINT", type="arrow")
    with pytest.raises(duckdb.InvalidInputException, match=r"ValueError: an odd value\n\(raised in UDF 'mine'\)"):
        con.sql("SELECT sum(mine(i)) FROM range(10) t(i)").fetchall()
    con.create_function("own", fails_on_odd, ["BIGINT"], "BIGINT", type="arrow", exception_handling="return_null")
    auto(con, "nulls", fails_on_odd, ["BIGINT"], "BIGINT", type="arrow", exception_handling="return_null")
    query = "SELECT list({}(CASE WHEN i % 3 = 0 THEN NULL ELSE i * 2 END) ORDER BY i) FROM range(5000) t(i)"
    assert con.sql(query.format("nulls")).fetchall() == con.sql(query.format("own")).fetchall()
    assert duckdb_subinterp.udf_stats(con, "nulls")["in_thread_batches"] > 0


def test_a_result_duckdb_converts_or_refuses_goes_to_duckdb_as_it_is(con):
    def as_list(x):
        return x.to_pylist()

    def wrong_length(x):
        return pa.array([1])

    con.create_function("own", as_list, ["BIGINT"], "BIGINT", type="arrow")
    auto(con, "mine", as_list, ["BIGINT"], "BIGINT", type="arrow")
    assert (
        con.sql("SELECT sum(mine(i)) FROM range(5000) t(i)").fetchall()
        == con.sql("SELECT sum(own(i)) FROM range(5000) t(i)").fetchall()
    )
    con.create_function("own_short", wrong_length, ["BIGINT"], "BIGINT", type="arrow")
    auto(con, "short", wrong_length, ["BIGINT"], "BIGINT", type="arrow")
    with pytest.raises(duckdb.InvalidInputException) as own:
        con.sql("SELECT sum(own_short(i)) FROM range(5000) t(i)").fetchall()
    with pytest.raises(duckdb.InvalidInputException) as mine:
        con.sql("SELECT sum(short(i)) FROM range(5000) t(i)").fetchall()
    assert str(mine.value) == str(own.value)


def test_a_class_udf_in_the_calling_thread_has_its_own_instance(con):
    auto(con, "counted", udf_module.Counter, ["BIGINT"], "BIGINT")
    assert con.sql("SELECT sum(counted(i)) FROM range(5000) t(i)").fetchall() == [(sum(range(5000)),)]


def test_a_costly_udf_moves_to_the_pool_where_batches_run_at_once(con):
    con.execute("CREATE TABLE t AS SELECT i::DOUBLE AS x FROM range(3 * 122880) r(i)")  # 3 row groups: 2 threads
    con.create_function("own", examples.newton_sqrt)
    auto(con, "costly", examples.newton_sqrt)  # ~2 us a row, holding the GIL
    query = "SELECT list({}(x) ORDER BY x) FROM t"  # each alone: DuckDB's own would take the GIL from ours
    assert con.sql(query.format("costly")).fetchall() == con.sql(query.format("own")).fetchall()
    stats = duckdb_subinterp.udf_stats(con, "costly")
    # How many depends on the cores' load (bench/dispatch.py measures the speed); that it moves does not.
    assert stats["in_thread_batches"] < stats["batches"] - 10
    assert stats["per_row_seconds"] > 0


def test_explicit_backends_never_run_in_the_calling_thread(con):
    duckdb_subinterp.create_function(con, "mine", udf_module.add_one, backend="subinterpreters")
    con.sql("SELECT sum(mine(i)) FROM range(20000) t(i)").fetchall()
    assert duckdb_subinterp.udf_stats(con, "mine")["in_thread_batches"] == 0
    assert _dispatcher(con, "mine")._in_thread is None


@pytest.fixture
def settled_batches(monkeypatch):
    """Count the batches of native and vectorized UDFs registered from now on that ran settled (untimed)."""
    counted = []
    settled_batch = BatchDispatcher._settled_batch

    def counting(self, *arguments):
        counted.append(len(arguments[0]))
        return settled_batch(self, *arguments)

    monkeypatch.setattr(BatchDispatcher, "_settled_batch", counting)
    return counted


def nullable(i):
    return f"CASE WHEN {i} % 3 = 0 THEN NULL ELSE {i} END"


def test_a_cheap_native_udf_one_thread_calls_settles_in_it(con, settled_batches):
    con.create_function("own", udf_module.add_one, ["BIGINT"], "BIGINT")
    auto(con, "mine", udf_module.add_one, ["BIGINT"], "BIGINT")
    query = f"SELECT sum({{}}({nullable('i')})) FROM range({ROWS}) t(i)"
    assert con.sql(query.format("mine")).fetchall() == con.sql(query.format("own")).fetchall()
    stats = duckdb_subinterp.udf_stats(con, "mine")
    assert stats["rows"] == ROWS  # the settled batches counted too
    # Once timed here, most batches run settled: no placement, no timing, a count.
    assert stats["batches"] // 2 < len(settled_batches) <= stats["in_thread_batches"]


def test_a_settled_batch_fails_and_counts_as_any_other(con, settled_batches):
    def fails_late(x):
        if x == ROWS - 7:
            raise ValueError("a late value")
        return x

    auto(con, "late", fails_late, ["BIGINT"], "BIGINT")
    with pytest.raises(duckdb.InvalidInputException, match=r"ValueError: a late value\n\(raised in UDF 'late'\)"):
        con.sql(f"SELECT sum(late(i)) FROM range({ROWS}) t(i)").fetchall()
    assert settled_batches  # the batch that failed ran settled, after many that did too
    auto(con, "counted", udf_module.Counter, ["BIGINT"], "BIGINT")  # a class UDF: one instance a thread here
    assert con.sql(f"SELECT sum(counted(i)) FROM range({ROWS}) t(i)").fetchall() == [(sum(range(ROWS)),)]


def test_threads_that_lately_ended_a_batch_count_as_calling(con):
    auto(con, "mine", udf_module.add_one, ["BIGINT"], "BIGINT")
    dispatcher = _dispatcher(con, "mine")
    now = time.perf_counter()
    assert dispatcher._threads_calling(1, now, 2048) == 0  # none in a call, none ended one
    dispatcher._last_ended.update({1: now - RECENT_MIN / 10, 2: now - RECENT_MIN / 2})
    assert dispatcher._threads_calling(1, now, 2048) == 1  # thread 2, just now: it takes turns with 1
    dispatcher._last_ended[2] = now - 1.0
    assert dispatcher._threads_calling(1, now, 2048) == 0  # thread 2 stopped calling a second ago


def test_a_light_udf_many_threads_call_moves_to_the_pool(con, monkeypatch):
    con.execute("CREATE TABLE words AS SELECT 'word ' || i AS w FROM range(8 * 122880) r(i)")  # 8 row groups
    con.create_function("own", examples.shout)
    auto(con, "light", examples.shout)  # ~0.1 us a row: DuckDB's two threads take turns on the GIL here
    query = "SELECT count(DISTINCT {}(w)) FROM words"
    assert con.sql(query.format("light")).fetchall() == con.sql(query.format("own")).fetchall()
    stats = duckdb_subinterp.udf_stats(con, "light")
    assert stats["batches"] == 8 * 60
    # How many of those moved depends on the cores' load, not only on the rule: 127 to 182 of 480 stayed
    # here on 2 idle cores, 463 on a loaded CI machine, where DuckDB's threads seldom overlapped and the
    # workers waited for a core too. The rule, on costs told: with another thread calling lately (so
    # batches here wait for each other on the GIL), a batch that costs less on the pool runs there.
    dispatcher = _dispatcher(con, "light")
    batch = pa.chunked_array([pa.array(["a word"] * 2048)])

    def told_costs():
        placement = Placement(30e-6, holds_gil=True)
        placement.observe_here(2048, 2048 * 0.5e-6, 1)  # 1 ms a batch here
        for _ in range(3):
            placement.pool.observe(2048, 2048 * 0.6e-6)  # 1.2 ms on a worker: two at once there
        return placement

    dispatcher._placement, dispatcher._last_ended = told_costs(), {}
    assert dispatcher(batch).to_pylist() == ["A WORD!"] * 2048
    assert duckdb_subinterp.udf_stats(con, "light")["in_thread_batches"] == stats["in_thread_batches"] + 1  # alone
    dispatcher._placement = told_costs()  # as before that batch, whose cost here was measured
    monkeypatch.setattr(dispatch, "RECENT_MIN", RECENT_MAX / 2)  # "lately", even on a loaded machine
    dispatcher._last_ended[-1] = time.perf_counter()  # another DuckDB thread ended one just now
    assert dispatcher(batch).to_pylist() == ["A WORD!"] * 2048
    after = duckdb_subinterp.udf_stats(con, "light")
    assert (after["batches"], after["in_thread_batches"]) == (stats["batches"] + 2, stats["in_thread_batches"] + 1)


def costly_from_100_000(x):
    if x < 100_000:
        return x
    total = 0
    for step in range(400):  # ~10 us a row, holding the GIL
        total += step
    return x + total - total


def test_a_settled_udf_whose_rows_get_costly_is_placed_again_at_once(con):
    auto(con, "uneven", costly_from_100_000, ["BIGINT"], "BIGINT")
    rows = 150_000  # 49 cheap batches, then 25 of ~20 ms, from one DuckDB thread
    assert con.sql(f"SELECT sum(uneven(i)) FROM range({rows}) t(i)").fetchall() == [(sum(range(rows)),)]
    stats = duckdb_subinterp.udf_stats(con, "uneven")
    cheap = -(-100_000 // 2048)
    # The first costly batch, run settled here, ends the streak: the next ones fan out over the pool
    # rather than wait for the settled streak to end (up to 254 more costly batches here).
    assert stats["in_thread_batches"] <= cheap + 3
    assert stats["fanned_batches"] >= 10


@pytest.fixture
def streaks(monkeypatch):
    """Record the settled streaks a UDF registered from now on starts: (last length, how it ended, new length)."""
    recorded = []
    settle = BatchDispatcher._settle

    def recording(self, settled, slow_per_row, thread):
        last, ended = self._streak, settled.left
        settle(self, settled, slow_per_row, thread)
        recorded.append((last, ended, settled.left))

    monkeypatch.setattr(BatchDispatcher, "_settle", recording)
    return recorded


def test_a_settled_streak_grows_while_the_placement_stays(con, streaks, monkeypatch):
    # Without the guard of costly batches, which a busy core can trip: the rule alone, whatever the load.
    monkeypatch.setattr(Placement, "settled_slow_per_row", lambda self, rows, parallel: math.inf)
    con.execute("SET threads=1")  # one DuckDB thread: no streak ends for another thread's call
    auto(con, "mine", add_one_arrow, ["BIGINT"], "BIGINT", type="arrow")
    for _ in range(8):
        assert con.sql(f"SELECT sum(mine(i)) FROM range({ROWS}) t(i)").fetchall() == [(sum(range(1, ROWS + 1)),)]
    batches = duckdb_subinterp.udf_stats(con, "mine")["in_thread_batches"]
    for last, ended, length in streaks:
        if last == 0:  # the first, or the first since a batch was placed elsewhere or not settled
            assert length == SETTLED_BATCHES
        else:  # twice the last plus one where it ran to its end, up to SETTLED_MOST; else as long
            assert length == (min(2 * last + 1, SETTLED_MOST) if ended == 0 else last)
    assert SETTLED_MOST in [length for _, _, length in streaks]
    assert len(streaks) < batches / 20  # 1 in 16 batches placed again with streaks of 15


def test_a_settled_call_from_another_thread_or_slower_than_allowed_ends_its_streak():
    placed = []
    settled = SettledCall(lambda x: x, lambda x: placed.append(x) or x)
    settled.left, settled.thread = 5, threading.get_ident()
    assert settled([1, 2]) == [1, 2] and settled.left == 4 and not placed  # this thread: settled
    other = threading.Thread(target=settled, args=([3],))
    other.start()
    other.join(timeout=10)
    assert placed == [[3]] and settled.left == -2  # another thread: placed again, the streak ended early

    def slow(x):
        time.sleep(0.01)
        return x

    settled = SettledCall(slow, placed.append)
    settled.left, settled.slow_per_row = 5, 0.1
    assert settled([1, 2, 3]) == [1, 2, 3] and settled.left == 4  # 10 ms under 3 rows of 100 ms each
    settled.slow_per_row = 0.001
    assert settled([1, 2, 3]) == [1, 2, 3] and settled.left == -1  # over 3 rows of 1 ms each
    assert settled.take_counts() == (2, 6)  # both ran settled and count


def sleeps_from_100_000(x):
    if pc.min(x).as_py() >= 100_000:
        time.sleep(0.002)  # a costlier part of the data
    return pc.add(x, 1)


def test_a_settled_arrow_udf_whose_batches_get_costly_is_placed_again_at_once(con, monkeypatch):
    placed = []
    placed_batch = BatchDispatcher._placed_batch

    def counting(self, started, arguments, length):
        placed.append(pc.min(arguments[0]).as_py())
        return placed_batch(self, started, arguments, length)

    monkeypatch.setattr(BatchDispatcher, "_placed_batch", counting)
    con.execute("SET threads=1")
    auto(con, "uneven", sleeps_from_100_000, ["BIGINT"], "BIGINT", type="arrow")
    rows = 150_000  # 49 cheap batches, then 25 of ~2 ms
    assert con.sql(f"SELECT sum(uneven(i)) FROM range({rows}) t(i)").fetchall() == [(sum(range(1, rows + 1)),)]
    costly = [first for first in placed if first >= 100_000]
    # The first costly batch, run settled, ends its streak (timed in C); the estimate here, the cheaper
    # of the last two batches, may settle one more, a busy core one more again; then every one is timed
    # and placed (the pool, a round trip away, is no longer far off) rather than run settled for up to
    # 254 batches.
    assert len(costly) >= -(-(rows - 100_352) // 2048) - 3


@pytest.mark.parametrize("kind", ["native", "arrow"])
def test_a_thread_whose_streak_another_ended_counts_as_calling_only_if_it_lately_called(con, kind, monkeypatch):
    con.execute("SET threads=1")  # DuckDB runs the query in this thread
    function = udf_module.add_one if kind == "native" else add_one_arrow
    auto(con, "mine", function, ["BIGINT"], "BIGINT", type=kind)
    con.sql(f"SELECT sum(mine(i)) FROM range({ROWS}) t(i)").fetchall()  # settles it
    dispatcher = _dispatcher(con, "mine")
    settled = dispatcher._settled()
    parallel = []
    monkeypatch.setattr(Placement, "on_pool", lambda self, rows, at_once: parallel.append(at_once) and False)
    monkeypatch.setattr(dispatch, "RECENT_MIN", RECENT_MAX / 2)  # "lately", even on a loaded machine
    batch = pa.chunked_array([pa.array(range(2048), pa.int64())])

    def a_streak_of_this_threads():
        settled.left, settled.thread = 5, threading.get_ident()
        if kind == "arrow":
            settled.slow_per_row = 1.0  # its calls timed in C, as auto sets it
        settled(batch)

    def another_query_on_another_thread():
        thread = threading.Thread(target=settled, args=(batch,))
        thread.start()
        thread.join(timeout=10)

    a_streak_of_this_threads()
    another_query_on_another_thread()  # its batch came right after this thread's last one: both call
    assert parallel == [2]
    a_streak_of_this_threads()
    time.sleep(RECENT_MAX)  # this thread's last batch: longer ago than any window
    another_query_on_another_thread()  # DuckDB ran this query on another thread: it alone calls
    assert parallel == [2, 1]


class Instances:
    """A class UDF counting the instances made (in this interpreter: auto runs it in the calling thread)."""

    made = 0

    def __init__(self) -> None:
        type(self).made += 1

    def __call__(self, x: int) -> int:
        return x


def test_each_duckdb_thread_keeps_its_worker_and_instance_from_batch_to_batch(con):
    # DuckDB's own threads take the GIL with a thread state made for each call: what a thread keeps
    # here outlives it (once a loaded UDF and a class UDF's instance per thread, not per batch).
    auto(con, "counted", Instances, ["BIGINT"], "BIGINT")
    query = f"SELECT sum(counted(i)) FROM range({ROWS}) t(i)"
    for _ in range(5):
        assert con.sql(query).fetchall() == [(sum(range(ROWS)),)]
    assert duckdb_subinterp.udf_stats(con, "counted")["in_thread_batches"] > 100
    assert 1 <= Instances.made <= 2  # SET threads=2: DuckDB's two threads
