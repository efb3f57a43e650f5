"""sys.stdout, sys.stderr and sys.stdin in workers: as DuckDB's own UDFs have them, or refused saying why.

DuckDB's own UDF writes into the main interpreter's current sys.stdout, in
order with the main program's output; so does a worker's, handed back after
each batch. A worker cannot share the main program's buffered stdin: reading
it fails with a clear error, and the main program's stdin stays whole. The
scenarios that redirect a process's streams run in a child Python with a
hard timeout, each compared with DuckDB's own UDF in the same harness.
"""

from __future__ import annotations

import json
import textwrap

import duckdb
import pytest
from support.script_helper import POOL_PRELUDE, run_python
from udfs import reliability_udfs

import duckdb_subinterp

BACKENDS = ["subinterpreters", "processes"]

# Registers Noisy (a class UDF that prints when made, and for some rows) as
# DuckDB's own UDF (backend "duckdb") or on a pool of two workers.
REGISTER_NOISY = """
backend = {backend!r}
con = duckdb.connect()
con.execute("SET threads=1")  # one DuckDB thread: the rows, and what they print, come in order
print("main: before registration")
if backend == "duckdb":
    con.create_function("noisy", reliability_udfs.Noisy(), ["BIGINT"], "BIGINT")
else:
    pool = make_pool(backend, 2)
    duckdb_subinterp.create_function(
        con, "noisy", reliability_udfs.Noisy, ["BIGINT"], "BIGINT", backend=backend, pool=pool
    )
"""


def child(script: str, backend: str, **options: object) -> dict:
    code = POOL_PRELUDE + REGISTER_NOISY.format(backend=backend) + textwrap.dedent(script)
    result = run_python("-c", code, **options)
    assert result.returncode == 0, result.report()
    return json.loads(result.stdout.splitlines()[-1]) if result.stdout else {}


