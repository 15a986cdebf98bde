"""Pooling to a given output size: adaptive_avgpool2d, adaptive_maxpool2d (PyTorch's window rule, exact
for sizes that do not divide) and global_maxpool.

PyTorch's rule: along an axis of input size ``n`` and output size ``o``, output ``i`` pools the input
indices ``start_i = floor(i·n/o) ≤ h < end_i = ceil((i+1)·n/o)``. When ``o`` divides ``n`` this is a
pool with kernel = stride = ``n/o``; otherwise neighbouring windows differ in size and may overlap.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from pydantic import Field

from ..errors import ShapeError
from ..tensor import TensorType, fmt_shape, static
from .base import Op, PositivePair, Window, expect_float, expect_rank, pair, sample
from .conv import Size2


def adaptive_bounds(n: int, o: int) -> tuple[np.ndarray, np.ndarray]:
    """``(start, end)`` of the ``o`` windows over ``n`` inputs: ``floor(i·n/o)``, ``ceil((i+1)·n/o)``."""
    i = np.arange(o)
    return (i * n) // o, -((-(i + 1) * n) // o)


def adaptive_window(n: int, o: int) -> Window:
    """The window rule: step ``n/o``, widest window ``max(end − start)`` (exact when ``o`` divides ``n``)."""
    start, end = adaptive_bounds(n, o)
    return Window(Fraction(n, o), Fraction(0), int((end - start).max()))


def mean_matrix(n: int, o: int) -> np.ndarray:
    """``A[i, h] = 1/(end_i − start_i)`` for ``h`` in window ``i``, else 0: (o, n); a window's mean is ``A · x``."""
    start, end = adaptive_bounds(n, o)
    h = np.arange(n)[None, :]
    inside = (h >= start[:, None]) & (h < end[:, None])
    return inside / (end - start)[:, None]


def window_indices(n: int, o: int) -> np.ndarray:
    """(o, L) input indices of each window, L the widest; shorter windows repeat their last index (which
    changes neither a maximum nor which element is its first occurrence)."""
    start, end = adaptive_bounds(n, o)
    width = int((end - start).max())
    return np.minimum(start[:, None] + np.arange(width)[None, :], end[:, None] - 1)


def _nchw(op: Op, x: TensorType, static_size: bool = True) -> tuple:
    """An NCHW float input's height and width; ``static_size``: they must be ints (a kernel's windows)."""
    expect_rank(x, 4, f"{op.kind} input (N, C, H, W)")
    expect_float(x)
    if not static_size:
        return x.shape[2], x.shape[3]
    return static(x.shape[2], f"{op.kind} input height"), static(x.shape[3], f"{op.kind} input width")


def _separable_onnx(ctx, x: str, a_h: np.ndarray, a_w: np.ndarray, y: str, dtype: str) -> None:
    """``y[n, c] = A_h · x[n, c] · A_wᵀ`` as two MatMuls with constant matrices (ONNX MatMul broadcasts)."""
    t = ctx.node("MatMul", [x, ctx.const(a_w.T, dtype, hint="cols")], hint="pool_cols")
    ctx.node("MatMul", [ctx.const(a_h, dtype, hint="rows"), t], y)


