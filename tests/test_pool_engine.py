"""The pool engine's contract, on fake workers: who gets a worker, when one starts, loads, closes, and is given up.

No DuckDB and no real worker: ``support.fake_pool`` says what each worker does and
records what the engine asked of it. Time the engine reads is driven by a
fake clock where a test is about durations (``clock``), and the grace
periods are shrunk where a test must wait them out. Every wait has a
timeout (``WAIT``): a test fails, it does not hang.
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import re
import textwrap
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any

import pytest
from support.fake_pool import WAIT, FakePool, FakeWorker, ForkFragileFakePool, Script, StartFailed, batch
from support.script_helper import POOL_PRELUDE, run_python

from duckdb_subinterp._engine import pool as _pool
from duckdb_subinterp._engine import watchdog as _watchdog
from duckdb_subinterp._engine.pool import (
    LOAD_RETRIES,
    LOAD_RETRY_SECONDS,
    RECLAIM_SECONDS,
    WorkerFailure,
    close_all,
)
from duckdb_subinterp._errors import (
    BrokenPoolError,
    PoolTimeoutError,
    UDFExecutionError,
    UDFLoadFailedWarning,
    UDFRegistrationError,
)

UDF = 1  # registered on every pool the tests make
OTHER = 2


# -- helpers ---------------------------------------------------------------------


@pytest.fixture
def make_pool() -> Iterator[Callable[..., FakePool]]:
    """Make fake pools with ``UDF`` registered and the script's knobs set; close them after the test."""
    pools: list[FakePool] = []

    def make(size: int = 2, *, timeout: float = WAIT, kind: type[FakePool] = FakePool, **knobs: Any) -> FakePool:
        pool = kind(size, timeout=timeout)
        for name, value in knobs.items():
            assert hasattr(pool.script, name), name
            setattr(pool.script, name, value)
        pool.register(UDF, ("spec",))
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.script.block_runs = False
        for worker in pool.script.workers:  # a failed test leaves no batch blocked
            worker.release.set()
        if pool.script.start_gate is not None:
            pool.script.start_gate.set()
        pool.close()


class Clock:
    """The pool engine's ``time``: ``monotonic()`` says what the test set."""

    def __init__(self) -> None:
        self.now = 1000.0  # not 0: a worker never given back has returned_at 0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """Stop the pool engine's clock; tests using it must not make the engine wait."""
    clock = Clock()
    monkeypatch.setattr(_pool, "time", clock)
    return clock


def in_background(function: Callable[..., Any], *arguments: Any, **options: Any) -> Future[Any]:
    """Call ``function`` on a thread of its own; its future's ``result(WAIT)`` fails a test instead of hanging it."""
    future: Future[Any] = Future()

    def call() -> None:
        try:
            future.set_result(function(*arguments, **options))
        except BaseException as error:
            future.set_exception(error)

    threading.Thread(target=call, name="test background call", daemon=True).start()
    return future


