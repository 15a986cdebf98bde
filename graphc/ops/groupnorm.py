"""Group normalisation (PyTorch's ``nn.GroupNorm``): each example's channels split into G groups, each
group normalised over its channels and positions; instance normalisation is ``groups = C``.

Kernels view x (N, C, …) as (N, G, M), M = (C/G)·Π(spatial dims): each (n, g) row is normalised
like a layernorm row (``norm._row_stats``), then the per-channel γ, β apply. The input gradient is
written with means, not sums, so that M is never needed as a number (it is symbolic when the
spatial size is).
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from ..errors import ShapeError
from ..tensor import TensorType, fmt_shape, static
from .activations import _channel_view, _onnx_as, _onnx_channel_view
from .base import ONES, ZEROS, Op, Param, PositiveInt, expect_float, sample
from .norm import _check_like, _check_params, _onnx_stats, _row_stats
from .reduce import ReduceSum


def _check_groups(kind: str, x: TensorType, groups: int) -> int:
    """The channel count C of x (N, C, …), which ``groups`` must divide."""
    if x.rank < 2:
        raise ShapeError(f"{kind} input must be (N, C, …) with rank ≥ 2, got shape {fmt_shape(x.shape)}")
    c = static(x.shape[1], f"{kind} channels (axis 1)")
    if c % groups:
        divisors = ", ".join(str(d) for d in range(1, c + 1) if c % d == 0)
        raise ShapeError(f"{groups} groups do not divide the {c} channels of input {fmt_shape(x.shape)}; "
                         f"groups must divide C (here one of {divisors}; groups = {c} is instance norm)")
    return c


def _group_stats(x: np.ndarray, groups: int, eps: float):
    """``σ = √(var + ε)`` per (n, g) and ``x̂``, both on the (N, G, M) view of x."""
    return _row_stats(x.reshape(x.shape[0], groups, -1), eps)


def _onnx_ungroup(ctx, v: str, like: str, output: str | None = None) -> str:
    """(N, G, M) reshaped back to the shape of ``like`` (read at run time)."""
    return ctx.node("Reshape", [v, ctx.node("Shape", [like], hint="shape")], output, hint="ungrouped")


class _Grouped(Op):
    groups: PositiveInt

    def _view(self, ctx, v: str) -> str:
        """(N, C, …) reshaped to (N, G, M) in ONNX (``0`` copies N, ``−1`` is M: both may be symbolic)."""
        return ctx.node("Reshape", [v, ctx.ints([0, self.groups, -1])], hint="groups")


class GroupNorm(_Grouped):
    """Group normalisation of x (N, C, …) with G groups of C/G channels (G divides C):

    ``y[n, c, …] = γ_c·(x[n, c, …] − μ_{n,g})/√(σ²_{n,g} + ε) + β_c``, ``g = ⌊c·G/C⌋``, where ``μ_{n,g}``
    and ``σ²_{n,g}`` are the mean and biased variance of example n's channels ``g·C/G … (g+1)·C/G − 1``
    over all their positions. ``groups = C`` is instance normalisation (each channel of each example
    alone); ``groups = 1`` normalises each example over all of C, H, W. Same in training and inference
    (no running statistics). With ``affine`` (PyTorch's default) the parameters ``gamma`` (ones) and
    ``beta`` (zeros) of shape (C,) are trained; without it there are none. MACs 0 (as batchnorm).

    Gradients, with ``ĝ = gy·γ`` and means over a group's M elements: ``gx = (ĝ − mean ĝ − x̂·mean(ĝ·x̂))/σ``
    (``groupnorm_grad_input``), ``gγ_c = Σ_{n,…} gy·x̂`` (``groupnorm_grad_gamma``), ``gβ_c = Σ_{n,…} gy``.
    ONNX: Reshape to (N, G, M), ReduceMean statistics, Reshape back, per-channel Mul and Add (ONNX's
    own ``GroupNormalization``, opset 18 and changed at 21, has no kernel in onnxruntime's CUDA provider).
    """

    kind = "groupnorm"
    summary = "A group normalisation: each example's channel groups normalised alone (groups = C: instance norm)."
    groups: PositiveInt = Field(description="number of channel groups G; must divide the channels C (C: instance norm, 1: all channels together)")
    eps: float = Field(1e-5, gt=0, description="added to the variance before the square root")
    affine: bool = Field(True, description="learn a per-channel scale gamma and shift beta (PyTorch's affine)")

    samples = (sample({"groups": 3}, (2, 6, 3, 3)),
               sample({"groups": 4}, (2, 4, 5), note="instance norm of a sequence (N, C, L)"),
               sample({"groups": 1, "eps": 1e-3}, (2, 3, 2, 2)),
               sample({"groups": 2, "affine": False}, (3, 4, 2, 3)),
               sample({"groups": 2}, ("N", 4, 2, 2), note="symbolic batch"))

    def params(self, xs):
        c = _check_groups(self.kind, xs[0], self.groups)
        return {"gamma": Param((c,), ONES), "beta": Param((c,), ZEROS)} if self.affine else {}

    def infer(self, xs):
        x = xs[0]
        expect_float(x)
        c = _check_groups(self.kind, x, self.groups)
        want = 3 if self.affine else 1
        if len(xs) != want:
            raise ShapeError(f"groupnorm takes its input{' and 2 parameters' if self.affine else ''}, got {len(xs)} inputs")
        _check_params(self.kind, x, xs[1:], ("gamma", "beta"), c, "channel")
        return x

    def window(self, xs):
        return None  # every output reads every position of its group

    def describe(self):
        return f"g{self.groups}" + ("" if self.affine else " no affine")

    def forward(self, x, *affine):
        _, xhat = _group_stats(x, self.groups, self.eps)
        y = xhat.reshape(x.shape)
        if affine:
            gamma, beta = (_channel_view(p.astype(x.dtype, copy=False), x.ndim) for p in affine)
            y = y * gamma + beta
        return y

    def onnx(self, ctx, xs, y):
        x, dtype, rank = xs[0], ctx.type_of(xs[0]).dtype, ctx.type_of(xs[0]).rank
        _, _, xhat = _onnx_stats(ctx, x, [-1], self.eps, "group", view=self._view)
        if not self.affine:
            _onnx_ungroup(ctx, xhat, x, y)
            return
        scaled = ctx.node("Mul", [_onnx_ungroup(ctx, xhat, x), _onnx_channel_view(ctx, xs[1], rank, dtype)], hint="scaled")
        ctx.node("Add", [scaled, _onnx_channel_view(ctx, xs[2], rank, dtype)], y)

    def vjp(self, g, xs, y, gy):
        x = xs[0]
        grad_input = GroupNormGradInput(groups=self.groups, eps=self.eps)
        gx = g.op(grad_input, [x, gy, *xs[1:2]], "dx") if g.needs(0) else None
        if not self.affine:
            return (gx,)
        ggamma = g.op(GroupNormGradGamma(groups=self.groups, eps=self.eps), [x, gy], "dgamma") if g.needs(1) else None
        axes = (0, *range(2, g.type_of(x).rank))
        gbeta = g.op(ReduceSum(axes=axes, keepdims=False), [gy], "dbeta") if g.needs(2) else None
        return gx, ggamma, gbeta


class GroupNormGradInput(_Grouped):
    """Input gradient of groupnorm, per group of M elements (the (N, G, M) view), with ``ĝ = gy·γ``
    (``ĝ = gy`` without γ): ``gx = (ĝ − mean ĝ − x̂·mean(ĝ·x̂))/σ``, ``σ = √(var + ε)``.
    Inputs (x, gy) or (x, gy, gamma)."""

    kind = "groupnorm_grad_input"
    arity = (2, 3)
    user_facing = False
    eps: float = Field(1e-5, gt=0)
    samples = (sample({"groups": 3}, (2, 6, 3, 3), (2, 6, 3, 3), (6,)), sample({"groups": 2}, (3, 4, 2, 3), (3, 4, 2, 3)))

    def infer(self, xs):
        x, gy = xs[:2]
        c = _check_groups(self.kind, x, self.groups)
        _check_params(self.kind, x, xs[2:], ("gamma",), c, "channel")
        _check_like(self.kind, x, gy)
        return gy

    def window(self, xs):
        return None

    def forward(self, x, gy, *gamma):
        sigma, xhat = _group_stats(x, self.groups, self.eps)
        gxhat = gy * _channel_view(gamma[0].astype(gy.dtype, copy=False), gy.ndim) if gamma else gy
        gxhat = gxhat.reshape(xhat.shape)
        gx = (gxhat - gxhat.mean(axis=-1, keepdims=True) - xhat * np.mean(gxhat * xhat, axis=-1, keepdims=True)) / sigma
        return gx.reshape(x.shape).astype(gy.dtype, copy=False)

    def onnx(self, ctx, xs, y):
        x, gy = xs[:2]
        dtype, rank = ctx.type_of(gy).dtype, ctx.type_of(gy).rank
        _, sigma, xhat = _onnx_stats(ctx, x, [-1], self.eps, "group", dtype, self._view)
        gxhat = ctx.node("Mul", [gy, _onnx_channel_view(ctx, xs[2], rank, dtype)], hint="gxhat") if len(xs) == 3 else gy
        gxhat = self._view(ctx, gxhat)
        last = ctx.ints([-1])
        mean_g = ctx.node("ReduceMean", [gxhat, last], hint="mean_gxhat", keepdims=1)
        mean_gx = ctx.node("ReduceMean", [ctx.node("Mul", [gxhat, xhat]), last], hint="mean_gxhat_xhat", keepdims=1)
        inner = ctx.node("Sub", [ctx.node("Sub", [gxhat, mean_g]), ctx.node("Mul", [xhat, mean_gx])])
        _onnx_ungroup(ctx, ctx.node("Div", [inner, sigma]), x, y)


class GroupNormGradGamma(_Grouped):
    """γ gradient of groupnorm: ``gγ_c = Σ_{n,…} gy·x̂`` (sum over every axis but the channel axis 1),
    x̂ the group-normalised x. Inputs (x, gy); output (C,)."""

    kind = "groupnorm_grad_gamma"
    arity = (2, 2)
    user_facing = False
    eps: float = Field(1e-5, gt=0)
    samples = (sample({"groups": 3}, (2, 6, 3, 3), (2, 6, 3, 3)), sample({"groups": 4}, (2, 4, 5), (2, 4, 5)))

    def infer(self, xs):
        x, gy = xs
        c = _check_groups(self.kind, x, self.groups)
        _check_like(self.kind, x, gy)
        return TensorType((c,), gy.dtype)

    def window(self, xs):
        return None

    def forward(self, x, gy):
        _, xhat = _group_stats(x, self.groups, self.eps)
        axes = (0, *range(2, x.ndim))
        return np.sum(gy * xhat.reshape(x.shape), axis=axes, dtype=gy.dtype)

    def onnx(self, ctx, xs, y):
        x, gy = xs
        _, _, xhat = _onnx_stats(ctx, x, [-1], self.eps, "group", ctx.type_of(gy).dtype, self._view)
        prod = ctx.node("Mul", [gy, _onnx_ungroup(ctx, xhat, x)])
        ctx.node("ReduceSum", [prod, ctx.ints([0, *range(2, ctx.type_of(x).rank)])], y, keepdims=0)


OPS = (GroupNorm, GroupNormGradInput, GroupNormGradGamma)
