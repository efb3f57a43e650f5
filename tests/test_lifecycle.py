"""Batches that do not end, threads UDFs leave behind, process exit and fork.

What may hang or crash runs in a child Python with a hard timeout and the
test asserts on its exit status and output (support.script_helper, as CPython's
script_helper); the child's whole process group is killed if it outlives the timeout.
"""

from __future__ import annotations

import textwrap
import threading
import time

import duckdb
import pytest
from support.script_helper import ChildResult, run_python
from udfs import reliability_udfs

import duckdb_subinterp
from duckdb_subinterp import InterpreterPool
from duckdb_subinterp._backends.subinterpreters import EXIT_STATUS
from duckdb_subinterp._engine.pool import THREAD_GRACE
from duckdb_subinterp._engine.watchdog import _BUSY_TICK, _IDLE_TICK

CHILD_TIMEOUT = 90  # seconds: a child that runs longer hung
# How long the watchdog may take to act on what it sees: one tick while
# nothing ran, one while something runs, and the stop itself.
REACTION = _IDLE_TICK + _BUSY_TICK + 0.5

pytestmark = pytest.mark.skipif(duckdb_subinterp._backends.subinterpreters.DirectCall is None, reason="needs _direct")

PREAMBLE = """
import os, signal, sys, threading, time
import _interpreters
import duckdb
import duckdb_subinterp
from udfs import reliability_udfs
from duckdb_subinterp import InterpreterPool
os.environ["DUCKDB_SUBINTERP_TEST_MAIN"] = str(threading.get_native_id())

def connect(threads=2):
    con = duckdb.connect()
    con.execute(f"SET threads={threads}")
    return con
"""


def run_child(script: str, timeout: float = CHILD_TIMEOUT) -> ChildResult:
    """Run ``PREAMBLE + script`` in a fresh Python (support.script_helper: a hard timeout, its process group killed)."""
    return run_python("-c", PREAMBLE + textwrap.dedent(script), timeout=timeout)


def assert_exit(result: ChildResult, status: int) -> None:
    """The child ended with ``status``, without a crash or a fatal error on the way."""
    report = result.report()
    assert result.returncode == status, report
    for sign in ("Fatal Python error", "Segmentation fault", "terminate called", "Aborted"):
        assert sign not in result.stderr, report


# ---------------------------------------------------------------------------
# Runaway batches: the pool's timeout, Ctrl-C
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("threads", [1, 2])
def test_runaway_batch_fails_with_pool_timeout_error_and_the_pool_recovers(threads):
    timeout = 0.5
    with InterpreterPool(2, timeout=timeout) as pool:
        con = duckdb.connect()
        con.execute(f"SET threads={threads}")
        duckdb_subinterp.create_function(con, "runaway", reliability_udfs.spin, pool=pool)
        started = time.monotonic()
        with pytest.raises(
            duckdb.InvalidInputException,
            match=r"PoolTimeoutError: UDF 'runaway': the batch ran longer than the pool's timeout \(0.5 s\)",
        ):
            con.sql("SELECT runaway(i) FROM range(10) t(i)").fetchall()
        assert time.monotonic() - started < timeout + REACTION
        # The stopped worker was retired and replaced on demand.
        duckdb_subinterp.create_function(con, "plus_one", reliability_udfs.plus_one, pool=pool)
        assert con.sql("SELECT sum(plus_one(i)) FROM range(5000) t(i)").fetchall() == [(sum(range(1, 5001)),)]
        with pool._lock:
            assert len(pool._idle) == pool.started
        con.close()


