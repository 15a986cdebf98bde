"""Activations with attributes or parameters: leaky_relu, prelu, elu, maxout, dropout.

(The attribute-free pointwise ones, relu, sigmoid and tanh, live in ``elementwise``.)
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from ..errors import ShapeError
from ..tensor import TensorType, fmt_shape, static
from .base import Init, Op, Param, expect_float, sample
from .elementwise import Mul, Relu, Sub
from .reduce import ReduceSum


def _same_shape(kind: str, a: TensorType, b: TensorType, what: str = "gy") -> TensorType:
    if a.shape != b.shape:
        raise ShapeError(f"{kind}: {what} {fmt_shape(b.shape)} must have the shape of x {fmt_shape(a.shape)}")
    return b


def _channel_view(v: np.ndarray, ndim: int) -> np.ndarray:
    """A per-channel vector (C,) viewed as (1, C, 1, …) to broadcast along axis 1 of a rank-``ndim`` tensor."""
    return v.reshape((1, -1) + (1,) * (ndim - 2))


class LeakyRelu(Op):
    """``y = x if x > 0 else α·x`` (elementwise, any layout)."""

    kind = "leaky_relu"
    alpha: float = Field(0.01, ge=0)

    samples = (sample({}, (2, 3, 4, 4)), sample({"alpha": 0.2}, (3, 7)))

    def infer(self, xs):
        expect_float(xs[0])
        return xs[0]

    def describe(self):
        return f"α{self.alpha:g}"

    def forward(self, x):
        return np.where(x > 0, x, x * np.asarray(self.alpha, x.dtype))

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

    def vjp(self, g, xs, y, gy):
        # linear in gy, piecewise constant in x
        return None, (g.op(LeakyReluGrad(alpha=self.alpha), [xs[0], gy], "dgy") if g.needs(1) else None)


class PRelu(Op):
    """``y = x if x > 0 else a_c·x`` with a learnable slope ``a`` per channel (axis 1).

    Input (N, C, …); parameter ``slope`` of shape (C,), initialised to 0.25 (He et al. 2015).
    """

    kind = "prelu"

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


class Elu(Op):
    """``y = x if x > 0 else α·(eˣ − 1)`` (elementwise, any layout)."""

    kind = "elu"
    alpha: float = Field(1.0, ge=0)

    samples = (sample({}, (2, 3, 4, 4)), sample({"alpha": 0.5}, (3, 7)))

    def infer(self, xs):
        expect_float(xs[0])
        return xs[0]

    def describe(self):
        return f"α{self.alpha:g}"

    def forward(self, x):
        # expm1 of the clipped input: no overflow warning from the branch np.where discards
        return np.where(x > 0, x, np.expm1(np.minimum(x, 0)) * np.asarray(self.alpha, x.dtype))

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


class Maxout(Op):
    """Maxout over groups of ``k = pieces`` consecutive channels (axis 1): (N, C·k, …) → (N, C, …).

    ``y[n, c, …] = max_{0 ≤ i < k} x[n, c·k + i, …]`` (Goodfellow et al. 2013).
    """

    kind = "maxout"
    pieces: int = Field(ge=2)

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


class Dropout(Op):
    """Inverted dropout: in training ``y = m ⊙ x / (1 − p)`` with ``m ~ Bernoulli(1 − p)`` per element;
    at inference ``y = x``. Shape and layout unchanged."""

    kind = "dropout"
    p: float = Field(0.5, ge=0, lt=1)

    samples = (sample({"p": 0.5}, (2, 3, 4, 4)), sample({"p": 0.2}, (4, 7)))

    def infer(self, xs):
        expect_float(xs[0])
        return xs[0]

    def describe(self):
        return f"p{self.p:g}"

    def forward(self, x):
        # the inference form; training graphs replace dropout by a product with a RandomMask input
        return x

    def vjp(self, g, xs, y, gy):
        return (gy,)


OPS = (LeakyRelu, LeakyReluGrad, PRelu, PReluGrad, Elu, EluGrad, Maxout, MaxoutGrad, Dropout)
