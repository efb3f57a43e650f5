"""The ray backend: optional import, connection, arrow and class UDFs on actors, dead actors, a cluster that goes away.

The contract suite (test_contract.py, test_sliced.py, test_types_property.py)
runs on ray too, through conftest's ``backend`` fixture. Tests here run on a
local cluster (conftest's ``ray_cluster``: 2 CPUs, a 200 MiB object store) or,
where a scenario shuts the cluster down, in a child Python with its own
cluster and a hard timeout. Actors killed or crashing cannot take this
process down, and every wait on them has the pool's timeout, so those
scenarios run here.
"""

from __future__ import annotations

import os
import re
import signal
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from support.script_helper import run_python
from udfs import numpy_udfs, reliability_udfs, udf_module

import duckdb_subinterp
from duckdb_subinterp import RayPool, WorkerDiedError
from duckdb_subinterp._backends.ray import pool as _ray
from duckdb_subinterp._backends.ray.pool import INSTALL_COMMAND
from duckdb_subinterp._engine.arrow import column_buffers, descriptor_for, layout_signature
from duckdb_subinterp._registration.api import _dispatcher
from duckdb_subinterp._worker.protocol import MODE_BUFFERS

RAY_MISSING = f"backend='ray' needs ray, which is not installed: {INSTALL_COMMAND}"
# A child that starts its own cluster: ~6 s to start here, then a few queries. Under pytest's own
# 120 s timeout, so a stuck child fails its test with its output instead of ending the session.
CHILD_TIMEOUT = 100


def run_child(script: str, *, timeout: float = CHILD_TIMEOUT, env: dict[str, str] | None = None) -> str:
    """Run ``script`` in a fresh Python with a hard timeout; return its stdout, which must end in ok."""
    result = run_python("-c", textwrap.dedent(script), timeout=timeout, env={**(env or {}), "RAY_ADDRESS": None})
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.report()
    return result.stdout


# ---------------------------------------------------------------------------
# Optional: ray is imported only for backend="ray", and its absence is explained
# ---------------------------------------------------------------------------


def test_importing_the_package_does_not_import_ray():
    run_child(
        """
        import sys
        import duckdb_subinterp
        assert duckdb_subinterp.RayPool and "ray" in duckdb_subinterp.BACKENDS
        assert "ray" not in sys.modules, "importing duckdb_subinterp imported ray"
        print("ok")
        """
    )


def test_without_ray_installed_the_error_gives_the_pip_command():
    run_child(
        """
        import sys
        sys.modules["ray"] = None  # as if not installed: `import ray` raises ImportError
        import duckdb, duckdb_subinterp
        from udfs import udf_module
        from duckdb_subinterp import BackendUnavailableError, UDFRegistrationError
        con = duckdb.connect()
        for attempt in (lambda: duckdb_subinterp.create_function(con, "f", udf_module.add_one, backend="ray"),
                        lambda: duckdb_subinterp.RayPool(2)):
            try:
                attempt()
            except BackendUnavailableError as error:
                assert isinstance(error, UDFRegistrationError)
                assert "pip install 'duckdb-subinterp[ray]'" in str(error), error
            else:
                raise AssertionError("no error")
        print("ok")
        """
    )


def test_without_a_ray_connection_the_error_says_to_call_ray_init():
    pytest.importorskip("ray", reason=RAY_MISSING)
    run_child(
        """
        import ray, duckdb, duckdb_subinterp
        from udfs import udf_module
        from duckdb_subinterp import BackendUnavailableError
        con = duckdb.connect()
        try:
            duckdb_subinterp.create_function(con, "f", udf_module.add_one, backend="ray")
        except BackendUnavailableError as error:
            assert "Ray is not initialized: call ray.init()" in str(error), error
            assert "RayPool(address=" in str(error), error
        else:
            raise AssertionError("no error")
        assert not ray.is_initialized(), "the default pool started a cluster of its own"
        print("ok")
        """
    )


def test_the_bench_leaves_out_backends_that_need_a_cluster():
    from bench import suite as _bench

    assert duckdb_subinterp.BACKENDS["ray"].needs_cluster
    pooled = [candidate.backend for candidate in _bench.candidates() if isinstance(candidate, _bench.PooledBackend)]
    assert "ray" not in pooled and "processes" in pooled


