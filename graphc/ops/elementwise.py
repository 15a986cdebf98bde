"""Elementwise ops: broadcasting arithmetic and the pointwise activations the other ops compose."""

from __future__ import annotations

from ..errors import ShapeError
from ..tensor import TensorType, broadcast
from .base import Op, expect_float, sample


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
    """``y = a + b`` with NumPy broadcasting (residual connections, biases)."""

    kind = "add"


class Sub(_Binary):
    """``y = a − b`` with NumPy broadcasting."""

    kind = "sub"


class Mul(_Binary):
    """``y = a ⊙ b`` (Hadamard product) with NumPy broadcasting."""

    kind = "mul"


class Div(_Binary):
    """``y = a / b`` with NumPy broadcasting."""

    kind = "div"


class _Unary(Op):
    samples = (sample({}, (2, 3, 4, 4)), sample({}, (3, 7)))

    def infer(self, xs):
        expect_float(xs[0])
        return xs[0]


class Relu(_Unary):
    """Rectified linear unit ``y = max(0, x)``; its gradient passes ``gy`` where ``x > 0``."""

    kind = "relu"


class Sigmoid(_Unary):
    """Logistic sigmoid ``y = σ(x) = 1 / (1 + e^−x)``; ``dy/dx = y(1 − y)``."""

    kind = "sigmoid"


class Tanh(_Unary):
    """Hyperbolic tangent ``y = tanh(x) = (eˣ − e⁻ˣ)/(eˣ + e⁻ˣ)``; ``dy/dx = 1 − y²``."""

    kind = "tanh"


class Scale(_Unary):
    """``y = factor · x`` for a constant factor (attention's ``1/√d_k``)."""

    kind = "scale"
    factor: float

    samples = (sample({"factor": 0.5}, (2, 3)),)


class Softmax(_Unary):
    """``y_i = e^{x_i − max x} / Σ_j e^{x_j − max x}`` along ``axis``."""

    kind = "softmax"
    axis: int = -1

    samples = (sample({}, (4, 10)), sample({"axis": 1}, (2, 3, 4, 4)))

    def infer(self, xs):
        x = super().infer(xs)
        if not -x.rank <= self.axis < x.rank:
            raise ShapeError(f"axis {self.axis} is out of range for rank {x.rank}")
        return x


OPS = (Add, Sub, Mul, Div, Relu, Sigmoid, Tanh, Scale, Softmax)