def _exact_onnx(ctx, op: Op, x: str, y: str, reduce: str, pool: str) -> tuple[int, int] | None:
    """The lowerings PyTorch's windows allow without gathering them, each what an exporter writes for
    that case (and what the importer maps back): output 1×1 → ``reduce`` over H and W with the dims
    kept (any input size, symbolic too); output = input → Identity; output dividing the input →
    ``pool`` with kernel = stride = input/output. Returns the static (H, W) where none applies."""
    t = ctx.type_of(x)
    h, w = t.shape[2:]
    oh, ow = pair(op.output_size)
    if (oh, ow) == (1, 1):
        ctx.node(reduce, [x, ctx.ints([2, 3])], y, keepdims=1)
        return None
    h, w = (int(d) for d in ctx.static_ints([h, w]))
    if (h, w) == (oh, ow):
        ctx.node("Identity", [x], y)
        return None
    # onnxruntime's CPU AveragePool is float32 only; its MaxPool takes float64 too
    if h % oh == 0 and w % ow == 0 and (pool == "MaxPool" or t.dtype == "float32"):
        k = [h // oh, w // ow]
        ctx.node(pool, [x], y, kernel_shape=k, strides=k)
        return None
    return h, w


def _separable(x: np.ndarray, a_h: np.ndarray, a_w: np.ndarray) -> np.ndarray:
    return np.matmul(a_h.astype(x.dtype), np.matmul(x, a_w.T.astype(x.dtype)))


class _AdaptiveOutput:
    """The facets both adaptive pools share: NCHW in, ``output_size`` out, PyTorch's windows."""

    def infer(self, xs):
        _nchw(self, xs[0], static_size=False)
        return xs[0].with_shape((*xs[0].shape[:2], *pair(self.output_size)))

    def window(self, xs):
        """PyTorch's windows depend on the input size: none over a symbolic one."""
        h, w = xs[0].shape[2:]
        if not (isinstance(h, int) and isinstance(w, int)):
            return None
        return tuple(adaptive_window(n, o) for n, o in zip((h, w), pair(self.output_size)))

    def describe(self):
        oh, ow = pair(self.output_size)
        return f"→ {oh}x{ow}"


class AdaptiveAvgPool2d(_AdaptiveOutput, Op):
    """Adaptive average pooling to ``(oh, ow) = output_size``, (N, C, H, W) → (N, C, oh, ow):
    ``y[n, c, i, j] = mean_{start_i ≤ h < end_i, start_j ≤ w < end_j} x[n, c, h, w]`` with
    ``start_i = floor(i·H/oh)``, ``end_i = ceil((i+1)·H/oh)`` (PyTorch's rule; likewise along W).

    Separable: ``y = A_h · x · A_wᵀ`` with ``A[i, h] = 1/(end_i − start_i)`` inside window ``i``;
    ``gx = A_hᵀ · gy · A_w``. Lowered to ONNX as ReduceMean (1×1), Identity (output = input) or
    AveragePool (output dividing the input), else as the same two MatMuls, exact for any sizes.
    """

    kind = "adaptive_avgpool2d"
    summary = "An average pooling to a given output size, with PyTorch's window rule for any input size."
    output_size: PositivePair = Field(description="output height and width: one int for both or [oh, ow]")

    samples = (sample({"output_size": 2}, (2, 3, 4, 6), note="divides"),
               sample({"output_size": [3, 2]}, (2, 2, 7, 5), note="does not divide, overlapping windows"),
               sample({"output_size": 4}, (1, 2, 3, 3), note="output larger than input"),
               sample({"output_size": 1}, (2, 3, 5, 4), note="global"), sample({"output_size": [3, 4]}, (1, 2, 3, 4), note="output = input"))

    def _matrices(self, h: int, w: int):
        oh, ow = pair(self.output_size)
        return mean_matrix(h, oh), mean_matrix(w, ow)

    def forward(self, x):
        return _separable(x, *self._matrices(*x.shape[2:]))

    def onnx(self, ctx, xs, y):
        hw = _exact_onnx(ctx, self, xs[0], y, "ReduceMean", "AveragePool")
        if hw is not None:
            _separable_onnx(ctx, xs[0], *self._matrices(*hw), y, ctx.type_of(xs[0]).dtype)

    def vjp(self, g, xs, y, gy):
        h, w = g.type_of(xs[0]).shape[2:]
        return (g.op(AdaptiveAvgPool2dGrad(output_size=pair(self.output_size), input_size=(h, w)), [gy], "dx"),)


class AdaptiveAvgPool2dGrad(Op):
    """Gradient of adaptive_avgpool2d: ``gx = A_hᵀ · gy · A_w``, (N, C, oh, ow) → (N, C, H, W), ``(H, W) = input_size``."""

    kind = "adaptive_avgpool2d_grad"
    user_facing = False
    output_size: Size2
    input_size: Size2
    samples = (sample({"output_size": [3, 2], "input_size": [7, 5]}, (2, 2, 3, 2)),)

    def _matrices(self):
        (h, w), (oh, ow) = self.input_size, self.output_size
        return mean_matrix(h, oh).T, mean_matrix(w, ow).T

    def infer(self, xs):
        expect_rank(xs[0], 4, "adaptive_avgpool2d_grad gy (N, C, oh, ow)")
        if tuple(xs[0].shape[2:]) != tuple(self.output_size):
            raise ShapeError(f"adaptive_avgpool2d_grad: gy {fmt_shape(xs[0].shape)} does not have output size {self.output_size}")
        return xs[0].with_shape((*xs[0].shape[:2], *self.input_size))

    def window(self, xs):
        return None

    def forward(self, gy):
        return _separable(gy, *self._matrices())

    def onnx(self, ctx, xs, y):
        _separable_onnx(ctx, xs[0], *self._matrices(), y, ctx.type_of(xs[0]).dtype)

    def vjp(self, g, xs, y, gy):
        # linear in gy: its adjoint is the forward pool
        return (g.op(AdaptiveAvgPool2d(output_size=self.output_size), [gy], "dgy"),)


class _AdaptiveMax(Op):
    """Shared gathering of adaptive max pooling's windows."""

    def _indices(self, h: int, w: int):
        oh, ow = pair(self.output_size)
        return window_indices(h, oh), window_indices(w, ow)

    def _gathered(self, x: np.ndarray) -> np.ndarray:
        """(N, C, oh, ow, Lh·Lw): each output cell's window in row-major order."""
        ih, iw = self._indices(*x.shape[2:])
        g = x[:, :, ih[:, :, None, None], iw[None, None, :, :]]  # (N, C, oh, Lh, ow, Lw)
        n, c, oh, lh, ow, lw = g.shape
        return g.transpose(0, 1, 2, 4, 3, 5).reshape(n, c, oh, ow, lh * lw)

    def _flat_positions(self, h: int, w: int) -> np.ndarray:
        """(oh, ow, Lh·Lw): the flat input index ``h·W + w`` of each window element."""
        ih, iw = self._indices(h, w)
        pos = ih[:, None, :, None] * w + iw[None, :, None, :]  # (oh, ow, Lh, Lw)
        return pos.reshape(*pos.shape[:2], -1)

    def _onnx_gathered(self, ctx, x: str, h: int, w: int) -> str:
        ih, iw = self._indices(h, w)
        rows = ctx.node("Gather", [x, ctx.ints(ih, hint="rows")], hint="rows", axis=2)  # (N, C, oh, Lh, W)
        cells = ctx.node("Gather", [rows, ctx.ints(iw, hint="cols")], hint="cells", axis=4)  # (N, C, oh, Lh, ow, Lw)
        cells = ctx.node("Transpose", [cells], hint="cells_t", perm=[0, 1, 2, 4, 3, 5])
        return ctx.node("Reshape", [cells, ctx.ints([0, 0, 0, 0, -1])], hint="windows")


class AdaptiveMaxPool2d(_AdaptiveOutput, _AdaptiveMax):
    """Adaptive max pooling to ``(oh, ow) = output_size``, (N, C, H, W) → (N, C, oh, ow):
    ``y[n, c, i, j] = max_{start_i ≤ h < end_i, start_j ≤ w < end_j} x[n, c, h, w]`` with
    ``start_i = floor(i·H/oh)``, ``end_i = ceil((i+1)·H/oh)`` (PyTorch's rule; likewise along W).
    The gradient goes to the first maximum of each window in row-major order (as PyTorch).
    Lowered to ONNX as ReduceMax (1×1), Identity (output = input) or MaxPool (output dividing the
    input), else as two Gathers of the windows and a ReduceMax, exact for any sizes.
    """

    kind = "adaptive_maxpool2d"
    summary = "A max pooling to a given output size, with PyTorch's window rule for any input size."
    output_size: PositivePair = Field(description="output height and width: one int for both or [oh, ow]")

    samples = (sample({"output_size": 2}, (2, 3, 4, 6), note="divides"),
               sample({"output_size": [3, 2]}, (2, 2, 7, 5), note="does not divide, overlapping windows"),
               sample({"output_size": 4}, (1, 2, 3, 3), note="output larger than input"),
               sample({"output_size": 1}, (2, 3, 5, 4), note="global"), sample({"output_size": [3, 4]}, (1, 2, 3, 4), note="output = input"))

    def forward(self, x):
        return self._gathered(x).max(axis=-1)

    def onnx(self, ctx, xs, y):
        hw = _exact_onnx(ctx, self, xs[0], y, "ReduceMax", "MaxPool")
        if hw is not None:
            ctx.node("ReduceMax", [self._onnx_gathered(ctx, xs[0], *hw), ctx.ints([-1])], y, keepdims=0)

    def vjp(self, g, xs, y, gy):
        return (g.op(AdaptiveMaxPool2dGrad(output_size=pair(self.output_size)), [xs[0], gy], "dx"),)


class AdaptiveMaxPool2dGrad(_AdaptiveMax):
    """Gradient of adaptive_maxpool2d: ``gx[n, c, h, w] = Σ_{cells (i, j) whose first window maximum is
    (h, w)} gy[n, c, i, j]``; inputs x (N, C, H, W) and gy (N, C, oh, ow)."""

    kind = "adaptive_maxpool2d_grad"
    arity = (2, 2)
    user_facing = False
    output_size: Size2
    samples = (sample({"output_size": [3, 2]}, (2, 2, 7, 5), (2, 2, 3, 2)), sample({"output_size": 4}, (1, 2, 3, 3), (1, 2, 4, 4)))

    def infer(self, xs):
        x, gy = xs
        want = (*x.shape[:2], *self.output_size)
        if tuple(gy.shape) != want:
            raise ShapeError(f"adaptive_maxpool2d_grad: gy {fmt_shape(gy.shape)} must be {fmt_shape(want)}")
        return TensorType(tuple(x.shape), gy.dtype)

    def window(self, xs):
        return None

    def forward(self, x, gy):
        n, c, h, w = x.shape
        first = self._gathered(x).argmax(axis=-1)  # argmax returns the first maximum
        oh, ow = self.output_size
        pos = self._flat_positions(h, w)[np.arange(oh)[:, None], np.arange(ow)[None, :], first]  # (N, C, oh, ow)
        flat = (np.arange(n * c).reshape(n, c, 1, 1) * (h * w) + pos).ravel()
        gx = np.bincount(flat, weights=gy.ravel(), minlength=n * c * h * w)
        return gx.astype(gy.dtype, copy=False).reshape(x.shape)

    def onnx(self, ctx, xs, y):
        x, gy = xs
        h, w = ctx.type_of(x).shape[2:]
        windows = self._onnx_gathered(ctx, x, h, w)
        first = ctx.node("ArgMax", [windows], hint="first", axis=-1, keepdims=1, select_last_index=0)
        table = ctx.node("Expand", [ctx.ints(self._flat_positions(h, w), hint="positions"), ctx.node("Shape", [windows])])
        pos = ctx.node("Reshape", [ctx.node("GatherElements", [table, first], axis=-1), ctx.ints([0, 0, -1])], hint="pos")
        x_flat = ctx.node("Reshape", [x, ctx.ints([0, 0, -1])], hint="x_flat")
        zeros = ctx.node("Mul", [x_flat, ctx.const(0.0, ctx.type_of(gy).dtype)], hint="zeros")
        updates = ctx.node("Reshape", [gy, ctx.ints([0, 0, -1])], hint="gy_flat")
        gx = ctx.node("ScatterElements", [zeros, pos, updates], hint="gx_flat", axis=2, reduction="add")
        ctx.node("Reshape", [gx, ctx.node("Shape", [x])], y)


class GlobalMaxPool(Op):
    """Global max pooling: ``y[n, c] = max_{h, w} x[n, c, h, w]``, (N, C, H, W) → (N, C); the gradient
    goes to the first maximum in row-major order."""

    kind = "global_maxpool"
    summary = "A global max pooling that turns each channel of an NCHW image into its largest value."
    samples = (sample({}, (2, 3, 4, 5)), sample({}, (1, 4, 1, 1)))

    def infer(self, xs):
        _nchw(self, xs[0], static_size=False)
        return TensorType(xs[0].shape[:2], xs[0].dtype)

    def window(self, xs):
        return None

    def forward(self, x):
        return x.max(axis=(2, 3))

    def onnx(self, ctx, xs, y):
        ctx.node("ReduceMax", [xs[0], ctx.ints([2, 3])], y, keepdims=0)

    def vjp(self, g, xs, y, gy):
        return (g.op(GlobalMaxPoolGrad(), [xs[0], gy], "dx"),)


class GlobalMaxPoolGrad(Op):
    """Gradient of global_maxpool: ``gx[n, c, h, w] = gy[n, c]`` at the first maximum of plane (n, c), else 0."""

    kind = "global_maxpool_grad"
    arity = (2, 2)
    user_facing = False
    samples = (sample({}, (2, 3, 4, 5), (2, 3)),)

    def infer(self, xs):
        x, gy = xs
        if tuple(gy.shape) != tuple(x.shape[:2]):
            raise ShapeError(f"global_maxpool_grad: gy {fmt_shape(gy.shape)} must be {fmt_shape(x.shape[:2])}")
        return TensorType(tuple(x.shape), gy.dtype)

    def window(self, xs):
        return None

    def forward(self, x, gy):
        n, c, h, w = x.shape
        first = x.reshape(n, c, h * w).argmax(axis=-1)
        gx = np.zeros((n, c, h * w), gy.dtype)
        np.put_along_axis(gx, first[..., None], gy[..., None], axis=-1)
        return gx.reshape(x.shape)

    def onnx(self, ctx, xs, y):
        x, gy = xs
        x_flat = ctx.node("Reshape", [x, ctx.ints([0, 0, -1])], hint="x_flat")
        first = ctx.node("ArgMax", [x_flat], hint="first", axis=-1, keepdims=1, select_last_index=0)
        zeros = ctx.node("Mul", [x_flat, ctx.const(0.0, ctx.type_of(gy).dtype)], hint="zeros")
        gx = ctx.node("ScatterElements", [zeros, first, ctx.node("Unsqueeze", [gy, ctx.ints([2])])], hint="gx_flat", axis=2)
        ctx.node("Reshape", [gx, ctx.node("Shape", [x])], y)


OPS = (AdaptiveAvgPool2d, AdaptiveAvgPool2dGrad, AdaptiveMaxPool2d, AdaptiveMaxPool2dGrad, GlobalMaxPool, GlobalMaxPoolGrad)
