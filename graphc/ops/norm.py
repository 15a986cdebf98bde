"""Normalisation: batchnorm (over the batch, per channel) and layernorm (over the last axis)."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from ..errors import ShapeError
from ..tensor import TensorType, fmt_shape, static
from .activations import _onnx_as, _onnx_channel_view
from .base import ONES, ONNX_DTYPES, ZEROS, Op, Param, expect_float, expect_rank, sample
from .elementwise import Mul
from .reduce import ReduceSum, channel_sums
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


def _row_stats(x: np.ndarray, eps: float):
    """Layernorm's per-row (last axis) ``σ = √(var + ε)`` (biased variance) and ``x̂ = (x − μ)/σ``."""
    xc = x - x.mean(axis=-1, keepdims=True)
    sigma = np.sqrt(np.mean(xc * xc, axis=-1, keepdims=True) + np.asarray(eps, x.dtype))
    return sigma, xc / sigma


# --- ONNX lowering helpers (DESIGN.md §6) --------------------------------------------------------
def _onnx_stats(ctx, x: str, axes, eps: float, hint: str, dtype: str | None = None, view=None):
    """Mean-centred ``x − μ``, ``σ = √(var + ε)`` (biased variance) and ``x̂ = (x − μ)/σ`` over ``axes`` (keepdims),
    as in :func:`_row_stats`, computed in ``dtype`` (default: x's), on ``view(ctx, x)`` when given (a
    reshape of x, such as groupnorm's (N, G, M))."""
    dtype = dtype or ctx.type_of(x).dtype
    x = _onnx_as(ctx, x, dtype)
    if view is not None:
        x = view(ctx, x)
    axes = ctx.ints(list(axes))
    xc = ctx.node("Sub", [x, ctx.node("ReduceMean", [x, axes], hint=f"{hint}_mean", keepdims=1)], hint=f"{hint}_centred")
    var = ctx.node("ReduceMean", [ctx.node("Mul", [xc, xc]), axes], hint=f"{hint}_var", keepdims=1)
    sigma = ctx.node("Sqrt", [ctx.node("Add", [var, ctx.const(eps, dtype)])], hint=f"{hint}_sigma")
    return xc, sigma, ctx.node("Div", [xc, sigma], hint=f"{hint}_xhat")


def _onnx_per_channel_count(ctx, x: str, dtype: str) -> str:
    """The number of elements per channel (axis 1) of ``x`` — N or N·H·W — as a 0-d ``dtype`` value, at run time."""
    key = ("per_channel_count", x, dtype)
    if key not in ctx.shared:
        c = static(ctx.type_of(x).shape[1], "batchnorm channels (axis 1)")
        n = ctx.node("Div", [ctx.node("Size", [x]), ctx.const(c, "int64", "channels")], hint="per_channel")
        ctx.shared[key] = ctx.node("Cast", [n], hint="n", to=ONNX_DTYPES[dtype])
    return ctx.shared[key]


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
    summary = "A batch normalisation per channel, on batch statistics in training and running ones at inference."
    momentum: float = Field(0.9, ge=0, le=1, description="running statistics keep this share of their value at each step (Keras' momentum; PyTorch's is 1 − it)")
    eps: float = Field(1e-5, gt=0, description="added to the variance before the square root")

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
        y = x * _channel_view(scale, nd)
        y += _channel_view(shift, nd)  # in place: one array the size of x, not two
        return y

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


# --- training-form batchnorm ------------------------------------------------------------------------
# One training batchnorm is ``stats = batchnorm_stats(x)`` (computed once) feeding ``batchnorm_train``,
# the two running updates and the backward kernels. Kernels view x as (N, C, S) — S = H·W, or 1 for
# (N, D) — so every per-channel reduction runs along the contiguous last axis (pairwise sums or BLAS
# dots per (n, c) row), then over N in float64: the per-row results are small, the cast is free.
def _rows(a: np.ndarray) -> np.ndarray:
    """(N, C, H, W) or (N, D) viewed as (N, C, S), S = H·W or 1 (a view when contiguous)."""
    return a.reshape(a.shape[0], a.shape[1], -1)