def test_a_runaway_batch_leaves_the_other_workers_to_other_udfs():
    with InterpreterPool(2, timeout=3) as pool:
        runaway = duckdb.connect()
        runaway.execute("SET threads=1")
        duckdb_subinterp.create_function(runaway, "runaway", reliability_udfs.spin, pool=pool)
        errors: list[BaseException] = []

        def run_away() -> None:
            try:
                runaway.sql("SELECT runaway(i) FROM range(1) t(i)").fetchall()
            except duckdb.Error as error:
                errors.append(error)

        spinning = threading.Thread(target=run_away)
        spinning.start()
        other = duckdb.connect()
        duckdb_subinterp.create_function(other, "plus_one", reliability_udfs.plus_one, pool=pool)
        started = time.monotonic()
        assert other.sql("SELECT sum(plus_one(i)) FROM range(20000) t(i)").fetchall() == [(sum(range(1, 20001)),)]
        assert time.monotonic() - started < 2.5, "the other UDF waited for the runaway one"
        spinning.join(3 + REACTION + 5)
        assert not spinning.is_alive()
        assert len(errors) == 1 and "PoolTimeoutError: UDF 'runaway'" in str(errors[0])


@pytest.mark.parametrize(
    ("udf", "threads"),
    [
        ("spin", 1),  # the batch spins on the thread that runs the query
        ("spin_on_main", 2),  # the same, with DuckDB's other thread busy too
        ("spin_off_main", 2),  # it spins on a DuckDB thread while the query's thread waits for it
    ],
)
def test_ctrl_c_ends_a_query_whose_udf_spins_within_about_a_second(udf, threads):
    result = run_child(
        f"""
        con = connect({threads})
        duckdb_subinterp.create_function(con, "f", reliability_udfs.{udf})
        duckdb_subinterp.create_function(con, "plus_one", reliability_udfs.plus_one)
        sent = []
        done = threading.Event()

        def ctrl_c():
            # Ctrl-C stops the batches running when it comes; one that starts later (a worker started
            # late on a loaded machine) runs on: pressed again a second later, as a user would.
            time.sleep(1.5)
            while not done.is_set() and len(sent) < 20:
                sent.append(time.monotonic())
                os.kill(os.getpid(), signal.SIGINT)
                done.wait(1.0)

        threading.Thread(target=ctrl_c, daemon=True).start()
        try:
            try:
                con.sql("SELECT sum(f(i)) FROM range(1000000) t(i)").fetchall()
                print("the query ended by itself")
            except BaseException as error:
                print(f"interrupted {{type(error).__name__}} after {{time.monotonic() - sent[0]:.2f}} s")
        except KeyboardInterrupt as late:
            # A second Ctrl-C's own KeyboardInterrupt, raised as the query returned: it ended the query.
            first = late.__context__ or late
            print(f"interrupted {{type(first).__name__}} after {{time.monotonic() - sent[0]:.2f}} s")
        done.set()
        print("then", con.sql("SELECT sum(plus_one(i)) FROM range(100) t(i)").fetchall())
        """
    )
    assert_exit(result, 0)
    lines = result.stdout.splitlines()
    assert lines[0].startswith("interrupted"), result.stdout
    # About a second (typically well under half of one); the bound leaves room for a loaded machine.
    assert float(lines[0].split()[-2]) < REACTION + 1.5, result.stdout
    assert lines[1] == f"then [({sum(range(1, 101))},)]", result.stdout


@pytest.mark.parametrize("udf", ["swallow_stops", "busy_in_c"])
def test_a_batch_that_cannot_be_stopped_is_given_up_and_exit_still_ends(udf):
    result = run_child(
        f"""
        pool = InterpreterPool(2, timeout=0.5)
        stuck = connect(1)
        duckdb_subinterp.create_function(stuck, "stuck", reliability_udfs.{udf}, pool=pool)
        threading.Thread(target=lambda: stuck.sql("SELECT stuck(i) FROM range(1) t(i)").fetchall(), daemon=True).start()
        deadline = time.monotonic() + 30
        while pool.started and time.monotonic() < deadline:  # the registration's worker, then the stuck one
            time.sleep(0.05)
        print("given up", pool.started == 0)
        other = connect(1)
        duckdb_subinterp.create_function(other, "plus_one", reliability_udfs.plus_one, pool=pool)
        print("other UDF", other.sql("SELECT sum(plus_one(i)) FROM range(100) t(i)").fetchall())
        sys.exit(3)
        """
    )
    # The batch still runs at exit: ending the process is the only way out
    # that neither hangs nor crashes, and it says so.
    assert_exit(result, EXIT_STATUS)
    assert result.stdout.splitlines() == ["given up True", f"other UDF [({sum(range(1, 101))},)]"], result.stdout
    assert "did not stop" in result.stderr and f"os._exit({EXIT_STATUS})" in result.stderr


