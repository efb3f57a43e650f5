"""Reliability: load, faults and bad input, with nothing lost and nothing hung.

Every result is compared with the ``inline`` backend (DuckDB's own
``create_function``). Long runs live in ``test_reliability_slow.py``
behind the ``slow`` marker.
"""

from __future__ import annotations

import _interpreters
import _thread
import contextlib
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import duckdb
import pytest
from udfs import half_import_helper, half_import_udf, reliability_udfs, state_module_a, udf_module

import duckdb_subinterp
from duckdb_subinterp import InterpreterPool, UDFRegistrationError
from duckdb_subinterp._backends.subinterpreters import InterpreterWorker

ROWS = 6_000  # three DuckDB batches, the last one partial
WAIT = 60  # seconds: the bound of every wait in these tests; a hang fails instead of blocking


def assert_at_rest(pool: duckdb_subinterp.WorkerPool) -> None:
    """Every started worker is back in the pool: none was lost by a failure.

    A worker a costly batch asked for (fan-out) may still be starting in the background: waited for.
    """
    grower = pool._grower
    if grower is not None:
        grower.join(WAIT)
    with pool._lock:
        assert len(pool._idle) == pool.started, f"{pool!r}: {len(pool._idle)} idle of {pool.started} started"


def interpreter_count() -> int:
    return len(_interpreters.list_all())


@pytest.fixture
def pool() -> Iterator[InterpreterPool]:
    before = interpreter_count()
    with InterpreterPool(2, timeout=WAIT) as fresh:
        yield fresh
    assert interpreter_count() == before, f"closing the pool left interpreters behind: {_interpreters.list_all()}"


def make_table(con: duckdb.DuckDBPyConnection, rows: int = ROWS) -> None:
    """A table with NULLs, spread over row groups so DuckDB threads scan it in parallel."""
    con.execute(
        f"CREATE OR REPLACE TABLE t AS SELECT i, CASE WHEN i % 7 = 0 THEN NULL ELSE i END AS x FROM range({rows}) r(i)"
    )


# (name, function, parameters, return type, options): the UDFs the load tests mix.
LOAD_UDFS: list[tuple[str, Any, list[str], str, dict[str, Any]]] = [
    ("by_reference", udf_module.add_one, ["BIGINT"], "BIGINT", {}),
    ("by_value", lambda x: x * 7 - 3, ["BIGINT"], "BIGINT", {}),
    ("as_text", reliability_udfs.as_text, ["BIGINT"], "VARCHAR", {}),
    ("vectorized", reliability_udfs.vectorized_square, ["BIGINT"], "BIGINT", {"type": "vectorized"}),
    (
        "returns_null",
        reliability_udfs.fail_on_multiples_of_5000,
        ["BIGINT"],
        "BIGINT",
        {"exception_handling": "return_null"},
    ),
]
LOAD_QUERIES = [f"SELECT i, {name}(x) FROM t ORDER BY i" for name, *_ in LOAD_UDFS]


def register_load_udfs(con: duckdb.DuckDBPyConnection, backend: str, pool: InterpreterPool | None) -> None:
    for name, function, parameters, return_type, options in LOAD_UDFS:
        duckdb_subinterp.create_function(
            con, name, function, parameters, return_type, backend=backend, pool=pool, **options
        )


def expected_results() -> dict[str, list[tuple[Any, ...]]]:
    """What DuckDB's own UDFs return for every load query."""
    con = duckdb.connect()
    make_table(con)
    register_load_udfs(con, "inline", None)
    results = {query: con.sql(query).fetchall() for query in LOAD_QUERIES}
    con.close()
    return results


@pytest.fixture(scope="module")
def expected() -> dict[str, list[tuple[Any, ...]]]:
    return expected_results()


def run_all(tasks: list[Callable[[], Any]], workers: int) -> list[Any]:
    """Run ``tasks`` on ``workers`` threads at once; every result within WAIT seconds."""
    start = threading.Barrier(min(workers, len(tasks)), timeout=WAIT)

    def started(task: Callable[[], Any]) -> Any:
        with contextlib.suppress(threading.BrokenBarrierError):  # fewer tasks left than threads: just run
            start.wait()
        return task()

    with ThreadPoolExecutor(workers) as executor:
        futures = [executor.submit(started, task) for task in tasks]
        return [future.result(timeout=WAIT) for future in futures]


