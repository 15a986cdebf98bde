"""Losses: scalar outputs that may only appear in the spec's ``loss`` section.

Inputs are (scores or predictions, targets); the output is a scalar of the scores' float dtype.
Batch means divide by N (or by the element count for elementwise losses).
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from ..errors import ShapeError
from ..tensor import TensorType, fmt_shape
from .base import ONNX_DTYPES, Op, expect_float, expect_rank, sample
from .elementwise import Mul, Scale


def _scalar(value, dtype) -> np.ndarray:
    """A loss value as a 0-d array of the scores' float dtype."""
    return np.asarray(value, dtype=dtype)


# NumPy restarts its reduction loop for every row, so reducing a few contiguous classes costs ~50 ns a row; over
# the class axis of a column-major copy the same reduction runs as whole-column vector ops, 2–4× faster for fewer
# than 64 classes (measured; at 64 and more the copy no longer pays).
_FEW_CLASSES = 64


def _shifted(s: np.ndarray) -> np.ndarray:
    """``s_ij − max_k s_ik`` as a new (N, C) array, column-major when there are few classes."""
    if s.shape[1] < _FEW_CLASSES:
        s = np.asfortranarray(s)
    return s - s.max(axis=1, keepdims=True)


def _hinge_margins(s: np.ndarray, labels: np.ndarray, rows: np.ndarray, margin: float) -> np.ndarray:
    """``max(0, s_ij − s_{i,y_i} + Δ)`` with the label column set to 0 (``rows`` is ``arange(N)``)."""
    m = s - s[rows, labels][:, None]
    m += margin  # a Python float takes the scores' dtype
    np.maximum(m, 0, out=m)
    m[rows, labels] = 0
    return m


# --- ONNX lowering helpers (DESIGN.md §6) --------------------------------------------------------
def _onnx_dtype(dtype: str) -> int:
    return ONNX_DTYPES[dtype]


def _as(ctx, name: str, dtype: str) -> str:
    """Graph value ``name`` cast to ``dtype`` (itself when it already has that dtype)."""
    return name if ctx.type_of(name).dtype == dtype else ctx.node("Cast", [name], hint="cast", to=_onnx_dtype(dtype))


def _onnx_count(ctx, x: str, dtype: str) -> str:
    """The element count of ``x`` (N for labels (N,), numel for predictions) as a 0-d ``dtype`` value, at run
    time (a symbolic batch is never baked into a constant)."""
    return ctx.node("Cast", [ctx.node("Size", [x])], hint="count", to=_onnx_dtype(dtype))


def _onnx_is_label(ctx, s: str, labels: str) -> str:
    """The boolean (…, C) mask ``j == y_i`` of the label column of each row of scores (…, C)."""
    c = ctx.type_of(s).shape[-1]
    classes = ctx.ints(np.arange(c).reshape(1, -1), hint="classes")  # C is static (OneHot-free: any float dtype)
    return ctx.node("Equal", [ctx.node("Unsqueeze", [labels, ctx.ints([-1])], hint="labels_col"), classes], hint="is_label")


def _onnx_hinge_margins(ctx, s: str, labels: str, margin: float):
    """``max(0, s_ij − s_{i,y_i} + Δ)`` with the label column set to 0 (as :func:`_hinge_margins`), and the label mask."""
    dtype = ctx.type_of(s).dtype
    correct = ctx.node("GatherElements", [s, ctx.node("Unsqueeze", [labels, ctx.ints([1])], hint="labels_col")],
                       hint="correct", axis=1)
    raw = ctx.node("Add", [ctx.node("Sub", [s, correct]), ctx.const(margin, dtype, "margin")])
    zero = ctx.const(0.0, dtype)
    is_label = _onnx_is_label(ctx, s, labels)
    return ctx.node("Where", [is_label, zero, ctx.node("Max", [raw, zero])], hint="margins"), is_label


class _LossGrad(Op):
    """Gradient-only op of a loss: inputs (scores or predictions, targets, gy) with gy the loss's
    scalar cotangent; output the shape of the first input."""

    arity = (3, 3)
    user_facing = False

    def infer(self, xs):
        x, _, gy = xs
        if gy.rank != 0:
            raise ShapeError(f"{self.kind}: gy must be the loss's scalar cotangent, got shape {fmt_shape(gy.shape)}")
        return TensorType(tuple(x.shape), gy.dtype)

    def window(self, xs):
        return None


