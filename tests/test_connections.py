"""A UDF outlives the connection object that registered it; a dropped pool is freed.

DuckDB keeps a Python UDF in the database's catalog, callable from every
cursor and every connection to that database, but only the registering
connection object references the callable; each scenario runs in a child
Python (it may crash) once through DuckDB's own ``create_function`` and
once per backend, and the backends must give DuckDB's answer, or, where
DuckDB's own crashes, a clear error naming the UDF.
"""

from __future__ import annotations

import signal
import textwrap

import pytest
from support.script_helper import ChildResult, run_python

CHILD_TIMEOUT = 120

PRELUDE = """
import gc, os, sys, warnings
import duckdb, duckdb_subinterp
from udfs import udf_module
BACKEND = sys.argv[1]
QUERY = "SELECT sum(f(range)) FROM range(10000)"

def register(con, name, function, *args, **options):
    if BACKEND == "duckdb":
        con.create_function(name, function, *args, **options)
    else:
        duckdb_subinterp.create_function(con, name, function, *args, backend=BACKEND, **options)

def show(cursor):
    # Twice: the first call after the registering connection went sets the UDF up again.
    print(cursor.execute(QUERY).fetchall(), cursor.execute(QUERY).fetchall())
"""


def run_child(script: str, *arguments: str, timeout: float = CHILD_TIMEOUT) -> ChildResult:
    """Run ``PRELUDE + script`` in a fresh Python (support.script_helper: a hard timeout, its process group killed)."""
    return run_python("-c", PRELUDE + textwrap.dedent(script), *arguments, timeout=timeout)


# Scenario -> the script; each ends by printing what the query returned.
OUTLIVED = {
    "a cursor queries after the connection is collected": """
        con = duckdb.connect()
        register(con, "f", udf_module.add_one)
        cursor = con.cursor()
        del con; gc.collect()
        show(cursor)
    """,
    "registered on a cursor that is closed and collected, queried from its parent": """
        parent = duckdb.connect()
        cursor = parent.cursor()
        register(cursor, "f", udf_module.add_one)
        cursor.close(); del cursor; gc.collect()
        show(parent)
    """,
    "two connections to one file, the registering one collected": """
        path = os.path.join(sys.argv[2], "db.duckdb")
        first, second = duckdb.connect(path), duckdb.connect(path)
        register(first, "f", udf_module.add_one)
        del first; gc.collect()
        show(second)
    """,
    "two connections to one file, the registering one closed": """
        path = os.path.join(sys.argv[2], "db.duckdb")
        first, second = duckdb.connect(path), duckdb.connect(path)
        register(first, "f", udf_module.add_one)
        first.close()
        show(second)
    """,
    "a lambda the program keeps, the connection collected": """
        plus_one = lambda x: x + 1
        con = duckdb.connect()
        register(con, "f", plus_one, ["BIGINT"], "BIGINT")
        cursor = con.cursor()
        del con; gc.collect()
        show(cursor)
    """,
}

# Backend -> extra registration options (DuckDB's own runs every scenario too, as the oracle).
BACKENDS = ["subinterpreters", "processes", "auto", "inline"]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("scenario", list(OUTLIVED))
def test_a_udf_outliving_its_connection_object_gives_duckdbs_answer(scenario, backend, tmp_path):
    for folder in ("own", "ours"):
        (tmp_path / folder).mkdir()
    own = run_child(OUTLIVED[scenario], "duckdb", str(tmp_path / "own"))
    ours = run_child(OUTLIVED[scenario], backend, str(tmp_path / "ours"))
    assert own.returncode == 0, own.report()
    assert ours.returncode == 0, ours.report()
    assert ours.stdout == own.stdout


def test_a_lambda_nobody_keeps_fails_clearly_where_duckdbs_own_crashes():
    script = """
        con = duckdb.connect()
        register(con, "f", lambda x: x + 1, ["BIGINT"], "BIGINT")
        cursor = con.cursor()
        del con; gc.collect()
        try:
            cursor.execute(QUERY).fetchall()
        except duckdb.Error as error:
            print(type(error).__name__, error)
        print(cursor.execute("SELECT 42").fetchall())  # the cursor still works
    """
    own = run_child(script, "duckdb")
    # DuckDB's own calls the freed lambda (duckdb-python issue 530); if that
    # ever stops crashing, its answer becomes the one to give.
    assert own.returncode == -signal.SIGSEGV, own.report()
    for backend in BACKENDS:
        ours = run_child(script, backend)
        assert ours.returncode == 0, (backend, ours.report())
        first, second = ours.stdout.splitlines()
        assert first.startswith("InvalidInputException"), (backend, first)
        assert "UDF 'f': the connection object that registered it was garbage-collected" in first, (backend, first)
        assert "register the UDF again on the connection you query from" in first
        assert second == "[(42,)]"


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_class_udf_outliving_its_connection_object_is_set_up_again(backend):
    script = """
        con = duckdb.connect()
        register(con, "f", udf_module.Counter, ["BIGINT"], "BIGINT")
        cursor = con.cursor()
        del con; gc.collect()
        show(cursor)
    """
    result = run_child(script, backend)
    assert result.returncode == 0, result.report()
    assert result.stdout == f"{[(50005000,)]} {[(50005000,)]}\n".replace("50005000", str(sum(range(10000))))