# ---------------------------------------------------------------------------
# 1. Load
# ---------------------------------------------------------------------------


@pytest.fixture(params=["subinterpreters", "processes"])
def shared_pool(request: pytest.FixtureRequest) -> Iterator[tuple[str, duckdb_subinterp.WorkerPool]]:
    pool_type = duckdb_subinterp.BACKENDS[request.param].pool_type
    with pool_type(2, timeout=WAIT) as fresh:
        yield request.param, fresh


def test_eight_connections_four_threads_each_share_one_pool(shared_pool, expected):
    """200 queries from 32 threads on 8 databases (4 DuckDB threads each) through a 2-worker pool."""
    backend, pool = shared_pool
    connections = []
    for _ in range(8):
        con = duckdb.connect()
        con.execute("SET threads=4")  # 32 DuckDB threads in all, for 2 workers
        make_table(con)
        register_load_udfs(con, backend, pool)
        connections.append(con)
    cursors = [con.cursor() for con in connections for _ in range(4)]
    rng = random.Random(6)
    plan = [(cursors[index % len(cursors)], rng.choice(LOAD_QUERIES)) for index in range(200)]
    by_cursor: dict[int, list[str]] = {}
    for cursor, query in plan:
        by_cursor.setdefault(id(cursor), []).append(query)

    def queries_of(cursor: duckdb.DuckDBPyConnection) -> Callable[[], list[bool]]:
        return lambda: [cursor.sql(query).fetchall() == expected[query] for query in by_cursor[id(cursor)]]

    outcomes = run_all([queries_of(cursor) for cursor in cursors], workers=len(cursors))
    assert sum(len(batch) for batch in outcomes) == 200
    assert all(all(batch) for batch in outcomes)
    assert pool.started <= pool.size
    assert_at_rest(pool)
    for con in connections:
        con.close()


def test_more_duckdb_threads_than_workers(expected):
    with InterpreterPool(1, timeout=WAIT) as single:
        con = duckdb.connect()
        con.execute("SET threads=8")
        make_table(con, ROWS)
        register_load_udfs(con, "subinterpreters", single)
        for query in LOAD_QUERIES:
            assert con.sql(query).fetchall() == expected[query]
        assert single.started == 1
        assert_at_rest(single)


def test_two_pools_at_once(expected):
    before = interpreter_count()
    with InterpreterPool(2, timeout=WAIT) as first, InterpreterPool(1, timeout=WAIT) as second:
        connections = []
        for pool in (first, second, first, second):
            con = duckdb.connect()
            con.execute("SET threads=2")
            make_table(con)
            register_load_udfs(con, "subinterpreters", pool)
            connections.append(con)

        def all_queries(con: duckdb.DuckDBPyConnection) -> Callable[[], bool]:
            return lambda: all(con.sql(query).fetchall() == expected[query] for query in LOAD_QUERIES * 2)

        assert all(run_all([all_queries(con) for con in connections], workers=len(connections)))
        assert_at_rest(first)
        assert_at_rest(second)
        assert interpreter_count() == before + first.started + second.started
    assert interpreter_count() == before


def shifted_by(shift: int) -> Callable[[int], int]:
    return lambda x: x + shift


