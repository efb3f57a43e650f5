"""The command line: ``sql`` end to end with a user's module, ``bench`` on a tiny size, and every
mistake a user can make answered with one line and a non-zero exit (run as a real command)."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from support.script_helper import ChildResult, run_python, spawn_python

import duckdb_subinterp
from duckdb_subinterp._cli import main

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
    assert (
        main(["sql", query, "-m", user_module, "-o", str(output), "--threads", "2", "--workers", "2", "--stats"]) == 0
    )
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
    arguments = [
        "sql",
        str(script),
        "-m",
        f"{user_module}:shout",
        "--db",
        str(database),
        "-o",
        str(output),
        "--workers",
        "1",
    ]
    assert main(arguments) == 0
    assert pq.read_table(output).column("w").to_pylist() == ["W0!", "W1!", "W2!"]
    with duckdb.connect(str(database)) as con:
        assert con.sql("SELECT count(*) FROM loud").fetchall() == [(3,)]


def test_sql_prints_the_result_through_the_console_entry(user_module: str, tmp_path: Path):
    result = run_python(
        "-m", "duckdb_subinterp", "sql", "SELECT shout('hey') AS s", "-m", user_module, cwd=tmp_path, timeout=60
    )
    assert result.returncode == 0, result.report()
    assert "HEY!" in result.stdout


def test_sql_names_a_module_without_exports(user_module: str, tmp_path: Path, capsys):
    (tmp_path / f"{user_module}_plain.py").write_text("def f(x: int) -> int:\n    return x\n")
    assert main(["sql", "SELECT 1", "-m", f"{user_module}_plain"]) == 1
    assert re.search(
        r"UDFRegistrationError: .*marks no function with @duckdb_subinterp.export.*:FUNCTION", capsys.readouterr().err
    )
    sys.modules.pop(f"{user_module}_plain", None)


def test_sql_reports_a_failing_udf_by_name(user_module: str, capsys):
    assert main(["sql", "SELECT explode(i) FROM range(3) t(i)", "-m", user_module, "--workers", "1"]) == 1
    error = capsys.readouterr().err
    assert "explode" in error and "ValueError: cannot take 0" in error


def test_bench_runs_duckdbs_udf_benchmarks_redirected(tmp_path: Path, capsys):
    # A stand-in for a duckdb-python checkout: its benchmarks/test_udf_perf.py takes the `benchmark`
    # and `con` fixtures; the target registers through `con`, which goes to each backend.
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "test_udf_perf.py").write_text(
        "import pyarrow.compute as pc\n"
        "from duckdb.sqltypes import BIGINT\n"
        "def test_udf_arrow_plus_one(benchmark, con):\n"
        "    con.create_function('f', lambda x: pc.add(x, 1), [BIGINT], BIGINT, type='arrow')\n"
        "    benchmark(lambda: con.sql('SELECT sum(f(range)) FROM range(5000)').fetchall())\n"
    )
    out = tmp_path / "out"
    arguments = ["--targets", "duckdb-udf-perf", "--duckdb-python", str(tmp_path), "--out", str(out)]
    assert main(["bench", *arguments, "--udf-perf-backends", "auto,subinterpreters", "--repeats", "1"]) == 0
    written = (out / "duckdb_udf_perf.txt").read_text()
    assert written in capsys.readouterr().out
    rows = [line.split() for line in written.splitlines() if line.startswith("test_udf_arrow_plus_one")]
    assert [row[1] for row in rows] == ["1", "2"]  # SET threads 1 and 2
    assert all(row[4].endswith("x") and row[5] == "refused" for row in rows)  # pyarrow cannot load in subinterpreters


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
    # What was measured: this package's version (and commit in a checkout), and how busy the machine was.
    assert results["machine"]["versions"]["duckdb_subinterp"] == duckdb_subinterp.__version__
    assert "commit" in results["machine"] and len(results["machine"]["load_average_at_start"]) == 3
    assert results["machine"]["other_processes_cores"] >= 0 and isinstance(results["machine"]["loaded"], bool)
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
    assert ("subinterpreters", "identity (vectorized)", 1) in udfs and (
        "subinterpreters",
        "identity (native)",
        2,
    ) in udfs
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


# ---------------------------------------------------------------------------
# The command as a user runs it: a subprocess, its exit code and its output
# ---------------------------------------------------------------------------


def run_cli(*arguments: str, cwd: Path, input: str | None = None) -> ChildResult:
    return run_python("-m", "duckdb_subinterp", *arguments, cwd=cwd, timeout=120, input=input)


def assert_one_line_error(result: ChildResult, code: int, pattern: str) -> None:
    """Fail unless the command exited with ``code`` and said what is wrong in one line, without a traceback."""
    assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert re.search(pattern, last), result.stderr
    if "usage:" not in result.stderr:  # argparse prints its usage above its one line
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stdout == ""


USAGE_ERRORS = [
    (["sql", "nosuch.sql"], 2, r"^duckdb-subinterp sql: no such file 'nosuch.sql'"),
    (["sql", "SELECT 1", "--workers", "0"], 2, r"error: argument --workers: expected 1 or more, got '0'"),
    (["sql", "SELECT 1", "--threads", "two"], 2, r"error: argument --threads: expected a whole number"),
    (["sql", "SELECT 1", "--backend", "threads"], 2, r"argument --backend: invalid choice: 'threads'"),
    (["sql", "SELECT 1", "-o", "out.xlsx"], 2, r"^duckdb-subinterp sql: -o 'out.xlsx': name a .csv or .parquet file$"),
    (["sql", "SELECT 1", "--backend", "inline", "--workers", "2"], 2, r"--workers needs a pooled backend"),
    (["sql", "SELECT 1", "-m", "./nosuch.py"], 1, r"-m ./nosuch.py: no such file './nosuch.py'"),
    (["sql", "SELECT 1", "-m", "nosuch_module_xyz"], 1, r"no module 'nosuch_module_xyz'; run from the directory"),
    (["demo", "--threads", "0"], 2, r"error: argument --threads: expected 1 or more, got '0'"),
    (["demo", "--rows", "0"], 2, r"error: argument --rows: expected 1 or more, got '0'"),
    (["bench", "--workloads", "bogus"], 2, r"argument --workloads: unknown workload 'bogus'; choose from light_double"),
    (["bench", "--threads", "0"], 2, r"argument --threads: expected positive numbers"),
    (["bench", "--repeats", "0"], 2, r"argument --repeats: expected 1 or more"),
    (["bench", "--targets", "bogus"], 2, r"argument --targets: unknown target 'bogus'; choose from suite, dispatch"),
    (["bench", "--targets", "duckdb-udf-perf"], 2, r"duckdb-udf-perf needs --duckdb-python DIR, a duckdb-python"),
]


@pytest.mark.parametrize(("arguments", "code", "pattern"), USAGE_ERRORS, ids=[" ".join(a) for a, _, _ in USAGE_ERRORS])
def test_a_mistake_gets_one_line_and_a_nonzero_exit(tmp_path: Path, arguments: list[str], code: int, pattern: str):
    assert_one_line_error(run_cli(*arguments, cwd=tmp_path), code, pattern)


def test_export_with_an_unknown_option_is_named_at_import(tmp_path: Path):
    (tmp_path / "typo_udfs.py").write_text(
        "import duckdb_subinterp\n@duckdb_subinterp.export(typ='vectorized')\ndef f(x: int) -> int:\n    return x\n"
    )
    result = run_cli("sql", "SELECT f(1)", "-m", "typo_udfs", cwd=tmp_path)
    expected = r"importing 'typo_udfs' raised TypeError: .*unknown option 'typ'; did you mean 'type'\?"
    assert_one_line_error(result, 1, expected)
    with pytest.raises(TypeError, match=r"unknown option 'nul_handling'; did you mean 'null_handling'"):
        duckdb_subinterp.export(nul_handling="special")


@pytest.mark.parametrize("backend", ["subinterpreters", "processes"])
def test_module_given_as_a_file_path(tmp_path: Path, backend: str):
    udfs = tmp_path / "lib" / "path_udfs.py"
    udfs.parent.mkdir()
    udfs.write_text(MODULE)
    query = "SELECT shout('hey') AS s, twice(21) AS t"
    result = run_cli("sql", query, "-m", "./lib/path_udfs.py", "--backend", backend, "--workers", "1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "HEY!" in result.stdout and "42" in result.stdout


def test_redirected_output_is_the_result_alone(tmp_path: Path):
    # DuckDB's progress bar goes to stdout: never when stdout is a file or a pipe.
    result = run_cli("sql", "SELECT current_setting('enable_progress_bar') AS bar, 42 AS answer", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "\r" not in result.stdout and "%" not in result.stdout
    assert re.search(r"│\s+false\s+│\s+42\s+│", result.stdout), result.stdout


def test_query_from_a_file_and_from_stdin(tmp_path: Path):
    (tmp_path / "q.sql").write_text("CREATE TABLE t AS SELECT 7 AS x;\nSELECT x * 6 AS y FROM t;\n")
    assert "42" in run_cli("sql", "q.sql", cwd=tmp_path).stdout
    piped = run_cli("sql", "-", cwd=tmp_path, input="SELECT 'from stdin' AS s")
    assert piped.returncode == 0 and "from stdin" in piped.stdout, piped.stderr


def test_version_and_help(tmp_path: Path):
    version = run_cli("--version", cwd=tmp_path)
    assert version.returncode == 0
    assert version.stdout.startswith(f"duckdb-subinterp {duckdb_subinterp.__version__} (Python ")

    def help_text(*command: str) -> str:
        return " ".join(run_cli(*command, "--help", cwd=tmp_path).stdout.split())  # as one line, unwrapped

    sql_help = help_text("sql")
    assert "(default: subinterpreters)" in sql_help and "inline, subinterpreters, processes, ray, auto" in sql_help
    demo_help = help_text("demo")
    assert "(default: 2000000)" in demo_help
    bench_help = help_text("bench")
    assert "heavy_bigint" in bench_help and "(default: 3)" in bench_help
    for text in (sql_help, demo_help, bench_help, run_cli("--help", cwd=tmp_path).stdout):
        assert "``" not in text and ":func:" not in text  # no reST markup from docstrings


def test_bench_without_psutil_says_what_to_install(tmp_path: Path):
    script = (
        "import sys; sys.modules['psutil'] = None\n"
        "from duckdb_subinterp._cli import main\n"
        "sys.exit(main(['bench', '--rows', '10']))\n"
    )
    result = run_python("-c", script, cwd=tmp_path, timeout=60)
    assert_one_line_error(result, 2, r"^duckdb-subinterp bench: needs psutil.*pip install 'duckdb-subinterp\[bench\]'")


SLOW_MODULE = textwrap.dedent(
    """
    import os, time
    import duckdb_subinterp

    @duckdb_subinterp.export
    def slow(x: int) -> int:
        open(os.environ["STARTED_MARKER"], "a").close()
        time.sleep(0.0005)
        return x
    """
)


@pytest.mark.parametrize("backend", ["subinterpreters", "processes", "inline"])
def test_ctrl_c_stops_the_query_and_exits_130(tmp_path: Path, backend: str):
    (tmp_path / "slow_udfs.py").write_text(SLOW_MODULE)
    marker = tmp_path / "started"
    child = spawn_python(
        *("-m", "duckdb_subinterp", "sql", "SELECT sum(slow(i)) FROM range(2000000) t(i)", "-m", "slow_udfs"),
        *("--backend", backend, "--threads", "2"),
        cwd=tmp_path,
        env={"STARTED_MARKER": str(marker)},
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists() and child.process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), "the query never started"
        time.sleep(0.2)
        child.process.send_signal(signal.SIGINT)
    finally:
        # The batches in flight finish (about a second each), nothing more: the query runs ~500 s otherwise.
        result = child.finish(timeout=30)
    assert result.returncode == 130, result.report()
    assert result.stderr.strip() == "duckdb-subinterp sql: interrupted"
    assert result.stdout == ""


MACRO_MODULE = textwrap.dedent(
    """
    import statistics

    import duckdb_subinterp


    @duckdb_subinterp.export_aggregate(parameters=["DOUBLE"], return_type="DOUBLE")
    def py_median(values):
        return statistics.median(values)


    @duckdb_subinterp.export_table_function(columns={"word": "VARCHAR", "pos": "INTEGER"})
    def words(text: str):
        for position, word in enumerate(text.split()):
            yield word, position
    """
)


@pytest.mark.parametrize("backend", ["subinterpreters", "processes", "inline"])
def test_sql_registers_exported_aggregates_and_table_functions(tmp_path: Path, backend: str):
    (tmp_path / "macro_udfs.py").write_text(MACRO_MODULE)
    query = (
        "SELECT w.word, py_median(length(w.word) + w.pos) AS m "
        "FROM (VALUES ('a bb ccc'), ('dd e')) d(t), words(d.t) w GROUP BY w.word ORDER BY w.word"
    )
    result = run_cli("sql", query, "-m", "macro_udfs", "--backend", backend, "-o", "out.csv", "--stats", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    with (tmp_path / "out.csv").open() as file:
        assert list(csv.reader(file)) == [
            ["word", "m"],
            ["a", "1.0"],
            ["bb", "3.0"],
            ["ccc", "5.0"],
            ["dd", "2.0"],
            ["e", "2.0"],
        ]
    if backend != "inline":
        assert "py_median: " in result.stderr and "words: " in result.stderr


def test_sql_says_the_way_out_when_an_aggregate_is_called_with_filter(tmp_path: Path):
    (tmp_path / "macro_udfs.py").write_text(MACRO_MODULE)
    query = "SELECT py_median(x) FILTER (WHERE x > 1) FROM range(5) t(x)"
    result = run_cli("sql", query, "-m", "macro_udfs", cwd=tmp_path)
    assert result.returncode == 1
    assert 'Function "py_median" is a Macro Function' in result.stderr
    assert "FILTER (WHERE cond) -> py_median(CASE WHEN cond THEN x END)" in result.stderr
    with pytest.raises(TypeError, match=r"export_aggregate got unknown option 'type'"):
        duckdb_subinterp.export_aggregate(type="vectorized")
    with pytest.raises(TypeError, match=r"unknown option 'column'; did you mean 'columns'\?"):
        duckdb_subinterp.export_table_function(column={})
