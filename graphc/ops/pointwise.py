"""The activations of today's CNNs and transformers: relu6, clip, hardsigmoid, hardswish, gelu, silu,
softplus (pointwise, any layout) and log_softmax (along one axis).

Each pointwise activation ``y = f(x)`` states its derivative ``f'(x)`` twice, as NumPy (``dydx``) and as
ONNX nodes (``onnx_dydx``); its gradient op ``<kind>_grad`` computes ``gx = gy ⊙ f'(x)`` from the input
``x``, with the activation's own attributes (:func:`_gradient_op` makes it). The gradient ops are
not differentiable themselves (no second derivatives through these activations).

The piecewise ones (relu6, clip, hardsigmoid, hardswish: ``PIECEWISE``) also state, for a point
``x₀``, the polynomial of the piece ``x₀`` lies on (``piece``): ``f(x) = a·x² + b·x + c`` and
``f'(x) = 2a·x + b`` on that piece, elementwise. Gradient checks hold a piece fixed with it
(:func:`graphc.gradcheck.freeze_kinks`), so a finite difference never straddles a kink.
"""

from __future__ import annotations

import math

import numpy as np
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from ..errors import ShapeError
from ..tensor import fmt_shape
from .base import ONNX_DTYPES, Op, expect_float, sample


def _c(x: np.ndarray, value: float):
    """``value`` as a scalar of ``x``'s dtype, so float32 stays float32."""
    return x.dtype.type(value)


def _clamp(ctx, x: str, lo: float | None, hi: float | None, dtype: str) -> str:
    """``min(max(x, lo), hi)`` with Max/Min (onnxruntime runs them in float64 too); a missing bound is no bound."""
    if lo is not None:
        x = ctx.node("Max", [x, ctx.const(lo, dtype)], hint="lo")
    if hi is not None:
        x = ctx.node("Min", [x, ctx.const(hi, dtype)], hint="hi")
    return x


def _inside(ctx, x: str, lo: float | None, hi: float | None, dtype: str) -> str:
    """``[lo < x < hi]`` as a 0/1 tensor of ``dtype`` (a missing bound is always satisfied)."""
    conds = []
    if lo is not None:
        conds.append(ctx.node("Greater", [x, ctx.const(lo, dtype)], hint="above"))
    if hi is not None:
        conds.append(ctx.node("Less", [x, ctx.const(hi, dtype)], hint="below"))
    if not conds:
        return ctx.node("Add", [ctx.node("Mul", [x, ctx.const(0.0, dtype)]), ctx.const(1.0, dtype)], hint="one")
    mask = conds[0] if len(conds) == 1 else ctx.node("And", conds, hint="inside")
    return ctx.node("Cast", [mask], hint="mask", to=ONNX_DTYPES[dtype])


#: the dtypes onnxruntime's CPU provider has HardSigmoid (and so HardSwish, which it expands into
#: one) for: float32 only; in float64 the activations are lowered to Add/Mul/Max/Min, which it has
NATIVE_HARD_DTYPES = ("float32",)


def _sigmoid(ctx, x: str) -> str:
    return ctx.node("Sigmoid", [x], hint="sigmoid")


def _np_sigmoid(x):
    return _c(x, 0.5) * (_c(x, 1.0) + np.tanh(_c(x, 0.5) * x))


class _Pointwise(Op):
    """``y = f(x)`` elementwise; ``gx = gy ⊙ f'(x)`` through the op's ``<kind>_grad``."""

    samples = (sample({}, (2, 3, 4, 4)), sample({}, (3, 7)))
    grad_cls: ClassVar[type[Op] | None] = None  # set by _gradient_op

    def infer(self, xs):
        expect_float(xs[0])
        return xs[0]

    def dydx(self, x):
        raise NotImplementedError

    def onnx_dydx(self, ctx, x: str) -> str:
        raise NotImplementedError

    def piece(self, x0: np.ndarray) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
        """The coefficients ``(a, b, c)`` of ``f(x) = a·x² + b·x + c`` on the piece of each entry of
        ``x₀`` (``a`` or ``c`` None where zero everywhere); only for piecewise ops."""
        raise NotImplementedError(f"{self.kind} is smooth: it has no pieces")

    def vjp(self, g, xs, y, gy):
        return (g.op(type(self).grad_cls.model_validate(self.attrs()), [xs[0], gy], "dx"),)


