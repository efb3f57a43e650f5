"""The compiled switch into interpreters (``_direct.DirectCall``), and the ``_interpreters.exec`` path it replaces."""

from __future__ import annotations

import _interpreters
import textwrap
import threading
import time
from collections.abc import Iterator

import pytest
from support.script_helper import run_python

import duckdb_subinterp
from duckdb_subinterp._backends import subinterpreters as _subinterpreters
from duckdb_subinterp._errors import CompiledPathUnavailableWarning

DirectCall = _subinterpreters.DirectCall


def test_direct_call_is_built():
    # The README's figures are measured through it: an install that could
    # not compile it runs, with a warning, but slower.
    assert DirectCall is not None, "duckdb_subinterp._direct was not built; install with a C compiler present"


@pytest.fixture
def interpreter() -> Iterator[int]:
    interpreter_id = _interpreters.create("isolated")
    _interpreters.exec(
        interpreter_id,
        textwrap.dedent(
            """
            import time
            kept = []
            def echo(request):
                return request
            def formats(request):
                return tuple(view.format for view in request)
            def total(request):
                (view,) = request  # arrives as it left: format "q"
                return sum(view)
            def double(request):
                source, target = request
                target[:] = __import__("array").array("q", [2 * v for v in source])
            def keep(request):
                kept.append(request[0])
            def read_kept(request):
                return tuple(view.tobytes().decode() for view in kept)
            def forget(request):
                kept.clear()
            def fail(request):
                raise ValueError("bad row")
            def hold(request):
                flag, seconds = request
                flag[0] = 1
                time.sleep(seconds)
            def refuse_import(request):
                import duckdb_subinterp._direct
            class Stopped(BaseException):
                pass
            def spin(request):
                while True:
                    pass
            def count(request):
                return request
            def start_sleeper(request):
                import threading
                def sleep_in_steps():
                    while True:
                        time.sleep(0.01)
                thread = threading.Thread(target=sleep_in_steps)
                thread.start()
                return thread.ident
            def alive(request):
                import threading
                return tuple(thread.ident for thread in threading.enumerate() if thread.ident in request)
            """
        ),
    )
    yield interpreter_id
    if interpreter_id in {entry[0] for entry in _interpreters.list_all()}:
        _interpreters.destroy(interpreter_id)


@pytest.fixture
def direct(interpreter) -> Iterator[DirectCall]:
    call = DirectCall(interpreter)
    yield call
    call.detach()  # before the interpreter goes: Py_EndInterpreter refuses other thread states


def test_values_cross_both_ways(direct):
    request = (None, True, False, -(2**63), 2**63 - 1, "héllo ✓", ("nested", (1, ())), ())
    assert direct.call("echo", request) == request


def test_memoryviews_are_shared_not_copied(interpreter):
    from array import array

    direct = DirectCall(interpreter)
    source = array("q", range(1000))
    target = array("q", bytes(8 * 1000))
    assert direct.call("total", (memoryview(source).toreadonly(),)) == sum(range(1000))
    assert direct.call("double", (memoryview(source).toreadonly(), memoryview(target))) is None
    assert list(target) == [2 * v for v in range(1000)]
    assert direct.held_buffers == 0


def test_byte_views_arrive_as_unsigned_bytes_others_keep_their_format(direct):
    from array import array

    views = (memoryview(array("b", [1])), memoryview(b"x"), memoryview(array("q", [1])), memoryview(array("d", [1.0])))
    assert direct.call("formats", views) == ("B", "B", "q", "d")


def test_an_exception_comes_back_as_type_message_and_text(direct):
    type_name, message, text = direct.call("fail", ())
    assert (type_name, message) == ("ValueError", "bad row")
    assert text.startswith("Traceback (most recent call last):") and "in fail\nValueError: bad row" in text
    assert direct.call("no_such_function", ())[0] == "AttributeError"
    with pytest.raises(TypeError, match="cannot pass a list"):
        direct.call("echo", ([1],))


def test_a_view_the_interpreter_keeps_keeps_its_buffer(direct):
    payload = bytearray(b"still here")
    direct.call("keep", (memoryview(payload),))
    assert direct.held_buffers == 1
    with pytest.raises(BufferError):
        payload.extend(b"!")  # the interpreter's view pins it, as any exporter would
    assert direct.call("read_kept", ()) == ("still here",)
    direct.call("forget", ())
    direct.call("echo", ())  # the next call notices the view is gone
    assert direct.held_buffers == 0
    payload.extend(b"!")


def test_one_thread_state_per_thread_and_dead_threads_are_swept(direct):
    direct.call("echo", ())
    release = threading.Event()
    called = threading.Semaphore(0)

    def call_then_wait() -> None:
        direct.call("echo", ())
        called.release()
        release.wait(10)

    threads = [threading.Thread(target=call_then_wait) for _ in range(4)]
    for thread in threads:
        thread.start()
        assert called.acquire(timeout=10)  # one at a time: a DirectCall runs one call at once
    direct.call("echo", ())
    assert direct.thread_states == 5  # this thread's and four live ones
    release.set()
    for thread in threads:
        thread.join(10)
    direct.call("echo", ())  # the four exited threads' states go
    assert direct.thread_states == 1


def test_a_second_thread_is_refused_not_blocked(direct):
    flag = bytearray(1)
    holder = threading.Thread(target=direct.call, args=("hold", (memoryview(flag), 1)))
    holder.start()
    deadline = time.monotonic() + 10
    while not flag[0] and time.monotonic() < deadline:
        time.sleep(0.001)
    assert flag[0]
    with pytest.raises(RuntimeError, match="already running"):
        direct.call("echo", ())
    holder.join(10)
    assert not holder.is_alive()


