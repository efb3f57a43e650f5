"""Fixtures: every contract test runs over every backend, with DuckDB's own UDF as the oracle."""

from __future__ import annotations

import faulthandler
import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

import duckdb_subinterp

sys.path.insert(0, str(Path(__file__).parent))

# A hang dumps every thread's stack before pytest-timeout fails the test.
faulthandler.enable()

BACKENDS = [name for name in duckdb_subinterp.BACKENDS if name != "auto"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


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