# ---------------------------------------------------------------------------
# On a local cluster
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pool(ray_cluster: object) -> Iterator[RayPool]:
    with RayPool(2, actor_options={"num_cpus": 1}, timeout=60) as shared:
        yield shared


# Actors hold the CPUs they ask for, and the shared pool above holds both of
# the test cluster's: other pools here ask for none.
UNRESERVED = {"num_cpus": 0}


def test_default_pool_holds_one_actor_per_cluster_cpu(ray_cluster):
    pool = duckdb_subinterp.default_pool("ray")
    assert isinstance(pool, RayPool) and pool.size == 2
    assert RayPool(actor_options={"num_cpus": 0.5}).size == 4 and RayPool(actor_options={"num_cpus": 1}).size == 2
    assert pool.actor_options["max_task_retries"] == 0 and pool.actor_options["max_restarts"] == 3
    assert _ray.DEFAULT_ACTOR_OPTIONS["num_cpus"] == 0  # conftest's, for the test cluster; the package's is 1


@pytest.mark.parametrize(
    ("options", "pattern"),
    [
        ({"max_retries": -1}, "max_retries must be an int >= 0"),
        ({"actor_options": [1]}, "actor_options must be a dict"),
    ],
)
def test_bad_pool_options_are_refused(ray_cluster, options, pattern):
    with pytest.raises(ValueError, match=pattern):
        RayPool(1, **options)


def test_pool_must_fit_the_backend(con, pool):
    with pytest.raises(duckdb_subinterp.UDFRegistrationError, match=r"pass a ProcessPool"):
        duckdb_subinterp.create_function(con, "f", udf_module.add_one, backend="processes", pool=pool)


ARROW_CASES = [
    ("root", numpy_udfs.root_arrow, ["DOUBLE"], "DOUBLE", "CASE WHEN i % 7 = 0 THEN NULL ELSE i / 3 END"),
    ("labels", numpy_udfs.labels_arrow, ["BIGINT"], "VARCHAR", "CASE WHEN i % 7 = 0 THEN NULL ELSE i END"),
    ("by-value", lambda xs: xs.to_numpy() * 2, ["BIGINT"], "DOUBLE", "i"),
]


@pytest.mark.parametrize(
    ("name", "function", "parameters", "return_type", "expression"), ARROW_CASES, ids=[case[0] for case in ARROW_CASES]
)
def test_arrow_udf_matches_duckdbs_arrow_udf(con, pool, name, function, parameters, return_type, expression):
    con.execute(f"CREATE TABLE t AS SELECT i, ({expression})::{parameters[0]} AS x FROM range(5000) r(i)")
    con.create_function("reference", function, parameters, return_type, type="arrow")
    duckdb_subinterp.create_function(
        con, "mine", function, parameters, return_type, type="arrow", backend="ray", pool=pool
    )
    rows = con.sql("SELECT reference(x), mine(x) FROM t ORDER BY i").fetchall()
    assert [row[0] for row in rows] == [row[1] for row in rows]
    assert any(row[0] is not None for row in rows)


def test_numpy_module_loads_by_reference(con, pool):
    duckdb_subinterp.create_function(con, "root", "udfs.numpy_udfs:root", backend="ray", pool=pool)
    assert con.sql("SELECT root(16.0)").fetchall() == [(4.0,)]


def test_class_udf_state_is_per_actor(con, pool):
    duckdb_subinterp.create_function(
        con, "tick", udf_module.BatchCounter, ["BIGINT"], "VARCHAR", type="vectorized", backend="ray", pool=pool
    )
    rows = con.sql("SELECT DISTINCT tick(i) FROM range(20 * 2048) t(i)").fetchall()
    batches = duckdb_subinterp.udf_stats(con, "tick")["batches"]
    counts: dict[str, list[int]] = {}
    for (label,) in rows:
        pid, count = label.split(":")
        counts.setdefault(pid, []).append(int(count))
    # Each actor counted its own batches from 1: __init__ ran once per actor, never per batch.
    assert 1 <= len(counts) <= 2 and str(os.getpid()) not in counts
    for seen in counts.values():
        assert sorted(seen) == list(range(1, len(seen) + 1))
    assert sum(len(seen) for seen in counts.values()) == batches >= 20


