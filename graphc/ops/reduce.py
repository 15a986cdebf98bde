"""Reductions that gradients need: sum over axes, and sum back to a broadcast operand's shape."""

from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from ..tensor import TensorType, fmt_shape
from .base import IntTuple, Op, ShapeTuple, sample


def channel_sums(x: np.ndarray, dtype=None) -> np.ndarray:
    """``Σ_{n, h, w} x[n, c, h, w]`` per channel of a C-contiguous (N, C, …) float array, as (C,) in
    ``dtype`` (x's by default). The per-(n, c) row sums are a matrix-vector product with ones: BLAS
    runs it 2–5× faster than NumPy's reduction over those axes."""
    x3 = x.reshape(x.shape[0], x.shape[1], -1)
    return (x3 @ np.ones(x3.shape[2], x.dtype)).sum(axis=0, dtype=dtype or x.dtype)


class ReduceSum(Op):
    """``y = Σ_{axes} x`` (``keepdims`` keeps reduced axes as size 1); all axes when ``axes`` is empty."""

    kind = "reduce_sum"
    user_facing = False
    axes: IntTuple = ()
    keepdims: bool = False

    samples = (sample({"axes": [0, 2, 3]}, (2, 3, 4, 4)), sample({}, (3, 5)), sample({"axes": [1], "keepdims": True}, (3, 5)))

    def _axes(self, rank: int) -> tuple[int, ...]:
        axes = tuple(a % rank for a in self.axes) if self.axes else tuple(range(rank))
        if any(not -rank <= a < rank for a in self.axes):
            raise ShapeError(f"reduce axes {self.axes} out of range for rank {rank}")
        return axes

    def infer(self, xs):
        x = xs[0]
        axes = self._axes(x.rank)
        shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape)) if self.keepdims else tuple(
            d for i, d in enumerate(x.shape) if i not in axes)
        return x.with_shape(shape)

    def window(self, xs):
        return None

    def forward(self, x):
        axes = self._axes(x.ndim)
        if x.ndim > 2 and axes == (0, *range(2, x.ndim)) and x.dtype.kind == "f" and x.flags.c_contiguous:
            y = channel_sums(x)  # a bias or β gradient
            return y.reshape(1, -1, *(1,) * (x.ndim - 2)) if self.keepdims else y
        return np.sum(x, axis=axes, keepdims=self.keepdims, dtype=x.dtype)

    def onnx(self, ctx, xs, y):
        axes = self._axes(ctx.type_of(xs[0]).rank)
        ctx.node("ReduceSum", [xs[0], ctx.ints(axes)], y, keepdims=int(self.keepdims))

    def vjp(self, g, xs, y, gy):
        x = g.type_of(xs[0])
        axes = self._axes(x.rank)
        g_kept = gy if self.keepdims else g.op(Unsqueeze(axes=axes), [gy], "dy_kept")
        return (g.op(BroadcastLike(), [g_kept, xs[0]], "dx"),)


class SumTo(Op):
    """Sum ``x`` down to ``shape`` (undo NumPy broadcasting): the gradient of a broadcast operand."""

    kind = "sum_to"
    user_facing = False
    shape: ShapeTuple

    samples = (sample({"shape": [5]}, (2, 5)), sample({"shape": [3, 1, 1]}, (2, 3, 4, 4)))

    def _plan(self, in_shape) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Leading axes to drop, and axes to sum keeping them as size 1."""
        lead = len(in_shape) - len(self.shape)
        if lead < 0:
            raise ShapeError(f"cannot sum {fmt_shape(in_shape)} to the longer shape {fmt_shape(self.shape)}")
        keep = tuple(i for i, (a, b) in enumerate(zip(in_shape[lead:], self.shape)) if b == 1 and a != 1)
        for a, b in zip(in_shape[lead:], self.shape):
            if b != 1 and a != b:
                raise ShapeError(f"cannot sum {fmt_shape(in_shape)} to {fmt_shape(self.shape)}")
        return tuple(range(lead)), keep

    def infer(self, xs):
        self._plan(xs[0].shape)
        return xs[0].with_shape(tuple(self.shape))

    def window(self, xs):
        return None

    def forward(self, x):
        lead = x.ndim - len(self.shape)
        if lead == 1 and 1 not in self.shape:  # a bias gradient, (N, D) → (D,): one reduction, no axis planning
            if x.ndim == 2 and x.dtype.kind == "f":
                return np.ones(x.shape[0], x.dtype) @ x  # BLAS's matrix-vector product: ~1.6× faster than x.sum(0)
            return x.sum(axis=0, dtype=x.dtype)
        if lead:
            x = x.sum(axis=tuple(range(lead)), dtype=x.dtype)
        keep = tuple(i for i, b in enumerate(self.shape) if b == 1 and x.shape[i] != 1)
        return x.sum(axis=keep, keepdims=True, dtype=x.dtype) if keep else x

    def onnx(self, ctx, xs, y):
        lead, keep = self._plan(ctx.type_of(xs[0]).shape)
        axes = lead + tuple(len(lead) + i for i in keep)
        if not axes:
            ctx.node("Identity", xs, y)
        elif not lead:
            ctx.node("ReduceSum", [xs[0], ctx.ints(axes)], y, keepdims=1)
        else:
            kept = ctx.node("ReduceSum", [xs[0], ctx.ints(axes)], keepdims=1)
            ctx.node("Squeeze", [kept, ctx.ints(lead)], y)

    def vjp(self, g, xs, y, gy):
        return (g.op(BroadcastLike(), [gy, xs[0]], "dx"),)


class Unsqueeze(Op):
    """Insert size-1 axes at ``axes`` (positions in the output)."""

    kind = "unsqueeze"
    user_facing = False
    axes: IntTuple

    samples = (sample({"axes": [0, 2]}, (3, 4)),)

    def infer(self, xs):
        shape = list(xs[0].shape)
        for a in sorted(self.axes):
            shape.insert(a, 1)
        return xs[0].with_shape(shape)

    def window(self, xs):
        return None

    def forward(self, x):
        return np.expand_dims(x, tuple(sorted(self.axes)))

    def onnx(self, ctx, xs, y):
        ctx.node("Unsqueeze", [xs[0], ctx.ints(sorted(self.axes))], y)

    def vjp(self, g, xs, y, gy):
        return (g.op(ReduceSum(axes=tuple(sorted(self.axes)), keepdims=False), [gy], "dx"),)


class BroadcastLike(Op):
    """``y = broadcast(x, shape of like)``: ``x`` repeated along like's larger axes (``like`` gives only its shape)."""

    kind = "broadcast_like"
    arity = (2, 2)
    user_facing = False

    samples = (sample({}, (1, 5), (3, 5)), sample({}, (3, 1, 1), (2, 3, 4, 4)))

    def infer(self, xs):
        from ..tensor import broadcast

        x, like = xs
        if broadcast(x.shape, like.shape) != tuple(like.shape):
            raise ShapeError(f"cannot broadcast {x} to {like}")
        return TensorType(tuple(like.shape), x.dtype)

    def window(self, xs):
        return None

    def forward(self, x, like):
        return np.broadcast_to(x, like.shape)

    def onnx(self, ctx, xs, y):
        ctx.node("Expand", [xs[0], ctx.node("Shape", [xs[1]])], y)

    def vjp(self, g, xs, y, gy):
        return (g.op(SumTo(shape=tuple(g.type_of(xs[0]).shape)), [gy], "dx"), None)


OPS = (ReduceSum, SumTo, Unsqueeze, BroadcastLike)
