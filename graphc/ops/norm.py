"""Normalisation: batchnorm (over the batch, per channel) and layernorm (over the last axis)."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from ..errors import ShapeError
from ..tensor import TensorType, fmt_shape, static
from .base import ONES, ZEROS, Op, Param, expect_float, expect_rank, sample
from .elementwise import Mul
from .reduce import ReduceSum
from .activations import _onnx_as, _onnx_channel_view
from .source import Const


def _check_params(kind: str, x: TensorType, params: list[TensorType], names: tuple[str, ...], size: int, axis: str) -> None:
    for name, p in zip(names, params):
        if p.shape != (size,):
            raise ShapeError(f"{kind} {name} shape {fmt_shape(p.shape)} does not match {axis} size {size} of input "
                             f"{fmt_shape(x.shape)} (expected {fmt_shape((size,))})")


def _bn_axes(ndim: int) -> tuple[int, ...]:
    """Batchnorm reduces over every axis but the channel axis 1: (0,) for (N, D), (0, 2, 3) for NCHW."""
    return (0,) + tuple(range(2, ndim))


def _channel_view(v: np.ndarray, ndim: int) -> np.ndarray:
    """A per-channel vector (C,) viewed as (1, C, 1, …) to broadcast along axis 1."""
    return v.reshape((1, -1) + (1,) * (ndim - 2))


def _batch_stats(x: np.ndarray, eps: float):
    """Batch mean and biased variance per channel (keepdims), ``σ = √(var + ε)`` and ``x̂ = (x − μ)/σ``."""
    axes = _bn_axes(x.ndim)
    mean = x.mean(axis=axes, keepdims=True)
    xc = x - mean
    var = np.mean(xc * xc, axis=axes, keepdims=True)
    sigma = np.sqrt(var + np.asarray(eps, x.dtype))
    return mean, var, sigma, xc / sigma


def _row_stats(x: np.ndarray, eps: float):
    """Layernorm's per-row (last axis) ``σ = √(var + ε)`` (biased variance) and ``x̂ = (x − μ)/σ``."""
    xc = x - x.mean(axis=-1, keepdims=True)
    sigma = np.sqrt(np.mean(xc * xc, axis=-1, keepdims=True) + np.asarray(eps, x.dtype))
    return sigma, xc / sigma


# --- ONNX lowering helpers (DESIGN.md §6) --------------------------------------------------------
def _onnx_stats(ctx, x: str, axes, eps: float, hint: str, dtype: str | None = None):
    """Mean-centred ``x − μ``, ``σ = √(var + ε)`` (biased variance) and ``x̂ = (x − μ)/σ`` over ``axes`` (keepdims),
    as in :func:`_batch_stats` and :func:`_row_stats`, computed in ``dtype`` (default: x's)."""
    dtype = dtype or ctx.type_of(x).dtype
    x = _onnx_as(ctx, x, dtype)
    axes = ctx.ints(list(axes))
    xc = ctx.node("Sub", [x, ctx.node("ReduceMean", [x, axes], hint=f"{hint}_mean", keepdims=1)], hint=f"{hint}_centred")
    var = ctx.node("ReduceMean", [ctx.node("Mul", [xc, xc]), axes], hint=f"{hint}_var", keepdims=1)
    sigma = ctx.node("Sqrt", [ctx.node("Add", [var, ctx.const(eps, dtype)])], hint=f"{hint}_sigma")
    return xc, sigma, ctx.node("Div", [xc, sigma], hint=f"{hint}_xhat")


def _onnx_per_channel_count(ctx, x: str, dtype: str) -> str:
    """The number of elements per channel (axis 1) of ``x`` — N or N·H·W — as a 0-d ``dtype`` value, at run time."""
    from ..onnx_export import ONNX_DTYPES

    c = static(ctx.type_of(x).shape[1], "batchnorm channels (axis 1)")
    n = ctx.node("Div", [ctx.node("Size", [x]), ctx.const(c, "int64", "channels")], hint="per_channel")
    return ctx.node("Cast", [n], hint="n", to=ONNX_DTYPES[dtype])


def _check_channels(kind: str, x: TensorType, vectors: list[TensorType], names: tuple[str, ...]) -> int:
    expect_rank(x, (2, 4), f"{kind} input (N, D) or (N, C, H, W)")
    c = static(x.shape[1], f"{kind} channels (axis 1)")
    _check_params(kind, x, vectors, names, c, "channel")
    return c


