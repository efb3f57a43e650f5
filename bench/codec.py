"""Decode speed of the raw-buffer codec next to ``pyarrow.Array.to_pylist``, per 2048-row batch.

Both run here, in the main interpreter, on the same batches that DuckDB
exports for its arrow UDFs, interleaved and repeated; the best time of each
is kept. ``decode_column`` is what a worker runs on every batch before the
UDF; ``to_pylist`` is what an arrow UDF doing the same in Python would pay.
Encoding (Python values -> result buffers) is shown next to ``pyarrow.array``.

    python bench/codec.py [--repeats 7] [--batches 200]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from duckdb_subinterp._arrow import arrow_type_of, column_buffers, descriptor_for  # noqa: E402
from duckdb_subinterp._codec import decode_column, encode_column  # noqa: E402

BATCH = 2048
CASES = {
    "DOUBLE": "i / 7 - 100",
    "DOUBLE, 10% NULL": "CASE WHEN i % 10 = 0 THEN NULL ELSE i / 7 - 100 END",
    "VARCHAR (ASCII)": "'row ' || i || ' of the table'",
    "VARCHAR (UTF-8, 10% NULL)": "CASE WHEN i % 10 = 0 THEN NULL ELSE 'héllo ✓ ' || i END",
}


def best_seconds(function: Callable[[], object], batches: int, repeats: int) -> float:
    """Return the best per-call time over ``repeats`` runs of ``batches`` calls."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(batches):
            function()
        best = min(best, (time.perf_counter() - started) / batches)
    return best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batches", type=int, default=200, help="calls per timed run")
    options = parser.parse_args(argv)
    con = duckdb.connect()
    print(f"rows/s per {BATCH}-row batch, best of {options.repeats} x {options.batches} calls; Python {sys.version.split()[0]}")
    header = (
        f"{'column':<27}{'codec decode':>15}{'decode+list()':>15}{'to_pylist':>13}{'ratio':>7}"
        f"{'codec encode':>15}{'pa.array':>13}{'ratio':>7}"
    )
    print(header)
    print("-" * len(header))
    for name, expression in CASES.items():
        sql_type = name.split()[0].rstrip(",")
        column = con.sql(f"SELECT ({expression})::{sql_type} AS x FROM range({BATCH}) t(i)").to_arrow_table().column(0)
        array = column.combine_chunks()
        duckdb_type = duckdb.sqltype(sql_type)
        descriptor = descriptor_for(duckdb_type)
        buffers = column_buffers(column, arrow_type_of(sql_type), descriptor)
        values = array.to_pylist()
        assert list(decode_column(descriptor, BATCH, buffers)) == values
        # Interleaved, so both sides see the same machine state.
        timings: dict[str, list[float]] = {"decode": [], "list": [], "to_pylist": [], "encode": [], "pa.array": []}
        for _ in range(options.repeats):
            timings["decode"].append(best_seconds(lambda: decode_column(descriptor, BATCH, buffers), options.batches, 1))
            timings["list"].append(
                best_seconds(lambda: list(decode_column(descriptor, BATCH, buffers)), options.batches, 1)
            )
            timings["to_pylist"].append(best_seconds(array.to_pylist, options.batches, 1))
            timings["encode"].append(best_seconds(lambda: encode_column(descriptor, values), options.batches, 1))
            timings["pa.array"].append(
                best_seconds(lambda: pa.array(values, type=array.type), options.batches, 1)
            )
        rate = {key: BATCH / min(seconds) for key, seconds in timings.items()}
        print(
            f"{name:<27}{rate['decode']:>15,.0f}{rate['list']:>15,.0f}{rate['to_pylist']:>13,.0f}"
            f"{rate['list'] / rate['to_pylist']:>6.2f}x"
            f"{rate['encode']:>15,.0f}{rate['pa.array']:>13,.0f}{rate['encode'] / rate['pa.array']:>6.2f}x"
        )
    print(
        "ratios: codec (decode+list(), encode) / pyarrow (to_pylist, pa.array); > 1 means the codec is faster.\n"
        "A null-free DOUBLE decodes to a zero-copy memoryview; decode+list() adds making the Python floats."
    )


if __name__ == "__main__":
    main()
