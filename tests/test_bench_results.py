"""Committed benchmark results are full runs, and the README shows exactly what their JSON says."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from duckdb_subinterp import _bench

# The checkout's (or the unpacked sdist's) README and committed runs, found beside the tests.
REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
RESULTS = sorted((REPO / "bench" / "results").glob("*/results.json"))


@pytest.mark.parametrize("path", RESULTS, ids=[path.parent.name for path in RESULTS])
def test_committed_run_is_a_full_run_with_its_markdown(path: Path):
    results = json.loads(path.read_text())
    assert results["schema"] == _bench.SCHEMA
    assert results["config"]["rows"] >= 2_000_000 and results["config"]["repeats"] >= 3
    assert all(s["all_results_match"] for s in results["summary"])
    assert (path.parent / "results.md").read_text() == _bench.markdown_report(results)


@pytest.mark.skipif(not README.exists(), reason="no README.md beside the tests (not a checkout or an sdist)")
def test_readme_benchmark_blocks_match_the_committed_json():
    readme = README.read_text()
    by_machine = {json.loads(path.read_text())["machine"]["name"]: path for path in RESULTS}
    for machine in re.findall(r"<!-- bench:(.+?) -->.*?<!-- /bench -->", readme, re.S):
        assert machine in by_machine, (
            f"README shows a benchmark of {machine!r} but no bench/results/*/results.json has it"
        )
        path = by_machine[machine]
        expected = _bench.readme_section(json.loads(path.read_text()), path.parent.relative_to(REPO).as_posix())
        assert expected in readme, (
            f"README's block for {machine!r} differs from {path}; regenerate it with readme_section()"
        )


@pytest.mark.skipif(not RESULTS, reason="no committed benchmark results beside the tests")
def test_report_flags_a_busy_machine_and_memory_within_noise():
    results = json.loads(RESULTS[0].read_text())
    results["machine"].update(
        versions={**results["machine"]["versions"], "duckdb_subinterp": "9.9"},
        commit="abc123",
        load_average_at_start=[1.5, 1.0, 0.5],
        other_processes_cores=0.9,
        loaded=True,
    )
    results["startup"][-1]["uss_per_worker_mib"] = -5.4
    report = _bench.markdown_report(results)
    assert "- duckdb_subinterp 9.9, commit abc123" in report
    assert "Other processes used 0.90 of" in report and "load average at start 1.50 (1 min)" in report
    assert "**Warning: the machine was busy with other work**" in report
    assert "Below zero here: " in report and "(not a saving: noise; see above)" in report
    assert "USS (unique set size)" in report and "error bars" in report
