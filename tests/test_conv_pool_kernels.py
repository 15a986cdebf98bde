"""The conv / pool / upsample kernels and their gradient ops against naive loop references written
here from the definitions (PyTorch's semantics for ceil mode and count_include_pad), plus the
course's worked examples. PyTorch is used as a further oracle only when it is importable."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from graphc.ops import conv
from graphc.ops.base import conv_out, pair
from graphc.ops.conv import Conv2d, Conv2dGradInput, Conv2dGradWeight, ConvTranspose2d
from graphc.ops.pool import AvgPool2d, AvgPool2dGrad, GlobalAvgPool, GlobalAvgPoolGrad, MaxPool2d, MaxPool2dGrad, Upsample, UpsampleGrad
from graphc.tensor import TensorType

RNG = np.random.default_rng(0)


def randn(*shape):
    return RNG.standard_normal(shape)


# --- naive references (loops over everything; fine for tiny shapes) ---------------------------------

def naive_conv2d(x, w, b, stride, pads, dilation, groups):
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    (sh, sw), ((pt, pb), (pl, pr)), (dh, dw) = stride, pads, dilation
    ho = conv_out(h, kh, sh, pt + pb, dh)
    wo = conv_out(wd, kw, sw, pl + pr, dw)
    y = np.zeros((n, o, ho, wo))
    og = o // groups
    for b_, oc, i, j in itertools.product(range(n), range(o), range(ho), range(wo)):
        g = oc // og
        acc = 0.0 if b is None else b[oc]
        for ci, u, v in itertools.product(range(cg), range(kh), range(kw)):
            hh, ww = i * sh + u * dh - pt, j * sw + v * dw - pl
            if 0 <= hh < h and 0 <= ww < wd:
                acc += w[oc, ci, u, v] * x[b_, g * cg + ci, hh, ww]
        y[b_, oc, i, j] = acc
    return y


def naive_conv2d_grads(x, w, gy, stride, pads, dilation, groups):
    """(gx, gw) by differentiating the naive loop by hand: every product's two partials."""
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    (sh, sw), ((pt, _), (pl, _)), (dh, dw) = stride, pads, dilation
    _, _, ho, wo = gy.shape
    gx, gw = np.zeros_like(x), np.zeros_like(w)
    og = o // groups
    for b_, oc, i, j in itertools.product(range(n), range(o), range(ho), range(wo)):
        g = oc // og
        for ci, u, v in itertools.product(range(cg), range(kh), range(kw)):
            hh, ww = i * sh + u * dh - pt, j * sw + v * dw - pl
            if 0 <= hh < h and 0 <= ww < wd:
                gx[b_, g * cg + ci, hh, ww] += w[oc, ci, u, v] * gy[b_, oc, i, j]
                gw[oc, ci, u, v] += x[b_, g * cg + ci, hh, ww] * gy[b_, oc, i, j]
    return gx, gw


