"""What the backends' exit hooks share: letting the queries they stopped fail before Python's teardown.

At exit a query may still run on a daemon thread (the main thread ended
without waiting for it). The backends' exit hooks stop its batches, so it
fails instead of holding the exit forever; but the thread that ran it is
then on its way back out of DuckDB, through DuckDB's C++ frames, to raise
the query's error in Python. If Python's teardown has begun by the time it
asks for the GIL again, CPython ends the thread on the spot (the fate of a
daemon thread): ``pthread_exit`` unwinding C++ frames, which aborts the
process ("terminate called without an active exception", SIGABRT). Measured
on the processes backend's exit test before this waited: 64 aborts in 100
exits (36 of 50 at SET threads=1, 28 of 50 at threads=2).

So an exit hook, once the stopped batches came back, waits (boundedly) for
the Python threads that ran them to end: by then they have left DuckDB.
A worker says which thread gave it back last (``Worker.returned_by``), so
nothing is recorded on a batch's path for this. A query's thread that ran
none of the stopped batches itself (at SET threads=2 and more, DuckDB may
run them on its own threads while the query's thread waits inside DuckDB)
cannot be told apart from any other thread in C code; for it, the hook
also lets SETTLE seconds pass after the stop, which the error takes
milliseconds to cross. DuckDB's own threads are not Python threads to wait
for: after a failed batch they go back to DuckDB's pool and come back into
Python only if DuckDB calls a UDF again. What remains is what DuckDB's own
UDF does at exit: a thread still in DuckDB when the teardown begins (one
that takes longer than SETTLE to come back, or one that starts another
query at once, which fails at once but is in DuckDB again) aborts the
process. bench/exit_outcomes.py counts the outcomes.

(``sys._current_frames()`` would name the threads inside a batch, but in
CPython 3.13 it returns the frames of every interpreter's threads, and
releasing a worker interpreter's frame in the main one corrupts the heap.)

A standard-library module: imported by backends whose modules also load in
workers, where duckdb is not importable.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

from duckdb_subinterp._pool import Worker

SETTLE = 0.5  # seconds after batches were stopped at exit before Python's teardown may begin


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
