"""Run the benchmark suite: ``python bench/run.py [--full] [options]`` (same as ``duckdb-subinterp bench``).

The committed figures were made with::

    python bench/run.py --full --machine NAME --out bench/results/NAME
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from duckdb_subinterp._cli import main

if __name__ == "__main__":
    raise SystemExit(main(["bench", *sys.argv[1:]]))
