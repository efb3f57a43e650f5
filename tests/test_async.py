"""Async UDFs on every backend: DuckDB's own UDF (a blocking equivalent) is the oracle for values.

The HTTP tests call a local server in a child process (``SlowServer``) that
answers after a short delay, counts the requests in flight at once, and can
fail every Nth request.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
from array import array
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from async_http import Geocoder, HttpError, SlowServer, answer, fetch, fetch_sync
from conftest import UNCOMPILED
from support.script_helper import run_python
from udfs import async_udfs

import duckdb_subinterp
from duckdb_subinterp._cli import main
from duckdb_subinterp._registration import api as _registration
from duckdb_subinterp._worker import asynchronous as _async
from duckdb_subinterp._worker import protocol as _protocol
from duckdb_subinterp._worker import runtime as _runtime

REPO = Path(__file__).resolve().parents[1]
ROWS = 300


@pytest.fixture(scope="module")
def server() -> Iterator[SlowServer]:
    with SlowServer(0.01, max_seconds=900) as slow_server:
        yield slow_server


@pytest.fixture
def urls(con: duckdb.DuckDBPyConnection, server: SlowServer) -> str:
    """A table ``urls(i, url)``, every 7th url NULL; return the query of the expected answers' table."""
    con.execute(
        f"CREATE TABLE urls AS SELECT i, CASE WHEN i % 7 = 3 THEN NULL ELSE '{server.base}/geocode?q=' || i END AS url "
        f"FROM range({ROWS}) t(i)"
    )
    return "urls"


@pytest.fixture
def one_worker(backend: str, request: pytest.FixtureRequest) -> Iterator[duckdb_subinterp.WorkerPool | None]:
    """A pool of one worker of the backend (None for inline), so a test can look into that worker."""
    if backend == "inline":
        yield None
        return
    if request.node.callspec.params["backend"] == UNCOMPILED:
        pool: duckdb_subinterp.WorkerPool = duckdb_subinterp.InterpreterPool(1, direct=False)
    else:
        pool = duckdb_subinterp.BACKENDS[backend].pool_type(1)
    with pool:
        yield pool


def expected_answers(con: duckdb.DuckDBPyConnection, server: SlowServer) -> list[tuple]:
    """DuckDB's own UDF, blocking urllib per row, on the same rows (with no delay on the server)."""
    server.configure(delay=0.0)
    con.create_function("fetch_oracle", fetch_sync)
    rows = con.sql("SELECT i, fetch_oracle(url) FROM urls ORDER BY i").fetchall()
    con.remove_function("fetch_oracle")
    return rows


def open_fds() -> int:
    fds = os.listdir("/proc/self/fd")
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        # Ray's driver opens and closes sockets to the cluster's processes on its own schedule:
        # while it is connected, sockets are not counted (shared memory, pidfds and pipes still are).
        fds = [fd for fd in fds if not _is_socket(fd)]
    return len(fds)


def _is_socket(fd: str) -> bool:
    try:
        return os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
    except FileNotFoundError:  # closed meanwhile (the listing's own fd)
        return True


def pool_size(con: duckdb.DuckDBPyConnection, name: str) -> int:
    return _registration._dispatcher(con, name).pool.size


# ---------------------------------------------------------------------------
# Values: what DuckDB's own UDF gives, in row order, with NULLs
# ---------------------------------------------------------------------------


def test_results_in_row_order_with_nulls(backend: str, con: duckdb.DuckDBPyConnection, urls: str, server: SlowServer):
    expected = expected_answers(con, server)
    server.configure(delay=0.01)
    duckdb_subinterp.create_function(con, "get_url", fetch, backend=backend)
    assert con.sql("SELECT i, get_url(url) FROM urls ORDER BY i").fetchall() == expected
    assert expected[3] == (3, None) and expected[4] == (4, answer("4"))
    stats = duckdb_subinterp.udf_stats(con, "get_url")
    non_null = ROWS - len(range(3, ROWS, 7))
    assert stats["calls"] == non_null and stats["retries"] == stats["timeouts"] == 0
    assert server.stats()["requests"] == non_null


