"""A UDF module that imports numpy at the top: it cannot load in a per-GIL interpreter."""

import numpy


def root(x: float) -> float:
    return float(numpy.sqrt(x))