def _gradient_op(cls: type[_Pointwise]) -> type[Op]:
    """The gradient op of pointwise ``cls``: inputs (x, gy), output ``gy ⊙ f'(x)``, ``cls``'s attributes."""

    class Grad(cls):
        __doc__ = f"Gradient of {cls.kind} from its input: ``gx = gy ⊙ f'(x)``, f as in {cls.kind}."
        kind = f"{cls.kind}_grad"
        arity = (2, 2)
        user_facing = False
        samples = tuple(sample(s.attrs, (3, 7), (3, 7)) for s in cls.samples)

        def infer(self, xs):
            x, gy = xs
            if x.shape != gy.shape:
                raise ShapeError(f"{self.kind}: gy {fmt_shape(gy.shape)} must have the shape of x {fmt_shape(x.shape)}")
            return gy

        def forward(self, x, gy):
            return gy * self.dydx(x.astype(gy.dtype, copy=False))

        def onnx(self, ctx, xs, y):
            ctx.node("Mul", [xs[1], self.onnx_dydx(ctx, xs[0])], y)

        vjp = Op.vjp

    Grad.__name__ = Grad.__qualname__ = f"{cls.__name__}Grad"
    cls.grad_cls = Grad
    return Grad


class Relu6(_Pointwise):
    """``y = min(max(x, 0), 6)`` (MobileNet's ReLU6); ``f'(x) = [0 < x < 6]``."""

    kind = "relu6"
    summary = "A ReLU capped at 6, as in MobileNet."
    samples = (sample({}, (2, 3, 4, 4)), sample({}, (3, 7)))

    def forward(self, x):
        return np.clip(x, _c(x, 0.0), _c(x, 6.0))

    def dydx(self, x):
        return ((x > 0) & (x < 6)).astype(x.dtype)

    def onnx(self, ctx, xs, y):
        ctx.node("Identity", [_clamp(ctx, xs[0], 0.0, 6.0, ctx.type_of(xs[0]).dtype)], y)

    def onnx_dydx(self, ctx, x):
        return _inside(ctx, x, 0.0, 6.0, ctx.type_of(x).dtype)

    def piece(self, x0):
        """``x`` inside (0, 6), the constant 0 below and 6 above."""
        return None, self.dydx(x0), np.where(x0 >= 6, _c(x0, 6.0), _c(x0, 0.0))


class Clip(_Pointwise):
    """``y = min(max(x, min), max)`` (a missing bound is no bound); ``f'(x) = [min < x < max]``."""

    kind = "clip"
    summary = "A clamp of every value into the range [min, max]."
    min: float | None = Field(None, description="the lower bound (none: unbounded below)")
    max: float | None = Field(None, description="the upper bound (none: unbounded above); must be ≥ min")
    samples = (sample({"min": -0.5, "max": 0.5}, (2, 3, 4, 4)), sample({"min": 0.0}, (3, 7)),
               sample({"min": -1.0, "max": 0.3}, (3, 7)))

    @model_validator(mode="after")
    def _ordered(self):
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"clip min {self.min:g} must be ≤ max {self.max:g}")
        return self

    def describe(self):
        return f"[{'' if self.min is None else f'{self.min:g}'}, {'' if self.max is None else f'{self.max:g}'}]"

    def forward(self, x):
        lo = None if self.min is None else _c(x, self.min)
        hi = None if self.max is None else _c(x, self.max)
        return x.copy() if lo is None and hi is None else np.clip(x, lo, hi)

    def dydx(self, x):
        mask = np.ones(x.shape, bool)
        if self.min is not None:
            mask &= x > self.min
        if self.max is not None:
            mask &= x < self.max
        return mask.astype(x.dtype)

    def onnx(self, ctx, xs, y):
        ctx.node("Identity", [_clamp(ctx, xs[0], self.min, self.max, ctx.type_of(xs[0]).dtype)], y)

    def onnx_dydx(self, ctx, x):
        return _inside(ctx, x, self.min, self.max, ctx.type_of(x).dtype)

    def piece(self, x0):
        """``x`` inside (min, max), the constant bound at or beyond it."""
        c = np.zeros_like(x0)
        if self.min is not None:
            c[x0 <= self.min] = self.min
        if self.max is not None:
            c[x0 >= self.max] = self.max
        return None, self.dydx(x0), c