def test_calls_finishing_out_of_order_land_in_row_order(backend: str, con: duckdb.DuckDBPyConnection):
    query = "SELECT {}(i::INTEGER) FROM range(5000) t(i)"
    con.create_function("double_duckdb", async_udfs.double)
    duckdb_subinterp.create_function(con, "double_later", async_udfs.double_later, backend=backend)
    assert con.sql(query.format("double_later")).fetchall() == con.sql(query.format("double_duckdb")).fetchall()


def test_null_results_follow_null_handling(backend: str, con: duckdb.DuckDBPyConnection):
    con.create_function("nullable_duckdb", async_udfs.double_or_none_sync, null_handling="special")
    duckdb_subinterp.create_function(
        con, "nullable", async_udfs.double_or_none, null_handling="special", backend=backend
    )
    query = "SELECT {}(CASE WHEN i % 3 = 0 THEN NULL ELSE i::INTEGER END) FROM range(100) t(i)"
    assert con.sql(query.format("nullable")).fetchall() == con.sql(query.format("nullable_duckdb")).fetchall()
    # null_handling="default": None from non-NULL arguments is an error, in DuckDB's words.
    duckdb_subinterp.create_function(con, "strict", async_udfs.double_or_none, backend=backend)
    with pytest.raises(duckdb.Error, match="returned result contained NULL values"):
        con.sql("SELECT strict(i::INTEGER) FROM range(100) t(i)").fetchall()


def test_vectorized_async_udf_is_awaited_once_per_batch(backend: str, con: duckdb.DuckDBPyConnection):
    duckdb_subinterp.create_function(
        con, "doubles", async_udfs.doubles_later, ["BIGINT"], "BIGINT", type="vectorized", backend=backend
    )
    result = con.sql("SELECT sum(doubles(i)), count(doubles(i)) FROM range(10000) t(i)").fetchall()[0]
    assert result == (2 * sum(range(10000)), 10000)
    stats = duckdb_subinterp.udf_stats(con, "doubles")
    assert stats["calls"] == stats["slices"] and stats["peak_concurrency"] == 1  # a fanned-out batch: once a slice


@pytest.mark.parametrize("backend_name", ["inline", "processes"])
def test_arrow_async_udf(backend_name: str, con: duckdb.DuckDBPyConnection):
    source = textwrap.dedent(
        """
        import asyncio
        import pyarrow.compute as pc

        async def add_one(xs):
            await asyncio.sleep(0)
            return pc.add(xs, 1)
        """
    )
    namespace: dict = {}
    exec(compile(source, "<arrow udf>", "exec"), namespace)
    duckdb_subinterp.create_function(
        con, "add_one", namespace["add_one"], ["BIGINT"], "BIGINT", type="arrow", backend=backend_name
    )
    assert con.sql("SELECT sum(add_one(i)) FROM range(5000) t(i)").fetchall()[0] == (sum(range(1, 5001)),)


def test_callable_instance_with_async_call(backend: str, con: duckdb.DuckDBPyConnection):
    plus_ten = async_udfs.AsyncCallable(10)
    duckdb_subinterp.create_function(con, "plus_ten", plus_ten, ["BIGINT"], "BIGINT", backend=backend)
    assert con.sql("SELECT sum(plus_ten(i)) FROM range(3000) t(i)").fetchall()[0] == (sum(range(3000)) + 30000,)


def test_running_event_loop_in_the_calling_thread(backend: str, con: duckdb.DuckDBPyConnection):
    """As in a notebook, whose kernel runs a loop in the thread that runs the query (DuckDB's own thread too)."""
    con.execute("SET threads=1")
    duckdb_subinterp.create_function(con, "double_later", async_udfs.double_later, backend=backend)

    async def notebook_cell() -> tuple:
        outer = asyncio.get_running_loop()
        result = con.sql("SELECT sum(double_later(i::INTEGER)) FROM range(3000) t(i)").fetchall()[0]
        assert asyncio.get_running_loop() is outer
        return result

    assert asyncio.run(notebook_cell()) == (2 * sum(range(3000)),)


