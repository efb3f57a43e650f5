"""Decode speed of the raw-buffer codec next to ``pyarrow.Array.to_pylist``, per 2048-row batch.

All run here, in the main interpreter, on the same batches that DuckDB
exports for its arrow UDFs, interleaved and repeated; the best time of each
is kept. Decoding is what a worker runs on every batch before the UDF, in
pure Python (``_codec.decode_column``) and through the compiled codec
(``_codecc``, as ``_runtime`` uses it); ``to_pylist`` is what an arrow UDF
doing the same in Python would pay. Encoding (Python values -> result
buffers) is shown next to ``pyarrow.array``.

    python bench/codec.py [--repeats 7] [--batches 200]
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from duckdb_subinterp._codec import encode_column
from duckdb_subinterp._engine.arrow import arrow_type_of, column_buffers, descriptor_for
from duckdb_subinterp._worker.runtime import COMPILED_CODEC, PYTHON_CODEC, Codec

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


def decoded_list(codec: Codec, descriptor: tuple[object, ...], buffers: tuple[object, ...]) -> list[object]:
    """Decode one batch into a list, as a worker hands it to a UDF."""
    return list(codec.decode(descriptor, BATCH, buffers))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batches", type=int, default=200, help="calls per timed run")
    options = parser.parse_args(argv)
    con = duckdb.connect()
    python = sys.version.split()[0]
    print(f"rows/s per {BATCH}-row batch, best of {options.repeats} x {options.batches} calls; Python {python}")
    codecs = {"Python": PYTHON_CODEC}
    if COMPILED_CODEC is None:
        print("the compiled codec (duckdb_subinterp._codecc) is not built: its columns are left out")
    else:
        codecs["compiled"] = COMPILED_CODEC
    header = f"{'column':<27}" + "".join(f"{name + ' decode':>17}" for name in codecs)
    header += f"{'to_pylist':>13}{'ratio':>7}" + "".join(f"{name + ' encode':>17}" for name in codecs)
    header += f"{'pa.array':>13}{'ratio':>7}"
    print(header)
    print("-" * len(header))
    fastest = list(codecs)[-1]
    for name, expression in CASES.items():
        sql_type = name.split()[0].rstrip(",")
        column = con.sql(f"SELECT ({expression})::{sql_type} AS x FROM range({BATCH}) t(i)").to_arrow_table().column(0)
        array = column.combine_chunks()
        duckdb_type = duckdb.sqltype(sql_type)
        descriptor = descriptor_for(duckdb_type)
        buffers = column_buffers(column, arrow_type_of(sql_type), descriptor)
        values = array.to_pylist()
        for codec in codecs.values():
            assert list(codec.decode(descriptor, BATCH, buffers)) == values
            encoded = codec.encode(descriptor, values)
            assert [bytes(raw) for raw in encoded.raw_buffers()] == [
                bytes(raw) for raw in encode_column(descriptor, values).raw_buffers()
            ]
        # Interleaved, so every candidate sees the same machine state. A
        # decode is timed with list() around it: a null-free number column
        # decodes to a zero-copy memoryview, and to_pylist makes Python objects.
        timings: dict[str, list[float]] = {}
        for _ in range(options.repeats):
            for codec_name, codec in codecs.items():
                timings.setdefault(f"{codec_name} decode", []).append(
                    best_seconds(functools.partial(decoded_list, codec, descriptor, buffers), options.batches, 1)
                )
                timings.setdefault(f"{codec_name} encode", []).append(
                    best_seconds(functools.partial(codec.encode, descriptor, values), options.batches, 1)
                )
            timings.setdefault("to_pylist", []).append(best_seconds(array.to_pylist, options.batches, 1))
            timings.setdefault("pa.array", []).append(
                best_seconds(functools.partial(pa.array, values, type=array.type), options.batches, 1)
            )
        rate = {key: BATCH / min(seconds) for key, seconds in timings.items()}
        line = f"{name:<27}" + "".join(f"{rate[f'{codec_name} decode']:>17,.0f}" for codec_name in codecs)
        line += f"{rate['to_pylist']:>13,.0f}{rate[f'{fastest} decode'] / rate['to_pylist']:>6.2f}x"
        line += "".join(f"{rate[f'{codec_name} encode']:>17,.0f}" for codec_name in codecs)
        line += f"{rate['pa.array']:>13,.0f}{rate[f'{fastest} encode'] / rate['pa.array']:>6.2f}x"
        print(line)
    print(
        f"ratios: {fastest} codec / pyarrow (decode / to_pylist, encode / pa.array); > 1 means the codec is faster.\n"
        "Decodes are timed with list() around them: a null-free DOUBLE decodes to a zero-copy memoryview."
    )


if __name__ == "__main__":
    main()
