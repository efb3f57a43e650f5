"""By-reference UDFs of the type tests: standard library only, valid for every DuckDB type."""

from __future__ import annotations


def scramble(value):
    """Change a value of any DuckDB type into another valid value of the same type."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value // 2
    if isinstance(value, float):
        return value / 2
    if isinstance(value, bytes):
        # WKB (a GEOMETRY's) stays as it is: reversed, it would not be a geometry.
        return value if value[:1] in (b"\x00", b"\x01") else value[::-1]
    # A str may be an ENUM label or DuckDB's text of a date: left as it is.
    if isinstance(value, list):
        return [scramble(item) for item in reversed(value)]
    if isinstance(value, tuple):
        return tuple(scramble(item) for item in reversed(value))
    if isinstance(value, dict) and value.keys() == {"key", "value"}:
        # A MAP with unhashable keys arrives as parallel lists: scrambling its keys could make
        # two of them equal (2 // 2 == 3 // 2), which DuckDB refuses; only the values change.
        return {"key": value["key"], "value": [scramble(item) for item in value["value"]]}
    if isinstance(value, dict):
        return {key: scramble(item) for key, item in value.items()}
    return value


def scramble_batch(values):
    return [None if value is None else scramble(value) for value in values]