# ---------------------------------------------------------------------------
# Concurrency, retries, timeouts, exception handling
# ---------------------------------------------------------------------------


def test_concurrency_is_bounded_per_worker(backend: str, con: duckdb.DuckDBPyConnection, urls: str, server: SlowServer):
    server.configure(delay=0.005)
    duckdb_subinterp.create_function(con, "get_url", fetch, backend=backend, max_concurrency=3)
    con.sql("SELECT count(get_url(url)) FROM (SELECT url FROM urls UNION ALL SELECT url FROM urls)").fetchall()
    peak = server.stats()["peak"]
    assert 2 <= peak <= 3 * pool_size(con, "get_url")
    assert 2 <= duckdb_subinterp.udf_stats(con, "get_url")["peak_concurrency"] <= 3


def test_retries_make_every_row_right(backend: str, con: duckdb.DuckDBPyConnection, urls: str, server: SlowServer):
    expected = expected_answers(con, server)
    server.configure(delay=0.005, fail_every=3)
    duckdb_subinterp.create_function(con, "get_url", fetch, backend=backend, retries=2, retry_backoff=0.001)
    assert con.sql("SELECT i, get_url(url) FROM urls ORDER BY i").fetchall() == expected
    stats, served = duckdb_subinterp.udf_stats(con, "get_url"), server.stats()
    assert served["failures"] >= len(expected) // 4
    assert stats["retries"] == served["failures"] and stats["calls"] == served["requests"]


def test_without_retries_the_error_names_the_udf_and_the_row(
    backend: str, con: duckdb.DuckDBPyConnection, urls: str, server: SlowServer
):
    server.configure(delay=0.0, fail_every=3)
    duckdb_subinterp.create_function(con, "get_url", fetch, backend=backend)
    with pytest.raises(duckdb.Error) as raised:
        con.sql("SELECT get_url(url) FROM urls").fetchall()
    message = str(raised.value)
    assert "HttpError: HTTP 503 from http://127.0.0.1" in message
    assert re.search(r"\(row \d+ of the batch, arguments \('http://127\.0\.0\.1:\d+/geocode\?q=\d+',\)\)", message)
    assert "(raised in UDF 'get_url')" in message
    assert "in _read_response" in message  # the traceback, from the worker


def test_retry_on_names_what_is_retried(backend: str, con: duckdb.DuckDBPyConnection, urls: str, server: SlowServer):
    server.configure(delay=0.0, fail_every=3)
    duckdb_subinterp.create_function(con, "narrow", fetch, backend=backend, retries=3, retry_on=(ValueError,))
    with pytest.raises(duckdb.Error, match="HttpError"):
        con.sql("SELECT narrow(url) FROM urls").fetchall()
    server.configure(delay=0.0, fail_every=3)
    # A class of an importable module travels by reference.
    duckdb_subinterp.create_function(con, "by_reference", fetch, backend=backend, retries=1, retry_on=HttpError)
    assert con.sql("SELECT count(by_reference(url)) FROM urls").fetchall()[0][0] > 0


def test_retry_on_class_defined_where_the_udf_is(backend: str, con: duckdb.DuckDBPyConnection):
    """A function and an exception class defined in a notebook or a function both travel by value, as one class."""

    class LocalFlaky(Exception):
        pass

    seen: set[int] = set()

    async def local_flaky(x: int) -> int:
        if x not in seen:
            seen.add(x)
            raise LocalFlaky(x)
        return x

    duckdb_subinterp.create_function(
        con, "local_flaky", local_flaky, backend=backend, retries=1, retry_backoff=0, retry_on=LocalFlaky
    )
    assert con.sql("SELECT sum(local_flaky(i::INTEGER)) FROM range(500) t(i)").fetchall()[0] == (sum(range(500)),)
    assert duckdb_subinterp.udf_stats(con, "local_flaky")["retries"] == 500
    # A module's class by reference, with its module's function.
    duckdb_subinterp.create_function(
        con, "flaky", async_udfs.flaky, backend=backend, retries=2, retry_backoff=0, retry_on=async_udfs.FlakyError
    )
    assert con.sql("SELECT sum(flaky(i::INTEGER)) FROM range(500, 900) t(i)").fetchall()[0] == (sum(range(500, 900)),)