class HardSigmoid(_Pointwise):
    """``y = max(0, min(1, α·x + β))`` (ONNX's HardSigmoid; defaults α = 0.2, β = 0.5 are ONNX's — PyTorch's
    ``hardsigmoid`` is α = 1/6, β = 0.5); ``f'(x) = α·[0 < α·x + β < 1]``."""

    kind = "hardsigmoid"
    summary = "A piecewise-linear sigmoid, max(0, min(1, alpha·x + beta))."
    alpha: float = Field(0.2, gt=0, description="slope (ONNX's default 0.2; PyTorch's hardsigmoid uses 1/6)")
    beta: float = Field(0.5, description="offset (0.5 in both ONNX and PyTorch)")
    samples = (sample({}, (2, 3, 4, 4)), sample({"alpha": 1 / 6}, (3, 7)), sample({"alpha": 1.0, "beta": 0.2}, (3, 7)))

    def describe(self):
        return f"alpha {self.alpha:.4g} beta {self.beta:g}"

    def _lo_hi(self):
        """The x range where the line is inside (0, 1)."""
        return -self.beta / self.alpha, (1.0 - self.beta) / self.alpha

    def forward(self, x):
        return np.clip(x * _c(x, self.alpha) + _c(x, self.beta), _c(x, 0.0), _c(x, 1.0))

    def dydx(self, x):
        z = x * _c(x, self.alpha) + _c(x, self.beta)
        return ((z > 0) & (z < 1)).astype(x.dtype) * _c(x, self.alpha)

    def onnx(self, ctx, xs, y):
        """ONNX's HardSigmoid in float32 (what PyTorch exports, one kernel on CPU and CUDA); elsewhere
        ``min(max(α·x + β, 0), 1)``, as onnxruntime's CPU provider has no float64 HardSigmoid."""
        dtype = ctx.type_of(xs[0]).dtype
        if dtype in NATIVE_HARD_DTYPES:
            ctx.node("HardSigmoid", [xs[0]], y, alpha=float(self.alpha), beta=float(self.beta))
            return
        z = ctx.node("Add", [ctx.node("Mul", [xs[0], ctx.const(self.alpha, dtype)]), ctx.const(self.beta, dtype)])
        ctx.node("Identity", [_clamp(ctx, z, 0.0, 1.0, dtype)], y)

    def onnx_dydx(self, ctx, x):
        dtype = ctx.type_of(x).dtype
        z = ctx.node("Add", [ctx.node("Mul", [x, ctx.const(self.alpha, dtype)]), ctx.const(self.beta, dtype)])
        return ctx.node("Mul", [_inside(ctx, z, 0.0, 1.0, dtype), ctx.const(self.alpha, dtype)])

    def piece(self, x0):
        """``α·x + β`` where it is inside (0, 1), the constant 0 below and 1 above."""
        z = x0 * _c(x0, self.alpha) + _c(x0, self.beta)
        inside = ((z > 0) & (z < 1)).astype(x0.dtype)
        return None, inside * _c(x0, self.alpha), inside * _c(x0, self.beta) + (z >= 1).astype(x0.dtype)


