"""A pytest plugin: DuckDB's create_function and remove_function redirected to duckdb_subinterp.

DUCKDB_SUBINTERP_SUITE_BACKEND names the backend (default "auto"); "duckdb" leaves DuckDB's own
create_function in place, for the reference run. Either way the plugin notes which tests register a
UDF, and reports their outcomes apart from the other tests': duckdb-python's test files that call
create_function hold many tests that do not. DUCKDB_SUBINTERP_SUITE_REPORT names a JSON file to
write those outcomes to ({test id: "passed" | "failed" | "skipped" | "xfailed" | "xpassed"}), which
``compare.py`` reads. See README.md beside this file.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import warnings
from collections.abc import Iterator
from typing import Any

import duckdb
import pytest

import duckdb_subinterp

BACKEND = os.environ.get("DUCKDB_SUBINTERP_SUITE_BACKEND", "auto")
REPORT = os.environ.get("DUCKDB_SUBINTERP_SUITE_REPORT")

_duckdb_create = duckdb.DuckDBPyConnection.create_function
_duckdb_remove = duckdb.DuckDBPyConnection.remove_function
_module_create = duckdb.create_function
_module_remove = duckdb.remove_function

# The test running now, and the tests that registered a UDF.
_current: str | None = None
_registering: set[str] = set()
_outcomes: dict[str, str] = {}


def _noted() -> None:
    if _current is not None:
        _registering.add(_current)


def _create(
    self: duckdb.DuckDBPyConnection,
    name: str,
    function: Any,
    parameters: Any = None,
    return_type: Any = None,
    **options: Any,
) -> duckdb.DuckDBPyConnection:
    _noted()
    if BACKEND == "duckdb":
        return _duckdb_create(self, name, function, parameters, return_type, **options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", duckdb_subinterp.BackendFallbackWarning)
        return duckdb_subinterp.create_function(
            self, name, function, parameters, return_type, backend=BACKEND, **options
        )


def _remove(self: duckdb.DuckDBPyConnection, name: str) -> duckdb.DuckDBPyConnection:
    if BACKEND == "duckdb":
        return _duckdb_remove(self, name)
    return duckdb_subinterp.remove_function(self, name)


def _on_default_connection(method: Any, original: Any) -> Any:
    """Return ``duckdb.<method>`` for the default connection, keeping the original's doc and signature."""

    @functools.wraps(original)
    def call(*args: Any, **options: Any) -> Any:
        connection = options.pop("connection", None) or duckdb.default_connection()
        return method(connection, *args, **options)

    # duckdb-python's own tests read the signature nanobind gives its functions.
    for attribute in ("__nb_signature__", "__text_signature__"):
        if hasattr(original, attribute):
            with contextlib.suppress(AttributeError, TypeError):
                setattr(call, attribute, getattr(original, attribute))
    return call


duckdb.DuckDBPyConnection.create_function = _create
duckdb.DuckDBPyConnection.remove_function = _remove
duckdb.create_function = _on_default_connection(_create, _module_create)
duckdb.remove_function = _on_default_connection(_remove, _module_remove)


def _fetchone(relation: duckdb.DuckDBPyRelation) -> Any:
    rows = relation.limit(1).fetchall()
    return rows[0] if rows else None


# duckdb 2.0 dropped DuckDBPyRelation.fetchone(), which some of these tests still call; the
# same stand-in serves the reference run, so both runs compare like with like.
if not hasattr(duckdb.DuckDBPyRelation, "fetchone"):
    duckdb.DuckDBPyRelation.fetchone = _fetchone


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    global _current
    _current = item.nodeid
    try:
        return (yield)
    finally:
        _current = None


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    outcome = report.outcome
    if hasattr(report, "wasxfail"):
        outcome = "xfailed" if report.skipped else "xpassed"
    previous = _outcomes.get(report.nodeid)
    # The first failing phase decides; a test passes only if every phase did.
    if previous in (None, "passed") or (previous == "skipped" and outcome != "passed"):
        _outcomes[report.nodeid] = outcome


def pytest_terminal_summary(terminalreporter: Any) -> None:
    udf_outcomes = {test: outcome for test, outcome in _outcomes.items() if test in _registering}
    counts: dict[str, int] = {}
    for outcome in udf_outcomes.values():
        counts[outcome] = counts.get(outcome, 0) + 1
    summary = ", ".join(f"{count} {outcome}" for outcome, count in sorted(counts.items())) or "none ran"
    terminalreporter.write_line(f"UDF tests ({BACKEND}): {summary}")
    if REPORT:
        with open(REPORT, "w") as report:
            json.dump(udf_outcomes, report, indent=1, sort_keys=True)