def _count(x: np.ndarray) -> int:
    """Elements per channel: N, or N·H·W."""
    return x.size // x.shape[1]


def _col(v: np.ndarray, dtype) -> np.ndarray:
    """A per-channel vector (C,) as (C, 1), to broadcast against (N, C, S)."""
    return np.asarray(v).astype(dtype, copy=False)[:, None]


def _channel_sum(a3: np.ndarray) -> np.ndarray:
    """``Σ_{n,s} a`` per channel of (N, C, S), in float64 (per-row sums by BLAS, then over N)."""
    return channel_sums(a3, np.float64)


def _channel_dot(a3: np.ndarray, b3: np.ndarray) -> np.ndarray:
    """``Σ_{n,s} a·b`` per channel of (N, C, S), in float64."""
    if a3.shape[2] == 1:
        return np.einsum("nc,nc->c", a3[:, :, 0], b3[:, :, 0], dtype=np.float64)
    return np.vecdot(a3, b3).sum(axis=0, dtype=np.float64)


def _centred(x: np.ndarray, mean: np.ndarray, dtype) -> np.ndarray:
    """``x − μ`` as a fresh (N, C, S) array of ``dtype`` (the exact form: no ``x·a − μ·a`` cancellation)."""
    return np.subtract(_rows(x), _col(mean, x.dtype), dtype=dtype)