def naive_conv_transpose2d(x, w, b, stride, padding, output_padding, dilation, groups):
    """Scatter definition: ``y[n, o, s·i − p + d·u, …] += x[n, c, i, j] · w[c, o', u, v]``."""
    n, c, h, wd = x.shape
    _, og, kh, kw = w.shape
    (sh, sw), (ph, pw), (oph, opw), (dh, dw) = stride, padding, output_padding, dilation
    ho = (h - 1) * sh - 2 * ph + dh * (kh - 1) + oph + 1
    wo = (wd - 1) * sw - 2 * pw + dw * (kw - 1) + opw + 1
    y = np.zeros((n, og * groups, ho, wo))
    cg = c // groups
    for b_, ci, i, j, oo, u, v in itertools.product(range(n), range(c), range(h), range(wd), range(og), range(kh), range(kw)):
        hh, ww = i * sh - ph + u * dh, j * sw - pw + v * dw
        if 0 <= hh < ho and 0 <= ww < wo:
            y[b_, (ci // cg) * og + oo, hh, ww] += x[b_, ci, i, j] * w[ci, oo, u, v]
    if b is not None:
        y += b.reshape(1, -1, 1, 1)
    return y


def pool_out(n, k, s, p, d, ceil_mode):
    o = conv_out(n, k, s, p[0] + p[1], d, ceil_mode)
    if ceil_mode and (o - 1) * s >= n + p[0]:
        o -= 1
    return o


def naive_maxpool(x, kernel, stride, pads, dilation, ceil_mode):
    """(y, gx-routing): y and, per output, the (h, w) of the first maximum among real inputs."""
    n, c, h, w = x.shape
    ho = pool_out(h, kernel[0], stride[0], pads[0], dilation[0], ceil_mode)
    wo = pool_out(w, kernel[1], stride[1], pads[1], dilation[1], ceil_mode)
    y = np.zeros((n, c, ho, wo))
    arg = {}
    for b_, ch, i, j in itertools.product(range(n), range(c), range(ho), range(wo)):
        best, where = -math.inf, None
        for u, v in itertools.product(range(kernel[0]), range(kernel[1])):
            hh = i * stride[0] - pads[0][0] + u * dilation[0]
            ww = j * stride[1] - pads[1][0] + v * dilation[1]
            if 0 <= hh < h and 0 <= ww < w and x[b_, ch, hh, ww] > best:
                best, where = x[b_, ch, hh, ww], (hh, ww)
        y[b_, ch, i, j] = best
        arg[b_, ch, i, j] = where
    return y, arg


def naive_maxpool_grad(x, gy, arg):
    gx = np.zeros_like(x)
    for (b_, ch, i, j), (hh, ww) in arg.items():
        gx[b_, ch, hh, ww] += gy[b_, ch, i, j]
    return gx


def naive_avgpool(x, kernel, stride, pads, ceil_mode, count_include_pad):
    """PyTorch's avg_pool2d loop, with begin/end padding kept apart for 'same'."""
    n, c, h, w = x.shape
    ho = pool_out(h, kernel[0], stride[0], pads[0], 1, ceil_mode)
    wo = pool_out(w, kernel[1], stride[1], pads[1], 1, ceil_mode)
    y = np.zeros((n, c, ho, wo))
    divisors = np.zeros((ho, wo))
    for i, j in itertools.product(range(ho), range(wo)):
        h0, w0 = i * stride[0] - pads[0][0], j * stride[1] - pads[1][0]
        h1, w1 = min(h0 + kernel[0], h + pads[0][1]), min(w0 + kernel[1], w + pads[1][1])
        pool_size = (h1 - h0) * (w1 - w0)
        h0, w0, h1, w1 = max(h0, 0), max(w0, 0), min(h1, h), min(w1, w)
        divisors[i, j] = pool_size if count_include_pad else (h1 - h0) * (w1 - w0)
        y[:, :, i, j] = x[:, :, h0:h1, w0:w1].sum(axis=(2, 3)) / divisors[i, j]
    return y, divisors


def naive_avgpool_grad(x_shape, gy, kernel, stride, pads, divisors):
    gx = np.zeros(x_shape)
    h, w = x_shape[2:]
    for i, j in itertools.product(range(gy.shape[2]), range(gy.shape[3])):
        h0, w0 = i * stride[0] - pads[0][0], j * stride[1] - pads[1][0]
        h1, w1 = min(h0 + kernel[0], h), min(w0 + kernel[1], w)
        gx[:, :, max(h0, 0):h1, max(w0, 0):w1] += gy[:, :, i:i + 1, j:j + 1] / divisors[i, j]
    return gx


def naive_bilinear(x, sh, sw):
    n, c, h, w = x.shape
    y = np.zeros((n, c, h * sh, w * sw))

    def taps(o, f, size):
        src = max((o + 0.5) / f - 0.5, 0.0)
        i0 = min(int(math.floor(src)), size - 1)
        return i0, min(i0 + 1, size - 1), src - i0

    for i, j in itertools.product(range(h * sh), range(w * sw)):
        a0, a1, la = taps(i, sh, h)
        b0, b1, lb = taps(j, sw, w)
        y[:, :, i, j] = ((1 - la) * (1 - lb) * x[:, :, a0, b0] + (1 - la) * lb * x[:, :, a0, b1]
                         + la * (1 - lb) * x[:, :, a1, b0] + la * lb * x[:, :, a1, b1])
    return y


def adjoint(f, x_shape, y_like, eps=1e-6):
    """The transpose of a linear map ``f`` on arrays, column by column (for tiny shapes)."""
    cols = []
    for k in range(int(np.prod(x_shape))):
        e = np.zeros(int(np.prod(x_shape)))
        e[k] = 1.0
        cols.append(f(e.reshape(x_shape)).ravel())
    a = np.stack(cols, axis=1)  # (|y|, |x|)
    return lambda gy: (a.T @ gy.ravel()).reshape(x_shape)


# --- convolution --------------------------------------------------------------------------------------

CONV_CASES = [
    dict(filters=4, kernel=3, padding=1),
    dict(filters=3, kernel=3, stride=2, padding=1),
    dict(filters=4, kernel=3, stride=2, padding="same"),
    dict(filters=2, kernel=[2, 3], dilation=2, bias=False),
    dict(filters=4, kernel=3, groups=4, padding=1),              # depthwise
    dict(filters=6, kernel=[3, 2], stride=[2, 1], padding=[1, 0], groups=2, dilation=[1, 2]),
    dict(filters=2, kernel=1, stride=2),
    dict(filters=8, kernel=2, groups=4, padding="same", stride=3),
    dict(filters=3, kernel=5, padding="same"),                   # total 4 → (2, 2)
    dict(filters=3, kernel=4, padding="same"),                   # total 3 → (1, 2): asymmetric
]
CONV_INPUTS = [(2, 4, 7, 6), (1, 4, 5, 8)]


@pytest.fixture(params=["banded", "im2col", "im2col per image"])
def road(request, monkeypatch):
    """Both roads of the conv kernels: the banded form (ungrouped only) and im2col, the latter also
    with the batch cut into one chunk per image (the partial weight gradients summed)."""
    monkeypatch.setattr(conv, "_banded", lambda o, kw, wp, groups: request.param == "banded" and groups == 1)
    if request.param == "im2col per image":
        monkeypatch.setattr(conv, "CHUNK_BYTES", 1)
    return request.param


@pytest.mark.parametrize("attrs", CONV_CASES, ids=[str(i) for i in range(len(CONV_CASES))])
@pytest.mark.parametrize("x_shape", CONV_INPUTS, ids=["7x6", "5x8"])
def test_conv2d_forward_and_gradients_match_naive_loops(attrs, x_shape, road):
    op = Conv2d.model_validate(attrs)
    params = op.params([TensorType(x_shape, "float64")])
    x = randn(*x_shape)
    w = randn(*params["weight"].shape)
    b = randn(op.filters) if op.bias else None
    pads = op.pads(x_shape[2:])
    want = naive_conv2d(x, w, b, op._stride(), pads, op._dilation(), op.groups)
    got = op.forward(x, w, *([b] if op.bias else []))
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    assert got.shape == tuple(op.infer([TensorType(x_shape, "float64"), TensorType(w.shape, "float64")]).shape)

    gy = randn(*want.shape)
    gx_want, gw_want = naive_conv2d_grads(x, w, gy, op._stride(), pads, op._dilation(), op.groups)
    geometry = dict(kernel=op._kernel(), stride=op._stride(), dilation=op._dilation(), groups=op.groups, pads=pads)
    gx = Conv2dGradInput(**geometry, input_size=x_shape[2:]).forward(gy, w)
    gw = Conv2dGradWeight(**geometry).forward(x, gy)
    np.testing.assert_allclose(gx, gx_want, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(gw, gw_want, rtol=1e-10, atol=1e-12)
    # the interpreter's fused step for both (one set of columns where the geometry allows it)
    both = Conv2dGradInput(**geometry, input_size=x_shape[2:]).fused_forward(("gy", "w"), Conv2dGradWeight(**geometry), ("x", "gy"))
    for got, want in zip(both(gy, w, x, gy), (gx_want, gw_want)):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_conv2d_grads_fuse_only_the_same_conv():
    geometry = dict(kernel=(3, 3), pads=((1, 1), (1, 1)))
    grad_input = Conv2dGradInput(**geometry, input_size=(5, 5))
    assert grad_input.fused_forward(("gy", "w"), Conv2dGradWeight(**geometry), ("x", "gy")) is not None
    assert grad_input.fused_forward(("gy", "w"), Conv2dGradWeight(**geometry), ("x", "other_gy")) is None
    assert grad_input.fused_forward(("gy", "w"), Conv2dGradWeight(kernel=(3, 3)), ("x", "gy")) is None


def test_conv2d_is_float32_in_float32_out_and_contiguous():
    op = Conv2d(filters=8, kernel=3, padding=1, groups=2)
    x = randn(2, 4, 9, 9).astype(np.float32)
    w = randn(8, 2, 3, 3).astype(np.float32)
    b = randn(8).astype(np.float32)
    y = op.forward(x, w, b)
    assert y.dtype == np.float32 and y.flags.c_contiguous
    np.testing.assert_allclose(y, naive_conv2d(x.astype(np.float64), w, b, (1, 1), ((1, 1), (1, 1)), (1, 1), 2), rtol=1e-4, atol=1e-4)
    geometry = dict(kernel=(3, 3), groups=2, pads=((1, 1), (1, 1)))
    assert Conv2dGradInput(**geometry, input_size=(9, 9)).forward(y, w).dtype == np.float32
    assert Conv2dGradWeight(**geometry).forward(x, y).dtype == np.float32


def test_conv2d_course_example():
    """A 3×3 input, a 2×2 kernel of ones, stride 1, no padding: each output is its window's sum."""
    x = np.arange(9.0).reshape(1, 1, 3, 3)
    w = np.ones((1, 1, 2, 2))
    y = Conv2d(filters=1, kernel=2, bias=False).forward(x, w)
    np.testing.assert_array_equal(y[0, 0], [[0 + 1 + 3 + 4, 1 + 2 + 4 + 5], [3 + 4 + 6 + 7, 4 + 5 + 7 + 8]])


TRANSPOSE_CASES = [
    dict(filters=3, kernel=2, stride=2),
    dict(filters=2, kernel=3, stride=2, padding=1, output_padding=1),
    dict(filters=4, kernel=3, stride=1, padding=1, groups=2),
    dict(filters=2, kernel=[3, 2], stride=[1, 3], dilation=[2, 1], output_padding=[0, 2]),
]


@pytest.mark.parametrize("attrs", TRANSPOSE_CASES, ids=[str(i) for i in range(len(TRANSPOSE_CASES))])
def test_conv_transpose2d_matches_scatter_definition(attrs, road):
    op = ConvTranspose2d.model_validate(attrs)
    x_shape = (2, 4, 3, 4)
    w = randn(*op.params([TensorType(x_shape, "float64")])["weight"].shape)
    x, b = randn(*x_shape), randn(op.filters)
    want = naive_conv_transpose2d(x, w, b, op._stride(), pair(op.padding), pair(op.output_padding), op._dilation(), op.groups)
    got = op.forward(x, w, b)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    assert got.shape == op.infer([TensorType(x_shape, "float64"), TensorType(w.shape, "float64")]).shape


def test_the_banded_form_is_taken_for_thin_convs_only():
    """LeNet-5's 5×5 convs (6 and 16 filters over rows of 32 and 14) take the banded form; ResNet's
    3×3 convs over rows of 34, VGG's wide layers and grouped convs take im2col."""
    assert conv._banded(6, 5, 32, 1) and conv._banded(16, 5, 14, 1)
    assert not conv._banded(16, 3, 34, 1) and not conv._banded(64, 3, 226, 1) and not conv._banded(6, 5, 32, 2)


def test_conv2d_grad_input_is_the_adjoint_of_conv2d():
    """⟨conv(x), gy⟩ = ⟨x, conv2d_grad_input(gy)⟩ for a strided, padded, dilated, grouped conv."""
    op = Conv2d(filters=4, kernel=3, stride=2, padding="same", dilation=2, groups=2, bias=False)
    x, w = randn(2, 4, 9, 8), randn(4, 2, 3, 3)
    y = op.forward(x, w)
    gy = randn(*y.shape)
    pads = op.pads((9, 8))
    gx = Conv2dGradInput(kernel=3, stride=2, dilation=2, groups=2, pads=pads, input_size=(9, 8)).forward(gy, w)
    assert np.isclose(np.vdot(y, gy), np.vdot(x, gx), rtol=1e-12)


# --- pooling ------------------------------------------------------------------------------------------

def test_maxpool_course_example():
    """2×2 max pooling, stride 2, on a 4×4 array (CS231n's example) and its gradient routing."""
    x = np.array([[1, 1, 2, 4], [5, 6, 7, 8], [3, 2, 1, 0], [1, 2, 3, 4]], dtype=np.float32).reshape(1, 1, 4, 4)
    op = MaxPool2d(kernel=2, stride=2)
    y = op.forward(x)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y[0, 0], [[6, 8], [3, 4]])
    gy = np.array([[10, 20], [30, 40]], dtype=np.float32).reshape(1, 1, 2, 2)
    gx = MaxPool2dGrad(kernel=2, stride=2).forward(x, gy)
    assert gx.dtype == np.float32
    np.testing.assert_array_equal(gx[0, 0], [[0, 0, 0, 0], [0, 10, 0, 20], [30, 0, 0, 0], [0, 0, 0, 40]])


def test_maxpool_ties_route_to_the_first_maximum():
    x = np.ones((1, 1, 2, 2))
    gx = MaxPool2dGrad(kernel=2).forward(x, np.full((1, 1, 1, 1), 5.0))
    np.testing.assert_array_equal(gx[0, 0], [[5, 0], [0, 0]])


def test_maxpool_padding_never_wins():
    x = -np.arange(1.0, 10.0).reshape(1, 1, 3, 3)  # all negative: zero padding would win
    op = MaxPool2d(kernel=2, stride=2, padding=1)
    np.testing.assert_array_equal(op.forward(x)[0, 0], [[-1, -2], [-4, -5]])


MAXPOOL_CASES = [
    dict(kernel=2, stride=2),
    dict(kernel=3, stride=2, padding=1),
    dict(kernel=3, stride=2, padding=1, ceil_mode=True),
    dict(kernel=2, stride=2, ceil_mode=True),
    dict(kernel=[2, 3], stride=1, dilation=2),
    dict(kernel=3, stride=2, dilation=2, padding=1, ceil_mode=True),
    dict(kernel=3, stride=1, padding="same"),
    dict(kernel=2, stride=3, padding="same"),
]


@pytest.mark.parametrize("attrs", MAXPOOL_CASES, ids=[str(i) for i in range(len(MAXPOOL_CASES))])
@pytest.mark.parametrize("x_shape", [(2, 3, 7, 6), (1, 2, 6, 9)], ids=["7x6", "6x9"])
def test_maxpool_and_its_gradient_match_naive_loops(attrs, x_shape):
    op = MaxPool2d.model_validate(attrs)
    x = randn(*x_shape)
    pads = op.pads(x_shape[2:])
    want, arg = naive_maxpool(x, op._kernel(), op._stride(), pads, op._dilation(), op.ceil_mode)
    got = op.forward(x)
    np.testing.assert_array_equal(got, want)
    assert got.shape == op.infer([TensorType(x_shape, "float64")]).shape
    gy = randn(*want.shape)
    np.testing.assert_allclose(MaxPool2dGrad.model_validate(attrs).forward(x, gy), naive_maxpool_grad(x, gy, arg), rtol=1e-12)



TIED_MAXPOOL_CASES = MAXPOOL_CASES + [dict(kernel=2, stride=3, padding=1), dict(kernel=[1, 3], stride=[1, 3])]


@pytest.mark.parametrize("attrs", TIED_MAXPOOL_CASES, ids=[str(i) for i in range(len(TIED_MAXPOOL_CASES))])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_maxpool_gradient_with_ties_matches_naive_loops(attrs, dtype):
    """Small integers and ReLU zeros: most windows tie. Windows that tile the input, disjoint windows
    with padding and overlapping ones all route each gy to the first maximum; gx's zeros are +0.0."""
    op = MaxPool2dGrad.model_validate(attrs)
    for x in (RNG.integers(-1, 2, (2, 3, 8, 6)), np.maximum(randn(2, 3, 8, 6), 0)):
        x = x.astype(dtype)
        _, arg = naive_maxpool(x, op._kernel(), op._stride(), op.pads(x.shape[2:]), op._dilation(), op.ceil_mode)
        pool = MaxPool2d.model_validate(attrs)
        gy = randn(*pool.forward(x).shape).astype(dtype)
        gx = op.forward(x, gy)
        assert gx.shape == x.shape and gx.dtype == dtype
        tol = 1e-6 if dtype == np.float32 else 1e-12  # overlapping windows: sums of a few gy in another order
        np.testing.assert_allclose(gx, naive_maxpool_grad(x, gy, arg), rtol=tol, atol=tol)
        assert not np.signbit(gx[gx == 0]).any()
        # given the pool's output, as the interpreter's schedule does: the same routing
        reusing = op.reuse_forward(("x", "gy"), pool, ("x",))
        np.testing.assert_array_equal(reusing(x, gy, pool.forward(x)), gx)
    assert op.reuse_forward(("x", "gy"), MaxPool2d.model_validate(attrs), ("other",)) is None

AVGPOOL_CASES = [
    dict(kernel=2),
    dict(kernel=3, stride=2, padding=1),
    dict(kernel=3, stride=2, padding=1, count_include_pad=True),
    dict(kernel=3, stride=2, padding=1, ceil_mode=True),
    dict(kernel=3, stride=2, padding=1, ceil_mode=True, count_include_pad=True),
    dict(kernel=2, stride=2, ceil_mode=True, count_include_pad=True),
    dict(kernel=[3, 2], stride=[2, 1], padding=[1, 0], ceil_mode=True),
    dict(kernel=4, stride=3, padding="same", count_include_pad=True),
]


@pytest.mark.parametrize("attrs", AVGPOOL_CASES, ids=[str(i) for i in range(len(AVGPOOL_CASES))])
@pytest.mark.parametrize("x_shape", [(2, 3, 7, 6), (1, 2, 6, 9)], ids=["7x6", "6x9"])
def test_avgpool_and_its_gradient_match_naive_loops(attrs, x_shape):
    op = AvgPool2d.model_validate(attrs)
    x = randn(*x_shape)
    pads = op.pads(x_shape[2:])
    want, divisors = naive_avgpool(x, op._kernel(), op._stride(), pads, op.ceil_mode, op.count_include_pad)
    got = op.forward(x)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    gy = randn(*want.shape)
    gx = AvgPool2dGrad.model_validate({**attrs, "input_size": x_shape[2:]}).forward(gy)
    np.testing.assert_allclose(gx, naive_avgpool_grad(x_shape, gy, op._kernel(), op._stride(), pads, divisors), rtol=1e-12)
    # and it is the exact adjoint of the forward
    np.testing.assert_allclose(gx, adjoint(op.forward, x_shape, want)(gy), rtol=1e-10, atol=1e-12)


def test_avgpool_ceil_mode_divisors_follow_pytorch():
    """PyTorch: avg_pool2d(ones(1,1,5,5), 2, 2, ceil_mode=True) has a 2-element last window (divisor 2)."""
    y = AvgPool2d(kernel=2, stride=2, ceil_mode=True, count_include_pad=True).forward(np.ones((1, 1, 5, 5)))
    np.testing.assert_array_equal(y, np.ones((1, 1, 3, 3)))
    y = AvgPool2d(kernel=3, stride=2, padding=1, count_include_pad=True).forward(np.ones((1, 1, 4, 4)))
    np.testing.assert_allclose(y[0, 0], [[4 / 9, 6 / 9], [6 / 9, 1.0]])


def test_global_avgpool_and_gradient():
    x = randn(2, 3, 4, 5).astype(np.float32)
    y = GlobalAvgPool().forward(x)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, x.astype(np.float64).mean(axis=(2, 3)), rtol=1e-5)
    gy = randn(2, 3).astype(np.float32)
    gx = GlobalAvgPoolGrad(size=(4, 5)).forward(gy)
    assert gx.dtype == np.float32 and gx.shape == (2, 3, 4, 5)
    np.testing.assert_allclose(gx, np.broadcast_to(gy[:, :, None, None] / 20, gx.shape), rtol=1e-6)


# --- upsampling ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("scale", [2, (2, 3), (1, 4), 3])
def test_upsample_nearest_and_gradient(scale):
    x = randn(2, 3, 3, 4)
    sh, sw = (scale, scale) if isinstance(scale, int) else scale
    y = Upsample(scale=scale).forward(x)
    np.testing.assert_array_equal(y, x.repeat(sh, axis=2).repeat(sw, axis=3))
    gy = randn(*y.shape)
    gx = UpsampleGrad(scale=scale).forward(gy)
    want = np.zeros_like(x)
    for a, b in itertools.product(range(sh), range(sw)):
        want += gy[:, :, a::sh, b::sw]
    np.testing.assert_allclose(gx, want, rtol=1e-12)


@pytest.mark.parametrize("scale,size", [(2, (3, 4)), ((2, 3), (4, 3)), (3, (1, 2)), (4, (5, 5))])
def test_upsample_bilinear_and_gradient(scale, size):
    x = randn(1, 2, *size)
    sh, sw = (scale, scale) if isinstance(scale, int) else scale
    op = Upsample(scale=scale, mode="bilinear")
    y = op.forward(x)
    np.testing.assert_allclose(y, naive_bilinear(x, sh, sw), rtol=1e-12, atol=1e-14)
    gy = randn(*y.shape)
    gx = UpsampleGrad(scale=scale, mode="bilinear").forward(gy)
    np.testing.assert_allclose(gx, adjoint(op.forward, x.shape, y)(gy), rtol=1e-10, atol=1e-12)
    y32 = op.forward(x.astype(np.float32))
    assert y32.dtype == np.float32 and UpsampleGrad(scale=scale, mode="bilinear").forward(gy.astype(np.float32)).dtype == np.float32


def test_upsample_bilinear_known_values():
    """1-D ramp [0, 1] ×2 under half-pixel sampling: [0, 0.25, 0.75, 1] (edge-clamped)."""
    y = Upsample(scale=[1, 2], mode="bilinear").forward(np.array([[[[0.0, 1.0]]]]))
    np.testing.assert_allclose(y[0, 0, 0], [0.0, 0.25, 0.75, 1.0])
