"""Run a scenario in a child Python with a hard timeout, as CPython's script_helper does, and report how it ended."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
CHILD_TIMEOUT = 120  # seconds: a child that runs longer hung

PREAMBLE = f"""
import contextlib, io, json, os, signal, sys, threading, time, warnings
sys.path.insert(0, {str(TESTS)!r})
import duckdb, duckdb_subinterp
from udfs import reliability_udfs
from duckdb_subinterp._engine import pool as _pool
from duckdb_subinterp._engine import dispatch as _dispatch

def make_pool(backend, size, **options):
    pool_type = duckdb_subinterp.InterpreterPool if backend == "subinterpreters" else duckdb_subinterp.ProcessPool
    return pool_type(size, **options)
"""


def run_child(
    script: str,
    *,
    stdin: bytes | None = None,
    stdout: Path | None = None,
    stderr: Path | None = None,
    environment: dict[str, str | None] | None = None,
    timeout: float = CHILD_TIMEOUT,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``PREAMBLE + script``; fail (killing it and its process group) if it outlives ``timeout``.

    ``stdout`` and ``stderr``: files the child's streams go to, instead of pipes this process reads.
    ``environment``: variables to set, or to remove where None.
    """
    changed = {**os.environ, **(environment or {})}
    with open(stdout or os.devnull, "wb") as out_file, open(stderr or os.devnull, "wb") as err_file:
        child = subprocess.Popen(
            [sys.executable, "-X", "faulthandler", "-c", PREAMBLE + textwrap.dedent(script)],
            cwd=TESTS,
            env={name: value for name, value in changed.items() if value is not None},
            stdin=subprocess.PIPE,
            stdout=out_file if stdout is not None else subprocess.PIPE,
            stderr=err_file if stderr is not None else subprocess.PIPE,
            start_new_session=True,  # its own process group: worker processes go with it
        )
        try:
            out, err = child.communicate(stdin or b"", timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            out, err = child.communicate()
            pytest.fail(f"the child did not end within {timeout} s\n--- stdout\n{out!r}\n--- stderr\n{err!r}")
    return subprocess.CompletedProcess(child.args, child.returncode, out or b"", err or b"")


def report(result: subprocess.CompletedProcess[bytes]) -> str:
    """Say how a child ended, for an assertion's message."""
    out, err = result.stdout.decode(errors="replace"), result.stderr.decode(errors="replace")
    return f"exit status {result.returncode}\n--- stdout\n{out}\n--- stderr\n{err}"