@pytest.mark.parametrize("buffered", [True, False], ids=["block-buffered", "PYTHONUNBUFFERED"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_stdout_and_stderr_redirected_to_files_get_prints_in_duckdbs_order(tmp_path, backend, buffered):
    """Files: a worker's prints land where DuckDB's own UDF's do, whether Python buffers its output or not."""
    script = """
    print("main: before the query")
    print("main: stderr before the query", file=sys.stderr)
    total = con.sql("SELECT sum(noisy(i)) FROM range(5000) t(i)").fetchall()  # three batches
    print("main: after the query", total)
    print("main: stderr after the query", file=sys.stderr)
    """
    written = {}
    for which in ("duckdb", backend):
        out, err = tmp_path / f"{which}.out", tmp_path / f"{which}.err"
        child(script, which, stdout=out, stderr=err, env={"PYTHONUNBUFFERED": None if buffered else "1"})
        written[which] = (out.read_text(), err.read_text())
    assert written[backend] == written["duckdb"]
    assert "row 4608" in written["duckdb"][0] and "row 4096 to stderr" in written["duckdb"][1]


@pytest.mark.parametrize("backend", BACKENDS)
def test_redirect_stdout_and_stderr_capture_a_udfs_prints(backend):
    script = """
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        con.sql("SELECT sum(noisy(i)) FROM range(3000) t(i)").fetchall()
    print(json.dumps({"out": out.getvalue(), "err": err.getvalue()}))
    """
    ours, theirs = child(script, backend), child(script, "duckdb")
    assert ours == theirs
    assert theirs["out"].startswith("row 0\nrow 512\n")
    assert theirs["err"] == "row 0 to stderr\nrow 1024 to stderr\nrow 2048 to stderr\n"


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_print_to_a_closed_stdout_fails_the_query_as_duckdbs_own_and_none_writes_nothing(backend):
    script = """
    real, closed = sys.stdout, io.StringIO()
    closed.close()
    outcome = {}
    for name, replacement in (("closed", closed), ("none", None)):
        sys.stdout = replacement
        try:
            outcome[name] = con.sql("SELECT sum(noisy(i)) FROM range(10) t(i)").fetchall()
        except duckdb.Error as error:
            outcome[name] = str(error)
        finally:
            sys.stdout = real
    print(json.dumps(outcome))
    """
    ours, theirs = child(script, backend), child(script, "duckdb")
    assert "ValueError: I/O operation on closed file" in theirs["closed"]
    assert "ValueError: I/O operation on closed file" in ours["closed"] and "UDF 'noisy'" in ours["closed"]
    assert ours["none"] == theirs["none"] == [[sum(range(1, 11))]]


@pytest.mark.parametrize("reader", ["read_stdin_line", "read_stdin_bytes", "read_input"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_reading_stdin_in_a_worker_fails_saying_why_and_leaves_the_pipe_to_the_main_program(backend, reader):
    script = f"""
    duckdb_subinterp.create_function(con, "reads", reliability_udfs.{reader}, ["BIGINT"], "BIGINT", backend=backend)
    try:
        con.sql("SELECT reads(1)").fetchall()
        failure = None
    except duckdb.Error as error:
        failure = str(error)
    print(json.dumps({{"failure": failure, "rest": sys.stdin.read()}}))
    """
    outcome = child(script, backend, input="first line\nsecond line\n")
    assert outcome["rest"] == "first line\nsecond line\n"
    failure = outcome["failure"]
    assert failure is not None
    assert "UnsupportedOperation: sys.stdin cannot be read in a duckdb_subinterp worker" in failure
    assert "pass the data to the UDF as arguments" in failure and "(raised in UDF 'reads')" in failure


@pytest.mark.parametrize("then", ["another query", "pool.close()"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_what_a_udfs_own_thread_prints_between_batches_comes_with_the_next_batch_or_at_close(tmp_path, backend, then):
    """Kept in the worker while no batch runs; handed over after the worker's next batch, or as it closes."""
    script = f"""
    pool = make_pool(backend, 1)
    duckdb_subinterp.create_function(
        con, "later", reliability_udfs.PrintsLater, ["BIGINT"], "BIGINT", backend=backend, pool=pool
    )
    con.sql("SELECT sum(later(i)) FROM range(10) t(i)").fetchall()
    time.sleep(1)  # the UDF's thread prints meanwhile
    print("main: after the sleep")
    {"con.sql('SELECT sum(later(i)) FROM range(10) t(i)').fetchall()" if then == "another query" else "pool.close()"}
    print("main: at the end")
    """
    out = tmp_path / "out"
    child(script, backend, stdout=out)
    lines = out.read_text().splitlines()
    assert lines[-3:] == ["main: after the sleep", "printed by the UDF's own thread", "main: at the end"], lines


@pytest.mark.parametrize("backend", ["inline", *BACKENDS, "subinterpreters, exec"])
def test_capsys_sees_a_udfs_prints(capsys, backend):
    pools = {
        "subinterpreters": duckdb_subinterp.InterpreterPool,
        "processes": duckdb_subinterp.ProcessPool,
        # As where the C extension was not built: through _interpreters.exec, no DirectCall.
        "subinterpreters, exec": lambda size: duckdb_subinterp.InterpreterPool(size, direct=False),
    }
    pool = pools[backend](1) if backend in pools else None
    backend = backend.partition(",")[0]
    con = duckdb.connect()
    con.execute("SET threads=1")
    try:
        duckdb_subinterp.create_function(
            con, "noisy", reliability_udfs.Noisy, ["BIGINT"], "BIGINT", backend=backend, pool=pool
        )
        assert con.sql("SELECT sum(noisy(i)) FROM range(1025) t(i)").fetchall() == [(sum(range(1, 1026)),)]
    finally:
        con.close()
        if pool is not None:
            pool.close()
    captured = capsys.readouterr()
    assert captured.out == "Noisy is ready\nrow 0\nrow 512\nrow 1024\n"
    assert captured.err == "row 0 to stderr\nrow 1024 to stderr\n"
