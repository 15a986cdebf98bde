"""Source nodes of the IR: graph inputs and parameters. They have no inputs of their own."""

from __future__ import annotations

from typing import Literal

from ..tensor import Size, TensorType
from .base import Init, IntTuple, Op, ShapeTuple


class Input(Op):
    """A data input of the graph (images, tokens, labels). A name as its first dim is the batch
    (``N``): it passes through ops and counts as 1 in per-example costs. A name anywhere else is a
    symbolic size (``H``, ``W`` of ``[N, 3, H, W]``): shape rules compute expressions of it."""

    kind = "input"
    arity = (0, 0)
    user_facing = False
    shape: ShapeTuple
    dtype: Literal["float32", "float64", "int64"] = "float32"

    def infer(self, xs):
        return TensorType(tuple(Size(d) if isinstance(d, str) and axis > 0 else d for axis, d in enumerate(self.shape)), self.dtype)

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



class Const(Op):
    """A constant tensor filled with ``value`` (the seed ``1`` of the loss cotangent, say)."""

    kind = "const"
    arity = (0, 0)
    user_facing = False
    value: float
    shape: IntTuple = ()
    dtype: Literal["float32", "float64", "int64"] = "float32"

    def infer(self, xs):
        return TensorType(tuple(self.shape), self.dtype)

    def window(self, xs):
        return None

    def forward(self):
        import numpy as np

        return np.full(self.shape, self.value, dtype=self.dtype)

    def onnx(self, ctx, xs, y):
        # an initializer, not a Constant node: onnxruntime registers no kernel for Constant on any
        # provider (it folds them into initializers itself), and the CUDA coverage test looks up
        # every node's kernel
        import numpy as np

        ctx.initializer(y, np.full(self.shape, self.value, dtype=self.dtype))

    def vjp(self, g, xs, y, gy):
        return ()


class RandomMask(Op):
    """Inverted-dropout mask input of a training graph: ``m = Bernoulli(1 − p) / (1 − p)``.

    Its values are drawn by the runner from the run's seed (not by the graph), so that every
    backend applies the same mask.
    """

    kind = "random_mask"
    arity = (0, 0)
    user_facing = False
    shape: ShapeTuple
    p: float

    def infer(self, xs):
        return TensorType(tuple(self.shape), "float32")

    def window(self, xs):
        return None


OPS = (Input, ParamOp, Const, RandomMask)