def test_registering_and_removing_udfs_while_queries_run(pool, expected):
    con = duckdb.connect()
    con.execute("SET threads=2")
    make_table(con)
    register_load_udfs(con, "subinterpreters", pool)
    query = LOAD_QUERIES[0]
    stop = threading.Event()

    def query_until_stopped() -> int:
        cursor = con.cursor()
        done = 0
        while not stop.is_set():
            assert cursor.sql(query).fetchall() == expected[query]
            done += 1
        return done

    def churn() -> int:
        other = duckdb.connect()
        try:
            for round_ in range(40):
                name = f"churn_{round_}"
                function = udf_module.add_one if round_ % 2 else shifted_by(round_)
                duckdb_subinterp.create_function(other, name, function, ["BIGINT"], "BIGINT", pool=pool)
                shift = 1 if round_ % 2 else round_
                assert other.sql(f"SELECT {name}(i) FROM range(3000) t(i)").fetchall() == [
                    (i + shift,) for i in range(3000)
                ]
                duckdb_subinterp.remove_function(other, name)
                with pytest.raises(duckdb.CatalogException):
                    other.sql(f"SELECT {name}(1)").fetchall()
            return 40
        finally:
            stop.set()
            other.close()

    with ThreadPoolExecutor(3) as executor:
        readers = [executor.submit(query_until_stopped) for _ in range(2)]
        churned = executor.submit(churn)
        assert churned.result(timeout=WAIT) == 40
        assert all(reader.result(timeout=WAIT) > 0 for reader in readers)
    assert_at_rest(pool)
    # Only this connection's five UDFs are still known to the pool.
    assert len(pool._specs) == len(LOAD_UDFS)
    con.close()


def test_process_worker_crash_under_load(expected):
    """One query's worker dies (SIGSEGV) while other queries share the process pool: only that query fails."""
    import psutil

    other_children = {child.pid for child in psutil.Process().children()}  # other tests' pools
    with duckdb_subinterp.ProcessPool(2, timeout=WAIT) as processes:
        healthy_con = duckdb.connect()
        healthy_con.execute("SET threads=2")
        make_table(healthy_con)
        register_load_udfs(healthy_con, "processes", processes)
        crashing_con = duckdb.connect()
        make_table(crashing_con, 12_000)
        duckdb_subinterp.create_function(
            crashing_con, "crash", reliability_udfs.crash_on_4999, backend="processes", pool=processes
        )

        def healthy() -> bool:
            cursor = healthy_con.cursor()
            return all(cursor.sql(query).fetchall() == expected[query] for query in LOAD_QUERIES)

        def crashing() -> bool:
            with pytest.raises(duckdb.InvalidInputException, match=r"WorkerDiedError: UDF 'crash'.*SIGSEGV"):
                crashing_con.cursor().sql("SELECT sum(crash(x)) FROM t").fetchall()
            return True

        assert all(run_all([healthy, crashing, healthy, crashing, healthy, crashing], workers=6))
        # The pool replaced the dead workers and reaped them: no zombie, no worker above its size.
        assert_at_rest(processes)
        assert processes.started <= processes.size
        children = [child for child in psutil.Process().children() if child.pid not in other_children]
        assert len(children) <= processes.size
        assert not [child for child in children if child.status() == psutil.STATUS_ZOMBIE]
        assert crashing_con.sql("SELECT sum(crash(x)) FROM t WHERE i < 4999").fetchall() == [
            (sum(2 * i for i in range(4999) if i % 7),)
        ]
        healthy_con.close()
        crashing_con.close()


# ---------------------------------------------------------------------------
# 3. Faults
# ---------------------------------------------------------------------------


def test_udf_raising_on_some_batches_leaves_other_queries_and_batches_intact(pool, expected):
    failing_con = duckdb.connect()
    failing_con.execute("SET threads=2")
    make_table(failing_con, 12_000)
    duckdb_subinterp.create_function(failing_con, "picky", reliability_udfs.fail_on_multiples_of_5000, pool=pool)
    healthy_con = duckdb.connect()
    healthy_con.execute("SET threads=2")
    make_table(healthy_con)
    register_load_udfs(healthy_con, "subinterpreters", pool)

    def failing() -> bool:
        with pytest.raises(duckdb.InvalidInputException, match=r"ValueError: refusing 4999\n\(raised in UDF 'picky'\)"):
            failing_con.cursor().sql("SELECT sum(picky(x)) FROM t").fetchall()
        return True

    def healthy() -> bool:
        cursor = healthy_con.cursor()
        return all(cursor.sql(query).fetchall() == expected[query] for query in LOAD_QUERIES)

    assert all(run_all([failing, healthy, failing, healthy], workers=4))
    # The failing UDF's other rows are fine, and later queries on the same workers too.
    assert failing_con.sql("SELECT sum(picky(x)) FROM t WHERE i < 4999").fetchall() == [
        (sum(2 * i for i in range(4999) if i % 7),)
    ]
    assert_at_rest(pool)