_CLASS_GRAD_SAMPLES = (
    sample({}, (4, 5), (4,), (), dtypes=["float32", "int64", "float32"]),
    sample({}, (3, 2), (3,), (), dtypes=["float32", "int64", "float32"]),
)
_PAIR_GRAD_SAMPLES = (sample({}, (4, 3), (4, 3), ()), sample({}, (2, 3, 2, 2), (2, 3, 2, 2), ()))


class _Loss(Op):
    arity = (2, 2)
    is_loss = True

    def window(self, xs):
        return None


class _ClassLoss(_Loss):
    """Scores (N, C) float and labels (N,) int64 class indices."""

    samples = (
        sample({}, (4, 5), (4,), dtypes=["float32", "int64"]),
        sample({}, (3, 2), (3,), dtypes=["float32", "int64"]),
    )

    def infer(self, xs):
        s, y = xs
        expect_rank(s, 2, f"{self.kind} scores (N, C)")
        expect_float(s, f"{self.kind} scores")
        expect_rank(y, 1, f"{self.kind} labels (N,)")
        if y.dtype != "int64":
            raise ShapeError(f"{self.kind} labels must be int64 class indices, got {y.dtype}")
        if s.shape[0] != y.shape[0]:
            raise ShapeError(f"{self.kind} batch sizes differ: scores {fmt_shape(s.shape)} have N = {s.shape[0]} "
                             f"but labels {fmt_shape(y.shape)} have N = {y.shape[0]}")
        return TensorType((), s.dtype)

    def index_bound(self, xs, i):
        classes = xs[0].shape[-1]
        return classes if i == 1 and isinstance(classes, int) else None


class _PairLoss(_Loss):
    """Predictions and float targets of the same shape and dtype."""

    samples = (sample({}, (4, 3), (4, 3)), sample({}, (2, 3, 2, 2), (2, 3, 2, 2)))

    def infer(self, xs):
        p, t = xs
        expect_float(p, f"{self.kind} predictions")
        expect_float(t, f"{self.kind} targets")
        if p.shape != t.shape:
            raise ShapeError(f"{self.kind} predictions {fmt_shape(p.shape)} and targets {fmt_shape(t.shape)} "
                             f"must have the same shape")
        if p.dtype != t.dtype:
            raise ShapeError(f"{self.kind} predictions ({p.dtype}) and targets ({t.dtype}) must have the same dtype")
        return TensorType((), p.dtype)