def wait_until(condition: Callable[[], object], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {WAIT} s: {what}")
        time.sleep(0.001)


def run_batch(pool: FakePool, udf_id: int = UDF) -> FakeWorker:
    """Run one batch as the dispatcher does (lease, run, give back); return the worker it ran on."""
    with pool.lease(udf_id, "f") as worker:
        worker.run(batch(udf_id))
    assert isinstance(worker, FakeWorker)
    return worker


def started_running(pool: FakePool, number: int = 0) -> FakeWorker:
    """Wait for worker ``number`` to start and block in a batch; return it."""
    wait_until(lambda: len(pool.script.workers) > number, f"worker {number} starts")
    worker = pool.script.workers[number]
    assert worker.running.wait(WAIT), f"no batch ran on {worker.description}"
    return worker


def assert_settled(pool: FakePool) -> None:
    """No batch runs: the pool counts exactly its idle workers; each other worker it started was closed once."""
    with pool._lock:
        idle, busy, started = list(pool._idle), set(pool._busy), pool._started
    assert not busy
    assert started == len(idle), (started, idle)
    for worker in pool.script.workers:
        if not worker.forgotten:
            assert worker.closes == (0 if worker in idle else 1), (worker.description, worker.closes)


# -- checkout --------------------------------------------------------------------


def test_workers_start_lazily_one_per_checkout_up_to_the_pools_size(make_pool):
    pool = make_pool(3)
    assert pool.started == 0 and pool.script.calls == []  # making a pool starts nothing
    held = [pool.checkout(UDF, "f") for _ in range(3)]
    assert [worker.number for worker in held] == [0, 1, 2] and pool.started == 3
    for worker in held:
        pool.checkin(worker)
    assert_settled(pool)


def test_an_idle_worker_is_reused_and_loads_a_udf_once(make_pool):
    pool = make_pool(2)
    workers = {run_batch(pool) for _ in range(3)}
    assert [worker.number for worker in workers] == [0]
    assert pool.script.called("start") == [(None, 0)]
    assert pool.script.called("load") == [(0, UDF)]
    assert pool.script.called("run") == [(0, UDF)] * 3
    assert_settled(pool)


def test_a_removed_udf_is_dropped_by_each_worker_at_its_next_checkout(make_pool):
    pool = make_pool(1)
    pool.register(OTHER, ("other",))
    run_batch(pool, UDF)
    run_batch(pool, OTHER)
    pool.unregister(OTHER)
    assert pool.script.called("unload") == []  # not before the worker's next checkout
    worker = run_batch(pool, UDF)
    assert worker.loaded == {UDF} and pool.script.called("unload") == [(0, OTHER)]
    assert pool.script.called("load") == [(0, UDF), (0, OTHER)]  # UDF stays loaded: not loaded again
    pool.register(OTHER, ("other, again",))
    run_batch(pool, OTHER)
    assert pool.script.called("load")[-1] == (0, OTHER)
    assert_settled(pool)


@pytest.mark.parametrize("timeout", [WAIT, math.inf])
def test_a_checkout_waits_for_the_worker_another_thread_gives_back(make_pool, timeout):
    pool = make_pool(1, timeout=timeout)
    held = pool.checkout(UDF, "f")
    waiting = in_background(pool.checkout, UDF, "f")
    wait_until(lambda: pool._waiting == 1, "the second checkout waits")
    assert not waiting.done()
    pool.checkin(held)
    assert waiting.result(WAIT) is held
    pool.checkin(held)
    assert pool.script.called("start") == [(None, 0)]
    assert_settled(pool)


def test_a_checkout_that_finds_no_free_worker_within_the_timeout_fails_after_it(make_pool):
    pool = make_pool(1, timeout=0.05)
    held = pool.checkout(UDF, "f")
    began = time.monotonic()
    with pytest.raises(PoolTimeoutError, match=r"became free within 0\.05 s"):
        pool.checkout(UDF, "f")
    assert 0.05 <= time.monotonic() - began < WAIT
    pool.checkin(held)
    assert_settled(pool)


@pytest.mark.parametrize(
    ("size", "timeout", "pattern"),
    [
        (0, 1.0, "pool size must be a positive int, got 0"),
        (-1, 1.0, "pool size must be a positive int, got -1"),
        (2.0, 1.0, "pool size must be a positive int, got 2.0"),
        ("2", 1.0, "pool size must be a positive int, got '2'"),
        (1, 0, re.escape("timeout must be a positive number of seconds (or math.inf), got 0")),
        (1, -1.0, "got -1.0"),
        (1, math.nan, "got nan"),
    ],
)
def test_a_pool_refuses_a_size_or_timeout_it_cannot_use(size, timeout, pattern):
    with pytest.raises(ValueError, match=pattern):
        FakePool(size, timeout=timeout)


# -- checkin ---------------------------------------------------------------------


@pytest.mark.parametrize("how", ["checkin(broken=True)", "Worker.broken"])
def test_a_broken_worker_is_closed_at_checkin_and_replaced_on_demand(make_pool, how):
    pool = make_pool(1)
    worker = pool.checkout(UDF, "f")
    if how == "Worker.broken":  # as a backend marks a worker it found dead
        worker.broken = True
        pool.checkin(worker)
    else:
        pool.checkin(worker, broken=True)
    assert worker.closes == 1 and pool.started == 0
    assert pool.script.called("start") == [(None, 0)]  # replaced when asked, not before
    fresh = run_batch(pool)
    assert fresh.number == 1 and fresh.loaded == {UDF}
    assert_settled(pool)


@pytest.mark.parametrize(
    ("given_back_by", "age", "taken"),
    [
        ("another thread", 0.0, False),  # that thread is between two batches: it wants it back
        ("another thread", RECLAIM_SECONDS / 2, False),
        ("another thread", RECLAIM_SECONDS * 1.5, True),  # spare: that thread's query or scan ended
        ("this thread", 0.0, True),  # the caller's own
        ("another thread, lent", 0.0, True),  # it ran slices of a fan-out: nobody waits to take it back
    ],
)
def test_take_idle_leaves_a_worker_another_thread_just_gave_back(make_pool, clock, given_back_by, age, taken):
    pool = make_pool(1)
    worker = pool.checkout(UDF, "f")
    if given_back_by == "this thread":
        pool.checkin(worker)
    else:
        in_background(pool.checkin, worker, lent=given_back_by.endswith("lent")).result(WAIT)
    clock.now += age
    assert pool.take_idle(UDF, "f", 1, grow=False) == ([worker] if taken else [])
    if taken:
        pool.checkin(worker)
    assert_settled(pool)


@pytest.mark.parametrize("count", [0, -1])
def test_take_idle_of_no_worker_takes_none_and_starts_none(make_pool, count):
    pool = make_pool(2)
    run_batch(pool)
    assert pool.take_idle(UDF, "f", count) == []
    assert pool.started == 1 and len(pool._idle) == 1 and pool._grower is None
    assert_settled(pool)


def test_take_idle_without_grow_starts_no_worker(make_pool):
    pool = make_pool(3)
    idle = run_batch(pool)
    assert pool.take_idle(UDF, "f", 3, grow=False) == [idle]
    assert pool.started == 1 and pool.script.called("start") == [(None, 0)] and pool._grower is None
    pool.checkin(idle, lent=True)
    assert_settled(pool)


def test_take_idle_grows_one_worker_in_the_background_and_reserves_its_slot(make_pool):
    pool = make_pool(2)
    first = run_batch(pool)
    pool.script.start_gate = threading.Event()  # the next start is slow
    pool.script.starting.clear()
    assert pool.take_idle(UDF, "f", 2) == [first]  # without waiting for the one that starts
    assert pool.script.starting.wait(WAIT)
    assert pool.started == 2 and pool._growing
    assert pool.take_idle(UDF, "f", 1) == []
    # The slot is taken: a checkout does not start a third worker, it waits for the one starting.
    waiting = in_background(pool.checkout, UDF, "f")
    wait_until(lambda: pool._waiting == 1, "the checkout waits")
    pool.script.start_gate.set()
    grown = waiting.result(WAIT)
    assert grown.number == 1 and pool.script.called("start") == [(None, 0), (None, 1)]
    assert pool.script.called("load") == [(0, UDF), (1, UDF)]  # loaded by the checkout that took it
    pool.checkin(first, lent=True)
    pool.checkin(grown)
    assert_settled(pool)


def test_a_worker_that_fails_to_start_in_the_background_frees_its_slot(make_pool):
    pool = make_pool(2)
    first = run_batch(pool)
    pool.script.fail_starts = 1
    assert pool.take_idle(UDF, "f", 2) == [first]
    assert pool._grower is not None
    pool._grower.join(WAIT)
    assert not pool._grower.is_alive()
    assert pool.started == 1 and not pool._growing
    pool.checkin(first, lent=True)
    assert run_batch(pool) is first
    assert_settled(pool)


# -- start_all -------------------------------------------------------------------


def test_start_all_starts_every_missing_worker_and_then_none(make_pool):
    pool = make_pool(3)
    run_batch(pool)
    assert pool.start_all() == 2
    assert pool.start_all() == 0
    assert pool.started == 3 and len(pool._idle) == 3
    assert pool.script.called("load") == [(0, UDF)]  # started, not loaded: a UDF loads on first use
    assert_settled(pool)


def test_a_worker_that_starts_after_start_all_stopped_waiting_is_still_the_pools(make_pool):
    # start_all waits for each start at most the pool's timeout; a start slower than that
    # must still end up in the pool, not as a slot counted forever with no worker in it.
    pool = make_pool(1, timeout=0.05)
    pool.script.start_gate = threading.Event()
    assert pool.start_all() == 0
    pool.script.start_gate.set()
    wait_until(lambda: pool.script.workers, "the slow start ends")
    (late,) = pool.script.workers
    assert run_batch(pool) is late
    assert_settled(pool)


# -- load failures ---------------------------------------------------------------


def test_a_load_that_fails_where_no_worker_has_the_udf_fails_the_checkout_and_closes_the_worker(make_pool):
    pool = make_pool(2, fail_loads=math.inf)
    with pytest.raises(WorkerFailure) as caught:  # no warning: the error itself is the news
        pool.checkout(UDF, "f")
    assert caught.value.loading
    error = caught.value.for_udf("f")
    assert isinstance(error, UDFRegistrationError)
    assert str(error) == "UDF 'f': a worker cannot load it: fake worker 0 cannot load UDF 1"
    (worker,) = pool.script.workers
    assert worker.closes == 1  # what its failed import left behind is not reused
    assert_settled(pool)


def test_a_load_failing_in_a_later_worker_warns_once_and_the_udf_runs_on_the_worker_that_has_it(make_pool, clock):
    pool = make_pool(3, fail_loads_from=1)
    holder = pool.checkout(UDF, "f")
    pool.start_all()  # workers 1 and 2, without the UDF
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert pool.take_idle(UDF, "f", 2, grow=False) == []  # one try per fan-out
        clock.now += LOAD_RETRY_SECONDS
        assert pool.take_idle(UDF, "f", 1, grow=False) == []  # the other worker, tried after the backoff
    assert [type(warning.message) for warning in caught] == [UDFLoadFailedWarning]
    warning = caught[0].message
    assert isinstance(warning, UDFLoadFailedWarning)
    assert warning.udf_name == "f" and warning.worker in {"fake worker 1", "fake worker 2"}
    assert warning.error == f"{warning.worker} cannot load UDF 1"
    assert str(warning).startswith(f"UDF 'f' could not be loaded in {warning.worker} ({warning.error}); it runs on ")
    assert f"Another worker is tried in {LOAD_RETRY_SECONDS:g} s" in str(warning)
    assert [worker.closes for worker in pool.script.workers] == [0, 1, 1]
    pool.checkin(holder)
    assert pool.take_idle(UDF, "f", 2, grow=False) == [holder]  # the one that has it
    pool.checkin(holder, lent=True)
    assert run_batch(pool) is holder
    assert_settled(pool)


def test_once_the_worker_that_has_the_udf_died_idle_a_checkout_fails_with_the_load_error(make_pool):
    pool = make_pool(2, fail_loads_from=1)
    holder = pool.checkout(UDF, "f")
    pool.start_all()
    with pytest.warns(UDFLoadFailedWarning):
        assert pool.take_idle(UDF, "f", 1, grow=False) == []  # worker 1 fails to load it
    pool.checkin(holder)
    holder.broken = True  # its process died while idle: alive() says so
    with pytest.raises(WorkerFailure) as caught:  # it tries once more, then fails as where none ever had it
        pool.checkout(UDF, "f")
    assert caught.value.loading and caught.value.text == "fake worker 2 cannot load UDF 1"
    assert [worker.closes for worker in pool.script.workers] == [1, 1, 1]
    assert_settled(pool)


def test_a_checkout_whose_load_failed_waits_for_the_worker_that_has_the_udf(make_pool):
    pool = make_pool(2, fail_loads_from=1)
    holder = pool.checkout(UDF, "f")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        waiting = in_background(pool.checkout, UDF, "f")
        wait_until(lambda: pool._waiting_for_loaded == 1, "the checkout waits for the worker that has the UDF")
        pool.checkin(holder)
        assert waiting.result(WAIT) is holder
    assert [type(warning.message) for warning in caught] == [UDFLoadFailedWarning]
    assert pool.script.workers[1].closes == 1
    pool.checkin(holder)
    assert_settled(pool)


class CountingTime:
    """The pool engine's ``time``: the real clock, counting how often it is read."""

    def __init__(self) -> None:
        self.reads = 0

    def monotonic(self) -> float:
        self.reads += 1
        return time.monotonic()


def test_a_checkout_waiting_for_the_worker_that_has_the_udf_sleeps_rather_than_spins(make_pool, monkeypatch):
    # After its own load failed, a checkout waits for a worker that has the UDF;
    # once the backoff's time has passed, it must go on sleeping, not poll.
    monkeypatch.setattr(_pool, "LOAD_RETRY_SECONDS", 0.01)
    counting = CountingTime()
    monkeypatch.setattr(_pool, "time", counting)
    pool = make_pool(2, fail_loads_from=1)
    holder = pool.checkout(UDF, "f")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UDFLoadFailedWarning)
        waiting = in_background(pool.checkout, UDF, "f")
        wait_until(lambda: pool._waiting_for_loaded == 1, "the checkout waits for the worker that has the UDF")
        reads = counting.reads
        time.sleep(0.2)  # twenty times the backoff
        polled = counting.reads - reads
        pool.checkin(holder)
        assert waiting.result(WAIT) is holder
    assert polled < 20, f"the waiting checkout read the clock {polled} times in 0.2 s"
    pool.checkin(holder)
    assert_settled(pool)