def test_return_null_matches_duckdb(pool):
    results = []
    for backend, chosen in (("inline", None), ("subinterpreters", pool)):
        con = duckdb.connect()
        make_table(con, 12_000)
        duckdb_subinterp.create_function(
            con,
            "picky",
            reliability_udfs.fail_on_multiples_of_5000,
            exception_handling="return_null",
            backend=backend,
            pool=chosen,
        )
        results.append(con.sql("SELECT i, picky(x) FROM t ORDER BY i").fetchall())
    assert results[0] == results[1]
    assert (4999, None) in results[1]


def test_interrupt_returns_within_a_few_batches_and_pool_is_usable(pool):
    con = duckdb.connect()
    con.execute("SET threads=2")
    duckdb_subinterp.create_function(
        con, "slow", reliability_udfs.slow_batch, ["BIGINT"], "BIGINT", type="vectorized", pool=pool
    )
    batches = 1_000  # 20 s of batches if nothing stopped it
    timer = threading.Timer(0.3, con.interrupt)
    started = time.monotonic()
    timer.start()
    with pytest.raises(duckdb.InterruptException):
        con.sql(f"SELECT sum(slow(i)) FROM range({batches * 2048}) t(i)").fetchall()
    elapsed = time.monotonic() - started
    timer.join(WAIT)
    # Liveness, not speed: a batch takes 20 ms; allow for a loaded machine.
    assert elapsed < 0.3 + 100 * reliability_udfs.BATCH_SECONDS, f"interrupt took {elapsed:.2f} s"
    assert_at_rest(pool)
    assert con.sql("SELECT sum(slow(i)) FROM range(5000) t(i)").fetchall() == [(sum(range(5000)),)]


def test_keyboard_interrupt_in_main_thread_loses_no_worker(pool):
    """SIGINT lands at arbitrary points of the dispatcher; the query fails as with DuckDB's own UDFs."""
    con = duckdb.connect()
    con.execute("SET threads=2")
    # Enough rows that most interrupts land in a query (one of 200,000 took under 10 ms once native
    # UDFs of numbers ran as one C loop).
    make_table(con, 2_000_000)
    duckdb_subinterp.create_function(con, "f", udf_module.add_one, pool=pool)
    rng = random.Random(7)
    interrupted = 0
    for _ in range(15):
        timer = threading.Timer(rng.uniform(0.005, 0.1), _thread.interrupt_main)
        try:
            try:
                timer.start()
                con.sql("SELECT sum(f(x)) FROM t").fetchall()
            finally:
                # Once the timer thread is gone, a pending interrupt is raised here at the latest.
                timer.cancel()
                timer.join(WAIT)
        except KeyboardInterrupt:
            interrupted += 1
        except (duckdb.Error, RuntimeError) as error:
            # DuckDB's own UDFs report it this way too (a UDF raised KeyboardInterrupt, or the query stopped).
            # pytest.raises cannot say "if it fails at all": a query may end before the interrupt.
            assert "KeyboardInterrupt" in str(error) or "interrupted" in str(error), error  # noqa: PT017
            interrupted += 1
        assert_at_rest(pool)
    assert interrupted > 0
    expected = sum(i + 1 for i in range(2_000_000) if i % 7)
    assert con.sql("SELECT sum(f(x)) FROM t").fetchall() == [(expected,)]


# CPython checks for signals when any call returns, so an interrupt landing just after open() returns
# in the UDF module's read (registration reads it to pin its source) leaves that file object to the
# collector, which closes it with a ResourceWarning (ignored outside dev mode). No Python code that
# opens a file can shut that window; what this test holds to is that no interpreter is left behind.
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_keyboard_interrupt_while_workers_start_leaks_no_interpreter(con):
    """A signal during interpreter creation (milliseconds) must not drop the new interpreter's id."""
    before = interpreter_count()
    rng = random.Random(8)
    for round_ in range(40):
        timer = threading.Timer(rng.uniform(0.0, 0.03), _thread.interrupt_main)
        try:
            try:
                timer.start()
                with InterpreterPool(1, timeout=WAIT) as fresh:
                    duckdb_subinterp.create_function(con, f"f{round_}", udf_module.add_one, pool=fresh)
            finally:
                timer.cancel()
                timer.join(WAIT)
        except KeyboardInterrupt:
            pass
        assert interpreter_count() == before, f"round {round_}: {_interpreters.list_all()}"