class SoftmaxCrossEntropy(_ClassLoss):
    """Softmax cross-entropy of scores (N, C) against int64 labels (N,):

    ``L = −(1/N) Σ_i log softmax(s_i)[y_i]``, ``softmax(s)_j = e^{s_j} / Σ_k e^{s_k}``.

    Sequences: scores (N, T, …, C) against labels (N, T, …) (a language model's next-token logits
    against the next tokens), the classes on the last axis; every position is a row and the mean is
    over all M = N·T·… of them, ``L = −(1/M) Σ_{i,t} log softmax(s_{i,t})[y_{i,t}]`` (PyTorch's
    ``cross_entropy`` of the logits and labels flattened to (M, C) and (M,)).
    """

    kind = "softmax_cross_entropy"
    summary = "A softmax cross-entropy of class scores (the last axis) against integer labels."
    samples = _ClassLoss.samples + (
        sample({}, (2, 3, 5), (2, 3), dtypes=["float32", "int64"], note="a sequence: (N, T, C) against (N, T)"),)

    def infer(self, xs):
        s, y = xs
        if s.rank < 2 or y.rank != s.rank - 1:
            raise ShapeError(f"{self.kind}: scores {fmt_shape(s.shape)} and labels {fmt_shape(y.shape)} must be "
                             f"(N, C) and (N,), or (N, T, …, C) and (N, T, …): the labels have the scores' shape "
                             f"without its last (class) axis")
        if s.rank == 2:
            return super().infer(xs)
        expect_float(s, f"{self.kind} scores")
        if y.dtype != "int64":
            raise ShapeError(f"{self.kind} labels must be int64 class indices, got {y.dtype}")
        if tuple(s.shape[:-1]) != tuple(y.shape):
            raise ShapeError(f"{self.kind}: scores {fmt_shape(s.shape)} need labels {fmt_shape(s.shape[:-1])} "
                             f"(their shape without the class axis), got {fmt_shape(y.shape)}")
        return TensorType((), s.dtype)

    def forward(self, s, labels):
        return self._loss_and_grad(s, labels, None)[0]

    @staticmethod
    def _loss_and_grad(s, labels, gy):
        """The loss and, when ``gy`` is given, the score gradient from the same exponentials; scores
        (…, C) are taken as the rows of their (M, C) reshape, the gradient given back as (…, C)."""
        shape = s.shape
        if s.ndim > 2:  # a (2-D) matrix keeps its layout: the loss does not depend on it, bit for bit
            s, labels = s.reshape(-1, shape[-1]), labels.reshape(-1)
        n = s.shape[0]
        rows = np.arange(n)
        e = _shifted(s)
        picked = e[rows, labels]
        np.exp(e, out=e)
        z = e.sum(axis=1)
        # sum/N in the scores' dtype is np.mean's result without its Python-level wrapper (~2.5 µs)
        loss = _scalar((np.log(z) - picked).sum() / n, s.dtype)
        if gy is None:
            return loss, None
        scale = gy / n  # gy is the loss's cotangent, of the scores' dtype; a Python int divisor takes that dtype
        # softmax and the gy/N factor in one pass over (N, C): e_ij · (gy/N)/Σ_k e_ik, in place
        e *= scale / z[:, None]
        e[rows, labels] -= scale
        return loss, np.ascontiguousarray(e).reshape(shape)  # row-major like every other kernel's output

    def fused_forward(self, xs, other, other_xs):
        """With the gradient of this very loss (same scores and labels): both from one softmax."""
        if other.kind != SoftmaxCrossEntropyGrad.kind or tuple(other_xs[:2]) != tuple(xs):
            return None
        return lambda s, labels, _s, _labels, gy: self._loss_and_grad(s, labels, gy)

    def onnx(self, ctx, xs, y):
        s, labels = xs
        if ctx.type_of(s).rank > 2:  # positions as rows, (M, C) and (M,), as the kernel: onnx's reference
            # GatherElements gathers more than 64 classes only from a matrix
            s = ctx.node("Reshape", [s, ctx.ints([-1, ctx.type_of(s).shape[-1]])], hint="rows")
            labels = ctx.node("Reshape", [labels, ctx.ints([-1])], hint="row_labels")
        logp = ctx.node("LogSoftmax", [s], hint="log_softmax", axis=1)
        picked = ctx.node("GatherElements", [logp, ctx.node("Unsqueeze", [labels, ctx.ints([1])], hint="labels_col")],
                          hint="log_p_label", axis=1)
        ctx.node("Neg", [ctx.node("ReduceMean", [picked], hint="mean_log_p", keepdims=0)], y)

    def vjp(self, g, xs, y, gy):
        return (g.op(SoftmaxCrossEntropyGrad(), [xs[0], xs[1], gy], "dscores") if g.needs(0) else None), None


class SoftmaxCrossEntropyGrad(_LossGrad):
    """Score gradient of softmax cross-entropy: ``gs = (softmax(s) − onehot(y))/M · gy``.
    Inputs (scores (N, C) or (N, T, …, C), labels (N,) or (N, T, …) int64, gy scalar), M the labels' count."""

    kind = "softmax_cross_entropy_grad"
    samples = _CLASS_GRAD_SAMPLES + (sample({}, (2, 3, 5), (2, 3), (), dtypes=["float32", "int64", "float32"]),)

    def forward(self, s, labels, gy):
        return SoftmaxCrossEntropy._loss_and_grad(s, labels, gy)[1]

    def onnx(self, ctx, xs, y):
        s, labels, gy = xs
        dtype = ctx.type_of(gy).dtype
        p = ctx.node("Softmax", [_as(ctx, s, dtype)], hint="softmax", axis=ctx.type_of(s).rank - 1)
        onehot = ctx.node("Cast", [_onnx_is_label(ctx, s, labels)], hint="onehot", to=_onnx_dtype(dtype))
        ctx.node("Mul", [ctx.node("Sub", [p, onehot]), ctx.node("Div", [gy, _onnx_count(ctx, labels, dtype)])], y)


