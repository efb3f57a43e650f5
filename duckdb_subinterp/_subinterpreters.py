"""Workers that are per-GIL (isolated) interpreters in this process.

The DuckDB thread that calls the UDF runs the batch itself: it switches to
the interpreter, which releases the main GIL and takes the interpreter's
own, so N DuckDB threads on N interpreters run Python in parallel. No
worker threads, no hand-off between threads (a pipe round trip to a thread
parked inside the interpreter measured ~27 us).

The switch is ``_direct.DirectCall`` (C, main side only): it keeps one
thread state per DuckDB thread and interpreter. ``_interpreters.exec``,
the only switch Python 3.13 offers, makes and frees a thread state every
call: ~10 us in a loop. The bench's dispatch overhead (identity UDF on
BIGINT, threads=1) is 71.1 us a batch through exec and 23.3 us through
DirectCall, same run (bench/results/dev-2core-epyc). Where the extension
was not built, batches go through ``_interpreters.exec``, with one warning.

Python 3.13 ships the private ``_interpreters`` module only; 3.14 adds the
public ``concurrent.interpreters`` on top of the same functions, which are
all this module uses besides DirectCall.
"""

from __future__ import annotations

import atexit
import functools
import sys
import warnings
import weakref
from array import array
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from duckdb_subinterp._errors import CompiledPathUnavailableWarning
from duckdb_subinterp._pool import DEFAULT_TIMEOUT, Worker, WorkerFailure, WorkerPool
from duckdb_subinterp._runtime import STATUS_SLOTS

try:
    import _interpreters
except ImportError:  # pragma: no cover - Python < 3.13 is refused by pyproject
    _interpreters = None

try:
    from duckdb_subinterp._direct import DirectCall
except ImportError:  # not built: no C compiler at install time
    DirectCall = None


PACKAGE_DIR = str(Path(__file__).resolve().parent)

# The package's __init__ imports duckdb and pyarrow, which cannot load in an
# isolated interpreter, so the interpreter gets a bare package object whose
# path lets it import the pure-Python submodules (_codec, _runtime) only.
_BOOTSTRAP = """
import sys, types
import _interpreters  # memoryviews are shareable only once this is imported
_package = types.ModuleType("duckdb_subinterp")
_package.__path__ = [_package_dir]
sys.modules["duckdb_subinterp"] = _package
sys.path[:] = list(_sys_path)
# UDF modules decorate with @duckdb_subinterp.export; it is stdlib-only.
from duckdb_subinterp._export import export as _export
_package.export = _export
from duckdb_subinterp._runtime import Runtime as _Runtime
del _package, _package_dir, _sys_path, _export
"""

# DirectCall calls _run_batch and _copy_pending; an exception comes back as
# (type name, message, traceback text), like the snapshot exec returns.
_START_RUNTIME = """
_rt = _Runtime(_status.cast("q"), compiled=_compiled_codec)
_run_batch, _copy_pending = _rt.run, _rt.copy_pending
del _status, _compiled_codec
"""
_RUN = compile("try:\n    _rt.run(_request)\nfinally:\n    del _request\n", "<duckdb_subinterp run>", "exec")
_COPY = compile("try:\n    _rt.copy_pending(_outputs)\nfinally:\n    del _outputs\n", "<duckdb_subinterp copy>", "exec")
_LOAD = compile("try:\n    _rt.load(_udf_id, _spec)\nfinally:\n    del _udf_id, _spec\n", "<duckdb_subinterp load>", "exec")
_UNLOAD = compile("_rt.unload(_udf_id)\ndel _udf_id\n", "<duckdb_subinterp unload>", "exec")


