"""The in-process serial backend: DuckDB's own UDF machinery, the test oracle.

Native and arrow UDFs go straight to ``DuckDBPyConnection.create_function``.
Vectorized UDFs (a type DuckDB does not have) run the same ``Runtime`` as
the other backends, in this interpreter, one batch at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from duckdb_subinterp._engine import lifecycle  # noqa: F401 - exit and fork hooks in place before a pool exists
from duckdb_subinterp._engine.pool import Worker, WorkerFailure, WorkerPool
from duckdb_subinterp._worker.protocol import STATUS_SLOTS, BatchRequest
from duckdb_subinterp._worker.runtime import Runtime


class InlineWorker(Worker):
    """A ``Runtime`` called directly, under the main GIL."""

    description = "the main interpreter"

    def __init__(self) -> None:
        super().__init__()
        self._status = [0] * STATUS_SLOTS
        self.runtime = Runtime(self._status)

    def _call(self, method: Any, *arguments: Any) -> None:
        try:
            method(*arguments)
        except Exception as error:
            raise WorkerFailure.from_names(type(error).__name__, str(error), repr(error)) from None

    def load(self, udf_id: int, spec: tuple[Any, ...]) -> None:
        self._call(self.runtime.load, udf_id, spec)

    def unload(self, udf_id: int) -> None:
        self.runtime.unload(udf_id)

    def run(self, request: BatchRequest) -> Sequence[int]:
        self._call(self.runtime.run, request)
        return self._status

    def copy_pending(self, outputs: Sequence[memoryview]) -> None:
        self._call(self.runtime.copy_pending, outputs)

    def close(self) -> None:
        self.runtime.udfs.clear()


class InlinePool(WorkerPool):
    """One in-process worker: batches run serially, as DuckDB's own UDFs do under the GIL."""

    def __init__(self) -> None:
        super().__init__(1)

    def _start_worker(self) -> Worker:
        return InlineWorker()