def test_batches_larger_than_rays_inline_limit_go_through_the_object_store(con, pool):
    # ~2 MiB of text a batch each way, far over the ~100 KB Ray sends inside a call.
    con.execute("CREATE TABLE t AS SELECT i, repeat(chr(65 + (i % 26)::INTEGER), 1000) || i AS x FROM range(6000) r(i)")
    con.create_function("reference", udf_module.shout)
    duckdb_subinterp.create_function(con, "mine", udf_module.shout, backend="ray", pool=pool)
    mismatches = con.sql("SELECT count(*) FROM t WHERE reference(x) IS DISTINCT FROM mine(x)").fetchall()
    assert mismatches == [(0,)]


def test_result_larger_than_the_first_guess_comes_back_in_one_call(con, pool):
    duckdb_subinterp.create_function(con, "widen", lambda s: s * 500, ["VARCHAR"], "VARCHAR", backend="ray", pool=pool)
    rows = con.sql("SELECT i, widen('ab' || i) FROM range(3000) t(i)").fetchall()
    assert all(text == f"ab{i}" * 500 for i, text in rows)


def test_exception_names_udf_type_message_and_traceback(con, pool):
    duckdb_subinterp.create_function(con, "picky", udf_module.fail_on_three, backend="ray", pool=pool)
    with pytest.raises(duckdb.InvalidInputException) as raised:
        con.sql("SELECT picky(i) FROM range(10) t(i)").fetchall()
    message = str(raised.value)
    assert "ValueError: three is not allowed (got 3)\n(raised in UDF 'picky')" in message
    assert "udf_module.py" in message
    assert con.sql("SELECT picky(4)").fetchall() == [(4,)]


def _bigint_column(values: list[int]) -> tuple[object, ...]:
    arrow_type = pa.int64()
    descriptor = descriptor_for(duckdb.sqltype("BIGINT"))
    return column_buffers(
        pa.chunked_array([pa.array(values, arrow_type)]), arrow_type, descriptor, layout_signature(arrow_type)
    )


def test_several_batches_in_flight_on_one_worker(con, pool):
    """submit() sends without waiting; the actor runs the batches in order and each answer is its own."""
    duckdb_subinterp.create_function(
        con, "twice", udf_module.doubled_batch, ["BIGINT"], "BIGINT", type="vectorized", backend="ray", pool=pool
    )
    udf_id = _dispatcher(con, "twice").udf_id
    slices = [list(range(start, start + 700)) for start in (0, 700, 1400)]
    with pool.lease(udf_id, "twice") as worker:
        requests = [
            (udf_id, len(values), [_bigint_column(values)], [0, 8 * len(values)], None, MODE_BUFFERS)
            for values in slices
        ]
        sent = [worker.submit(request) for request in requests]
        results = [worker.collect(batch) for batch in sent]
    for values, result in zip(slices, results, strict=True):
        assert not result.pending and result.status[0] == 0
        data = memoryview(bytearray(8 * len(values)))
        result.write_into([memoryview(bytearray(0)), data])
        assert data.cast("q").tolist() == [2 * value for value in values]


def test_batches_in_flight_when_their_actor_dies_go_to_its_replacement(con, ray_cluster):
    """max_restarts=0: Ray does not restart the actor; the first batch collected starts a new one, the others follow."""
    options = {**UNRESERVED, "max_restarts": 0}
    with RayPool(1, actor_options=options, timeout=30) as lone:
        duckdb_subinterp.create_function(
            con, "slow", reliability_udfs.slow_batch, ["BIGINT"], "BIGINT", type="vectorized", backend="ray", pool=lone
        )
        udf_id = _dispatcher(con, "slow").udf_id
        slices = [list(range(start, start + 500)) for start in (0, 500, 1000)]
        requests = [
            (udf_id, len(values), [_bigint_column(values)], [0, 8 * len(values)], None, MODE_BUFFERS)
            for values in slices
        ]
        with lone.lease(udf_id, "slow") as worker:
            killed, first_actor = worker.pid, worker.actor_id
            sent = [worker.submit(request) for request in requests]
            os.kill(killed, signal.SIGKILL)
            results = [worker.collect(batch) for batch in sent]
            assert worker.actor_id != first_actor and worker.pid != killed
    for values, result in zip(slices, results, strict=True):
        data = memoryview(bytearray(8 * len(values)))
        result.write_into([memoryview(bytearray(0)), data])
        assert data.cast("q").tolist() == values