def test_tries_in_other_workers_back_off_doubling_and_stop_after_load_retries(make_pool, clock):
    pool = make_pool(2, fail_loads_from=1)
    holder = pool.checkout(UDF, "f")  # has the UDF, and stays busy
    began, tried_at = clock.now, []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        while clock.now - began < 4 * LOAD_RETRY_SECONDS * 2**LOAD_RETRIES:
            pool.start_all()  # an idle worker without the UDF, where the last try closed one
            loads = len(pool.script.called("load"))
            assert pool.take_idle(UDF, "f", 1, grow=False) == []
            if len(pool.script.called("load")) > loads:
                tried_at.append(clock.now - began)
            clock.now += LOAD_RETRY_SECONDS / 4
    backoffs = [LOAD_RETRY_SECONDS * 2**index for index in range(LOAD_RETRIES)]
    assert tried_at == [sum(backoffs[:index]) for index in range(LOAD_RETRIES + 1)]
    assert len(caught) == 1
    pool.checkin(holder)
    assert run_batch(pool) is holder  # the UDF still runs where it loaded
    assert_settled(pool)


def test_a_load_that_succeeds_again_starts_the_count_and_the_warning_afresh(make_pool, clock):
    pool = make_pool(3)
    holder = pool.checkout(UDF, "f")
    pool.script.fail_loads = 1
    pool.start_all()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert pool.take_idle(UDF, "f", 1, grow=False) == []
        assert pool._load_failures[UDF].count == 1
        clock.now += LOAD_RETRY_SECONDS
        (loaded,) = pool.take_idle(UDF, "f", 1, grow=False)  # it loads there now
        assert UDF not in pool._load_failures
        pool.checkin(loaded, lent=True)
        pool.script.fail_loads = 1
        pool.start_all()
        assert pool.take_idle(UDF, "f", 1, grow=False) == []
    assert [type(warning.message) for warning in caught] == [UDFLoadFailedWarning] * 2
    assert pool._load_failures[UDF].count == 1
    pool.checkin(holder)
    assert_settled(pool)


