"""Reading a UDF's signature as DuckDB's ``create_function`` does: parameter and return types.

An annotation that names a type gives the parameter's type, any other (or
none) makes it ANY; ``parameters=`` and ``return_type=`` take a DuckDB type,
a type string such as "STRUCT(a INT)", or a Python type (dates, times and
UUIDs too, which DuckDB's own constructor does not map).
"""

from __future__ import annotations

import datetime
import inspect
import uuid
from typing import Any

import duckdb
from duckdb.sqltypes import DuckDBPyType

from duckdb_subinterp._errors import UDFRegistrationError
from duckdb_subinterp._worker.runtime import is_class_udf

# Python types DuckDBPyType() does not map itself; annotations use them.
_PYTHON_TYPE_NAMES = {
    datetime.date: "DATE",
    datetime.datetime: "TIMESTAMP",
    datetime.time: "TIME",
    datetime.timedelta: "INTERVAL",
    uuid.UUID: "UUID",
}


def duckdb_type(value: Any, udf_name: str, what: str) -> DuckDBPyType:
    """Accept a DuckDBPyType, a type string such as "STRUCT(a INT)", or a Python type."""
    try:
        return as_duckdb_type(value)
    except Exception as error:
        raise UDFRegistrationError(
            f"UDF {udf_name!r}: {what} {value!r} is not a DuckDB type ({error}); pass a type string like "
            "'BIGINT', a duckdb.sqltypes value, or a Python type such as int"
        ) from None


def as_duckdb_type(value: Any) -> DuckDBPyType:
    if isinstance(value, DuckDBPyType):
        return value
    if isinstance(value, type) and value in _PYTHON_TYPE_NAMES:
        return duckdb.sqltype(_PYTHON_TYPE_NAMES[value])
    if isinstance(value, str):
        return duckdb.sqltype(value)
    return DuckDBPyType(value)


def annotation_type(annotation: Any) -> DuckDBPyType | None:
    """Return the DuckDB type an annotation names, or None (DuckDB's ANY) where it names none."""
    if annotation is inspect.Parameter.empty or annotation is None:
        return None
    try:
        return as_duckdb_type(annotation)
    except Exception:
        return None


def callable_signature(function: Any) -> inspect.Signature:
    target = function.__call__ if is_class_udf(function) else function
    signature = inspect.signature(target, eval_str=True)
    if is_class_udf(function):
        # A class UDF is called as an instance: drop self.
        parameters = list(signature.parameters.values())[1:]
        signature = signature.replace(parameters=parameters)
    return signature


def duckdb_signature(target: Any) -> inspect.Signature:
    """Return the signature DuckDB reads from ``target`` (string annotations evaluated where they can be)."""
    try:
        return inspect.signature(target, eval_str=True)
    except Exception:
        return inspect.signature(target)