def test_timeout(backend: str, con: duckdb.DuckDBPyConnection, server: SlowServer):
    server.configure(delay=0.0)
    slow_row = "CASE WHEN i = 5 THEN '&delay=30' ELSE '' END"
    query = f"SELECT {{}}('{server.base}/geocode?q=' || i || {slow_row}) FROM range(20) t(i)"
    duckdb_subinterp.create_function(con, "get_url", fetch, backend=backend, timeout=0.3)
    started = time.monotonic()
    with pytest.raises(duckdb.Error) as raised:
        con.sql(query.format("get_url")).fetchall()
    assert time.monotonic() - started < 10
    message = str(raised.value)
    assert "TimeoutError: the call did not finish within timeout=0.3 s (row 5 of the batch" in message
    assert "(raised in UDF 'get_url')" in message
    duckdb_subinterp.create_function(
        con,
        "get_url_or_null",
        fetch,
        backend=backend,
        timeout=0.3,
        retries=1,
        retry_backoff=0,
        exception_handling="return_null",
    )
    values = [row[0] for row in con.sql(query.format("get_url_or_null")).fetchall()]
    assert values[5] is None and values[4] == answer("4") and values.count(None) == 1
    stats = duckdb_subinterp.udf_stats(con, "get_url_or_null")
    assert stats["timeouts"] == 2 and stats["retries"] == 1 and stats["calls"] == 21


def test_return_null(backend: str, con: duckdb.DuckDBPyConnection, urls: str, server: SlowServer):
    server.configure(delay=0.0, fail_every=4)
    duckdb_subinterp.create_function(con, "get_url", fetch, backend=backend, exception_handling="return_null")
    values = [row[0] for row in con.sql("SELECT get_url(url) FROM urls WHERE url IS NOT NULL").fetchall()]
    failures = server.stats()["failures"]
    assert failures > 0 and values.count(None) == failures
    # The oracle: DuckDB's own return_null on the same failures.
    con.create_function("fails_duckdb", async_udfs.fails_on_7_sync, exception_handling="return_null")
    duckdb_subinterp.create_function(
        con, "fails", async_udfs.fails_on_7, exception_handling="return_null", backend=backend
    )
    query = "SELECT {}(i::INTEGER) FROM range(20) t(i)"
    assert con.sql(query.format("fails")).fetchall() == con.sql(query.format("fails_duckdb")).fetchall()


def test_first_failing_row_fails_the_query_as_duckdb_does(backend: str, con: duckdb.DuckDBPyConnection):
    con.create_function("fails_duckdb", async_udfs.fails_on_7_sync)
    duckdb_subinterp.create_function(con, "fails", async_udfs.fails_on_7, backend=backend)
    with pytest.raises(duckdb.Error) as own:
        con.sql("SELECT fails_duckdb(i::INTEGER) FROM range(20) t(i)").fetchall()
    with pytest.raises(duckdb.Error) as ours:
        con.sql("SELECT fails(i::INTEGER) FROM range(20) t(i)").fetchall()
    assert type(ours.value) is type(own.value)
    assert str(ours.value).startswith(f"{str(own.value).splitlines()[0]} (row 7 of the batch, arguments (7,))")


