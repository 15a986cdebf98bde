"""The ``pad`` layer: explicit padding of an NCHW image's spatial dims, per side, with a constant, the
reflection (without repeating the border) or the border value (``edge``, PyTorch's ``replicate``).

Every mode is a selection along each axis: padded row ``r`` reads input row ``src(r)`` (or nothing,
for constant padding). The gradient folds back through the same selection: ``gx = S_hᵀ · gy · S_w``
with the one-hot matrices ``S[r, src(r)] = 1``.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Annotated, Literal

import numpy as np
from pydantic import BeforeValidator, Field

from ..errors import ShapeError
from ..tensor import fmt_shape
from .base import SIDES, NonNegativeInt, Op, SidePads, Window, expect_float, expect_rank, sample, side_padding
from .conv import Size2

#: one int for all four sides, [ph, pw] (both sides of each dim) or {top, bottom, left, right}
PadAmounts = Annotated[NonNegativeInt | tuple[NonNegativeInt, NonNegativeInt] | SidePads, BeforeValidator(side_padding)]


def per_side(padding) -> tuple[tuple[int, int], tuple[int, int]]:
    """((top, bottom), (left, right)) of a padding value."""
    if isinstance(padding, int):
        return ((padding, padding), (padding, padding))
    if isinstance(padding[0], int):
        return ((padding[0], padding[0]), (padding[1], padding[1]))
    return padding


def source_rows(n: int, begin: int, end: int, mode: str) -> np.ndarray:
    """``src(r)`` for the ``begin + n + end`` padded rows: the input row each reads (−1: the constant)."""
    r = np.arange(-begin, n + end)
    if mode == "constant":
        return np.where((r >= 0) & (r < n), r, -1)
    if mode == "edge":
        return np.clip(r, 0, n - 1)
    r = np.abs(r)  # reflect: … 2 1 | 0 1 2 … n−1 | n−2 n−3 …
    return np.where(r > n - 1, 2 * (n - 1) - r, r)


def selection(n: int, begin: int, end: int, mode: str) -> np.ndarray:
    """``S[r, h] = 1`` where padded row ``r`` reads input row ``h``: (begin + n + end, n)."""
    src = source_rows(n, begin, end, mode)
    return (src[:, None] == np.arange(n)[None, :]).astype(np.float64)


class Pad(Op):
    """Padding of the spatial dims of (N, C, H, W) to (N, C, t + H + b, l + W + r):
    ``y[n, c, i, j] = x[n, c, src_h(i), src_w(j)]`` with, along each axis, ``src(r) = r − begin`` inside,
    and outside it the constant ``value`` (``constant``), the mirror image without the border row
    (``reflect``: ``… x₂ x₁ | x₀ x₁ …``) or the border row (``edge``).

    ``gx = S_hᵀ · gy · S_w`` (``S[r, h] = [src(r) = h]``): reflected and repeated rows add their
    cotangents into the rows they copy. Lowered to ONNX ``Pad`` (mode constant/reflect/edge).
    """

    kind = "pad"
    summary = "A padding of an NCHW image's borders, per side, with a constant, a reflection or the edge values."
    padding: PadAmounts = Field(description="rows/columns added: one int for all sides, [ph, pw] or {top, bottom, left, right}")
    mode: Literal["constant", "reflect", "edge"] = Field("constant", description="fill: 'constant' (value), 'reflect' (mirror, border not repeated) or 'edge' (border repeated)")
    value: float = Field(0.0, description="the fill of constant padding")

    samples = (sample({"padding": {"top": 1, "bottom": 0, "left": 2, "right": 1}}, (2, 3, 4, 5)),
               sample({"padding": [1, 2], "mode": "reflect"}, (1, 2, 4, 3)),
               sample({"padding": {"top": 2, "right": 3}, "mode": "edge"}, (1, 2, 3, 3)),
               sample({"padding": 1, "value": -1.5}, (1, 2, 3, 3)))

    def _pads(self):
        return per_side(self.padding)

    def infer(self, xs):
        x = xs[0]
        expect_rank(x, 4, "pad input (N, C, H, W)")
        expect_float(x)
        (t, b), (l, r) = self._pads()
        h, w = x.shape[2], x.shape[3]
        if self.mode == "reflect":
            for n, (p0, p1), axis in ((h, (t, b), "height"), (w, (l, r), "width")):
                if isinstance(n, int) and max(p0, p1) >= n:  # a symbolic size: checked when a run binds it
                    raise ShapeError(f"pad: reflect padding {max(p0, p1)} along {axis} must be smaller than the input {axis} {n} "
                                     f"(input {fmt_shape(x.shape)}); use mode 'edge' or less padding")
        return x.with_shape((*x.shape[:2], t + h + b, l + w + r))

    def window(self, xs):
        """Constant padding reads row ``r − begin`` (or nothing); reflect and edge padding also read
        real rows near the border, up to ``2·begin`` (reflect) or ``begin`` (edge) rows further in."""
        reach = 2 if self.mode == "reflect" else 1 if self.mode == "edge" else 0
        return tuple(Window(Fraction(1), Fraction(-p0 - reach * p1), 1 + reach * (p0 + p1)) for p0, p1 in self._pads())

    def describe(self):
        (t, b), (l, r) = self._pads()
        amounts = " ".join(f"{side[0]}{p}" for side, p in zip(SIDES, (t, b, l, r)))
        return f"{self.mode} {amounts}" + (f" value {self.value:g}" if self.mode == "constant" and self.value else "")

    def forward(self, x):
        (t, b), (l, r) = self._pads()
        widths = ((0, 0), (0, 0), (t, b), (l, r))
        if self.mode == "constant":
            return np.pad(x, widths, mode="constant", constant_values=x.dtype.type(self.value))
        return np.pad(x, widths, mode=self.mode)

    def onnx(self, ctx, xs, y):
        (t, b), (l, r) = self._pads()
        inputs = [xs[0], ctx.ints([0, 0, t, l, 0, 0, b, r], hint="pads")]
        if self.mode == "constant":
            inputs.append(ctx.const(self.value, ctx.type_of(xs[0]).dtype, hint="fill"))
        ctx.node("Pad", inputs, y, mode=self.mode)

    def vjp(self, g, xs, y, gy):
        h, w = g.type_of(xs[0]).shape[2:]
        return (g.op(PadGrad(padding=self._pads(), mode=self.mode, input_size=(h, w)), [gy], "dx"),)


class PadGrad(Op):
    """Gradient of pad: ``gx = S_hᵀ · gy · S_w`` with ``S[r, h] = [src(r) = h]``, (N, C, t + H + b, l + W + r)
    → (N, C, H, W), ``(H, W) = input_size``."""

    kind = "pad_grad"
    user_facing = False
    padding: Annotated[SidePads, BeforeValidator(side_padding)]
    mode: Literal["constant", "reflect", "edge"]
    input_size: Size2
    samples = (sample({"padding": [[1, 2], [2, 1]], "mode": "reflect", "input_size": [4, 3]}, (1, 2, 7, 6)),
               sample({"padding": [[2, 0], [0, 3]], "mode": "edge", "input_size": [3, 3]}, (1, 2, 5, 6)),
               sample({"padding": [[1, 0], [2, 1]], "mode": "constant", "input_size": [4, 5]}, (2, 3, 5, 8)))

    def _matrices(self):
        (h, w), ((t, b), (l, r)) = self.input_size, self.padding
        return selection(h, t, b, self.mode), selection(w, l, r, self.mode)

    def infer(self, xs):
        gy = xs[0]
        (h, w), ((t, b), (l, r)) = self.input_size, self.padding
        expect_rank(gy, 4, "pad_grad gy (N, C, H', W')")
        if tuple(gy.shape[2:]) != (t + h + b, l + w + r):
            raise ShapeError(f"pad_grad: gy {fmt_shape(gy.shape)} is not the padded size of {h}x{w}")
        return gy.with_shape((*gy.shape[:2], h, w))

    def window(self, xs):
        return None

    def forward(self, gy):
        s_h, s_w = self._matrices()
        return np.matmul(s_h.T.astype(gy.dtype), np.matmul(gy, s_w.astype(gy.dtype)))

    def onnx(self, ctx, xs, y):
        s_h, s_w = self._matrices()
        dtype = ctx.type_of(xs[0]).dtype
        t = ctx.node("MatMul", [xs[0], ctx.const(s_w, dtype, hint="cols")], hint="fold_cols")
        ctx.node("MatMul", [ctx.const(s_h.T, dtype, hint="rows"), t], y)
OPS = (Pad, PadGrad)