def _check_like(kind: str, x: TensorType, gy: TensorType) -> None:
    if x.shape != gy.shape:
        raise ShapeError(f"{kind}: gy {fmt_shape(gy.shape)} must have the shape of x {fmt_shape(x.shape)}")


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

    def forward(self, x, gamma, beta, running_mean, running_var):
        """The inference form, with the running statistics."""
        dt, nd = x.dtype, x.ndim
        scale = gamma.astype(dt, copy=False) / np.sqrt(running_var.astype(dt, copy=False) + np.asarray(self.eps, dt))
        shift = beta.astype(dt, copy=False) - running_mean.astype(dt, copy=False) * scale
        return x * _channel_view(scale, nd) + _channel_view(shift, nd)

    def onnx(self, ctx, xs, y):
        # ONNX BatchNormalization in inference mode: y = γ·(x − mean)/√(var + ε) + β over axis 1
        dtype = ctx.type_of(xs[0]).dtype
        params = [_onnx_as(ctx, p, dtype) for p in xs[1:]]
        ctx.node("BatchNormalization", [xs[0], *params], y, epsilon=self.eps, training_mode=0)

    def vjp(self, g, xs, y, gy):
        """The inference form is affine per channel, so its gradients reuse it: with a = γ/√(σ²_r + ε),
        ``gx = gy·a = batchnorm(gy; γ, 0, 0, σ²_r)`` and ``x̂ = batchnorm(x; 1, 0, μ_r, σ²_r)``,
        ``gγ = Σ gy·x̂``, ``gβ = Σ gy`` (sums over every axis but 1). No new kernels or lowerings."""
        x, gamma, beta, running_mean, running_var = xs
        t = g.type_of(x)
        axes = _bn_axes(t.rank)
        c, dtype = static(t.shape[1], "batchnorm channels"), g.type_of(gy).dtype
        norm = BatchNorm(momentum=self.momentum, eps=self.eps)

        def fill(value, hint):
            return g.op(Const(value=value, shape=(c,), dtype=dtype), [], hint)

        gx = ggamma = gbeta = None
        if g.needs(0):
            zeros = fill(0.0, "zeros")
            gx = g.op(norm, [gy, gamma, zeros, zeros, running_var], "dx")
        if g.needs(1):
            xhat = g.op(norm, [x, fill(1.0, "ones"), fill(0.0, "zeros"), running_mean, running_var], "xhat")
            ggamma = g.op(ReduceSum(axes=axes), [g.op(Mul(), [gy, xhat], "gy_xhat")], "dgamma")
        if g.needs(2):
            gbeta = g.op(ReduceSum(axes=axes), [gy], "dbeta")
        return gx, ggamma, gbeta, None, None  # the running statistics are not trained


class BatchNormTrain(Op):
    """Training-form batch normalisation over axis 1 of (N, D) or (N, C, H, W), with batch statistics:

    ``μ_c, σ²_c`` = mean and biased variance over the axes (0,) or (0, 2, 3); ``x̂ = (x − μ)/√(σ² + ε)``;
    ``y = γ·x̂ + β``. Inputs (x, gamma, beta). The training-graph rewrite puts it in place of
    ``batchnorm``; the running statistics are updated by ``batchnorm_running_update`` nodes.
    ``gx`` by ``batchnorm_train_grad_input``, ``gγ = Σ gy·x̂``, ``gβ = Σ gy``.
    """

    kind = "batchnorm_train"
    arity = (3, 3)
    user_facing = False
    momentum: float = Field(0.9, ge=0, le=1)
    eps: float = Field(1e-5, gt=0)

    # small samples: the input gradient sums over every element of a channel, and central differences
    # on larger ones lose digits to rounding (1e-6 relative error at h = 1e-6 on (3, 2, 4, 4))
    samples = (sample({}, (4, 3, 3, 3), (3,), (3,)), sample({}, (6, 5), (5,), (5,)),
               sample({"momentum": 0.5, "eps": 1e-3}, (3, 2, 3, 3), (2,), (2,)))

    def infer(self, xs):
        if len(xs) != 3:
            raise ShapeError(f"batchnorm_train takes x, gamma and beta, got {len(xs)} inputs")
        expect_float(xs[0])
        _check_channels(self.kind, xs[0], xs[1:], ("gamma", "beta"))
        return xs[0]

    def window(self, xs):
        return None  # batch statistics: every output reads every input of its channel

    def describe(self):
        return f"m{self.momentum:g}"

    def forward(self, x, gamma, beta):
        _, _, _, xhat = _batch_stats(x, self.eps)
        return xhat * _channel_view(gamma.astype(x.dtype, copy=False), x.ndim) + _channel_view(beta.astype(x.dtype, copy=False), x.ndim)

    def onnx(self, ctx, xs, y):
        # batch statistics by reductions (not training_mode=1: its extra outputs and momentum differ)
        x, gamma, beta = xs
        t = ctx.type_of(x)
        _, _, xhat = _onnx_stats(ctx, x, _bn_axes(t.rank), self.eps, "batch")
        scaled = ctx.node("Mul", [xhat, _onnx_channel_view(ctx, gamma, t.rank, t.dtype)])
        ctx.node("Add", [scaled, _onnx_channel_view(ctx, beta, t.rank, t.dtype)], y)

    def vjp(self, g, xs, y, gy):
        x, gamma, beta = xs
        gx = g.op(BatchNormTrainGradInput(eps=self.eps), [x, gamma, gy], "dx") if g.needs(0) else None
        ggamma = g.op(BatchNormGradGamma(eps=self.eps), [x, gy], "dgamma") if g.needs(1) else None
        gbeta = g.op(ReduceSum(axes=_bn_axes(g.type_of(x).rank)), [gy], "dbeta") if g.needs(2) else None
        return gx, ggamma, gbeta


