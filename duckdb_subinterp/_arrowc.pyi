"""Types of ``_arrowc.c``: DuckDB's Arrow arguments read, and results built, through the Arrow C data interface."""

from collections.abc import Iterable
from types import CapsuleType
from typing import Self, final

# One node of an array read: (length, offset, null_count, buffers, children,
# dictionary, format); buffers are read-only memoryviews, None where absent
# (and for validity where there are no NULLs).
type ArrowNode = tuple[int, int, int, tuple[memoryview | None, ...], tuple[ArrowNode, ...], ArrowNode | None, str]

def read_stream(capsule: CapsuleType, /) -> tuple[str, ArrowNode] | None:
    """Read the one chunk of an ``__arrow_c_stream__()`` capsule: (layout signature, node).

    None for a stream of other than one chunk or a layout this reader does not know.
    """

@final
class OutputBlock:
    """One aligned allocation holding result buffers of these sizes."""

    def __new__(cls, capacities: Iterable[int], /) -> Self: ...
    @property
    def capacities(self) -> tuple[int, ...]:
        """Bytes of every buffer, depth first."""

    def views(self) -> tuple[memoryview, ...]:
        """Return a writable memoryview of every buffer, depth first, validity first in each node."""

    def export(self, plan: tuple[int, ...], length: int, null_count: int, shapes: tuple[int, ...], /) -> int:
        """Describe the written buffers as an ArrowArray and return its address, for pyarrow's _import_from_c."""