# -- the watchdog's give-up ------------------------------------------------------


def test_a_given_up_worker_frees_its_slot_and_is_closed_when_its_batch_returns(make_pool):
    pool = make_pool(1)
    stuck = pool.checkout(UDF, "f")
    waiting = in_background(pool.checkout, UDF, "f")
    wait_until(lambda: pool._waiting == 1, "a checkout waits for the only worker")
    assert pool._give_up(stuck)
    assert not pool._give_up(stuck)  # once
    assert stuck.given_up and stuck.broken
    fresh = waiting.result(WAIT)  # woken, it started another in the given-up one's place
    assert fresh.number == 1 and stuck.closes == 0 and pool.started == 1
    pool.checkin(fresh)
    pool.checkin(stuck)  # its batch finally returned
    assert stuck.closes == 1 and pool.started == 1
    assert_settled(pool)


def test_an_idle_worker_is_not_given_up(make_pool):
    pool = make_pool(1)
    idle = run_batch(pool)
    assert not pool._give_up(idle)
    assert not idle.given_up and pool.started == 1
    assert_settled(pool)


# -- close -----------------------------------------------------------------------


def test_close_closes_idle_workers_at_once_and_a_second_close_does_nothing(make_pool):
    pool = make_pool(2)
    pool.start_all()
    pool.close()
    assert pool.closed and pool.started == 0
    assert [worker.closes for worker in pool.script.workers] == [1, 1]
    # Every worker is asked to begin closing before the first one closes.
    asked = [call[0] for call in pool.script.calls if call[0] in {"begin_close", "close"}]
    assert asked == ["begin_close", "begin_close", "close", "close"]
    pool.close()
    assert [worker.closes for worker in pool.script.workers] == [1, 1]
    assert_settled(pool)


