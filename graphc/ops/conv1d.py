"""1-D windows over (N, C, L): conv1d, maxpool1d, avgpool1d and their gradients.

Each is its 2-D counterpart over a unit height, ``(N, C, L) → (N, C, 1, L)``: a kernel ``k`` is the
2-D kernel ``1×k``, padding ``{left, right}`` is ``{top: 0, bottom: 0, left, right}``, and a conv1d
weight ``(O, C/g, k)`` is the 2-D ``(O, C/g, 1, k)``. The shape, window and cost rules, the NumPy
kernels and the ONNX lowerings are the 2-D ones, read through that lift (:class:`_Lifted`), so the
two cannot drift apart; the 1-D ops add only their attributes, their parameters and their gradients'
wiring. The window rule is the 2-D rule's width entry: one :class:`~.base.Window` per op.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, Field

from ..errors import ShapeError
from ..tensor import TensorType, static
from .base import KAIMING, ZEROS, NonNegativeInt, Op, Param, PositiveInt, expect_rank, sample
from .conv import Conv2d, Conv2dGradInput, Conv2dGradWeight, resolve_pads
from .pool import AvgPool2d, AvgPool2dGrad, MaxPool2d, MaxPool2dAt, MaxPool2dGrad
from .reduce import ReduceSum

LR_SIDES = ("left", "right")


def lr_padding(value):
    """Read a 1-D padding: ``{left, right}`` (a missing side 0) becomes (left, right); a list is refused
    (write the sides by name, as the 2-D per-side form)."""
    if isinstance(value, dict):
        unknown = [k for k in value if k not in LR_SIDES]
        if unknown:
            raise ValueError(f"padding side {unknown[0]!r} is not one of left, right (a 1-D window has no top or bottom)")
        return (value.get("left", 0), value.get("right", 0))
    if isinstance(value, list):
        raise ValueError("a 1-D padding is one int (both sides), {left: …, right: …}, 'same' or 'valid', not a list")
    return value


#: one int for both sides, {left, right}, 'same' (output ceil(L/s)) or 'valid' (none)
Padding1d = Annotated[NonNegativeInt | tuple[NonNegativeInt, NonNegativeInt] | Literal["same", "valid"], BeforeValidator(lr_padding)]
PADDING_DOC = "zeros added: one int for both ends, {left, right}, 'same' (output size ceil(L/s)) or 'valid' (none)"
#: resolved (left, right) padding, as the gradient ops store it
Pads1d = Annotated[tuple[NonNegativeInt, NonNegativeInt], BeforeValidator(lambda v: tuple(v) if isinstance(v, list) else v)]


def planar_padding(padding):
    """The 2-D padding of a 1-D one: nothing along the unit height."""
    if isinstance(padding, str):
        return padding  # 'same' over a unit height with kernel 1 adds no rows
    left, right = (padding, padding) if isinstance(padding, int) else padding
    return ((0, 0), (left, right))


def lift(t: TensorType) -> TensorType:
    """``(A, B, L)`` → ``(A, B, 1, L)``; other ranks (a bias) unchanged."""
    return t.with_shape((*t.shape[:2], 1, t.shape[2])) if t.rank == 3 else t


def unlift(t: TensorType) -> TensorType:
    return t.with_shape((*t.shape[:2], t.shape[3])) if t.rank == 4 else t


class _Lifted(Op):
    """A 1-D op computed as the 2-D op :meth:`planar` on its rank-3 inputs lifted to unit height."""

    def planar(self) -> Op:
        raise NotImplementedError

    def _check(self, xs):
        expect_rank(xs[0], 3, f"{self.kind} input (N, C, L)")

    def infer(self, xs):
        self._check(xs)
        return unlift(self.planar().infer([lift(x) for x in xs]))

    def window(self, xs):
        windows = self.planar().window([lift(x) for x in xs])
        return None if windows is None else windows[1:]

    def macs(self, xs, y):
        return self.planar().macs([lift(x) for x in xs], lift(y))

    def warnings(self, xs):
        return [w.replace("col", "position") for w in self.planar().warnings([lift(x) for x in xs])]

    def forward(self, *xs):
        y = self.planar().forward(*(x[:, :, None, :] if x.ndim == 3 else x for x in xs))
        return y[:, :, 0, :] if y.ndim == 4 else y

    def onnx(self, ctx, xs, y):
        """Unsqueeze to unit height, the 2-D lowering, Squeeze back."""
        axis = ctx.ints([2], hint="height_axis")
        lifted = []
        for x in xs:
            t = ctx.type_of(x)
            if t.rank == 3:
                x = ctx.typed(ctx.node("Unsqueeze", [x, axis], hint="planar_in"), lift(t))
            lifted.append(x)
        out = ctx.typed(ctx.fresh("planar_out"), lift(ctx.type_of(y)))
        self.planar().onnx(ctx, lifted, out)
        ctx.node("Squeeze", [out, axis], y)

    def _pads(self, length: int) -> tuple[int, int]:
        """(left, right) padding for an input of ``length``."""
        padding = self.padding if isinstance(self.padding, str) else planar_padding(self.padding)[1]
        return resolve_pads(padding, length, self.kernel, self._stride(), getattr(self, "dilation", 1))

    def _stride(self) -> int:
        return self.stride

    def describe(self):
        text = f"k{self.kernel} s{self._stride()}"
        if isinstance(self.padding, str):
            text += f" p{self.padding}"
        elif isinstance(self.padding, tuple):
            text += f" p[l{self.padding[0]} r{self.padding[1]}]"
        else:
            text += f" p{self.padding}"
        return text + (f" d{self.dilation}" if getattr(self, "dilation", 1) != 1 else "")

    def attributes(self, xs):
        """Adds ``padding_resolved`` ``[left, right]`` for a static length."""
        out = super().attributes(xs)
        if xs and xs[0].rank == 3 and isinstance(xs[0].shape[2], int):
            out["padding_resolved"] = list(self._pads(xs[0].shape[2]))
        return out


class Conv1d(_Lifted):
    """1-D cross-correlation over (N, C, L), weight (O, C/g, k) (PyTorch's ``nn.Conv1d`` layout):

    ``y[n, o, i] = b[o] + Σ_{c ∈ group(o), u < k} w[o, c, u] · xpad[n, c, s·i + d·u]``

    Output length ``floor((L + p_left + p_right − d(k−1) − 1)/s) + 1``; parameters ``O·(C/g)·k + O``;
    MACs ``O·L'·(C/g)·k`` per example. Computed as conv2d over a unit height with a 1×k kernel;
    lowered to a 1-D ONNX ``Conv``.
    """

    kind = "conv1d"
    summary = "A 1-D convolution (cross-correlation) with learnable filters, over (N, C, L) sequences."
    filters: PositiveInt = Field(description="number of output channels (O)")
    kernel: PositiveInt = Field(description="window length k")
    stride: PositiveInt = Field(1, description="step between windows")
    padding: Padding1d = Field(0, description=PADDING_DOC)
    dilation: PositiveInt = Field(1, description="spacing between kernel taps (1: contiguous)")
    groups: PositiveInt = Field(1, description="channel groups; must divide input channels and filters (groups = channels = filters: depthwise)")
    bias: bool = Field(True, description="add a learnable bias per output channel")

    samples = (
        sample({"filters": 4, "kernel": 3, "padding": 1}, (2, 3, 7)),
        sample({"filters": 4, "kernel": 3, "stride": 2, "padding": "same"}, (2, 2, 9)),
        sample({"filters": 2, "kernel": 2, "dilation": 3, "bias": False}, (1, 2, 9), note="dilated"),
        sample({"filters": 4, "kernel": 3, "groups": 2, "padding": {"left": 2, "right": 0}}, (2, 4, 6), note="grouped, causal padding"),
    )

    def planar(self):
        return Conv2d(filters=self.filters, kernel=(1, self.kernel), stride=(1, self.stride), padding=planar_padding(self.padding),
                      dilation=(1, self.dilation), groups=self.groups, bias=self.bias)

    def params(self, xs):
        self._check(xs)
        c = static(xs[0].shape[1], "input channels")
        if c % self.groups or self.filters % self.groups:
            raise ShapeError(f"groups={self.groups} must divide both input channels {c} and filters {self.filters}")
        out = {"weight": Param((self.filters, c // self.groups, self.kernel), KAIMING)}
        if self.bias:
            out["bias"] = Param((self.filters,), ZEROS)
        return out

    def describe(self):
        return f"{self.filters} " + super().describe() + (f" g{self.groups}" if self.groups != 1 else "")

    def onnx(self, ctx, xs, y):
        from .conv import onnx_cast

        t = ctx.type_of(xs[0])
        inputs = [xs[0]] + [onnx_cast(ctx, v, t.dtype) for v in xs[1:]]
        ctx.node("Conv", inputs, y, kernel_shape=[self.kernel], strides=[self.stride], dilations=[self.dilation],
                 pads=list(self._pads(static(t.shape[2], "input length"))), group=self.groups)

    def vjp(self, g, xs, y, gy):
        """``gx = conv1d_grad_input(gy, w)``, ``gw = conv1d_grad_weight(x, gy)``, ``gb = Σ_{n, l} gy``."""
        length = g.type_of(xs[0]).shape[2]
        geometry = dict(kernel=self.kernel, stride=self.stride, dilation=self.dilation, groups=self.groups, pads=self._pads(length))
        gx = g.op(Conv1dGradInput(**geometry, input_size=length), [gy, xs[1]], "dx") if g.needs(0) else None
        gw = g.op(Conv1dGradWeight(**geometry), [xs[0], gy], "dw") if g.needs(1) else None
        if not self.bias:
            return gx, gw
        return gx, gw, (g.op(ReduceSum(axes=(0, 2)), [gy], "db") if g.needs(2) else None)


class _Conv1dGeometry(_Lifted):
    """The static geometry of a forward conv1d that its gradient ops carry."""

    user_facing = False
    arity = (2, 2)
    kernel: PositiveInt
    stride: PositiveInt = 1
    dilation: PositiveInt = 1
    groups: PositiveInt = 1
    pads: Pads1d = (0, 0)

    def _geometry(self):
        return dict(kernel=(1, self.kernel), stride=(1, self.stride), dilation=(1, self.dilation), groups=self.groups,
                    pads=((0, 0), self.pads))

    def _check(self, xs):
        pass

    def window(self, xs):
        return None

    def attributes(self, xs):
        return self.model_dump(mode="json")

    def describe(self):
        return f"k{self.kernel} s{self.stride}"


class Conv1dGradInput(_Conv1dGeometry):
    """Gradient of conv1d w.r.t. its input: conv2d_grad_input over a unit height,

    ``gx[n, c, l] = Σ_{o ∈ group(c), u, i : s·i + d·u = l + p_left} w[o, c mod C/g, u] · gy[n, o, i]``.
    Inputs ``gy`` (N, O, L') and the weight (O, C/g, k); output (N, C, L), ``L = input_size``.
    """

    kind = "conv1d_grad_input"
    input_size: PositiveInt

    samples = (
        sample({"kernel": 3, "stride": 2, "pads": [1, 1], "input_size": 6}, (2, 4, 3), (4, 3, 3)),
        sample({"kernel": 2, "dilation": 2, "groups": 2, "pads": [1, 0], "input_size": 7}, (1, 4, 6), (4, 1, 2), note="grouped, dilated"),
    )

    def planar(self):
        return Conv2dGradInput(**self._geometry(), input_size=(1, self.input_size))


class Conv1dGradWeight(_Conv1dGeometry):
    """Gradient of conv1d w.r.t. its weight: conv2d_grad_weight over a unit height,

    ``gw[o, c, u] = Σ_{n, i} gy[n, o, i] · xpad[n, g(o)·C/g + c, s·i + d·u]``.
    Inputs ``x`` (N, C, L) and ``gy`` (N, O, L'); output (O, C/g, k).
    """

    kind = "conv1d_grad_weight"

    samples = (
        sample({"kernel": 3, "stride": 2, "pads": [1, 1]}, (2, 3, 6), (2, 4, 3)),
        sample({"kernel": 2, "dilation": 2, "groups": 2, "pads": [1, 0]}, (1, 2, 7), (1, 4, 6), note="grouped, dilated"),
    )

    def planar(self):
        return Conv2dGradWeight(**self._geometry())


class _Pool1d(_Lifted):
    """Attributes shared by the 1-D pools (stride defaults to the kernel)."""

    kernel: PositiveInt = Field(description="window length k")
    stride: PositiveInt | None = Field(None, description="step between windows; default: the kernel")
    padding: Padding1d = Field(0, description="padding: one int for both ends, {left, right}, 'same' or 'valid'")
    ceil_mode: bool = Field(False, description="round the output length up (a last partial window), as PyTorch's ceil_mode")

    def _stride(self):
        return self.kernel if self.stride is None else self.stride

    def _planar_attrs(self):
        return dict(kernel=(1, self.kernel), stride=(1, self._stride()), padding=planar_padding(self.padding), ceil_mode=self.ceil_mode)

    def describe(self):
        return super().describe() + (" ceil" if self.ceil_mode else "")


class _MaxPool1dAttrs(_Pool1d):
    padding: Padding1d = Field(0, description="−∞ padding: one int for both ends, {left, right}, 'same' or 'valid'")
    dilation: PositiveInt = Field(1, description="spacing between window taps")

    def planar_attrs(self):
        return dict(self._planar_attrs(), dilation=(1, self.dilation))


class MaxPool1d(_MaxPool1dAttrs):
    """1-D max pooling over (N, C, L), each channel separately:

    ``y[n, c, i] = max_{u < k} xpad[n, c, s·i + d·u]`` with ``xpad`` padded by −∞. Output length
    ``floor((L + p_left + p_right − d(k−1) − 1)/s) + 1`` (ceil in ``ceil_mode``, as PyTorch);
    ``stride`` defaults to ``kernel``. Computed as maxpool2d over a unit height (ONNX ``MaxPool``
    with a 1×k window between an Unsqueeze and a Squeeze).
    """

    kind = "maxpool1d"
    summary = "A 1-D max pooling that keeps each window's largest value, channel by channel."

    samples = (
        sample({"kernel": 2}, (2, 3, 8)),
        sample({"kernel": 3, "stride": 2, "padding": 1, "ceil_mode": True}, (1, 2, 8), note="overlapping, ceil"),
        sample({"kernel": 2, "stride": 1, "dilation": 2, "padding": {"left": 1}}, (1, 2, 7), note="dilated, per-side"),
    )

    def planar(self):
        return MaxPool2d(**self.planar_attrs())

    def vjp(self, g, xs, y, gy):
        """``gx = maxpool1d_grad(x, gy)``: each ``gy`` goes to its window's (first) maximum."""
        return (g.op(MaxPool1dGrad(**self.model_dump()), [xs[0], gy], "dx"),)


class MaxPool1dGrad(_MaxPool1dAttrs):
    """Gradient of maxpool1d: ``gx[n, c, l] = Σ_{i : argmax W_i = l} gy[n, c, i]`` (first maximum on
    ties); maxpool2d_grad over a unit height. Inputs ``x`` (N, C, L), ``gy`` (N, C, L')."""

    kind = "maxpool1d_grad"
    arity = (2, 2)
    user_facing = False
    samples = (
        sample({"kernel": 2}, (2, 3, 8), (2, 3, 4)),
        sample({"kernel": 3, "stride": 2, "padding": 1, "ceil_mode": True}, (1, 2, 8), (1, 2, 5), note="overlapping, ceil"),
    )

    def planar(self):
        return MaxPool2dGrad(**self.planar_attrs())

    def window(self, xs):
        return None


class MaxPool1dAt(_MaxPool1dAttrs):
    """Max pooling of ``x`` at the maxima of a reference ``r`` (gradient checks freeze max pooling's
    kinks with it): ``y[n, c, i] = x[n, c, argmax_{W_i} r]``; maxpool2d_at over a unit height.
    Inputs ``r``, ``x`` (N, C, L); ``gx = maxpool1d_grad(r, gy)``."""

    kind = "maxpool1d_at"
    arity = (2, 2)
    user_facing = False
    samples = (sample({"kernel": 3, "stride": 2, "padding": 1}, (1, 2, 7), (1, 2, 7)),)

    def planar(self):
        return MaxPool2dAt(**self.planar_attrs())

    def window(self, xs):
        return None

    def vjp(self, g, xs, y, gy):
        return None, (g.op(MaxPool1dGrad(**self.model_dump()), [xs[0], gy], "dx") if g.needs(1) else None)


class AvgPool1d(_Pool1d):
    """1-D average pooling over (N, C, L), each channel separately:

    ``y[n, c, i] = (1/|W_i|) Σ_{l ∈ W_i} xpad[n, c, l]``, ``W_i = {s·i + u : u < k}``; ``|W_i|`` counts
    padded positions when ``count_include_pad`` and only real ones otherwise (as PyTorch). Output
    length ``floor((L + p_left + p_right − k)/s) + 1`` (ceil in ``ceil_mode``). Computed as avgpool2d
    over a unit height (ONNX ``AveragePool`` with a 1×k window between an Unsqueeze and a Squeeze).
    """

    kind = "avgpool1d"
    summary = "A 1-D average pooling that keeps each window's mean, channel by channel."
    count_include_pad: bool = Field(False, description="divide by the whole window, padding included, instead of its real input positions")

    samples = (
        sample({"kernel": 2}, (2, 3, 8)),
        sample({"kernel": 3, "stride": 2, "padding": 1, "count_include_pad": True}, (1, 2, 7), note="padding counted"),
        sample({"kernel": 3, "stride": 2, "padding": {"right": 2}, "ceil_mode": True}, (1, 2, 8), note="per-side, ceil"),
    )

    def planar(self):
        return AvgPool2d(**self._planar_attrs(), count_include_pad=self.count_include_pad)

    def vjp(self, g, xs, y, gy):
        """``gx = avgpool1d_grad(gy)``: each ``gy`` spread evenly over its window's divisor."""
        return (g.op(AvgPool1dGrad(**self.model_dump(), input_size=g.type_of(xs[0]).shape[2]), [gy], "dx"),)


class AvgPool1dGrad(_Pool1d):
    """Gradient of avgpool1d: ``gx[n, c, l] = Σ_{i : l ∈ W_i} gy[n, c, i] / |W_i|``; avgpool2d_grad over
    a unit height. Input ``gy`` (N, C, L'); output (N, C, L), ``L = input_size``."""

    kind = "avgpool1d_grad"
    user_facing = False
    count_include_pad: bool = False
    input_size: PositiveInt

    samples = (
        sample({"kernel": 2, "input_size": 8}, (2, 3, 4)),
        sample({"kernel": 3, "stride": 2, "padding": 1, "count_include_pad": True, "input_size": 7}, (1, 2, 4)),
    )

    def planar(self):
        return AvgPool2dGrad(**self._planar_attrs(), count_include_pad=self.count_include_pad, input_size=(1, self.input_size))

    def _check(self, xs):
        expect_rank(xs[0], 3, "avgpool1d_grad gy (N, C, L')")

    def window(self, xs):
        return None


OPS = (Conv1d, Conv1dGradInput, Conv1dGradWeight, MaxPool1d, MaxPool1dGrad, MaxPool1dAt, AvgPool1d, AvgPool1dGrad)
