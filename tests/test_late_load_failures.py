"""A UDF that loaded in one worker and then fails to load in others: visible, bounded, and failing once none has it.

The case: a class UDF whose ``__init__`` worked at registration and then
fails (its model file removed, a resource exhausted). Each scenario runs
in a child Python with a hard timeout, on both backends, with every batch
fanned out over the pool's idle workers (as ``test_fanout`` forces it), so
that each batch would try to load the UDF into more workers.
"""

from __future__ import annotations

import itertools
import json
import math
import textwrap

import pytest
from support.script_helper import POOL_PRELUDE, run_python

from duckdb_subinterp._engine.pool import LOAD_RETRIES, LOAD_RETRY_SECONDS, _LoadFailures

BACKENDS = ["subinterpreters", "processes"]
BATCHES = 74
ROWS = BATCHES * 2048

# Sets up a child: the UDF's __init__ calls are counted in a folder of its
# own; DuckDB's own UDF computing the same (`reference`) is the oracle.
SETUP = """
import tempfile
backend, threads = {backend!r}, {threads}
folder = tempfile.mkdtemp()
os.environ[reliability_udfs.INIT_LOG_VARIABLE] = folder
_dispatch.BatchDispatcher.always_fan_out = True  # every batch fans out over the idle workers
pool = make_pool(backend, {size}, timeout={timeout})
pool.start_all()
con = duckdb.connect()
con.execute(f"SET threads={{threads}}")
con.create_function("reference", reliability_udfs.triple, ["BIGINT"], "BIGINT")
warnings.simplefilter("error")  # any other warning fails the child
caught = []
warnings.showwarning = lambda message, *_: caught.append(message)
warnings.simplefilter("always", duckdb_subinterp.UDFLoadFailedWarning)
duckdb_subinterp.create_function(
    con, "scaled", reliability_udfs.LoadsOnce, ["BIGINT"], "BIGINT", backend=backend, pool=pool
)

def query(sql):
    try:
        return con.sql(sql).fetchall()
    except duckdb.Error as error:
        return str(error)

def holders():
    with pool._lock:
        return [worker for worker in pool._idle if worker.loaded]

def warned():
    return [{{"udf_name": w.udf_name, "worker": w.worker, "error": w.error, "message": str(w)}} for w in caught]
"""


def child_result(script: str, **options: object) -> dict:
    result = run_python("-c", POOL_PRELUDE + SETUP.format(**options) + textwrap.dedent(script))
    assert result.returncode == 0, result.report()
    assert "Fatal Python error" not in result.stderr, result.report()
    return json.loads(result.stdout.splitlines()[-1])


def assert_one_warning_naming_what_failed(warned: list[dict], backend: str) -> None:
    assert len(warned) == 1, warned
    (warning,) = warned
    assert warning["udf_name"] == "scaled"
    assert warning["worker"].startswith("interpreter " if backend == "subinterpreters" else "worker process ")
    assert "FileNotFoundError: model.bin is gone" in warning["error"]
    assert f"UDF 'scaled' could not be loaded in {warning['worker']}" in warning["message"]
    assert "raised FileNotFoundError: model.bin is gone" in warning["message"]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_late_init_failure_warns_once_and_the_query_runs_on_the_worker_that_has_it(backend, threads):
    outcome = child_result(
        f"""
        started = time.monotonic()
        ours = query("SELECT sum(scaled(i)), count(*) FROM range({ROWS}) t(i)")
        elapsed = time.monotonic() - started
        theirs = query("SELECT sum(reference(i)), count(*) FROM range({ROWS}) t(i)")
        stats = duckdb_subinterp.udf_stats(con, "scaled")
        print(json.dumps({{"ours": ours, "theirs": theirs, "elapsed": elapsed, "warned": warned(),
                          "calls": reliability_udfs.init_calls(folder), "batches": stats["batches"]}}))
        """,
        backend=backend,
        threads=threads,
        size=4,
        timeout=60,
    )
    assert outcome["ours"] == outcome["theirs"]
    assert outcome["batches"] == BATCHES
    assert_one_warning_naming_what_failed(outcome["warned"], backend)
    # One __init__ at registration, then the failed ones: one per DuckDB thread
    # at first (they may fail at once), then one after 1 s, 3 s, 7 s... Before
    # the bound, every batch tried a fresh worker: 37 calls for 74 batches.
    failed = outcome["calls"] - 1
    tries_in_time = math.floor(math.log2(outcome["elapsed"] / LOAD_RETRY_SECONDS + 1))
    assert 1 <= failed <= threads + tries_in_time, outcome


