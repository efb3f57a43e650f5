"""The notebooks run top to bottom on small sizes, in a kernel of the interpreter running the tests."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from bench import suite as _bench

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
COMMITTED_RESULTS = sorted((REPO / "bench" / "results").glob("*/results.json"))
KERNEL = "duckdb-subinterp-tests"


@pytest.fixture
def kernel_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Install a kernelspec for sys.executable (a fresh venv may have none): it imports the package under test."""
    spec_dir = tmp_path / "jupyter" / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec_dir / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": KERNEL, "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    # Figures become outputs (an MPLBACKEND=Agg set for headless runs would swallow them).
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    return KERNEL


def execute(name: str, kernel: str, cwd: Path = NOTEBOOKS) -> nbformat.NotebookNode:
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(notebook, timeout=100, kernel_name=kernel, resources={"metadata": {"path": str(cwd)}})
    client.execute()
    return notebook


def text_output(notebook: nbformat.NotebookNode) -> str:
    """Return the printed text and the Markdown that the notebook displayed."""
    return "\n".join(
        output.get("text", "") + output.get("data", {}).get("text/markdown", "")
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
    )


@pytest.mark.parametrize("name", ["quickstart.ipynb", "benchmark.ipynb"])
def test_notebooks_use_the_public_api_only(name: str):
    for cell in nbformat.read(NOTEBOOKS / name, as_version=4).cells:
        if cell.cell_type == "code":
            assert "duckdb_subinterp._" not in cell.source and "import _" not in cell.source, cell.source


@pytest.mark.parametrize("name", ["quickstart.ipynb", "benchmark.ipynb"])
def test_notebooks_are_stored_without_outputs(name: str):
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{name}: clear the outputs before committing"


def test_quickstart_runs(kernel_environment: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DUCKDB_SUBINTERP_NOTEBOOK_ROWS", "20000")
    text = text_output(execute("quickstart.ipynb", kernel_environment))
    assert "20,000 rows" in text
    for label in ("DuckDB create_function", "subinterpreters", "processes", "multiprocessing workaround"):
        assert f"{label} " in text
    # Every way gives DuckDB's own answer.
    sums = {line.split("sum=")[1] for line in text.splitlines() if "sum=" in line}
    assert len(sums) == 1, text
    assert re.search(r"word_score +[\d,]+ batches .* parallelism \d+\.\d\d", text), text
    assert "{'" not in text  # formatted for a reader, not a dict's repr
    # The async section: the same answers as DuckDB's own UDF, with the retries counted.
    assert "async UDF (subinterpreters)" in text and "same results: True" in text
    assert re.search(r"geocode: [\d,]+ calls, [1-9][\d,]* retries", text), text
    # Aggregates and table functions: DuckDB's own answers, through list() and unnest.
    for kind in ("aggregate", "table function"):
        assert re.search(rf"^{kind} +DuckDB create_function .* same results: True$", text, re.M), text


def test_benchmark_notebook_draws_a_fresh_run(kernel_environment: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    config = _bench.BenchConfig(
        rows=4096, repeats=1, workloads=["heavy_double"], machine="notebook-test", progress=False
    )
    _bench.write_reports(_bench.run_benchmark(config), tmp_path / "results")
    monkeypatch.setenv("DUCKDB_SUBINTERP_BENCH_RESULTS", str(tmp_path / "results" / "results.json"))
    notebook = execute("benchmark.ipynb", kernel_environment)
    assert "notebook-test" in text_output(notebook)
    images = [o for cell in notebook.cells for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == 3


def test_benchmark_notebook_says_what_to_do_without_results(
    kernel_environment: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # Opened outside a checkout: no bench/ beside it, no variable set.
    monkeypatch.delenv("DUCKDB_SUBINTERP_BENCH_RESULTS", raising=False)
    (tmp_path / "notebooks").mkdir()
    text = text_output(execute("benchmark.ipynb", kernel_environment, cwd=tmp_path / "notebooks"))
    assert "No benchmark results found" in text and "duckdb-subinterp bench --out" in text
    assert "DUCKDB_SUBINTERP_BENCH_RESULTS=" in text
    monkeypatch.setenv("DUCKDB_SUBINTERP_BENCH_RESULTS", str(tmp_path / "missing.json"))
    assert "No benchmark results found" in text_output(execute("benchmark.ipynb", kernel_environment))


@pytest.mark.skipif(not COMMITTED_RESULTS, reason="no committed benchmark results yet")
def test_benchmark_notebook_draws_the_committed_runs(kernel_environment: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("DUCKDB_SUBINTERP_BENCH_RESULTS", raising=False)
    text = text_output(execute("benchmark.ipynb", kernel_environment))
    for path in COMMITTED_RESULTS:
        assert json.loads(path.read_text())["machine"]["name"] in text
