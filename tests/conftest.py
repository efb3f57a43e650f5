"""Fixtures: every contract test runs over every backend, with DuckDB's own UDF as the oracle."""

from __future__ import annotations

import faulthandler
import os
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

import duckdb_subinterp
from duckdb_subinterp import _arrow, _dispatch, _registration, _subinterpreters

sys.path.insert(0, str(Path(__file__).parent))

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


@pytest.fixture(params=[*BACKENDS, UNCOMPILED, FANNED_OUT])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == FANNED_OUT:
        monkeypatch.setitem(_registration._default_pools, "subinterpreters", request.getfixturevalue("fan_out_pool"))
        monkeypatch.setattr(_dispatch.BatchDispatcher, "fan_out_work_ratio", 0)
        return "subinterpreters"
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