# ---------------------------------------------------------------------------
# Threads a UDF leaves running
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("udf", "kept"),
    [
        ("Refreshed", True),  # sleeps a minute: outlives the grace, its interpreter is kept
        ("RefreshedOften", False),  # wakes every few ms: ends on SystemExit, the interpreter goes
    ],
)
def test_threads_a_udf_started_do_not_block_close_or_exit(udf, kept):
    result = run_child(
        f"""
        pool = InterpreterPool(2)
        con = connect(2)
        duckdb_subinterp.create_function(con, "f", reliability_udfs.{udf}, pool=pool)
        print(con.sql("SELECT sum(f(i)) FROM range(10000) t(i)").fetchall())
        started = time.monotonic()
        pool.close()
        print(f"closed in {{time.monotonic() - started:.2f}} s")
        print("interpreters left", len(_interpreters.list_all()) - 1)
        sys.exit(3)
        """
    )
    assert_exit(result, 3)
    lines = result.stdout.splitlines()
    assert lines[0] == f"[({sum(range(10000)) + 10000},)]"
    assert float(lines[1].split()[2]) < THREAD_GRACE + 1.0, result.stdout
    assert (lines[2] != "interpreters left 0") == kept, result.stdout


# ---------------------------------------------------------------------------
# Exit: never a hang, never a crash
# ---------------------------------------------------------------------------

# (what the interpreters are doing when the main thread exits, the script, the exit status)
EXIT_CASES = [
    (
        "idle",
        """
        con = connect()
        duckdb_subinterp.create_function(con, "f", reliability_udfs.plus_one)
        con.sql("SELECT sum(f(i)) FROM range(10000) t(i)").fetchall()
        """,
        3,
    ),
    (
        "busy in bytecode",
        """
        con = connect()
        duckdb_subinterp.create_function(con, "f", reliability_udfs.spin)
        def query():
            try:
                con.sql("SELECT sum(f(i)) FROM range(100000) t(i)").fetchall()
            except duckdb.Error as error:  # stopped by the pool's close() at exit, or by the exit itself
                print("query failed:", "BrokenPoolError" in str(error), flush=True)
        threading.Thread(target=query, daemon=True).start()
        time.sleep(1)
        """,
        3,
    ),
    (
        "busy in bytecode, fanned out",  # its slices run on helper threads too: none holds the exit
        """
        con = connect()
        pool = InterpreterPool(2)
        pool.start_all()
        duckdb_subinterp.create_function(con, "f", reliability_udfs.spin, pool=pool)
        def query():
            try:
                con.sql("SELECT sum(f(i)) FROM range(100000) t(i)").fetchall()
            except duckdb.Error as error:  # stopped by the pool's close() at exit, or by the exit itself
                print("query failed:", "BrokenPoolError" in str(error), flush=True)
        threading.Thread(target=query, daemon=True).start()
        time.sleep(1)
        """,
        3,
    ),
    (
        "busy in C",
        """
        con = connect()
        duckdb_subinterp.create_function(con, "f", reliability_udfs.busy_in_c)
        threading.Thread(target=lambda: con.sql("SELECT f(i) FROM range(1) t(i)").fetchall(), daemon=True).start()
        time.sleep(1)
        """,
        EXIT_STATUS,
    ),
    (
        "holding UDF threads",
        """
        con = connect()
        duckdb_subinterp.create_function(con, "f", reliability_udfs.Refreshed)
        duckdb_subinterp.create_function(con, "g", reliability_udfs.RefreshedOften)
        con.sql("SELECT sum(f(i) + g(i)) FROM range(10000) t(i)").fetchall()
        """,
        3,
    ),
    (
        "holding UDF threads, closed during a query",  # busy workers close as their batches end
        """
        pool = InterpreterPool(2)
        con = connect()
        duckdb_subinterp.create_function(con, "f", reliability_udfs.Refreshed, pool=pool)
        threading.Timer(0.5, pool.close).start()
        try:
            con.sql("SELECT sum(f(i)) FROM range(100000000) t(i)").fetchall()
        except duckdb.Error as error:
            print("query failed:", "its pool was closed" in str(error), flush=True)
        """,
        3,
    ),
    (
        "holding UDF threads after close",
        """
        pool = InterpreterPool(2)
        con = connect()
        duckdb_subinterp.create_function(con, "f", reliability_udfs.Refreshed, pool=pool)
        con.sql("SELECT sum(f(i)) FROM range(10000) t(i)").fetchall()
        pool.close()
        """,
        3,
    ),
]


