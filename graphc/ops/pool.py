"""Pooling and resampling over NCHW tensors: maxpool2d, avgpool2d, global_avgpool, upsample."""

from __future__ import annotations

from fractions import Fraction
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field

from ..errors import ShapeError
from ..tensor import TensorType, static
from .base import (IDENTITY_WINDOW, Op, PositiveInt, Window, _list_to_tuple, conv_arith, conv_out, expect_float,
                   expect_rank, pair, sample)
from .conv import _Windowed

NonNegativeInt = Annotated[int, Field(ge=0)]
PositivePair = Annotated[PositiveInt | tuple[PositiveInt, PositiveInt], BeforeValidator(_list_to_tuple)]
NonNegativePair = Annotated[NonNegativeInt | tuple[NonNegativeInt, NonNegativeInt], BeforeValidator(_list_to_tuple)]
PoolPadding = NonNegativePair | Literal["same", "valid"]


class _Pool2d(_Windowed):
    """Window arithmetic shared by max and average pooling (stride defaults to the kernel)."""

    def _stride(self) -> tuple[int, int]:
        return pair(self.kernel if self.stride is None else self.stride)

    def out_spatial(self, x: TensorType) -> tuple[int, int]:
        h, w = (static(x.shape[2], "input height"), static(x.shape[3], "input width"))
        pads = self.pads((h, w))
        out = []
        for n, k, s, d, p, axis in zip((h, w), self._kernel(), self._stride(), self._dilation(), pads, ("height", "width")):
            extent = d * (k - 1) + 1
            if max(p) >= extent:
                raise ShapeError(f"{self.kind} padding {p} along {axis} must be smaller than the window extent {extent}: "
                                 f"a window would read only padding")
            o = conv_out(n, k, s, p[0] + p[1], d, self.ceil_mode)
            if o < 1:
                raise ShapeError(f"output {axis} {conv_arith(n, k, s, p[0] + p[1], d, self.ceil_mode)} is below 1 "
                                 f"(kernel larger than the padded input)")
            if self.ceil_mode and (o - 1) * s >= n + p[0]:
                o -= 1  # as PyTorch: the last window must start inside the input or its left padding
            out.append(o)
        return tuple(out)

    def infer(self, xs):
        x = xs[0]
        expect_rank(x, 4, f"{self.kind} input (N, C, H, W)")
        expect_float(x)
        ho, wo = self.out_spatial(x)
        return TensorType((x.shape[0], x.shape[1], ho, wo), x.dtype)

    def describe(self):
        return super().describe() + (" ceil" if self.ceil_mode else "")


class MaxPool2d(_Pool2d):
    """2-D max pooling, NCHW, each channel separately.

    ``y[n, c, i, j] = max_{u<kh, v<kw} xpad[n, c, s·i + d·u, s·j + d·v]`` with ``xpad`` padded by −∞.

    Output size per spatial dim: ``floor((n + p_begin + p_end − d(k−1) − 1)/s) + 1`` (ceil in
    ``ceil_mode``, dropping a last window that would start past the input and its left padding, as
    PyTorch). ``stride`` defaults to ``kernel``. No parameters; MACs 0 (only products count).
    """

    kind = "maxpool2d"
    kernel: PositivePair
    stride: PositivePair | None = None
    padding: PoolPadding = 0
    dilation: PositivePair = 1
    ceil_mode: bool = False

    samples = (
        sample({"kernel": 2, "stride": 2}, (2, 3, 4, 4)),
        sample({"kernel": 3, "stride": 2, "padding": 1, "ceil_mode": True}, (1, 2, 6, 5), note="overlapping, ceil"),
        sample({"kernel": [2, 3], "stride": 1, "dilation": 2}, (1, 2, 6, 7), note="dilated"),
    )


class AvgPool2d(_Pool2d):
    """2-D average pooling, NCHW, each channel separately.

    ``y[n, c, i, j] = (1/|W_ij|) Σ_{(h, w) ∈ W_ij} xpad[n, c, h, w]`` over the window
    ``W_ij = {(s·i + u, s·j + v) : u < kh, v < kw}``; ``|W_ij|`` counts padded positions when
    ``count_include_pad`` and only real input positions otherwise.

    Output size per spatial dim: ``floor((n + p_begin + p_end − k)/s) + 1`` (ceil in ``ceil_mode``,
    with PyTorch's rule for the last window). ``stride`` defaults to ``kernel``. MACs 0.
    """

    kind = "avgpool2d"
    kernel: PositivePair
    stride: PositivePair | None = None
    padding: PoolPadding = 0
    ceil_mode: bool = False
    count_include_pad: bool = False

    samples = (
        sample({"kernel": 2}, (2, 3, 4, 4)),
        sample({"kernel": 3, "stride": 2, "padding": 1, "count_include_pad": True}, (1, 2, 5, 6), note="padding counted"),
        sample({"kernel": 3, "stride": 2, "padding": 1, "ceil_mode": True}, (1, 2, 6, 5), note="ceil, padding not counted"),
    )


class GlobalAvgPool(Op):
    """Global average pooling: ``y[n, c] = (1/(H·W)) Σ_{h, w} x[n, c, h, w]``, (N, C, H, W) → (N, C)."""

    kind = "global_avgpool"

    samples = (sample({}, (2, 3, 4, 5)), sample({}, (1, 4, 1, 1)))

    def infer(self, xs):
        x = xs[0]
        expect_rank(x, 4, "global_avgpool input (N, C, H, W)")
        expect_float(x)
        return TensorType(x.shape[:2], x.dtype)

    def window(self, xs):
        return None


class Upsample(Op):
    """Upsampling by integer factors ``(sh, sw)``, NCHW: (N, C, H, W) → (N, C, H·sh, W·sw).

    ``nearest``: ``y[n, c, i, j] = x[n, c, ⌊i/sh⌋, ⌊j/sw⌋]``.
    ``bilinear`` (``align_corners=False``, ONNX ``half_pixel``): output ``o`` samples input coordinate
    ``(o + ½)/f − ½`` (clamped to the input), interpolating linearly between its floor and floor + 1.
    """

    kind = "upsample"
    scale: PositivePair = 2
    mode: Literal["nearest", "bilinear"] = "nearest"

    samples = (
        sample({}, (2, 3, 3, 4)),
        sample({"scale": [2, 3], "mode": "bilinear"}, (1, 2, 3, 4)),
        sample({"scale": 2, "mode": "bilinear"}, (1, 1, 4, 4)),
    )

    def infer(self, xs):
        x = xs[0]
        expect_rank(x, 4, "upsample input (N, C, H, W)")
        expect_float(x)
        sh, sw = pair(self.scale)
        h, w = static(x.shape[2], "input height"), static(x.shape[3], "input width")
        return TensorType((x.shape[0], x.shape[1], h * sh, w * sw), x.dtype)

    def window(self, xs):
        wins = []
        for f in pair(self.scale):
            if self.mode == "nearest":
                wins.append(Window(Fraction(1, f), Fraction(0), 1))
            elif f == 1:
                wins.append(IDENTITY_WINDOW)
            else:
                # output 0 samples input coordinate 0.5/f − 0.5 < 0: it reads indices −1 (clamped) and 0
                wins.append(Window(Fraction(1, f), Fraction(-1), 2))
        return tuple(wins)

    def describe(self):
        sh, sw = pair(self.scale)
        return (f"×{sh}" if sh == sw else f"×{sh}x{sw}") + f" {self.mode}"


OPS = (MaxPool2d, AvgPool2d, GlobalAvgPool, Upsample)
