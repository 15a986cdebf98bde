"""Pooling and resampling over NCHW tensors: maxpool2d, avgpool2d, global_avgpool, upsample."""

from __future__ import annotations

from fractions import Fraction
from typing import Annotated, Literal

import numpy as np
from numpy.lib.stride_tricks import as_strided
from pydantic import BeforeValidator, Field

from ..errors import ShapeError
from ..tensor import TensorType, static
from .base import (
    IDENTITY_WINDOW,
    ONNX_DTYPES,
    Op,
    NonNegativePair,
    PositiveInt,
    PositivePair,
    Window,
    _list_to_tuple,
    conv_arith,
    conv_out,
    expect_float,
    expect_rank,
    pair,
    sample,
)
from .conv import Padding, Size2, _span, _Windowed, onnx_cast, onnx_transposed_conv, padded

PoolPadding = Padding  # one int, [ph, pw], {top, bottom, left, right}, 'same' or 'valid'


def windows(xp: np.ndarray, kernel, stride, dilation, out_hw) -> np.ndarray:
    """Read-only view (kh, kw, N, C, Ho, Wo) of the pooling windows of a padded NCHW array: reducing
    over the two leading axes is elementwise over whole output planes (no short inner loops)."""
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    n, c = xp.shape[:2]
    s_n, s_c, s_h, s_w = xp.strides
    return as_strided(xp, (kh, kw, n, c, *out_hw), (dh * s_h, dw * s_w, s_n, s_c, sh * s_h, sw * s_w), writeable=False)


def window_counts(n: int, k: int, s: int, pads: tuple[int, int], out: int, include_pad: bool) -> np.ndarray:
    """Divisor of each average-pooling window along one axis, as PyTorch: the window clipped to the
    padded input ``[−p_begin, n + p_end)`` (``count_include_pad``) or to the real input ``[0, n)``."""
    start = np.arange(out) * s - pads[0]
    end = np.minimum(start + k, n + pads[1])
    if not include_pad:
        start, end = np.maximum(start, 0), np.minimum(end, n)
    return end - start


def window_matrix(n: int, k: int, s: int, pads: tuple[int, int], out: int) -> np.ndarray:
    """``A[i, h] = 1`` where real input ``h`` lies in window ``i``: (out, n); the window sum is ``A · x``."""
    start = np.arange(out)[:, None] * s - pads[0]
    h = np.arange(n)[None, :]
    return ((h >= start) & (h < start + k)).astype(np.float64)


def separable(x: np.ndarray, a_h: np.ndarray, a_w: np.ndarray) -> np.ndarray:
    """``A_h · x[n, c] · A_wᵀ`` for every image: one GEMM along W, one stacked matmul along H."""
    n, c, h, w = x.shape
    t = (x.reshape(n * c * h, w) @ a_w.T.astype(x.dtype)).reshape(n, c, h, a_w.shape[0])
    return np.matmul(a_h.astype(x.dtype), t)


# --- ONNX lowering helpers ----------------------------------------------------------------------------


def _floor_geometry(op, in_hw):
    """``(out, pads, ends)``: the op's output size, its padding, and end paddings with which floor-mode
    pooling (ONNX ``ceil_mode=0``) gives exactly ``out`` windows — ceil mode (with PyTorch's rule for the
    last window) made explicit, so no runtime's own ceil rule is relied on; no window reaches past them."""
    out = op.out_spatial(TensorType((1, 1, *in_hw), "float32"))
    pads = op.pads(in_hw)
    if any(p is None for p in pads):
        raise ShapeError(f"'same' padding with stride {op._stride()} over the symbolic size ({in_hw[0]}, {in_hw[1]}) "
                         f"has no static ONNX padding")
    ends = []
    for o, k, s, d, n, p in zip(out, op._kernel(), op._stride(), op._dilation(), in_hw, pads):
        end = _span(o, k, s, d) - n - p[0]
        if not isinstance(end, int):  # a symbolic size: floor mode's own end padding gives the same windows
            if op.ceil_mode:
                raise ShapeError(f"ceil_mode over the symbolic size {n} has no static ONNX padding")
            end = p[1]
        ends.append(max(0, end))
    return out, pads, ends


def _onnx_pool_input(ctx, op, x, in_hw, fill, explicit: bool = False):
    """``(x', pool_pads, padded)``: the pool's input and ``pads`` attribute. onnxruntime requires each pad
    to be smaller than the kernel (not the dilated extent): otherwise — or when ``explicit`` — ``x`` is
    padded explicitly with ``fill`` (``padded`` is then True and window indices refer to the padded
    tensor). MaxPool's indices use ``explicit``: with a ``pads`` attribute, onnx's ReferenceEvaluator
    numbers them in the padded tensor where onnxruntime numbers them in the input."""
    out, pads, ends = _floor_geometry(op, in_hw)
    begins = [pads[0][0], pads[1][0]]
    k = op._kernel()
    if not any(begins + ends) or (not explicit and all(p < kk for p, kk in zip(begins + ends, k + k))):
        return x, [*begins, *ends], False
    dtype = ctx.type_of(x).dtype
    xp = ctx.node("Pad", [x, ctx.ints([0, 0, *begins, 0, 0, *ends]), ctx.const(fill, dtype)], hint="padded")
    return xp, [0, 0, 0, 0], True


def _onnx_maxpool(ctx, op, x, output=None):
    """MaxPool (floor mode, explicit pads) of ``x``."""
    t = ctx.type_of(x)
    xp, pool_pads, _ = _onnx_pool_input(ctx, op, x, t.shape[2:], -np.inf)
    attrs = dict(kernel_shape=list(op._kernel()), strides=list(op._stride()), dilations=list(op._dilation()), pads=pool_pads)
    return ctx.node("MaxPool", [xp], output, hint="maxpool", **attrs)


