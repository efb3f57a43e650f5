"""Workers that are actors of a Ray cluster, fed one packed buffer a batch.

For UDFs that should run on more machines than this one. Each worker is a
Ray actor holding the processes backend's ``ProcessRuntime`` (so native,
vectorized and arrow UDFs, and class UDFs with per-actor state, run there as
in a worker process). One batch, on the DuckDB thread that checked the
worker out::

    DuckDB thread                                  Ray actor (a worker process, on any node)
      argument memoryviews
      --pack_batch: copied once into one message:
        a pickled header (udf id, length, column
        layout with spans for the views, output
        capacities, descriptors, mode), then
        every buffer, aligned
      --actor.run.remote(message) ------------------>  views over the message
                                                       ProcessRuntime.run (_codec, or
                                                       pyarrow for type="arrow") into
                                                       result buffers there; a result
                                                       too big for them is copied into
                                                       buffers of its size at once
      <-- ray.get(ref, timeout): one bytes object: the status slots, then
          the used bytes of every result buffer (or the pickled result
          the main side converts, as from the other workers) ---------------+
      --copy once--> OutputBuffers of the dispatcher

Ray sends a bytes-like argument as it is; under ~100 KB (its inline limit)
arguments and results travel inside the call itself, above it through the
object store. Every call carries everything it needs and returns its own
status and result, so several batches may be in flight on one worker at
once (``submit``/``collect``): the actor runs them one after the other, in
order.

An actor that dies (a crash in native code, the OOM killer, a lost node) is
restarted by Ray (``max_restarts`` in ``actor_options``), running its
constructor again: no UDF is loaded there. The worker waits for the
restarted actor (or starts a new one, where Ray gave up restarting it),
loads its UDFs into it and sends the batch again, up to the pool's
``max_retries`` times; then the query fails with ``WorkerDiedError``. An
actor restarted while idle answers "unloaded" to its next batch, which
does the same. Every ``ray.get`` has a timeout.

Nothing here imports ray until a ``RayPool`` is made: ray is an optional
dependency (``pip install 'duckdb-subinterp[ray]'``).
"""

from __future__ import annotations

import contextlib
import functools
import os
import pickle
import signal
import struct
import sys
import traceback
from array import array
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, cast

from duckdb_subinterp._errors import BackendUnavailableError, BrokenPoolError, PoolTimeoutError, WorkerDiedError
from duckdb_subinterp._pool import DEFAULT_TIMEOUT, Worker, WorkerFailure, WorkerPool
from duckdb_subinterp._processes import _DOING, ProcessRuntime, _align, _layout, _Packer, _unpack_column
from duckdb_subinterp._runtime import PENDING_NONE, PENDING_PICKLED, SIZES_SLOT, STATUS_SLOTS, UdfSpec

START_TIMEOUT = 120.0  # placing an actor may wait for a node with free CPUs
DEFAULT_MAX_RETRIES = 2
INSTALL_COMMAND = "pip install 'duckdb-subinterp[ray]'"
_LENGTH = struct.Struct("<Q")  # a batch message's header size
_STATUS_BYTES = 8 * STATUS_SLOTS

# Ours unless actor_options says otherwise. One CPU each, so that a pool of
# the cluster's CPU count spreads one actor per CPU. Ray restarts a dead
# actor itself; its task retries stay off because the worker retries a
# batch itself, after loading the UDFs back into the restarted actor.
DEFAULT_ACTOR_OPTIONS: Mapping[str, Any] = {"num_cpus": 1, "max_restarts": 3, "max_task_retries": 0}


def import_ray() -> Any:
    """Return the ray module, or say how to install it."""
    try:
        import ray
    except ImportError as error:
        raise BackendUnavailableError(
            f"backend='ray' needs the ray package, which cannot be imported ({error}); install it with: "
            f"{INSTALL_COMMAND}"
        ) from None
    return ray


def connect(ray: Any, address: str | None) -> None:
    """Use the current Ray connection; make one only to an address the caller named."""
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if not address:
        raise BackendUnavailableError(
            "backend='ray' runs UDFs on the Ray cluster this process is connected to, and Ray is not initialized: "
            "call ray.init() (a local cluster) or ray.init(address=...) first, pass "
            "pool=RayPool(address='auto') on a node of a running cluster, or set RAY_ADDRESS"
        )
    ray.init(address=address)


# ---------------------------------------------------------------------------
# Actor side (runs in a Ray worker process)
# ---------------------------------------------------------------------------