def test_a_costly_batch_fans_out_over_the_actors(pool):
    con = duckdb.connect()
    con.execute("SET threads=1")  # one DuckDB thread: only a fan-out puts the second actor to work
    duckdb_subinterp.create_function(con, "costly", udf_module.slow_square, backend="ray", pool=pool)
    assert con.sql("SELECT sum(costly(i)) FROM range(20000) t(i)").fetchall() == [(sum(i * i for i in range(20000)),)]
    # The first two batches teach the dispatcher the UDF's cost (~0.4 s, over 20 slices' overhead); later ones
    # (8 more) fan out whenever the other actor is idle.
    stats = duckdb_subinterp.udf_stats(con, "costly")
    assert stats["fanned_batches"] >= 3 and stats["slices"] > stats["batches"]
    con.close()


def test_wedged_actor_is_killed_after_the_timeout(con, ray_cluster):
    with RayPool(1, actor_options=UNRESERVED, timeout=2) as short:
        duckdb_subinterp.create_function(con, "stuck", udf_module.sleep_forever, backend="ray", pool=short)
        pattern = r"PoolTimeoutError: UDF 'stuck': Ray actor \w+ \(pid \d+ on .*did not answer within 2 s"
        with pytest.raises(duckdb.InvalidInputException, match=pattern):
            con.sql("SELECT stuck(i) FROM range(1) t(i)").fetchall()
        duckdb_subinterp.create_function(con, "fine", udf_module.add_one, backend="ray", pool=short)
        assert con.sql("SELECT fine(1)").fetchall() == [(2,)]


def test_close_with_a_batch_running_stops_its_actor_after_a_short_grace(con, ray_cluster):
    pool = RayPool(1, actor_options=UNRESERVED, timeout=600)
    duckdb_subinterp.create_function(con, "stuck", udf_module.sleep_forever, backend="ray", pool=pool)
    errors: list[str] = []

    def query() -> None:
        try:
            con.cursor().sql("SELECT stuck(i) FROM range(1) t(i)").fetchall()
        except duckdb.Error as error:
            errors.append(str(error))

    thread = threading.Thread(target=query)
    thread.start()
    deadline = time.monotonic() + 30
    while not pool._busy and time.monotonic() < deadline:  # the batch has its worker
        time.sleep(0.01)
    started = time.monotonic()
    pool.close()
    thread.join(30)
    assert not thread.is_alive() and time.monotonic() - started < 10
    assert "BrokenPoolError: UDF 'stuck': Ray actor" in errors[0], errors
    assert "was stopped because its pool was closed while it ran a batch" in errors[0]
    assert pool.started == 0


def test_actor_the_cluster_has_no_room_for_fails_at_registration(con, ray_cluster):
    with RayPool(1, actor_options={"num_cpus": 64}, timeout=2) as too_big:
        pattern = (
            r"UDF 'f': cannot load the function in a worker:\n.*did not start within 2 s: the cluster may have "
            r"no room.*'num_cpus': 64"
        )
        with pytest.raises(duckdb_subinterp.UDFRegistrationError, match=pattern):
            duckdb_subinterp.create_function(con, "f", udf_module.add_one, backend="ray", pool=too_big)


def test_actor_options_reach_the_actors(con, ray_cluster):
    options = {**UNRESERVED, "runtime_env": {"env_vars": {"DUCKDB_SUBINTERP_PROBE": "from runtime_env"}}}
    with RayPool(1, actor_options=options, timeout=60) as configured:
        duckdb_subinterp.create_function(con, "env", udf_module.environment_variable, backend="ray", pool=configured)
        assert con.sql("SELECT env('DUCKDB_SUBINTERP_PROBE')").fetchall() == [("from runtime_env",)]


def test_a_local_folder_in_an_actors_runtime_env_fails_the_registration_saying_where_it_goes(
    con, ray_cluster, tmp_path: Path
):
    options = {**UNRESERVED, "runtime_env": {"working_dir": str(tmp_path)}}
    with RayPool(1, actor_options=options, timeout=60) as misconfigured:
        pattern = r"UDF 'f': cannot load the function in a worker:\n.*could not start: .*supported at the job level"
        with pytest.raises(duckdb_subinterp.UDFRegistrationError, match=pattern):
            duckdb_subinterp.create_function(con, "f", udf_module.add_one, backend="ray", pool=misconfigured)


CRASHES = [(udf_module.segfault, 1), (udf_module.exit_three, 0)]