class HardSwish(_Pointwise):
    """``y = x · min(max(x + 3, 0), 6) / 6`` (MobileNetV3's h-swish, PyTorch's and ONNX's HardSwish);
    ``f'(x) = 0`` for x < −3, ``(2x + 3)/6`` for −3 ≤ x ≤ 3, ``1`` for x > 3 (as PyTorch)."""

    kind = "hardswish"
    summary = "A piecewise-quadratic swish, x·relu6(x + 3)/6, as in MobileNetV3."
    samples = (sample({}, (2, 3, 4, 4)), sample({}, (3, 7)))

    def forward(self, x):
        return x * np.clip(x + _c(x, 3.0), _c(x, 0.0), _c(x, 6.0)) / _c(x, 6.0)

    def dydx(self, x):
        return np.where(x < -3, _c(x, 0.0), np.where(x > 3, _c(x, 1.0), (_c(x, 2.0) * x + _c(x, 3.0)) / _c(x, 6.0)))

    def onnx(self, ctx, xs, y):
        """ONNX's HardSwish (opset 14, what PyTorch exports) in float32; elsewhere
        ``x · min(max(x + 3, 0), 6) / 6``, as onnxruntime's CPU provider has no float64 HardSwish."""
        dtype = ctx.type_of(xs[0]).dtype
        if dtype in NATIVE_HARD_DTYPES:
            ctx.node("HardSwish", [xs[0]], y)
            return
        r6 = _clamp(ctx, ctx.node("Add", [xs[0], ctx.const(3.0, dtype)]), 0.0, 6.0, dtype)
        ctx.node("Div", [ctx.node("Mul", [xs[0], r6]), ctx.const(6.0, dtype)], y)

    def onnx_dydx(self, ctx, x):
        dtype = ctx.type_of(x).dtype
        mid = ctx.node("Div", [ctx.node("Add", [ctx.node("Mul", [x, ctx.const(2.0, dtype)]), ctx.const(3.0, dtype)]),
                               ctx.const(6.0, dtype)], hint="mid")
        upper = ctx.node("Where", [ctx.node("Greater", [x, ctx.const(3.0, dtype)]), ctx.const(1.0, dtype), mid])
        return ctx.node("Where", [ctx.node("Less", [x, ctx.const(-3.0, dtype)]), ctx.const(0.0, dtype), upper])

    def piece(self, x0):
        """``x²/6 + x/2`` on [−3, 3] (the pieces as ``dydx`` splits them), ``x`` above, 0 below."""
        mid = ((x0 >= -3) & (x0 <= 3)).astype(x0.dtype)
        return mid / _c(x0, 6.0), mid / _c(x0, 2.0) + (x0 > 3).astype(x0.dtype), None


def erf(x):
    """The error function, elementwise (scipy's, imported on first use: it costs a quarter of a
    second of start-up that ``graphc compile`` never needs)."""
    from scipy.special import erf as scipy_erf

    return scipy_erf(x)


_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_GELU_CUBIC = 0.044715