def _onnx_maxpool_indices(ctx, op, x) -> list[str]:
    """MaxPool of ``x`` with its Indices output: ``[values, indices]``, the indices flat over
    N·C·H·W (row-major), of each window's first maximum in row-major order. Only for unpadded pools: onnx's
    ReferenceEvaluator numbers padded inputs' indices differently from onnxruntime."""
    attrs = dict(kernel_shape=list(op._kernel()), strides=list(op._stride()), dilations=list(op._dilation()))
    return ctx.node_outputs("MaxPool", [x], ["maxpool", "first_max"], **attrs)


def _tiled_first_max_grad(ctx, x, gy, kernel, chw, y) -> None:
    """Max pooling's gradient where the windows tile ``x`` exactly, as full-size elementwise nodes:
    ``eq = [x = up(m)]`` with ``m`` the windows' maxima (a plain MaxPool, which onnxruntime runs
    fast) and ``up`` the nearest-neighbour upsampling (a depthwise ConvTranspose of ones, which
    onnxruntime runs faster than Resize and whose shape keeps a symbolic batch); the window sum ``code = Σ_t eq_t·2^(K−1−t)``
    over its K taps in row-major order (a depthwise Conv; exact below 2^24) marks the first maximum as
    the tap ``t`` with ``eq_t`` and ``up(code) < 2^(K−t)``; ``gx = up(gy)`` there, 0 elsewhere."""
    (kh, kw), (c, h, w) = kernel, chw
    dtype, k = "float32", kh * kw
    window = dict(kernel_shape=[kh, kw], strides=[kh, kw])
    ones = ctx.const(np.ones((c, 1, kh, kw)), dtype, "upsample")

    def up(v, hint):  # each value to its window's kh × kw positions: exact (one product by 1), and N stays N
        return ctx.node("ConvTranspose", [v, ones], hint=hint, strides=[kh, kw], group=c)
    tap_weight = 2.0 ** (k - 1 - np.arange(k, dtype=np.float64))
    # the forward pool's own attributes (_onnx_maxpool), so that a runtime's common-subexpression
    # elimination merges the two: onnxruntime compares attributes as written, defaults not filled in
    maxima = ctx.node("MaxPool", [x], hint="maxpool", **window, dilations=[1, 1], pads=[0, 0, 0, 0])
    eq = ctx.node("Equal", [x, up(maxima, "max_up")], hint="at_max")
    code = ctx.node("Conv", [ctx.node("Cast", [eq], hint="at_max_f", to=ONNX_DTYPES[dtype]),
                             ctx.const(np.tile(tap_weight.reshape(1, 1, kh, kw), (c, 1, 1, 1)), dtype, "tap_weights")],
                    hint="code", group=c, **window)
    bound = np.tile((2.0 * tap_weight).reshape(kh, kw), (h // kh, w // kw)).reshape(1, 1, h, w)
    first = ctx.node("And", [eq, ctx.node("Less", [up(code, "code_up"), ctx.const(bound, dtype, "first_bound")], hint="none_before")],
                     hint="first_max")
    # a product with the 0/1 mask rather than a Where: onnxruntime vectorises Mul, not Where
    ctx.node("Mul", [up(gy, "gy_up"), ctx.node("Cast", [first], hint="first_max_f", to=ONNX_DTYPES[dtype])], y)


def _onnx_first_max_taps(ctx, op, r):
    """``(rp, [(tap, mask)])``: ``r`` padded with −∞ and, per kernel tap, the boolean (N, C, Ho, Wo) mask of
    the windows whose first maximum (row-major tap order, as the kernel) sits at that tap.

    Built from MaxPool's values and per-tap strided Slices, not from MaxPool's Indices output: onnx's
    ReferenceEvaluator numbers those differently from onnxruntime."""
    t = ctx.type_of(r)
    out, pads, ends = _floor_geometry(op, t.shape[2:])
    (pt, _), (pl, _) = pads
    rp = ctx.node("Pad", [r, ctx.ints([0, 0, pt, pl, 0, 0, ends[0], ends[1]]), ctx.const(-np.inf, t.dtype)], hint="padded")
    (kh, kw), (sh, sw), (dh, dw) = op._kernel(), op._stride(), op._dilation()
    best = ctx.node("MaxPool", [rp], hint="maxpool", kernel_shape=[kh, kw], strides=[sh, sw], dilations=[dh, dw])
    claimed, masks = None, []
    for u in range(kh):
        for v in range(kw):
            start = [u * dh, v * dw]
            stop = [u * dh + (out[0] - 1) * sh + 1, v * dw + (out[1] - 1) * sw + 1]
            tap = ctx.node("Slice", [rp, ctx.ints(start), ctx.ints(stop), ctx.ints([2, 3]), ctx.ints([sh, sw])], hint=f"tap{u}{v}")
            hit = ctx.node("Equal", [tap, best], hint=f"is_max{u}{v}")
            first = hit if claimed is None else ctx.node("And", [hit, ctx.node("Not", [claimed], hint="unclaimed")], hint=f"first{u}{v}")
            claimed = hit if claimed is None else ctx.node("Or", [claimed, hit], hint="claimed")
            masks.append(((u, v), first))
    return rp, masks


def _unpad(ctx, op, name, in_hw, output=None):
    """Crop an explicitly padded pool input back to ``in_hw``."""
    (pt, _), (pl, _) = op.pads(in_hw)
    return ctx.node("Slice", [name, ctx.ints([pt, pl]), ctx.ints([pt + in_hw[0], pl + in_hw[1]]), ctx.ints([2, 3])], output)


def window_max(xp: np.ndarray, kernel, stride, dilation, out_hw) -> np.ndarray:
    """Each window's maximum, separably: first over the kw taps along every padded row, then over the kh
    rows of each window — ``(kw − 1)·Hp + (kh − 1)·Ho`` elementwise maxima of (N, C, ·, Wo) planes instead
    of ``kh·kw − 1`` of (N, C, Ho, Wo) ones: half the work for overlapping 3×3 windows, contiguous rows
    in the second pass. Row by row keeps the row-major tap order: on equal values ``np.maximum`` returns
    its second operand, so a ±0 maximum keeps the sign of the last equal tap, as one tap-by-tap loop."""
    (kh, kw), (sh, sw), (dh, dw), (ho, wo) = kernel, stride, dilation, out_hw
    cols = [xp[:, :, :_span(ho, kh, sh, dh), v * dw:v * dw + (wo - 1) * sw + 1:sw] for v in range(kw)]
    rows = np.maximum(cols[0], cols[1]) if kw > 1 else cols[0]
    for col in cols[2:]:
        np.maximum(rows, col, out=rows)
    taps = [rows[:, :, u * dh:u * dh + (ho - 1) * sh + 1:sh] for u in range(kh)]
    best = np.maximum(taps[0], taps[1]) if kh > 1 else taps[0].copy()
    for tap in taps[2:]:
        np.maximum(best, tap, out=best)
    return best


def tap_view(xp: np.ndarray, t: int, kernel, stride, dilation, out_hw) -> np.ndarray:
    """The (N, C, Ho, Wo) strided view of the inputs that tap ``t`` of every window reads."""
    (_, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    u, v = divmod(t, kw)
    return xp[:, :, u * dh:u * dh + (out_hw[0] - 1) * sh + 1:sh, v * dw:v * dw + (out_hw[1] - 1) * sw + 1:sw]


class _Pool2d(_Windowed):
    """Window arithmetic shared by max and average pooling (stride defaults to the kernel)."""

    def _stride(self) -> tuple[int, int]:
        return pair(self.kernel if self.stride is None else self.stride)

    def out_spatial(self, x: TensorType) -> tuple:
        """As a convolution's, with ceil mode's rule for the last window; symbolic sizes give expressions."""
        h, w = x.shape[2], x.shape[3]
        pads = self.pads((h, w))
        out = []
        for n, k, s, d, p, axis in zip((h, w), self._kernel(), self._stride(), self._dilation(), pads, ("height", "width")):
            extent = d * (k - 1) + 1
            if p is None:  # 'same' over a symbolic size: ceil(n/s), its padding below the extent
                out.append((n + s - 1) // s)
                continue
            if max(p) >= extent:
                raise ShapeError(f"{self.kind} padding {p} along {axis} must be smaller than the window extent {extent}: "
                                 f"a window would read only padding")
            o = conv_out(n, k, s, p[0] + p[1], d, self.ceil_mode)
            if isinstance(o, int) and o < 1:
                raise ShapeError(f"output {axis} {conv_arith(n, k, s, p[0] + p[1], d, self.ceil_mode)} is below 1 "
                                 f"(kernel larger than the padded input)")
            if self.ceil_mode and self._last_window_outside(n, o, s, p, extent, axis):
                o -= 1  # as PyTorch: the last window must start inside the input or its left padding
            out.append(o)
        return tuple(out)

    def _last_window_outside(self, n, o, s: int, p: tuple[int, int], extent: int, axis: str) -> bool:
        """Whether ceil mode's last window starts past the input and its left padding: ``(o − 1)·s ≥ n + p₀``.
        For a symbolic ``n`` it is decided when it never happens: ``(o − 1)·s ≤ span + s − 1`` with
        ``span = n + p₀ + p₁ − extent``, below ``n + p₀`` whenever ``p₁ + s − 1 < extent``."""
        if isinstance(n, int):
            return (o - 1) * s >= n + p[0]
        if p[1] + s - 1 < extent:
            return False
        raise ShapeError(f"{self.kind} with ceil_mode, stride {s} and end padding {p[1]} along {axis} needs a static size: "
                         f"whether its last window starts past the input depends on {n}")

    def infer(self, xs):
        x = xs[0]
        expect_rank(x, 4, f"{self.kind} input (N, C, H, W)")
        expect_float(x)
        ho, wo = self.out_spatial(x)
        return TensorType((x.shape[0], x.shape[1], ho, wo), x.dtype)

    def describe(self):
        return super().describe() + (" ceil" if self.ceil_mode else "")

    def _padded_windows(self, x, fill):
        """``x`` padded with ``fill`` (grown at the end for ceil mode's last window) and its window view."""
        out = self.out_spatial(TensorType(x.shape, str(x.dtype)))
        k, s, d = self._kernel(), self._stride(), self._dilation()
        need = tuple(_span(o, *ksd) for o, ksd in zip(out, zip(k, s, d)))
        pads = self.pads(x.shape[2:])
        if any(p for pair_ in pads for p in pair_) or need[0] > x.shape[2] or need[1] > x.shape[3]:
            xp = padded(x, pads, need, fill=fill)
        else:
            xp = x  # windows inside the input: no padded copy
        return xp, windows(xp, k, s, d, out)


    def _divisors(self, in_hw, out_hw):
        """Average pooling's per-axis window sizes (its ``count_include_pad`` rule)."""
        pads = self.pads(in_hw)
        return [window_counts(n, k, s, p, o, self.count_include_pad)
                for n, k, s, p, o in zip(in_hw, self._kernel(), self._stride(), pads, out_hw)]


class _MaxPoolAttrs(_Pool2d):
    """The attributes of max pooling, shared by the forward op and the ops derived from it."""

    kernel: PositivePair = Field(description="window size: one int for both spatial dims or [kh, kw]")
    stride: PositivePair | None = Field(None, description="step between windows: one int or [sh, sw]; default: the kernel")
    padding: PoolPadding = Field(0, description="−∞ padding: one int for all sides, [ph, pw], {top, bottom, left, right}, 'same' or 'valid'")
    dilation: PositivePair = Field(1, description="spacing between window taps: one int or [dh, dw]")
    ceil_mode: bool = Field(False, description="round the output size up (a last partial window), as PyTorch's ceil_mode")


class MaxPool2d(_MaxPoolAttrs):
    """2-D max pooling, NCHW, each channel separately.

    ``y[n, c, i, j] = max_{u<kh, v<kw} xpad[n, c, s·i + d·u, s·j + d·v]`` with ``xpad`` padded by −∞.

    Output size per spatial dim: ``floor((n + p_begin + p_end − d(k−1) − 1)/s) + 1`` (ceil in
    ``ceil_mode``, dropping a last window that would start past the input and its left padding, as
    PyTorch). ``stride`` defaults to ``kernel``. No parameters; MACs 0 (only products count).
    """

    kind = "maxpool2d"
    summary = "A 2-D max pooling that keeps each window's largest value, channel by channel."

    samples = (
        sample({"kernel": 2, "stride": 2}, (2, 3, 4, 4)),
        sample({"kernel": 3, "stride": 2, "padding": 1, "ceil_mode": True}, (1, 2, 6, 5), note="overlapping, ceil"),
        sample({"kernel": [2, 3], "stride": 1, "dilation": 2}, (1, 2, 6, 7), note="dilated"),
        sample({"kernel": 3, "stride": 2, "padding": {"top": 0, "bottom": 1, "left": 1, "right": 0}}, (1, 2, 6, 5), note="per-side"),
    )

    def forward(self, x):
        xp, win = self._padded_windows(x, -np.inf)
        return window_max(xp, self._kernel(), self._stride(), self._dilation(), win.shape[4:])

    def onnx(self, ctx, xs, y):
        _onnx_maxpool(ctx, self, xs[0], y)

    def vjp(self, g, xs, y, gy):
        """``gx = maxpool2d_grad(x, gy)``: each ``gy`` goes to its window's (first) maximum."""
        return (g.op(MaxPool2dGrad(**self.model_dump()), [xs[0], gy], "dx"),)


class MaxPool2dGrad(_MaxPoolAttrs):
    """Gradient of maxpool2d: ``gx[n, c, h, w] = Σ_{i, j : argmax W_ij = (h, w)} gy[n, c, i, j]``.

    The argmax is recomputed from ``x`` (inputs ``x`` (N, C, H, W), ``gy`` (N, C, Ho, Wo)); on ties the
    first maximum in row-major window order wins (as PyTorch); −∞ padding never wins. Same attributes
    as the forward maxpool2d.
    """

    kind = "maxpool2d_grad"
    arity = (2, 2)
    user_facing = False

    samples = (
        sample({"kernel": 2, "stride": 2}, (2, 3, 4, 4), (2, 3, 2, 2)),
        sample({"kernel": 3, "stride": 2, "padding": 1, "ceil_mode": True}, (1, 2, 6, 5), (1, 2, 4, 3), note="overlapping, ceil"),
    )

    def infer(self, xs):
        x, gy = xs
        y = super().infer([x])
        if tuple(gy.shape) != tuple(y.shape):
            raise ShapeError(f"gy {gy.shape} is not the maxpool2d output {y.shape}")
        return x

    def window(self, xs):
        return None

    def warnings(self, xs):
        return []

    def forward(self, x, gy, best=None):
        """``gy`` routed tap by tap in row-major order: tap ``t`` takes the part of ``gy`` that no earlier
        tap took where it holds the window's maximum, so a tie goes to the first maximum. ``best``: the
        windows' maxima, when the forward max pool's output is at hand."""
        xp, win = self._padded_windows(x, -np.inf)
        kernel, stride, dilation, out = self._kernel(), self._stride(), self._dilation(), gy.shape[2:]
        if best is None:
            best = window_max(xp, kernel, stride, dilation, out)
        # windows at least their extent apart: no input is read by two windows, so each tap's view of
        # gx is written once, directly; if their o·k distinct inputs are all n inputs, nothing is left to zero
        disjoint = all(s >= _span(1, k, s, d) for k, s, d in zip(kernel, stride, dilation))
        tiled = disjoint and xp is x and all(o * k == n for o, k, n in zip(out, kernel, x.shape[2:]))
        gxp = (np.empty if tiled else np.zeros)(xp.shape, gy.dtype)
        share = None if disjoint else np.empty_like(gy)
        kh, kw = kernel
        left = gy  # the part of gy no earlier tap took
        for t in range(kh * kw):
            view = tap_view(gxp, t, kernel, stride, dilation, out)
            dest = view if disjoint else share
            if t == kh * kw - 1:  # what is left: the maximum is here, or nowhere (a NaN window, as before)
                np.add(left, 0, out=dest)  # + 0: −0.0 becomes +0.0, as in a sum into zeros
            else:
                kept = left * (win[t // kw, t % kw] != best)
                # exact, no masks: where t holds the maximum, left − 0 = left; elsewhere left − left = +0.0
                # (for finite gy; an infinite gy, whose window the zero-filled sum filled with NaN, gets NaN)
                np.subtract(left, kept, out=dest)
                left = kept
            if not disjoint:  # overlapping windows: taps' views share inputs, so accumulate
                view += dest
        (pt, _), (pl, _) = self.pads(x.shape[2:])
        return gxp[:, :, pt:pt + x.shape[2], pl:pl + x.shape[3]]

    def reuse_forward(self, xs, earlier, earlier_xs):
        """The forward max pool of the same x, same attributes: its output is the windows' maxima."""
        if earlier.kind != MaxPool2d.kind or tuple(earlier_xs) != (xs[0],) or earlier.model_dump() != self.model_dump():
            return None
        return self.forward

    def onnx(self, ctx, xs, y):
        """Per tap, ``gy`` where that tap holds the window's first maximum; one ConvTranspose with one-hot
        kernels scatters every tap's share back to its input position. Windows that tile the input
        exactly (stride = kernel, no padding or dilation) take a shorter road: in float32 (of up to
        24 taps) :func:`_tiled_first_max_grad`, else MaxPool's indices of the first maxima and one
        ScatterElements of gy (onnxruntime's MaxPool with Indices is its slow generic kernel)."""
        x, gy = xs
        t = ctx.type_of(x)
        dtype = ctx.type_of(gy).dtype
        (kh, kw), (sh, sw) = self._kernel(), self._stride()
        h, w = t.shape[2:]
        tiled = ((kh, kw) == (sh, sw) and self._dilation() == (1, 1) and not any(p for pr in self.pads((h, w)) for p in pr)
                 and h % kh == 0 and w % kw == 0)
        if tiled and dtype == "float32" and kh * kw <= 24:
            _tiled_first_max_grad(ctx, x, gy, (kh, kw), t.shape[1:], y)
            return
        if tiled:
            # MaxPool's Indices output (the first maximum in row-major window order, as the kernel's tie
            # rule), taken within each (n, c) plane, scatters gy into zeros: no window transposes or
            # masks. Zeros of x's shape by a Where that never takes x, and every reshape keeps N (0):
            # no Shape node for a symbolic batch, and N stays in the shapes a runtime infers
            _, indices = _onnx_maxpool_indices(ctx, self, x)
            planes = ctx.ints([0, t.shape[1], -1])
            in_plane = ctx.node("Mod", [ctx.node("Reshape", [indices, planes], hint="first_max_nc"), ctx.ints(h * w)], hint="first_max_in_plane")
            zeros = ctx.node("Where", [ctx.const(False, "bool", "never"), ctx.node("Reshape", [onnx_cast(ctx, x, dtype), planes], hint="x_nc"),
                                       ctx.const(0.0, dtype)], hint="zeros")
            gx = ctx.node("ScatterElements", [zeros, in_plane, ctx.node("Reshape", [gy, planes], hint="gy_nc")], hint="scatter", axis=2)
            ctx.node("Reshape", [gx, ctx.ints([0, *t.shape[1:]])], y)
            return
        xp, masks = _onnx_first_max_taps(ctx, self, x)
        (kh, kw), (sh, sw), (dh, dw) = self._kernel(), self._stride(), self._dilation()
        ho, wo = ctx.type_of(gy).shape[2:]
        shares = [ctx.node("Unsqueeze", [ctx.node("Where", [m, gy, ctx.const(0.0, dtype)], hint=f"share{u}{v}"), ctx.ints([2])],
                           hint=f"share{u}{v}_") for (u, v), m in masks]
        stacked = ctx.node("Reshape", [ctx.node("Concat", shares, hint="shares", axis=2), ctx.ints([-1, kh * kw, ho, wo])], hint="shares_nc")
        onehot = np.zeros((kh * kw, 1, kh, kw), dtype=dtype)
        for k in range(kh * kw):
            onehot[k, 0, k // kw, k % kw] = 1.0
        spread = ctx.node("ConvTranspose", [stacked, ctx.const(onehot, dtype, "onehot_taps")], hint="scatter",
                          strides=[sh, sw], dilations=[dh, dw])
        # the scatter covers the windows' span; the padded input may extend further (floor mode)
        out, pads, ends = _floor_geometry(self, t.shape[2:])
        hp, wp = t.shape[2] + pads[0][0] + ends[0], t.shape[3] + pads[1][0] + ends[1]
        span_h, span_w = _span(ho, kh, sh, dh), _span(wo, kw, sw, dw)
        padded = ctx.node("Pad", [spread, ctx.ints([0, 0, 0, 0, 0, 0, hp - span_h, wp - span_w])], hint="scatter_full")
        gxp = ctx.node("Reshape", [padded, ctx.node("Shape", [xp], hint="xp_shape")], hint="gx_padded")
        _unpad(ctx, self, gxp, t.shape[2:], y)


class AvgPool2d(_Pool2d):
    """2-D average pooling, NCHW, each channel separately.

    ``y[n, c, i, j] = (1/|W_ij|) Σ_{(h, w) ∈ W_ij} xpad[n, c, h, w]`` over the window
    ``W_ij = {(s·i + u, s·j + v) : u < kh, v < kw}``; ``|W_ij|`` counts padded positions when
    ``count_include_pad`` and only real input positions otherwise.

    Output size per spatial dim: ``floor((n + p_begin + p_end − k)/s) + 1`` (ceil in ``ceil_mode``,
    with PyTorch's rule for the last window). ``stride`` defaults to ``kernel``. MACs 0.
    """

    kind = "avgpool2d"
    summary = "A 2-D average pooling that keeps each window's mean, channel by channel."
    kernel: PositivePair = Field(description="window size: one int for both spatial dims or [kh, kw]")
    stride: PositivePair | None = Field(None, description="step between windows: one int or [sh, sw]; default: the kernel")
    padding: PoolPadding = Field(0, description="zero padding: one int for all sides, [ph, pw], {top, bottom, left, right}, 'same' or 'valid'")
    ceil_mode: bool = Field(False, description="round the output size up (a last partial window), as PyTorch's ceil_mode")
    count_include_pad: bool = Field(False, description="divide by the whole window, padding included, instead of its real input positions")

    samples = (
        sample({"kernel": 2}, (2, 3, 4, 4)),
        sample({"kernel": 3, "stride": 2, "padding": 1, "count_include_pad": True}, (1, 2, 5, 6), note="padding counted"),
        sample({"kernel": 3, "stride": 2, "padding": 1, "ceil_mode": True}, (1, 2, 6, 5), note="ceil, padding not counted"),
        sample({"kernel": 3, "stride": 2, "padding": {"top": 1, "right": 2}, "count_include_pad": True}, (1, 2, 6, 5), note="per-side"),
        sample({"kernel": 2, "stride": 2, "padding": {"bottom": 1, "right": 1}}, (1, 2, 5, 5), note="per-side, not counted"),
    )

    def forward(self, x):
        _, win = self._padded_windows(x, 0.0)
        total = win.sum(axis=(0, 1), dtype=x.dtype)
        ch, cw = self._divisors(x.shape[2:], total.shape[2:])
        total /= np.outer(ch, cw).astype(x.dtype)
        return total

    def onnx(self, ctx, xs, y):
        """AveragePool in floor mode with explicit pads; where its divisor differs from the kernel's
        (ceil mode's clipped windows with ``count_include_pad``, explicit padding), a constant map fixes it."""
        x = xs[0]
        t = ctx.type_of(x)
        in_hw = t.shape[2:]
        out, pads, _ = _floor_geometry(self, in_hw)
        xp, pool_pads, was_padded = _onnx_pool_input(ctx, self, x, in_hw, 0.0)
        cip = self.count_include_pad or was_padded
        # every window lies inside the (extended) padded input: with padding counted, onnxruntime divides by k
        runtime = [np.full(o, k) if cip else window_counts(n, k, s, p, o, False)
                   for n, k, s, p, o in zip(in_hw, self._kernel(), self._stride(), pads, out)]
        fix = np.outer(*(r / c for r, c in zip(runtime, self._divisors(in_hw, out))))
        exact = bool(np.all(fix == 1))
        pooled = ctx.node("AveragePool", [xp], y if exact else None, hint="avgpool", kernel_shape=list(self._kernel()),
                          strides=list(self._stride()), pads=pool_pads, count_include_pad=int(cip))
        if not exact:
            ctx.node("Mul", [pooled, ctx.const(fix, t.dtype, "divisor_fix")], y)

    def vjp(self, g, xs, y, gy):
        """``gx = avgpool2d_grad(gy)``: each ``gy`` spread evenly over its window's divisor."""
        h, w = g.type_of(xs[0]).shape[2:]
        return (g.op(AvgPool2dGrad(**self.model_dump(), input_size=(h, w)), [gy], "dx"),)


class AvgPool2dGrad(_Pool2d):
    """Gradient of avgpool2d: ``gx[n, c, h, w] = Σ_{i, j : (h, w) ∈ W_ij} gy[n, c, i, j] / |W_ij|``.

    Separable: ``gx = A_hᵀ · (gy / (|W_h| ⊗ |W_w|)) · A_w`` with ``A[i, h] = 1`` when real input ``h`` is
    in window ``i``; the divisors follow the forward's ``count_include_pad`` and ceil-mode clipping.
    Input ``gy`` (N, C, Ho, Wo); output (N, C, H, W), ``(H, W) = input_size``.
    """

    kind = "avgpool2d_grad"
    user_facing = False
    kernel: PositivePair
    stride: PositivePair | None = None
    padding: PoolPadding = 0
    ceil_mode: bool = False
    count_include_pad: bool = False
    input_size: Size2

    samples = (
        sample({"kernel": 2, "input_size": [4, 4]}, (2, 3, 2, 2)),
        sample({"kernel": 3, "stride": 2, "padding": 1, "ceil_mode": True, "input_size": [6, 5]}, (1, 2, 4, 3), note="ceil"),
        sample({"kernel": 3, "stride": 2, "padding": 1, "count_include_pad": True, "input_size": [5, 6]}, (1, 2, 3, 3)),
    )

    def infer(self, xs):
        gy = xs[0]
        expect_rank(gy, 4, "avgpool2d_grad gy (N, C, Ho, Wo)")
        x = TensorType((gy.shape[0], gy.shape[1], *self.input_size), gy.dtype)
        y = super().infer([x])
        if tuple(gy.shape) != tuple(y.shape):
            raise ShapeError(f"gy {gy.shape} is not the avgpool2d output {y.shape} of input size {self.input_size}")
        return x

    def window(self, xs):
        return None

    def warnings(self, xs):
        return []

    def forward(self, gy):
        out = gy.shape[2:]
        ch, cw = self._divisors(self.input_size, out)
        pads = self.pads(self.input_size)
        a_h, a_w = (window_matrix(n, k, s, p, o) for n, k, s, p, o in zip(self.input_size, self._kernel(), self._stride(), pads, out))
        return separable(gy / np.outer(ch, cw).astype(gy.dtype), a_h.T, a_w.T)

    def onnx(self, ctx, xs, y):
        """``gy / divisors`` scattered back over each window: a transposed convolution of every (n, c)
        plane with a ones kernel (planes moved into the batch; no static batch needed)."""
        gy = xs[0]
        t = ctx.type_of(gy)
        out = t.shape[2:]
        ch, cw = self._divisors(self.input_size, out)
        scaled = ctx.node("Mul", [gy, ctx.const(1.0 / np.outer(ch, cw), t.dtype, "inv_divisor")], hint="gy_scaled")
        planes = ctx.node("Reshape", [scaled, ctx.ints([-1, 1, *out])], hint="gy_planes")
        kh, kw = self._kernel()
        pads = self.pads(self.input_size)
        gx = onnx_transposed_conv(ctx, planes, ctx.const(np.ones((1, 1, kh, kw)), t.dtype, "ones"), (1, 1, kh, kw),
                                  stride=self._stride(), dilation=(1, 1), groups=1, pads_begin=(pads[0][0], pads[1][0]),
                                  in_hw=out, out_hw=self.input_size)
        shape = ctx.node("Concat", [ctx.node("Shape", [gy], hint="nc", start=0, end=2), ctx.ints(list(self.input_size))],
                         hint="gx_shape", axis=0)
        ctx.node("Reshape", [gx, shape], y)


class GlobalAvgPool(Op):
    """Global average pooling: ``y[n, c] = (1/(H·W)) Σ_{h, w} x[n, c, h, w]``, (N, C, H, W) → (N, C)."""

    kind = "global_avgpool"
    summary = "A global average pooling that turns each channel of an NCHW image into its mean."

    samples = (sample({}, (2, 3, 4, 5)), sample({}, (1, 4, 1, 1)))

    def infer(self, xs):
        x = xs[0]
        expect_rank(x, 4, "global_avgpool input (N, C, H, W)")
        expect_float(x)
        return TensorType(x.shape[:2], x.dtype)

    def window(self, xs):
        return None

    def forward(self, x):
        return x.mean(axis=(2, 3), dtype=x.dtype)

    def onnx(self, ctx, xs, y):
        ctx.node("ReduceMean", [xs[0], ctx.ints([2, 3])], y, keepdims=0)

    def vjp(self, g, xs, y, gy):
        """``gx = global_avgpool_grad(gy)``: ``gy / (H·W)`` broadcast over the plane."""
        h, w = g.type_of(xs[0]).shape[2:]
        return (g.op(GlobalAvgPoolGrad(size=(h, w)), [gy], "dx"),)


class GlobalAvgPoolGrad(Op):
    """Gradient of global_avgpool: ``gx[n, c, h, w] = gy[n, c] / (H·W)``, (N, C) → (N, C, H, W), ``(H, W) = size``."""

    kind = "global_avgpool_grad"
    user_facing = False
    size: Size2

    samples = (sample({"size": [4, 5]}, (2, 3)),)

    def infer(self, xs):
        expect_rank(xs[0], 2, "global_avgpool_grad gy (N, C)")
        return TensorType((*xs[0].shape, *self.size), xs[0].dtype)

    def window(self, xs):
        return None

    def forward(self, gy):
        h, w = self.size
        gx = np.empty((*gy.shape, h, w), dtype=gy.dtype)
        gx[...] = (gy * np.asarray(1.0 / (h * w), gy.dtype))[:, :, None, None]
        return gx

    def onnx(self, ctx, xs, y):
        h, w = self.size
        scaled = ctx.node("Mul", [xs[0], ctx.const(1.0 / (h * w), ctx.type_of(xs[0]).dtype)], hint="gy_scaled")
        ctx.node("Expand", [ctx.node("Unsqueeze", [scaled, ctx.ints([2, 3])]), ctx.ints([1, 1, h, w])], y)


def bilinear_matrix(n: int, f: int) -> np.ndarray:
    """(n·f, n) half-pixel linear interpolation: output ``o`` samples ``max((o + ½)/f − ½, 0)`` between its
    floor ``i0`` and ``min(i0 + 1, n − 1)`` (edge-clamped, as PyTorch align_corners=False and ONNX
    Resize linear half_pixel)."""
    src = np.maximum((np.arange(n * f) + 0.5) / f - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), n - 1)
    i1 = np.minimum(i0 + 1, n - 1)
    lam = src - i0
    a = np.zeros((n * f, n))
    rows = np.arange(n * f)
    np.add.at(a, (rows, i0), 1.0 - lam)
    np.add.at(a, (rows, i1), lam)
    return a


class Upsample(Op):
    """Upsampling by integer factors ``(sh, sw)``, NCHW: (N, C, H, W) → (N, C, H·sh, W·sw).

    ``nearest``: ``y[n, c, i, j] = x[n, c, ⌊i/sh⌋, ⌊j/sw⌋]``.
    ``bilinear`` (``align_corners=False``, ONNX ``half_pixel``): output ``o`` samples input coordinate
    ``(o + ½)/f − ½`` (clamped to the input), interpolating linearly between its floor and floor + 1.
    """

    kind = "upsample"
    summary = "An upsampling of NCHW images by integer factors, nearest or bilinear."
    scale: PositivePair = Field(2, description="integer upsampling factor: one int or [sh, sw]")
    mode: Literal["nearest", "bilinear"] = Field("nearest", description="'nearest' repeats pixels; 'bilinear' interpolates (align_corners=False)")

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
        h, w = x.shape[2], x.shape[3]
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

    def forward(self, x):
        n, c, h, w = x.shape
        sh, sw = pair(self.scale)
        if self.mode == "nearest":
            y = np.empty((n, c, h, sh, w, sw), dtype=x.dtype)
            y[...] = x[:, :, :, None, :, None]
            return y.reshape(n, c, h * sh, w * sw)
        return separable(x, bilinear_matrix(h, sh), bilinear_matrix(w, sw))

    def onnx(self, ctx, xs, y):
        """nearest: each pixel expanded into an (sh, sw) block; bilinear: ``A_h · x · A_wᵀ``, two MatMuls
        with the kernel's constant interpolation matrices (exact, and runs everywhere)."""
        x = xs[0]
        t = ctx.type_of(x)
        h, w = t.shape[2:]
        sh, sw = pair(self.scale)
        if self.mode == "nearest":
            x6 = ctx.node("Reshape", [x, ctx.ints([0, 0, h, 1, w, 1])], hint="x_6d")
            blocks = ctx.node("Expand", [x6, ctx.ints([1, 1, 1, sh, 1, sw])], hint="blocks")
            ctx.node("Reshape", [blocks, ctx.ints([0, 0, h * sh, w * sw])], y)
            return
        rows = ctx.node("MatMul", [x, ctx.const(bilinear_matrix(w, sw).T, t.dtype, "interp_w")], hint="interp_rows")
        ctx.node("MatMul", [ctx.const(bilinear_matrix(h, sh), t.dtype, "interp_h"), rows], y)

    def vjp(self, g, xs, y, gy):
        """``gx = upsample_grad(gy)``: the transposed resampling."""
        return (g.op(UpsampleGrad(scale=self.scale, mode=self.mode), [gy], "dx"),)


class UpsampleGrad(Op):
    """Gradient of upsample, (N, C, H·sh, W·sw) → (N, C, H, W).

    ``nearest``: ``gx[n, c, h, w] = Σ_{a<sh, b<sw} gy[n, c, sh·h + a, sw·w + b]`` (a sum over each block).
    ``bilinear``: ``gx = A_hᵀ · gy · A_w`` with ``A`` the (n·f, n) interpolation matrices of the forward
    ``y = A_h · x · A_wᵀ``.
    """

    kind = "upsample_grad"
    user_facing = False
    scale: PositivePair = 2
    mode: Literal["nearest", "bilinear"] = "nearest"

    samples = (
        sample({}, (2, 3, 6, 8)),
        sample({"scale": [2, 3], "mode": "bilinear"}, (1, 2, 6, 12)),
    )

    def infer(self, xs):
        gy = xs[0]
        expect_rank(gy, 4, "upsample_grad gy (N, C, H·sh, W·sw)")
        sh, sw = pair(self.scale)
        ho, wo = static(gy.shape[2], "gy height"), static(gy.shape[3], "gy width")
        if ho % sh or wo % sw:
            raise ShapeError(f"gy spatial size {(ho, wo)} is not a multiple of the scale {(sh, sw)}")
        return TensorType((gy.shape[0], gy.shape[1], ho // sh, wo // sw), gy.dtype)

    def window(self, xs):
        return None

    def forward(self, gy):
        n, c, ho, wo = gy.shape
        sh, sw = pair(self.scale)
        h, w = ho // sh, wo // sw
        if self.mode == "nearest":
            return gy.reshape(n, c, h, sh, w, sw).sum(axis=(3, 5), dtype=gy.dtype)
        return separable(gy, bilinear_matrix(h, sh).T, bilinear_matrix(w, sw).T)

    def onnx(self, ctx, xs, y):
        gy = xs[0]
        t = ctx.type_of(gy)
        sh, sw = pair(self.scale)
        h, w = t.shape[2] // sh, t.shape[3] // sw
        if self.mode == "nearest":
            blocks = ctx.node("Reshape", [gy, ctx.ints([0, 0, h, sh, w, sw])], hint="blocks")
            ctx.node("ReduceSum", [blocks, ctx.ints([3, 5])], y, keepdims=0)
            return
        rows = ctx.node("MatMul", [gy, ctx.const(bilinear_matrix(w, sw), t.dtype, "interp_w")], hint="interp_rows")
        ctx.node("MatMul", [ctx.const(bilinear_matrix(h, sh).T, t.dtype, "interp_h_t"), rows], y)


OPS = (MaxPool2d, MaxPool2dGrad, AvgPool2d, AvgPool2dGrad, GlobalAvgPool, GlobalAvgPoolGrad, Upsample, UpsampleGrad)


class MaxPool2dAt(_MaxPoolAttrs):
    """Max pooling of ``x`` at the maxima of a reference ``r``: ``y[n, c, i, j] = x[argmax_{W_ij} r]``.

    Equal to ``maxpool2d(x)`` while ``x`` has the same winners as ``r``; smooth in ``x`` everywhere
    (gradient checks freeze max pooling's kinks with it). Inputs ``r``, ``x`` (N, C, H, W); same
    attributes as maxpool2d; ``gx = maxpool2d_grad(r, gy)``.
    """

    kind = "maxpool2d_at"
    arity = (2, 2)
    user_facing = False

    samples = (
        sample({"kernel": 2, "stride": 2}, (2, 3, 4, 4), (2, 3, 4, 4)),
        sample({"kernel": 3, "stride": 2, "padding": 1, "ceil_mode": True}, (1, 2, 6, 5), (1, 2, 6, 5), note="overlapping, ceil"),
    )

    def infer(self, xs):
        r, x = xs
        if tuple(r.shape) != tuple(x.shape):
            raise ShapeError(f"reference {r} and input {x} differ")
        return super().infer([x])

    def window(self, xs):
        return None

    def warnings(self, xs):
        return []

    def forward(self, r, x):
        _, win_r = self._padded_windows(r, -np.inf)
        _, win_x = self._padded_windows(x, -np.inf)
        kh, kw = self._kernel()
        taps = win_r.reshape(kh * kw, *win_r.shape[2:])
        tap = taps.argmax(axis=0)[None]  # first maximum on ties, as maxpool2d_grad
        return np.take_along_axis(win_x.reshape(kh * kw, *win_x.shape[2:]), tap, axis=0)[0]

    def onnx(self, ctx, xs, y):
        """``Σ_taps x_tap · [tap holds r's first maximum]`` over strided Slices of the padded inputs."""
        r, x = xs
        t = ctx.type_of(x)
        _, masks = _onnx_first_max_taps(ctx, self, r)
        out, pads, ends = _floor_geometry(self, t.shape[2:])
        (pt, _), (pl, _) = pads
        xp = ctx.node("Pad", [x, ctx.ints([0, 0, pt, pl, 0, 0, ends[0], ends[1]])], hint="x_padded")
        (sh, sw), (dh, dw) = self._stride(), self._dilation()
        total = None
        zero = ctx.const(0.0, t.dtype)
        for (u, v), m in masks:
            start = [u * dh, v * dw]
            stop = [u * dh + (out[0] - 1) * sh + 1, v * dw + (out[1] - 1) * sw + 1]
            tap = ctx.node("Slice", [xp, ctx.ints(start), ctx.ints(stop), ctx.ints([2, 3]), ctx.ints([sh, sw])], hint=f"x_tap{u}{v}")
            part = ctx.node("Where", [m, tap, zero], hint=f"x_at{u}{v}")
            total = part if total is None else ctx.node("Add", [total, part], hint="x_at")
        ctx.node("Identity", [total], y)

    def vjp(self, g, xs, y, gy):
        attrs = self.model_dump()
        return None, (g.op(MaxPool2dGrad(**attrs), [xs[0], gy], "dx") if g.needs(1) else None)


OPS = OPS + (MaxPool2dAt,)