def node_path(own: Sequence[str], registered: Sequence[str]) -> list[str]:
    """Return the import path a UDF loads with on this node: ``own`` first, then what of ``registered`` exists here.

    The runtime would set the main interpreter's ``sys.path`` as it is
    (``UdfSpec.path``): on another node its entries may not exist, and the
    actor's own ones (what runtime_env's working_dir and py_modules put
    there) would be lost. On a local cluster the driver's entries (its
    tests folder, its current directory) exist and come after.
    """
    path = list(own)
    for entry in registered:
        if entry and entry not in path and os.path.exists(entry):
            path.append(entry)
    return path


class RayRuntimeActor:
    """The body of each actor: a ``ProcessRuntime`` and one method per request.

    Every method answers ``("ok", ...)``, or ``("error", type name, message,
    traceback)`` for an exception, so that a UDF's error reaches the query
    as the other backends report it, not as Ray's ``RayTaskError``.
    """

    def __init__(self) -> None:
        self._own_path = list(sys.path)
        self._status = array("q", bytes(8 * STATUS_SLOTS))
        self.runtime = ProcessRuntime(memoryview(self._status))
        self._terminated = False
        self._watch_sigterm()

    def _watch_sigterm(self) -> None:
        """Note a SIGTERM before Ray's handler raises SystemExit, which would reach the UDF as its own exception.

        Ray ends a worker with SIGTERM at ray.shutdown() or when its node
        goes away; the batch running then answers "terminated", not the
        UDF's SystemExit.
        """
        previous = signal.getsignal(signal.SIGTERM)

        def terminated(number: int, frame: Any) -> None:
            self._terminated = True
            if callable(previous):
                previous(number, frame)
            else:
                raise SystemExit(128 + number)

        with contextlib.suppress(ValueError):  # not the main thread: Ray's own handler stays
            signal.signal(signal.SIGTERM, terminated)

    def hello(self) -> tuple[str, str, int, str]:
        import ray

        return "ok", ray.get_runtime_context().get_actor_id(), os.getpid(), ray.util.get_node_ip_address()

    def load(self, udf_id: int, spec: tuple[Any, ...]) -> tuple[Any, ...]:
        fields = UdfSpec(*spec)
        spec = tuple(fields._replace(path=tuple(node_path(self._own_path, fields.path))))
        return _answer(self.runtime.load, udf_id, spec)

    def unload(self, udf_id: int) -> tuple[Any, ...]:
        return _answer(self.runtime.unload, udf_id)

    def run(self, message: bytes) -> bytes | tuple[Any, ...]:
        """Run the batch a ``pack_batch`` message holds; answer its status slots and result bytes, back to back."""
        udf_id, length, layout, capacities, descriptors, mode, payload = unpack_batch(message)
        if udf_id not in self.runtime.udfs:
            return ("unloaded",)  # Ray restarted this actor: the caller loads the UDFs again
        columns = [_unpack_column(column, payload) for column in layout]
        outputs = _regions(capacities)
        answer = _answer(self.runtime.run, (udf_id, length, columns, outputs, descriptors, mode))
        if self._terminated:
            return "terminated", "was terminated (SIGTERM) while running a batch: Ray is stopping it"
        if answer[0] != "ok":
            return answer
        status = self._status
        sizes = result_sizes(status, len(capacities))
        if status[1] != PENDING_NONE:
            # Too big for the caller's buffers, or pickled: copied now into
            # buffers of its size and returned with the pending flag still
            # set, so the dispatcher's copy_pending needs no round trip.
            outputs = _regions(sizes)
            answer = _answer(self.runtime.copy_pending, outputs)
            if answer[0] != "ok":
                return answer
        return b"".join([status, *(output[:size] for output, size in zip(outputs, sizes, strict=True))])


def result_sizes(status: Sequence[int], buffer_count: int) -> Sequence[int]:
    """Return the sizes of a batch's result buffers, by the status: one pickled payload, or the encoded buffers."""
    if status[1] == PENDING_PICKLED:
        return status[SIZES_SLOT : SIZES_SLOT + 1]
    return status[SIZES_SLOT : SIZES_SLOT + buffer_count]


