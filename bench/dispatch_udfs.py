"""UDFs of bench/dispatch.py: a cost per call, and a few costly rows (standard library only, as workers need)."""

from __future__ import annotations

# Fixed pure-Python work (it holds the GIL, and a busy core shows as time,
# not as less work): a call's set-up (a model loaded, a batched request
# built) of ~0.2 s, and a costly row (a group's aggregate, an inference) of
# ~20 ms, on the 2-core development machine.
CALL_STEPS = 600_000
ROW_STEPS = 60_000


def _work(seed: int, steps: int) -> int:
    value = seed
    for _ in range(steps):
        value = (value * 1103515245 + 12345) & 0x7FFFFFFF
    return value


def per_call(xs):
    """A vectorized UDF that costs ~0.2 s a call, whatever its rows (then x + 1 for each)."""
    _work(len(xs), CALL_STEPS)
    return [None if x is None else x + 1 for x in xs]


def per_call_arrow(x):
    """The same as DuckDB's own arrow UDF (the reference): ~0.2 s a call."""
    import pyarrow.compute as pc

    _work(len(x), CALL_STEPS)
    return pc.add(x, 1)


def costly_row(x: int) -> int:
    """A native UDF of ~20 ms of pure-Python work a row (it holds the GIL, as pure Python does)."""
    return _work(x, ROW_STEPS)