@pytest.mark.parametrize(("function", "max_retries"), CRASHES, ids=[case[0].__name__ for case in CRASHES])
def test_actor_that_dies_on_every_try_fails_the_query_naming_udf_and_cause(con, ray_cluster, function, max_retries):
    with RayPool(1, actor_options=UNRESERVED, timeout=30, max_retries=max_retries) as fragile_pool:
        duckdb_subinterp.create_function(
            con, "fragile", function, ["BIGINT"], "BIGINT", backend="ray", pool=fragile_pool
        )
        with pytest.raises(duckdb.InvalidInputException) as raised:
            con.sql("SELECT fragile(i) FROM range(10) t(i)").fetchall()
        message = str(raised.value)
        tries = f"{max_retries + 1} time{'s' if max_retries else ''} in a row"
        assert re.search(
            rf"WorkerDiedError: UDF 'fragile': Ray actor \w+ \(pid \d+ on [\d.]+\) died while running "
            rf"a batch, {tries} \(the pool retries a batch up to max_retries={max_retries} times",
            message,
        ), message
        cause = message.split("Last cause, from Ray: ")[1]
        assert ("actor" in cause and "died" in cause) or "unavailable" in cause, cause
        # The next query works, on the same pool.
        duckdb_subinterp.create_function(con, "fine", udf_module.add_one, backend="ray", pool=fragile_pool)
        assert con.sql("SELECT sum(fine(i)) FROM range(5000) t(i)").fetchall() == [(sum(range(1, 5001)),)]


def test_actor_killed_mid_query_is_retried_and_the_next_query_works(con, ray_cluster):
    rows = 120 * 2048  # 120 batches of 20 ms: ~1.5 s on two actors
    expected = [(sum(range(rows)),)]
    # A table of two row groups, which DuckDB scans on both threads (range() runs on one).
    con.execute(f"CREATE TABLE t AS SELECT i FROM range({rows}) r(i)")
    with RayPool(2, actor_options=UNRESERVED, timeout=30) as killed_pool:
        duckdb_subinterp.create_function(
            con,
            "slow",
            reliability_udfs.slow_batch,
            ["BIGINT"],
            "BIGINT",
            type="vectorized",
            backend="ray",
            pool=killed_pool,
        )
        killed_pool.start_all()
        victim = killed_pool._idle[0]
        killed = victim.pid
        threading.Timer(0.5, os.kill, (killed, signal.SIGKILL)).start()
        assert con.sql("SELECT sum(slow(i)) FROM t").fetchall() == expected
        # Ray restarted the actor (a new process) and the batch ran again there.
        assert victim.pid != killed and not victim.broken
        assert con.sql("SELECT sum(slow(i)) FROM t").fetchall() == expected
        assert killed_pool.started == 2


def test_worker_died_error_is_a_broken_pool_error():
    assert issubclass(WorkerDiedError, duckdb_subinterp.BrokenPoolError)


# ---------------------------------------------------------------------------
# A cluster of its own, in a child Python: actors killed, the cluster shut down
# ---------------------------------------------------------------------------

_CHILD_CLUSTER = """
import threading, time
import duckdb, ray
import duckdb_subinterp
from udfs import reliability_udfs
ray.init(num_cpus=2, object_store_memory=100 * 1024**2, include_dashboard=False, log_to_driver=False)
con = duckdb.connect()
con.execute("SET threads=2")
con.execute("SET enable_progress_bar=false")
rows = 120 * 2048  # 120 batches of 20 ms: ~1.5 s on two actors
expected = [(sum(range(rows)),)]
con.execute(f"CREATE TABLE t AS SELECT i FROM range({rows}) r(i)")  # two row groups: both threads
"""


def test_a_query_after_ray_shutdown_fails_clearly_and_a_new_connection_works():
    # Not ray.shutdown() during a query: a ray.get in flight then can spin in Ray's core worker
    # past its timeout (seen once in CI; see the README's Ray faults). Between queries it is
    # the pool's to notice.
    pytest.importorskip("ray", reason=RAY_MISSING)
    run_child(
        _CHILD_CLUSTER
        + """
duckdb_subinterp.create_function(con, "slow", reliability_udfs.slow_batch, ["BIGINT"], "BIGINT",
                                 type="vectorized", backend="ray")
assert con.sql("SELECT sum(slow(i)) FROM t").fetchall() == expected
ray.shutdown()
started = time.monotonic()
try:
    con.sql("SELECT sum(slow(i)) FROM t").fetchall()
except duckdb.Error as error:
    message = str(error)
    assert "BrokenPoolError: UDF 'slow': the connection to the Ray cluster ended" in message, message
    assert "ray.shutdown()" in message and "ray.init()" in message, message
else:
    raise AssertionError("the query ran without a cluster")
assert time.monotonic() - started < 20, time.monotonic() - started
assert not ray.is_initialized()  # no Ray call of the pool started a new local cluster
# Connected again, the same default pool replaces the actors of the old cluster.
ray.init(num_cpus=2, object_store_memory=100 * 1024**2, include_dashboard=False, log_to_driver=False)
assert con.sql("SELECT sum(slow(i)) FROM t").fetchall() == expected
ray.shutdown()
print("ok")
"""
    )


