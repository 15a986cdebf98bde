"""Convolutions: conv2d (stride, padding incl. same/valid, dilation, groups) and conv_transpose2d."""

from __future__ import annotations

from fractions import Fraction
from typing import Literal

from pydantic import Field

from ..errors import ShapeError
from ..tensor import TensorType, static
from .base import (KAIMING, ZEROS, IntPair, Op, Param, PositiveInt, Window, conv_arith, conv_out, expect_float,
                   expect_rank, pair, sample)

Padding = IntPair | Literal["same", "valid"]


def resolve_pads(padding, n: int, k: int, s: int, d: int) -> tuple[int, int]:
    """(begin, end) padding of one spatial dim.

    ``same`` gives ``ceil(n/s)`` outputs with the extra row at the end (as ONNX SAME_UPPER and
    TensorFlow); ``valid`` is no padding.
    """
    if padding == "valid":
        return (0, 0)
    if padding == "same":
        out = -(-n // s)
        total = max((out - 1) * s + d * (k - 1) + 1 - n, 0)
        return (total // 2, total - total // 2)
    return (padding, padding)


def untiled_warning(name: str, n: int, k: int, s: int, pads: tuple[int, int], d: int, axis: str) -> list[str]:
    """The course's "illegal stride": windows that leave real input rows/cols uncovered."""
    span = n + pads[0] + pads[1] - d * (k - 1) - 1
    left_over = span % s
    if left_over > pads[1]:
        lost = left_over - pads[1]
        return [
            f"{name} windows do not tile the input along {axis}: ({n} + {pads[0] + pads[1]} − {d * (k - 1) + 1})/{s} + 1 = "
            f"{Fraction(span, s) + 1} is not an integer; the last {lost} input {axis}(s) are never read "
            f"(choose padding or stride so that (n + 2p − k) is divisible by s)"
        ]
    return []


class _Windowed(Op):
    """Shared arithmetic of conv and pooling windows over NCHW inputs."""

    def _kernel(self) -> tuple[int, int]:
        return pair(self.kernel)

    def _stride(self) -> tuple[int, int]:
        return pair(self.stride)

    def _dilation(self) -> tuple[int, int]:
        return pair(getattr(self, "dilation", 1))

    def pads(self, spatial) -> tuple[tuple[int, int], tuple[int, int]]:
        padding = self.padding if isinstance(self.padding, str) else pair(self.padding)
        return tuple(
            resolve_pads(padding if isinstance(padding, str) else padding[i], spatial[i], self._kernel()[i], self._stride()[i], self._dilation()[i])
            for i in range(2)
        )

    def out_spatial(self, x: TensorType) -> tuple[int, int]:
        h, w = (static(x.shape[2], "input height"), static(x.shape[3], "input width"))
        pads = self.pads((h, w))
        ceil_mode = getattr(self, "ceil_mode", False)
        out = []
        for n, k, s, d, p, axis in zip((h, w), self._kernel(), self._stride(), self._dilation(), pads, ("height", "width")):
            o = conv_out(n, k, s, p[0] + p[1], d, ceil_mode)
            if o < 1:
                raise ShapeError(f"output {axis} {conv_arith(n, k, s, p[0] + p[1], d, ceil_mode)} is below 1 (kernel larger than the padded input)")
            out.append(o)
        return tuple(out)

    def window(self, xs):
        pads = self.pads(xs[0].shape[2:])
        return tuple(Window(Fraction(s), Fraction(-p[0]), d * (k - 1) + 1)
                     for k, s, d, p in zip(self._kernel(), self._stride(), self._dilation(), pads))

    def warnings(self, xs):
        if getattr(self, "ceil_mode", False):
            return []
        h, w = xs[0].shape[2:]
        pads = self.pads((h, w))
        return [msg for n, k, s, d, p, axis in zip((h, w), self._kernel(), self._stride(), self._dilation(), pads, ("row", "col"))
                for msg in untiled_warning(self.kind, n, k, s, p, d, axis)]

    def describe(self) -> str:
        k, s = self._kernel(), self._stride()
        text = f"k{k[0]}" + (f"x{k[1]}" if k[0] != k[1] else "") + (f" s{s[0]}" if s == (s[0], s[0]) else f" s{s}")
        pad = self.padding if isinstance(self.padding, str) else pair(self.padding)
        text += f" p{pad}" if isinstance(pad, str) else (f" p{pad[0]}" if pad[0] == pad[1] else f" p{pad}")
        if self._dilation() != (1, 1):
            text += f" d{self._dilation()[0]}"
        return text


class Conv2d(_Windowed):
    """2-D cross-correlation, NCHW input, OIHW weight (O = filters, I = C/groups).

    ``y[n, o, i, j] = b[o] + Σ_{c∈group(o), u, v} w[o, c, u, v] · xpad[n, c, s·i + d·u, s·j + d·v]``

    Output size per spatial dim: ``floor((n + p_begin + p_end − d(k−1) − 1)/s) + 1``.
    Parameters ``O·(C/g)·kh·kw`` weights plus ``O`` biases; MACs ``O·H'·W'·(C/g)·kh·kw`` per example.
    ``groups = C = filters`` is a depthwise convolution.
    """

    kind = "conv2d"
    filters: PositiveInt
    kernel: IntPair
    stride: IntPair = 1
    padding: Padding = 0
    dilation: IntPair = 1
    groups: PositiveInt = 1
    bias: bool = True

    samples = (
        sample({"filters": 4, "kernel": 3, "padding": 1}, (2, 3, 5, 5)),
        sample({"filters": 4, "kernel": 3, "stride": 2, "padding": "same"}, (2, 2, 7, 6)),
        sample({"filters": 2, "kernel": [2, 3], "dilation": 2, "bias": False}, (1, 2, 7, 8)),
        sample({"filters": 4, "kernel": 3, "groups": 4, "padding": 1}, (2, 4, 5, 5), note="depthwise"),
    )

    def params(self, xs):
        expect_rank(xs[0], 4, "conv2d input (N, C, H, W)")
        c = static(xs[0].shape[1], "input channels")
        if c % self.groups or self.filters % self.groups:
            raise ShapeError(f"groups={self.groups} must divide both input channels {c} and filters {self.filters}")
        kh, kw = self._kernel()
        out = {"weight": Param((self.filters, c // self.groups, kh, kw), KAIMING)}
        if self.bias:
            out["bias"] = Param((self.filters,), ZEROS)
        return out

    def infer(self, xs):
        x = xs[0]
        expect_rank(x, 4, "conv2d input (N, C, H, W)")
        expect_float(x)
        c = static(x.shape[1], "input channels")
        w = xs[1]
        want = (self.filters, c // self.groups, *self._kernel())
        if c % self.groups or w.shape != want:
            raise ShapeError(f"weight shape {w.shape} does not match input channels {c} (expected {want})")
        ho, wo = self.out_spatial(x)
        return TensorType((x.shape[0], self.filters, ho, wo), x.dtype)

    def macs(self, xs, y):
        kh, kw = self._kernel()
        return y.numel() * (xs[1].shape[1]) * kh * kw

    def describe(self):
        return f"{self.filters} " + super().describe() + (f" g{self.groups}" if self.groups != 1 else "")


class ConvTranspose2d(_Windowed):
    """Transposed 2-D convolution (the gradient of conv2d w.r.t. its input), NCHW, weight (C, O/g, kh, kw).

    Output size per spatial dim: ``(n − 1)·s − 2p + d(k − 1) + output_padding + 1``.
    Each input pixel scatters ``w[c, o, :, :]`` scaled by its value into the output; MACs
    ``N·C·H·W·(O/g)·kh·kw`` per example.
    """

    kind = "conv_transpose2d"
    filters: PositiveInt
    kernel: IntPair
    stride: IntPair = 1
    padding: IntPair = 0
    output_padding: IntPair = 0
    dilation: IntPair = 1
    groups: PositiveInt = 1
    bias: bool = True

    samples = (
        sample({"filters": 3, "kernel": 2, "stride": 2}, (2, 4, 3, 3)),
        sample({"filters": 2, "kernel": 3, "stride": 2, "padding": 1, "output_padding": 1}, (1, 3, 4, 5)),
    )

    def params(self, xs):
        expect_rank(xs[0], 4, "conv_transpose2d input (N, C, H, W)")
        c = static(xs[0].shape[1], "input channels")
        if c % self.groups or self.filters % self.groups:
            raise ShapeError(f"groups={self.groups} must divide both input channels {c} and filters {self.filters}")
        out = {"weight": Param((c, self.filters // self.groups, *self._kernel()), KAIMING)}
        if self.bias:
            out["bias"] = Param((self.filters,), ZEROS)
        return out

    def infer(self, xs):
        x = xs[0]
        expect_rank(x, 4, "conv_transpose2d input (N, C, H, W)")
        expect_float(x)
        out = []
        for n, k, s, p, op, d, axis in zip(x.shape[2:], self._kernel(), self._stride(), pair(self.padding),
                                            pair(self.output_padding), self._dilation(), ("height", "width")):
            n = static(n, f"input {axis}")
            if op >= max(s, d):
                raise ShapeError(f"output_padding {op} must be smaller than stride {s} or dilation {d}")
            o = (n - 1) * s - 2 * p + d * (k - 1) + op + 1
            if o < 1:
                raise ShapeError(f"output {axis} ({n} − 1)·{s} − 2·{p} + {d}·({k} − 1) + {op} + 1 = {o} is below 1")
            out.append(o)
        return TensorType((x.shape[0], self.filters, *out), x.dtype)

    def window(self, xs):
        """Output ``o = m·s + φ`` reads inputs ``i = m + (φ + p − t·d)/s`` for the taps ``t`` where that
        is an integer: the offset of the first phase that has taps, the widest span over phases."""
        wins = []
        for k, s, p, d in zip(self._kernel(), self._stride(), pair(self.padding), self._dilation()):
            offset, span = None, 0
            for phase in range(s):
                index = [(phase + p - t * d) // s for t in range(k) if (phase + p - t * d) % s == 0]
                if index:
                    offset = min(index) if offset is None else offset
                    span = max(span, max(index) - min(index))
            wins.append(Window(Fraction(1, s), Fraction(offset or 0), span + 1))
        return tuple(wins)

    def warnings(self, xs):
        return []

    def macs(self, xs, y):
        kh, kw = self._kernel()
        return xs[0].numel() * xs[1].shape[1] * kh * kw

    def describe(self):
        return f"{self.filters} " + super().describe()
OPS = (Conv2d, ConvTranspose2d)
