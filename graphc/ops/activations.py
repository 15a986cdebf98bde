"""Activations with attributes or parameters: leaky_relu, prelu, elu, maxout, dropout.

(The attribute-free pointwise ones, relu, sigmoid and tanh, live in ``elementwise``.)
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from ..errors import ShapeError
from ..tensor import TensorType, fmt_shape, static
from .base import ONNX_DTYPES, Init, Op, Param, expect_float, sample
from .elementwise import Mul, Relu, Sub
from .reduce import ReduceSum


def _same_shape(kind: str, a: TensorType, b: TensorType, what: str = "gy") -> TensorType:
    if a.shape != b.shape:
        raise ShapeError(f"{kind}: {what} {fmt_shape(b.shape)} must have the shape of x {fmt_shape(a.shape)}")
    return b


def _channel_view(v: np.ndarray, ndim: int) -> np.ndarray:
    """A per-channel vector (C,) viewed as (1, C, 1, …) to broadcast along axis 1 of a rank-``ndim`` tensor."""
    return v.reshape((1, -1) + (1,) * (ndim - 2))


# --- ONNX lowering helpers (DESIGN.md §6) --------------------------------------------------------
def _onnx_as(ctx, name: str, dtype: str) -> str:
    """``name`` cast to ``dtype`` (itself when it already has that dtype)."""
    return name if ctx.type_of(name).dtype == dtype else ctx.node("Cast", [name], hint="cast", to=ONNX_DTYPES[dtype])


def _onnx_channel_view(ctx, v: str, ndim: int, dtype: str) -> str:
    """A per-channel vector (C,) reshaped to (1, C, 1, …) (and cast to ``dtype``) to broadcast along axis 1."""
    v = _onnx_as(ctx, v, dtype)
    return ctx.node("Reshape", [v, ctx.ints([1, -1] + [1] * (ndim - 2))], hint="channel_view")


def _onnx_positive(ctx, x: str) -> str:
    """The boolean mask ``x > 0``."""
    return ctx.node("Greater", [x, ctx.const(0.0, ctx.type_of(x).dtype)], hint="positive")


def _onnx_group_shape(ctx, x: str, pieces: int) -> str:
    """Maxout's grouped shape (N, C, k, …) of x (N, C·k, …), with N (and any other symbolic dim) at run time."""
    shape = ctx.type_of(x).shape
    groups = [shape[1] // pieces, pieces]
    if all(isinstance(d, int) for d in shape[2:]):
        return ctx.ints([0] + groups + list(shape[2:]))  # 0: copy N from the input
    parts = [ctx.node("Shape", [x], hint="batch", start=0, end=1), ctx.ints(groups)]
    parts.append(ctx.node("Shape", [x], hint="rest", start=2))
    return ctx.node("Concat", parts, hint="group_shape", axis=0)


class LeakyRelu(Op):
    """``y = x if x > 0 else α·x`` (elementwise, any layout)."""

    kind = "leaky_relu"
    summary = "A leaky ReLU that keeps positive values and scales negative ones by alpha."
    alpha: float = Field(0.01, ge=0, description="slope for negative inputs")

    samples = (sample({}, (2, 3, 4, 4)), sample({"alpha": 0.2}, (3, 7)))

    def infer(self, xs):
        expect_float(xs[0])
        return xs[0]

    def describe(self):
        return f"alpha {self.alpha:g}"

    def forward(self, x):
        return np.where(x > 0, x, x * np.asarray(self.alpha, x.dtype))

    def onnx(self, ctx, xs, y):
        x = xs[0]
        alpha = ctx.const(self.alpha, ctx.type_of(x).dtype)
        ctx.node("Where", [_onnx_positive(ctx, x), x, ctx.node("Mul", [x, alpha])], y)

    def vjp(self, g, xs, y, gy):
        return (g.op(LeakyReluGrad(alpha=self.alpha), [xs[0], gy], "dx"),)


class LeakyReluGrad(Op):
    """Gradient of leaky ReLU from its input: ``gx = gy if x > 0 else α·gy``."""

    kind = "leaky_relu_grad"
    arity = (2, 2)
    user_facing = False
    alpha: float = Field(0.01, ge=0)
    samples = (sample({"alpha": 0.1}, (3, 7), (3, 7)),)

    def infer(self, xs):
        return _same_shape(self.kind, *xs)

    def forward(self, x, gy):
        return np.where(x > 0, gy, gy * np.asarray(self.alpha, gy.dtype))

    def onnx(self, ctx, xs, y):
        x, gy = xs
        alpha = ctx.const(self.alpha, ctx.type_of(gy).dtype)
        ctx.node("Where", [_onnx_positive(ctx, x), gy, ctx.node("Mul", [gy, alpha])], y)

    def vjp(self, g, xs, y, gy):
        # linear in gy, piecewise constant in x
        return None, (g.op(LeakyReluGrad(alpha=self.alpha), [xs[0], gy], "dgy") if g.needs(1) else None)


class PRelu(Op):
    """``y = x if x > 0 else a_c·x`` with a learnable slope ``a`` per channel (axis 1).

    Input (N, C, …); parameter ``slope`` of shape (C,), initialised to 0.25 (He et al. 2015).
    """

    kind = "prelu"
    summary = "A parametric ReLU with a learnable negative slope per channel."

    samples = (sample({}, (2, 3, 4, 4)), sample({}, (4, 5)))

    def _channels(self, x: TensorType) -> int:
        if x.rank < 2:
            raise ShapeError(f"prelu input must have a channel axis 1 (rank ≥ 2), got shape {fmt_shape(x.shape)}")
        return static(x.shape[1], "prelu channels (axis 1)")

    def params(self, xs):
        return {"slope": Param((self._channels(xs[0]),), Init(kind="constant", value=0.25))}

    def infer(self, xs):
        x = xs[0]
        expect_float(x)
        c = self._channels(x)
        if len(xs) != 2:
            raise ShapeError(f"prelu takes its input and the slope parameter, got {len(xs)} inputs")
        slope = xs[1]
        if slope.shape != (c,):
            raise ShapeError(f"prelu slope shape {fmt_shape(slope.shape)} does not match the {c} channels of input "
                             f"{fmt_shape(x.shape)} (expected {fmt_shape((c,))})")
        return x

    def forward(self, x, slope):
        return np.where(x > 0, x, x * _channel_view(slope.astype(x.dtype, copy=False), x.ndim))

    def onnx(self, ctx, xs, y):
        x, slope = xs
        t = ctx.type_of(x)
        a = _onnx_channel_view(ctx, slope, t.rank, t.dtype)
        ctx.node("Where", [_onnx_positive(ctx, x), x, ctx.node("Mul", [x, a])], y)

    def vjp(self, g, xs, y, gy):
        x, slope = xs
        gx = g.op(PReluGrad(), [x, slope, gy], "dx") if g.needs(0) else None
        gslope = None
        if g.needs(1):  # gslope_c = Σ_{all axes but 1} gy·min(x, 0), and min(x, 0) = x − relu(x)
            neg = g.op(Sub(), [x, g.op(Relu(), [x], "relu_x")], "min_x_0")
            axes = (0,) + tuple(range(2, g.type_of(x).rank))
            gslope = g.op(ReduceSum(axes=axes), [g.op(Mul(), [gy, neg], "gy_min_x_0")], "dslope")
        return gx, gslope


class PReluGrad(Op):
    """Input gradient of PReLU: ``gx = gy if x > 0 else a_c·gy``, slope ``a`` (C,) along axis 1."""

    kind = "prelu_grad"
    arity = (3, 3)
    user_facing = False
    samples = (sample({}, (2, 3, 4, 4), (3,), (2, 3, 4, 4)), sample({}, (4, 5), (5,), (4, 5)))

    def infer(self, xs):
        x, slope, gy = xs
        if x.rank < 2 or slope.shape != (x.shape[1],):
            raise ShapeError(f"prelu_grad slope {fmt_shape(slope.shape)} does not match axis 1 of x {fmt_shape(x.shape)}")
        return _same_shape(self.kind, x, gy)

    def forward(self, x, slope, gy):
        return np.where(x > 0, gy, gy * _channel_view(slope.astype(gy.dtype, copy=False), gy.ndim))

    def onnx(self, ctx, xs, y):
        x, slope, gy = xs
        t = ctx.type_of(gy)
        a = _onnx_channel_view(ctx, slope, t.rank, t.dtype)
        ctx.node("Where", [_onnx_positive(ctx, x), gy, ctx.node("Mul", [gy, a])], y)


class Elu(Op):
    """``y = x if x > 0 else α·(eˣ − 1)`` (elementwise, any layout)."""

    kind = "elu"
    summary = "An exponential linear unit, smooth for negative inputs."
    alpha: float = Field(1.0, ge=0, description="value approached for large negative inputs is −alpha")

    samples = (sample({}, (2, 3, 4, 4)), sample({"alpha": 0.5}, (3, 7)))

    def infer(self, xs):
        expect_float(xs[0])
        return xs[0]

    def describe(self):
        return f"alpha {self.alpha:g}"

    def forward(self, x):
        # expm1 of the clipped input: no overflow warning from the branch np.where discards
        return np.where(x > 0, x, np.expm1(np.minimum(x, 0)) * np.asarray(self.alpha, x.dtype))

    def onnx(self, ctx, xs, y):
        # plain ops rather than ONNX Elu, whose onnxruntime CPU kernel is float32 only
        x = xs[0]
        dtype = ctx.type_of(x).dtype
        e = ctx.node("Exp", [ctx.node("Min", [x, ctx.const(0.0, dtype)])])
        neg = ctx.node("Mul", [ctx.node("Sub", [e, ctx.const(1.0, dtype)]), ctx.const(self.alpha, dtype)])
        ctx.node("Where", [_onnx_positive(ctx, x), x, neg], y)

    def vjp(self, g, xs, y, gy):
        return (g.op(EluGrad(alpha=self.alpha), [xs[0], gy], "dx"),)


class EluGrad(Op):
    """Gradient of ELU from its input: ``gx = gy if x > 0 else gy·α·eˣ``."""

    kind = "elu_grad"
    arity = (2, 2)
    user_facing = False
    alpha: float = Field(1.0, ge=0)
    samples = (sample({"alpha": 0.5}, (3, 7), (3, 7)),)

    def infer(self, xs):
        return _same_shape(self.kind, *xs)

    def forward(self, x, gy):
        return np.where(x > 0, gy, gy * np.exp(np.minimum(x, 0)) * np.asarray(self.alpha, gy.dtype))

    def onnx(self, ctx, xs, y):
        x, gy = xs
        dtype = ctx.type_of(gy).dtype
        e = ctx.node("Exp", [ctx.node("Min", [_onnx_as(ctx, x, dtype), ctx.const(0.0, dtype)])])
        neg = ctx.node("Mul", [ctx.node("Mul", [gy, e]), ctx.const(self.alpha, dtype)])
        ctx.node("Where", [_onnx_positive(ctx, x), gy, neg], y)


class Maxout(Op):
    """Maxout over groups of ``k = pieces`` consecutive channels (axis 1): (N, C·k, …) → (N, C, …).

    ``y[n, c, …] = max_{0 ≤ i < k} x[n, c·k + i, …]`` (Goodfellow et al. 2013).
    """

    kind = "maxout"
    summary = "A maxout that keeps the largest of each group of consecutive channels."
    pieces: int = Field(ge=2, description="channels per group (k); the input's channels must be a multiple of it")

    samples = (sample({"pieces": 2}, (2, 6, 3, 3)), sample({"pieces": 3}, (4, 9)))

    def infer(self, xs):
        x = xs[0]
        expect_float(x)
        if x.rank < 2:
            raise ShapeError(f"maxout input must have a feature axis 1 (rank ≥ 2), got shape {fmt_shape(x.shape)}")
        c = static(x.shape[1], "maxout channels (axis 1)")
        if c % self.pieces:
            raise ShapeError(f"maxout: axis-1 size {c} is not divisible by pieces={self.pieces} "
                             f"({c} = {c // self.pieces}·{self.pieces} + {c % self.pieces})")
        return x.with_shape((x.shape[0], c // self.pieces, *x.shape[2:]))

    def describe(self):
        return f"k{self.pieces}"

    def forward(self, x):
        return x.reshape(x.shape[0], -1, self.pieces, *x.shape[2:]).max(axis=2)

    def onnx(self, ctx, xs, y):
        groups = ctx.node("Reshape", [xs[0], _onnx_group_shape(ctx, xs[0], self.pieces)], hint="groups")
        ctx.node("ReduceMax", [groups, ctx.ints([2])], y, keepdims=0)

    def vjp(self, g, xs, y, gy):
        return (g.op(MaxoutGrad(pieces=self.pieces), [xs[0], gy], "dx"),)


class MaxoutGrad(Op):
    """Gradient of maxout: ``gx[n, c·k + i, …] = gy[n, c, …]`` if piece ``i`` is the argmax of its group
    (the first one on ties), else 0. Inputs x (N, C·k, …) and gy (N, C, …); output x's shape."""

    kind = "maxout_grad"
    arity = (2, 2)
    user_facing = False
    pieces: int = Field(ge=2)
    samples = (sample({"pieces": 2}, (2, 6, 3, 3), (2, 3, 3, 3)), sample({"pieces": 3}, (4, 9), (4, 3)))

    def infer(self, xs):
        x, gy = xs
        want = Maxout(pieces=self.pieces).infer([x])
        if gy.shape != want.shape:
            raise ShapeError(f"maxout_grad: gy {fmt_shape(gy.shape)} must have maxout's output shape {fmt_shape(want.shape)}")
        return TensorType(tuple(x.shape), gy.dtype)

    def forward(self, x, gy):
        groups = x.reshape(x.shape[0], -1, self.pieces, *x.shape[2:])
        winner = groups.argmax(axis=2)  # argmax returns the first maximum: ties go to the first piece
        pieces = np.arange(self.pieces).reshape((1, 1, -1) + (1,) * (x.ndim - 2))
        gx = np.where(pieces == np.expand_dims(winner, 2), np.expand_dims(gy, 2), np.zeros((), gy.dtype))
        return gx.reshape(x.shape)

    def onnx(self, ctx, xs, y):
        x, gy = xs
        ndim = ctx.type_of(x).rank
        groups = ctx.node("Reshape", [x, _onnx_group_shape(ctx, x, self.pieces)], hint="groups")
        winner = ctx.node("ArgMax", [groups], hint="winner", axis=2, keepdims=1, select_last_index=0)  # first on ties
        pieces = ctx.ints(np.arange(self.pieces).reshape((1, 1, -1) + (1,) * (ndim - 2)), hint="pieces")
        gy_kept = ctx.node("Unsqueeze", [gy, ctx.ints([2])], hint="gy_kept")
        gx = ctx.node("Where", [ctx.node("Equal", [pieces, winner]), gy_kept, ctx.const(0.0, ctx.type_of(gy).dtype)])
        ctx.node("Reshape", [gx, ctx.node("Shape", [x])], y)


class Dropout(Op):
    """Inverted dropout: in training ``y = m ⊙ x / (1 − p)`` with ``m ~ Bernoulli(1 − p)`` per element;
    at inference ``y = x``. Shape and layout unchanged."""

    kind = "dropout"
    summary = "An inverted dropout that zeroes random elements in training and passes values through at inference."
    p: float = Field(0.5, ge=0, lt=1, description="probability of zeroing an element, in [0, 1)")

    samples = (sample({"p": 0.5}, (2, 3, 4, 4)), sample({"p": 0.2}, (4, 7)))

    def infer(self, xs):
        expect_float(xs[0])
        return xs[0]

    def describe(self):
        return f"p{self.p:g}"

    def forward(self, x):
        # the inference form; training graphs replace dropout by a product with a RandomMask input
        return x

    def onnx(self, ctx, xs, y):
        ctx.node("Identity", xs, y)

    def vjp(self, g, xs, y, gy):
        return (gy,)


OPS = (LeakyRelu, LeakyReluGrad, PRelu, PReluGrad, Elu, EluGrad, Maxout, MaxoutGrad, Dropout)
