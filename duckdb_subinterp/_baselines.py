"""The workarounds users write today, kept here to measure against.

An arrow UDF that converts each batch to a Python list, pickles it to a
``concurrent.futures`` pool and converts the answer back: a
``ProcessPoolExecutor`` everywhere, and the standard library's own
``InterpreterPoolExecutor`` on Python 3.14+.

This module imports pyarrow lazily: ``map_rows`` is unpickled by reference
in worker interpreters, where pyarrow cannot load.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import sys
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor
from pathlib import Path
from typing import Any

BATCH_TIMEOUT = 600.0

# The package's __init__ imports duckdb, which an isolated interpreter refuses,
# so interpreters of the standard pool get a bare package object (as our own
# backend's bootstrap does) and import the stdlib-only submodules from it.
_INTERPRETER_BOOTSTRAP = """
import sys, types
package = types.ModuleType("duckdb_subinterp")
package.__path__ = [{package_dir!r}]
sys.modules["duckdb_subinterp"] = package
sys.path[:] = {sys_path!r}
"""


def map_rows(function: Callable[..., Any], columns: list[list[Any]]) -> list[Any]:
    """Apply ``function`` row by row, skipping NULL rows as DuckDB does."""
    return [None if None in row else function(*row) for row in zip(*columns, strict=True)]


def interpreter_pool_available() -> str | None:
    """Return why the standard library's InterpreterPoolExecutor cannot be used here, or None."""
    if not hasattr(concurrent.futures, "InterpreterPoolExecutor"):
        return f"concurrent.futures.InterpreterPoolExecutor needs Python 3.14+ (this is {sys.version.split()[0]})"
    return None


class ProcessPoolUDF:
    """A DuckDB arrow UDF that farms each batch out to a process pool by pickling lists."""

    def __init__(self, function: Callable[..., Any], return_type: Any, workers: int) -> None:
        self.function = function
        self.return_type = return_type
        self.workers = workers
        self.executor = self._make_executor(workers)

    def _make_executor(self, workers: int) -> Executor:
        context = multiprocessing.get_context("forkserver")
        return ProcessPoolExecutor(max_workers=workers, mp_context=context)

    def __call__(self, *arguments: Any) -> Any:
        import pyarrow as pa

        columns = [argument.to_pylist() for argument in arguments]
        future = self.executor.submit(map_rows, self.function, columns)
        return pa.array(future.result(timeout=BATCH_TIMEOUT), type=self.return_type)

    def warm_up(self) -> None:
        """Start every worker now, so start-up is not timed as work."""
        futures = [self.executor.submit(map_rows, self.function, [[]]) for _ in range(self.workers)]
        for future in futures:
            future.result(timeout=BATCH_TIMEOUT)

    def close(self) -> None:
        """Shut the workers down."""
        self.executor.shutdown(wait=True, cancel_futures=True)


class InterpreterPoolUDF(ProcessPoolUDF):
    """The same workaround on ``concurrent.futures.InterpreterPoolExecutor`` (Python 3.14+)."""

    def _make_executor(self, workers: int) -> Executor:
        reason = interpreter_pool_available()
        if reason is not None:
            raise RuntimeError(reason)
        bootstrap = _INTERPRETER_BOOTSTRAP.format(
            package_dir=str(Path(__file__).resolve().parent), sys_path=list(sys.path)
        )
        # exec is pickled by reference (builtins.exec), so it reaches each interpreter as is.
        # Python 3.14+ (checked above); mypy checks against 3.13, which lacks it.
        executor: Executor = concurrent.futures.InterpreterPoolExecutor(  # type: ignore[attr-defined]
            max_workers=workers, initializer=exec, initargs=(bootstrap, {})
        )
        return executor
