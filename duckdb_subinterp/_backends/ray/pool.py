"""The driver's side of the Ray backend: ``RayWorker`` (one actor) and ``RayPool``; see the package's docstring."""

from __future__ import annotations

import contextlib
import os
from array import array
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, cast

from duckdb_subinterp._backends.processes.wire import DOING
from duckdb_subinterp._backends.ray.actor import STATUS_BYTES, actor_class, pack_batch, result_sizes
from duckdb_subinterp._engine import lifecycle  # noqa: F401 - exit and fork hooks in place before a pool exists
from duckdb_subinterp._engine.pool import DEFAULT_TIMEOUT, Worker, WorkerFailure, WorkerPool
from duckdb_subinterp._errors import BackendUnavailableError, BrokenPoolError, PoolTimeoutError, WorkerDiedError
from duckdb_subinterp._worker.protocol import PENDING_NONE, BatchRequest

START_TIMEOUT = 120.0  # placing an actor may wait for a node with free CPUs
DEFAULT_MAX_RETRIES = 2
INSTALL_COMMAND = "pip install 'duckdb-subinterp[ray]'"

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


class _ActorLost(Exception):
    """A call did not come back because its actor died or is gone; the batch may be retried."""

    def __init__(self, cause: str, *, replace: bool) -> None:
        super().__init__(cause)
        self.cause = cause
        self.replace = replace  # Ray will not bring this actor back: start a new one


class Submission(NamedTuple):
    """A batch for ``RayWorker.submit``: a ``BatchRequest``, with the result buffers' capacities for the buffers."""

    udf_id: int
    length: int
    columns: Sequence[tuple[Any, ...]]
    capacities: Sequence[int]  # of the caller's result buffers: the actor makes its own of these sizes
    descriptors: tuple[Any, ...] | None
    mode: int


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
        self.status.frombytes(answer[:STATUS_BYTES])
        self._data = memoryview(answer)[STATUS_BYTES:]
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

    def run(self, request: BatchRequest) -> Sequence[int]:
        outputs = request.outputs
        capacities = [view.nbytes for view in outputs]
        submission = Submission(
            request.udf_id, request.length, request.columns, capacities, request.descriptors, request.mode
        )
        result = self.collect(self.submit(submission))
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

    def submit(self, request: Submission) -> RayBatch:
        """Send a batch without waiting for the answer.

        The columns' buffers are copied into the payload here, so the caller
        may release them at once. Several batches may be in flight on one
        worker; the actor runs them in the order they were sent. Like the
        worker itself, submit and collect belong to the thread that checked
        the worker out.
        """
        udf_id, length, columns, capacities, descriptors, mode = request  # a Submission, or a tuple of its fields
        message = pack_batch(BatchRequest(udf_id, length, columns, (), descriptors, mode), capacities)
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
        return WorkerFailure(BrokenPoolError, f"{self.description} answered {answer!r} {DOING[command]}")

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
                f"did not answer within {timeout:g} s {DOING[command]} and was killed; pass a larger timeout= to "
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
                BrokenPoolError, f"{self.description} failed {DOING[command]}: {type(error).__name__}: {error}"
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
            f"the connection to the Ray cluster ended {DOING[command]} (ray.shutdown() was called, or the cluster "
            "went away); connect again with ray.init() and run the query again"
        )

    def _died_message(self, command: str, deaths: list[str]) -> str:
        tries = len(deaths)
        return (
            f"{self.description} died {DOING[command]}, {tries} time{'s' if tries > 1 else ''} in a row "
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
            self.actor = actor_class(ray).options(**self._options).remote()
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
    ``address`` (or ``RAY_ADDRESS``) and no connection yet it connects there.

    Args:
        size: How many actors at most; None for the cluster's CPUs divided by the actors' ``num_cpus``.
        address: A cluster to connect to where Ray is not initialized yet (or ``RAY_ADDRESS``).
        actor_options: Passed to ``.options()`` of each actor (``num_cpus``, ``max_restarts``,
            ``runtime_env``, ``resources``...), over the defaults ``DEFAULT_ACTOR_OPTIONS``.
        timeout: Seconds a batch may wait for a free actor, and each call to one; ``math.inf`` for no limit.
        max_retries: How many times a batch whose actor died is sent again before the query fails.

    Raises:
        BackendUnavailableError: ray is not installed, or not initialized and no address was given.
        ValueError: ``actor_options`` is not a mapping, or ``max_retries`` not an int >= 0.

    Example:
        ```python
        import ray

        ray.init()
        with duckdb_subinterp.RayPool(4) as pool:
            duckdb_subinterp.create_function(con, "score", score, backend="ray", pool=pool)
        ```
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