def pack_batch(request: tuple[Any, ...], capacities: Sequence[int]) -> bytearray:
    """Return one message holding a batch: a header (pickled), then every column buffer, aligned.

    One bytes-like argument: Ray sends it as it is, where five arguments
    (the header's parts and the buffers) cost ~0.2 ms more a call, each
    serialized on its own (measured ad hoc on this 2-core machine, ~1.0 vs
    ~1.3 ms a round trip with 16 KB of data).
    """
    udf_id, length, columns, descriptors, mode = request
    packer = _Packer()
    layout = [packer.pack(column) for column in columns]
    header = pickle.dumps((udf_id, length, layout, list(capacities), descriptors, mode), pickle.HIGHEST_PROTOCOL)
    start = _align(_LENGTH.size + len(header))
    message = bytearray(start + packer.size)
    _LENGTH.pack_into(message, 0, len(header))
    message[_LENGTH.size : _LENGTH.size + len(header)] = header
    packer.copy_into(memoryview(message)[start:])
    return message


def unpack_batch(message: bytes) -> tuple[Any, ...]:
    """Return the header of a ``pack_batch`` message, then a view of its buffers."""
    view = memoryview(message)
    (size,) = _LENGTH.unpack_from(view, 0)
    header = pickle.loads(view[_LENGTH.size : _LENGTH.size + size])
    return (*header, view[_align(_LENGTH.size + size) :])


def _regions(capacities: Sequence[int]) -> list[memoryview]:
    """Return one writable buffer per capacity, laid out aligned in one allocation."""
    spans, total = _layout(capacities)
    region = memoryview(bytearray(total))
    return [region[start : start + size] for start, size in spans]


def _answer(method: Any, *arguments: Any) -> tuple[Any, ...]:
    try:
        return "ok", method(*arguments)
    except Exception as error:
        if isinstance(error, MemoryError) or isinstance(error.__context__, MemoryError):
            # The actor may be in no state to go on: the caller retires it.
            return "fatal", f"ran out of memory (MemoryError):\n{error}"
        return "error", type(error).__name__, str(error), traceback.format_exc()


@functools.cache
def _actor_class(ray: Any) -> Any:
    # Made on first use: ray.remote needs ray imported.
    return ray.remote(RayRuntimeActor)


# ---------------------------------------------------------------------------
# Driver side
# ---------------------------------------------------------------------------


class _ActorLost(Exception):
    """A call did not come back because its actor died or is gone; the batch may be retried."""

    def __init__(self, cause: str, *, replace: bool) -> None:
        super().__init__(cause)
        self.cause = cause
        self.replace = replace  # Ray will not bring this actor back: start a new one


class RayBatch(NamedTuple):
    """A batch sent to an actor and not collected yet."""

    message: bytearray  # what run.remote was called with, to send again after a death
    buffer_count: int  # result buffers asked for
    ref: Any  # the ObjectRef of its answer; None when the send found the actor gone
    actor: Any  # the handle it was sent to


class RayResult:
    """One batch's answer: its status slots, then its result buffers back to back."""

    __slots__ = ("_data", "_sizes", "status")

    def __init__(self, answer: bytes, buffer_count: int) -> None:
        self.status = array("q")
        self.status.frombytes(answer[:_STATUS_BYTES])
        self._data = memoryview(answer)[_STATUS_BYTES:]
        self._sizes = result_sizes(self.status, buffer_count)

    @property
    def pending(self) -> bool:
        """Tell whether the result did not fit the capacities it was sent with, or was pickled."""
        return self.status[1] != PENDING_NONE

    def write_into(self, outputs: Sequence[memoryview]) -> None:
        """Copy the result buffers into ``outputs``, which are large enough."""
        data, start = self._data, 0
        for view, size in zip(outputs, self._sizes, strict=True):
            if size:
                view.cast("B")[:size] = data[start : start + size]
                start += size