class Hinge(_ClassLoss):
    """Multiclass SVM (hinge) loss of scores (N, C) against int64 labels (N,), margin Δ:

    ``L = (1/N) Σ_i Σ_{j ≠ y_i} max(0, s_ij − s_{i, y_i} + Δ)``.
    """

    kind = "hinge"
    summary = "A multiclass SVM (hinge) loss of class scores against integer labels."
    margin: float = Field(1.0, ge=0, description="the margin Δ by which the true class must win")

    def describe(self):
        return f"Δ{self.margin:g}"

    def forward(self, s, labels):
        return _scalar(_hinge_margins(s, labels, np.arange(s.shape[0]), self.margin).sum() / s.shape[0], s.dtype)

    def onnx(self, ctx, xs, y):
        s, labels = xs
        margins, _ = _onnx_hinge_margins(ctx, s, labels, self.margin)
        per_row = ctx.node("ReduceSum", [margins, ctx.ints([1])], hint="per_row", keepdims=0)
        ctx.node("ReduceMean", [per_row], y, keepdims=0)

    def vjp(self, g, xs, y, gy):
        return (g.op(HingeGrad(margin=self.margin), [xs[0], xs[1], gy], "dscores") if g.needs(0) else None), None


class HingeGrad(_LossGrad):
    """Score gradient of the multiclass hinge loss: ``gs_ij = [m_ij > 0]/N · gy`` for ``j ≠ y_i`` and
    ``gs_{i,y_i} = −(Σ_{j≠y_i} [m_ij > 0])/N · gy``, with ``m_ij = s_ij − s_{i,y_i} + Δ``.
    Inputs (scores (N, C), labels (N,) int64, gy scalar)."""

    kind = "hinge_grad"
    margin: float = Field(1.0, ge=0)
    samples = _CLASS_GRAD_SAMPLES

    def forward(self, s, labels, gy):
        n = s.shape[0]
        rows = np.arange(n)
        # the comparison writes 0/1 straight into gy's dtype: no boolean temporary to convert
        active = np.greater(_hinge_margins(s, labels, rows, self.margin), 0, out=np.empty(s.shape, gy.dtype))
        active[rows, labels] = -active.sum(axis=1)
        active *= gy / n
        return active

    def onnx(self, ctx, xs, y):
        s, labels, gy = xs
        dtype = ctx.type_of(gy).dtype
        margins, is_label = _onnx_hinge_margins(ctx, s, labels, self.margin)
        active = ctx.node("Cast", [ctx.node("Greater", [margins, ctx.const(0.0, ctx.type_of(s).dtype)])], hint="active",
                          to=_onnx_dtype(dtype))
        count = ctx.node("Neg", [ctx.node("ReduceSum", [active, ctx.ints([1])], hint="n_active", keepdims=1)])
        ctx.node("Mul", [ctx.node("Where", [is_label, count, active]), ctx.node("Div", [gy, _onnx_count(ctx, labels, dtype)])], y)


class SigmoidCrossEntropy(_PairLoss):
    """Binary cross-entropy with logits ``x`` and float targets ``t`` in [0, 1], same shape:

    ``L = mean(max(x, 0) − x·t + log(1 + e^{−|x|}))`` (the stable form of ``−t·log σ(x) − (1−t)·log(1−σ(x))``).
    """

    kind = "sigmoid_cross_entropy"
    summary = "A binary cross-entropy of logits against float targets in [0, 1]."

    def forward(self, x, t):
        loss = np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))
        return _scalar(loss.sum() / loss.size, x.dtype)  # np.mean's value without its Python-level wrapper

    def onnx(self, ctx, xs, y):
        x, t = xs
        dtype = ctx.type_of(x).dtype
        e = ctx.node("Exp", [ctx.node("Neg", [ctx.node("Abs", [x])])])
        softplus = ctx.node("Log", [ctx.node("Add", [ctx.const(1.0, dtype), e])], hint="log1p_exp")
        linear = ctx.node("Sub", [ctx.node("Max", [x, ctx.const(0.0, dtype)]), ctx.node("Mul", [x, t])])
        loss = ctx.node("Add", [linear, softplus], hint="elementwise")
        ctx.node("ReduceMean", [loss], y, keepdims=0)

    def vjp(self, g, xs, y, gy):
        gx = g.op(SigmoidCrossEntropyGrad(), [xs[0], xs[1], gy], "dlogits") if g.needs(0) else None
        gt = g.op(SigmoidCrossEntropyGradTarget(), [xs[0], xs[1], gy], "dtargets") if g.needs(1) else None
        return gx, gt


