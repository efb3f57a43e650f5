"""The workaround users write today, kept here to measure against.

An arrow UDF that converts each batch to a Python list, pickles it to a
``concurrent.futures.ProcessPoolExecutor`` and converts the answer back.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import pyarrow as pa

BATCH_TIMEOUT = 600.0


def map_rows(function: Callable[..., Any], columns: list[list[Any]]) -> list[Any]:
    """Apply ``function`` row by row, skipping NULL rows as DuckDB does."""
    return [None if None in row else function(*row) for row in zip(*columns)]


class ProcessPoolUDF:
    """A DuckDB arrow UDF that farms each batch out to a process pool by pickling lists."""

    def __init__(self, function: Callable[..., Any], return_type: pa.DataType, workers: int) -> None:
        self.function = function
        self.return_type = return_type
        context = multiprocessing.get_context("forkserver")
        self.executor = ProcessPoolExecutor(max_workers=workers, mp_context=context)

    def __call__(self, *arguments: pa.ChunkedArray) -> pa.Array:
        columns = [argument.to_pylist() for argument in arguments]
        future = self.executor.submit(map_rows, self.function, columns)
        return pa.array(future.result(timeout=BATCH_TIMEOUT), type=self.return_type)

    def warm_up(self) -> None:
        """Start every worker process now, so start-up is not timed as work."""
        futures = [self.executor.submit(map_rows, self.function, [[]]) for _ in range(self.executor._max_workers)]
        for future in futures:
            future.result(timeout=BATCH_TIMEOUT)

    def close(self) -> None:
        """Shut the worker processes down."""
        self.executor.shutdown(wait=True, cancel_futures=True)