class RayWorker(Worker):
    """One Ray actor running a ``ProcessRuntime``; batches go out as one packed buffer each."""

    abortable = True  # the actor can be killed while it runs a batch

    def __init__(self, pool: RayPool) -> None:
        super().__init__()
        self._abort_reason: str | None = None
        self._ray = pool.ray
        self.timeout = pool.timeout
        self.max_retries = pool.max_retries
        self._options = dict(pool.actor_options)
        # What this worker loaded, to load again into an actor Ray restarted.
        self._specs: dict[int, tuple[Any, ...]] = {}
        self._last: RayResult | None = None
        self.actor: Any = None
        self.actor_id = ""
        self.pid = 0  # of the actor's process, on node_address
        self.node_address = ""
        self.description = "Ray actor (not started)"
        self._start_actor()

    # -- the Worker interface ------------------------------------------------

    def load(self, udf_id: int, spec: tuple[Any, ...]) -> None:
        self._call("load", (udf_id, spec))
        self._specs[udf_id] = spec

    def unload(self, udf_id: int) -> None:
        self._specs.pop(udf_id, None)
        # Not waited for: the actor runs calls in order, so the next one
        # finds the UDF gone, and a failure here would only be a dead actor,
        # which that next call sees. Waiting cost a round trip (~1 ms) per
        # removed UDF per worker.
        with contextlib.suppress(_ActorLost):
            self._send("unload", (udf_id,))

    def run(self, request: tuple[Any, ...]) -> Sequence[int]:
        udf_id, length, columns, outputs, descriptors, mode = request
        capacities = [view.nbytes for view in outputs]
        result = self.collect(self.submit((udf_id, length, columns, capacities, descriptors, mode)))
        if not result.pending:
            result.write_into(outputs)
        self._last = result
        return result.status

    def copy_pending(self, outputs: Sequence[memoryview]) -> None:
        last, self._last = self._last, None
        if last is None:
            raise RuntimeError("no pending result to copy")
        last.write_into(outputs)  # the actor sent it whole already, pickled or not

    def close(self) -> None:
        self._kill(self.actor)
        self.actor = None

    def abort(self, reason: str) -> None:
        # The thread in ray.get sees the actor die, and fails its batch instead of retrying it.
        self._abort_reason = reason
        self._kill(self.actor)

    # -- batches in flight ---------------------------------------------------

    def submit(self, request: tuple[Any, ...]) -> RayBatch:
        """Send ``(udf_id, length, columns, output capacities, descriptors, mode)`` without waiting for the answer.

        The columns' buffers are copied into the payload here, so the caller
        may release them at once. Several batches may be in flight on one
        worker; the actor runs them in the order they were sent. Like the
        worker itself, submit and collect belong to the thread that checked
        the worker out.
        """
        udf_id, length, columns, capacities, descriptors, mode = request
        message = pack_batch((udf_id, length, columns, descriptors, mode), capacities)
        actor = self.actor
        try:
            ref = self._send("run", (message,))
        except _ActorLost:
            ref = None  # collect sends it again, to a new actor
        return RayBatch(message, len(capacities), ref, actor)

    def collect(self, batch: RayBatch) -> RayResult:
        """Wait for a batch sent by ``submit``; send it again if its actor died (up to ``max_retries``)."""
        answer = self._finish("run", (batch.message,), batch.ref, batch.actor)
        return RayResult(cast(bytes, answer), batch.buffer_count)  # a batch's result comes as bytes

    # -- calls to the actor --------------------------------------------------

    def _call(self, command: str, arguments: tuple[Any, ...]) -> bytes | tuple[Any, ...]:
        return self._finish(command, arguments, None, None)

    def _finish(self, command: str, arguments: tuple[Any, ...], ref: Any, sent_to: Any) -> bytes | tuple[Any, ...]:
        """Wait for ``ref`` (sent to actor ``sent_to``); after a death, bring an actor back and send the call again."""
        deaths: list[str] = []
        recover: bool | None = None  # set after a death: whether Ray gave up on the actor (start a new one)
        reloaded = False
        while True:
            try:
                if recover is not None:
                    self._recover(replace=recover)
                    recover = None
                if ref is None:
                    sent_to = self.actor
                    ref = self._send(command, arguments)
                answer = self._wait(ref, command, self.timeout)
                if type(answer) is tuple and answer[0] == "terminated":
                    # Ray is stopping the actor: a death, unless ray.shutdown() here is why.
                    self._check_connected(command)
                    raise _ActorLost(answer[1], replace=False)
            except _ActorLost as lost:
                if self._abort_reason is not None:
                    self.broken = True
                    raise WorkerFailure(BrokenPoolError, f"{self.description} {self._abort_reason}") from None
                if sent_to is not self.actor:
                    # Sent before an earlier batch's recovery replaced the actor: send it to the new one.
                    sent_to, ref = None, None
                    continue
                deaths.append(lost.cause)
                if len(deaths) > self.max_retries:
                    self.broken = True
                    raise WorkerFailure(WorkerDiedError, self._died_message(command, deaths)) from None
                recover, ref = lost.replace, None
                continue
            if isinstance(answer, bytes) or answer[0] == "ok":  # a batch's result comes as bytes
                return answer
            if answer[0] == "unloaded" and not reloaded:
                # Ray restarted the actor while it was idle: nobody saw it die.
                reloaded = True
                recover, ref = False, None
                continue
            raise self._failure(command, answer)

    def _recover(self, *, replace: bool) -> None:
        """Make the actor answer again (a new one if ``replace``) and load this worker's UDFs into it."""
        if replace:
            self._kill(self.actor)
            self._start_actor()
        else:
            # Waits for Ray's restart: calls to a restarting actor are queued.
            hello = self._wait(self._send("hello", ()), "hello", min(START_TIMEOUT, self.timeout))
            self._identify(cast("tuple[Any, ...]", hello))  # hello and load answer tuples
        for udf_id, spec in list(self._specs.items()):
            answer = cast("tuple[Any, ...]", self._wait(self._send("load", (udf_id, spec)), "load", self.timeout))
            if answer[0] != "ok":
                raise self._failure("load", answer)

    def _failure(self, command: str, answer: tuple[Any, ...]) -> WorkerFailure:
        """Return the error an answer other than "ok" stands for."""
        if answer[0] == "error":
            return WorkerFailure.from_names(*answer[1:])
        self.broken = True
        if answer[0] == "fatal":
            return WorkerFailure(WorkerDiedError, f"{self.description} {answer[1]}")
        return WorkerFailure(BrokenPoolError, f"{self.description} answered {answer!r} {_DOING[command]}")

    def _send(self, command: str, arguments: tuple[Any, ...]) -> Any:
        self._check_connected(command)
        try:
            return getattr(self.actor, command).remote(*arguments)
        except Exception as error:
            self._check_connected(command)
            # Connected, but the handle is not: an actor of an earlier Ray session.
            raise _ActorLost(f"{type(error).__name__}: {error}", replace=True) from None

    def _wait(self, ref: Any, command: str, timeout: float) -> bytes | tuple[Any, ...]:
        ray = self._ray
        self._check_connected(command)
        try:
            answer: bytes | tuple[Any, ...] = ray.get(ref, timeout=timeout)  # what the actor's method returned
            return answer
        except ray.exceptions.GetTimeoutError:
            raise self._timed_out(
                f"did not answer within {timeout:g} s {_DOING[command]} and was killed; pass a larger timeout= to "
                "the pool if batches legitimately take this long"
            ) from None
        except ray.exceptions.ActorDiedError as error:
            # Dead for good (out of restarts, or killed without restart).
            raise _ActorLost(_one_line(error), replace=True) from None
        except ray.exceptions.RayActorError as error:
            # Unavailable for now: Ray is restarting it.
            raise _ActorLost(_one_line(error), replace=False) from None
        except (ray.exceptions.WorkerCrashedError, ray.exceptions.ObjectLostError) as error:
            raise _ActorLost(_one_line(error), replace=True) from None
        except SystemExit:
            # What ray.get raises in a thread when ray.shutdown() runs in another.
            self.broken = True
            raise WorkerFailure(BrokenPoolError, self._disconnected(command)) from None
        except Exception as error:
            self._check_connected(command)
            self.broken = True
            raise WorkerFailure(
                BrokenPoolError, f"{self.description} failed {_DOING[command]}: {type(error).__name__}: {error}"
            ) from None

    def _timed_out(self, what: str) -> WorkerFailure:
        """Retire this worker and kill its actor, which did not answer in time; return the error saying ``what``."""
        self.broken = True
        self._kill(self.actor)
        return WorkerFailure(PoolTimeoutError, f"{self.description} {what}")

    def _check_connected(self, command: str) -> None:
        """Fail the call if Ray is not connected, before a Ray call would connect it.

        After ray.shutdown(), ray.get, ray.kill and every .remote() start a
        new local cluster (Ray's auto-init): never what a query wants.
        """
        if not self._ray.is_initialized():
            self.broken = True
            raise WorkerFailure(BrokenPoolError, self._disconnected(command))

    def _disconnected(self, command: str) -> str:
        return (
            f"the connection to the Ray cluster ended {_DOING[command]} (ray.shutdown() was called, or the cluster "
            "went away); connect again with ray.init() and run the query again"
        )

    def _died_message(self, command: str, deaths: list[str]) -> str:
        tries = len(deaths)
        return (
            f"{self.description} died {_DOING[command]}, {tries} time{'s' if tries > 1 else ''} in a row "
            f"(the pool retries a batch up to max_retries={self.max_retries} times, on the restarted actor or a "
            f"new one). Last cause, from Ray: {deaths[-1]}"
        )

    # -- actors --------------------------------------------------------------

    def _start_actor(self) -> None:
        ray = self._ray
        self._check_connected("hello")
        self.actor = None
        self.description = "a new Ray actor"
        start_timeout = min(START_TIMEOUT, self.timeout)
        try:
            self.actor = _actor_class(ray).options(**self._options).remote()
            hello = self.actor.hello.remote()
            self._check_connected("hello")
            answer = ray.get(hello, timeout=start_timeout)
        except WorkerFailure:
            self._kill(self.actor)
            raise
        except ray.exceptions.GetTimeoutError:
            raise self._timed_out(
                f"did not start within {start_timeout:g} s: the cluster may have no room for it (actor_options "
                f"{self._options}; available now: {_available(ray)}); make the pool smaller or ask for fewer "
                "resources per actor"
            ) from None
        except SystemExit:
            self.broken = True
            raise WorkerFailure(BrokenPoolError, self._disconnected("hello")) from None
        except Exception as error:
            self.broken = True
            self._kill(self.actor)
            self._check_connected("hello")
            raise WorkerFailure(WorkerDiedError, f"{self.description} could not start: {_one_line(error)}") from None
        self._identify(answer)

    def _identify(self, hello: tuple[Any, ...]) -> None:
        """Take the actor's id, process and node from its answer to "hello" (they change when Ray restarts it)."""
        _, self.actor_id, self.pid, self.node_address = hello
        self.description = f"Ray actor {self.actor_id} (pid {self.pid} on {self.node_address})"

    def _kill(self, actor: Any) -> None:
        """Stop ``actor`` for good; must not raise (it may be gone, or Ray shut down)."""
        if actor is None:
            return
        try:
            if self._ray.is_initialized():
                self._ray.kill(actor, no_restart=True)
        except Exception:
            pass