class SigmoidCrossEntropyGrad(_LossGrad):
    """Logit gradient of sigmoid cross-entropy: ``gx = (σ(x) − t)/numel · gy``. Inputs (x, t, gy scalar)."""

    kind = "sigmoid_cross_entropy_grad"
    samples = _PAIR_GRAD_SAMPLES

    def forward(self, x, t, gy):
        d = 0.5 * (1 + np.tanh(0.5 * x))  # σ(x) with no overflow for large |x|
        d -= t
        d *= gy / x.size
        return d

    def onnx(self, ctx, xs, y):
        x, t, gy = xs
        dtype = ctx.type_of(gy).dtype
        diff = ctx.node("Sub", [ctx.node("Sigmoid", [_as(ctx, x, dtype)]), _as(ctx, t, dtype)])
        ctx.node("Mul", [diff, ctx.node("Div", [gy, _onnx_count(ctx, x, dtype)])], y)


class SigmoidCrossEntropyGradTarget(_LossGrad):
    """Target gradient of sigmoid cross-entropy: ``gt = −x/numel · gy``. Inputs (x, t, gy scalar)."""

    kind = "sigmoid_cross_entropy_grad_target"
    samples = _PAIR_GRAD_SAMPLES

    def forward(self, x, t, gy):
        return x * (-gy / x.size)

    def onnx(self, ctx, xs, y):
        x, _, gy = xs
        dtype = ctx.type_of(gy).dtype
        ctx.node("Mul", [_as(ctx, x, dtype), ctx.node("Div", [ctx.node("Neg", [gy]), _onnx_count(ctx, x, dtype)])], y)


class MSE(_PairLoss):
    """Mean squared error over all elements: ``L = mean((p − t)²)``."""

    kind = "mse"
    summary = "A mean squared error between predictions and targets."

    def forward(self, p, t):
        d = p - t
        d *= d
        return _scalar(d.sum() / d.size, p.dtype)

    def onnx(self, ctx, xs, y):
        d = ctx.node("Sub", xs, hint="diff")
        ctx.node("ReduceMean", [ctx.node("Mul", [d, d])], y, keepdims=0)

    def vjp(self, g, xs, y, gy):
        gp = g.op(MSEGrad(), [xs[0], xs[1], gy], "dpred") if g.needs(0) or g.needs(1) else None
        return (gp if g.needs(0) else None), (g.op(Scale(factor=-1.0), [gp], "dtargets") if g.needs(1) else None)


class MSEGrad(_LossGrad):
    """Prediction gradient of the mean squared error: ``gp = 2(p − t)/numel · gy`` (and ``gt = −gp``).
    Inputs (p, t, gy scalar)."""

    kind = "mse_grad"
    samples = _PAIR_GRAD_SAMPLES

    def forward(self, p, t, gy):
        d = p - t
        d *= 2 * gy / p.size
        return d

    def onnx(self, ctx, xs, y):
        p, t, gy = xs
        dtype = ctx.type_of(gy).dtype
        g2 = ctx.node("Mul", [gy, ctx.const(2.0, dtype)])
        d = ctx.node("Sub", [_as(ctx, p, dtype), _as(ctx, t, dtype)], hint="diff")
        ctx.node("Mul", [d, ctx.node("Div", [g2, _onnx_count(ctx, p, dtype)])], y)


