"""Activations with attributes or parameters: leaky_relu, prelu, elu, maxout, dropout.

(The attribute-free pointwise ones, relu, sigmoid and tanh, live in ``elementwise``.)
"""

from __future__ import annotations

from pydantic import Field

from ..errors import ShapeError
from ..tensor import TensorType, fmt_shape, static
from .base import Init, Op, Param, expect_float, sample


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


OPS = (LeakyRelu, PRelu, Elu, Maxout, Dropout)