def test_close_all_closes_every_worker_even_where_begin_close_raises():
    script = Script()
    workers = [script.start(), script.start()]
    workers[0].begin_close = lambda: 1 / 0  # type: ignore[method-assign]
    close_all(workers)
    assert [worker.closes for worker in workers] == [1, 1]


def test_close_leaves_a_busy_worker_it_cannot_abort_to_close_when_its_batch_ends(make_pool):
    pool = make_pool(1, block_runs=True)
    running = in_background(run_batch, pool)
    worker = started_running(pool)
    began = time.monotonic()
    pool.close()
    assert time.monotonic() - began < _pool.CLOSE_GRACE  # nothing to wait for: it cannot be stopped
    assert worker.closes == 0 and pool.script.called("abort") == []
    worker.release.set()
    assert running.result(WAIT) is worker
    assert worker.closes == 1 and pool.started == 0
    assert_settled(pool)


def test_close_gives_an_abortable_batch_close_grace_then_aborts_it(make_pool, monkeypatch):
    monkeypatch.setattr(_pool, "CLOSE_GRACE", 0.05)
    pool = make_pool(1, block_runs=True, abortable=True)
    running = in_background(run_batch, pool)
    worker = started_running(pool)
    began = time.monotonic()
    pool.close()
    assert 0.05 <= time.monotonic() - began < WAIT
    reason = "was stopped because its pool was closed while it ran a batch"
    assert pool.script.called("abort") == [(0, reason)]
    with pytest.raises(BrokenPoolError, match=f"the batch {reason}"):
        running.result(WAIT)
    assert worker.closes == 1
    assert_settled(pool)


def test_close_does_not_abort_an_abortable_batch_that_ends_within_close_grace(make_pool):
    pool = make_pool(1, block_runs=True, abortable=True)
    running = in_background(run_batch, pool)
    worker = started_running(pool)
    ending = threading.Timer(0.05, worker.release.set)
    ending.start()
    began = time.monotonic()
    pool.close()
    assert time.monotonic() - began < _pool.CLOSE_GRACE
    ending.join(WAIT)
    assert running.result(WAIT) is worker and pool.script.called("abort") == []
    assert worker.closes == 1
    assert_settled(pool)


def test_a_worker_that_finishes_starting_after_close_is_closed_and_its_checkout_fails(make_pool):
    pool = make_pool(1)
    pool.script.start_gate = threading.Event()
    checkout = in_background(pool.checkout, UDF, "f")
    assert pool.script.starting.wait(WAIT)
    pool.close()
    pool.script.start_gate.set()
    with pytest.raises(BrokenPoolError, match="its pool was closed"):
        checkout.result(WAIT)
    (worker,) = pool.script.workers
    assert worker.closes == 1 and pool.started == 0
    assert_settled(pool)


def test_a_pool_dropped_without_close_closes_its_idle_workers_and_nothing_keeps_it_alive():
    pool = FakePool(2)
    pool.register(UDF, ("spec",))
    pool.start_all()
    run_batch(pool)
    with _pool.watchdog._lock:  # not in the middle of a look
        assert _pool.watchdog._thread is not None  # it runs, and must not hold the pool
    script, dropped = pool.script, weakref.ref(pool)
    del pool

    def collected() -> bool:
        gc.collect()
        return dropped() is None

    # The watchdog holds the pools for the time of one look, never while it sleeps.
    wait_until(collected, "the dropped pool is collected")
    assert [worker.closes for worker in script.workers] == [1, 1]


# -- fork ------------------------------------------------------------------------


