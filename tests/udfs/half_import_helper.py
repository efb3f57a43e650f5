"""A registry that ``half_import_udf`` writes into before it fails: the side effect a failed import leaves."""

from __future__ import annotations

IMPORTS_STARTED: list[str] = []
