"""Measure the native memory CPython keeps per value passed in ``_interpreters.exec``'s shared namespace.

The slow reliability run sees RSS rise slowly while Python objects and Arrow
buffers stay flat; this isolates the cause from the package: a bare
interpreter, ``exec`` of a one-line script, with 0, 1 or 4 shared values.
Writes the figures to tests/results/reliability.json (section
``cpython_exec_shared_namespace``). Takes about 15 s.

    .venv/bin/python bench/exec_shared_leak.py
"""

from __future__ import annotations

import _interpreters
import gc
import json
import platform
from pathlib import Path

import psutil

CALLS = 200_000
RESULTS = Path(__file__).resolve().parent.parent / "tests" / "results" / "reliability.json"
CASES = {
    "no shared values": ("pass", {}),
    "1 shared value": ("del _a", {"_a": 1}),
    "4 shared values": ("del _a, _b, _c, _d", {"_a": 1, "_b": 2, "_c": 3, "_d": 4}),
}


def bytes_per_call(interpreter: int, code: str, shared: dict[str, int]) -> float:
    """Return the RSS growth per ``exec`` call, after a warm-up of the same calls."""
    for _ in range(CALLS // 10):
        _interpreters.exec(interpreter, code, shared)
    gc.collect()
    before = psutil.Process().memory_info().rss
    for _ in range(CALLS):
        _interpreters.exec(interpreter, code, shared)
    gc.collect()
    return (psutil.Process().memory_info().rss - before) / CALLS


def main() -> None:
    interpreter = _interpreters.create("isolated")
    try:
        figures = {name: round(bytes_per_call(interpreter, *case), 1) for name, case in CASES.items()}
    finally:
        _interpreters.destroy(interpreter)
    section = {"python": platform.python_version(), "calls_per_case": CALLS, "rss_bytes_per_call": figures}
    print(json.dumps(section, indent=2))
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results["cpython_exec_shared_namespace"] = section
    RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
