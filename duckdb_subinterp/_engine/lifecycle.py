"""The one owner of a process's exit and fork: every live pool, every backend's hooks, in one order.

Pools register themselves with the pool engine (``_engine.pool.live_pools``);
this module, imported by every backend, registers the process's only
``atexit`` hook and its only ``os.register_at_fork`` set for pools, and
calls the pools' and the backends' hooks from them, in this order:

Exit (``atexit``: after Python joined the non-daemon threads, so a query
running on one has finished; see the note below):

1. every live pool of this process is shut (``WorkerPool._shut``): no batch
   starts any more, idle workers close;
2. one grace for all of them, ``CLOSE_GRACE``: the batches still running
   get that long to end, then the pools stop them where their backend can
   (``WorkerPool._stop_busy``: a worker process is killed, an interpreter's
   batch gets an exception) and their queries fail with BrokenPoolError;
3. the threads whose batches were stopped get to carry that error back out
   of DuckDB before Python's teardown (``let_queries_fail``, below);
4. each kind of pool's ``_after_pools_closed_at_exit``, in ascending
   ``exit_order``: the interpreters' last, since it may end the process
   with ``os._exit`` (an interpreter that cannot be torn down).

Fork (``os.register_at_fork``):

- before: every pool's ``_prepare_fork`` (a backend whose workers cannot
  survive a fork, ``close_workers_before_fork``, closes them, waiting
  ``FORK_WAIT`` for busy ones);
- after, in the parent: every pool's ``_resume_after_fork``;
- after, in the child: the watchdog forgets its thread, and every pool its
  parent's workers (``_reset_after_fork``: dropped without a word to them,
  ``Worker.forget``); the child starts its own on first use.

Not here, by design: the fan-out helpers' fork hook in ``_engine.fanout``
(its own executor's state, not a pool's: one hook per module that owns
state, as in CPython's concurrent.futures), and the ``atexit`` hook of
``_worker.asynchronous``, which runs inside a worker interpreter or process
(or the main one under ``backend="inline"``) and closes that interpreter's
event loop: a worker's exit, not this process's.

Why a plain ``atexit`` hook and not ``threading._register_atexit`` (which
concurrent.futures uses): those run before Python joins non-daemon threads,
and closing the pools then would fail a query that a non-daemon thread is
still running and that Python is about to wait for. A plain hook runs
after that join: what is left are queries on daemon threads.

Why the wait of step 3. At exit a query may still run on a daemon thread
(the main thread ended without waiting for it). Step 2 stops its batches,
so it fails instead of holding the exit forever; but the thread that ran it
is then on its way back out of DuckDB, through DuckDB's C++ frames, to
raise the query's error in Python. If Python's teardown has begun by the
time it asks for the GIL again, CPython ends the thread on the spot (the
fate of a daemon thread): ``pthread_exit`` unwinding C++ frames, which
aborts the process ("terminate called without an active exception",
SIGABRT). Measured on the processes backend's exit test before this
waited: 64 aborts in 100 exits (36 of 50 at SET threads=1, 28 of 50 at
threads=2).

So, once the stopped batches came back, exit waits (boundedly) for the
Python threads that ran them to end: by then they have left DuckDB. A
worker says which thread gave it back last (``Worker.returned_by``), so
nothing is recorded on a batch's path for this. A query's thread that ran
none of the stopped batches itself (at SET threads=2 and more, DuckDB may
run them on its own threads while the query's thread waits inside DuckDB)
cannot be told apart from any other thread in C code; for it, exit also
lets SETTLE seconds pass after the stop, which the error takes milliseconds
to cross. DuckDB's own threads are not Python threads to wait for: after a
failed batch they go back to DuckDB's pool and come back into Python only
if DuckDB calls a UDF again. What remains is what DuckDB's own UDF does at
exit: a thread still in DuckDB when the teardown begins (one that takes
longer than SETTLE to come back, or one that starts another query at once,
which fails at once but is in DuckDB again) aborts the process.
bench/exit_outcomes.py counts the outcomes.

(``sys._current_frames()`` would name the threads inside a batch, but in
CPython 3.13 it returns the frames of every interpreter's threads, and
releasing a worker interpreter's frame in the main one corrupts the heap.)
"""

from __future__ import annotations

import atexit
import os
import threading
import time
from collections.abc import Iterable

from duckdb_subinterp._engine.pool import CLOSE_GRACE, Worker, WorkerPool, live_pools, pool_types, watchdog
from duckdb_subinterp._engine.watchdog import STOP_GRACE

SETTLE = 0.5  # seconds after batches were stopped at exit before Python's teardown may begin


def _exit() -> None:
    """Close every pool of this process, in the order the module docstring gives."""
    # A child forked without the fork hooks (none ran) holds its parent's pools: they are the parent's to close.
    pid = os.getpid()
    pools = [pool for pool in live_pools() if pool._owner_pid == pid]
    for pool in pools:
        pool._shut()
    running = [worker for pool in pools for worker in list(pool._busy)]
    deadline = time.monotonic() + CLOSE_GRACE  # one grace, shared by every pool
    for pool in pools:
        pool._stop_busy(deadline)
    if running:
        let_queries_fail(running, time.monotonic(), STOP_GRACE)
    # Each hook once, on the class that defines it: a subclass of a pool (a test's, a user's) shares its base's.
    owners: dict[type[WorkerPool], None] = dict.fromkeys(
        next(base for base in kind.__mro__ if "_after_pools_closed_at_exit" in vars(base)) for kind in pool_types()
    )
    for owner in sorted(owners, key=lambda owner: owner.exit_order):
        owner._after_pools_closed_at_exit()


def let_queries_fail(stopped: Iterable[Worker], stopped_at: float, seconds: float) -> None:
    """Let the queries whose batches ran on ``stopped`` (stopped at ``stopped_at``) fail back into Python.

    Waits, ``seconds`` at most, for the Python threads that gave these
    workers back to end, then until SETTLE seconds after the stop. A thread
    that goes on after its query failed (it catches the error and does
    something else) is waited for until the bound only: it is back in
    Python, where the teardown ends it without a crash.
    """
    deadline = time.monotonic() + seconds
    idents = {worker.returned_by for worker in stopped}
    current = threading.current_thread()
    for thread in threading.enumerate():
        # DuckDB's own threads have no Thread here, unless something asked for one (a _DummyThread).
        if thread.ident in idents and thread is not current and not isinstance(thread, threading._DummyThread):
            thread.join(max(0.0, deadline - time.monotonic()))
    time.sleep(max(0.0, min(stopped_at + SETTLE, deadline) - time.monotonic()))


def _before_fork() -> None:
    for pool in live_pools():
        pool._prepare_fork()


def _after_fork_in_parent() -> None:
    for pool in live_pools():
        pool._resume_after_fork()


def _after_fork_in_child() -> None:
    watchdog.reset_after_fork()
    for pool in live_pools():
        pool._reset_after_fork()


# Registered once, at import (a forked child inherits them); with no pool alive each does nothing.
atexit.register(_exit)
os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child)