def test_prepare_fork_closes_idle_workers_and_holds_checkouts_until_resume(make_pool):
    pool = make_pool(2, kind=ForkFragileFakePool)
    pool.start_all()
    pool._prepare_fork()
    assert [worker.closes for worker in pool.script.workers] == [1, 1] and pool.started == 0
    waiting = in_background(pool.checkout, UDF, "f")
    wait_until(lambda: pool._waiting == 1, "a checkout waits while the process forks")
    assert len(pool.script.called("start")) == 2  # none started meanwhile
    pool._resume_after_fork()
    fresh = waiting.result(WAIT)
    assert fresh.number == 2  # started again after the fork
    pool.checkin(fresh)
    assert_settled(pool)


def test_prepare_fork_waits_for_a_busy_worker_and_closes_it_when_given_back(make_pool):
    pool = make_pool(1, kind=ForkFragileFakePool, block_runs=True)
    running = in_background(run_batch, pool)
    worker = started_running(pool)
    ending = threading.Timer(0.05, worker.release.set)
    ending.start()
    pool._prepare_fork()  # no warning: the batch ended within FORK_WAIT
    ending.join(WAIT)
    assert running.result(WAIT) is worker and worker.closes == 1 and pool.started == 0
    pool._resume_after_fork()
    assert_settled(pool)


def test_prepare_fork_warns_when_a_batch_still_runs_after_fork_wait(make_pool, monkeypatch):
    monkeypatch.setattr(_pool, "FORK_WAIT", 0.05)
    pool = make_pool(1, kind=ForkFragileFakePool, block_runs=True)
    running = in_background(run_batch, pool)
    worker = started_running(pool)
    pattern = r"os\.fork\(\) while 1 worker\(s\) of <ForkFragileFakePool 1/1 started> still run a batch \(or start\)"
    with pytest.warns(RuntimeWarning, match=pattern + r" after 0\.05 s"):
        pool._prepare_fork()
    assert worker.closes == 0  # it runs: it cannot be closed
    worker.release.set()
    assert running.result(WAIT) is worker
    pool._resume_after_fork()
    assert_settled(pool)


def test_prepare_fork_waits_for_a_worker_that_is_starting(make_pool):
    # A checkout that started a worker before the fork began hands it out after:
    # the fork must wait for it as for a busy one, not fork with it.
    pool = make_pool(1, kind=ForkFragileFakePool)
    pool.script.start_gate = threading.Event()
    batch_done = in_background(run_batch, pool)
    assert pool.script.starting.wait(WAIT)
    starting = threading.Timer(0.05, pool.script.start_gate.set)
    starting.start()
    pool._prepare_fork()
    assert [worker.closes for worker in pool.script.workers] == [1], "a worker was started across the fork"
    starting.join(WAIT)
    batch_done.result(WAIT)
    pool._resume_after_fork()
    assert_settled(pool)


def test_prepare_fork_leaves_workers_that_survive_a_fork_alone(make_pool):
    pool = make_pool(2)
    pool.start_all()
    pool._prepare_fork()
    assert [worker.closes for worker in pool.script.workers] == [0, 0]
    assert run_batch(pool).number in {0, 1}  # checkouts go on, with no resume
    pool._resume_after_fork()
    assert_settled(pool)


def test_reset_after_fork_forgets_the_parents_workers_without_closing_them(make_pool):
    pool = make_pool(2)
    busy = pool.checkout(UDF, "f")  # the parent's thread that holds it is not in the child
    pool.start_all()
    pool._reset_after_fork()
    assert [(worker.forgotten, worker.closes) for worker in pool.script.workers] == [(True, 0), (True, 0)]
    assert pool.started == 0 and not pool._idle and not pool._busy
    fresh = run_batch(pool)
    assert fresh.number == 2 and pool.script.called("load")[-1] == (2, UDF)
    assert busy.closes == 0
    pool.close()
    assert [worker.closes for worker in pool.script.workers] == [0, 0, 1]