def test_detach_lets_the_interpreter_be_destroyed(interpreter):
    direct = DirectCall(interpreter)
    thread = threading.Thread(target=direct.call, args=("echo", ()))
    thread.start()
    thread.join(10)
    direct.call("echo", ())
    direct.detach()
    _interpreters.destroy(interpreter)
    with pytest.raises(RuntimeError, match="detached"):
        direct.call("echo", ())


def wait_running(direct: DirectCall) -> tuple[int, int]:
    deadline = time.monotonic() + 10
    while (running := direct.running) is None and time.monotonic() < deadline:
        time.sleep(0.001)
    assert running is not None, "the call did not start"
    return running


def test_stop_raises_in_the_running_call_only(direct):
    assert direct.running is None
    outcome: list[object] = []
    caller = threading.Thread(target=lambda: outcome.append(direct.call("spin", ())))
    caller.start()
    number, _ = wait_running(direct)
    assert not direct.stop(number + 1, "Stopped")  # not the call running: nothing is raised
    assert direct.stop(number, "Stopped")
    caller.join(10)
    assert not caller.is_alive() and outcome[0][0] == "Stopped"
    assert direct.running is None
    assert not direct.stop(number, "Stopped")  # it ended
    assert direct.call("echo", (1,)) == (1,)


def test_a_stop_that_arrives_late_never_lands_in_the_next_call(direct):
    # One thread calls quickly, one after another; another stops whatever
    # call it sees running. A call may fail only if it was the one stopped.
    calls = 3000
    failed: list[int] = []
    stopped: set[int] = set()
    done = threading.Event()

    def call_quickly() -> None:
        direct.call("count", 0)  # calls are numbered one by one from here
        failed.extend(offset for offset in range(1, calls + 1) if direct.call("count", offset) != offset)
        done.set()

    def stop_whatever_runs() -> None:
        while not done.is_set():
            running = direct.running
            if running is not None and direct.stop(running[0], "Stopped"):
                stopped.add(running[0])

    first = direct.call("count", 0)
    assert first == 0
    stopper = threading.Thread(target=stop_whatever_runs)
    caller = threading.Thread(target=call_quickly)
    stopper.start()
    caller.start()
    caller.join(60)
    stopper.join(60)
    # This thread made call 1 and the caller's first call is 2: offset k is call k + 2.
    assert {offset + 2 for offset in failed} <= stopped
    assert direct.call("count", 7) == 7


def test_raise_in_threads_ends_threads_a_function_started(direct):
    ident = direct.call("start_sleeper", ())
    assert direct.call("alive", (ident,)) == (ident,)
    assert direct.raise_in_threads((ident, 12345)) == 1  # an ident not there is not counted
    deadline = time.monotonic() + 10
    while direct.call("alive", (ident,)) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert direct.call("alive", (ident,)) == ()


def test_sigint_is_counted_and_still_reaches_python():
    script = textwrap.dedent(
        """
        import os, signal, time
        from duckdb_subinterp._direct import sigint_count, watch_sigint
        assert sigint_count() == 0 and watch_sigint() and watch_sigint()
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        except KeyboardInterrupt:
            print("KeyboardInterrupt", sigint_count())
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        print("ignored: not watched", watch_sigint())
        """
    )
    result = run_python("-c", script, timeout=60)
    assert result.returncode == 0, result.report()
    assert result.stdout.splitlines() == ["KeyboardInterrupt 1", "ignored: not watched False"]


def test_unknown_or_own_interpreter_is_refused():
    with pytest.raises(Exception, match="unrecognized interpreter ID"):
        DirectCall(10**9)
    with pytest.raises(ValueError, match="current interpreter"):
        DirectCall(_interpreters.get_current()[0])


def test_the_module_refuses_to_load_in_an_isolated_interpreter(direct):
    type_name, message, _ = direct.call("refuse_import", ())
    assert type_name == "ImportError" and "subinterpreters" in message


def test_a_pool_left_open_at_exit_shuts_down_cleanly():
    # Python's own teardown of leftover interpreters fails on thread states it
    # does not own; the package closes its workers first.
    script = textwrap.dedent(
        """
        import threading, duckdb, duckdb_subinterp
        pool = duckdb_subinterp.InterpreterPool(2)
        con = duckdb.connect()
        con.execute("SET threads=2")
        duckdb_subinterp.create_function(con, "f", "udfs.udf_module:add_one", ["BIGINT"], "BIGINT", pool=pool)
        print(con.sql("SELECT sum(f(i)) FROM range(100000) t(i)").fetchall()[0][0])
        """
    )
    result = run_python("-c", script, timeout=120)
    assert result.returncode == 0, result.report()
    assert result.stdout.strip() == str(sum(range(1, 100001)))


# The exec path (direct=False, or where the extensions are missing) runs the
# whole contract suite: conftest's "subinterpreters-uncompiled" backend.


def test_without_the_extension_one_warning_names_the_fix(monkeypatch):
    monkeypatch.setattr(_subinterpreters, "DirectCall", None)
    _subinterpreters._warn_direct_unavailable.cache_clear()
    with (
        pytest.warns(CompiledPathUnavailableWarning, match="C compiler"),
        duckdb_subinterp.InterpreterPool(2) as pool,
    ):
        assert pool.start_all() == 2
    _subinterpreters._warn_direct_unavailable.cache_clear()
