"""What crosses the boundary between the main side and a worker: requests, status slots, failures by name.

Standard library only, like everything in ``_worker``. The main side loads
a UDF into a worker with a ``UdfSpec`` and runs a batch with a
``BatchRequest``; the worker answers in its status slots (null count, what
is pending, buffer sizes, child shapes, an async UDF's counters, whether
code printed), which the main side reads after every batch. What goes wrong
in a worker crosses as an exception's type name, message and traceback
(``UdfRaised`` and its siblings, named in ``_engine.pool.WorkerFailure``),
in DuckDB's words where DuckDB has some (``DUCKDB_SENTENCES``).
"""

from __future__ import annotations

import contextlib
import importlib
import traceback
from collections.abc import Callable, Container, Sequence
from typing import Any, NamedTuple

from duckdb_subinterp._codec import Descriptor

# status[0]: the result's null count; status[1]: 1 when the result did not
# fit the outputs and waits for copy_pending, else 0; from SIZES_SLOT on, the
# bytes needed by every output buffer (node by node, depth first, validity
# first in each); then length and null count of every child node of a nested
# result. 256 slots describe a STRUCT of ~60 VARCHAR fields; registration
# refuses types that need more (LAYOUT_SLOTS). After them, an async UDF's
# counters of the batch: calls, retries, timeouts, peak concurrency. Then
# OUTPUT_SLOT: nonzero once code in the worker wrote to sys.stdout or
# sys.stderr (see CapturedOutput), and OUTPUT_SIZE_SLOT: the size of what
# CapturedOutput.pack() kept for the main side to copy.
SIZES_SLOT = 2
LAYOUT_SLOTS = 256
COUNTERS_SLOT = LAYOUT_SLOTS
OUTPUT_SLOT = COUNTERS_SLOT + 4
OUTPUT_SIZE_SLOT = OUTPUT_SLOT + 1
STATUS_SLOTS = OUTPUT_SIZE_SLOT + 1

# status[1]: what the caller does before reading the result.
PENDING_NONE = 0  # written into the outputs
PENDING_BUFFERS = 1  # did not fit: grow the outputs to the sizes, then copy_pending
PENDING_PICKLED = 2  # pickled payload of status[SIZES_SLOT] bytes: copy_pending into one buffer

# Request modes: what a batch returns.
MODE_BUFFERS = 0  # the result encoded into the outputs (or pickled when the codec does not take it)
MODE_PICKLED = 1  # always the pickled payload (a UDF without arguments, whose row count DuckDB does not say)

# The text of a UdfRaised: type name, message and traceback, joined by this.
FIELD_SEPARATOR = "\x1f"


class UdfSpec(NamedTuple):
    """Everything a worker needs to run one UDF; made of shareable values only."""

    name: str
    # "module:qualname", the function pickled by value, or (inline only) the function itself.
    function: str | bytes | Callable[..., Any]
    kind: str  # "native" (one call per row) or "vectorized" (one call per batch)
    arg_descriptors: tuple[Descriptor | None, ...]  # None: an ANY parameter, described by each batch
    return_descriptor: Descriptor
    return_type_name: str
    special_nulls: bool  # null_handling="special": NULL rows reach the function
    errors_to_null: bool  # exception_handling="return_null"
    varargs: bool  # DuckDB passes more columns than arg_descriptors; their descriptors come with each batch
    # (module name, file name, source text, sha256 of it, is a package): the
    # UDF's own module as the main interpreter registered it; None to import by name.
    module_source: tuple[str, str, str, str, bool] | None = None
    path: tuple[str, ...] = ()  # the main interpreter's sys.path at registration
    # An async def UDF's options (_options.AsyncOptions) as a plain tuple, what an
    # interpreter can share; None for a plain function.
    asynchronous: tuple[Any, ...] | None = None


class BatchRequest(NamedTuple):
    """One batch for a worker's ``Runtime.run``.

    Built by the dispatcher; it crosses into an interpreter as a plain tuple
    (``tuple(request)``: an interpreter shares exact tuples only), which the
    runtime reads by position, in this order. Making one costs ~0.3 us more
    than a plain tuple (measured: 362 against 37 ns, on a loaded 2-core
    machine), about 1% of a batch's ~23 us of dispatch.
    """

    udf_id: int
    # Rows in the batch; -1 for a UDF without arguments called once per batch:
    # DuckDB does not say how many rows it wants, and checks what it gets.
    length: int
    columns: Sequence[tuple[Any, ...]]  # one column tree per argument (_codec's layout), buffers as memoryviews
    outputs: Sequence[memoryview]  # the result buffers, allocated by the caller (_engine.arrow.OutputBuffers)
    # The columns' own descriptors where a parameter is ANY (each call site may
    # pass another type), else None: the registered ones.
    descriptors: tuple[Any, ...] | None
    mode: int  # MODE_BUFFERS or MODE_PICKLED


