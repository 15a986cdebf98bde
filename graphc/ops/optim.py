"""Optimiser updates as ops (the course's update rules), so that a training step — forward, loss,
backward and update — is one graph that the interpreter and onnxruntime run alike.

Each op computes one new tensor (ops have one output): a new parameter or a new piece of optimiser
state. ``lr`` is a 0-d input of the graph, so schedules change it without re-exporting. None of
them is differentiated.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from ..errors import ShapeError
from ..tensor import TensorType
from .shape_ops import same_dims
from .base import Op, sample


def _c(value, like):
    return np.asarray(value, dtype=like.dtype)


class _Update(Op):
    user_facing = False

    def infer(self, xs):
        first = xs[0]
        for x in xs[1:]:
            if x.rank and tuple(x.shape) != tuple(first.shape):
                raise ShapeError(f"{self.kind}: shapes {first} and {x} differ")
        return first

    def window(self, xs):
        return None


class SGDUpdate(_Update):
    """Plain stochastic gradient descent: ``w' = w − lr·g``."""

    kind = "sgd_update"
    arity = (3, 3)
    samples = (sample({}, (3, 4), (3, 4), ()),)

    def forward(self, w, g, lr):
        return w - _c(lr, w) * g

    def onnx(self, ctx, xs, y):
        w, g, lr = xs
        ctx.node("Sub", [w, ctx.node("Mul", [lr, g])], y)


class MomentumVelocity(_Update):
    """Momentum's velocity (cs231n form): ``v' = μ·v − lr·g``; then ``w' = w + v'``, or with Nesterov
    ``w' = w − μ·v + (1 + μ)·v'`` (:class:`NesterovUpdate`)."""

    kind = "momentum_velocity"
    arity = (3, 3)
    momentum: float = Field(0.9, ge=0, lt=1)
    samples = (sample({"momentum": 0.9}, (3, 4), (3, 4), ()),)

    def forward(self, v, g, lr):
        return _c(self.momentum, v) * v - _c(lr, v) * g

    def onnx(self, ctx, xs, y):
        v, g, lr = xs
        mu = ctx.const(self.momentum, ctx.type_of(v).dtype)
        ctx.node("Sub", [ctx.node("Mul", [mu, v]), ctx.node("Mul", [lr, g])], y)


class MatMulUpdate(Op):
    """An update whose gradient is one matrix product, in one product: ``y = β·c − lr·(A·B)`` with
    ``A = aᵀ`` if ``transpose_a`` (else ``a``), likewise ``B``; inputs ``c`` (M, P), ``a``, ``b``
    (2-D) and the 0-d ``lr``.

    SGD's ``w' = w − lr·g`` (``β = 1``, ``c = w``) and momentum's velocity ``v' = μ·v − lr·g``
    (``β = μ``, ``c = v``) where ``g = A·B`` is a dense weight's gradient that nothing else reads
    (:func:`graphc.train.optimizers.with_optimizer` with ``grads=False``). ``lr`` scales the
    operand with fewer elements before the product, so ``c`` is only scaled and added to it: one
    ``Gemm`` with ``C = c``, ``beta = β`` on onnxruntime; two passes over ``c`` in NumPy, where the
    gradient and its update made three.
    """

    kind = "matmul_update"
    arity = (4, 4)
    user_facing = False
    scale: float = Field(ge=0, le=1, description="β, the factor of c")
    transpose_a: bool = False
    transpose_b: bool = False
    samples = (
        sample({"scale": 0.9, "transpose_a": True}, (4, 5), (3, 4), (3, 5), (), note="momentum, aᵀ·b"),
        sample({"scale": 1.0}, (4, 5), (4, 3), (3, 5), (), note="sgd"),
        sample({"scale": 0.5, "transpose_b": True}, (4, 5), (4, 3), (5, 3), (), note="a·bᵀ"),
    )

    def _product(self, a: TensorType, b: TensorType) -> tuple:
        (m, k), (k2, p) = (a.shape[::-1] if self.transpose_a else a.shape), (b.shape[::-1] if self.transpose_b else b.shape)
        return m, k, k2, p

    def infer(self, xs):
        c, a, b, lr = xs
        if a.rank != 2 or b.rank != 2 or lr.rank != 0:
            raise ShapeError(f"matmul_update takes 2-D a and b and a 0-d lr, got {a}, {b}, {lr}")
        m, k, k2, p = self._product(a, b)
        if not same_dims(k, k2) or not (same_dims(m, c.shape[0]) and same_dims(p, c.shape[1])):
            raise ShapeError(f"matmul_update: {c} cannot take the product of {a} and {b}")
        return c

    def window(self, xs):
        return None

    def _scaled_first(self, a_type: TensorType, b_type: TensorType) -> bool:
        """Whether ``lr`` scales ``a`` (it has fewer static elements than ``b``; symbolic dims count 1)."""
        def size(t):
            return int(np.prod([d for d in t.shape if isinstance(d, int)]))
        return size(a_type) < size(b_type)

    def forward(self, c, a, b, lr):
        neg_lr = -_c(lr, c)
        if a.size < b.size:  # as _scaled_first, on the arrays' sizes
            a = a * neg_lr
        else:
            b = b * neg_lr
        y = np.matmul(a.T if self.transpose_a else a, b.T if self.transpose_b else b)
        y += c if self.scale == 1 else c * _c(self.scale, c)
        return y

    def onnx(self, ctx, xs, y):
        c, a, b, lr = xs
        neg_lr = ctx.node("Neg", [lr])
        if self._scaled_first(ctx.type_of(a), ctx.type_of(b)):
            a = ctx.node("Mul", [a, neg_lr], hint="a_scaled")
        else:
            b = ctx.node("Mul", [b, neg_lr], hint="b_scaled")
        ctx.node("Gemm", [a, b, c], y, transA=int(self.transpose_a), transB=int(self.transpose_b), beta=self.scale)