def test_keyboard_interrupt_while_a_pool_closes_is_raised_once_every_worker_is_closed(con, monkeypatch):
    # Ctrl-C landing in close() after the idle workers left the pool's lists: they close first.
    before = interpreter_count()
    begin_close = InterpreterWorker.begin_close

    def interrupted_begin_close(self: InterpreterWorker) -> None:
        _thread.interrupt_main()
        begin_close(self)

    monkeypatch.setattr(InterpreterWorker, "begin_close", interrupted_begin_close)
    pool = InterpreterPool(2, timeout=WAIT)
    duckdb_subinterp.create_function(con, "f", udf_module.add_one, pool=pool)
    pool.start_all()
    assert interpreter_count() == before + 2
    with pytest.raises(KeyboardInterrupt):
        pool.close()
    assert pool.closed
    assert interpreter_count() == before


class InterruptedCondition(threading.Condition):
    """A Condition hit by KeyboardInterrupt on entering ``__exit__``, where a signal can land before the release."""

    def __exit__(self, *exc_info: object) -> None:
        raise KeyboardInterrupt


def test_keyboard_interrupt_cannot_leave_the_pool_lock_held(con):
    with InterpreterPool(1, timeout=WAIT) as single:
        single._condition = InterruptedCondition(single._lock)

        def register_remove_and_query() -> Any:
            try:
                duckdb_subinterp.create_function(con, "f", udf_module.add_one, pool=single)
                single.unregister(-1)
            except KeyboardInterrupt:
                return "interrupted while the pool lock was held"
            return con.cursor().sql("SELECT sum(f(i)) FROM range(5000) t(i)").fetchall()

        with ThreadPoolExecutor(1) as executor:
            result = executor.submit(register_remove_and_query).result(timeout=WAIT)
        assert result == [(sum(range(1, 5001)),)]
        assert_at_rest(single)


def test_pool_close_while_a_query_runs_is_a_clean_error():
    before = interpreter_count()
    pool = InterpreterPool(2, timeout=WAIT)
    con = duckdb.connect()
    con.execute("SET threads=2")
    duckdb_subinterp.create_function(
        con, "slow", reliability_udfs.slow_batch, ["BIGINT"], "BIGINT", type="vectorized", pool=pool
    )
    timer = threading.Timer(0.2, pool.close)
    timer.start()
    with pytest.raises(duckdb.InvalidInputException, match=r"BrokenPoolError: UDF 'slow': its pool was closed"):
        con.sql(f"SELECT sum(slow(i)) FROM range({1000 * 2048}) t(i)").fetchall()
    timer.join(WAIT)
    assert pool.started == 0
    assert interpreter_count() == before, "busy workers must be destroyed when their batch ends"


@pytest.fixture
def half_import_flag() -> Iterator[str]:
    open(half_import_udf.FAIL_FLAG, "w").close()
    yield half_import_udf.FAIL_FLAG
    if os.path.exists(half_import_udf.FAIL_FLAG):
        os.remove(half_import_udf.FAIL_FLAG)


def test_import_failing_half_way_leaves_no_half_imported_state(con, half_import_flag):
    with InterpreterPool(1, timeout=WAIT) as single:
        with pytest.raises(UDFRegistrationError, match=r"(?s)UDF 'f'.*failed half-way through its import"):
            duckdb_subinterp.create_function(con, "f", half_import_udf.imports_started, pool=single)
        os.remove(half_import_flag)
        duckdb_subinterp.create_function(con, "f", half_import_udf.imports_started, pool=single)
        # The worker that ran the failed import was discarded: the one that loads the
        # module now has not seen the failed attempt's side effects.
        assert con.sql("SELECT f(1)").fetchall() == [(1,)]
        assert_at_rest(single)
    assert half_import_helper.IMPORTS_STARTED == ["udfs.half_import_udf"]  # the main interpreter's own import


