"""Committed benchmark results are full runs, and the README and the docs show exactly what their JSON says."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from bench import suite as _bench

# The checkout's (or the unpacked sdist's) README, docs and committed runs, found beside the tests.
REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = REPO / "docs"
RESULTS = sorted((REPO / "bench" / "results").glob("*/results.json"))
SCALING = REPO / "bench" / "results" / "16-core" / "scaling.json"


@pytest.mark.parametrize("path", RESULTS, ids=[path.parent.name for path in RESULTS])
def test_committed_run_is_a_full_run_with_its_markdown(path: Path):
    results = json.loads(path.read_text())
    assert results["schema"] == _bench.SCHEMA
    assert results["config"]["rows"] >= 2_000_000 and results["config"]["repeats"] >= 3
    assert all(s["all_results_match"] for s in results["summary"])
    assert (path.parent / "results.md").read_text() == _bench.markdown_report(results)


def bench_blocks(page: Path, render: Callable[[dict[str, Any], str], str]) -> list[str]:
    """Check that each benchmark block of ``page`` is what ``render`` makes of its JSON; return their machines."""
    text = page.read_text()
    by_machine = {json.loads(path.read_text())["machine"]["name"]: path for path in RESULTS}
    machines = re.findall(r"<!-- bench:(.+?) -->.*?<!-- /bench -->", text, re.S)
    for machine in machines:
        assert machine in by_machine, (
            f"{page.name} shows a benchmark of {machine!r} but no bench/results/*/results.json has it"
        )
        path = by_machine[machine]
        expected = render(json.loads(path.read_text()), path.parent.relative_to(REPO).as_posix())
        assert expected in text, (
            f"{page.name}'s block for {machine!r} differs from {path}; regenerate it with _bench.{render.__name__}()"
        )
    return machines


@pytest.mark.skipif(not README.exists(), reason="no README.md beside the tests (not a checkout or an sdist)")
def test_readme_headline_figures_match_the_committed_json():
    assert bench_blocks(README, _bench.readme_section), "the README shows no benchmark block"


@pytest.mark.skipif(not DOCS.exists(), reason="no docs/ beside the tests (not a checkout or an sdist)")
def test_docs_benchmark_blocks_match_the_committed_json():
    shown = bench_blocks(DOCS / "benchmarks.md", _bench.docs_section)
    committed = [json.loads(path.read_text())["machine"]["name"] for path in RESULTS]
    assert sorted(shown) == sorted(committed), "docs/benchmarks.md shows each committed run once"


def load_scaling_script() -> ModuleType:
    """Import bench/scaling.py, whose ``markdown()`` renders the committed scaling runs."""
    spec = importlib.util.spec_from_file_location("bench_scaling", REPO / "bench" / "scaling.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    path = list(sys.path)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = path  # the script puts the repository first, for its own runs
    return module


@pytest.mark.skipif(not SCALING.exists(), reason="no committed scaling run beside the tests")
def test_scaling_tables_match_the_committed_json():
    rendered = load_scaling_script().markdown(json.loads(SCALING.read_text()))
    assert (SCALING.parent / "scaling.md").read_text() == rendered
    if DOCS.exists():
        page = (DOCS / "scaling.md").read_text()
        block = re.search(r"<!-- scaling:16-core -->\n(.*?)<!-- /scaling -->", page, re.S)
        assert block is not None, "docs/scaling.md has no <!-- scaling:16-core --> block"
        assert block.group(1) == rendered, f"docs/scaling.md's tables differ from {SCALING}; paste scaling.md there"


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


def test_other_load_counts_a_grandchild_its_live_parent_reaped_as_the_runs():
    # The arrow UDF + ProcessPoolExecutor candidate's workers are forked by multiprocessing's
    # forkserver, which reaps them: their time is the run's, not other processes'.
    import subprocess

    load = _bench._OtherLoad()
    reaper = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys\n"
            "subprocess.run([sys.executable, '-c', 'sum(range(100_000_000))'], check=True)\n"
            "print('reaped', flush=True)\n"
            "sys.stdin.read()",  # alive, its child's time now in its children times only
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert reaper.stdout is not None
        assert reaper.stdout.readline() == "reaped\n"
        _, own = _bench._OtherLoad._cpu_seconds()
        assert own - load.own >= 0.3, "the ~1 s of a grandchild a live child reaped must count as the run's"
    finally:
        reaper.communicate("", timeout=60)
