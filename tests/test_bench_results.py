"""Committed benchmark results are full runs, and the README shows exactly what their JSON says."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from duckdb_subinterp import _bench

REPO = Path(__file__).resolve().parents[1]
RESULTS = sorted((REPO / "bench" / "results").glob("*/results.json"))
README_BLOCKS = re.findall(r"<!-- bench:(.+?) -->.*?<!-- /bench -->", (REPO / "README.md").read_text(), re.S)


@pytest.mark.parametrize("path", RESULTS, ids=[path.parent.name for path in RESULTS])
def test_committed_run_is_a_full_run_with_its_markdown(path: Path):
    results = json.loads(path.read_text())
    assert results["schema"] == _bench.SCHEMA
    assert results["config"]["rows"] >= 2_000_000 and results["config"]["repeats"] >= 3
    assert all(s["all_results_match"] for s in results["summary"])
    assert (path.parent / "results.md").read_text() == _bench.markdown_report(results)


def test_readme_benchmark_blocks_match_the_committed_json():
    readme = (REPO / "README.md").read_text()
    by_machine = {json.loads(path.read_text())["machine"]["name"]: path for path in RESULTS}
    for machine in README_BLOCKS:
        assert machine in by_machine, f"README shows a benchmark of {machine!r} but no bench/results/*/results.json has it"
        path = by_machine[machine]
        expected = _bench.readme_section(json.loads(path.read_text()), path.parent.relative_to(REPO).as_posix())
        assert expected in readme, f"README's block for {machine!r} differs from {path}; regenerate it with readme_section()"