def test_a_real_fork_resets_each_pool_in_the_child_and_closes_fragile_workers_before():
    # What calling the hooks directly does not show: that os.fork() runs them (lifecycle's
    # at-fork hooks reach every live pool), that the child adopts the pools, and that a lock a
    # parent's thread held across the fork is not the child's.
    result = run_python(
        "-c",
        POOL_PRELUDE
        + textwrap.dedent(
            """
        import select
        from support.fake_pool import FakePool, ForkFragileFakePool, batch

        fragile, plain = ForkFragileFakePool(2), FakePool(2)
        for pool in (fragile, plain):
            pool.register(1, ("spec",))
            pool.start_all()
        plain.checkout(1, "f")  # a batch of the parent's, running across the fork
        # A thread of the parent's holds a pool's lock until the child says it is done.
        child_done, tell_parent = os.pipe()
        held = threading.Event()

        def hold_the_lock():
            with plain._lock:
                held.set()
                select.select([child_done], [], [], 30)

        threading.Thread(target=hold_the_lock, daemon=True).start()
        assert held.wait(30)
        warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads running: the point here
        pid = os.fork()
        if pid == 0:
            seen = {
                "adopted": [pool._owner_pid == os.getpid() for pool in (fragile, plain)],
                "started": [fragile.started, plain.started],
                "fragile closes": [worker.closes for worker in fragile.script.workers],
                "plain forgotten": [worker.forgotten for worker in plain.script.workers],
                "plain closes": [worker.closes for worker in plain.script.workers],
            }
            for name, pool in (("fragile", fragile), ("plain", plain)):
                with pool.lease(1, "f") as worker:
                    worker.run(batch(1))
                    seen[name + " fresh"] = worker.number
            print(json.dumps(seen), flush=True)
            os.write(tell_parent, b"done")
            os._exit(0)
        status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        with fragile.lease(1, "f") as worker:
            print(json.dumps({"status": status, "parent fragile fresh": worker.number}), flush=True)
        """
        ),
        timeout=60,
    )
    assert result.returncode == 0, result.report()
    child, parent = (json.loads(line) for line in result.stdout.splitlines())
    assert child == {
        "adopted": [True, True],
        "started": [0, 0],
        "fragile closes": [1, 1],  # closed in the parent before the fork
        "plain forgotten": [True, True],
        "plain closes": [0, 0],  # the parent's, still in use there
        "fragile fresh": 2,
        "plain fresh": 2,
    }, result.report()
    assert parent == {"status": 0, "parent fragile fresh": 2}, result.report()


# -- the watchdog ----------------------------------------------------------------


