"""The command line: ``sql`` end to end with a user's module, and ``bench`` on a tiny size."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from duckdb_subinterp._cli import main

REPO = Path(__file__).resolve().parents[1]

MODULE = textwrap.dedent(
    """
    import duckdb_subinterp

    @duckdb_subinterp.export
    def shout(text: str) -> str:
        return text.upper() + "!"

    @duckdb_subinterp.export(name="twice", parameters=["BIGINT"], return_type="BIGINT")
    def double_it(x):
        return 2 * x

    @duckdb_subinterp.export(type="vectorized", parameters=["BIGINT"], return_type="BIGINT")
    def plus_one_batch(xs):
        return [x + 1 for x in xs]

    @duckdb_subinterp.export
    def explode(x: int) -> int:
        raise ValueError(f"cannot take {x}")

    def not_exported(x: int) -> int:
        return x
    """
)


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> str:
    """A module file in the working directory, named uniquely so imports do not leak between tests."""
    name = f"cli_udfs_{request.node.name.replace('[', '_').replace(']', '_').replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(MODULE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield name
    sys.modules.pop(name, None)


def test_sql_registers_exported_functions_and_writes_csv(user_module: str, tmp_path: Path, capsys):
    query = "SELECT shout('a' || i) AS s, twice(i) AS t, plus_one_batch(i) AS p FROM range(5000) t(i) ORDER BY i"
    output = tmp_path / "out.csv"
    assert main(["sql", query, "-m", user_module, "-o", str(output), "--threads", "2", "--workers", "2", "--stats"]) == 0
    with output.open() as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 5000
    assert rows[7] == {"s": "A7!", "t": "14", "p": "8"}
    stats = capsys.readouterr().err
    for name in ("shout", "twice", "plus_one_batch"):
        assert f"{name}: " in stats and "5,000 rows" in stats
    assert "parallelism" in stats


def test_sql_one_function_file_of_statements_and_database(user_module: str, tmp_path: Path):
    script = tmp_path / "job.sql"
    script.write_text(
        "CREATE TABLE words AS SELECT 'w' || i AS w FROM range(3) t(i);\n"
        "CREATE TABLE loud AS SELECT shout(w) AS w FROM words;\n"
        "SELECT * FROM loud ORDER BY w;\n"
    )
    database = tmp_path / "db.duckdb"
    output = tmp_path / "loud.parquet"
    # Its own pool (--workers): a pool's workers copy sys.path, with the working directory, when they start.
    arguments = ["sql", str(script), "-m", f"{user_module}:shout", "--db", str(database), "-o", str(output), "--workers", "1"]
    assert main(arguments) == 0
    assert pq.read_table(output).column("w").to_pylist() == ["W0!", "W1!", "W2!"]
    with duckdb.connect(str(database)) as con:
        assert con.sql("SELECT count(*) FROM loud").fetchall() == [(3,)]


def test_sql_prints_the_result_through_the_console_entry(user_module: str, tmp_path: Path):
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [sys.executable, "-m", "duckdb_subinterp", "sql", "SELECT shout('hey') AS s", "-m", user_module],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=environment,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "HEY!" in result.stdout


def test_sql_names_a_module_without_exports(user_module: str, tmp_path: Path, capsys):
    (tmp_path / f"{user_module}_plain.py").write_text("def f(x: int) -> int:\n    return x\n")
    assert main(["sql", "SELECT 1", "-m", f"{user_module}_plain"]) == 1
    assert re.search(r"UDFRegistrationError: .*marks no function with @duckdb_subinterp.export.*:FUNCTION", capsys.readouterr().err)
    sys.modules.pop(f"{user_module}_plain", None)


def test_sql_reports_a_failing_udf_by_name(user_module: str, capsys):
    assert main(["sql", "SELECT explode(i) FROM range(3) t(i)", "-m", user_module, "--workers", "1"]) == 1
    error = capsys.readouterr().err
    assert "explode" in error and "ValueError: cannot take 0" in error


def test_sql_refuses_an_unknown_output_format(capsys):
    assert main(["sql", "SELECT 1", "-o", "result.xlsx"]) == 2
    assert ".csv or .parquet" in capsys.readouterr().err


def test_bench_quick_on_a_tiny_size_writes_json_and_markdown(tmp_path: Path, capsys):
    out = tmp_path / "results"
    code = main(
        [
            "bench",
            "--rows",
            "4096",
            "--repeats",
            "1",
            "--threads",
            "1,2",
            "--workloads",
            "heavy_double,light_varchar",
            "--machine",
            "ci",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert results["schema"] == "duckdb_subinterp.bench/1"
    assert results["machine"]["name"] == "ci" and results["machine"]["cores"] == os.cpu_count()
    assert {"python", "cpu_model", "versions"} <= results["machine"].keys()
    assert results["config"]["rows"] == 4096 and results["config"]["threads"] == [1, 2]
    assert [w["name"] for w in results["workloads"]] == ["heavy_double", "light_varchar"]
    assert all(w["bare_us_per_row"] > 0 for w in results["workloads"])
    measured = {(s["workload"], s["candidate"], s["threads"]) for s in results["summary"]}
    for candidate in ("duckdb-native", "duckdb-arrow", "subinterpreters", "process-pool"):
        assert ("heavy_double", candidate, 2) in measured
    assert all(s["all_results_match"] for s in results["summary"])
    entry = next(s for s in results["summary"] if s["candidate"] == "subinterpreters" and s["threads"] == 2)
    assert {"median", "min", "max", "n"} <= entry["seconds"].keys()
    assert entry["speedup_vs_reference"] > 0 and entry["parallel_efficiency"] > 0 and entry["worker_parallelism"] > 0
    native = next(s for s in results["summary"] if s["candidate"] == "duckdb-native")
    assert native["worker_parallelism"] is None  # DuckDB's own UDFs have no counters
    udfs = {(d["candidate"], d["udf"], d["threads"]) for d in results["dispatch_overhead"]}
    assert ("subinterpreters", "identity (vectorized)", 1) in udfs and ("subinterpreters", "identity (native)", 2) in udfs
    assert [a["workload"] for a in results["acceptance"]] == ["heavy_double"]
    assert results["acceptance"][0]["threads"] == 2
    startup = {s["candidate"]: s for s in results["startup"]}
    assert startup["subinterpreters"]["workers"] == 2 and startup["subinterpreters"]["pss_per_worker_mib"] > 0
    interpreter_pool = next(c for c in results["candidates"] if c["key"] == "interpreter-pool")
    assert interpreter_pool["available"] == (sys.version_info >= (3, 14))
    markdown = (out / "results.md").read_text()
    assert "## Headline" in markdown and "| heavy_double |" in markdown and "Dispatch overhead" in markdown
    assert "subinterpreters vs DuckDB create_function" in capsys.readouterr().out


@pytest.mark.parametrize("backend", ["subinterpreters", "processes", "auto", "inline"])
def test_sql_loads_exported_modules_on_every_backend(user_module: str, tmp_path: Path, backend: str):
    query = "SELECT shout('a' || i) AS s, twice(i) AS t FROM range(3000) t(i) ORDER BY i"
    output = tmp_path / "out.csv"
    workers = ["--workers", "2"] if backend in ("subinterpreters", "processes") else []  # auto and inline take none
    assert main(["sql", query, "-m", user_module, "-o", str(output), "--backend", backend, *workers]) == 0
    with output.open() as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 3000
    assert rows[12] == {"s": "A12!", "t": "24"}
