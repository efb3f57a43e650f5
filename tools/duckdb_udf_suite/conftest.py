"""Run duckdb-python's own tests/fast/udf with every UDF registered through duckdb_subinterp.

DUCKDB_SUBINTERP_SUITE_BACKEND names the backend (default "auto"); "duckdb" leaves DuckDB's own
create_function in place, for the reference run. See README.md beside this file.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from typing import Any

import duckdb
import pytest

import duckdb_subinterp

BACKEND = os.environ.get("DUCKDB_SUBINTERP_SUITE_BACKEND", "auto")


@pytest.fixture
def duckdb_cursor() -> Iterator[duckdb.DuckDBPyConnection]:
    """The one fixture of duckdb-python's conftest that these tests use."""
    connection = duckdb.connect("")
    yield connection
    connection.close()


def _create(
    self: duckdb.DuckDBPyConnection,
    name: str,
    function: Any,
    parameters: Any = None,
    return_type: Any = None,
    **options: Any,
) -> duckdb.DuckDBPyConnection:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", duckdb_subinterp.BackendFallbackWarning)
        return duckdb_subinterp.create_function(
            self, name, function, parameters, return_type, backend=BACKEND, **options
        )


def _remove(self: duckdb.DuckDBPyConnection, name: str) -> duckdb.DuckDBPyConnection:
    return duckdb_subinterp.remove_function(self, name)


if BACKEND != "duckdb":
    duckdb.DuckDBPyConnection.create_function = _create
    duckdb.DuckDBPyConnection.remove_function = _remove
    duckdb.create_function = lambda *args, **options: _create(duckdb.default_connection(), *args, **options)
    duckdb.remove_function = lambda *args, **options: _remove(duckdb.default_connection(), *args, **options)


def _fetchone(relation: duckdb.DuckDBPyRelation) -> Any:
    rows = relation.limit(1).fetchall()
    return rows[0] if rows else None


# duckdb 2.0 dropped DuckDBPyRelation.fetchone(), which some of these tests still call; the
# same stand-in serves the reference run, so both runs compare like with like.
if not hasattr(duckdb.DuckDBPyRelation, "fetchone"):
    duckdb.DuckDBPyRelation.fetchone = _fetchone
