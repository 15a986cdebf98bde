"""Source nodes of the IR: graph inputs and parameters. They have no inputs of their own."""

from __future__ import annotations

from typing import Literal

from ..tensor import TensorType
from .base import Init, IntTuple, Op

DimTuple = tuple[int | str, ...]


class Input(Op):
    """A data input of the graph (images, tokens, labels); symbolic dims such as ``N`` stay symbolic."""

    kind = "input"
    arity = (0, 0)
    user_facing = False
    shape: tuple[int | str, ...]
    dtype: Literal["float32", "float64", "int64"] = "float32"

    def infer(self, xs):
        return TensorType(tuple(self.shape), self.dtype)

    def window(self, xs):
        return None


class ParamOp(Op):
    """A parameter tensor ``<layer>.<name>``, created by its layer, initialised by ``init``."""

    kind = "param"
    arity = (0, 0)
    user_facing = False
    shape: IntTuple
    init: Init
    trainable: bool = True

    def infer(self, xs):
        return TensorType(tuple(self.shape), "float32")

    def window(self, xs):
        return None


OPS = (Input, ParamOp)