class UdfRaised(Exception):
    """The user's function raised; the message is its type name, message and traceback, FIELD_SEPARATOR apart."""


class UdfResultInvalid(Exception):
    """The user's function returned something that cannot be the UDF's result."""


class UdfArgumentInvalid(Exception):
    """An argument value has no Python equivalent (a TIMESTAMPTZ beyond datetime's range)."""


class UdfLoadFailed(Exception):
    """The user's function could not be imported or unpickled in this worker."""


# The modules whose frames a UDF's traceback leaves out: the batch loop, the async runner, and the
# adapters an aggregate or a table function runs the user's function through.
_OWN_MODULES = (
    "duckdb_subinterp._worker.runtime",
    "duckdb_subinterp._worker.asynchronous",
    "duckdb_subinterp._worker.adapters",
)


def user_frames(error: BaseException) -> str:
    """Return the traceback of ``error`` with the runtime's own frames left out."""
    tb = error.__traceback__
    while tb is not None and tb.tb_frame.f_globals.get("__name__") in _OWN_MODULES:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(error), error, tb)).rstrip()


def user_traceback(error: BaseException) -> str:
    """Say what was raised, then its traceback with the runtime's own frames left out."""
    headline = "".join(traceback.format_exception_only(type(error), error)).rstrip()
    return f"raised {headline}\n{user_frames(error)}"


def raised(error: BaseException) -> UdfRaised:
    """Return the UdfRaised that carries ``error`` across the boundary: type name, message, traceback."""
    try:
        message = str(error)
    except Exception:  # a broken __str__ must not hide the error
        message = f"<{type(error).__name__} whose str() failed>"
    return UdfRaised(FIELD_SEPARATOR.join((type(error).__name__, message, user_frames(error))))


# What a UDF may raise and the runtime still reports as the UDF's error (DuckDB's
# own UDFs report SystemExit and KeyboardInterrupt raised by the function too).
# BatchStopped is the one exception a batch does not catch: it stops the batch.
class BatchStopped(BaseException):
    """Raised into a running batch to stop it (its query was interrupted or timed out)."""


UDF_ERRORS = (Exception, SystemExit, KeyboardInterrupt, GeneratorExit)


def resolve_reference(reference: str) -> Any:
    """Import ``"package.module:qualname"`` and return the named object."""
    module_name, _, qualname = reference.partition(":")
    target: Any = importlib.import_module(module_name)
    for attribute in qualname.split("."):
        target = getattr(target, attribute)
    return target


# DuckDB's own words when a UDF under null_handling='default' returns NULL.
NULL_RESULT_ERROR = (
    "The returned result contained NULL values, but the 'null_handling' was set to DEFAULT. "
    "The UDF is not expected to return NULL values"
)
# Errors that begin with DuckDB's own sentence keep it first; the UDF's name follows.
DUCKDB_SENTENCES = (
    NULL_RESULT_ERROR,
    "The returned table from a pyarrow scalar udf",
    "Returned pyarrow table should have",
    "Could not convert the result into an Arrow Table",
)


def check_no_null_results(
    results: list[Any], arguments: list[Sequence[Any]], failed: Container[int] = frozenset()
) -> None:
    """Under null_handling="default" a row whose arguments are all non-NULL must not produce None.

    Also under exception_handling="return_null", as in DuckDB: only the rows
    whose call raised (``failed``) are NULL without an error.
    """
    with contextlib.suppress(Exception):  # a result whose __eq__ raises: None is found by identity below
        if None not in results:
            return
    for index, value in enumerate(results):
        if value is None and index not in failed and all(argument[index] is not None for argument in arguments):
            raise null_result(index)


def null_result(index: int) -> UdfResultInvalid:
    """Return the error of a NULL result at row ``index`` under null_handling="default", in DuckDB's words."""
    return UdfResultInvalid(
        f"{NULL_RESULT_ERROR}: it returned None at row {index}, whose arguments are all non-NULL; "
        "register it with null_handling='special' to return NULL"
    )