def test_class_udf_client_is_reused_across_batches(
    backend: str, con: duckdb.DuckDBPyConnection, urls: str, server: SlowServer
):
    server.configure(delay=0.002)
    duckdb_subinterp.create_function(con, "geocode", Geocoder, backend=backend, max_concurrency=4)
    tokens = set()
    for _ in range(3):
        rows = con.sql("SELECT i, geocode(url) FROM urls WHERE url IS NOT NULL ORDER BY i").fetchall()
        assert all(value.split("|")[0] == answer(str(i)) for i, value in rows)
        tokens |= {value.split("|")[1] for _, value in rows}
    workers = pool_size(con, "geocode")
    assert len(tokens) <= workers  # one instance per worker, kept
    # Its kept connections were used again, batch after batch, on the worker's one loop.
    served = server.stats()
    assert served["requests"] == 3 * len(rows) and served["connections"] <= 4 * workers + 1


# ---------------------------------------------------------------------------
# Nothing left running: after a query, an interrupt, a stop, a closed pool
# ---------------------------------------------------------------------------


def worker_state(con: duckdb.DuckDBPyConnection, backend: str, pool) -> str:
    duckdb_subinterp.create_function(con, "worker_state", async_udfs.worker_state, backend=backend, pool=pool)
    try:
        return con.sql("SELECT worker_state(1)").fetchall()[0][0]
    finally:
        duckdb_subinterp.remove_function(con, "worker_state")


def test_nothing_left_after_queries_that_succeed_fail_or_time_out(
    backend: str, con: duckdb.DuckDBPyConnection, urls: str, server: SlowServer, one_worker
):
    server.configure(delay=0.0)
    options = {"backend": backend, "pool": one_worker}
    duckdb_subinterp.create_function(con, "get_url", fetch, **options)
    duckdb_subinterp.create_function(con, "get_url_soon", fetch, timeout=0.2, **options)
    con.sql("SELECT count(get_url(url)) FROM urls").fetchall()
    fds, threads = open_fds(), threading.active_count()
    queries = {
        "success": ("SELECT count(get_url(url)) FROM urls", None),
        # Row 11 fails while 31 slow calls are on the way: they are cancelled.
        "failure": (
            (
                f"SELECT count(get_url(CASE WHEN i = 11 THEN '{server.base}/nothing' ELSE url || '&delay=5' END)) "
                "FROM urls"
            ),
            "HTTP 404",
        ),
        "timeouts": ("SELECT count(get_url_soon(url || '&delay=5')) FROM urls", "TimeoutError"),
    }
    for label, (query, error) in queries.items():
        started = time.monotonic()
        if error is None:
            con.sql(query).fetchall()
        else:
            with pytest.raises(duckdb.Error, match=error):
                con.sql(query).fetchall()
        assert time.monotonic() - started < 4, label
        assert worker_state(con, backend, one_worker) == "tasks=0 running=False closed=False", label
        assert open_fds() == fds and threading.active_count() == threads, label


def test_interrupt_leaves_nothing_running(backend: str, con: duckdb.DuckDBPyConnection, server: SlowServer, one_worker):
    server.configure(delay=0.3)
    duckdb_subinterp.create_function(con, "get_url", fetch, backend=backend, pool=one_worker, max_concurrency=16)
    con.sql(f"SELECT count(get_url('{server.base}/geocode?q=' || i || '&delay=0')) FROM range(4) t(i)").fetchall()
    fds, threads = open_fds(), threading.active_count()
    timer = threading.Timer(0.3, con.interrupt)
    timer.start()
    started = time.monotonic()
    with pytest.raises(duckdb.InterruptException):
        con.sql(f"SELECT count(get_url('{server.base}/geocode?q=' || i)) FROM range(64) t(i)").fetchall()
    timer.join(5)
    # Without a way to stop a running batch, the batch ends first (4 rounds of 0.3 s here).
    assert time.monotonic() - started < 5
    assert worker_state(con, backend, one_worker) == "tasks=0 running=False closed=False"
    assert open_fds() == fds and threading.active_count() == threads


