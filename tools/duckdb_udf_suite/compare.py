"""Compare the reports redirect.py wrote: UDF tests that pass with DuckDB's own but not with a backend.

python compare.py REFERENCE.json BACKEND.json...
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(reference_path: str, *backend_paths: str) -> int:
    reference = json.loads(Path(reference_path).read_text())
    passing = {test for test, outcome in reference.items() if outcome == "passed"}
    worse = 0
    for path in backend_paths:
        outcomes = json.loads(Path(path).read_text())
        lost = sorted(test for test in passing if outcomes.get(test) != "passed")
        gained = sorted(test for test, outcome in outcomes.items() if outcome == "passed" and test not in passing)
        print(f"{Path(path).stem}: {len(passing) - len(lost)} of the {len(passing)} passing with DuckDB's own pass")
        # One line per test function: a parametrized one lists its cases' count.
        by_function: dict[tuple[str, str], int] = {}
        for test in lost:
            key = (outcomes.get(test, "not run"), test.partition("[")[0])
            by_function[key] = by_function.get(key, 0) + 1
        for (outcome, function), count in sorted(by_function.items()):
            print(f"    {outcome}: {function}" + (f" ({count} cases)" if count > 1 else ""))
        for test in gained:
            print(f"    passes here only: {test}")
        worse += len(lost)
    return 1 if worse else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
