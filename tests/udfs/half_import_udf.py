"""A UDF module whose import fails half-way inside a worker interpreter while FAIL_FLAG exists.

The main interpreter always imports it (registration checks the reference there first).
"""

from __future__ import annotations

import _interpreters
import os
import tempfile

from udfs import half_import_helper

# One path per process: the main interpreter and its workers agree on it.
FAIL_FLAG = os.path.join(tempfile.gettempdir(), f"duckdb_subinterp_half_import_{os.getpid()}")

half_import_helper.IMPORTS_STARTED.append(__name__)
if _interpreters.get_current() != _interpreters.get_main() and os.path.exists(FAIL_FLAG):
    raise RuntimeError("half_import_udf failed half-way through its import")


def imports_started(x: int) -> int:
    """How many times this interpreter started importing the module."""
    return len(half_import_helper.IMPORTS_STARTED)
