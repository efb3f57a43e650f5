"""Split the per-batch dispatch overhead into its stages, inside a DuckDB query.

The bench's figure (identity UDF on BIGINT minus DuckDB's identity arrow UDF)
is one number; this times four arrow UDFs side by side, interleaved, each
doing one more stage of what the subinterpreters backend does per batch:

1. DuckDB's identity arrow UDF (the baseline);
2. + the main side's buffer work: argument buffers as memoryviews (read
   through the C data interface), the result block allocated, the result
   array imported from it;
3. + DirectCall into an interpreter, to a function that does nothing;
4. the backend itself (vectorized identity): + pool checkout, the runtime's
   decode, call and encode, status, counters.

Stages cost up to several times more here than in a warm loop: the query
runs DuckDB's own code between batches. Takes about a minute.

    .venv/bin/python bench/dispatch_breakdown.py [--rows N] [--threads N] [--repeats N] [--out FILE.json]
"""

from __future__ import annotations

import _interpreters
import argparse
import json
import math
import queue
import statistics
import time
from array import array
from pathlib import Path

import duckdb
import pyarrow as pa

import duckdb_subinterp
from duckdb_subinterp._direct import DirectCall
from duckdb_subinterp._engine.arrow import ResultLayout, column_buffers, layout_signature, output_buffers_type
from duckdb_subinterp._worker.protocol import STATUS_SLOTS

BATCH_ROWS = 2048
BIGINT = ("number", "q", "BIGINT")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, help="also write the figures here as JSON")
    options = parser.parse_args()

    layout = ResultLayout(BIGINT, "BIGINT")
    status = memoryview(array("q", bytes(8 * STATUS_SLOTS)))
    # One interpreter per DuckDB thread: a DirectCall runs one call at a time.
    interpreters = [_interpreters.create("isolated") for _ in range(options.threads)]
    idle: queue.SimpleQueue[DirectCall] = queue.SimpleQueue()
    for interpreter in interpreters:
        _interpreters.exec(interpreter, "def nothing(request):\n    pass\n")
        idle.put(DirectCall(interpreter))

    signature = layout_signature(pa.int64())
    OutputBuffers = output_buffers_type()  # the class the dispatcher uses

    def main_side(argument: pa.ChunkedArray) -> pa.Array:
        column_buffers(argument, pa.int64(), BIGINT, signature)
        outputs = OutputBuffers(layout, len(argument), [16, 16])
        outputs.views()
        return outputs.to_array(0)

    def main_side_and_switch(argument: pa.ChunkedArray) -> pa.Array:
        column = column_buffers(argument, pa.int64(), BIGINT, signature)
        outputs = OutputBuffers(layout, len(argument), [16, 16])
        direct = idle.get(timeout=60)
        direct.call("nothing", (1, len(argument), (column,), outputs.views(), status))
        idle.put(direct)
        return outputs.to_array(0)

    stages = {
        "DuckDB's identity arrow UDF": "stage_identity",
        "+ main side: buffers in, result array out": "stage_main_side",
        "+ DirectCall into an interpreter (does nothing)": "stage_switch",
        "subinterpreters backend, vectorized identity": "stage_backend",
    }
    con = duckdb.connect()
    con.execute(f"SET threads={options.threads}")
    con.execute(f"CREATE TABLE numbers AS SELECT range::BIGINT AS n FROM range({options.rows})")
    con.create_function("stage_identity", lambda argument: argument, ["BIGINT"], "BIGINT", type="arrow")
    con.create_function("stage_main_side", main_side, ["BIGINT"], "BIGINT", type="arrow")
    con.create_function("stage_switch", main_side_and_switch, ["BIGINT"], "BIGINT", type="arrow")
    pool = duckdb_subinterp.InterpreterPool(options.threads)
    identity = "duckdb_subinterp.examples:identity_batch"
    duckdb_subinterp.create_function(con, "stage_backend", identity, ["BIGINT"], "BIGINT", type="vectorized", pool=pool)
    seconds: dict[str, list[float]] = {label: [] for label in stages}
    try:
        expected = con.sql("SELECT sum(n) FROM numbers").fetchall()
        for _ in range(options.repeats):
            for label, name in stages.items():
                started = time.perf_counter()
                result = con.sql(f"SELECT sum({name}(n)) FROM numbers").fetchall()
                seconds[label].append(time.perf_counter() - started)
                # The middle stages return their result buffers unwritten: no check.
                if name in ("stage_identity", "stage_backend") and result != expected:
                    raise SystemExit(f"{label}: wrong result {result}, expected {expected}")
    finally:
        con.close()
        pool.close()
        # Every DirectCall lets go of its interpreter before any is destroyed:
        # the queue does not give them back in the interpreters' order.
        for _ in interpreters:
            idle.get(timeout=60).detach()
        for interpreter in interpreters:
            _interpreters.destroy(interpreter)

    batches = math.ceil(options.rows / BATCH_ROWS)
    per_batch = {label: statistics.median(values) / batches * 1e6 for label, values in seconds.items()}
    baseline = per_batch["DuckDB's identity arrow UDF"]
    print(f"{options.rows:,} rows, SET threads={options.threads}, median of {options.repeats}, us per 2048-row batch")
    print(f"{'stage':<52} {'whole query':>12} {'over DuckDB':>12} {'this stage':>11}")
    previous = baseline
    for label, value in per_batch.items():
        print(f"{label:<52} {value:>12.1f} {value - baseline:>12.1f} {value - previous:>11.1f}")
        previous = value
    if options.out:
        options.out.write_text(
            json.dumps(
                {
                    "rows": options.rows,
                    "threads": options.threads,
                    "repeats": options.repeats,
                    "us_per_batch": per_batch,
                    "seconds": seconds,
                },
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
