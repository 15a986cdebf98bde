"""Elementwise ops: broadcasting arithmetic and the pointwise activations the other ops compose."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from ..errors import ShapeError
from ..tensor import TensorType, broadcast
from .base import ONNX_DTYPES, Op, expect_float, sample


class _Binary(Op):
    arity = (2, 2)
    samples = (
        sample({}, (2, 3, 4, 4), (2, 3, 4, 4)),
        sample({}, (2, 5), (5,), note="broadcast"),
    )

    def infer(self, xs):
        a, b = xs
        if a.dtype != b.dtype:
            raise ShapeError(f"{self.kind} inputs have different dtypes {a.dtype} and {b.dtype}")
        return TensorType(broadcast(a.shape, b.shape), a.dtype)


class Add(_Binary):
    """``y = a + b`` with NumPy broadcasting (residual connections, biases); ``ga = Σ_bcast gy``, ``gb = Σ_bcast gy``."""

    kind = "add"
    summary = "An elementwise sum of two tensors with NumPy broadcasting (residual connections)."

    def forward(self, a, b):
        return a + b

    def onnx(self, ctx, xs, y):
        ctx.node("Add", xs, y)

    def vjp(self, g, xs, y, gy):
        return tuple(g.sum_to(gy, x, f"d{i}") if g.needs(i) else None for i, x in enumerate(xs))


class Sub(_Binary):
    """``y = a − b`` with NumPy broadcasting; ``ga = gy``, ``gb = −gy`` (summed over broadcast axes)."""

    kind = "sub"
    summary = "An elementwise difference of two tensors with NumPy broadcasting."

    def forward(self, a, b):
        return a - b

    def onnx(self, ctx, xs, y):
        ctx.node("Sub", xs, y)

    def vjp(self, g, xs, y, gy):
        ga = g.sum_to(gy, xs[0], "d0") if g.needs(0) else None
        gb = g.sum_to(g.op(Scale(factor=-1.0), [gy], "neg"), xs[1], "d1") if g.needs(1) else None
        return ga, gb


class Mul(_Binary):
    """``y = a ⊙ b`` (Hadamard product) with NumPy broadcasting; ``ga = gy ⊙ b``, ``gb = gy ⊙ a``."""

    kind = "mul"
    summary = "An elementwise (Hadamard) product of two tensors with NumPy broadcasting."

    def forward(self, a, b):
        return a * b

    def onnx(self, ctx, xs, y):
        ctx.node("Mul", xs, y)

    def vjp(self, g, xs, y, gy):
        a, b = xs
        ga = g.sum_to(g.op(Mul(), [gy, b], "d0_full"), a, "d0") if g.needs(0) else None
        gb = g.sum_to(g.op(Mul(), [gy, a], "d1_full"), b, "d1") if g.needs(1) else None
        return ga, gb


class Div(_Binary):
    """``y = a / b`` with NumPy broadcasting; ``ga = gy / b``, ``gb = −gy ⊙ y / b``."""

    kind = "div"
    summary = "An elementwise quotient of two tensors with NumPy broadcasting."

    def forward(self, a, b):
        return a / b

    def onnx(self, ctx, xs, y):
        ctx.node("Div", xs, y)

    def vjp(self, g, xs, y, gy):
        a, b = xs
        ga = g.sum_to(g.op(Div(), [gy, b], "d0_full"), a, "d0") if g.needs(0) else None
        gb = None
        if g.needs(1):
            gy_y = g.op(Mul(), [gy, y], "gy_y")
            gb = g.sum_to(g.op(Scale(factor=-1.0), [g.op(Div(), [gy_y, b], "gy_y_b")], "d1_full"), b, "d1")
        return ga, gb


class _GradFromOutput(Op):
    """A pointwise activation's gradient computed from its output ``y`` and the cotangent ``gy``."""

    arity = (2, 2)
    user_facing = False
    samples = (sample({}, (3, 7), (3, 7)),)

    def infer(self, xs):
        return xs[1]


class _Unary(Op):
    samples = (sample({}, (2, 3, 4, 4)), sample({}, (3, 7)))

    def infer(self, xs):
        expect_float(xs[0])
        return xs[0]


class Relu(_Unary):
    """Rectified linear unit ``y = max(0, x)``; its gradient passes ``gy`` where ``x > 0``."""

    kind = "relu"
    summary = "A rectified linear unit that sets negative values to zero."

    def forward(self, x):
        return np.maximum(x, 0, dtype=x.dtype)

    def onnx(self, ctx, xs, y):
        ctx.node("Relu", xs, y)

    def vjp(self, g, xs, y, gy):
        return (g.op(ReluGrad(), [y, gy], "dx"),)


