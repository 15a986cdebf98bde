"""Normalisation: batchnorm (over the batch, per channel) and layernorm (over the last axis)."""

from __future__ import annotations

from pydantic import Field

from ..errors import ShapeError
from ..tensor import TensorType, fmt_shape, static
from .base import ONES, ZEROS, Op, Param, expect_float, expect_rank, sample


def _check_params(kind: str, x: TensorType, params: list[TensorType], names: tuple[str, ...], size: int, axis: str) -> None:
    for name, p in zip(names, params):
        if p.shape != (size,):
            raise ShapeError(f"{kind} {name} shape {fmt_shape(p.shape)} does not match {axis} size {size} of input "
                             f"{fmt_shape(x.shape)} (expected {fmt_shape((size,))})")


class BatchNorm(Op):
    """Batch normalisation over axis 1 of (N, D) or (N, C, H, W):

    ``y = γ·(x − μ)/√(σ² + ε) + β``, per channel ``c``.

    Training: ``μ, σ²`` are the batch's mean and (biased) variance over N (and H, W), and the running
    statistics update as ``r ← momentum·r + (1 − momentum)·batch stat``. Inference uses
    ``running_mean, running_var``. Parameters ``gamma`` (ones) and ``beta`` (zeros) of shape (C,) are
    trained; ``running_mean`` (zeros) and ``running_var`` (ones) are not. MACs 0.
    """

    kind = "batchnorm"
    momentum: float = Field(0.9, ge=0, le=1)
    eps: float = Field(1e-5, gt=0)

    samples = (sample({}, (4, 3, 3, 3)), sample({}, (6, 5)), sample({"momentum": 0.5, "eps": 1e-3}, (3, 2, 4, 4)))

    def _channels(self, x: TensorType) -> int:
        expect_rank(x, (2, 4), "batchnorm input (N, D) or (N, C, H, W)")
        return static(x.shape[1], "batchnorm channels (axis 1)")

    def params(self, xs):
        c = self._channels(xs[0])
        return {
            "gamma": Param((c,), ONES),
            "beta": Param((c,), ZEROS),
            "running_mean": Param((c,), ZEROS, trainable=False),
            "running_var": Param((c,), ONES, trainable=False),
        }

    def infer(self, xs):
        x = xs[0]
        expect_float(x)
        c = self._channels(x)
        if len(xs) != 5:
            raise ShapeError(f"batchnorm takes its input and 4 parameters, got {len(xs)} inputs")
        _check_params(self.kind, x, xs[1:], ("gamma", "beta", "running_mean", "running_var"), c, "channel")
        return x

    def describe(self):
        return f"m{self.momentum:g}"


class LayerNorm(Op):
    """Layer normalisation over the last axis (size D), each row separately:

    ``y = γ·(x − μ)/√(σ² + ε) + β`` with ``μ, σ²`` the mean and (biased) variance of the row.
    Parameters ``gamma`` (ones) and ``beta`` (zeros) of shape (D,). Same in training and inference.
    """

    kind = "layernorm"
    eps: float = Field(1e-5, gt=0)

    samples = (sample({}, (4, 6)), sample({}, (2, 3, 5), note="(N, T, D) sequence"))

    def _features(self, x: TensorType) -> int:
        if x.rank < 1:
            raise ShapeError("layernorm input must have at least one axis, got a scalar")
        return static(x.shape[-1], "layernorm features (last axis)")

    def params(self, xs):
        d = self._features(xs[0])
        return {"gamma": Param((d,), ONES), "beta": Param((d,), ZEROS)}

    def infer(self, xs):
        x = xs[0]
        expect_float(x)
        d = self._features(x)
        if len(xs) != 3:
            raise ShapeError(f"layernorm takes its input and 2 parameters, got {len(xs)} inputs")
        _check_params(self.kind, x, xs[1:], ("gamma", "beta"), d, "last-axis")
        return x

    def window(self, xs):
        # every output of a row reads the whole row, so on NCHW input the width dim is not local
        return None


OPS = (BatchNorm, LayerNorm)
