"""Local response normalisation across channels, exactly as ONNX's LRN (AlexNet, GoogLeNet v1).

Channel c's window is ``c − lo … c + hi`` with ``lo = ⌊(size − 1)/2⌋`` before and ``hi = ⌈(size − 1)/2⌉``
after (clipped to the channels): the two differ for an even size. Window sums are computed as
``size`` shifted slices of the zero-padded tensor (a loop over window offsets, never over pixels or
channels), in ONNX as a convolution with a ones kernel over the channel axis.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from ..tensor import static
from .activations import _onnx_as, _same_shape
from .base import Op, PositiveInt, expect_float, expect_rank, sample


def window_sides(size: int) -> tuple[int, int]:
    """Channels before and after c in its window: ``(⌊(size − 1)/2⌋, ⌈(size − 1)/2⌉)``."""
    return (size - 1) // 2, size // 2


def channel_window_sum(a: np.ndarray, before: int, after: int) -> np.ndarray:
    """``s[:, c] = Σ_{i = c − before}^{c + after} a[:, i]`` over the channels that exist (axis 1)."""
    c = a.shape[1]
    padded = np.pad(a, ((0, 0), (before, after)) + ((0, 0),) * (a.ndim - 2))
    s = padded[:, 0:c].copy()
    for k in range(1, before + after + 1):
        s += padded[:, k:k + c]
    return s


def _onnx_channel_window_sum(ctx, a: str, like: str, before: int, after: int) -> str:
    """:func:`channel_window_sum` in ONNX: (N, C, H, W) viewed as (N, 1, C, H·W), a Conv with a ones
    kernel (before + after + 1, 1) padded ``before``/``after`` along C, and back to the shape of ``like``."""
    t = ctx.type_of(like)
    c = static(t.shape[1], "lrn channels (axis 1)")
    view = ctx.node("Reshape", [a, ctx.ints([0, 1, c, -1])], hint="channel_rows")
    ones = ctx.const(np.ones((1, 1, before + after + 1, 1)), t.dtype, "window")
    s = ctx.node("Conv", [view, ones], hint="window_sum", pads=[before, 0, after, 0])
    return ctx.node("Reshape", [s, ctx.node("Shape", [like], hint="shape")], hint="window_sum_nchw")


class _LrnAttributes(Op):
    size: PositiveInt = Field(description="channels in each window: ⌊(size−1)/2⌋ before the channel, ⌈(size−1)/2⌉ after")
    alpha: float = Field(1e-4, ge=0, description="scale of the windowed sum of squares (divided by size, as ONNX)")
    beta: float = Field(0.75, ge=0, description="the exponent of the denominator")
    bias: float = Field(1.0, gt=0, description="added to the scaled sum of squares (keeps the denominator positive)")

    def _denominator(self, x: np.ndarray) -> np.ndarray:
        """``d = bias + (alpha/size)·Σ_window x²``, per element."""
        lo, hi = window_sides(self.size)
        s = channel_window_sum(x * x, lo, hi)
        return np.asarray(self.bias, x.dtype) + np.asarray(self.alpha / self.size, x.dtype) * s

    def _onnx_denominator(self, ctx, x: str, like: str, dtype: str) -> str:
        """:meth:`_denominator` in ONNX, of ``x`` already in ``dtype`` (``like``: a graph value of x's shape)."""
        lo, hi = window_sides(self.size)
        squares = _onnx_channel_window_sum(ctx, ctx.node("Mul", [x, x], hint="squares"), like, lo, hi)
        return ctx.node("Add", [ctx.const(self.bias, dtype), ctx.node("Mul", [squares, ctx.const(self.alpha / self.size, dtype)])], hint="d")


class LRN(_LrnAttributes):
    """Local response normalisation of x (N, C, H, W) across channels (ONNX's LRN):

    ``y[n, c, h, w] = x[n, c, h, w] / (bias + (alpha/size)·Σ_{i=max(0, c−lo)}^{min(C−1, c+hi)} x[n, i, h, w]²)^beta``
    with ``lo = ⌊(size − 1)/2⌋`` channels before and ``hi = ⌈(size − 1)/2⌉`` after. Defaults are ONNX's
    (alpha 1e-4, beta 0.75, bias 1); PyTorch's ``LocalResponseNorm`` is the same formula (k for bias).
    The AlexNet paper's k = 2, n = 5, α = 1e-4, β = 0.75 does not divide α by n: here that is size 5,
    alpha 5e-4, beta 0.75, bias 2. Pointwise in space; no parameters;
    MACs 0 (normalisation). ``gx`` by ``lrn_grad``. Lowered to ONNX LRN for an odd size; onnxruntime
    refuses an even one, which is lowered to the same formula from Conv (the window sum), Pow and Mul.
    """

    kind = "lrn"
    summary = "A local response normalisation across neighbouring channels (ONNX's LRN; AlexNet, GoogLeNet)."

    samples = (sample({"size": 3, "alpha": 0.5}, (2, 5, 3, 3)),
               sample({"size": 4, "alpha": 0.3, "beta": 0.6, "bias": 2.0}, (1, 6, 2, 3), note="even size: 1 before, 2 after"),
               sample({"size": 5}, (2, 3, 2, 2), note="window wider than the channels"),
               sample({"size": 2, "alpha": 1.0, "beta": 1.5}, ("N", 4, 2, 2), note="symbolic batch"))

    def infer(self, xs):
        x = xs[0]
        expect_rank(x, 4, "lrn input (N, C, H, W)")
        expect_float(x)
        static(x.shape[1], "lrn channels (axis 1)")
        return x

    def describe(self):
        return f"size {self.size}"

    def forward(self, x):
        return x * self._denominator(x) ** np.asarray(-self.beta, x.dtype)

    def onnx(self, ctx, xs, y):
        if self.size % 2:
            ctx.node("LRN", xs, y, size=self.size, alpha=self.alpha, beta=self.beta, bias=self.bias)
            return
        # onnxruntime's LRN kernels refuse an even size (which ONNX defines): the same formula from parts
        dtype = ctx.type_of(xs[0]).dtype
        d = self._onnx_denominator(ctx, xs[0], xs[0], dtype)
        ctx.node("Mul", [xs[0], ctx.node("Pow", [d, ctx.const(-self.beta, dtype)], hint="d_pow")], y)

    def vjp(self, g, xs, y, gy):
        attrs = {k: getattr(self, k) for k in ("size", "alpha", "beta", "bias")}
        return (g.op(LRNGrad(**attrs), [xs[0], gy], "dx"),)


class LRNGrad(_LrnAttributes):
    """Input gradient of lrn, with ``d = bias + (alpha/size)·Σ_window x²`` per element:

    ``gx[c] = gy[c]·d[c]^(−beta) − (2·alpha·beta/size)·x[c]·Σ_{c′: c ∈ window(c′)} gy[c′]·x[c′]·d[c′]^(−beta−1)``;
    the channels c′ whose window holds c are ``c − hi … c + lo`` (the window reversed). Inputs (x, gy).
    """

    kind = "lrn_grad"
    arity = (2, 2)
    user_facing = False
    samples = (sample({"size": 3, "alpha": 0.5}, (2, 5, 3, 3), (2, 5, 3, 3)),
               sample({"size": 4, "alpha": 0.3, "beta": 0.6, "bias": 2.0}, (1, 6, 2, 3), (1, 6, 2, 3)))

    def infer(self, xs):
        x, gy = xs
        expect_rank(x, 4, "lrn_grad x (N, C, H, W)")
        return _same_shape(self.kind, x, gy)

    def window(self, xs):
        return None

    def forward(self, x, gy):
        lo, hi = window_sides(self.size)
        d = self._denominator(x.astype(gy.dtype, copy=False))
        scaled = gy * d ** np.asarray(-self.beta, gy.dtype)  # gy·d^−β
        back = channel_window_sum(scaled * x / d, hi, lo)
        return scaled - np.asarray(2 * self.alpha * self.beta / self.size, gy.dtype) * x * back

    def onnx(self, ctx, xs, y):
        x, gy = xs
        dtype = ctx.type_of(gy).dtype
        x = _onnx_as(ctx, x, dtype)
        lo, hi = window_sides(self.size)
        d = self._onnx_denominator(ctx, x, gy, dtype)
        scaled = ctx.node("Mul", [gy, ctx.node("Pow", [d, ctx.const(-self.beta, dtype)], hint="d_pow")], hint="scaled")
        t = ctx.node("Div", [ctx.node("Mul", [scaled, x]), d], hint="through_d")
        back = _onnx_channel_window_sum(ctx, t, gy, hi, lo)
        coef = ctx.const(2 * self.alpha * self.beta / self.size, dtype, "coef")
        ctx.node("Sub", [scaled, ctx.node("Mul", [coef, ctx.node("Mul", [x, back])])], y)


OPS = (LRN, LRNGrad)