@pytest.mark.parametrize(("script", "status"), [case[1:] for case in EXIT_CASES], ids=[case[0] for case in EXIT_CASES])
def test_exit_never_hangs_or_crashes(script, status):
    started = time.monotonic()
    result = run_child(textwrap.dedent(script) + "\nsys.exit(3)\n")
    assert_exit(result, status)
    assert "query failed: False" not in result.stdout
    # Bounded: a stop, its grace, a thread grace, and the start-up.
    assert time.monotonic() - started < 20


# ---------------------------------------------------------------------------
# Fork
# ---------------------------------------------------------------------------

FORK_QUERIES = 120


@pytest.mark.parametrize("backend", ["subinterpreters", "processes"])
def test_parent_and_forked_child_both_get_right_sums(backend):
    result = run_child(
        f"""
        import multiprocessing

        def sums(label, results):
            con = connect()
            duckdb_subinterp.create_function(con, "f", reliability_udfs.plus_one, backend={backend!r})
            wrong = 0
            for query in range({FORK_QUERIES}):
                rows = 1000 + 37 * query
                (got,), = con.sql(f"SELECT sum(f(i)) FROM range({{rows}}) t(i)").fetchall()
                wrong += got != rows * (rows + 1) // 2
            results.put((label, wrong))

        con = connect()
        duckdb_subinterp.create_function(con, "f", reliability_udfs.plus_one, backend={backend!r})
        con.sql("SELECT sum(f(i)) FROM range(100000) t(i)").fetchall()  # the pool is in use
        fork = multiprocessing.get_context("fork")
        results = fork.Queue()
        child = fork.Process(target=sums, args=("child", results))
        child.start()
        sums("parent", results)
        print(sorted(results.get(timeout=60) for _ in range(2)))
        child.join(60)
        print("child exit status", child.exitcode)
        """
    )
    assert_exit(result, 0)
    assert result.stdout.splitlines() == ["[('child', 0), ('parent', 0)]", "child exit status 0"], result.stdout


def test_forks_while_queries_run_on_interpreters():
    # Before each fork the batches in flight end and the interpreters are
    # destroyed; checkouts wait meanwhile and the pool starts them again.
    result = run_child(
        """
        con = connect()
        duckdb_subinterp.create_function(con, "f", reliability_udfs.plus_one)
        wrong, stop = [], threading.Event()

        def keep_querying():
            while not stop.is_set():
                (got,), = con.sql("SELECT sum(f(i)) FROM range(50000) t(i)").fetchall()
                wrong.append(got != 50000 * 50001 // 2)

        querying = threading.Thread(target=keep_querying)
        querying.start()
        statuses = []
        for _ in range(5):
            time.sleep(0.2)
            pid = os.fork()
            if pid == 0:  # born without interpreters; it can make its own
                with InterpreterPool(1) as pool:
                    started = pool.start_all()
                os._exit(0 if started == 1 else 1)
            statuses.append(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
        stop.set()
        querying.join(60)
        print("children", statuses, "queries", len(wrong) > 0, "wrong", sum(wrong))
        """
    )
    assert_exit(result, 0)
    assert result.stdout.strip() == "children [0, 0, 0, 0, 0] queries True wrong 0", result.stdout
