"""The notebooks run top to bottom on small sizes, in a kernel of the interpreter running the tests."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from duckdb_subinterp import _bench

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
COMMITTED_RESULTS = sorted((REPO / "bench" / "results").glob("*/results.json"))
KERNEL = "duckdb-subinterp-tests"


@pytest.fixture
def kernel_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Install a kernelspec for sys.executable (a fresh venv may have none) and import this checkout."""
    spec_dir = tmp_path / "jupyter" / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec_dir / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": KERNEL, "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    # Figures become outputs (an MPLBACKEND=Agg set for headless runs would swallow them).
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    return KERNEL


def execute(name: str, kernel: str) -> nbformat.NotebookNode:
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(
        notebook, timeout=100, kernel_name=kernel, resources={"metadata": {"path": str(NOTEBOOKS)}}
    )
    client.execute()
    return notebook


def text_output(notebook: nbformat.NotebookNode) -> str:
    return "\n".join(
        output.get("text", "") for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs
    )


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
    assert "'parallelism'" in text


def test_benchmark_notebook_draws_a_fresh_run(kernel_environment: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    config = _bench.BenchConfig(rows=4096, repeats=1, workloads=["heavy_double"], machine="notebook-test", progress=False)
    _bench.write_reports(_bench.run_benchmark(config), tmp_path / "results")
    monkeypatch.setenv("DUCKDB_SUBINTERP_BENCH_RESULTS", str(tmp_path / "results" / "results.json"))
    notebook = execute("benchmark.ipynb", kernel_environment)
    assert "notebook-test" in text_output(notebook)
    images = [o for cell in notebook.cells for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == 3


@pytest.mark.skipif(not COMMITTED_RESULTS, reason="no committed benchmark results yet")
def test_benchmark_notebook_draws_the_committed_runs(kernel_environment: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("DUCKDB_SUBINTERP_BENCH_RESULTS", raising=False)
    text = text_output(execute("benchmark.ipynb", kernel_environment))
    for path in COMMITTED_RESULTS:
        assert json.loads(path.read_text())["machine"]["name"] in text