@pytest.mark.parametrize("backend", BACKENDS)
def test_tries_stop_after_load_retries_and_the_udf_keeps_running(backend):
    outcome = child_result(
        """
        _pool.LOAD_RETRY_SECONDS = 0.005  # the whole backoff in a fraction of a second
        results, calls, deadline = [], [], time.monotonic() + 60
        # Until no try came for 2 s (each needs a spare worker, which the pool may still be starting).
        changed = time.monotonic()
        while time.monotonic() - changed < 2:
            assert time.monotonic() < deadline, calls
            results.append(query("SELECT sum(scaled(i)) FROM range(20000) t(i)"))
            calls.append(reliability_udfs.init_calls(folder))
            if calls[-1] != calls[0 if len(calls) == 1 else -2]:
                changed = time.monotonic()
        theirs = query("SELECT sum(reference(i)) FROM range(20000) t(i)")
        print(json.dumps({"results": results, "theirs": theirs, "calls": calls, "warned": warned()}))
        """,
        backend=backend,
        threads=1,
        size=3,
        timeout=60,
    )
    assert all(result == outcome["theirs"] for result in outcome["results"]), outcome
    assert_one_warning_naming_what_failed(outcome["warned"], backend)
    # The first failure, then LOAD_RETRIES more tries; none after.
    assert outcome["calls"][-1] == 1 + 1 + LOAD_RETRIES, outcome


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_load_that_succeeds_again_starts_the_count_afresh(backend):
    outcome = child_result(
        """
        _pool.LOAD_RETRY_SECONDS = 0.05
        sql = "SELECT sum(scaled(i)) FROM range(20000) t(i)"
        deadline = time.monotonic() + 60
        first = query(sql)
        open(os.path.join(folder, reliability_udfs.LOADS_AGAIN), "w").close()  # the model file is back
        while len(holders()) < 2:  # a later try loads it
            assert time.monotonic() < deadline, "no worker loaded it again"
            query(sql)
        warned_before = len(caught)
        counting = bool(pool._load_failures)
        os.remove(os.path.join(folder, reliability_udfs.LOADS_AGAIN))  # gone again: a new episode
        # A worker that has it is retired (the pool's timeout stops row -1): the one started for it fails.
        query("SELECT scaled(i - 1) FROM range(1) t(i)")
        while len(caught) < 2:
            assert time.monotonic() < deadline, "the new failure did not warn"
            query(sql)
        theirs = query("SELECT sum(reference(i)) FROM range(20000) t(i)")
        print(json.dumps({"first": first, "last": query(sql), "theirs": theirs, "warned_before": warned_before,
                          "counting": counting}))
        """,
        backend=backend,
        threads=1,
        size=3,
        timeout=2,
    )
    assert outcome["first"] == outcome["last"] == outcome["theirs"]
    assert outcome["warned_before"] == 1  # the success itself warns nothing
    assert not outcome["counting"]  # it cleared the count


@pytest.mark.parametrize(
    ("backend", "how"),
    [
        ("subinterpreters", "timeout"),  # the watchdog stops the batch (BatchStopped) and retires the interpreter
        ("processes", "timeout"),  # the worker process is killed
        ("processes", "killed while idle"),  # from outside, between queries
    ],
)
def test_once_the_worker_that_has_it_is_lost_a_query_fails_with_the_init_error(backend, how):
    lose = (
        'lost = query("SELECT sum(scaled(i - 1)) FROM range(10) t(i)")  # row -1 never returns'
        if how == "timeout"
        else "os.kill(holders()[0].pid, signal.SIGKILL); lost = None; time.sleep(0.2)"
    )
    outcome = child_result(
        f"""
        first = query("SELECT sum(scaled(i)) FROM range({ROWS}) t(i)")
        theirs = query("SELECT sum(reference(i)) FROM range({ROWS}) t(i)")
        had = len(holders())
        {lose}
        after = query("SELECT sum(scaled(i)) FROM range({ROWS}) t(i)")
        print(json.dumps({{"first": first, "theirs": theirs, "had": had, "lost": lost, "after": after,
                          "warned": len(caught)}}))
        """,
        backend=backend,
        threads=1,
        size=3,
        timeout=3,
    )
    assert outcome["first"] == outcome["theirs"]
    assert outcome["had"] == 1 and outcome["warned"] == 1
    if how == "timeout":
        assert "PoolTimeoutError: UDF 'scaled'" in outcome["lost"]
    # As when __init__ fails on every worker: the query fails with its error, naming the UDF.
    after = outcome["after"]
    assert isinstance(after, str), outcome
    assert "UDFRegistrationError: UDF 'scaled': a worker cannot load it" in after
    assert "FileNotFoundError: model.bin is gone" in after


def test_the_backoff_doubles_and_the_tries_are_bounded():
    failures = _LoadFailures()
    failures.failed(0.0)  # the first failure, found by a load
    tried_at = [0.0]
    now = 0.0
    while now < 10_000 * LOAD_RETRY_SECONDS:
        if failures.may_retry(now):
            tried_at.append(now)
            failures.failed(now)  # each try fails too
        now += LOAD_RETRY_SECONDS / 4
    assert len(tried_at) == 1 + LOAD_RETRIES
    gaps = [later - earlier for earlier, later in itertools.pairwise(tried_at)]
    assert gaps == [LOAD_RETRY_SECONDS * 2**index for index in range(LOAD_RETRIES)]
