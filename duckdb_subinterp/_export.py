"""``@export``: mark module functions as UDFs, registered by ``duckdb-subinterp sql -m module``.

Standard library only: a UDF module that uses ``@duckdb_subinterp.export`` is
imported inside per-GIL interpreters too, where the package is a bare object
that exposes this decorator and nothing that needs duckdb.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any, Unpack, overload

if TYPE_CHECKING:
    from duckdb_subinterp._options import ExportOptions, TypeLike

EXPORT_ATTRIBUTE = "__duckdb_subinterp_export__"
# create_function's keyword options that a mark can carry (a pool cannot: it
# belongs to the process that registers, not to the module).
OPTIONS = (
    "type",
    "null_handling",
    "exception_handling",
    "side_effects",
    "backend",
    "max_workers",
    "fan_out",
    "max_concurrency",
    "retries",
    "retry_backoff",
    "retry_on",
    "timeout",
)


@overload
def export[Function: Callable[..., Any]](function: Function, /) -> Function: ...


@overload
def export[Function: Callable[..., Any]](
    function: None = None,
    /,
    *,
    name: str | None = None,
    parameters: Sequence[TypeLike] | None = None,
    return_type: TypeLike | None = None,
    **options: Unpack[ExportOptions],
) -> Callable[[Function], Function]: ...


def export[Function: Callable[..., Any]](
    function: Function | None = None,
    /,
    *,
    name: str | None = None,
    parameters: Sequence[TypeLike] | None = None,
    return_type: TypeLike | None = None,
    **options: Any,
) -> Function | Callable[[Function], Function]:
    """Mark a function (no connection needed) as a UDF for ``duckdb-subinterp sql -m module``.

    ``@export`` or ``@export(name=..., parameters=..., return_type=..., type=...,
    null_handling=...)``: the options of ``create_function``. The function is
    returned unchanged; nothing is registered until a connection asks. An
    unknown option is a TypeError here, at import, naming the option.
    """
    unknown = [option for option in options if option not in OPTIONS]
    if unknown:
        valid = ("name", "parameters", "return_type", *OPTIONS)
        close = difflib.get_close_matches(unknown[0], valid, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise TypeError(
            f"@duckdb_subinterp.export got unknown option {unknown[0]!r}{hint} (options: {', '.join(valid)})"
        )

    def mark(target: Function) -> Function:
        if not callable(target):
            raise TypeError(f"@duckdb_subinterp.export marks functions or UDF classes, got {target!r}")
        setattr(
            target,
            EXPORT_ATTRIBUTE,
            {"name": name or target.__name__, "parameters": parameters, "return_type": return_type, **options},
        )
        return target

    return mark(function) if function is not None else mark


def exported_functions(module: ModuleType) -> list[tuple[Callable[..., Any], dict[str, Any]]]:
    """Return the functions of ``module`` marked with ``@export``, with their options."""
    found: list[tuple[Callable[..., Any], dict[str, Any]]] = []
    for value in vars(module).values():
        options = getattr(value, EXPORT_ATTRIBUTE, None) if callable(value) else None
        if isinstance(options, dict) and all(value is not seen for seen, _ in found):
            found.append((value, options))
    return found
