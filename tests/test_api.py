"""The exported surface is what we mean it to be, and importing starts nothing."""

from __future__ import annotations

import importlib.metadata
import textwrap
import types

from support.script_helper import run_python

import duckdb_subinterp


def test_exported_surface():
    assert sorted(duckdb_subinterp.__all__) == [
        "BACKENDS",
        "BackendFallbackWarning",
        "BackendUnavailableError",
        "BrokenPoolError",
        "CompiledPathUnavailableWarning",
        "InterpreterPool",
        "ModuleChangedWarning",
        "ModuleNotIsolatedError",
        "PoolTimeoutError",
        "ProcessPool",
        "RayPool",
        "UDFError",
        "UDFExecutionError",
        "UDFLoadFailedWarning",
        "UDFRegistrationError",
        "UDFResultError",
        "UdfStats",
        "UnsupportedTypeError",
        "WorkerDiedError",
        "WorkerPool",
        "__version__",
        "create_aggregate_function",
        "create_function",
        "create_table_function",
        "default_pool",
        "export",
        "export_aggregate",
        "export_table_function",
        "remove_function",
        "udf",
        "udf_stats",
    ]
    for name in duckdb_subinterp.__all__:
        exported = getattr(duckdb_subinterp, name)
        if name not in ("BACKENDS", "__version__"):
            assert exported.__module__.startswith("duckdb_subinterp._"), name
    # Nothing public besides __all__ and the example modules users import by name.
    public = {name for name in vars(duckdb_subinterp) if not name.startswith("_")}
    modules = {name for name in public if isinstance(getattr(duckdb_subinterp, name), types.ModuleType)}
    assert modules <= {"examples", "numpy_examples", "async_examples"}
    assert public - modules == set(duckdb_subinterp.__all__) - {"__version__"}
    assert set(duckdb_subinterp.BACKENDS) >= {"inline", "subinterpreters", "processes", "ray"}


def test_version_is_the_installed_distributions():
    assert duckdb_subinterp.__version__ == importlib.metadata.version("duckdb-subinterp")


def test_warnings_are_warnings():
    assert issubclass(duckdb_subinterp.CompiledPathUnavailableWarning, RuntimeWarning)
    assert issubclass(duckdb_subinterp.BackendFallbackWarning, UserWarning)
    assert issubclass(duckdb_subinterp.UDFLoadFailedWarning, RuntimeWarning)


def test_every_warning_of_the_package_is_exported():
    from duckdb_subinterp import _errors

    defined = {name for name, value in vars(_errors).items() if isinstance(value, type) and issubclass(value, Warning)}
    assert defined == {
        "BackendFallbackWarning",
        "CompiledPathUnavailableWarning",
        "ModuleChangedWarning",
        "UDFLoadFailedWarning",
    }
    assert defined <= set(duckdb_subinterp.__all__)


def test_option_types_name_what_create_function_takes():
    import inspect
    from typing import get_args

    from duckdb_subinterp import _export, _options
    from duckdb_subinterp._registration import api as _api
    from duckdb_subinterp._registration import macros as _macros
    from duckdb_subinterp._registration import validation as _registration

    assert set(get_args(_options.BackendName.__value__)) == set(duckdb_subinterp.BACKENDS)
    assert get_args(_options.UdfTypeName.__value__) == _registration.UDF_TYPES
    assert get_args(_options.NullHandlingName.__value__) == _registration.NULL_HANDLING
    assert get_args(_options.ExceptionHandlingName.__value__) == _registration.EXCEPTION_HANDLING
    keywords = {
        name
        for name, parameter in inspect.signature(duckdb_subinterp.create_function).parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    }
    assert _api.FunctionOptions.__optional_keys__ == keywords
    assert _options.ExportOptions.__optional_keys__ == set(_export.OPTIONS) == keywords - {"pool"}
    for create in (duckdb_subinterp.create_aggregate_function, duckdb_subinterp.create_table_function):
        options = {
            name
            for name, parameter in inspect.signature(create).parameters.items()
            if parameter.kind is inspect.Parameter.KEYWORD_ONLY
        }
        # create_function's options, less those a macro cannot honour (a per-batch type, DuckDB's side effects).
        assert options == keywords - {"type", "side_effects"}
        assert _options.MacroExportOptions.__optional_keys__ == set(_export.MACRO_OPTIONS) == options - {"pool"}
        assert _macros.MacroOptions.__optional_keys__ == options  # what macro_options(locals()) passes on


def test_import_starts_no_interpreter_thread_or_process():
    probe = textwrap.dedent(
        """
        import threading, multiprocessing, _interpreters
        before = (len(_interpreters.list_all()), threading.active_count())
        import duckdb_subinterp
        after = (len(_interpreters.list_all()), threading.active_count())
        assert before == after, (before, after)
        assert multiprocessing.active_children() == []
        print("ok")
        """
    )
    result = run_python("-c", probe, timeout=60)
    assert result.stdout.strip() == "ok", result.report()


def test_create_function_has_duckdbs_parameters_plus_backend_and_pool():
    import inspect
    import re

    import duckdb

    ours = inspect.signature(duckdb_subinterp.create_function).parameters
    # duckdb's method is a nanobind builtin: its signature is the docstring's first line.
    first_line = duckdb.DuckDBPyConnection.create_function.__doc__.splitlines()[0]
    parameters_text = first_line.split("(", 1)[1].rsplit(") ->", 1)[0]
    depth, pieces, current = 0, [], ""
    for char in parameters_text:
        depth += 1 if char in "[(" else -1 if char in "])" else 0
        if char == "," and depth == 0:
            pieces.append(current)
            current = ""
        else:
            current += char
    pieces.append(current)
    theirs = [re.match(r"\s*(\w+|\*)", piece).group(1) for piece in pieces]
    theirs = [name for name in theirs if name != "*"]
    shared = [name for name in theirs if name != "self"]
    assert "null_handling" in shared and "side_effects" in shared
    assert list(ours)[: len(shared) + 1] == ["con", *shared]
    async_options = ["max_concurrency", "retries", "retry_backoff", "retry_on", "timeout"]
    assert list(ours)[len(shared) + 1 :] == ["backend", "pool", "max_workers", "fan_out", *async_options]
    for name in (
        "type",
        "null_handling",
        "exception_handling",
        "side_effects",
        "backend",
        "pool",
        "max_workers",
        *async_options,
    ):
        assert ours[name].kind is inspect.Parameter.KEYWORD_ONLY
