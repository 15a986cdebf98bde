"""Reductions over axes: the ``reduce_sum`` and ``reduce_mean`` layers (ONNX's ReduceSum and ReduceMean),
and what gradients need: sum back to a broadcast operand's shape, broadcast a reduced cotangent back."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import Field

from ..errors import ShapeError
from ..tensor import TensorType, fmt_shape
from .base import IDENTITY_WINDOW, ONNX_DTYPES, IntTuple, Op, ShapeTuple, sample


def channel_sums(x: np.ndarray, dtype=None) -> np.ndarray:
    """``Σ_{n, h, w} x[n, c, h, w]`` per channel of a C-contiguous (N, C, …) float array, as (C,) in
    ``dtype`` (x's by default). The per-(n, c) row sums are a matrix-vector product with ones: BLAS
    runs it 2–5× faster than NumPy's reduction over those axes."""
    x3 = x.reshape(x.shape[0], x.shape[1], -1)
    return (x3 @ np.ones(x3.shape[2], x.dtype)).sum(axis=0, dtype=dtype or x.dtype)


def reduced_axes(axes: tuple[int, ...], x: TensorType) -> tuple[int, ...]:
    """``axes`` of x as sorted non-negative axes (negative ones count from the end, as in ONNX), every
    axis when empty; an axis out of range or named twice is an error."""
    rank = x.rank
    bad = [a for a in axes if not -rank <= a < rank]
    if bad:
        raise ShapeError(f"axis {bad[0]} is out of range for input {fmt_shape(x.shape)} of rank {rank}: "
                         f"axes are in [{-rank}, {rank - 1}]")
    norm = [a % rank for a in axes]
    twice = sorted({a for a in norm if norm.count(a) > 1})
    if twice:
        raise ShapeError(f"axes {list(axes)} name axis {twice[0]} twice (input {fmt_shape(x.shape)}); list each axis once")
    return tuple(sorted(norm)) if axes else tuple(range(rank))


def reduced_shape(shape, axes: tuple[int, ...], keepdims: bool) -> tuple:
    """The shape after reducing ``axes``: size 1 there (``keepdims``) or dropped."""
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


_AXES_DOC = "axes reduced (negative ones count from the end); [] (the default): every axis"
_KEEPDIMS_DOC = "keep reduced axes as size 1 (ONNX's default); false (the default, as PyTorch and NumPy) drops them"


class _Reduce(Op):
    """What ``reduce_sum`` and ``reduce_mean`` share: axes, keepdims, shape and window rules."""

    axes: IntTuple = Field((), description=_AXES_DOC)
    keepdims: bool = Field(False, description=_KEEPDIMS_DOC)

    def _axes(self, x: TensorType) -> tuple[int, ...]:
        return reduced_axes(self.axes, x)

    def infer(self, xs):
        x = xs[0]
        return x.with_shape(reduced_shape(x.shape, self._axes(x), self.keepdims))

    def window(self, xs):
        """Pointwise in space when an NCHW input keeps its rank and neither spatial axis is reduced."""
        x = xs[0]
        if x.rank == 4 and self.keepdims and not {2, 3} & set(self._axes(x)):
            return (IDENTITY_WINDOW, IDENTITY_WINDOW)
        return None

    def describe(self):
        return f"axes {list(self.axes)}" if self.axes else "all axes"

    def _kept(self, g, gy: str, x: str) -> str:
        """The cotangent ``gy`` with the reduced axes back as size 1."""
        return gy if self.keepdims else g.op(Unsqueeze(axes=self._axes(g.type_of(x))), [gy], "dy_kept")


class ReduceSum(_Reduce):
    """``y = Σ_{axes} x`` (ONNX's ReduceSum): the sum over the listed ``axes`` (negative ones count from
    the end; all axes when empty), which are dropped, or kept as size 1 with ``keepdims``. A layer
    and what gradients use (bias gradients sum over N, H, W). ``gx = broadcast(gy)`` (reduced axes
    restored as size 1, then repeated). Lowered to ONNX ReduceSum (opset 13+: axes as an input).
    MACs 0 (additions only).
    """

    kind = "reduce_sum"
    summary = "A sum over the given axes (ONNX's ReduceSum), dropping them or keeping them as size 1."

    samples = (sample({"axes": [0, 2, 3]}, (2, 3, 4, 4)), sample({}, (3, 5)), sample({"axes": [1], "keepdims": True}, (3, 5)),
               sample({"axes": [-1, 1]}, ("N", 3, 4), note="negative axis, symbolic batch"),
               sample({"axes": [1], "keepdims": True}, (2, 4, 3, 3), note="over channels: pointwise in space"))

    def forward(self, x):
        axes = tuple(a % x.ndim for a in self.axes) if self.axes else tuple(range(x.ndim))
        if x.ndim > 2 and sorted(axes) == [0, *range(2, x.ndim)] and x.dtype.kind == "f" and x.flags.c_contiguous:
            y = channel_sums(x)  # a bias or β gradient
            return y.reshape(1, -1, *(1,) * (x.ndim - 2)) if self.keepdims else y
        return np.sum(x, axis=axes, keepdims=self.keepdims, dtype=x.dtype)

    def onnx(self, ctx, xs, y):
        axes = self._axes(ctx.type_of(xs[0]))
        ctx.node("ReduceSum", [xs[0], ctx.ints(axes)], y, keepdims=int(self.keepdims))

    def vjp(self, g, xs, y, gy):
        return (g.op(BroadcastLike(), [self._kept(g, gy, xs[0]), xs[0]], "dx"),)


class ReduceMean(_Reduce):
    """``y = (1/n)·Σ_{axes} x`` (ONNX's ReduceMean), n the number of elements reduced into each output
    (the product of the reduced dims): the mean over the listed ``axes`` (negative ones count from
    the end; all axes when empty), dropped, or kept as size 1 with ``keepdims``.
    ``gx = broadcast(gy)/n`` (``reduce_mean_grad``; n read from the shapes at run time, so symbolic
    dims may be reduced). Lowered to ONNX ReduceMean (opset 18+: axes as an input). MACs 0.
    """

    kind = "reduce_mean"
    summary = "A mean over the given axes (ONNX's ReduceMean), dropping them or keeping them as size 1."

    samples = (sample({"axes": [2, 3]}, (2, 3, 4, 5)), sample({}, (3, 5)), sample({"axes": [-1], "keepdims": True}, (2, 3, 4)),
               sample({"axes": [1]}, ("N", 4, 6), note="mean over tokens, symbolic batch"),
               sample({"axes": [0, 1], "keepdims": True}, (2, 4, 3, 3), note="over batch and channels"))

    def forward(self, x):
        axes = tuple(a % x.ndim for a in self.axes) if self.axes else None
        return np.mean(x, axis=axes, keepdims=self.keepdims, dtype=x.dtype)

    def onnx(self, ctx, xs, y):
        axes = self._axes(ctx.type_of(xs[0]))
        ctx.node("ReduceMean", [xs[0], ctx.ints(axes)], y, keepdims=int(self.keepdims))

    def vjp(self, g, xs, y, gy):
        return (g.op(ReduceMeanGrad(), [self._kept(g, gy, xs[0]), xs[0]], "dx"),)


class _BackToShape(Op):
    """What the reductions' gradients share: inputs ``(a, like)``, output ``a`` broadcast to ``like``'s
    shape (``like`` gives only its shape; a's dtype), no window. ``same_rank``: ``a`` must have
    like's rank (a cotangent with the reduced axes kept as size 1), not only broadcast to it."""

    arity = (2, 2)
    user_facing = False
    same_rank: ClassVar[bool] = False

    def mismatch(self, a: TensorType, like: TensorType) -> str:
        raise NotImplementedError

    def infer(self, xs):
        from ..tensor import broadcast

        a, like = xs
        if (self.same_rank and a.rank != like.rank) or broadcast(a.shape, like.shape) != tuple(like.shape):
            raise ShapeError(self.mismatch(a, like))
        return TensorType(tuple(like.shape), a.dtype)

    def window(self, xs):
        return None


class ReduceMeanGrad(_BackToShape):
    """Gradient of reduce_mean: ``gx = broadcast(gy, shape of x)·(|gy|/|x|)`` (|·| the element count:
    ``1/n``, n the elements reduced into each output), ``gy`` with the reduced axes kept as size 1.
    Inputs (gy, x); x gives only its shape. ONNX: Expand, and a Div by the count ratio computed from
    Size at run time."""

    kind = "reduce_mean_grad"
    same_rank = True

    samples = (sample({}, (2, 3, 1, 1), (2, 3, 4, 5)), sample({}, (1, 5), (3, 5)))

    def mismatch(self, gy, x):
        return f"reduce_mean_grad: gy {fmt_shape(gy.shape)} is not x {fmt_shape(x.shape)} reduced with kept axes"

    def forward(self, gy, x):
        gx = np.empty(x.shape, gy.dtype)
        gx[...] = gy * np.asarray(gy.size / x.size, gy.dtype)
        return gx

    def onnx(self, ctx, xs, y):
        gy, x = xs
        dtype = ctx.type_of(gy).dtype
        n = ctx.node("Div", [ctx.node("Size", [x], hint="size_x"), ctx.node("Size", [gy], hint="size_gy")], hint="reduced")
        scaled = ctx.node("Div", [gy, ctx.node("Cast", [n], hint="n", to=ONNX_DTYPES[dtype])], hint="scaled")
        ctx.node("Expand", [scaled, ctx.node("Shape", [x], hint="shape")], y)


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


class BroadcastLike(_BackToShape):
    """``y = broadcast(x, shape of like)``: ``x`` repeated along like's larger axes (``like`` gives only its shape)."""

    kind = "broadcast_like"

    samples = (sample({}, (1, 5), (3, 5)), sample({}, (3, 1, 1), (2, 3, 4, 4)))

    def mismatch(self, x, like):
        return f"cannot broadcast {x} to {like}"

    def forward(self, x, like):
        return np.broadcast_to(x, like.shape)

    def onnx(self, ctx, xs, y):
        ctx.node("Expand", [xs[0], ctx.node("Shape", [xs[1]])], y)

    def vjp(self, g, xs, y, gy):
        return (g.op(SumTo(shape=tuple(g.type_of(xs[0]).shape)), [gy], "dx"), None)


OPS = (ReduceSum, ReduceMean, ReduceMeanGrad, SumTo, Unsqueeze, BroadcastLike)