def _one_line(error: BaseException, limit: int = 1500) -> str:
    """Ray's error text on one line, cut to ``limit`` characters (its messages run long)."""
    text = " ".join(str(error).split())
    return text if len(text) <= limit else text[:limit] + " ..."


def _available(ray: Any) -> dict[str, float]:
    try:
        resources = ray.available_resources()
    except Exception:
        return {}
    return {name: value for name, value in resources.items() if name in ("CPU", "GPU", "memory")}


class RayPool(WorkerPool):
    """A pool of Ray actors, started lazily, shared by UDFs and connections.

    Uses the Ray connection this process has (``ray.init()``); with
    ``address`` (or ``RAY_ADDRESS``) and no connection yet it connects
    there. ``size`` defaults to the cluster's CPUs divided by the actors'
    ``num_cpus``. ``actor_options`` go to ``.options()`` of each actor
    (``num_cpus``, ``max_restarts``, ``runtime_env``, ``resources``...),
    over the defaults ``DEFAULT_ACTOR_OPTIONS``. A batch whose actor died
    is sent again up to ``max_retries`` times before the query fails.
    """

    # Fan-out: a hand-off to a helper thread and a Ray round trip per slice
    # (~1-1.5 ms with 16 KB of data on a local cluster, measured ad hoc).
    slice_overhead_seconds = 1.5e-3
    # bench/ray_bench.py: 1.3 to 1.7 ms a batch over processes' on a local cluster
    round_trip_seconds = 1.5e-3

    def __init__(
        self,
        size: int | None = None,
        *,
        address: str | None = None,
        actor_options: Mapping[str, Any] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
    ) -> None:
        if actor_options is not None and not isinstance(actor_options, Mapping):
            raise ValueError(f"actor_options must be a dict of Ray actor options, got {actor_options!r}")
        if not isinstance(max_retries, int) or isinstance(max_retries, bool) or max_retries < 0:
            raise ValueError(f"max_retries must be an int >= 0, got {max_retries!r}")
        ray = import_ray()
        connect(ray, address)
        options = {**DEFAULT_ACTOR_OPTIONS, **(actor_options or {})}
        if size is None:
            size = _cluster_size(ray, options)
        super().__init__(size, timeout=timeout)
        self.ray = ray
        self.address = address
        self.actor_options = options
        self.max_retries = max_retries

    def _start_worker(self) -> Worker:
        return RayWorker(self)


def _cluster_size(ray: Any, options: Mapping[str, Any]) -> int:
    """Return how many actors of ``options`` the cluster's CPUs hold (at least one)."""
    cpus = ray.cluster_resources().get("CPU", 0)
    per_actor = options.get("num_cpus") or 0
    return max(1, int(cpus // per_actor if per_actor else cpus))
