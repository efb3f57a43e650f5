"""Fixtures: every contract test runs over every backend, with DuckDB's own UDF as the oracle."""

from __future__ import annotations

import faulthandler
import os
import select
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

import duckdb_subinterp
from duckdb_subinterp._backends import subinterpreters as _subinterpreters
from duckdb_subinterp._backends.ray import pool as _ray
from duckdb_subinterp._backends.ray.pool import INSTALL_COMMAND
from duckdb_subinterp._engine import arrow as _arrow
from duckdb_subinterp._engine import dispatch as _dispatch
from duckdb_subinterp._registration import backends as _registration

sys.path.insert(0, str(Path(__file__).parent))
# What the tests use from outside the package: the benchmark suite (bench/suite.py, imported as
# bench.suite) and the example HTTP client and server (examples/async_http.py). Appended, so the
# package itself is still the installed one; child Pythons (the docs' pages, the notebooks, the
# command line) find them through the environment.
REPO = Path(__file__).resolve().parents[1]
sys.path.append(str(REPO))
sys.path.append(str(REPO / "examples"))
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(REPO / "examples")]))
os.environ["DUCKDB_SUBINTERP_CHECKOUT"] = str(REPO)

# A hang dumps every thread's stack before pytest-timeout fails the test.
faulthandler.enable()


def pytest_report_header() -> str:
    return f"duckdb_subinterp {duckdb_subinterp.__version__} from {Path(duckdb_subinterp.__file__).parent}"


def pytest_sessionstart(session: pytest.Session) -> None:
    """Under .ci/run, refuse to test anything but the installed wheel."""
    if os.environ.get("DUCKDB_SUBINTERP_TEST_INSTALLED") != "1":
        return
    package = Path(duckdb_subinterp.__file__).resolve().parent
    site_packages = {Path(sysconfig.get_path(key)).resolve() for key in ("purelib", "platlib")}
    if package.parent not in site_packages:
        raise pytest.UsageError(
            f"DUCKDB_SUBINTERP_TEST_INSTALLED=1 but duckdb_subinterp was imported from {package}, "
            f"not from site-packages ({', '.join(map(str, sorted(site_packages)))}): run the tests outside the checkout"
        )


BACKENDS = [name for name in duckdb_subinterp.BACKENDS if name != "auto"]
# The subinterpreters backend once more, as it runs where the C extensions
# were not built: batches enter through _interpreters.exec, arguments and
# results go through pyarrow, and the interpreters run the pure-Python codec.
UNCOMPILED = "subinterpreters-uncompiled"
# The subinterpreters backend once more, with every batch of two slices or
# more fanned out over a pool of four, whatever the UDF costs.
FANNED_OUT = "subinterpreters-fanout"


class UncompiledInterpreterPool(duckdb_subinterp.InterpreterPool):
    """Interpreters entered through _interpreters.exec whose runtime uses the pure-Python codec."""

    def _start_worker(self) -> _subinterpreters.InterpreterWorker:
        return _subinterpreters.InterpreterWorker(direct=False, compiled_codec=False)


@pytest.fixture(scope="session")
def exec_path_pool() -> Iterator[duckdb_subinterp.InterpreterPool]:
    with UncompiledInterpreterPool(2) as pool:
        yield pool


@pytest.fixture(scope="session")
def fan_out_pool() -> Iterator[duckdb_subinterp.InterpreterPool]:
    with duckdb_subinterp.InterpreterPool(4) as pool:
        yield pool


RAY_MISSING = f"backend='ray' needs ray, which is not installed: {INSTALL_COMMAND}"


# The cluster runs in a child Python, which the tests connect to: CPython 3.13.0
# aborts a child that subprocess starts with preexec_fn (as ray.init() starts
# its local cluster) while the parent has a per-GIL interpreter, and the
# session's pools have some by then.
_RAY_CLUSTER_HOST = """
import sys, ray
ray.init(num_cpus=2, object_store_memory=200 * 1024**2, include_dashboard=False, log_to_driver=False,
         _node_ip_address="127.0.0.1")
print(ray.get_runtime_context().gcs_address, flush=True)
sys.stdin.read()  # until the tests close it, or their process ends
ray.shutdown()
"""
RAY_START_TIMEOUT = 120


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A local Ray cluster for one test module: 2 CPUs, a 200 MiB object store, no dashboard.

    Per module, not per session: the cluster's processes and this process's
    Ray threads are there only while ray tests run (~3-6 s to start here).
    """
    pytest.importorskip("ray", reason=RAY_MISSING)
    import ray

    log = tmp_path_factory.mktemp("ray") / "cluster.log"
    # Ray reads RAY_AUTH_MODE once, at import: the cluster gets this process's
    # mode (token authentication off when unset, so only the loopback address
    # the cluster listens on reaches it).
    environment = {**os.environ, "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "disabled")}
    environment.pop("RAY_ADDRESS", None)
    with open(log, "w") as stderr:
        host = subprocess.Popen(
            [sys.executable, "-c", _RAY_CLUSTER_HOST],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=environment,
        )
    try:
        ready, _, _ = select.select([host.stdout], [], [], RAY_START_TIMEOUT)
        address = host.stdout.readline().strip() if ready else ""
        assert address, f"the Ray cluster did not start within {RAY_START_TIMEOUT} s:\n{log.read_text()[-4000:]}"
        ray.init(address=address, log_to_driver=False)
        # Actors of the test cluster ask for no CPU: tests make pools of their own beside the
        # default one, and actors holding one CPU each would leave no room for them on 2 CPUs.
        unreserved = {**_ray.DEFAULT_ACTOR_OPTIONS, "num_cpus": 0}
        try:
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(_ray, "DEFAULT_ACTOR_OPTIONS", unreserved)
                yield ray
        finally:
            # The default pool's actors die with the cluster; a later cluster gets a new pool.
            pool = _registration._default_pools.pop("ray", None)
            if pool is not None:
                pool.close()
            ray.shutdown()
    finally:
        host.stdin.close()
        try:
            host.wait(RAY_START_TIMEOUT)
        except subprocess.TimeoutExpired:
            host.kill()
            host.wait(RAY_START_TIMEOUT)
        host.stdout.close()


@pytest.fixture(params=[*BACKENDS, UNCOMPILED, FANNED_OUT])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == FANNED_OUT:
        monkeypatch.setitem(_registration._default_pools, "subinterpreters", request.getfixturevalue("fan_out_pool"))
        monkeypatch.setattr(_dispatch.BatchDispatcher, "always_fan_out", True)
        return "subinterpreters"
    if request.param == "ray":
        request.getfixturevalue("ray_cluster")
    if request.param != UNCOMPILED:
        return request.param
    pool = request.getfixturevalue("exec_path_pool")
    monkeypatch.setitem(_registration._default_pools, "subinterpreters", pool)
    monkeypatch.setattr(_arrow, "read_stream", None)
    monkeypatch.setattr(_arrow, "OutputBlock", None)
    monkeypatch.setattr(_arrow, "_warn_reader_unavailable", lambda: None)  # its warning has its own test
    return "subinterpreters"


@pytest.fixture
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect()
    connection.execute("SET threads=2")
    yield connection
    connection.close()


@pytest.fixture(scope="session")
def small_pool() -> Iterator[duckdb_subinterp.InterpreterPool]:
    with duckdb_subinterp.InterpreterPool(2) as pool:
        yield pool