def test_stop_raised_into_the_batch_cancels_pending_calls_at_once(con: duckdb.DuckDBPyConnection, server: SlowServer):
    """BatchStopped, as the pool raises it into a runaway batch's thread: every call is cancelled, nothing is left.

    On backend="inline" the batch runs in this interpreter, where a test can raise into its thread: with
    SET threads=1, DuckDB runs the query on the thread that asked for it.
    """
    con.execute("SET threads=1")
    duckdb_subinterp.create_function(con, "get_url", fetch, backend="inline", max_concurrency=8)
    server.configure(delay=0.0)
    con.sql(f"SELECT count(get_url('{server.base}/geocode?q=' || i)) FROM range(8) t(i)").fetchall()
    fds, threads = open_fds(), threading.active_count()
    server.configure(delay=30.0)
    thread, outcome = _query_waiting_on_calls(con, server, rows=40, calls=8)
    batch_thread = thread.ident
    stopped = time.monotonic()
    stop = ctypes.py_object(_protocol.BatchStopped)
    assert ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(batch_thread), stop) == 1
    thread.join(10)
    assert not thread.is_alive() and time.monotonic() - stopped < 2  # not the 30 s the calls would take
    assert "BatchStopped" in str(outcome["error"])
    loop = _async.event_loop()
    assert not asyncio.all_tasks(loop) and not loop.is_running()
    assert open_fds() == fds and threading.active_count() == threads
    server.configure(delay=0.0)
    assert con.sql(f"SELECT count(get_url('{server.base}/geocode?q=' || i)) FROM range(40) t(i)").fetchall()[0] == (40,)


def _query_waiting_on_calls(
    con: duckdb.DuckDBPyConnection, server: SlowServer, *, rows: int, calls: int
) -> tuple[threading.Thread, dict[str, BaseException]]:
    """Start get_url over ``rows`` rows in a thread; return once ``calls`` requests reached the server (10 s at most).

    The thread puts what the query raised under "error" in the dict returned.
    """
    outcome: dict[str, BaseException] = {}

    def query() -> None:
        try:
            con.sql(f"SELECT count(get_url('{server.base}/geocode?q=' || i)) FROM range({rows}) t(i)").fetchall()
        except BaseException as error:
            outcome["error"] = error

    thread = threading.Thread(target=query)
    thread.start()
    deadline = time.monotonic() + 10
    while server.stats()["requests"] < calls and time.monotonic() < deadline:
        time.sleep(0.02)
    return thread, outcome


def test_closed_pool_leaves_nothing(
    backend: str, con: duckdb.DuckDBPyConnection, urls: str, server: SlowServer, request: pytest.FixtureRequest
):
    if backend == "inline":
        pytest.skip("inline has no pool")
    if backend == "ray":
        pytest.skip("a ray pool's workers hold nothing in this process: its actors live in the cluster")
    gc.collect()
    fds, threads, children = open_fds(), threading.active_count(), child_processes()
    direct = request.node.callspec.params["backend"] != UNCOMPILED
    pool_type = duckdb_subinterp.BACKENDS[backend].pool_type
    interpreters = pool_type is duckdb_subinterp.InterpreterPool
    pool = duckdb_subinterp.InterpreterPool(1, direct=direct) if interpreters else pool_type(1)
    server.configure(delay=0.002)
    duckdb_subinterp.create_function(con, "geocode", Geocoder, backend=backend, pool=pool)  # keeps connections open
    assert con.sql("SELECT count(geocode(url)) FROM urls").fetchall()[0][0] > 0
    assert open_fds() > fds
    pool.close()
    assert open_fds() == fds and threading.active_count() == threads
    assert child_processes() == children


