"""Tensor types of the IR: a shape of static ints and symbolic names, and a dtype."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import ShapeError

Dim = int | str  # a static size, or a symbolic one such as the batch "N"
Shape = tuple[Dim, ...]

DTYPES = ("float32", "float64", "int64")
DTYPE_BYTES = {"float32": 4, "float64": 8, "int64": 8}


@dataclass(frozen=True)
class TensorType:
    shape: Shape
    dtype: str = "float32"

    @property
    def rank(self) -> int:
        return len(self.shape)

    def __str__(self) -> str:
        return "(" + ", ".join(map(str, self.shape)) + ")"

    def numel(self, symbol_value: int = 1) -> int:
        """Element count, taking every symbolic dim as ``symbol_value`` (costs are per example)."""
        return math.prod(d if isinstance(d, int) else symbol_value for d in self.shape)

    def nbytes(self, symbol_value: int = 1) -> int:
        return self.numel(symbol_value) * DTYPE_BYTES[self.dtype]

    def with_shape(self, shape) -> "TensorType":
        return TensorType(tuple(shape), self.dtype)


def static(dim: Dim, what: str) -> int:
    """A dim that must be known at compile time (kernel arithmetic, unrolled time steps)."""
    if not isinstance(dim, int):
        raise ShapeError(f"{what} must be a static size, got symbolic '{dim}'")
    return dim


def fmt_shape(shape: Shape) -> str:
    return "(" + ", ".join(map(str, shape)) + ")"


def broadcast(*shapes: Shape) -> Shape:
    """NumPy broadcasting over static and symbolic dims (equal symbols match each other)."""
    rank = max(len(s) for s in shapes)
    out = []
    for axis in range(rank):
        dims = {s[axis - rank + len(s)] for s in shapes if axis - rank + len(s) >= 0}
        dims.discard(1)
        if len(dims) > 1:
            raise ShapeError("cannot broadcast " + " with ".join(fmt_shape(s) for s in shapes) + f": axis {axis} has sizes {sorted(map(str, dims))}")
        out.append(dims.pop() if dims else 1)
    return tuple(out)