# ---------------------------------------------------------------------------
# Two nodes (Ray's own multi-node test cluster, on this machine): actors on the
# node DuckDB is not on, importing a module only the job's runtime_env ships
# ---------------------------------------------------------------------------


def test_actors_on_another_node_import_what_the_jobs_runtime_env_ships(tmp_path: Path):
    pytest.importorskip("ray", reason=RAY_MISSING)
    try:
        from ray._common.utils import get_ray_address_file
    except ImportError:  # where older Ray releases keep it
        from ray._private.utils import get_ray_address_file  # type: ignore[no-redef]

    # Ray's test Cluster writes its address there for a later ray.init() to connect to: a child
    # stopped before its own clean-up would send the next local cluster of this session to a dead one.
    address_file = Path(get_ray_address_file(None))
    before = address_file.read_text() if address_file.exists() else None
    try:
        _run_two_node_child(tmp_path)
    finally:
        if address_file.exists() and address_file.read_text() != before:
            address_file.unlink()


def _run_two_node_child(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "shipped_helper.py").write_text("FACTOR = 3\n")
    (project / "shipped_udfs.py").write_text(
        textwrap.dedent(
            """
            import shipped_helper


            def triple(x: int) -> int:
                return shipped_helper.FACTOR * x


            def helper_file(x: int) -> str:
                return shipped_helper.__file__


            def node(x: int) -> str:
                import ray

                return ray.get_runtime_context().get_node_id()
            """
        )
    )
    run_child(
        f"""
        import sys
        import duckdb, ray
        from ray.cluster_utils import Cluster
        import duckdb_subinterp

        project = {str(project)!r}
        # The head (where this process, the driver, runs) has no CPU for actors: they all go to the second node.
        cluster = Cluster(initialize_head=True, head_node_args={{
            "num_cpus": 0, "object_store_memory": 80 * 1024**2, "include_dashboard": False}})
        cluster.add_node(num_cpus=2, object_store_memory=80 * 1024**2)
        try:
            # Local folders are shipped at the job level only (Ray refuses them in an actor's runtime_env).
            ray.init(address=cluster.address, log_to_driver=False, runtime_env={{"working_dir": project}})
            cluster.wait_for_nodes()
            sys.path.insert(0, project)
            import shipped_udfs
            # Registered without the folder on sys.path: the actors can import shipped_helper only
            # from the runtime_env's copy, as on a node where this folder does not exist.
            sys.path.remove(project)
            con = duckdb.connect()
            con.execute("SET threads=2")
            for name in ("triple", "helper_file", "node"):
                duckdb_subinterp.create_function(con, name, getattr(shipped_udfs, name), backend="ray")
            con.create_function("own_triple", shipped_udfs.triple)
            rows = 300_000
            # A table of three row groups, which DuckDB scans on both threads (range() runs on one).
            con.execute(f"CREATE TABLE t AS SELECT i FROM range({{rows}}) r(i)")
            ours, own = con.sql("SELECT sum(triple(i)), sum(own_triple(i)) FROM t").fetchall()[0]
            assert ours == own == 3 * sum(range(rows)), (ours, own)
            (helper,), = con.sql("SELECT DISTINCT helper_file(i) FROM range(10) t(i)").fetchall()
            assert "runtime_resources" in helper and not helper.startswith(project), helper
            nodes = {{node for (node,) in con.sql("SELECT DISTINCT node(i) FROM t").fetchall()}}
            head = ray.get_runtime_context().get_node_id()
            assert len(nodes) == 1 and head not in nodes, (nodes, head)
        finally:
            ray.shutdown()
            cluster.shutdown()
        print("ok")
        """
    )