def test_closing_a_process_pool_stops_its_async_batch(con: duckdb.DuckDBPyConnection, server: SlowServer):
    children = child_processes()
    pool = duckdb_subinterp.ProcessPool(1)
    duckdb_subinterp.create_function(con, "get_url", fetch, backend="processes", pool=pool)
    server.configure(delay=30.0)
    thread, outcome = _query_waiting_on_calls(con, server, rows=64, calls=32)
    closing = time.monotonic()
    pool.close()
    thread.join(10)
    assert not thread.is_alive() and time.monotonic() - closing < 5  # not the 30 s the calls would take
    assert "its pool was closed" in str(outcome["error"])
    assert child_processes() == children


def child_processes() -> set[str]:
    listed = subprocess.run(["pgrep", "-P", str(os.getpid())], capture_output=True, text=True, check=False)
    return set(listed.stdout.split())


CTRL_C_SCRIPT = """
import asyncio, os, signal, sys, threading, time
import duckdb, duckdb_subinterp
from duckdb_subinterp._worker import asynchronous as _async
from async_http import SlowServer, fetch

with SlowServer(30.0, max_seconds=60) as server:
    con = duckdb.connect()
    con.execute("SET threads=1")  # the main thread runs the batch
    duckdb_subinterp.create_function(con, "get_url", fetch, backend="inline")

    def press_ctrl_c():
        deadline = time.monotonic() + 10
        while server.stats()["in_flight"] < 32 and time.monotonic() < deadline:
            time.sleep(0.02)
        print("pressing", flush=True)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=press_ctrl_c, daemon=True).start()
    started = time.monotonic()
    try:
        con.sql(f"SELECT count(get_url('{server.base}/geocode?q=' || i)) FROM range(100) t(i)").fetchall()
    except BaseException as error:
        print("raised", type(error).__name__, str(error).splitlines()[0][:200])
    print(f"after {time.monotonic() - started:.1f} s")
    loop = _async.event_loop()
    print("tasks left", len(asyncio.all_tasks(loop)) if loop else 0)
"""


def test_ctrl_c_in_the_main_thread_cancels_an_inline_batch():
    result = run_python("-c", CTRL_C_SCRIPT, timeout=60, cwd=REPO)
    assert result.returncode == 0, result.report()
    assert "raised" in result.stdout and "tasks left 0" in result.stdout, result.stdout + result.stderr
    seconds = float(re.search(r"after ([\d.]+) s", result.stdout).group(1))
    assert seconds < 5  # the calls would take 30 s


@pytest.mark.parametrize(
    ("kind", "values", "options"),
    [
        ("native", [1, 2, 4], {}),
        ("native", [1, 2, 3, 4, 6], {}),  # a row fails
        ("native", [7, 7, 3, 1], {"timeout": 5}),  # a row fails while others wait: they are cancelled
        ("native", [5, 1], {"retries": 2}),
        ("native", [7, 1], {"timeout": 0.05, "retries": 1}),
        ("native", [1, 3, 4], {"errors_to_null": True}),
        ("vectorized", [1, 2], {}),
        ("vectorized", [1, 3], {}),
    ],
)
def test_a_batch_lets_go_of_its_buffers_without_the_cyclic_gc(kind: str, values: list[int], options: dict):
    """A failure kept in a reference cycle would hold the batch's buffers (shared memory, on processes)."""
    function = async_udfs.mixed if kind == "native" else async_udfs.mixed_batch
    asynchronous = (4, options.get("retries", 0), 0.0, ("builtins:Exception",), options.get("timeout"))
    spec = _protocol.UdfSpec(
        "mixed",
        "udfs.async_udfs:" + function.__name__,
        kind,
        (("number", "q"),),
        ("number", "q"),
        "BIGINT",
        True,
        options.get("errors_to_null", False),
        False,
        asynchronous=asynchronous,
    )
    runtime = _runtime.Runtime([0] * _protocol.STATUS_SLOTS)
    runtime.load(1, tuple(spec))
    gc.collect()
    gc.disable()
    try:
        data = bytearray(memoryview(array("q", values)).cast("B"))
        outputs = (memoryview(bytearray(8)), memoryview(bytearray(8 * len(values))))
        with contextlib.suppress(_protocol.UdfRaised):
            runtime.run((1, len(values), ((0, None, memoryview(data)),), outputs, None, _protocol.MODE_BUFFERS))
        data.extend(b"0" * 8)  # a BufferError if a view of it is still held
        assert gc.collect() == 0
    finally:
        gc.enable()
        _async.close_loop()


