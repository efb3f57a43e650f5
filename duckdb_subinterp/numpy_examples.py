"""An example numpy UDF (arrow type), which the docs and the benchmark suite use: it runs inline or on processes.

numpy and pyarrow refuse to load in per-GIL interpreters, so this module is
kept apart from ``examples`` (which stays standard-library only).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def series_numpy(x: pa.ChunkedArray | pa.Array) -> pa.Array:
    """The ``examples.series`` trigonometric series, vectorized with numpy over a whole batch."""
    values = x.to_numpy() if isinstance(x, pa.ChunkedArray) else x.to_numpy(zero_copy_only=False)
    total = np.zeros_like(values, dtype=np.float64)
    for k in range(1, 12):
        total += np.sin(values * k) / k
    return pa.array(total, type=pa.float64())