class BatchNormTrainGradInput(Op):
    """Input gradient of training-form batchnorm (batch statistics), the compact formula:

    ``gx = (γ/(N·σ))·(N·gy − Σ gy − x̂·Σ(gy·x̂))``, with ``σ = √(var + ε)``, sums over the reduced
    axes and ``N`` the number of reduced elements (N, or N·H·W). Inputs (x, gamma, gy).
    """

    kind = "batchnorm_train_grad_input"
    arity = (3, 3)
    user_facing = False
    eps: float = Field(1e-5, gt=0)
    samples = (sample({}, (4, 3, 3, 3), (3,), (4, 3, 3, 3)), sample({}, (6, 5), (5,), (6, 5)))

    def infer(self, xs):
        x, gamma, gy = xs
        _check_channels(self.kind, x, [gamma], ("gamma",))
        _check_like(self.kind, x, gy)
        return gy

    def window(self, xs):
        return None

    def forward(self, x, gamma, gy):
        axes = _bn_axes(x.ndim)
        _, _, sigma, xhat = _batch_stats(x, self.eps)
        n = np.asarray(x.size // x.shape[1], gy.dtype)
        sum_gy = gy.sum(axis=axes, keepdims=True, dtype=gy.dtype)
        sum_gy_xhat = np.sum(gy * xhat, axis=axes, keepdims=True, dtype=gy.dtype)
        return _channel_view(gamma.astype(gy.dtype, copy=False), x.ndim) / (n * sigma) * (n * gy - sum_gy - xhat * sum_gy_xhat)

    def onnx(self, ctx, xs, y):
        x, gamma, gy = xs
        t, dtype = ctx.type_of(x), ctx.type_of(gy).dtype
        axes = _bn_axes(t.rank)
        _, sigma, xhat = _onnx_stats(ctx, x, axes, self.eps, "batch", dtype)
        n = _onnx_per_channel_count(ctx, x, dtype)
        sum_gy = ctx.node("ReduceSum", [gy, ctx.ints(axes)], hint="sum_gy", keepdims=1)
        sum_gy_xhat = ctx.node("ReduceSum", [ctx.node("Mul", [gy, xhat]), ctx.ints(axes)], hint="sum_gy_xhat", keepdims=1)
        inner = ctx.node("Sub", [ctx.node("Sub", [ctx.node("Mul", [n, gy]), sum_gy]), ctx.node("Mul", [xhat, sum_gy_xhat])])
        factor = ctx.node("Div", [_onnx_channel_view(ctx, gamma, t.rank, dtype), ctx.node("Mul", [n, sigma])])
        ctx.node("Mul", [factor, inner], y)


class BatchNormGradGamma(Op):
    """γ gradient of training-form batchnorm: ``gγ_c = Σ_{n,h,w} gy·x̂`` with ``x̂`` from the batch
    statistics (biased variance). Inputs (x, gy); output (C,)."""

    kind = "batchnorm_grad_gamma"
    arity = (2, 2)
    user_facing = False
    eps: float = Field(1e-5, gt=0)
    samples = (sample({}, (4, 3, 3, 3), (4, 3, 3, 3)), sample({}, (6, 5), (6, 5)))

    def infer(self, xs):
        x, gy = xs
        c = _check_channels(self.kind, x, [], ())
        _check_like(self.kind, x, gy)
        return TensorType((c,), gy.dtype)

    def window(self, xs):
        return None

    def forward(self, x, gy):
        _, _, _, xhat = _batch_stats(x, self.eps)
        return np.sum(gy * xhat, axis=_bn_axes(x.ndim), dtype=gy.dtype)

    def onnx(self, ctx, xs, y):
        x, gy = xs
        axes = _bn_axes(ctx.type_of(x).rank)
        _, _, xhat = _onnx_stats(ctx, x, axes, self.eps, "batch", ctx.type_of(gy).dtype)
        ctx.node("ReduceSum", [ctx.node("Mul", [gy, xhat]), ctx.ints(axes)], y, keepdims=0)


class BatchNormRunningUpdate(Op):
    """New running statistic of batchnorm in a training step: ``r ← momentum·r + (1 − momentum)·s``,
    with ``s`` the batch mean (``which = "mean"``) or the UNBIASED batch variance
    (``which = "var"``, divided by N − 1 as PyTorch does; normalisation itself uses the biased one),
    over the axes (0,) of (N, D) or (0, 2, 3) of NCHW. Inputs (x, running_stat); output (C,).
    Not differentiable: the running statistics are state, not trained.
    """

    kind = "batchnorm_running_update"
    arity = (2, 2)
    user_facing = False
    momentum: float = Field(0.9, ge=0, le=1)
    eps: float = Field(1e-5, gt=0)
    which: Literal["mean", "var"]

    samples = (sample({"which": "mean"}, (4, 3, 3, 3), (3,)), sample({"which": "var"}, (4, 3, 3, 3), (3,)),
               sample({"which": "var", "momentum": 0.5}, (6, 5), (5,)))

    def infer(self, xs):
        x, running = xs
        expect_float(x)
        _check_channels(self.kind, x, [running], (f"running_{self.which}",))
        return running

    def window(self, xs):
        return None

    def describe(self):
        return f"{self.which} m{self.momentum:g}"

    def forward(self, x, running):
        axes = _bn_axes(x.ndim)
        stat = x.mean(axis=axes) if self.which == "mean" else x.var(axis=axes, ddof=1)
        dt = running.dtype
        m = np.asarray(self.momentum, dt)
        return m * running + (1 - m) * stat.astype(dt, copy=False)

    def onnx(self, ctx, xs, y):
        x, running = xs
        axes = _bn_axes(ctx.type_of(x).rank)
        xdt, dt = ctx.type_of(x).dtype, ctx.type_of(running).dtype
        if self.which == "mean":
            stat = ctx.node("ReduceMean", [x, ctx.ints(axes)], hint="batch_mean", keepdims=0)
        else:  # unbiased: Σ(x − μ)² / (n − 1), n the per-channel count at run time
            xc = ctx.node("Sub", [x, ctx.node("ReduceMean", [x, ctx.ints(axes)], hint="batch_mean", keepdims=1)])
            ss = ctx.node("ReduceSum", [ctx.node("Mul", [xc, xc]), ctx.ints(axes)], hint="sum_sq", keepdims=0)
            n1 = ctx.node("Sub", [_onnx_per_channel_count(ctx, x, xdt), ctx.const(1.0, xdt)], hint="n_minus_1")
            stat = ctx.node("Div", [ss, n1], hint="batch_var")
        if xdt != dt:
            from ..onnx_export import ONNX_DTYPES

            stat = ctx.node("Cast", [stat], hint="stat", to=ONNX_DTYPES[dt])
        m = np.asarray(self.momentum, dt)
        kept = ctx.node("Mul", [running, ctx.const(m, dt, "momentum")])
        ctx.node("Add", [kept, ctx.node("Mul", [stat, ctx.const(1 - m, dt, "one_minus_momentum")])], y)


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

    def forward(self, x, gamma, beta):
        _, xhat = _row_stats(x, self.eps)
        return xhat * gamma.astype(x.dtype, copy=False) + beta.astype(x.dtype, copy=False)

    def onnx(self, ctx, xs, y):
        x, gamma, beta = xs
        dtype = ctx.type_of(x).dtype
        _, _, xhat = _onnx_stats(ctx, x, [-1], self.eps, "row")
        ctx.node("Add", [ctx.node("Mul", [xhat, _onnx_as(ctx, gamma, dtype)]), _onnx_as(ctx, beta, dtype)], y)

    def vjp(self, g, xs, y, gy):
        x, gamma, beta = xs
        gx = g.op(LayerNormGradInput(eps=self.eps), [x, gamma, gy], "dx") if g.needs(0) else None
        ggamma = g.op(LayerNormGradGamma(eps=self.eps), [x, gy], "dgamma") if g.needs(1) else None
        gbeta = g.sum_to(gy, beta, "dbeta") if g.needs(2) else None
        return gx, ggamma, gbeta


class LayerNormGradInput(Op):
    """Input gradient of layernorm, per row of D features (last axis), with ``ĝ = gy·γ``:

    ``gx = (1/(D·σ))·(D·ĝ − Σ ĝ − x̂·Σ(ĝ·x̂))``, ``σ = √(var + ε)``, sums over the last axis.
    Inputs (x, gamma, gy).
    """

    kind = "layernorm_grad_input"
    arity = (3, 3)
    user_facing = False
    eps: float = Field(1e-5, gt=0)
    samples = (sample({}, (4, 6), (6,), (4, 6)), sample({}, (2, 3, 5), (5,), (2, 3, 5)))

    def infer(self, xs):
        x, gamma, gy = xs
        _check_params(self.kind, x, [gamma], ("gamma",), static(x.shape[-1], "layernorm features"), "last-axis")
        _check_like(self.kind, x, gy)
        return gy

    def window(self, xs):
        return None

    def forward(self, x, gamma, gy):
        sigma, xhat = _row_stats(x, self.eps)
        d = np.asarray(x.shape[-1], gy.dtype)
        gxhat = gy * gamma.astype(gy.dtype, copy=False)
        return (d * gxhat - gxhat.sum(axis=-1, keepdims=True) - xhat * np.sum(gxhat * xhat, axis=-1, keepdims=True)) / (d * sigma)

    def onnx(self, ctx, xs, y):
        x, gamma, gy = xs
        dtype = ctx.type_of(gy).dtype
        _, sigma, xhat = _onnx_stats(ctx, x, [-1], self.eps, "row", dtype)
        d = ctx.const(static(ctx.type_of(x).shape[-1], "layernorm features"), dtype, "features")
        last = ctx.ints([-1])
        gxhat = ctx.node("Mul", [gy, _onnx_as(ctx, gamma, dtype)], hint="gxhat")
        sum_g = ctx.node("ReduceSum", [gxhat, last], hint="sum_gxhat", keepdims=1)
        sum_gx = ctx.node("ReduceSum", [ctx.node("Mul", [gxhat, xhat]), last], hint="sum_gxhat_xhat", keepdims=1)
        inner = ctx.node("Sub", [ctx.node("Sub", [ctx.node("Mul", [d, gxhat]), sum_g]), ctx.node("Mul", [xhat, sum_gx])])
        ctx.node("Div", [inner, ctx.node("Mul", [d, sigma])], y)


class LayerNormGradGamma(Op):
    """γ gradient of layernorm: ``gγ_d = Σ_{all rows} gy·x̂`` (sum over every axis but the last).
    Inputs (x, gy); output (D,)."""

    kind = "layernorm_grad_gamma"
    arity = (2, 2)
    user_facing = False
    eps: float = Field(1e-5, gt=0)
    samples = (sample({}, (4, 6), (4, 6)), sample({}, (2, 3, 5), (2, 3, 5)))

    def infer(self, xs):
        x, gy = xs
        _check_like(self.kind, x, gy)
        return TensorType((x.shape[-1],), gy.dtype)

    def window(self, xs):
        return None

    def forward(self, x, gy):
        _, xhat = _row_stats(x, self.eps)
        return np.sum(gy * xhat, axis=tuple(range(x.ndim - 1)), dtype=gy.dtype)

    def onnx(self, ctx, xs, y):
        x, gy = xs
        _, _, xhat = _onnx_stats(ctx, x, [-1], self.eps, "row", ctx.type_of(gy).dtype)
        prod = ctx.node("Mul", [gy, xhat])
        axes = list(range(ctx.type_of(x).rank - 1))
        if axes:
            ctx.node("ReduceSum", [prod, ctx.ints(axes)], y, keepdims=0)
        else:  # a single row: nothing to sum (an empty axes input would reduce everything)
            ctx.node("Identity", [prod], y)


OPS = (BatchNorm, BatchNormTrain, BatchNormTrainGradInput, BatchNormGradGamma,
       BatchNormRunningUpdate, LayerNorm, LayerNormGradInput, LayerNormGradGamma)
