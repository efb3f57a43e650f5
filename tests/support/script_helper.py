"""Run a child Python with a hard timeout and say how it ended, as CPython's ``test.support.script_helper`` does.

Every test whose scenario may crash, hang or end its process runs that
scenario here. The child gets a process group of its own (worker processes
and forked children are in it); past its timeout the whole group is killed
and the test fails with what the child wrote. A death by signal reads as
one: ``killed by signal SIGSEGV (11)``, not a bare ``-11``.

    result = assert_python_ok("-c", "import duckdb_subinterp; print('ok')")
    result = run_python("-c", PRELUDE + textwrap.dedent(script), timeout=60)
    assert result.returncode == -signal.SIGSEGV, result.report()

The child's arguments are the interpreter's (``"-c", code``, ``"-m", module``,
a script path), after ``-X faulthandler``, so a crash or a fatal error prints
every thread's stack. It runs in ``tests/`` with ``tests/`` first on its
``PYTHONPATH``: ``udfs`` and ``support`` import there whatever its ``cwd``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).resolve().parents[1]
CHILD_TIMEOUT = 120  # seconds: a child that runs longer hung
KILLED_WAIT = 30  # seconds to collect a killed child's output: a process outside its group may hold the pipes
REPORT_TAIL = 8000  # characters of each stream an assertion's message shows

# The scenario of a pool test: the tests' UDFs, a pool of either kind. Each test file keeps its own otherwise.
POOL_PRELUDE = """
import contextlib, io, json, os, signal, sys, threading, time, warnings
import duckdb, duckdb_subinterp
from udfs import reliability_udfs
from duckdb_subinterp._engine import pool as _pool
from duckdb_subinterp._engine import dispatch as _dispatch

def make_pool(backend, size, **options):
    pool_type = duckdb_subinterp.InterpreterPool if backend == "subinterpreters" else duckdb_subinterp.ProcessPool
    return pool_type(size, **options)
"""


def describe_exit(returncode: int) -> str:
    """Say how a process ended: ``exit status 3`` or ``killed by signal SIGSEGV (11)``."""
    if returncode >= 0:
        return f"exit status {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = "an unknown signal"
    return f"killed by signal {name} ({-returncode})"


@dataclass(frozen=True)
class ChildResult:
    """How a child Python ended: its exit status and what it wrote, decoded as UTF-8."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def signal(self) -> signal.Signals | None:
        """The signal that killed the child, or None where it exited."""
        return signal.Signals(-self.returncode) if self.returncode < 0 else None

    def report(self) -> str:
        """Say how the child ended and what it wrote (the tail of each stream), for an assertion's message."""
        return (
            f"{describe_exit(self.returncode)}\n--- stdout\n{self.stdout[-REPORT_TAIL:]}"
            f"\n--- stderr\n{self.stderr[-REPORT_TAIL:]}"
        )


class Child:
    """A child Python started with ``spawn_python``: a test may watch or signal ``process``, then ``finish``."""

    def __init__(self, args: list[str], process: subprocess.Popen[bytes]) -> None:
        self.args = args
        self.process = process
        self.pid = process.pid
        self.started = time.monotonic()

    def finish(self, timeout: float = CHILD_TIMEOUT, input: str | bytes | None = None) -> ChildResult:
        """Wait for the child to end; past ``timeout``, kill its process group and fail with its output."""
        data = input.encode() if isinstance(input, str) else input
        try:
            out, err = self.process.communicate(data or b"", timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            result = self._collect_killed()
            pytest.fail(f"the child did not end within {timeout:g} s\n{result.report()}")
        return ChildResult(self.args, self.process.returncode, _text(out), _text(err))

    def kill(self) -> None:
        """Kill the child and everything in its process group."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)

    def _collect_killed(self) -> ChildResult:
        try:
            out, err = self.process.communicate(timeout=KILLED_WAIT)
        except subprocess.TimeoutExpired:  # a grandchild in a session of its own holds the pipes
            for stream in (self.process.stdout, self.process.stderr):
                if stream is not None:
                    stream.close()
            out, err = b"", b"(not read: a process outside the child's group held its pipes)"
            self.process.wait(KILLED_WAIT)
        return ChildResult(self.args, self.process.returncode, _text(out), _text(err))


def spawn_python(
    *args: str,
    cwd: Path | str = TESTS,
    env: Mapping[str, str | None] | None = None,
    stdout: Path | None = None,
    stderr: Path | None = None,
    merge_stderr: bool = False,
    pass_fds: Sequence[int] = (),
    tests_on_path: bool = True,
) -> Child:
    """Start ``python -X faulthandler *args`` in a process group of its own; see ``run_python``."""
    environment = {**os.environ, **(env or {})}
    if tests_on_path:
        environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), environment.get("PYTHONPATH")]))
    command = [sys.executable, "-X", "faulthandler", *args]
    # The child writes into its own copies of the files' descriptors: this process's close at once.
    with open(stdout or os.devnull, "wb") as out_file, open(stderr or os.devnull, "wb") as err_file:
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env={name: value for name, value in environment.items() if value is not None},
            stdin=subprocess.PIPE,
            stdout=out_file if stdout is not None else subprocess.PIPE,
            stderr=subprocess.STDOUT if merge_stderr else err_file if stderr is not None else subprocess.PIPE,
            pass_fds=pass_fds,
            start_new_session=True,  # its own process group: worker processes and forked children go with it
        )
    return Child(command, process)


def run_python(
    *args: str,
    timeout: float = CHILD_TIMEOUT,
    input: str | bytes | None = None,
    cwd: Path | str = TESTS,
    env: Mapping[str, str | None] | None = None,
    stdout: Path | None = None,
    stderr: Path | None = None,
    merge_stderr: bool = False,
    tests_on_path: bool = True,
) -> ChildResult:
    """Run ``python -X faulthandler *args`` to its end; past ``timeout``, kill its process group and fail.

    ``input``: what the child reads from its stdin (an empty stdin where None).
    ``env``: variables to set, or to remove where None, over this process's environment.
    ``stdout`` and ``stderr``: files the child's streams go to, instead of pipes this process reads
    (the result's stream is then empty); ``merge_stderr``: the child's stderr into its stdout.
    ``tests_on_path``: False leaves ``tests/`` off the child's ``PYTHONPATH`` (a docs page runs as a reader's).
    """
    child = spawn_python(
        *args, cwd=cwd, env=env, stdout=stdout, stderr=stderr, merge_stderr=merge_stderr, tests_on_path=tests_on_path
    )
    return child.finish(timeout, input=input)


def assert_python_ok(*args: str, **options: Any) -> ChildResult:
    """Run the child as ``run_python`` does; fail, showing its output, unless it exited with status 0."""
    result = run_python(*args, **options)
    if result.returncode != 0:
        pytest.fail(f"the child failed: {result.report()}")
    return result


def assert_python_failure(*args: str, **options: Any) -> ChildResult:
    """Run the child as ``run_python`` does; fail, showing its output, if it exited with status 0."""
    result = run_python(*args, **options)
    if result.returncode == 0:
        pytest.fail(f"the child succeeded where it should fail: {result.report()}")
    return result


def _text(data: bytes | None) -> str:
    return (data or b"").decode(errors="replace")
