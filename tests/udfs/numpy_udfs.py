"""A UDF module that imports numpy at the top: it cannot load in a per-GIL interpreter."""

import numpy


def root(x: float) -> float:
    return float(numpy.sqrt(x))


def root_arrow(values):
    """An arrow UDF: a pyarrow.ChunkedArray in, a numpy array out."""
    return numpy.sqrt(values.to_numpy())


def scaled_arrow(values, factors):
    """Two arguments; returns a pyarrow array."""
    import pyarrow.compute as pc

    return pc.multiply(values, factors)


def labels_arrow(values):
    """VARCHAR out, as a Python list (DuckDB accepts lists from arrow UDFs)."""
    return [f"n{value}" if value is not None else "null" for value in values.to_pylist()]


def table_arrow(values):
    """A pyarrow.Table result: its first column is the UDF's result."""
    import pyarrow as pa
    import pyarrow.compute as pc

    return pa.table({"result": pc.add(values, 1)})


def median(values):
    """An aggregate: the group's values, a list, in; numpy's median out."""
    return float(numpy.median(numpy.array(values)))
