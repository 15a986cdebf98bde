"""Convolutions: conv2d (stride, padding incl. same/valid, dilation, groups) and conv_transpose2d."""

from __future__ import annotations

from fractions import Fraction
from typing import Annotated, Literal

import numpy as np
from numpy.lib.stride_tricks import as_strided
from pydantic import BeforeValidator, Field

from ..errors import ShapeError
from ..tensor import TensorType, static
from .base import (
    KAIMING,
    ZEROS,
    SIDES,
    IntPair,
    NonNegativeInt,
    NonNegativePair,
    Op,
    Param,
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
    side_padding,
    SidePads,
)
from .fused_activation import ACTIVATION_DOC, ActivationName, activate
from .reduce import ReduceSum

#: one int for all sides, [ph, pw] (each on both sides of its dim), {top, bottom, left, right}, 'same' or 'valid'
Padding = Annotated[NonNegativeInt | tuple[NonNegativeInt, NonNegativeInt] | SidePads | Literal["same", "valid"],
                    BeforeValidator(side_padding)]


def _nested_tuple(value):
    return tuple(_nested_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value


#: resolved padding ((top, bottom), (left, right)) of a forward conv or pool, as its gradient ops store it
Pads = Annotated[tuple[tuple[int, int], tuple[int, int]], BeforeValidator(_nested_tuple)]
Size2 = Annotated[tuple[PositiveInt, PositiveInt], BeforeValidator(lambda v: (v, v) if isinstance(v, int) else _list_to_tuple(v))]


# --- kernels ---------------------------------------------------------------------------------------
# Layout of the columns: (C·kh·kw, N·Ho·Wq), C outermost so that a group's rows are contiguous and the
# GEMM  W (O, C·kh·kw) @ cols  is one call (a stacked matmul over the group axis when groups > 1).
# With unit stride along W the columns are "wide rows" (when that wastes little): output column j runs
# over the whole padded width Wq = Wb (the last (Wb − Wo) columns are garbage and dropped), which makes
# every tap's source one contiguous run of Ho·Wb elements per image, so the im2col copy streams
# instead of copying rows of Wo elements one by one.


def padded(x: np.ndarray, pads, need_hw, fill=0.0, extra_rows: int = 0) -> np.ndarray:
    """``x`` padded by ``pads`` with ``fill``, grown at the bottom/right to at least ``need_hw`` (ceil
    mode, or windows fixed by a given output size) plus ``extra_rows``; always a fresh array."""
    n, c, h, w = x.shape
    (pt, pb), (pl, pr) = pads
    hb = max(pt + h + pb, need_hw[0]) + extra_rows
    wb = max(pl + w + pr, need_hw[1])
    xp = np.full((n, c, hb, wb), fill, dtype=x.dtype)
    xp[:, :, pt:pt + h, pl:pl + w] = x
    return xp


def _span(out: int, k: int, s: int, d: int) -> int:
    """Input extent read by ``out`` windows: ``(out − 1)·s + d·(k − 1) + 1``."""
    return (out - 1) * s + d * (k - 1) + 1


def im2col(x, kernel, stride, dilation, pads, out_hw) -> tuple[np.ndarray, int]:
    """Columns ``cols[(c, u, v), (n, i, j)] = xpad[n, c, s·i + d·u, s·j + d·v]`` of shape
    (C·kh·kw, N·Ho·Wq) and the row pitch ``Wq`` (``Wq > Wo`` for wide rows: see above)."""
    (kh, kw), (sh, sw), (dh, dw), (ho, wo) = kernel, stride, dilation, out_hw
    n, c = x.shape[:2]
    wb = max(pads[1][0] + x.shape[3] + pads[1][1], _span(wo, kw, sw, dw))
    # wide rows pay while their garbage columns are few: measured faster up to 1/8 of Wo (ResNet-20's
    # 32- and 16-wide layers), slower beyond (LeNet-5's 28 of 32: 0.96 against 1.18 ms)
    wide = sw == 1 and kw > 1 and 8 * (wb - wo) <= wo
    # wide rows of the last image read up to d·(kw − 1) elements past its padded end: one spare row
    xp = padded(x, pads, (_span(ho, kh, sh, dh), _span(wo, kw, sw, dw)), extra_rows=1 if wide else 0)
    wq = wb if wide else wo
    e = xp.itemsize
    s_n, s_c, s_h = xp.strides[:3]
    view = as_strided(xp, (c, kh, kw, n, ho, wq), (s_c, dh * s_h, dw * e, s_n, sh * s_h, (1 if wide else sw) * e),
                      writeable=False)
    return np.ascontiguousarray(view).reshape(c * kh * kw, n * ho * wq), wq


# The banded form, for thin convolutions (few output channels over narrow rows): columns of whole
# kernel rows, ``R[(n, i), (c, u, q)] = xpad[n, c, s·i + d·u, q]`` (C·kh·Wp per output row instead of
# C·kh·kw per output pixel), and the weight spread into a band, ``B[(c, u, q), (o, j)] = w[o, c, u, v]``
# where ``q = s·j + d·v`` (zero elsewhere): ``y[n, o, i, j] = (R @ B)[(n, i), (o, j)]``. Its GEMM does
# Wp/kw times im2col's products, but its columns are kw·Wo/Wp times smaller: for LeNet-5's 5×5 convs
# (Wp = 32 and 14) the conv takes 0.63 and 0.54 ms where im2col takes 0.88 and 0.97.


def _banded(o: int, kw: int, wp: int, groups: int) -> bool:
    """Whether the banded form is the cheaper road: its extra products per output row, O·(Wp − kw) for
    each of the C·kh kernel rows, cost less than im2col's copies, 45·kw in the same units (rates
    measured: ~150 GFLOP/s for these GEMMs, ~20 GB/s for the column copies)."""
    return groups == 1 and o * (wp - kw) < 45 * kw


def _row_columns(xp: np.ndarray, kh: int, sh: int, dh: int, ho: int) -> np.ndarray:
    """``R`` of the banded form, (N·Ho, C·kh·Wp): whole padded rows, each copied once per kernel row."""
    n, c, _, wp = xp.shape
    s_n, s_c, s_h, e = xp.strides
    view = as_strided(xp, (n, ho, c, kh, wp), (s_n, sh * s_h, s_c, dh * s_h, e), writeable=False)
    return np.ascontiguousarray(view).reshape(n * ho, c * kh * wp)


def _band(w: np.ndarray, wp: int, wo: int, sw: int, dw: int, dtype, rows_outer: bool = False) -> np.ndarray:
    """``B`` of the banded form, (C·kh·Wp, O·Wo): ``B[(c, u, s·j + d·v), (o, j)] = w[o, c, u, v]``;
    with ``rows_outer`` its rows ordered ``(u, c, q)`` instead (the input gradient's layout)."""
    o, c, kh, kw = w.shape
    band = np.zeros((kh, c, wp, o, wo) if rows_outer else (c, kh, wp, o, wo), dtype)
    j = np.arange(wo)
    taps = w.astype(dtype, copy=False).transpose(*((2, 1) if rows_outer else (1, 2)), 3, 0)  # (c, u, v, o) or (u, c, v, o)
    for v in range(kw):  # one diagonal per kernel column
        band[:, :, sw * j + dw * v, :, j] = taps[:, :, v]
    return band.reshape(c * kh * wp, o * wo)


def _band_forward(x, w, b, stride, dilation, pads) -> np.ndarray:
    """conv2d in the banded form: ``y = R @ B`` (plus the bias)."""
    (sh, sw), (dh, dw) = stride, dilation
    o, _, kh, kw = w.shape
    xp = padded(x, pads, (0, 0)) if any(p for pair_ in pads for p in pair_) else x
    n, _, hp, wp = xp.shape
    ho, wo = (hp - dh * (kh - 1) - 1) // sh + 1, (wp - dw * (kw - 1) - 1) // sw + 1
    y = (_row_columns(xp, kh, sh, dh, ho) @ _band(w, wp, wo, sw, dw, x.dtype)).reshape(n, ho, o, wo).transpose(0, 2, 1, 3)
    return _nchw_output(y, b)


def _band_cotangent(gy: np.ndarray) -> np.ndarray:
    """``gy2[(n, i), (o, j)] = gy[n, o, i, j]``, the output's layout in the banded form."""
    n, o, ho, wo = gy.shape
    return np.ascontiguousarray(gy.transpose(0, 2, 1, 3)).reshape(n * ho, o * wo)


def _band_input_grad(gy2, w, stride, dilation, pads, in_hw, out_hw) -> np.ndarray:
    """``gx`` in the banded form: the rows of ``gy2 @ Bᵀ``, ``rows[(n, i), (u, c, q)]``, added back into
    the padded input, ``gxp[n, s·i + d·u, (c, q)] += rows[(n, i), (u, c, q)]``, one strided add per
    kernel row, then moved to NCHW.

    Why (n, H, C, Wp) and the ``(u, c, q)`` order: each add then reads and writes runs of C·Wp
    elements, where the NCHW-ordered adds ran over rows of Wp (measured 15 % faster on LeNet-5's
    conv2, 0.95 against 1.11 ms); the sums are the same, in the same order."""
    (sh, sw), (dh, dw), (pt, _), (pl, pr), (h, wd), (ho, wo) = stride, dilation, *pads, in_hw, out_hw
    _, c, kh, _ = w.shape
    wp = pl + wd + pr
    n = gy2.shape[0] // ho
    rows = (gy2 @ _band(w, wp, wo, sw, dw, gy2.dtype, rows_outer=True).T).reshape(n, ho, kh, c * wp)
    gxp = np.zeros((n, max(pt + h, _span(ho, kh, sh, dh)), c * wp), dtype=gy2.dtype)
    for u in range(kh):
        gxp[:, dh * u:dh * u + (ho - 1) * sh + 1:sh] += rows[:, :, u]
    return np.ascontiguousarray(gxp.reshape(n, -1, c, wp).transpose(0, 2, 1, 3)[:, :, pt:pt + h, pl:pl + wd])


def _band_weight_grad(x, gy2, kernel, stride, dilation, pads, out_hw) -> np.ndarray:
    """``gw[o, c, u, v] = Σ_j (Rᵀ @ gy2)[(c, u, s·j + d·v), (o, j)]`` in the banded form, one diagonal
    per kernel column."""
    (kh, kw), (sh, sw), (dh, dw), (ho, wo) = kernel, stride, dilation, out_hw
    xp = padded(x, pads, (0, 0)) if any(p for pair_ in pads for p in pair_) else x
    c, wp, o = x.shape[1], xp.shape[3], gy2.shape[1] // wo
    g = (_row_columns(xp, kh, sh, dh, ho).T @ gy2).reshape(c, kh, wp, o, wo)
    j = np.arange(wo)
    gw = np.empty((o, c, kh, kw), dtype=x.dtype)
    for v in range(kw):
        gw[:, :, :, v] = g[:, :, sw * j + dw * v, :, j].sum(axis=0).transpose(2, 0, 1)
    return gw


def _channel_major(a: np.ndarray, wq: int, dtype) -> np.ndarray:
    """(N, C, H, W) as (C, N, H, Wq) of ``dtype``, rows padded with zeros to the columns' pitch ``Wq ≥ W``
    (every element written once)."""
    n, c, h, w = a.shape
    out = np.empty((c, n, h, wq), dtype=dtype)
    out[:, :, :, :w] = a.transpose(1, 0, 2, 3)
    out[:, :, :, w:] = 0
    return out


def _grouped(a: np.ndarray, groups: int) -> np.ndarray:
    """(R, K) → (groups, R/groups, K): group g owns the g-th block of rows."""
    return a.reshape(groups, a.shape[0] // groups, a.shape[1])


# Chunks of the batch: the columns of a whole batch outgrow the cache (20 MB for ResNet-20's 32×32
# layers at batch 32), so that the GEMM reads them back from memory, and in a training step the saved
# activations compete for the cache too. Built for a few images at a time, about CHUNK_BYTES of columns,
# they are still in the cache when the GEMM (or both gradient GEMMs) reads them: measured on ResNet-20's
# 3×3 convs alone, 10–35 % faster per conv than one GEMM over the whole batch (1–2 MB of columns best),
# and 5–8 % of ResNet-20's whole training step (1–4 MB alike). 4 MB keeps the GEMMs few and large, as
# BLAS threads synchronise at every call (on a loaded machine each sync can cost a time slice).
CHUNK_BYTES = 4 << 20


def batch_chunks(n: int, bytes_per_image: int) -> list[slice]:
    """Slices of a batch of ``n`` images whose columns take about ``CHUNK_BYTES`` each (one image at least)."""
    step = max(1, min(n, CHUNK_BYTES // max(1, bytes_per_image)))
    return [slice(s, min(s + step, n)) for s in range(0, n, step)]


def conv2d_forward(x, w, b, stride, dilation, groups, pads) -> np.ndarray:
    """NCHW conv2d: im2col columns and one GEMM ``W (O, C/g·kh·kw) @ cols`` (stacked over groups) per
    chunk of the batch, or the banded form's one GEMM where that is cheaper."""
    kh, kw = w.shape[2:]
    if _banded(w.shape[0], kw, x.shape[3] + pads[1][0] + pads[1][1], groups):
        return _band_forward(x, w, b, stride, dilation, pads)
    n, c = x.shape[:2]
    hp = x.shape[2] + pads[0][0] + pads[0][1]
    wp = x.shape[3] + pads[1][0] + pads[1][1]
    ho = (hp - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (wp - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    out = np.empty((n, w.shape[0], ho, wo), dtype=x.dtype)
    for chunk in batch_chunks(n, c * kh * kw * ho * wp * x.itemsize):
        cols, wq = im2col(x[chunk], (kh, kw), stride, dilation, pads, (ho, wo))
        _conv_from_columns(cols, wq, w, b, groups, out[chunk])
    return out


def _conv_from_columns(cols, wq, w, b, groups, out) -> np.ndarray:
    """The GEMM of a conv2d from its im2col columns, written into ``out`` (N, O, Ho, Wo) (plus the bias)."""
    (n, o, ho, wo), dtype = out.shape, cols.dtype
    w2 = w.astype(dtype, copy=False).reshape(o, -1)
    if groups == 1:
        y = w2 @ cols
    else:
        y = np.matmul(_grouped(w2, groups), _grouped(cols, groups))
    return _nchw_output(y.reshape(o, n, ho, wq)[:, :, :, :wo].transpose(1, 0, 2, 3), b, out)


def _nchw_output(y: np.ndarray, b, out: np.ndarray | None = None) -> np.ndarray:
    """A GEMM's result viewed as (N, O, Ho, Wo), copied out contiguous (into ``out`` if given), plus the
    bias if any."""
    if out is None:
        out = np.empty(y.shape, dtype=y.dtype)
    if b is None:
        np.copyto(out, y)
    else:
        np.add(y, b.astype(y.dtype, copy=False).reshape(1, -1, 1, 1), out=out)
    return out


def _flipped_pads(gy_shape, w_shape, stride, dilation, groups, pads, in_hw):
    """The padding of gy under which the unit-stride input gradient is the convolution of gy with the
    flipped kernel, ``d(k − 1) − p`` before, or None where col2im is the better road: at other
    strides, or when gy has so many more channels than x that its columns (O·kh·kw per input pixel)
    outgrow col2im's (C·kh·kw per output pixel, written once and read once)."""
    if stride != (1, 1):
        return None
    o, (ho, wo), c, (kh, kw), (h, wd) = gy_shape[1], gy_shape[2:], w_shape[1] * groups, w_shape[2:], in_hw
    flipped = tuple((d * (k - 1) - p, n_in - n_out + p) for d, k, p, n_in, n_out in
                    zip(dilation, (kh, kw), (pads[0][0], pads[1][0]), in_hw, (ho, wo)))
    if any(a < 0 or b < 0 for a, b in flipped) or o * h * (wd + flipped[1][0] + flipped[1][1]) > 2 * c * ho * wo:
        return None
    return flipped


def _flipped_kernel(w, groups) -> np.ndarray:
    """The kernel of the input gradient as a convolution: per group transposed and flipped, (C, O/g, kh, kw)."""
    o, cg, kh, kw = w.shape
    wt = w.reshape(groups, o // groups, cg, kh, kw).transpose(0, 2, 1, 3, 4)[..., ::-1, ::-1]
    return wt.reshape(cg * groups, o // groups, kh, kw)


def conv2d_input_grad(gy, w, stride, dilation, groups, pads, in_hw) -> np.ndarray:
    """``gx = col2im(Wᵀ @ gy)``: the transposed convolution of ``gy`` (N, O, Ho, Wo) with the conv weight
    ``w`` (O, C/g, kh, kw) onto an input of size ``in_hw`` whose padding began at ``pads[·][0]``.

    One GEMM gives every tap's contribution; col2im adds them into the padded input, one strided
    slice per kernel tap (the scatter-add has overlapping targets, so it cannot be one fancy index).
    At unit stride it is usually a convolution of gy with the flipped kernel (``_flipped_pads``):
    im2col + one GEMM streams better than col2im. Thin convs take the banded form."""
    if _banded(w.shape[0], w.shape[3], in_hw[1] + pads[1][0] + pads[1][1], groups):
        return _band_input_grad(_band_cotangent(gy), w, stride, dilation, pads, in_hw, gy.shape[2:])
    flipped = _flipped_pads(gy.shape, w.shape, stride, dilation, groups, pads, in_hw)
    if flipped is not None:
        return conv2d_forward(gy, _flipped_kernel(w, groups), None, stride, dilation, groups, flipped)
    n, o, ho, wo = gy.shape
    _, cg, kh, kw = w.shape
    c = cg * groups
    (sh, sw), (dh, dw) = stride, dilation
    (h, wd), pt, pl = in_hw, pads[0][0], pads[1][0]
    hb = max(pt + h, _span(ho, kh, sh, dh))
    wb = max(pl + wd, _span(wo, kw, sw, dw))
    # wide rows (unit stride along W): gy's rows are padded with zeros to the padded input width wb, so
    # each tap's contributions land on ONE run of ho·wb elements per (c, n) plane (row pitch sh·wb)
    # instead of ho runs of wo; the zero columns carry nothing, wherever they land (sh spare rows)
    wq = wb if sw == 1 else wo
    g2 = _channel_major(gy, wq, gy.dtype).reshape(o, n * ho * wq)
    w2 = w.astype(gy.dtype, copy=False).reshape(o, cg * kh * kw)
    if groups == 1:
        cols = w2.T @ g2
    else:
        cols = np.matmul(_grouped(w2, groups).transpose(0, 2, 1), _grouped(g2, groups))
    cols = cols.reshape(c, kh, kw, n, ho, wq)
    gxp = np.zeros((c, n, hb + (sh if sw == 1 else 0), wb), dtype=gy.dtype)
    flat = gxp.reshape(c, n, -1)
    for u in range(kh):
        for v in range(kw):
            if sw == 1:
                start = u * dh * wb + v * dw
                rows = flat[:, :, start:start + ho * sh * wb].reshape(c, n, ho, sh * wb)[..., :wb]
            else:
                rows = gxp[:, :, u * dh:u * dh + (ho - 1) * sh + 1:sh, v * dw:v * dw + (wo - 1) * sw + 1:sw]
            rows += cols[:, u, v]
    return np.ascontiguousarray(gxp[:, :, pt:pt + h, pl:pl + wd].transpose(1, 0, 2, 3))


def conv2d_weight_grad(x, gy, kernel, stride, dilation, groups, pads) -> np.ndarray:
    """``gwᵀ = Σ_chunks cols (C/g·kh·kw, n·Ho·Wo) @ gyᵀ (n·Ho·Wo, O)``: one GEMM per chunk of the batch
    (stacked over groups, or over images when the output is small), in the orientation where the big
    operand is read row-major (measured ~1.5× faster than ``gy @ colsᵀ``)."""
    n, o, ho, wo = gy.shape
    kh, kw = kernel
    if _banded(o, kw, x.shape[3] + pads[1][0] + pads[1][1], groups):
        return _band_weight_grad(x, _band_cotangent(gy), kernel, stride, dilation, pads, (ho, wo))
    c = x.shape[1]
    gw = None
    for chunk in batch_chunks(n, c * kh * kw * ho * (wo + pads[1][0] + pads[1][1]) * x.itemsize):
        cols, wq = im2col(x[chunk], kernel, stride, dilation, pads, (ho, wo))
        g2 = _channel_major(gy[chunk], wq, x.dtype).reshape(o, -1)  # the garbage columns of wide rows get zero weight
        part = _weight_gemm(cols, g2, groups, chunk.stop - chunk.start)
        gw = np.array(part) if gw is None else np.add(gw, part, out=gw)
    return gw.reshape(o, c // groups, kh, kw)


def _weight_gemm(cols, g2, groups: int, n: int) -> np.ndarray:
    """``(cols @ g2ᵀ)ᵀ`` of ``n`` images' columns (K, n·L) and cotangent (O, n·L), (O, K) (per group
    blocks (g, O/g, K/g) when grouped)."""
    k, o = cols.shape[0], g2.shape[0]
    if groups == 1 and k * o <= 512:
        # a small output over a long reduction: BLAS splits a GEMM's work by output blocks, so one
        # call runs on one core at ~25 GFLOP/s; a stack of per-image GEMMs summed after is 1.5–3×
        # faster here (measured up to K·O = 512, slower from K·O ≈ 2,300)
        return np.matmul(cols.reshape(k, n, -1).transpose(1, 0, 2), g2.reshape(o, n, -1).transpose(1, 2, 0)).sum(axis=0).T
    if groups == 1:
        return (cols @ g2.T).T
    return np.matmul(_grouped(cols, groups), _grouped(g2, groups).transpose(0, 2, 1)).transpose(0, 2, 1)


def conv2d_grads(x, gy, w, stride, dilation, groups, pads, in_hw) -> tuple[np.ndarray, np.ndarray]:
    """Both gradients of a conv2d, ``(gx, gw)``. Where the input gradient is the convolution of gy with
    the flipped kernel (unit stride, ungrouped), the weight gradient reuses its columns instead of
    building those of x: with ``cols[(o, u, v), (n, p, q)] = gy_pad[n, o, p + d·u, q + d·v]``,

    ``gw[o, c, k−1−u, k−1−v] = Σ_{n, p, q} cols[(o, u, v), (n, p, q)] · x[n, c, p, q]``

    — one im2col for two GEMMs per chunk of the batch (x laid out with the columns' wide rows, zeros
    past its width), the chunks' weight gradients summed."""
    if _banded(w.shape[0], w.shape[3], in_hw[1] + pads[1][0] + pads[1][1], groups):
        gy2 = _band_cotangent(gy)  # shared by both
        return (_band_input_grad(gy2, w, stride, dilation, pads, in_hw, gy.shape[2:]),
                _band_weight_grad(x, gy2, w.shape[2:], stride, dilation, pads, gy.shape[2:]))
    flipped = _flipped_pads(gy.shape, w.shape, stride, dilation, groups, pads, in_hw)
    if flipped is None or groups != 1:
        return (conv2d_input_grad(gy, w, stride, dilation, groups, pads, in_hw),
                conv2d_weight_grad(x, gy, w.shape[2:], stride, dilation, groups, pads))
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    gx = np.empty((n, c, h, wd), dtype=gy.dtype)
    wf = np.ascontiguousarray(_flipped_kernel(w, 1), dtype=gy.dtype)
    gw = None
    for chunk in batch_chunks(n, o * kh * kw * h * (wd + flipped[1][0] + flipped[1][1]) * gy.itemsize):
        cols, wq = im2col(gy[chunk], (kh, kw), stride, dilation, flipped, (h, wd))
        _conv_from_columns(cols, wq, wf, None, 1, gx[chunk])
        part = cols @ _channel_major(x[chunk], wq, gy.dtype).reshape(c, -1).T
        gw = part if gw is None else np.add(gw, part, out=gw)
    gw = gw.reshape(o, kh, kw, c)[:, ::-1, ::-1].transpose(0, 3, 1, 2)
    return gx, np.ascontiguousarray(gw, dtype=x.dtype)


# --- ONNX lowering helpers ----------------------------------------------------------------------------


def onnx_cast(ctx, name: str, dtype: str) -> str:
    """``name`` (a graph node) cast to ``dtype`` when it has another dtype."""
    from .activations import _onnx_as

    return _onnx_as(ctx, name, dtype)


def onnx_pads(pads) -> list[int]:
    """((top, bottom), (left, right)) → ONNX ``pads`` [top, left, bottom, right]."""
    (pt, pb), (pl, pr) = pads
    return [pt, pl, pb, pr]


def onnx_padding(pads) -> dict:
    """The ONNX attribute of a window op's padding: ``pads``, or ``auto_pad=SAME_UPPER`` where 'same'
    padding depends on a symbolic input size (the same rule as :func:`resolve_pads`: the total
    ``max((ceil(n/s) − 1)·s + d(k − 1) + 1 − n, 0)``, the odd row at the end)."""
    if any(p is None for p in pads):
        return {"auto_pad": "SAME_UPPER"}
    return {"pads": onnx_pads(pads)}


def onnx_slice(ctx, x: str, starts, ends, axes, steps=None, hint: str = "slice") -> str:
    inputs = [x, ctx.ints(starts), ctx.ints(ends), ctx.ints(axes)] + ([ctx.ints(steps)] if steps is not None else [])
    return ctx.node("Slice", inputs, hint=hint)


def onnx_transposed_conv(ctx, gy: str, w: str, w_shape, *, stride, dilation, groups: int, pads_begin, in_hw, out_hw,
                         bias: str | None = None, output: str | None = None) -> str:
    """The kernel :func:`conv2d_input_grad` in ONNX: ``gy`` (N, O, *in_hw) and the OIHW weight ``w``
    (O, C/g, kh, kw), already of gy's dtype, onto an output of size ``out_hw`` whose conv padding began
    at ``pads_begin``; ``bias`` (C,) optionally added.

    ``groups == 1`` with a stride: one ConvTranspose, the full output ``s(n − 1) + d(k − 1) + 1`` cropped by
    explicit pads, or grown by ``output_padding`` (< stride) where the output is longer. Otherwise (unit
    stride, where a Conv is faster; groups, which onnx's ReferenceEvaluator mishandles in ConvTranspose):
    a Conv of the (zero-inserted) ``gy`` with the flipped, per-group transposed weight."""
    o, cg, kh, kw = w_shape
    kernel = (kh, kw)
    ends = [s * (n - 1) + d * (k - 1) + 1 - p - m for s, n, d, k, p, m in zip(stride, in_hw, dilation, kernel, pads_begin, out_hw)]
    inputs_tail = [bias] if bias is not None else []
    # stride 1 takes the Conv path below when gy's columns stay small (as the kernel decides): runtimes
    # run Conv several times faster than ConvTranspose, but not when gy has many more channels than x
    (h, wd), c = out_hw, cg * groups
    conv_volume = o * h * (wd + 2 * (max(dilation) * (max(kernel) - 1)))
    unit_stride_conv = tuple(stride) == (1, 1) and conv_volume <= 2 * c * in_hw[0] * in_hw[1]
    if groups == 1 and not unit_stride_conv and all(e >= 0 or -e < s for e, s in zip(ends, stride)):
        output_padding = [max(-e, 0) for e in ends]
        return ctx.node("ConvTranspose", [gy, w, *inputs_tail], output, hint="conv_transpose", kernel_shape=list(kernel),
                        strides=list(stride), dilations=list(dilation), pads=[*pads_begin, *(max(e, 0) for e in ends)],
                        output_padding=output_padding if any(output_padding) else None)
    z, (sh, sw), (ho, wo) = gy, stride, in_hw
    if (sh, sw) != (1, 1):  # zero insertion: (N, O, Ho, 1, Wo, 1) padded to (N, O, Ho, sh, Wo, sw), then merged
        z = ctx.node("Reshape", [z, ctx.ints([0, 0, ho, 1, wo, 1])], hint="gy_6d")
        z = ctx.node("Pad", [z, ctx.ints([0] * 9 + [sh - 1, 0, sw - 1])], hint="zero_insert")
        z = ctx.node("Reshape", [z, ctx.ints([0, 0, ho * sh, wo * sw])], hint="gy_dilated")
    lz = (ho * sh, wo * sw)
    # correlation with the flipped kernel: z padded by d(k − 1) − p at the start, and so that the output is out_hw
    p0 = [d * (k - 1) - p for d, k, p in zip(dilation, kernel, pads_begin)]
    p1 = [m - n + p for m, n, p in zip(out_hw, lz, pads_begin)]
    starts, stops = [max(-a, 0) for a in p0], [n - max(-b, 0) for n, b in zip(lz, p1)]
    if any(starts) or list(stops) != list(lz):
        z = onnx_slice(ctx, z, starts, stops, [2, 3], hint="gy_cropped")
    if groups == 1:
        wt = ctx.node("Transpose", [w], hint="w_t", perm=[1, 0, 2, 3])
    else:
        wt = ctx.node("Reshape", [w, ctx.ints([groups, o // groups, cg, kh, kw])], hint="w_groups")
        wt = ctx.node("Transpose", [wt], hint="w_groups_t", perm=[0, 2, 1, 3, 4])
        wt = ctx.node("Reshape", [wt, ctx.ints([cg * groups, o // groups, kh, kw])], hint="w_t")
    wf = onnx_slice(ctx, wt, [-1, -1], [-(kh + 1), -(kw + 1)], [2, 3], [-1, -1], hint="w_flipped")
    return ctx.node("Conv", [z, wf, *inputs_tail], output, hint="conv", kernel_shape=list(kernel), strides=[1, 1],
                    dilations=list(dilation), group=groups, pads=[*(max(a, 0) for a in p0), *(max(b, 0) for b in p1)])


def onnx_conv_weight_grad(ctx, x: str, gy: str, gy_hw, *, kernel, stride, dilation, groups: int, pads, output: str) -> str:
    """The kernel :func:`conv2d_weight_grad` in ONNX, as im2col + one batched MatMul: the columns
    (N, g, C/g·kh·kw, Ho·Wo) come from a Conv of every input plane with kh·kw one-hot kernels, and
    are multiplied by ``gy`` (N, g, O/g, Ho·Wo) transposed and summed over the batch. (A Conv with
    ``gy`` as a Ho×Wo "weight" is the textbook identity, but runtimes run such huge kernels several
    times slower; per-tap Slices and a Concat cost twice this.)"""
    tx = ctx.type_of(x)
    c = static(tx.shape[1], "input channels")
    (kh, kw), (sh, sw), (dh, dw), (ho, wo) = kernel, stride, dilation, gy_hw
    h, w = tx.shape[2:]
    # im2col as a Conv of every channel with one-hot kernels: (N·C, 1, H, W) → (N·C, kh·kw, Ho, Wo)
    onehot = np.zeros((kh * kw, 1, kh, kw), dtype=tx.dtype)
    for k in range(kh * kw):
        onehot[k, 0, k // kw, k % kw] = 1.0
    planes = ctx.node("Reshape", [x, ctx.ints([-1, 1, h, w])], hint="x_planes")
    cols = ctx.node("Conv", [planes, ctx.const(onehot, tx.dtype, "onehot_taps")], hint="cols", kernel_shape=[kh, kw],
                    strides=[sh, sw], dilations=[dh, dw], pads=onnx_pads(pads))
    cols = ctx.node("Reshape", [cols, ctx.ints([-1, c, kh * kw, ho, wo])], hint="cols_nc")
    cols = ctx.node("Reshape", [cols, ctx.ints([0, groups, (c // groups) * kh * kw, ho * wo])], hint="cols_g")
    o = ctx.type_of(gy).shape[1]
    gyg = ctx.node("Reshape", [gy, ctx.ints([0, groups, o // groups, ho * wo])], hint="gy_g")
    per_image = ctx.node("MatMul", [gyg, ctx.node("Transpose", [cols], hint="cols_t", perm=[0, 1, 3, 2])], hint="gw_n")
    total = ctx.node("ReduceSum", [per_image, ctx.ints([0])], hint="gw_g", keepdims=0)  # (g, O/g, C/g·kh·kw)
    return ctx.node("Reshape", [total, ctx.ints([o, c // groups, kh, kw])], output)


def resolve_pads(padding, n, k: int, s: int, d: int) -> tuple[int, int] | None:
    """(begin, end) padding of one spatial dim.

    ``same`` gives ``ceil(n/s)`` outputs with the extra row at the end (as ONNX SAME_UPPER and
    TensorFlow); ``valid`` is no padding. ``None``: ``same`` with stride > 1 over a symbolic size
    ``n``, whose total ``(ceil(n/s) − 1)·s + d(k − 1) + 1 − n`` depends on ``n mod s``.
    """
    if padding == "valid":
        return (0, 0)
    if padding == "same":
        out = (n + s - 1) // s
        total = (out - 1) * s + d * (k - 1) + 1 - n
        if not isinstance(total, int):
            return None  # stride > 1 over a symbolic size: the padding depends on n (n mod s), known at run time
        total = max(total, 0)
        return (total // 2, total - total // 2)
    if isinstance(padding, tuple):  # per side: (begin, end)
        return padding
    return (padding, padding)


def untiled_warning(name: str, n: int, k: int, s: int, pads: tuple[int, int], d: int, axis: str) -> list[str]:
    """The course's "illegal stride": windows that leave real input rows/cols uncovered.

    With a window extent ``e = d·(k − 1) + 1`` and ``span = n + p₀ + p₁ − e``, the last window ends
    ``span mod s`` positions before the padded end, of which ``lost = span mod s − p₁`` are real rows.
    A window narrower than its stride (``e < s``, e.g. the 1×1 stride-2 shortcut of a ResNet) skips
    ``s − e`` rows between every two windows by design; rows left after the last window are only
    worth a word when they are more than that gap (for a 1×1 window they never are)."""
    extent = d * (k - 1) + 1
    span = n + pads[0] + pads[1] - extent
    lost = span % s - pads[1]
    if lost <= 0:
        return []
    if extent < s:
        gap = s - extent
        if lost <= gap:
            return []  # the same gap as between windows: a regular strided subsampling
        return [
            f"{name} windows ({extent} {axis}(s) wide, stride {s}) skip {gap} input {axis}(s) between windows, "
            f"and the last {lost} input {axis}(s) after the last window are never read "
            f"(choose padding so that (n + 2p − k) is divisible by s to skip only between windows)"
        ]
    return [
        f"{name} windows do not tile the input along {axis}: ({n} + {pads[0] + pads[1]} − {extent})/{s} + 1 = "
        f"{Fraction(span, s) + 1} is not an integer; the last {lost} input {axis}(s) are never read "
        f"(choose padding or stride so that (n + 2p − k) is divisible by s)"
    ]


class _Windowed(Op):
    """Shared arithmetic of conv and pooling windows over NCHW inputs."""

    def _kernel(self) -> tuple[int, int]:
        return pair(self.kernel)

    def _stride(self) -> tuple[int, int]:
        return pair(self.stride)

    def _dilation(self) -> tuple[int, int]:
        return pair(getattr(self, "dilation", 1))

    def pads(self, spatial) -> tuple[tuple[int, int] | None, tuple[int, int] | None]:
        """Per spatial dim (begin, end), or None where 'same' padding depends on a symbolic size."""
        padding = self.padding if isinstance(self.padding, str) else pair(self.padding)
        return tuple(
            resolve_pads(padding if isinstance(padding, str) else padding[i], spatial[i], self._kernel()[i], self._stride()[i], self._dilation()[i])
            for i in range(2)
        )

    def out_spatial(self, x: TensorType) -> tuple:
        """Output height and width: ints, or expressions of a symbolic input size (whose check for an
        output below 1 is left to the run, which binds the size)."""
        h, w = x.shape[2], x.shape[3]
        pads = self.pads((h, w))
        ceil_mode = getattr(self, "ceil_mode", False)
        out = []
        for n, k, s, d, p, axis in zip((h, w), self._kernel(), self._stride(), self._dilation(), pads, ("height", "width")):
            if p is None:  # 'same' over a symbolic size: ceil(n/s) by definition
                out.append((n + s - 1) // s)
                continue
            o = conv_out(n, k, s, p[0] + p[1], d, ceil_mode)
            if isinstance(o, int) and o < 1:
                raise ShapeError(f"output {axis} {conv_arith(n, k, s, p[0] + p[1], d, ceil_mode)} is below 1 (kernel larger than the padded input)")
            out.append(o)
        return tuple(out)

    def window(self, xs):
        """A window's offset is None where its padding depends on a symbolic size (receptive fields
        then report their size and stride, and say the padding depends on the input size)."""
        pads = self.pads(xs[0].shape[2:])
        return tuple(Window(Fraction(s), None if p is None else Fraction(-p[0]), d * (k - 1) + 1)
                     for k, s, d, p in zip(self._kernel(), self._stride(), self._dilation(), pads))

    def warnings(self, xs):
        """Windows that do not tile, for static sizes (a symbolic size tiles or not by its value)."""
        if getattr(self, "ceil_mode", False):
            return []
        h, w = xs[0].shape[2:]
        pads = self.pads((h, w))
        return [msg for n, k, s, d, p, axis in zip((h, w), self._kernel(), self._stride(), self._dilation(), pads, ("row", "col"))
                if isinstance(n, int) for msg in untiled_warning(self.kind, n, k, s, p, d, axis)]

    def describe(self) -> str:
        k, s = self._kernel(), self._stride()
        text = f"k{k[0]}" + (f"x{k[1]}" if k[0] != k[1] else "") + (f" s{s[0]}" if s == (s[0], s[0]) else f" s{s}")
        pad = self.padding if isinstance(self.padding, str) else pair(self.padding)
        if isinstance(pad, str):
            text += f" p{pad}"
        elif isinstance(pad[0], tuple):  # per side
            text += " p[" + " ".join(f"{side[0]}{p}" for side, p in zip(SIDES, (*pad[0], *pad[1]))) + "]"
        else:
            text += f" p{pad[0]}" if pad[0] == pad[1] else f" p{pad}"
        if self._dilation() != (1, 1):
            text += f" d{self._dilation()[0]}"
        return text

    def attributes(self, xs):
        """Adds ``padding_resolved``: ``[[top, bottom], [left, right]]``, the numbers ``same``/``valid``
        (or a single int) became for this input size; absent while the spatial size is symbolic."""
        out = super().attributes(xs)
        spatial = xs[0].shape[2:] if xs and xs[0].rank == 4 else ()
        if len(spatial) == 2 and all(isinstance(n, int) for n in spatial):
            out["padding_resolved"] = [list(p) for p in self.pads(spatial)]
        return out


class Conv2d(_Windowed):
    """2-D cross-correlation, NCHW input, OIHW weight (O = filters, I = C/groups).

    ``y[n, o, i, j] = b[o] + Σ_{c∈group(o), u, v} w[o, c, u, v] · xpad[n, c, s·i + d·u, s·j + d·v]``

    Output size per spatial dim: ``floor((n + p_begin + p_end − d(k−1) − 1)/s) + 1``.
    Parameters ``O·(C/g)·kh·kw`` weights plus ``O`` biases; MACs ``O·H'·W'·(C/g)·kh·kw`` per example.
    ``groups = C = filters`` is a depthwise convolution. With ``activation: f`` the layer is
    ``f(conv2d(x))``: the convolution node is ``<name>/conv`` and the activation node ``<name>``.
    """

    kind = "conv2d"
    summary = "A 2-D convolution (cross-correlation) with learnable filters, over NCHW images."
    filters: PositiveInt = Field(description="number of output channels (O)")
    kernel: PositivePair = Field(description="window size: one int for both spatial dims or [kh, kw]")
    stride: PositivePair = Field(1, description="step between windows: one int or [sh, sw]")
    padding: Padding = Field(0, description="zeros added: one int for all sides, [ph, pw], {top, bottom, left, right}, 'same' (output size ceil(n/s)) or 'valid' (none)")
    dilation: PositivePair = Field(1, description="spacing between kernel taps (1: contiguous): one int or [dh, dw]")
    groups: PositiveInt = Field(1, description="channel groups; must divide input channels and filters (groups = channels = filters: depthwise)")
    bias: bool = Field(True, description="add a learnable bias per output channel")
    activation: ActivationName | None = Field(None, description=ACTIVATION_DOC)

    samples = (
        sample({"filters": 4, "kernel": 3, "padding": 1}, (2, 3, 5, 5)),
        sample({"filters": 4, "kernel": 3, "stride": 2, "padding": "same"}, (2, 2, 7, 6)),
        sample({"filters": 2, "kernel": [2, 3], "dilation": 2, "bias": False}, (1, 2, 7, 8)),
        sample({"filters": 4, "kernel": 3, "groups": 4, "padding": 1}, (2, 4, 5, 5), note="depthwise"),
        sample({"filters": 3, "kernel": 3, "stride": 2, "padding": {"top": 0, "bottom": 1, "left": 2, "right": 0}}, (1, 2, 6, 5),
               note="per-side padding"),
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
        return (f"{self.filters} " + super().describe() + (f" g{self.groups}" if self.groups != 1 else "")
                + (f" {self.activation}" if self.activation else ""))

    def expand(self, b, name, inputs):
        """The convolution node, then the activation node named after the layer when there is one."""
        if self.activation is None:
            return super().expand(b, name, inputs)
        conv = self.model_copy(update={"activation": None})
        params = [b.param(name, pname, p) for pname, p in conv.params([b.type_of(i) for i in inputs]).items()]
        return activate(b, name, b.op(f"{name}/conv", conv, list(inputs) + params), self.activation)

    def forward(self, x, w, b=None):
        return conv2d_forward(x, w, b, self._stride(), self._dilation(), self.groups, self.pads(x.shape[2:]))

    def onnx(self, ctx, xs, y):
        t = ctx.type_of(xs[0])
        inputs = [xs[0]] + [onnx_cast(ctx, v, t.dtype) for v in xs[1:]]
        ctx.node("Conv", inputs, y, kernel_shape=list(self._kernel()), strides=list(self._stride()),
                 dilations=list(self._dilation()), group=self.groups, **onnx_padding(self.pads(t.shape[2:])))

    def vjp(self, g, xs, y, gy):
        """``gx = conv2d_grad_input(gy, w)``, ``gw = conv2d_grad_weight(x, gy)``, ``gb = Σ_{n,h,w} gy``."""
        h, w = g.type_of(xs[0]).shape[2:]
        geometry = dict(kernel=self._kernel(), stride=self._stride(), dilation=self._dilation(), groups=self.groups,
                        pads=self.pads((h, w)))
        gx = g.op(Conv2dGradInput(**geometry, input_size=(h, w)), [gy, xs[1]], "dx") if g.needs(0) else None
        gw = g.op(Conv2dGradWeight(**geometry), [xs[0], gy], "dw") if g.needs(1) else None
        if not self.bias:
            return gx, gw
        return gx, gw, (g.op(ReduceSum(axes=(0, 2, 3)), [gy], "db") if g.needs(2) else None)


class ConvTranspose2d(_Windowed):
    """Transposed 2-D convolution (the gradient of conv2d w.r.t. its input), NCHW, weight (C, O/g, kh, kw).

    Output size per spatial dim: ``(n − 1)·s − 2p + d(k − 1) + output_padding + 1``.
    Each input pixel scatters ``w[c, o, :, :]`` scaled by its value into the output; MACs
    ``N·C·H·W·(O/g)·kh·kw`` per example.
    """

    kind = "conv_transpose2d"
    summary = "A transposed 2-D convolution that upsamples NCHW images with learnable filters."
    filters: PositiveInt = Field(description="number of output channels")
    kernel: PositivePair = Field(description="window size: one int for both spatial dims or [kh, kw]")
    stride: PositivePair = Field(1, description="upsampling step: one int or [sh, sw]")
    padding: NonNegativePair = Field(0, description="rows/columns removed from each side of the full output: one int or [ph, pw]")
    output_padding: NonNegativePair = Field(0, description="extra rows/columns at the bottom/right, smaller than stride or dilation: one int or [h, w]")
    dilation: PositivePair = Field(1, description="spacing between kernel taps: one int or [dh, dw]")
    groups: PositiveInt = Field(1, description="channel groups; must divide input channels and filters")
    bias: bool = Field(True, description="add a learnable bias per output channel")

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
            if op >= max(s, d):
                raise ShapeError(f"output_padding {op} must be smaller than stride {s} or dilation {d}")
            o = (n - 1) * s - 2 * p + d * (k - 1) + op + 1
            if isinstance(o, int) and o < 1:  # a symbolic size: checked when a run binds it
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

    def _conv_pads(self):
        """The padding of the conv2d whose input gradient this is: ``p`` on both sides (the
        ``output_padding`` rows/cols lie past the conv's last window)."""
        return tuple((p, p) for p in pair(self.padding))

    def _out_size(self, h: int, w: int) -> tuple[int, int]:
        return tuple((n - 1) * s - 2 * p + d * (k - 1) + op + 1 for n, k, s, p, op, d in
                     zip((h, w), self._kernel(), self._stride(), pair(self.padding), pair(self.output_padding), self._dilation()))

    def forward(self, x, w, b=None):
        y = conv2d_input_grad(x, w, self._stride(), self._dilation(), self.groups, self._conv_pads(), self._out_size(*x.shape[2:]))
        if b is not None:
            y += b.astype(y.dtype, copy=False).reshape(1, -1, 1, 1)
        return y

    def onnx(self, ctx, xs, y):
        t = ctx.type_of(xs[0])
        h, w = t.shape[2:]
        bias = onnx_cast(ctx, xs[2], t.dtype) if len(xs) > 2 else None
        onnx_transposed_conv(ctx, xs[0], onnx_cast(ctx, xs[1], t.dtype), ctx.type_of(xs[1]).shape, stride=self._stride(),
                             dilation=self._dilation(), groups=self.groups, pads_begin=pair(self.padding), in_hw=(h, w),
                             out_hw=self._out_size(h, w), bias=bias, output=y)

    def vjp(self, g, xs, y, gy):
        """As the input gradient of a conv2d ``x = conv2d(y; w)``: ``gx = conv2d(gy; w)`` (same weight,
        stride, padding, dilation, groups), ``gw = conv2d_grad_weight(gy, x)`` (roles swapped), ``gb = Σ gy``."""
        from ..errors import NotDifferentiable

        if any(op >= s for op, s in zip(pair(self.output_padding), self._stride())):
            raise NotDifferentiable("output_padding ≥ stride (allowed by a larger dilation) has no conv2d adjoint here")
        c = g.type_of(xs[0]).shape[1]
        gx = None
        if g.needs(0):
            conv = Conv2d(filters=c, kernel=self._kernel(), stride=self._stride(), padding=pair(self.padding),
                          dilation=self._dilation(), groups=self.groups, bias=False)
            gx = g.op(conv, [gy, xs[1]], "dx")
        gw = None
        if g.needs(1):
            gw = g.op(Conv2dGradWeight(kernel=self._kernel(), stride=self._stride(), dilation=self._dilation(), groups=self.groups,
                                       pads=self._conv_pads()), [gy, xs[0]], "dw")
        if not self.bias:
            return gx, gw
        return gx, gw, (g.op(ReduceSum(axes=(0, 2, 3)), [gy], "db") if g.needs(2) else None)


class _ConvGeometry(Op):
    """The static geometry of a forward conv2d that its gradient ops carry."""

    user_facing = False
    arity = (2, 2)
    kernel: Size2
    stride: Size2 = (1, 1)
    dilation: Size2 = (1, 1)
    groups: PositiveInt = 1
    pads: Pads = ((0, 0), (0, 0))

    def _out(self, h: int, w: int) -> tuple[int, int]:
        return tuple(conv_out(n, k, s, p[0] + p[1], d) for n, k, s, p, d in zip((h, w), self.kernel, self.stride, self.pads, self.dilation))

    def window(self, xs):
        return None


class Conv2dGradInput(_ConvGeometry):
    """Gradient of conv2d w.r.t. its input: the transposed convolution (col2im) of ``gy`` with ``w``.

    ``gx[n, c, h, w] = Σ_{o ∈ group(c), u, v, i, j : s·i + d·u = h + p_top, s·j + d·v = w + p_left} w[o, c mod C/g, u, v] · gy[n, o, i, j]``

    Inputs ``gy`` (N, O, Ho, Wo) and the OIHW weight (O, C/g, kh, kw); output (N, C, H, W) with
    ``(H, W) = input_size`` (stride makes it ambiguous from ``gy``). Also the kernel of conv_transpose2d.
    """

    kind = "conv2d_grad_input"
    input_size: Size2

    samples = (
        sample({"kernel": 3, "stride": 2, "pads": [[1, 1], [1, 1]], "input_size": [5, 6]}, (2, 4, 3, 3), (4, 3, 3, 3)),
        sample({"kernel": [2, 3], "dilation": 2, "groups": 2, "pads": [[0, 1], [1, 0]], "input_size": [6, 7]}, (1, 4, 5, 4), (4, 1, 2, 3),
               note="grouped, dilated, asymmetric padding"),
    )

    def infer(self, xs):
        gy, w = xs
        expect_rank(gy, 4, "conv2d_grad_input gy (N, O, Ho, Wo)")
        expect_rank(w, 4, "conv2d_grad_input weight (O, C/g, kh, kw)")
        o = static(gy.shape[1], "gy channels")
        if w.shape[0] != o or o % self.groups or tuple(w.shape[2:]) != self.kernel:
            raise ShapeError(f"weight {w.shape} does not fit gy {gy.shape} with kernel {self.kernel} and groups {self.groups}")
        if self._out(*self.input_size) != tuple(gy.shape[2:]):
            raise ShapeError(f"gy spatial size {tuple(gy.shape[2:])} is not the conv output {self._out(*self.input_size)} "
                             f"of input size {self.input_size}")
        return TensorType((gy.shape[0], w.shape[1] * self.groups, *self.input_size), gy.dtype)

    def macs(self, xs, y):
        return xs[0].numel() * xs[1].shape[1] * self.kernel[0] * self.kernel[1]

    def forward(self, gy, w):
        return conv2d_input_grad(gy, w, self.stride, self.dilation, self.groups, self.pads, self.input_size)

    def fused_forward(self, xs, other, other_xs):
        """With the weight gradient of the same conv (same gy, same geometry): ``conv2d_grads``, which
        builds one set of columns for both."""
        geometry = ("kernel", "stride", "dilation", "groups", "pads")
        if other.kind != Conv2dGradWeight.kind or xs[0] != other_xs[1] or any(getattr(self, a) != getattr(other, a) for a in geometry):
            return None
        stride, dilation, groups, pads, in_hw = self.stride, self.dilation, self.groups, self.pads, self.input_size
        return lambda gy, w, x, _gy: conv2d_grads(x, gy, w, stride, dilation, groups, pads, in_hw)

    def onnx(self, ctx, xs, y):
        gy, w = xs
        t = ctx.type_of(gy)
        onnx_transposed_conv(ctx, gy, onnx_cast(ctx, w, t.dtype), ctx.type_of(w).shape, stride=self.stride,
                             dilation=self.dilation, groups=self.groups, pads_begin=(self.pads[0][0], self.pads[1][0]),
                             in_hw=t.shape[2:], out_hw=self.input_size, output=y)


class Conv2dGradWeight(_ConvGeometry):
    """Gradient of conv2d w.r.t. its OIHW weight: one GEMM of ``gy`` with the im2col columns of ``x``.

    ``gw[o, c, u, v] = Σ_{n, i, j} gy[n, o, i, j] · xpad[n, g(o)·C/g + c, s·i + d·u, s·j + d·v]``

    Inputs ``x`` (N, C, H, W) and ``gy`` (N, O, Ho, Wo); output (O, C/g, kh, kw).
    """

    kind = "conv2d_grad_weight"

    samples = (
        sample({"kernel": 3, "stride": 2, "pads": [[1, 1], [1, 1]]}, (2, 3, 5, 6), (2, 4, 3, 3)),
        sample({"kernel": [2, 3], "dilation": 2, "groups": 2, "pads": [[0, 1], [1, 0]]}, (1, 2, 6, 7), (1, 4, 5, 4),
               note="grouped, dilated, asymmetric padding"),
    )

    def infer(self, xs):
        x, gy = xs
        expect_rank(x, 4, "conv2d_grad_weight x (N, C, H, W)")
        expect_rank(gy, 4, "conv2d_grad_weight gy (N, O, Ho, Wo)")
        c, o = static(x.shape[1], "input channels"), static(gy.shape[1], "gy channels")
        if c % self.groups or o % self.groups:
            raise ShapeError(f"groups={self.groups} must divide input channels {c} and output channels {o}")
        h, w = static(x.shape[2], "input height"), static(x.shape[3], "input width")
        if self._out(h, w) != tuple(gy.shape[2:]):
            raise ShapeError(f"gy spatial size {tuple(gy.shape[2:])} is not the conv output {self._out(h, w)} of input {(h, w)}")
        return TensorType((o, c // self.groups, *self.kernel), x.dtype)

    def macs(self, xs, y):
        return xs[1].numel() * y.shape[1] * self.kernel[0] * self.kernel[1]

    def forward(self, x, gy):
        return conv2d_weight_grad(x, gy, self.kernel, self.stride, self.dilation, self.groups, self.pads)

    def onnx(self, ctx, xs, y):
        x, gy = xs
        gy_hw = ctx.type_of(gy).shape[2:]
        onnx_conv_weight_grad(ctx, x, onnx_cast(ctx, gy, ctx.type_of(x).dtype), gy_hw, kernel=self.kernel, stride=self.stride,
                              dilation=self.dilation, groups=self.groups, pads=self.pads, output=y)


OPS = (Conv2d, ConvTranspose2d, Conv2dGradInput, Conv2dGradWeight)