class NesterovUpdate(_Update):
    """Nesterov's parameter step from the old and new velocity: ``w' = w − μ·v + (1 + μ)·v'``."""

    kind = "nesterov_update"
    arity = (3, 3)
    momentum: float = Field(0.9, ge=0, lt=1)
    samples = (sample({"momentum": 0.9}, (3, 4), (3, 4), (3, 4)),)

    def forward(self, w, v, v_new):
        return w - _c(self.momentum, w) * v + _c(1 + self.momentum, w) * v_new

    def onnx(self, ctx, xs, y):
        w, v, v_new = xs
        dtype = ctx.type_of(w).dtype
        back = ctx.node("Mul", [ctx.const(self.momentum, dtype), v])
        ctx.node("Add", [ctx.node("Sub", [w, back]), ctx.node("Mul", [ctx.const(1 + self.momentum, dtype), v_new])], y)


class MovingAverage(_Update):
    """``s' = β·s + (1 − β)·g`` (``square``: of ``g²``) — Adam's moments and RMSProp's cache."""

    kind = "moving_average"
    arity = (2, 2)
    beta: float = Field(ge=0, lt=1)
    square: bool = False
    samples = (sample({"beta": 0.9}, (3, 4), (3, 4)), sample({"beta": 0.999, "square": True}, (3, 4), (3, 4)))

    def forward(self, s, g):
        g = g * g if self.square else g
        return _c(self.beta, s) * s + _c(1 - self.beta, s) * g

    def onnx(self, ctx, xs, y):
        s, g = xs
        dtype = ctx.type_of(s).dtype
        if self.square:
            g = ctx.node("Mul", [g, g])
        ctx.node("Add", [ctx.node("Mul", [ctx.const(self.beta, dtype), s]), ctx.node("Mul", [ctx.const(1 - self.beta, dtype), g])], y)


class RMSPropUpdate(_Update):
    """``w' = w − lr·g / (√cache' + ε)`` with the new cache."""

    kind = "rmsprop_update"
    arity = (4, 4)
    eps: float = Field(1e-8, gt=0)
    samples = (sample({}, (3, 4), (3, 4), (3, 4), (), positive=(2,)),)

    def forward(self, w, g, cache, lr):
        return w - _c(lr, w) * g / (np.sqrt(cache) + _c(self.eps, w))

    def onnx(self, ctx, xs, y):
        w, g, cache, lr = xs
        denom = ctx.node("Add", [ctx.node("Sqrt", [cache]), ctx.const(self.eps, ctx.type_of(w).dtype)])
        ctx.node("Sub", [w, ctx.node("Div", [ctx.node("Mul", [lr, g]), denom])], y)


class AdamUpdate(_Update):
    """``w' = w − lr·m̂/(√v̂ + ε)`` with ``m̂ = m'/(1 − β₁ᵗ)``, ``v̂ = v'/(1 − β₂ᵗ)``; ``t`` is the new step
    count (1 on the first step), ``m'``, ``v'`` the new moments."""

    kind = "adam_update"
    arity = (5, 5)
    beta1: float = Field(0.9, ge=0, lt=1)
    beta2: float = Field(0.999, ge=0, lt=1)
    eps: float = Field(1e-8, gt=0)
    samples = (sample({}, (3, 4), (3, 4), (3, 4), (), (), positive=(2, 3)),)

    def forward(self, w, m, v, t, lr):
        t = np.asarray(t, dtype=np.float64)
        m_hat = m / _c(1 - self.beta1 ** t, w)
        v_hat = v / _c(1 - self.beta2 ** t, w)
        return w - _c(lr, w) * m_hat / (np.sqrt(v_hat) + _c(self.eps, w))

    def onnx(self, ctx, xs, y):
        w, m, v, t, lr = xs
        dtype = ctx.type_of(w).dtype
        one = ctx.const(1.0, dtype)
        c1 = ctx.node("Sub", [one, ctx.node("Pow", [ctx.const(self.beta1, dtype), t])])
        c2 = ctx.node("Sub", [one, ctx.node("Pow", [ctx.const(self.beta2, dtype), t])])
        denom = ctx.node("Add", [ctx.node("Sqrt", [ctx.node("Div", [v, c2])]), ctx.const(self.eps, dtype)])
        ctx.node("Sub", [w, ctx.node("Div", [ctx.node("Mul", [lr, ctx.node("Div", [m, c1])]), denom])], y)


OPS = (SGDUpdate, MomentumVelocity, MatMulUpdate, NesterovUpdate, MovingAverage, RMSPropUpdate, AdamUpdate)