class ReluGrad(_GradFromOutput):
    """Gradient of ReLU from its output: ``gx = gy ⊙ [y > 0]``."""

    kind = "relu_grad"

    def forward(self, y, gy):
        # the comparison writes 0/1 straight into gy's dtype, so the product is a same-dtype in-place multiply:
        # ~20% faster than gy * (y > 0) (which casts a boolean temporary) on small arrays, and ~5× faster than np.where
        gx = np.greater(y, 0, out=np.empty_like(gy))
        gx *= gy
        return gx

    def onnx(self, ctx, xs, y):
        # gy ⊙ float(y > 0), as forward computes it (an infinite gy under a 0 mask gives NaN there too);
        # onnxruntime's Mul is vectorised where its Where is a scalar loop: ~1.4× faster on LeNet-5's masks
        dtype = ctx.type_of(xs[1]).dtype
        positive = ctx.node("Greater", [xs[0], ctx.const(0.0, ctx.type_of(xs[0]).dtype)])
        ctx.node("Mul", [xs[1], ctx.node("Cast", [positive], hint="mask", to=ONNX_DTYPES[dtype])], y)

    def vjp(self, g, xs, y, gy):
        return None, g.op(ReluGrad(), [xs[0], gy], "dgy")


class Sigmoid(_Unary):
    """Logistic sigmoid ``y = σ(x) = 1 / (1 + e^−x)``; ``gx = gy ⊙ y(1 − y)``."""

    kind = "sigmoid"
    summary = "A logistic sigmoid that squashes each value into (0, 1)."

    def forward(self, x):
        # σ(x) = ½(1 + tanh(x/2)): one transcendental, no overflow for large |x|
        return (0.5 * (1.0 + np.tanh(0.5 * x))).astype(x.dtype, copy=False)

    def onnx(self, ctx, xs, y):
        ctx.node("Sigmoid", xs, y)

    def vjp(self, g, xs, y, gy):
        return (g.op(SigmoidGrad(), [y, gy], "dx"),)


class SigmoidGrad(_GradFromOutput):
    """Gradient of the sigmoid from its output: ``gx = gy ⊙ y ⊙ (1 − y)``."""

    kind = "sigmoid_grad"

    def forward(self, y, gy):
        gx = np.subtract(1, y, dtype=np.result_type(y, gy))  # one temporary, updated in place: ~1.7× faster
        gx *= y
        gx *= gy
        return gx

    def onnx(self, ctx, xs, y):
        one = ctx.const(1.0, ctx.type_of(xs[0]).dtype)
        ctx.node("Mul", [ctx.node("Mul", [xs[1], xs[0]]), ctx.node("Sub", [one, xs[0]])], y)

    def vjp(self, g, xs, y, gy):
        yv, gyv = xs
        # ∂/∂y: gy·gz·(1 − 2y); ∂/∂gy: gz·y(1 − y)
        one_minus_2y = g.op(AffineScalar(scale=-2.0, shift=1.0), [yv], "one_minus_2y")
        gyy = g.op(Mul(), [g.op(Mul(), [gy, gyv], "gz_gy"), one_minus_2y], "dy") if g.needs(0) else None
        ggy = g.op(SigmoidGrad(), [yv, gy], "dgy") if g.needs(1) else None
        return gyy, ggy


class Tanh(_Unary):
    """Hyperbolic tangent ``y = tanh(x) = (eˣ − e⁻ˣ)/(eˣ + e⁻ˣ)``; ``gx = gy ⊙ (1 − y²)``."""

    kind = "tanh"
    summary = "A hyperbolic tangent that squashes each value into (−1, 1)."

    def forward(self, x):
        return np.tanh(x)

    def onnx(self, ctx, xs, y):
        ctx.node("Tanh", xs, y)

    def vjp(self, g, xs, y, gy):
        return (g.op(TanhGrad(), [y, gy], "dx"),)