@pytest.fixture
def quick_watchdog(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the watchdog look every 10 ms and give a stopped batch 0.1 s."""
    monkeypatch.setattr(_watchdog, "_BUSY_TICK", 0.01)
    monkeypatch.setattr(_watchdog, "_IDLE_TICK", 0.01)
    monkeypatch.setattr(_watchdog, "STOP_GRACE", 0.1)


@pytest.mark.usefixtures("quick_watchdog")
def test_the_watchdog_stops_a_batch_that_outruns_the_pools_timeout(make_pool):
    pool = make_pool(1, timeout=0.1, block_runs=True, stoppable=True)
    began = time.monotonic()
    running = in_background(run_batch, pool)
    with pytest.raises(WorkerFailure) as caught:
        running.result(WAIT)
    assert time.monotonic() - began >= 0.1
    assert caught.value.error_type is PoolTimeoutError
    assert "the batch ran longer than the pool's timeout (0.1 s) and was stopped" in caught.value.text
    assert pool.script.called("stop") == [(0, PoolTimeoutError)]
    pool.script.block_runs = False
    assert run_batch(pool).number == 0  # the worker runs batches again
    assert_settled(pool)


@pytest.mark.usefixtures("quick_watchdog")
def test_the_watchdog_stops_a_batch_that_ctrl_c_interrupted(make_pool):
    pool = make_pool(1, block_runs=True, stoppable=True, interrupted=True)
    running = in_background(run_batch, pool)
    with pytest.raises(WorkerFailure) as caught:
        running.result(WAIT)
    assert caught.value.error_type is KeyboardInterrupt
    assert caught.value.text == "the batch was stopped by Ctrl-C (SIGINT)"
    assert_settled(pool)


@pytest.mark.usefixtures("quick_watchdog")
def test_the_watchdog_gives_up_a_worker_whose_batch_does_not_stop(make_pool):
    pool = make_pool(1, timeout=0.1, block_runs=True, stoppable=True, stop_takes=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        running = in_background(run_batch, pool)
        stuck = started_running(pool)
        wait_until(lambda: stuck.given_up, "the watchdog gives the worker up")
    assert pool.script.called("stop") == [(0, PoolTimeoutError)]
    assert pool.started == 0 and stuck.closes == 0
    assert [str(warning.message) for warning in caught if "did not stop within 0.1 s" in str(warning.message)]
    pool.script.block_runs = False
    assert run_batch(pool).number == 1  # another worker in its place
    stuck.release.set()  # the batch ends at last
    assert running.result(WAIT) is stuck
    assert stuck.closes == 1
    assert_settled(pool)


class RacingPool:
    """A pool as the watchdog sees it (``WatchedPool``), whose first worker starts while the watchdog looks."""

    timeout = WAIT

    def __init__(self, watchdog: _watchdog.Watchdog) -> None:
        self.watchdog = watchdog
        self.workers = 0
        self._busy: set[Any] = set()
        self.start: Future[Any] | None = None

    @property
    def _started(self) -> int:
        seen = self.workers
        if self.start is None:  # the watchdog's first look: a checkout starts a worker, on another thread
            self.start = in_background(self._start_one)
            with contextlib.suppress(TimeoutError):  # it may wait for the watchdog's lock, held here
                self.start.result(0.1)
        return seen

    def _start_one(self) -> None:
        self.workers = 1  # as _checkout reserves its slot
        self.watchdog.ensure_running()

    def _watch_interrupts(self) -> None:
        pass

    def _give_up(self, worker: Any) -> bool:
        return False


@pytest.mark.usefixtures("quick_watchdog")
def test_a_worker_that_starts_while_the_watchdog_decides_to_end_is_still_watched():
    pools: list[RacingPool] = []
    watchdog = _watchdog.Watchdog(lambda: pools, WorkerFailure)
    racing = RacingPool(watchdog)
    pools.append(racing)
    watchdog._thread = threading.current_thread()  # this thread plays the watchdog's, at its last look
    assert watchdog._look() is None  # it saw no worker: it ends
    assert racing.start is not None
    racing.start.result(WAIT)
    with watchdog._lock:  # not in the middle of a look
        thread = watchdog._thread
    try:
        assert thread is not None, "a pool has a worker and no watchdog watches it"
        assert thread is not threading.current_thread()
    finally:
        racing.workers = 0  # the thread started ends at its next look
        if thread is not None and thread is not threading.current_thread():
            thread.join(WAIT)
            assert not thread.is_alive()


# -- the matrix: an operation, a knob, the error a caller gets -------------------


def checkout_and_give_back(pool: FakePool) -> None:
    pool.checkin(pool.checkout(UDF, "f"))


def close_then_checkout(pool: FakePool) -> None:
    pool.close()
    pool.checkout(UDF, "f")


def close_then_start_all(pool: FakePool) -> None:
    pool.close()
    pool.start_all()


def checkout_a_removed_udf(pool: FakePool) -> None:
    run_batch(pool)
    pool.unregister(UDF)
    pool.checkout(UDF, "f")


def checkout_while_the_only_worker_is_busy(pool: FakePool) -> None:
    held = pool.checkout(UDF, "f")
    try:
        pool.checkout(UDF, "f")
    finally:
        pool.checkin(held)


def checkout_while_the_only_worker_starts(pool: FakePool) -> None:
    pool.script.start_gate = threading.Event()
    first = in_background(checkout_and_give_back, pool)
    assert pool.script.starting.wait(WAIT)
    try:
        pool.checkout(UDF, "f")
    finally:
        pool.script.start_gate.set()
        first.result(WAIT)


def start_all(pool: FakePool) -> None:
    pool.start_all()


MATRIX = [
    # (pool size, timeout, knobs, operation, error a caller gets, message pattern, workers closed)
    pytest.param(
        1, WAIT, {}, close_then_checkout, BrokenPoolError,
        r"^UDF 'f': its pool was closed; register it on an open pool$", 0, id="closed pool: checkout",
    ),
    pytest.param(
        1, WAIT, {}, close_then_start_all, BrokenPoolError, r"^the pool was closed$", 0, id="closed pool: start_all",
    ),
    pytest.param(
        1, WAIT, {}, checkout_a_removed_udf, BrokenPoolError, r"^UDF 1 was removed from this pool$", 0,
        id="removed UDF: checkout",
    ),
    pytest.param(
        1, 0.05, {}, checkout_while_the_only_worker_is_busy, PoolTimeoutError,
        r"^UDF 'f': no worker of the pool \(1 workers\) became free within 0\.05 s; pass a larger timeout= to "
        r"the pool or make the pool bigger$", 0, id="busy pool: checkout",
    ),
    pytest.param(
        1, 0.05, {}, checkout_while_the_only_worker_starts, PoolTimeoutError, r"became free within 0\.05 s", 0,
        id="slow start: checkout",
    ),
    pytest.param(
        1, WAIT, {"fail_starts": 1}, checkout_and_give_back, StartFailed, r"^fake start 0 failed$", 0,
        id="start fails: checkout",
    ),
    pytest.param(
        2, WAIT, {"fail_starts": 1}, start_all, StartFailed, r"^fake start [01] failed$", 0,
        id="start fails: start_all",
    ),
    pytest.param(
        2, WAIT, {"fail_loads": math.inf}, checkout_and_give_back, UDFRegistrationError,
        r"^UDF 'f': a worker cannot load it: fake worker 0 cannot load UDF 1$", 1, id="load fails: checkout",
    ),
    pytest.param(
        2, WAIT, {"die_in_runs": True}, run_batch, BrokenPoolError, r"^fake worker 0 died in a batch$", 1,
        id="worker dies: batch",
    ),
    pytest.param(
        2, WAIT, {"fail_runs": True}, run_batch, UDFExecutionError, r"^UDF 'f': the UDF raised$", 0,
        id="UDF raises: batch",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("size", "timeout", "knobs", "operation", "error_type", "pattern", "closed"), MATRIX)
def test_what_fails_how(make_pool, size, timeout, knobs, operation, error_type, pattern, closed):
    pool = make_pool(size, timeout=timeout, **knobs)
    try:
        operation(pool)
    except WorkerFailure as failure:  # as the dispatcher reports it
        error: BaseException = failure.for_udf("f")
    except Exception as raised:
        error = raised
    else:
        pytest.fail(f"{operation.__name__} did not fail")
    assert isinstance(error, error_type), repr(error)
    assert re.search(pattern, str(error)), str(error)
    assert sum(worker.closes for worker in pool.script.workers) == closed
    assert_settled(pool)