class L1(_PairLoss):
    """Mean absolute error over all elements: ``L = mean(|p − t|)``."""

    kind = "l1"
    summary = "A mean absolute error between predictions and targets."

    def forward(self, p, t):
        d = np.abs(p - t)
        return _scalar(d.sum() / d.size, p.dtype)

    def onnx(self, ctx, xs, y):
        ctx.node("ReduceMean", [ctx.node("Abs", [ctx.node("Sub", xs, hint="diff")])], y, keepdims=0)

    def vjp(self, g, xs, y, gy):
        gp = g.op(L1Grad(), [xs[0], xs[1], gy], "dpred") if g.needs(0) or g.needs(1) else None
        return (gp if g.needs(0) else None), (g.op(Scale(factor=-1.0), [gp], "dtargets") if g.needs(1) else None)


class L1Grad(_LossGrad):
    """Prediction gradient of the mean absolute error: ``gp = sign(p − t)/numel · gy`` (and ``gt = −gp``).
    Inputs (p, t, gy scalar)."""

    kind = "l1_grad"
    samples = _PAIR_GRAD_SAMPLES

    def forward(self, p, t, gy):
        d = np.sign(p - t)
        d *= gy / p.size
        return d

    def onnx(self, ctx, xs, y):
        p, t, gy = xs
        dtype = ctx.type_of(gy).dtype
        sign = ctx.node("Sign", [ctx.node("Sub", [_as(ctx, p, dtype), _as(ctx, t, dtype)], hint="diff")])
        ctx.node("Mul", [sign, ctx.node("Div", [gy, _onnx_count(ctx, p, dtype)])], y)


class L2Penalty(_Loss):
    """L2 weight penalty over any number of parameter tensors ``W``:

    ``L = (λ/2)·Σ_W ‖W‖²`` (sum of squares of all entries), so that ``∂L/∂W = λ·W``; the ½ follows the
    course's convention. ``λ = strength``.
    """

    kind = "l2_penalty"
    summary = "An L2 weight penalty (λ/2)·Σ‖W‖² over parameter tensors."
    arity = (1, None)
    strength: float = Field(ge=0, description="the weight λ of the penalty")

    samples = (
        sample({"strength": 0.1}, (3, 4)),
        sample({"strength": 0.5}, (2, 3, 3, 3), (2,), note="several tensors"),
    )

    def infer(self, xs):
        if not xs:
            raise ShapeError("l2_penalty needs at least one tensor")
        for i, w in enumerate(xs):
            expect_float(w, f"l2_penalty input {i}")
        dtype = "float64" if any(w.dtype == "float64" for w in xs) else xs[0].dtype
        return TensorType((), dtype)

    def describe(self):
        return f"λ{self.strength:g}"

    def forward(self, *ws):
        dtype = np.result_type(*ws)
        # ‖W‖² as a BLAS dot product: no squared temporary, several times faster than Σ w**2
        total = sum(np.dot(f, f) for f in (w.astype(dtype, copy=False).reshape(-1) for w in ws))
        return _scalar(np.asarray(self.strength / 2, dtype) * total, dtype)

    def onnx(self, ctx, xs, y):
        dtype = ctx.type_of(y).dtype
        total = None
        for w in xs:
            # sums of millions of squares accumulate in float64: runtimes sum float32 sequentially
            w = _as(ctx, w, "float64")
            sq = ctx.node("ReduceSumSquare", [w], hint="sum_sq", keepdims=0)  # no axes: all of them
            total = sq if total is None else ctx.node("Add", [total, sq], hint="total")
        half = ctx.node("Mul", [ctx.const(self.strength / 2, "float64", "half_strength"), total], hint="penalty64")
        ctx.node("Cast", [half], y, to=_onnx_dtype(dtype))

    def vjp(self, g, xs, y, gy):
        # gy is 0-d, so Mul broadcasts it over λ·W
        return tuple(g.op(Mul(), [g.op(Scale(factor=self.strength), [w], f"lambda_w{i}"), gy], f"d{i}") if g.needs(i) else None
                     for i, w in enumerate(xs))


OPS = (SoftmaxCrossEntropy, SoftmaxCrossEntropyGrad, SigmoidCrossEntropy, SigmoidCrossEntropyGrad, SigmoidCrossEntropyGradTarget,
       MSE, MSEGrad, L1, L1Grad, Hinge, HingeGrad, L2Penalty)