@pytest.mark.parametrize("backend", ["subinterpreters", "processes"])
def test_a_pool_collected_with_the_connection_fails_clearly(backend):
    script = """
        pool = (duckdb_subinterp.InterpreterPool if BACKEND == "subinterpreters" else duckdb_subinterp.ProcessPool)(1)
        con = duckdb.connect()
        register(con, "f", udf_module.add_one, pool=pool)
        cursor = con.cursor()
        del con, pool; gc.collect()
        try:
            cursor.execute(QUERY).fetchall()
        except duckdb.Error as error:
            print(error)
    """
    result = run_child(script, backend)
    assert result.returncode == 0, result.report()
    assert "UDF 'f': the pool it was registered on was garbage-collected" in result.stdout


@pytest.mark.parametrize("backend", ["subinterpreters", "processes", "inline"])
def test_a_removed_udf_called_by_a_query_already_running_still_runs(backend):
    """remove_function on one connection while another's query calls the UDF: the query ends with DuckDB's answer."""
    script = """
        import threading, time
        con = duckdb.connect()
        con.execute("SET threads=1")
        register(con, "f", udf_module.slow_square)
        other = con.cursor()
        rows = 5000
        result = []
        query = threading.Thread(target=lambda: result.extend(other.sql(
            f"SELECT sum(f(i)) FROM range({rows}) t(i)").fetchall()))
        query.start()
        time.sleep(0.2)
        if BACKEND == "duckdb":
            con.remove_function("f")
        else:
            duckdb_subinterp.remove_function(con, "f")
        del con; gc.collect()
        query.join(60)
        print(result)
    """
    own = run_child(script, "duckdb")
    ours = run_child(script, backend)
    assert own.returncode == 0, own.report()
    assert ours.returncode == 0, ours.report()
    assert ours.stdout == own.stdout


DROPPED_POOLS = """
import _interpreters, psutil, threading, time
from duckdb_subinterp import InterpreterPool, ProcessPool
from duckdb_subinterp._backends.subinterpreters import InterpreterWorker
process = psutil.Process()
kind = sys.argv[2]

def snapshot():
    gc.collect()
    # The watchdog thread ends within its idle tick once no pool has a worker; a worker process is reaped.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (
        any(thread.name == "duckdb_subinterp watchdog" for thread in threading.enumerate()) or process.children()
    ):
        time.sleep(0.05)
    return {
        "interpreters": len(_interpreters.list_all()),
        "children": len(process.children()),
        "fds": process.num_fds(),
        "threads": process.num_threads(),
        "rss": process.memory_info().rss,
    }

def cell():
    # What a notebook cell does, run again and again: a connection, a pool, a UDF, a query.
    pool = (InterpreterPool if kind == "interpreters" else ProcessPool)(2)
    con = duckdb.connect()
    register(con, "f", udf_module.add_one, pool=pool)
    con.execute("SET threads=2")
    con.sql("SELECT sum(f(i)) FROM range(300000) t(i)").fetchall()
    pool.start_all()

for _ in range(3):  # the package's own threads (fan-out helpers, spawner) start on first use
    cell()
before = snapshot()
for _ in range(20):
    cell()
after = snapshot()
if kind == "interpreters":
    # What CPython itself keeps of an interpreter created and destroyed
    # (see the README): the floor for the 40 interpreters the cells made.
    InterpreterWorker().close()
    floor_before = snapshot()["rss"]
    for _ in range(40):
        InterpreterWorker().close()
    floor = snapshot()["rss"] - floor_before
else:
    floor = 0
print(before); print(after); print(floor)
"""


@pytest.mark.parametrize("kind", ["interpreters", "processes"])
def test_dropped_pools_are_freed_with_their_workers(kind):
    backend = "subinterpreters" if kind == "interpreters" else "processes"
    result = run_child(DROPPED_POOLS, backend, kind, timeout=300)
    assert result.returncode == 0, result.report()
    before, after, floor = (eval(line) for line in result.stdout.splitlines())
    for key in ("interpreters", "children", "fds", "threads"):
        assert after[key] <= before[key], (key, before, after)
    # Nothing of ours stays: beyond what CPython keeps of each destroyed interpreter, a few MiB at most.
    assert after["rss"] - before["rss"] <= floor * 1.2 + 8 * 2**20, (before, after, floor)
