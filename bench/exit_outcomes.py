"""Count how a process ends when its main thread exits while a daemon thread's query runs a UDF.

The scenario of tests/test_processes_hostile.py's exit test, run many times
per backend and SET threads, beside DuckDB's own UDF in the same place: a
Python UDF in a query on a daemon thread when the main thread ends. Ours
spins until the exit stops it; DuckDB's own cannot be stopped, so it sleeps
per batch instead and comes back into Python while the process exits (one
that spins in Python keeps the exit waiting for over a minute). Each child
has a 60 s timeout. Takes about 10 minutes at the default 50 runs.

    .venv/bin/python bench/exit_outcomes.py [--runs N] [--variants processes,subinterpreters,duckdb]
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent / "tests"
PRELUDE = f"""
import os, sys, threading, time
sys.path.insert(0, {str(TESTS)!r})
import duckdb, duckdb_subinterp
from udfs import hostile_udfs
con = duckdb.connect()
con.execute("SET threads={{threads}}")
"""
REGISTER = {
    "processes": """
pool = duckdb_subinterp.ProcessPool(2, timeout=600)  # never closed: the exit must stop it
duckdb_subinterp.create_function(con, "stuck", hostile_udfs.spin, ["BIGINT"], "BIGINT", type="vectorized",
                                 backend="processes", pool=pool)
""",
    "subinterpreters": """
pool = duckdb_subinterp.InterpreterPool(2, timeout=600)
duckdb_subinterp.create_function(con, "stuck", hostile_udfs.spin, ["BIGINT"], "BIGINT", type="vectorized",
                                 backend="subinterpreters", pool=pool)
""",
    "duckdb": """
def stuck(xs):
    hostile_udfs._mark_running()
    time.sleep(0.3)
    return xs
con.create_function("stuck", stuck, ["BIGINT"], "BIGINT", type="arrow")
""",
}
QUERY = """
threading.Thread(target=lambda: con.sql("SELECT sum(stuck(i)) FROM range(5000) t(i)").fetchall(), daemon=True).start()
while not os.path.exists(os.environ[hostile_udfs.MARKER_VARIABLE]):
    time.sleep(0.01)
"""


def run(variant: str, threads: int, runs: int) -> tuple[collections.Counter[int | str], float, dict[int | str, str]]:
    """Run the child ``runs`` times; return its exit codes counted, the slowest run, one stderr per code."""
    codes: collections.Counter[int | str] = collections.Counter()
    samples: dict[int | str, str] = {}
    slowest = 0.0
    script = PRELUDE.format(threads=threads) + REGISTER[variant] + QUERY
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as folder:
            environment = dict(os.environ, DUCKDB_SUBINTERP_TEST_MARKER=os.path.join(folder, "running"))
            started = time.monotonic()
            try:
                child = subprocess.run(
                    [sys.executable, "-c", script], capture_output=True, text=True, env=environment, timeout=60
                )
                code: int | str = child.returncode
                stderr = child.stderr
            except subprocess.TimeoutExpired:
                code, stderr = "timeout", ""
            slowest = max(slowest, time.monotonic() - started)
        codes[code] += 1
        samples.setdefault(code, stderr.strip().splitlines()[-1] if stderr.strip() else "")
    return codes, slowest, samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--variants", default=",".join(REGISTER))
    options = parser.parse_args()
    for variant in options.variants.split(","):
        for threads in (1, 2):
            codes, slowest, samples = run(variant, threads, options.runs)
            print(f"{variant:16} threads={threads}: exit codes {dict(codes)}, slowest {slowest:.1f} s", flush=True)
            for code, line in samples.items():
                if code != 0:
                    print(f"    {code}: {line}", flush=True)


if __name__ == "__main__":
    main()