# ---------------------------------------------------------------------------
# Registration and counters
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_concurrency": 0}, "max_concurrency must be a positive int"),
        ({"max_concurrency": True}, "max_concurrency must be a positive int"),
        ({"retries": -1}, "retries must be an int >= 0"),
        ({"retries": 1.5}, "retries must be an int >= 0"),
        ({"retry_backoff": -1}, "retry_backoff must be a number of seconds >= 0"),
        ({"retry_backoff": float("nan")}, "retry_backoff must be a number of seconds >= 0"),
        ({"timeout": 0}, "timeout must be a positive number of seconds"),
        ({"timeout": "5"}, "timeout must be a positive number of seconds"),
        ({"retry_on": "ValueError"}, "retry_on must be an Exception subclass or a tuple of them"),
        ({"retry_on": (KeyboardInterrupt,)}, "retry_on must be an Exception subclass or a tuple of them"),
        ({"retry_on": ()}, "retry_on is empty"),
    ],
)
def test_bad_options_are_refused_naming_the_udf_and_the_option(con, options, message):
    with pytest.raises(duckdb_subinterp.UDFRegistrationError, match=re.escape(message)) as raised:
        duckdb_subinterp.create_function(con, "get_url", fetch, **options)
    assert "UDF 'get_url'" in str(raised.value)


def test_async_options_on_a_plain_function_are_refused(con):
    message = r"UDF 'plain': retries=2, timeout=5: these options apply to async def UDFs only"
    with pytest.raises(duckdb_subinterp.UDFRegistrationError, match=message):
        duckdb_subinterp.create_function(con, "plain", fetch_sync, retries=2, timeout=5)
    duckdb_subinterp.create_function(con, "plain", fetch_sync, max_concurrency=32)  # the default is fine


def test_async_generator_is_refused(con):
    async def numbers(x: int) -> int:
        yield x

    with pytest.raises(duckdb_subinterp.UDFRegistrationError, match="async generator"):
        duckdb_subinterp.create_function(con, "numbers", numbers)


def test_stats_count_calls_only_for_async_udfs(con: duckdb.DuckDBPyConnection):
    duckdb_subinterp.create_function(con, "plain", async_udfs.double)
    duckdb_subinterp.create_function(con, "later", async_udfs.double_later)
    con.sql("SELECT sum(plain(i::INTEGER)), sum(later(i::INTEGER)) FROM range(3000) t(i)").fetchall()
    assert "calls" not in duckdb_subinterp.udf_stats(con, "plain")
    stats = duckdb_subinterp.udf_stats(con, "later")
    assert stats["calls"] == 3000 and 1 <= stats["peak_concurrency"] <= 32


CLI_MODULE = textwrap.dedent(
    """
    import duckdb_subinterp
    from async_http import http_get

    @duckdb_subinterp.export(retries=3, retry_backoff=0.001)
    async def geocode(url: str) -> str:
        return await http_get(url)
    """
)


def test_cli_stats_show_calls_and_retries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, server: SlowServer):
    (tmp_path / "cli_async_udfs.py").write_text(CLI_MODULE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    server.configure(delay=0.0, fail_every=5)
    query = f"SELECT count(geocode('{server.base}/geocode?q=' || i)) FROM range(200) t(i)"
    try:
        assert main(["sql", query, "-m", "cli_async_udfs", "--stats"]) == 0
    finally:
        sys.modules.pop("cli_async_udfs", None)
    stats = capsys.readouterr().err
    retries = server.stats()["failures"]
    assert f"{200 + retries:,} calls, {retries:,} retries, 0 timeouts, peak concurrency " in stats