class TanhGrad(_GradFromOutput):
    """Gradient of tanh from its output: ``gx = gy ⊙ (1 − y²)``."""

    kind = "tanh_grad"

    def forward(self, y, gy):
        gx = np.multiply(y, y, dtype=np.result_type(y, gy))  # one temporary, updated in place: ~1.7× faster
        np.subtract(1, gx, out=gx)
        gx *= gy
        return gx

    def onnx(self, ctx, xs, y):
        one = ctx.const(1.0, ctx.type_of(xs[0]).dtype)
        ctx.node("Mul", [xs[1], ctx.node("Sub", [one, ctx.node("Mul", [xs[0], xs[0]])])], y)

    def vjp(self, g, xs, y, gy):
        yv, gyv = xs
        gyy = None
        if g.needs(0):  # ∂/∂y of gy(1 − y²) is −2y·gy
            gyy = g.op(Mul(), [g.op(Mul(), [gy, gyv], "gz_gy"), g.op(Scale(factor=-2.0), [yv], "m2y")], "dy")
        return gyy, (g.op(TanhGrad(), [yv, gy], "dgy") if g.needs(1) else None)


class Scale(_Unary):
    """``y = factor · x`` for a constant factor (attention's ``1/√d_k``); ``gx = factor · gy``."""

    kind = "scale"
    summary = "A multiplication of every element by a constant factor."
    factor: float = Field(description="the constant every element is multiplied by")

    samples = (sample({"factor": 0.5}, (2, 3)),)

    def forward(self, x):
        return x * np.asarray(self.factor, x.dtype)

    def onnx(self, ctx, xs, y):
        ctx.node("Mul", [xs[0], ctx.const(self.factor, ctx.type_of(xs[0]).dtype)], y)

    def vjp(self, g, xs, y, gy):
        return (g.op(Scale(factor=self.factor), [gy], "dx"),)


class AffineScalar(_Unary):
    """``y = scale · x + shift`` for constants (``1 − 2y`` in second derivatives, say)."""

    kind = "affine_scalar"
    user_facing = False
    scale: float
    shift: float

    samples = (sample({"scale": -2.0, "shift": 1.0}, (2, 3)),)

    def forward(self, x):
        return x * np.asarray(self.scale, x.dtype) + np.asarray(self.shift, x.dtype)

    def onnx(self, ctx, xs, y):
        dtype = ctx.type_of(xs[0]).dtype
        ctx.node("Add", [ctx.node("Mul", [xs[0], ctx.const(self.scale, dtype)]), ctx.const(self.shift, dtype)], y)

    def vjp(self, g, xs, y, gy):
        return (g.op(Scale(factor=self.scale), [gy], "dx"),)


class Softmax(_Unary):
    """``y_i = e^{x_i − max x} / Σ_j e^{x_j − max x}`` along ``axis``; ``gx = y ⊙ (gy − Σ_axis gy ⊙ y)``."""

    kind = "softmax"
    summary = "A softmax that turns scores along one axis into probabilities summing to 1."
    axis: int = Field(-1, description="the axis normalised (negative counts from the end)")

    samples = (sample({}, (4, 10)), sample({"axis": 1}, (2, 3, 4, 4)))

    def infer(self, xs):
        x = super().infer(xs)
        if not -x.rank <= self.axis < x.rank:
            raise ShapeError(f"axis {self.axis} is out of range for rank {x.rank}")
        return x

    def forward(self, x):
        e = x - x.max(axis=self.axis, keepdims=True)
        np.exp(e, out=e)
        e /= e.sum(axis=self.axis, keepdims=True)
        return e

    def onnx(self, ctx, xs, y):
        ctx.node("Softmax", xs, y, axis=self.axis)

    def vjp(self, g, xs, y, gy):
        return (g.op(SoftmaxGrad(axis=self.axis), [y, gy], "dx"),)


class SoftmaxGrad(Op):
    """Gradient of softmax from its output: ``gx = y ⊙ (gy − Σ_axis gy ⊙ y)``."""

    kind = "softmax_grad"
    arity = (2, 2)
    user_facing = False
    axis: int = -1
    samples = (sample({}, (4, 6), (4, 6)),)

    def infer(self, xs):
        return xs[1]

    def forward(self, y, gy):
        gyy = gy * y
        return gyy - y * gyy.sum(axis=self.axis, keepdims=True)

    def onnx(self, ctx, xs, y):
        gyy = ctx.node("Mul", [xs[1], xs[0]])
        total = ctx.node("ReduceSum", [gyy, ctx.ints([self.axis])], keepdims=1)
        ctx.node("Sub", [gyy, ctx.node("Mul", [xs[0], total])], y)


OPS = (Add, Sub, Mul, Div, Relu, ReluGrad, Sigmoid, SigmoidGrad, Tanh, TanhGrad, Scale, AffineScalar, Softmax, SoftmaxGrad)
