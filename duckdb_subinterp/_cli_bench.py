"""The ``bench`` command: find the benchmarks of a checkout and run the targets asked for.

The benchmarks are not part of the installed package: ``bench/suite.py``
(the workloads on every candidate) and, as further targets,
``bench/dispatch.py`` and ``bench/duckdb_udf_perf.py``, found beside the
package (an editable install), in the working directory, or in the checkout
that ``DUCKDB_SUBINTERP_CHECKOUT`` names; anywhere else the command says how
to get it. ``_cli`` builds the command line and calls ``run``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.metadata
import os
import sys
from contextlib import suppress
from pathlib import Path
from types import ModuleType
from typing import Any

CHECKOUT_VARIABLE = "DUCKDB_SUBINTERP_CHECKOUT"


class BenchUsageError(Exception):
    """The command cannot run as asked; the message says why and what to do (exit status 2)."""


class BenchSuiteMissing(BenchUsageError):
    """The benchmarks (bench/ of a checkout) are not to be found here."""


def bench_suite(name: str = "suite") -> ModuleType:
    """Import ``bench.<name>`` of a checkout; raise ``BenchSuiteMissing`` saying how to get it."""
    module = f"bench.{name}"
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        if error.name not in ("bench", module):
            raise
    variable = os.environ.get(CHECKOUT_VARIABLE)
    candidates = [Path(__file__).resolve().parents[1], Path.cwd(), *([Path(variable)] if variable else [])]
    for checkout in candidates:
        if (checkout / "bench" / f"{name}.py").is_file():
            sys.path.append(str(checkout))  # after the installed packages: the package itself stays the one imported
            return importlib.import_module(module)
    raise BenchSuiteMissing(
        f"the benchmarks are not part of the installed package: they are bench/ of the source ({module}). Run this "
        f"from a checkout (git clone {project_url()}; pip install -e '.[bench]'), or set {CHECKOUT_VARIABLE} "
        "to one"
    )


def project_url() -> str:
    """Return the project's home page as the installed metadata gives it."""
    with suppress(importlib.metadata.PackageNotFoundError):
        entries: list[str] = importlib.metadata.metadata("duckdb-subinterp").get_all("Project-URL") or []
        for entry in entries:
            label, _, url = entry.partition(",")
            if label.strip() == "Homepage":
                return url.strip()
    return "the project's repository"


BENCH_TARGETS = ("suite", "dispatch", "aggregates", "duckdb-udf-perf")


def run(options: argparse.Namespace) -> int:
    """Run the targets ``options`` names; return the exit status, or raise ``BenchUsageError``."""
    targets = options.targets or (["suite", "dispatch", "aggregates"] if options.full else ["suite"])
    if options.duckdb_python is not None and "duckdb-udf-perf" not in targets:
        targets = [*targets, "duckdb-udf-perf"]
    if "duckdb-udf-perf" in targets and options.duckdb_python is None:
        raise BenchUsageError(
            "--targets duckdb-udf-perf needs --duckdb-python DIR, a duckdb-python checkout or fetched copy"
        )
    modules = {target: bench_suite("suite" if target == "suite" else target.replace("-", "_")) for target in targets}
    missing = modules["suite"].missing_requirement() if "suite" in modules else None
    if missing is not None:
        raise BenchUsageError(missing)
    status = 0
    for target, module in modules.items():
        run_target = _bench_suite if target == "suite" else _bench_script
        status = max(status, run_target(module, target, options))
    return status


def _bench_out(options: argparse.Namespace, machine: str) -> Path:
    return Path(options.out or Path("bench", "out", machine))


def _bench_suite(suite: ModuleType, target: str, options: argparse.Namespace) -> int:
    """Run bench/suite.py: every workload on every candidate; write results.json, results.md and plots."""
    defaults = suite.BenchConfig()
    config = suite.BenchConfig(
        rows=options.rows or (2_000_000 if options.full else defaults.rows),
        repeats=options.repeats or defaults.repeats,
        threads=options.threads or defaults.threads,
        workloads=options.workloads or defaults.workloads,
        machine=options.machine or defaults.machine,
        progress=not options.no_progress,
        small_tables=options.full or options.small_tables,
    )
    out_dir = _bench_out(options, config.machine)
    print(
        f"duckdb-subinterp bench: {config.rows:,} rows, SET threads in {config.threads}, {config.repeats} repeats, "
        f"{len(config.workloads)} workloads -> {out_dir}",
        file=sys.stderr,
    )
    results = suite.run_benchmark(config)
    for path in suite.write_reports(results, out_dir):
        print(f"wrote {path}", file=sys.stderr)
    suite.print_summary(results)
    return 0 if all(s["all_results_match"] for s in results["summary"]) else 1


def _bench_script(script: ModuleType, target: str, options: argparse.Namespace) -> int:
    """Run bench/dispatch.py, aggregates.py or duckdb_udf_perf.py; what it prints also goes to OUT/<target>.txt."""
    rounds = ["--rounds", str(options.repeats or 3)]
    if target == "dispatch":
        argv = rounds
    elif target == "aggregates":
        argv = ["--repeats", str(options.repeats or 3)]
    else:
        threads = ",".join(map(str, options.threads or [1, 2]))
        argv = [str(options.duckdb_python), "--backends", options.udf_perf_backends, "--threads", threads, *rounds]
    out_dir = _bench_out(options, options.machine or os.uname().nodename)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{target.replace('-', '_')}.txt"
    print(f"duckdb-subinterp bench: {target} -> {path}", file=sys.stderr)
    with path.open("w") as file, contextlib.redirect_stdout(_Tee(sys.stdout, file)):
        try:
            status: int = script.main(argv)
        except SystemExit as failed:  # the scripts exit with a message when a result differs from DuckDB's own
            if isinstance(failed.code, int | None):
                status = failed.code or 0
            else:
                print(failed.code)
                status = 1
    print(f"wrote {path}", file=sys.stderr)
    return status


class _Tee:
    """A text stream writing to two others: a script's figures on the terminal and in its file."""

    def __init__(self, *streams: Any) -> None:
        self._streams = streams

    def write(self, text: str) -> int:
        for stream in self._streams:
            stream.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in self._streams:
            stream.flush()


def workload_list(text: str) -> list[str]:
    try:
        workloads = bench_suite().WORKLOADS
    except BenchSuiteMissing as missing:
        raise argparse.ArgumentTypeError(str(missing)) from None
    names = [part.strip() for part in text.split(",") if part.strip()]
    known = [workload.name for workload in workloads]
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        named = ", ".join(unknown) or text
        raise argparse.ArgumentTypeError(f"unknown workload {named!r}; choose from {', '.join(known)}")
    return names


def target_list(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in BENCH_TARGETS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown target {', '.join(unknown) or text!r}; choose from {', '.join(BENCH_TARGETS)}"
        )
    return names


def workload_names() -> str:
    try:
        return ", ".join(workload.name for workload in bench_suite().WORKLOADS)
    except BenchSuiteMissing:
        return "the suite's workloads (bench/suite.py of a checkout)"