class Gelu(_Pointwise):
    """``y = x·Φ(x) = ½x(1 + erf(x/√2))`` (``approximate: none``, exact), or
    ``y = ½x(1 + tanh(√(2/π)(x + 0.044715x³)))`` (``approximate: tanh``), as PyTorch's GELU;
    ``f'(x) = Φ(x) + x·φ(x)`` with ``φ(x) = e^{−x²/2}/√(2π)``, or for tanh
    ``½(1 + t) + ½x(1 − t²)·√(2/π)(1 + 3·0.044715x²)``."""

    kind = "gelu"
    summary = "A Gaussian error linear unit, x·Φ(x), exact or with the tanh approximation."
    approximate: Literal["none", "tanh"] = Field("none", description="'none' for the exact erf form, 'tanh' for the approximation")
    samples = (sample({}, (2, 3, 4, 4)), sample({"approximate": "tanh"}, (3, 7)))

    def describe(self):
        return "tanh" if self.approximate == "tanh" else ""

    def _inner(self, x):
        return _c(x, _SQRT_2_OVER_PI) * (x + _c(x, _GELU_CUBIC) * x * x * x)

    def forward(self, x):
        if self.approximate == "tanh":
            return _c(x, 0.5) * x * (_c(x, 1.0) + np.tanh(self._inner(x)))
        return _c(x, 0.5) * x * (_c(x, 1.0) + erf(x * _c(x, 1 / math.sqrt(2.0))))

    def dydx(self, x):
        if self.approximate == "tanh":
            t = np.tanh(self._inner(x))
            dinner = _c(x, _SQRT_2_OVER_PI) * (_c(x, 1.0) + _c(x, 3 * _GELU_CUBIC) * x * x)
            return _c(x, 0.5) * (_c(x, 1.0) + t) + _c(x, 0.5) * x * (_c(x, 1.0) - t * t) * dinner
        cdf = _c(x, 0.5) * (_c(x, 1.0) + erf(x * _c(x, 1 / math.sqrt(2.0))))
        return cdf + x * np.exp(_c(x, -0.5) * x * x) * _c(x, 1 / math.sqrt(2 * math.pi))

    def _onnx_tanh(self, ctx, x):
        dtype = ctx.type_of(x).dtype
        cube = ctx.node("Mul", [ctx.node("Mul", [ctx.node("Mul", [x, x]), x]), ctx.const(_GELU_CUBIC, dtype)])
        return ctx.node("Tanh", [ctx.node("Mul", [ctx.node("Add", [x, cube]), ctx.const(_SQRT_2_OVER_PI, dtype)])])

    def _onnx_cdf(self, ctx, x):
        dtype = ctx.type_of(x).dtype
        e = ctx.node("Erf", [ctx.node("Mul", [x, ctx.const(1 / math.sqrt(2.0), dtype)])])
        return ctx.node("Mul", [ctx.node("Add", [e, ctx.const(1.0, dtype)]), ctx.const(0.5, dtype)], hint="cdf")

    def onnx(self, ctx, xs, y):
        x = xs[0]
        dtype = ctx.type_of(x).dtype
        if self.approximate == "tanh":
            half = ctx.node("Mul", [ctx.node("Add", [self._onnx_tanh(ctx, x), ctx.const(1.0, dtype)]), ctx.const(0.5, dtype)])
            ctx.node("Mul", [x, half], y)
        else:
            ctx.node("Mul", [x, self._onnx_cdf(ctx, x)], y)

    def onnx_dydx(self, ctx, x):
        dtype = ctx.type_of(x).dtype
        k = lambda v: ctx.const(v, dtype)  # noqa: E731
        if self.approximate == "tanh":
            t = self._onnx_tanh(ctx, x)
            dinner = ctx.node("Mul", [ctx.node("Add", [ctx.node("Mul", [ctx.node("Mul", [x, x]), k(3 * _GELU_CUBIC)]), k(1.0)]),
                                      k(_SQRT_2_OVER_PI)])
            left = ctx.node("Mul", [ctx.node("Add", [t, k(1.0)]), k(0.5)])
            sech2 = ctx.node("Sub", [k(1.0), ctx.node("Mul", [t, t])])
            right = ctx.node("Mul", [ctx.node("Mul", [ctx.node("Mul", [x, k(0.5)]), sech2]), dinner])
            return ctx.node("Add", [left, right])
        pdf = ctx.node("Mul", [ctx.node("Exp", [ctx.node("Mul", [ctx.node("Mul", [x, x]), k(-0.5)])]),
                               k(1 / math.sqrt(2 * math.pi))], hint="pdf")
        return ctx.node("Add", [self._onnx_cdf(ctx, x), ctx.node("Mul", [x, pdf])])


class Silu(_Pointwise):
    """``y = x·σ(x)`` (SiLU, swish with β = 1, EfficientNet's activation); ``f'(x) = σ(x)(1 + x(1 − σ(x)))``."""

    kind = "silu"
    summary = "A sigmoid linear unit (swish), x·sigmoid(x), as in EfficientNet."

    def forward(self, x):
        return x * _np_sigmoid(x)

    def dydx(self, x):
        s = _np_sigmoid(x)
        return s * (_c(x, 1.0) + x * (_c(x, 1.0) - s))

    def onnx(self, ctx, xs, y):
        ctx.node("Mul", [xs[0], _sigmoid(ctx, xs[0])], y)

    def onnx_dydx(self, ctx, x):
        one = ctx.const(1.0, ctx.type_of(x).dtype)
        s = _sigmoid(ctx, x)
        return ctx.node("Mul", [s, ctx.node("Add", [one, ctx.node("Mul", [x, ctx.node("Sub", [one, s])])])])


