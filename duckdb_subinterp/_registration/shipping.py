"""How a UDF's code reaches the workers: by reference, pinned to its module's source, or pickled by value.

A function importable by name goes as ``"module:qualname"``; where it is the
user's own module (not the standard library, an installed package or this
one), its source as this interpreter ran it goes along, so a worker runs
that version even if the file changes on disk (``pinned_source``). Anything
else (``__main__``, a notebook, a closure) is pickled by value with
cloudpickle (``pickled``), DuckDB types in it as their names.
"""

from __future__ import annotations

import io
import os
import sys
import sysconfig
import threading
import tokenize
import types
from pathlib import Path
from typing import Any

import cloudpickle
from duckdb.sqltypes import DuckDBPyType

from duckdb_subinterp._worker.protocol import resolve_reference
from duckdb_subinterp._worker.runtime import source_digest


def reference_of(function: Any) -> str | None:
    """Return ``"module:qualname"`` when importing it gives back ``function`` itself."""
    module = getattr(function, "__module__", None)
    qualname = getattr(function, "__qualname__", None)
    if not module or not qualname or module == "__main__" or "<" in qualname:
        return None
    reference = f"{module}:{qualname}"
    try:
        return reference if resolve_reference(reference) is function else None
    except Exception:
        return None


class _UdfPickler(cloudpickle.Pickler):  # type: ignore[misc]  # cloudpickle ships no types: its Pickler is Any
    """cloudpickle, with DuckDB types (annotations, defaults, constants) shipped as their names.

    A worker never needs a DuckDBPyType (types are resolved here, at
    registration), cannot unpickle one where duckdb does not load, and
    pickle refuses them anyway: ``def f(x: BIGINT) -> BIGINT`` in a
    notebook would otherwise be refused.
    """

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, DuckDBPyType):
            return str, (str(obj),)
        return super().reducer_override(obj)


_by_value_lock = threading.Lock()


def pickled(function: Any, *, module: str | None = None) -> bytes:
    """Pickle ``function`` by value; with ``module``, that module's functions too (not imported by name)."""
    buffer = io.BytesIO()
    if module is None or module not in sys.modules:
        _UdfPickler(buffer, protocol=5).dump(function)
        return buffer.getvalue()
    with _by_value_lock:
        # cloudpickle's own switch, on only while this function is pickled.
        cloudpickle.register_pickle_by_value(sys.modules[module])
        try:
            _UdfPickler(buffer, protocol=5).dump(function)
        finally:
            cloudpickle.unregister_pickle_by_value(sys.modules[module])
    return buffer.getvalue()


# Modules imported by name in the workers, never pinned to their source:
# the standard library and installed packages change only with an install.
_INSTALLED_PREFIXES = tuple(
    str(Path(path).resolve()) + os.sep
    for key in ("stdlib", "platstdlib", "purelib", "platlib")
    if (path := sysconfig.get_paths().get(key))
)
_PACKAGE_DIR = str(Path(__file__).resolve().parents[1]) + os.sep  # duckdb_subinterp/


class ModuleChanged(Exception):
    """The UDF's module file no longer holds the code this interpreter runs."""


def pinned_source(function: Any, reference: str) -> tuple[str, str, str, str, bool] | None:
    """Return the UDF's own module as this interpreter has it now: (name, file, source, digest, is package).

    None where the module is imported by name in the workers instead (the
    standard library, installed packages, this package, modules without a
    .py file). Raises ``ModuleChanged`` where the file on disk no longer
    holds the code of ``function`` (edited since it was imported).
    """
    module_name = reference.partition(":")[0]
    module = sys.modules.get(module_name)
    filename = getattr(module, "__file__", None)
    if not isinstance(filename, str) or not filename.endswith(".py"):
        return None
    resolved = str(Path(filename).resolve())
    if resolved.startswith(_INSTALLED_PREFIXES) or resolved.startswith(_PACKAGE_DIR):
        return None
    try:
        with tokenize.open(filename) as file:  # honours the file's coding declaration
            source = file.read()
        code = compile(source, filename, "exec", dont_inherit=True)
    except (OSError, SyntaxError, ValueError) as error:
        raise ModuleChanged(f"its file cannot be read or compiled now ({error})") from None
    compiled = _code_by_qualname(code)
    for own in _code_objects(function):
        other = compiled.get(own.co_qualname)
        if other is None or not _same_code(own, other):
            raise ModuleChanged(f"{own.co_qualname} differs in the file on disk")
    is_package = getattr(module, "__path__", None) is not None
    return (module_name, filename, source, source_digest(source), is_package)


def is_user_module(name: str) -> bool:
    """Tell whether module ``name`` is the user's own .py file (not __main__, the standard library or a package)."""
    filename = getattr(sys.modules.get(name), "__file__", None)
    if name == "__main__" or not isinstance(filename, str) or not filename.endswith(".py"):
        return False
    resolved = str(Path(filename).resolve())
    return not resolved.startswith(_INSTALLED_PREFIXES) and not resolved.startswith(_PACKAGE_DIR)


def _code_objects(target: Any) -> list[types.CodeType]:
    """Return the code objects a UDF runs: a function's, or the methods of a class (or of an instance's class)."""
    if isinstance(target, types.FunctionType):
        return [target.__code__]
    klass = target if isinstance(target, type) else type(target)
    return [value.__code__ for value in vars(klass).values() if isinstance(value, types.FunctionType)]


def _code_by_qualname(code: types.CodeType) -> dict[str, types.CodeType]:
    found = {code.co_qualname: code}
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            found.update(_code_by_qualname(constant))
    return found


def _same_code(first: types.CodeType, second: types.CodeType) -> bool:
    """Tell whether two code objects run the same bytecode on the same names and constants (lines aside)."""
    if (first.co_code, first.co_names, first.co_varnames) != (second.co_code, second.co_names, second.co_varnames):
        return False
    if len(first.co_consts) != len(second.co_consts):
        return False
    for one, other in zip(first.co_consts, second.co_consts, strict=True):
        if isinstance(one, types.CodeType):
            if not isinstance(other, types.CodeType) or not _same_code(one, other):
                return False
        elif type(one) is not type(other) or (one != other and repr(one) != repr(other)):
            return False
    return True
