"""Losses: scalar outputs that may only appear in the spec's ``loss`` section.

Inputs are (scores or predictions, targets); the output is a scalar of the scores' float dtype.
Batch means divide by N (or by the element count for elementwise losses).
"""

from __future__ import annotations

from pydantic import Field

from ..errors import ShapeError
from ..tensor import TensorType, fmt_shape
from .base import Op, expect_float, expect_rank, sample


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
    """

    kind = "softmax_cross_entropy"


class Hinge(_ClassLoss):
    """Multiclass SVM (hinge) loss of scores (N, C) against int64 labels (N,), margin Δ:

    ``L = (1/N) Σ_i Σ_{j ≠ y_i} max(0, s_ij − s_{i, y_i} + Δ)``.
    """

    kind = "hinge"
    margin: float = Field(1.0, ge=0)

    def describe(self):
        return f"Δ{self.margin:g}"


class SigmoidCrossEntropy(_PairLoss):
    """Binary cross-entropy with logits ``x`` and float targets ``t`` in [0, 1], same shape:

    ``L = mean(max(x, 0) − x·t + log(1 + e^{−|x|}))`` (the stable form of ``−t·log σ(x) − (1−t)·log(1−σ(x))``).
    """

    kind = "sigmoid_cross_entropy"


class MSE(_PairLoss):
    """Mean squared error over all elements: ``L = mean((p − t)²)``."""

    kind = "mse"


class L1(_PairLoss):
    """Mean absolute error over all elements: ``L = mean(|p − t|)``."""

    kind = "l1"


class L2Penalty(_Loss):
    """L2 weight penalty over any number of parameter tensors ``W``:

    ``L = (λ/2)·Σ_W ‖W‖²`` (sum of squares of all entries), so that ``∂L/∂W = λ·W``; the ½ follows the
    course's convention. ``λ = strength``.
    """

    kind = "l2_penalty"
    arity = (1, None)
    strength: float = Field(ge=0)

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


OPS = (SoftmaxCrossEntropy, SigmoidCrossEntropy, MSE, L1, Hinge, L2Penalty)