class Softplus(_Pointwise):
    """``y = log(1 + e^{βx}) / β``, computed as ``(max(βx, 0) + log(1 + e^{−|βx|})) / β`` (no overflow);
    ``f'(x) = σ(βx)``. (PyTorch's ``threshold`` shortcut, linear above βx > 20, is not applied.)"""

    kind = "softplus"
    summary = "A smooth ReLU, log(1 + exp(beta·x))/beta."
    beta: float = Field(1.0, gt=0, description="sharpness β; larger is closer to ReLU")
    samples = (sample({}, (2, 3, 4, 4)), sample({"beta": 2.0}, (3, 7)))

    def describe(self):
        return "" if self.beta == 1 else f"beta {self.beta:g}"

    def forward(self, x):
        z = x * _c(x, self.beta)
        return (np.maximum(z, _c(x, 0.0)) + np.log1p(np.exp(-np.abs(z)))) / _c(x, self.beta)

    def dydx(self, x):
        return _np_sigmoid(x * _c(x, self.beta))

    def onnx(self, ctx, xs, y):
        dtype = ctx.type_of(xs[0]).dtype
        z = ctx.node("Mul", [xs[0], ctx.const(self.beta, dtype)])
        tail = ctx.node("Log", [ctx.node("Add", [ctx.node("Exp", [ctx.node("Neg", [ctx.node("Abs", [z])])]), ctx.const(1.0, dtype)])])
        total = ctx.node("Add", [ctx.node("Max", [z, ctx.const(0.0, dtype)]), tail])
        ctx.node("Div", [total, ctx.const(self.beta, dtype)], y)

    def onnx_dydx(self, ctx, x):
        return _sigmoid(ctx, ctx.node("Mul", [x, ctx.const(self.beta, ctx.type_of(x).dtype)]))


POINTWISE = (Relu6, Clip, HardSigmoid, HardSwish, Gelu, Silu, Softplus)
PIECEWISE = (Relu6, Clip, HardSigmoid, HardSwish)  # the ones with kinks, which state their pieces
GRADIENTS = tuple(_gradient_op(cls) for cls in POINTWISE)


class LogSoftmax(Op):
    """``y_i = x_i − max x − log Σ_j e^{x_j − max x}`` along ``axis``; ``gx = gy − e^y ⊙ Σ_axis gy``."""

    kind = "log_softmax"
    summary = "A log-softmax that turns scores along one axis into log-probabilities."
    axis: int = Field(-1, description="the axis normalised (negative counts from the end)")
    samples = (sample({}, (4, 10)), sample({"axis": 1}, (2, 3, 4, 4)))

    def infer(self, xs):
        x = xs[0]
        expect_float(x)
        if not -x.rank <= self.axis < x.rank:
            raise ShapeError(f"log_softmax axis {self.axis} is out of range for rank {x.rank} (shape {fmt_shape(x.shape)})")
        return x

    def describe(self):
        return f"axis {self.axis}"

    def forward(self, x):
        y = x - x.max(axis=self.axis, keepdims=True)
        y -= np.log(np.exp(y).sum(axis=self.axis, keepdims=True))
        return y

    def onnx(self, ctx, xs, y):
        ctx.node("LogSoftmax", xs, y, axis=self.axis)

    def vjp(self, g, xs, y, gy):
        return (g.op(LogSoftmaxGrad(axis=self.axis), [y, gy], "dx"),)


class LogSoftmaxGrad(Op):
    """Gradient of log-softmax from its output: ``gx = gy − e^y ⊙ Σ_axis gy``."""

    kind = "log_softmax_grad"
    arity = (2, 2)
    user_facing = False
    axis: int = -1
    samples = (sample({}, (4, 6), (4, 6)), sample({"axis": 1}, (2, 3, 4, 4), (2, 3, 4, 4)))

    def infer(self, xs):
        y, gy = xs
        if y.shape != gy.shape:
            raise ShapeError(f"log_softmax_grad: gy {fmt_shape(gy.shape)} must have the shape of y {fmt_shape(y.shape)}")
        return gy

    def forward(self, y, gy):
        return gy - np.exp(y.astype(gy.dtype, copy=False)) * gy.sum(axis=self.axis, keepdims=True)

    def onnx(self, ctx, xs, y):
        y_, gy = xs
        total = ctx.node("ReduceSum", [gy, ctx.ints([self.axis])], keepdims=1)
        ctx.node("Sub", [gy, ctx.node("Mul", [ctx.node("Exp", [y_]), total])], y)


OPS = tuple(op for pair in zip(POINTWISE, GRADIENTS) for op in pair) + (LogSoftmax, LogSoftmaxGrad)