class InterpreterWorker(Worker):
    """One isolated interpreter with its own GIL and a loaded ``Runtime``.

    ``compiled_codec=False`` makes its runtime use the pure-Python codec, as
    where ``_codecc`` was not built.
    """

    def __init__(self, *, direct: bool = True, compiled_codec: bool = True) -> None:
        super().__init__()
        if _interpreters is None:  # pragma: no cover
            raise RuntimeError("per-GIL interpreters need Python 3.13 or newer")
        created: list[int] = []
        try:
            # A signal that arrives while create() runs (milliseconds) raises
            # KeyboardInterrupt at the next bytecode, which would drop the new
            # id and leak the interpreter. extend(map(...)) stores the id from C
            # code, before any bytecode can run.
            created.extend(map(_interpreters.create, ("isolated",)))
            self.interpreter_id = created[0]
            self._status = array("q", bytes(8 * STATUS_SLOTS))
            self._exec(_BOOTSTRAP, {"_package_dir": PACKAGE_DIR, "_sys_path": tuple(sys.path)})
            # A view of the worker's status array, for the interpreter's whole
            # life; shareable now that the bootstrap imported _interpreters.
            self._exec(
                _START_RUNTIME, {"_status": memoryview(self._status).cast("B"), "_compiled_codec": compiled_codec}
            )
            self._direct = _direct_call(self.interpreter_id) if direct else None
        except BaseException:
            for interpreter_id in created:
                _destroy(interpreter_id)
            raise
        if self._direct is not None:
            _live_direct_workers.add(self)

    def _exec(self, code: Any, shared: dict[str, Any]) -> None:
        snapshot = _interpreters.exec(self.interpreter_id, code, shared)
        if snapshot is not None:
            raise WorkerFailure.from_names(snapshot.type.__name__, snapshot.msg, snapshot.errdisplay)

    def load(self, udf_id: int, spec: tuple[Any, ...]) -> None:
        self._exec(_LOAD, {"_udf_id": udf_id, "_spec": spec})

    def unload(self, udf_id: int) -> None:
        self._exec(_UNLOAD, {"_udf_id": udf_id})

    def _enter(self, entry_point: str, exec_code: Any, name: str, value: tuple[Any, ...]) -> None:
        """Call the interpreter's ``entry_point`` with ``value`` through DirectCall, else exec ``exec_code``."""
        if self._direct is None:
            self._exec(exec_code, {name: value})
            return
        failure = self._direct.call(entry_point, value)
        if failure is not None:
            raise WorkerFailure.from_names(*failure)

    def run(self, request: tuple[Any, ...]) -> Sequence[int]:
        self._enter("_run_batch", _RUN, "_request", request)
        return self._status

    def copy_pending(self, outputs: Sequence[memoryview]) -> None:
        self._enter("_copy_pending", _COPY, "_outputs", tuple(outputs))

    def close(self) -> None:
        _live_direct_workers.discard(self)
        if self._direct is not None:
            try:
                # Py_EndInterpreter refuses an interpreter with thread states
                # besides its own: DirectCall's go first.
                self._direct.detach()
            except RuntimeError:  # a batch is still running in it: leave it
                return
        _destroy(self.interpreter_id)


# Interpreters left at exit make Python's own teardown of them fail on the
# thread states DirectCall keeps; every worker with one is closed first.
_live_direct_workers: weakref.WeakSet[InterpreterWorker] = weakref.WeakSet()


def _direct_call(interpreter_id: int) -> Any:
    """Return the DirectCall into ``interpreter_id``, or None (warning once) where it was not built."""
    if DirectCall is None:
        _warn_direct_unavailable()
        return None
    return DirectCall(interpreter_id)


@functools.cache
def _warn_direct_unavailable() -> None:
    warnings.warn(
        "duckdb_subinterp._direct (a C extension) was not built, so every batch enters its interpreter through "
        "_interpreters.exec, ~50 us slower; reinstall the package where a C compiler is available",
        CompiledPathUnavailableWarning,
        stacklevel=4,
    )


@atexit.register
def _close_live_workers() -> None:
    for worker in list(_live_direct_workers):
        worker.close()


def _destroy(interpreter_id: int) -> None:
    try:
        _interpreters.destroy(interpreter_id)
    except Exception:  # already destroyed, or torn down at exit
        pass


class InterpreterPool(WorkerPool):
    """A pool of per-GIL interpreters, started lazily, shared by UDFs and connections.

    ``size`` defaults to the CPU count. A DuckDB thread calling a UDF checks
    out an idle interpreter and runs the batch there; threads beyond ``size``
    wait up to ``timeout`` seconds for one. ``direct=False`` enters the
    interpreters through ``_interpreters.exec`` instead of the compiled
    ``DirectCall``: ~50 us slower a batch, for comparison.
    """

    # Fan-out: a hand-off to a helper thread and a DirectCall per slice.
    slice_overhead_seconds = 100e-6

    def __init__(self, size: int | None = None, *, timeout: float = DEFAULT_TIMEOUT, direct: bool = True) -> None:
        super().__init__(size, timeout=timeout)
        self.direct = direct

    def _start_worker(self) -> Worker:
        return InterpreterWorker(direct=self.direct)
