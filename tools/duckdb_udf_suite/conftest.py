"""The one fixture of duckdb-python's conftest that its tests/fast/udf uses (run.sh copies this beside them).

The redirection itself is the plugin ``redirect.py`` (``-p redirect``), shared with the run of
duckdb-python's other test files, which keep their own conftest. See README.md beside this file.
"""

from __future__ import annotations

from collections.abc import Iterator

import duckdb
import pytest


@pytest.fixture
def duckdb_cursor() -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect("")
    yield connection
    connection.close()