# The batch variance uses Σx² for Σ(x − μ)², which spares writing and re-reading a centred copy of x
# but cancels: it loses about log2(1 + μ²/σ²) bits. Channels where μ² > 3σ², 2 bits or more, are
# redone in the centred form; in ResNet-20 at initialisation that is under 1 % of them.
def _ill_conditioned(mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    """The channels whose uncentred sums lose too much to cancellation (``μ² > 3σ²``), as a mask."""
    return mean * mean > 3 * var


def _onnx_stat_view(ctx, stats: str, row: int, ndim: int, dtype: str) -> str:
    """Row ``row`` (0 mean, 1 var, 2 rstd) of a batchnorm_stats value as (1, C, 1, …) in ``dtype``."""
    v = _onnx_stat_row(ctx, stats, row, dtype)
    return ctx.node("Reshape", [v, ctx.ints([1, -1] + [1] * (ndim - 2))], hint="channel_view")


def _onnx_centred(ctx, x: str, stats: str, ndim: int, dtype: str) -> str:
    """``x − μ`` in ``dtype``, μ row 0 of ``stats``: computed once per (x, stats) in an export, and for
    ``stats = batchnorm_stats(x)`` the very value the statistics were taken from. The forward and
    gradient lowerings express x̂ = (x − μ)·r through it and per-channel factors, never as a tensor of
    its own: every tensor-sized node is a pass over memory, and they dominate batchnorm's time."""
    key = ("batchnorm_centred", x, stats, dtype)
    if key not in ctx.shared:
        mean = _onnx_stat_view(ctx, stats, 0, ndim, dtype)
        ctx.shared[key] = ctx.node("Sub", [_onnx_as(ctx, x, dtype), mean], hint="centred")
    return ctx.shared[key]


def _onnx_stat_row(ctx, stats: str, row: int, dtype: str) -> str:
    """Row ``row`` (0 mean, 1 var, 2 rstd) of a batchnorm_stats value, (C,) in ``dtype``."""
    return ctx.node("Gather", [_onnx_as(ctx, stats, dtype), ctx.const(row, "int64", "row")], hint=("mean", "var", "rstd")[row], axis=0)


def _onnx_channel_sum(ctx, a: str, ndim: int, dtype: str, output: str | None = None, wide: bool = True) -> str:
    """``Σ a`` per channel (axis 1) of an (N, C, …) value of rank ``ndim``, as (C,) in ``dtype``; with
    ``wide``, the sum over N in float64 as the kernels do (per (n, c) row in ``dtype``, then the N row
    sums): the γ-gradient ``Σ gy·x̂`` cancels (it is often tiny next to its terms) and runtimes add
    float32 sequentially, so in float32 MobileNet's training step misses the parity test's tolerance
    on bn1's γ (tests/test_onnx_specs.py). The rows' sums are float32 as in the kernels, so only the
    (N, C) partial sums are cast, not the whole activation. The sums of the statistics' cotangents
    (``Σ gy``, ``Σ gy·(x − μ)``) pass it in float32 on every example spec."""
    if not wide:
        return ctx.node("ReduceSum", [a, ctx.ints(_bn_axes(ndim))], output, hint="channel_sum", keepdims=0)
    if ndim > 2:
        a = ctx.node("ReduceSum", [a, ctx.ints(list(range(2, ndim)))], hint="row_sums", keepdims=0)
    wide_a = ctx.node("Cast", [a], hint="wide", to=ONNX_DTYPES["float64"])
    total = ctx.node("ReduceSum", [wide_a, ctx.ints([0])], hint="channel_sum64", keepdims=0)
    return ctx.node("Cast", [total], output, hint="channel_sum", to=ONNX_DTYPES[dtype])


def _check_stats(kind: str, x: TensorType, stats: TensorType, vectors=(), names=()) -> int:
    c = _check_channels(kind, x, list(vectors), tuple(names))
    if stats.shape != (3, c):
        raise ShapeError(f"{kind} stats shape {fmt_shape(stats.shape)} must be (3, {c}): rows mean, var, rstd of the "
                         f"{c} channels of x {fmt_shape(x.shape)}")
    return c


class BatchNormStats(Op):
    """Batch statistics of training-form batchnorm, per channel c (axis 1) of (N, D) or (N, C, H, W),
    over the n = N (or N·H·W) elements of the channel, as one (3, C) tensor:

    ``stats[0] = μ = Σx/n``, ``stats[1] = σ² = Σ(x − μ)²/n`` (biased), ``stats[2] = r = 1/√(σ² + ε)``.

    Computed once per batchnorm in a training step and shared by ``batchnorm_train``, the running
    updates and the backward kernels. VJP: with cotangent rows (g_μ, g_σ², g_r),
    ``gx = (g_μ + (2·g_σ² − g_r·r³)·(x − μ))/n`` (``batchnorm_stats_grad``; the term of σ² through μ is
    ``−2·Σ(x − μ)/n = 0``). Sums per (n, c) row, then over N in float64; σ² as ``Σx²/n − μ²`` (two reads
    of x, no centred copy), or ``Σ(x − μ)²/n`` on the channels where that cancels (``μ² > 3σ²``).
    """

    kind = "batchnorm_stats"
    user_facing = False
    eps: float = Field(1e-5, gt=0)
    samples = (sample({}, (4, 3, 3, 3)), sample({"eps": 1e-3}, (6, 5)))

    def infer(self, xs):
        expect_float(xs[0])
        c = _check_channels(self.kind, xs[0], [], ())
        return TensorType((3, c), xs[0].dtype)

    def window(self, xs):
        return None

    def forward(self, x):
        n, dt, x3 = _count(x), x.dtype, _rows(x)
        mean = _channel_sum(x3) / n
        var = _channel_dot(x3, x3) / n - mean * mean
        redo = _ill_conditioned(mean, var)
        mean = mean.astype(dt)
        if redo.any():
            xc = _centred(x3[:, redo], mean[redo], dt)
            var[redo] = _channel_dot(xc, xc) / n
        rstd = 1.0 / np.sqrt(var + self.eps)
        return np.stack([mean, var.astype(dt), rstd.astype(dt)])

    def onnx(self, ctx, xs, y):
        # the mean, x − μ (kept for the batchnorm's other lowerings) and its mean square: one ReduceMean of x
        x = xs[0]
        axes = ctx.ints(list(_bn_axes(ctx.type_of(x).rank)))
        dtype = ctx.type_of(x).dtype
        mean_kept = ctx.node("ReduceMean", [x, axes], hint="mean_kept", keepdims=1)
        mean = ctx.node("Reshape", [mean_kept, ctx.ints([-1])], hint="mean")
        xc = ctx.shared[("batchnorm_centred", x, y, dtype)] = ctx.node("Sub", [x, mean_kept], hint="centred")
        # (ReduceSumSquare(x − μ)/n would spare the Mul, but onnxruntime's sum of squares rounds
        # differently enough to move a near-constant channel's r, and MobileNetV2's step off parity)
        var = ctx.node("ReduceMean", [ctx.node("Mul", [xc, xc]), axes], hint="var", keepdims=0)
        sigma = ctx.node("Sqrt", [ctx.node("Add", [var, ctx.const(self.eps, dtype)])], hint="sigma")
        rstd = ctx.node("Div", [ctx.const(1.0, dtype), sigma], hint="rstd")
        rows = [ctx.node("Unsqueeze", [v, ctx.ints([0])], hint="row") for v in (mean, var, rstd)]
        ctx.node("Concat", rows, y, axis=0)

    def vjp(self, g, xs, y, gy):
        return (g.op(BatchNormStatsGrad(), [xs[0], y, gy], "dx"),)


class BatchNormStatsGrad(Op):
    """Input gradient of ``batchnorm_stats``: given x, its stats (μ, σ², r) and their cotangent rows
    (g_μ, g_σ², g_r), ``gx = (g_μ + (2·g_σ² − g_r·r³)·(x − μ))/n`` per channel, n elements per channel.
    Inputs (x, stats, gstats)."""

    kind = "batchnorm_stats_grad"
    arity = (3, 3)
    user_facing = False
    samples = (sample({}, (4, 3, 3, 3), (3, 3), (3, 3)), sample({}, (6, 5), (3, 5), (3, 5)))

    def infer(self, xs):
        x, stats, gstats = xs
        _check_stats(self.kind, x, stats)
        if gstats.shape != stats.shape:
            raise ShapeError(f"{self.kind}: gstats {fmt_shape(gstats.shape)} must have the shape of stats {fmt_shape(stats.shape)}")
        return TensorType(x.shape, gstats.dtype)

    def window(self, xs):
        return None

    def forward(self, x, stats, gstats):
        n, dt = _count(x), gstats.dtype
        mean, _, rstd = stats
        g_mean, g_var, g_rstd = gstats
        gx = _centred(x, mean, dt)
        gx *= _col((2 * g_var - g_rstd * rstd ** 3) / n, dt)
        gx += _col(g_mean / n, dt)
        return gx.reshape(x.shape)

    def onnx(self, ctx, xs, y):
        x, stats, gstats = xs
        t, dtype = ctx.type_of(x), ctx.type_of(gstats).dtype
        n = _onnx_per_channel_count(ctx, x, dtype)
        rstd = _onnx_stat_view(ctx, stats, 2, t.rank, dtype)
        g_mean, g_var, g_rstd = (_onnx_stat_view(ctx, gstats, i, t.rank, dtype) for i in range(3))
        rstd3 = ctx.node("Mul", [rstd, ctx.node("Mul", [rstd, rstd])], hint="rstd3")
        slope = ctx.node("Sub", [ctx.node("Mul", [ctx.const(2.0, dtype), g_var]), ctx.node("Mul", [g_rstd, rstd3])], hint="slope")
        xc = _onnx_centred(ctx, x, stats, t.rank, dtype)
        total = ctx.node("Add", [g_mean, ctx.node("Mul", [slope, xc])])
        ctx.node("Div", [total, n], y)


class BatchNormTrain(Op):
    """Training-form batch normalisation over axis 1 of (N, D) or (N, C, H, W), given the batch
    statistics ``stats = batchnorm_stats(x)`` (rows μ, σ², r = 1/√(σ² + ε)):

    ``y = γ·x̂ + β`` with ``x̂ = (x − μ)·r``. Inputs (x, stats, gamma, beta). The training-graph
    rewrite puts it (and the stats node) in place of ``batchnorm``; ``batchnorm_running_update`` nodes
    update the running statistics from the same stats.

    VJP, when ``stats`` is ``batchnorm_stats`` of this very x (the training graph): the fused
    ``gx = (γ·r/n)·(n·gy − Σgy − x̂·Σ(gy·x̂))`` (``batchnorm_train_grad_input``) is the whole derivative
    of y in x — directly and through μ, σ², r — so stats gets no cotangent from this node: exact, since
    the chain rule sums over paths and these paths are all inside gx; other users of stats still send
    theirs through ``batchnorm_stats``'s VJP. Otherwise (stats any tensor) each input gets its own:
    ``gx = γ·r·gy``, ``gstats`` by ``batchnorm_train_grad_stats``. Always ``gγ = Σ gy·x̂``
    (``batchnorm_grad_gamma``), ``gβ = Σ gy``.
    """

    kind = "batchnorm_train"
    arity = (4, 4)
    user_facing = False

    samples = (sample({}, (4, 3, 3, 3), (3, 3), (3,), (3,)), sample({}, (6, 5), (3, 5), (5,), (5,)))

    def infer(self, xs):
        if len(xs) != 4:
            raise ShapeError(f"batchnorm_train takes x, stats, gamma and beta, got {len(xs)} inputs")
        expect_float(xs[0])
        _check_stats(self.kind, xs[0], xs[1], xs[2:], ("gamma", "beta"))
        return xs[0]

    def window(self, xs):
        return None  # batch statistics: every output reads every input of its channel

    def forward(self, x, stats, gamma, beta):
        # y = x·a + b, a = γ·r, b = β − μ·a: two passes over x where (x − μ)·a + β takes three. Rounding
        # x·a adds about u·|μ·a| of error (u the unit roundoff of x's dtype), the order of what rounding
        # μ to that dtype in stats already costs the centred form. b is formed from the rounded a, so
        # that a's own rounding cancels between x·a and b.
        dt = x.dtype
        mean, _, rstd = stats.astype(np.float64)
        a = (gamma * rstd).astype(dt)
        y = np.multiply(_rows(x), a[:, None])
        y += _col(beta - mean * a, dt)
        return y.reshape(x.shape)

    def onnx(self, ctx, xs, y):
        # y = (x − μ)·(γ·r) + β: two passes over the centred x the statistics already made
        x, stats, gamma, beta = xs
        t = ctx.type_of(x)
        rstd = _onnx_stat_view(ctx, stats, 2, t.rank, t.dtype)
        scale = ctx.node("Mul", [_onnx_channel_view(ctx, gamma, t.rank, t.dtype), rstd], hint="scale")
        scaled = ctx.node("Mul", [_onnx_centred(ctx, x, stats, t.rank, t.dtype), scale])
        ctx.node("Add", [scaled, _onnx_channel_view(ctx, beta, t.rank, t.dtype)], y)

    def vjp(self, g, xs, y, gy):
        x, stats, gamma, beta = xs
        source = g.graph.nodes[stats]
        fused = source["op"].kind == BatchNormStats.kind and tuple(source["inputs"]) == (x,)
        c, dtype = static(g.type_of(x).shape[1], "batchnorm channels"), g.type_of(gy).dtype
        ggamma = gbeta = gx = gstats = None
        if g.needs(2) or (fused and g.needs(0)):
            ggamma = g.op(BatchNormGradGamma(), [x, stats, gy], "dgamma")
        if g.needs(3) or (fused and g.needs(0)):
            gbeta = g.op(ReduceSum(axes=_bn_axes(g.type_of(x).rank)), [gy], "dbeta")
        if g.needs(0):
            if fused:
                gx = g.op(BatchNormTrainGradInput(), [x, stats, gamma, gy, ggamma, gbeta], "dx")
            else:  # the direct term only: the statistics get their own cotangent below
                zeros = g.op(Const(value=0.0, shape=(c,), dtype=dtype), [], "zeros")
                gx = g.op(BatchNormTrainGradInput(), [x, stats, gamma, gy, zeros, zeros], "dx")
        if g.needs(1) and not fused:
            gstats = g.op(BatchNormTrainGradStats(), [x, stats, gamma, gy], "dstats")
        return gx, gstats, ggamma if g.needs(2) else None, gbeta if g.needs(3) else None


class BatchNormTrainGradInput(Op):
    """Input gradient of training-form batchnorm through the batch statistics, the compact formula:

    ``gx = (γ·r/n)·(n·gy − gβ − x̂·gγ)`` with ``x̂ = (x − μ)·r``, ``gβ = Σ gy`` and ``gγ = Σ gy·x̂``
    (sums over the n elements of each channel), μ and r from ``stats``. Inputs (x, stats, gamma, gy,
    gγ, gβ): the sums come in from the γ and β gradient nodes, so each is computed once. With
    ``gγ = gβ = 0`` it is the direct term ``γ·r·gy`` alone.
    """

    kind = "batchnorm_train_grad_input"
    arity = (6, 6)
    user_facing = False
    samples = (sample({}, (4, 3, 3, 3), (3, 3), (3,), (4, 3, 3, 3), (3,), (3,)),
               sample({}, (6, 5), (3, 5), (5,), (6, 5), (5,), (5,)))

    def infer(self, xs):
        x, stats, gamma, gy, ggamma, gbeta = xs
        _check_stats(self.kind, x, stats, [gamma, ggamma, gbeta], ("gamma", "ggamma", "gbeta"))
        _check_like(self.kind, x, gy)
        return gy

    def window(self, xs):
        return None

    def forward(self, x, stats, gamma, gy, ggamma, gbeta):
        # gx = γ·r·(gy + k·x + d) with k = −r·gγ/n, d = −k·μ − gβ/n: one array the size of x, updated in
        # place, where scaling gy and (x − μ) separately needs two. k·x and d are rounded as x·a and b
        # in batchnorm_train.
        n, dt = _count(x), gy.dtype
        mean, _, rstd = stats.astype(np.float64)
        gamma, ggamma, gbeta = (np.asarray(v, np.float64) for v in (gamma, ggamma, gbeta))
        k = (-rstd * ggamma / n).astype(dt)
        gx = np.multiply(_rows(x), k[:, None], dtype=dt)
        gx += _col(-k * mean - gbeta / n, dt)
        gx += _rows(gy)
        gx *= _col(gamma * rstd, dt)
        return gx.reshape(x.shape)

    def onnx(self, ctx, xs, y):
        x, stats, gamma, gy, ggamma, gbeta = xs
        t, dtype = ctx.type_of(x), ctx.type_of(gy).dtype
        # gx = gy·a + (x − μ)·k + d with a = γ·r, k = −a·r·gγ/n, d = −a·gβ/n: per-channel factors, so
        # four passes over tensors of x's size (x̂ is never formed)
        n = _onnx_per_channel_count(ctx, x, dtype)
        rstd = _onnx_stat_view(ctx, stats, 2, t.rank, dtype)
        gamma, ggamma, gbeta = (_onnx_channel_view(ctx, v, t.rank, dtype) for v in (gamma, ggamma, gbeta))
        a = ctx.node("Mul", [gamma, rstd], hint="scale")
        k = ctx.node("Neg", [ctx.node("Div", [ctx.node("Mul", [ctx.node("Mul", [a, rstd]), ggamma]), n])], hint="slope")
        d = ctx.node("Neg", [ctx.node("Div", [ctx.node("Mul", [a, gbeta]), n])], hint="offset")
        direct = ctx.node("Mul", [gy, a], hint="direct")
        through_stats = ctx.node("Mul", [_onnx_centred(ctx, x, stats, t.rank, dtype), k], hint="through_stats")
        ctx.node("Add", [ctx.node("Add", [direct, through_stats]), d], y)


class BatchNormTrainGradStats(Op):
    """Cotangent of the stats input of ``batchnorm_train`` (used only when stats is not the batch
    statistics of the same x), rows (g_μ, g_σ², g_r) of ``y = γ·(x − μ)·r + β``:

    ``g_μ = −γ·r·Σ gy``, ``g_σ² = 0`` (y reads σ² only through r), ``g_r = γ·Σ gy·(x − μ)``.
    Inputs (x, stats, gamma, gy); output (3, C).
    """

    kind = "batchnorm_train_grad_stats"
    arity = (4, 4)
    user_facing = False
    samples = (sample({}, (4, 3, 3, 3), (3, 3), (3,), (4, 3, 3, 3)), sample({}, (6, 5), (3, 5), (5,), (6, 5)))

    def infer(self, xs):
        x, stats, gamma, gy = xs
        _check_stats(self.kind, x, stats, [gamma], ("gamma",))
        _check_like(self.kind, x, gy)
        return TensorType(stats.shape, gy.dtype)

    def window(self, xs):
        return None

    def forward(self, x, stats, gamma, gy):
        mean, _, rstd = stats
        gamma = gamma.astype(np.float64)
        g_mean = -gamma * rstd * _channel_sum(_rows(gy))
        g_rstd = gamma * _channel_dot(_rows(gy), _centred(x, mean, gy.dtype))
        return np.stack([g_mean, np.zeros_like(g_mean), g_rstd]).astype(gy.dtype)

    def onnx(self, ctx, xs, y):
        x, stats, gamma, gy = xs
        t, dtype = ctx.type_of(x), ctx.type_of(gy).dtype
        rstd = _onnx_stat_row(ctx, stats, 2, dtype)
        gamma = _onnx_as(ctx, gamma, dtype)
        g_mean = ctx.node("Neg", [ctx.node("Mul", [ctx.node("Mul", [gamma, rstd]), _onnx_channel_sum(ctx, gy, t.rank, dtype, wide=False)])], hint="g_mean")
        xc = _onnx_centred(ctx, x, stats, t.rank, dtype)
        g_rstd = ctx.node("Mul", [gamma, _onnx_channel_sum(ctx, ctx.node("Mul", [gy, xc]), t.rank, dtype, wide=False)], hint="g_rstd")
        g_var = ctx.node("Mul", [g_mean, ctx.const(0.0, dtype)], hint="g_var")
        rows = [ctx.node("Unsqueeze", [v, ctx.ints([0])], hint="row") for v in (g_mean, g_var, g_rstd)]
        ctx.node("Concat", rows, y, axis=0)


class BatchNormGradGamma(Op):
    """γ gradient of training-form batchnorm: ``gγ_c = Σ_{n,h,w} gy·x̂`` with ``x̂ = (x − μ)·r``, μ and
    r from ``stats``. Inputs (x, stats, gy); output (C,)."""

    kind = "batchnorm_grad_gamma"
    arity = (3, 3)
    user_facing = False
    samples = (sample({}, (4, 3, 3, 3), (3, 3), (4, 3, 3, 3)), sample({}, (6, 5), (3, 5), (6, 5)))

    def infer(self, xs):
        x, stats, gy = xs
        c = _check_stats(self.kind, x, stats)
        _check_like(self.kind, x, gy)
        return TensorType((c,), gy.dtype)

    def window(self, xs):
        return None

    def forward(self, x, stats, gy):
        # centred, as onnxruntime's ReduceSum(gy·x̂): gγ is often a small difference of large terms,
        # and the uncentred Σ gy·x − μ·Σ gy rounds it differently enough to break float32 parity
        mean, _, rstd = stats
        total = _channel_dot(_rows(gy), _centred(x, mean, gy.dtype))
        return (total * rstd).astype(gy.dtype)

    def onnx(self, ctx, xs, y):
        x, stats, gy = xs
        t, dtype = ctx.type_of(x), ctx.type_of(gy).dtype
        # r·Σ gy·(x − μ), as the kernel: the centred x is shared, r applied per channel after the sum
        total = _onnx_channel_sum(ctx, ctx.node("Mul", [gy, _onnx_centred(ctx, x, stats, t.rank, dtype)]), t.rank, dtype)
        ctx.node("Mul", [total, _onnx_stat_row(ctx, stats, 2, dtype)], y)


class BatchNormRunningUpdate(Op):
    """New running statistic of batchnorm in a training step: ``r ← momentum·r + (1 − momentum)·s``,
    with ``s`` the batch mean μ (``which = "mean"``) or the UNBIASED batch variance ``σ²·n/(n − 1)``
    (``which = "var"``, as PyTorch; normalisation itself uses the biased σ²), taken from ``stats``;
    n = N (or N·H·W) is read from x's shape only. Inputs (x, stats, running_stat); output (C,).
    Not differentiable: the running statistics are state, not trained.
    """

    kind = "batchnorm_running_update"
    arity = (3, 3)
    user_facing = False
    momentum: float = Field(0.9, ge=0, le=1)
    which: Literal["mean", "var"]

    samples = (sample({"which": "mean"}, (4, 3, 3, 3), (3, 3), (3,)), sample({"which": "var"}, (4, 3, 3, 3), (3, 3), (3,)),
               sample({"which": "var", "momentum": 0.5}, (6, 5), (3, 5), (5,)))

    def infer(self, xs):
        x, stats, running = xs
        expect_float(x)
        _check_stats(self.kind, x, stats, [running], (f"running_{self.which}",))
        return running

    def window(self, xs):
        return None

    def describe(self):
        return f"{self.which} m{self.momentum:g}"

    def forward(self, x, stats, running):
        n = _count(x)
        stat = stats[0].astype(np.float64) if self.which == "mean" else stats[1].astype(np.float64) * (n / (n - 1))
        dt = running.dtype
        m = np.asarray(self.momentum, dt)
        return m * running + (1 - m) * stat.astype(dt)

    def onnx(self, ctx, xs, y):
        x, stats, running = xs
        dt = ctx.type_of(running).dtype
        row = 0 if self.which == "mean" else 1
        stat = _onnx_stat_row(ctx, stats, row, dt)
        if self.which == "var":  # unbiased: σ²·n/(n − 1), n the per-channel count at run time
            n = _onnx_per_channel_count(ctx, x, dt)
            stat = ctx.node("Div", [ctx.node("Mul", [stat, n]), ctx.node("Sub", [n, ctx.const(1.0, dt)])], hint="unbiased")
        m = np.asarray(self.momentum, dt)
        kept = ctx.node("Mul", [running, ctx.const(m, dt, "momentum")])
        ctx.node("Add", [kept, ctx.node("Mul", [stat, ctx.const(1 - m, dt, "one_minus_momentum")])], y)


class LayerNorm(Op):
    """Layer normalisation over the last axis (size D), each row separately:

    ``y = γ·(x − μ)/√(σ² + ε) + β`` with ``μ, σ²`` the mean and (biased) variance of the row.
    Parameters ``gamma`` (ones) and ``beta`` (zeros) of shape (D,). Same in training and inference.
    """

    kind = "layernorm"
    summary = "A layer normalisation of each row over its last axis."
    eps: float = Field(1e-5, gt=0, description="added to the variance before the square root")

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


OPS = (BatchNorm, BatchNormStats, BatchNormStatsGrad, BatchNormTrain, BatchNormTrainGradInput, BatchNormTrainGradStats,
       BatchNormGradGamma, BatchNormRunningUpdate, LayerNorm, LayerNormGradInput, LayerNormGradGamma)