def test_module_refused_twice_in_the_same_worker(con):
    with InterpreterPool(1, timeout=WAIT) as single:
        for _ in range(2):
            with pytest.raises(duckdb_subinterp.ModuleNotIsolatedError, match=r"numpy"):
                duckdb_subinterp.create_function(con, "root", "udfs.numpy_udfs:root", pool=single)
        duckdb_subinterp.create_function(con, "f", udf_module.add_one, pool=single)
        assert con.sql("SELECT f(1)").fetchall() == [(2,)]


@pytest.mark.parametrize(
    ("function", "pattern"),
    [
        (reliability_udfs.recurse, r"RecursionError: maximum recursion depth exceeded"),
        (reliability_udfs.deep_repr, r"RecursionError: maximum recursion depth exceeded"),
        (reliability_udfs.exhaust_memory, r"UDF: MemoryError: \n\(raised in UDF 'bad'\)"),
    ],
    ids=["recursion", "c-recursion", "memory"],
)
def test_recursion_and_memory_errors_fail_the_query_only(con, pool, function, pattern):
    duckdb_subinterp.create_function(con, "bad", function, ["BIGINT"], "BIGINT", pool=pool)
    duckdb_subinterp.create_function(con, "good", udf_module.add_one, pool=pool)
    with pytest.raises(duckdb.InvalidInputException, match=pattern) as raised:
        con.sql("SELECT bad(i) FROM range(10) t(i)").fetchall()
    assert "UDF 'bad'" in str(raised.value)
    assert_at_rest(pool)
    assert con.sql("SELECT sum(good(i)) FROM range(5000) t(i)").fetchall() == [(sum(range(1, 5001)),)]


# ---------------------------------------------------------------------------
# 4. Bad input
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("function", "return_type", "udf_type", "pattern"),
    [
        (lambda xs: ["\ud800"] * len(xs), "VARCHAR", "vectorized", r"surrogate '\\ud800' at position 0 is not allowed"),
        (lambda xs: list(range(10 * len(xs))), "BIGINT", "vectorized", r"returned \d+0 values for a batch of \d+ rows"),
        (lambda xs: {"a": 1}, "BIGINT", "vectorized", r"returned dict, but a vectorized UDF must return"),
    ],
    ids=["vectorized-surrogate", "ten-times-too-long", "dict"],
)
def test_bad_results_beyond_test_errors(con, pool, function, return_type, udf_type, pattern):
    duckdb_subinterp.create_function(con, "bad", function, ["BIGINT"], return_type, type=udf_type, pool=pool)
    with pytest.raises(duckdb.InvalidInputException, match=pattern) as raised:
        con.sql("SELECT bad(i) FROM range(3000) t(i)").fetchall()
    assert "UDFResultError: " in str(raised.value) and "UDF 'bad'" in str(raised.value)
    assert_at_rest(pool)


def test_huge_results_match_duckdb(pool):
    """Three 32 MiB strings: far past the first buffer estimate, so the result is copied into grown buffers."""
    results = []
    for backend, chosen in (("inline", None), ("subinterpreters", pool)):
        con = duckdb.connect()
        duckdb_subinterp.create_function(con, "huge", reliability_udfs.huge_text, backend=backend, pool=chosen)
        results.append(con.sql("SELECT i, length(huge(i)), md5(huge(i)) FROM range(3) t(i) ORDER BY i").fetchall())
        con.close()
    assert results[0] == results[1]
    assert results[1][2][1] == 32 << 20


def test_udf_cannot_write_into_duckdbs_input(con, pool):
    con.execute("CREATE TABLE numbers AS SELECT i FROM range(5000) t(i)")
    duckdb_subinterp.create_function(
        con, "mutate", reliability_udfs.mutate_input, ["BIGINT"], "BIGINT", type="vectorized", pool=pool
    )
    with pytest.raises(
        duckdb.InvalidInputException, match=r"TypeError: cannot modify read-only memory\n\(raised in UDF 'mutate'\)"
    ):
        con.sql("SELECT i, mutate(i) FROM numbers").fetchall()
    assert con.sql("SELECT sum(i), min(i) FROM numbers").fetchall() == [(sum(range(5000)), 0)]


def test_inputs_are_read_only_even_when_arrow_buffers_are_writable(pool):
    """A column DuckDB did not hand over as-is (cast here) still reaches the UDF read-only."""
    import pyarrow as pa

    con = duckdb.connect()
    duckdb_subinterp.create_function(
        con, "mutate", reliability_udfs.mutate_input, ["BIGINT"], "BIGINT", type="vectorized", pool=pool
    )
    dispatcher = duckdb_subinterp._registration.api._dispatcher(con, "mutate")
    column = pa.chunked_array([pa.array(range(10), type=pa.int32())])  # cast to int64: a fresh, mutable buffer
    with pytest.raises(duckdb_subinterp.UDFExecutionError, match=r"cannot modify read-only memory"):
        dispatcher(column)


@pytest.mark.parametrize("name", ["my func", "my-func", "1abc", 'quo"te', "Ünïcödé", "select", "x" * 200])
def test_names_that_are_not_identifiers_behave_as_in_duckdb(name):
    quoted = '"' + name.replace('"', '""') + '"'
    results = []
    for backend in ("inline", "subinterpreters"):
        con = duckdb.connect()
        duckdb_subinterp.create_function(con, name, udf_module.add_one, backend=backend)
        results.append(con.sql(f"SELECT {quoted}(i) FROM range(3) t(i)").fetchall())
        duckdb_subinterp.remove_function(con, name)
        con.close()
    assert results[0] == results[1] == [(1,), (2,), (3,)]


@pytest.mark.parametrize(
    ("function", "pattern"),
    [
        (
            "udfs.udf_module:no_such_function",
            r"cannot import function 'udfs.udf_module:no_such_function'.*AttributeError",
        ),
        ("no_such_package.sub:f", r"cannot import function 'no_such_package.sub:f'.*ModuleNotFoundError"),
        ("udfs.udf_module:", r"cannot import function 'udfs.udf_module:'"),
    ],
)
def test_references_that_do_not_resolve_are_refused(con, function, pattern):
    with pytest.raises(UDFRegistrationError, match=pattern):
        duckdb_subinterp.create_function(con, "f", function, ["BIGINT"], "BIGINT")


# ---------------------------------------------------------------------------
# 5. Isolation
# ---------------------------------------------------------------------------


def test_module_state_is_per_module_and_per_interpreter(con):
    """UDFs of one module share its globals inside an interpreter; other modules and the main interpreter do not."""
    with InterpreterPool(1, timeout=WAIT) as single:
        duckdb_subinterp.create_function(con, "a_count", "udfs.state_module_a:count", ["BIGINT"], "BIGINT", pool=single)
        duckdb_subinterp.create_function(
            con, "a_count_too", "udfs.state_module_a:count_too", ["BIGINT"], "BIGINT", pool=single
        )
        duckdb_subinterp.create_function(con, "b_count", "udfs.state_module_b:count", ["BIGINT"], "BIGINT", pool=single)
        assert con.sql("SELECT max(a_count(i)) FROM range(10) t(i)").fetchall() == [(10,)]
        # Same module, same interpreter: the second UDF sees the first one's appends.
        assert con.sql("SELECT max(a_count_too(i)) FROM range(5) t(i)").fetchall() == [(15,)]
        # Another module's global of the same name starts empty.
        assert con.sql("SELECT max(b_count(i)) FROM range(5) t(i)").fetchall() == [(5,)]
    with InterpreterPool(1, timeout=WAIT) as other:
        duckdb_subinterp.create_function(con, "a_fresh", "udfs.state_module_a:count", ["BIGINT"], "BIGINT", pool=other)
        # Another pool is other interpreters: the module is imported afresh there.
        assert con.sql("SELECT max(a_fresh(i)) FROM range(3) t(i)").fetchall() == [(3,)]
    assert state_module_a.CALLS == []


def test_by_value_function_works_on_a_copy_of_main_objects(con, pool):
    seen: list[int] = []

    def remember(x: int) -> int:
        seen.append(x)
        return len(seen)

    duckdb_subinterp.create_function(con, "remember", remember, pool=pool)
    counts = [row[0] for row in con.sql("SELECT remember(i) FROM range(100) t(i)").fetchall()]
    assert max(counts) >= 1
    assert seen == [], "a by-value UDF appended to the main interpreter's list"
