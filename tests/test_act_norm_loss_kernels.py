"""Kernels and gradient rules of activations, normalisation and losses against independent NumPy
references written out from the course's formulas (loops where they make the formula plain)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from op_harness import one_op_graph, sample_values

from graphc.backends.interpreter import Program
from graphc.ir.autodiff import differentiate, to_training_mode
from graphc.ops.activations import Dropout, Elu, LeakyRelu, Maxout, MaxoutGrad, PRelu
from graphc.ops.base import sample
from graphc.ops.elementwise import ReluGrad
from graphc.ops.loss import (
    L1,
    MSE,
    Hinge,
    HingeGrad,
    L1Grad,
    L2Penalty,
    MSEGrad,
    SigmoidCrossEntropy,
    SigmoidCrossEntropyGrad,
    SoftmaxCrossEntropy,
    SoftmaxCrossEntropyGrad,
)
from graphc.ops.norm import (
    BatchNorm,
    BatchNormGradGamma,
    BatchNormRunningUpdate,
    BatchNormStats,
    BatchNormTrain,
    BatchNormTrainGradInput,
    LayerNorm,
    LayerNormGradGamma,
    LayerNormGradInput,
)

RNG = np.random.default_rng(1234)


def op_gradients(cls, attrs, shapes, values=None, dtypes=None):
    """Gradients of ``Σ op(inputs) ⊙ r`` w.r.t. every float input/trainable param, through the IR."""
    s = sample(attrs, *shapes, dtypes=dtypes)
    graph, out = one_op_graph(cls, s)
    vals = sample_values(graph, seed=7)
    vals.update(values or {})
    wrt = [n for n, a in graph.nodes(data=True) if n != "r" and a["type"].dtype.startswith("float")
           and (a["role"] == "input" or (a["role"] == "param" and a["op"].trainable))]
    training, grads = differentiate(graph, "loss", wrt)
    got = Program(training, [out] + [grads[w] for w in wrt]).run(vals)
    return vals, got[out], {w: got[grads[w]] for w in wrt}


# --- losses ---------------------------------------------------------------------------------------

def softmax_ce_reference(s, y):
    total = 0.0
    for i in range(s.shape[0]):
        p = np.exp(s[i] - s[i].max())
        p /= p.sum()
        total += -math.log(p[y[i]])
    return total / s.shape[0]


def test_softmax_cross_entropy_matches_the_course_formula_and_its_gradient():
    s, y = RNG.standard_normal((5, 4)), np.array([0, 3, 1, 1, 2])
    assert SoftmaxCrossEntropy().forward(s, y) == pytest.approx(softmax_ce_reference(s, y), rel=1e-12)
    p = np.exp(s) / np.exp(s).sum(axis=1, keepdims=True)
    onehot = np.eye(4)[y]
    g = SoftmaxCrossEntropyGrad().forward(s, y, np.asarray(2.0))
    np.testing.assert_allclose(g, 2.0 * (p - onehot) / 5, rtol=1e-12)


def test_softmax_cross_entropy_of_a_sequence_is_the_mean_over_every_position():
    """(N, T, C) next-token scores against (N, T) labels: the course formula over all N·T rows."""
    s, y = np.random.default_rng(7).standard_normal((2, 3, 4)), np.array([[0, 3, 1], [1, 2, 2]])  # own generator: RNG's
    # draws for the tests below stay as they were
    rows = [(s[i, t], y[i, t]) for i in range(2) for t in range(3)]
    want = sum(softmax_ce_reference(r[None], np.array([k])) for r, k in rows) / 6
    assert SoftmaxCrossEntropy().forward(s, y) == pytest.approx(want, rel=1e-12)
    p = np.exp(s) / np.exp(s).sum(axis=-1, keepdims=True)
    g = SoftmaxCrossEntropyGrad().forward(s, y, np.asarray(2.0))
    assert g.shape == (2, 3, 4)
    np.testing.assert_allclose(g, 2.0 * (p - np.eye(4)[y]) / 6, rtol=1e-12)


def test_softmax_classifier_loss_at_initialisation_is_log_c():
    """The course's sanity check: tiny random weights give loss ≈ −log(1/C)."""
    c = 10
    x = RNG.standard_normal((200, 3072)).astype(np.float32)
    w = (0.0001 * RNG.standard_normal((3072, c))).astype(np.float32)
    loss = SoftmaxCrossEntropy().forward(x @ w, RNG.integers(0, c, 200))
    assert loss.dtype == np.float32 and loss.shape == ()
    assert loss == pytest.approx(-math.log(1 / c), rel=0.01)


def test_softmax_cross_entropy_is_stable_for_huge_scores():
    s = np.array([[1000.0, 0.0, -1000.0], [0.0, 1000.0, 0.0]], dtype=np.float32)
    loss = SoftmaxCrossEntropy().forward(s, np.array([2, 1]))
    assert loss.dtype == np.float32 and np.isfinite(loss)
    assert loss == pytest.approx((2000.0 + 0.0) / 2)


@pytest.mark.parametrize("c", [3, 10, 63, 64, 200])  # both sides of the column-major path for few classes
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_cross_entropy_and_gradient_for_few_and_many_classes(c, dtype):
    n = 37
    s = (3 * RNG.standard_normal((n, c))).astype(dtype)
    y = RNG.integers(0, c, n)
    rtol = 1e-5 if dtype == np.float32 else 1e-13
    s64 = s.astype(np.float64)
    loss = SoftmaxCrossEntropy().forward(s, y)
    assert loss.dtype == dtype and loss == pytest.approx(softmax_ce_reference(s64, y), rel=rtol)
    p = np.exp(s64 - s64.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    want = 0.5 * (p - np.eye(c)[y]) / n
    for scores in (s, np.asfortranarray(s), np.repeat(s, 2, axis=1)[:, ::2]):  # any layout in, row-major out
        g = SoftmaxCrossEntropyGrad().forward(scores, y, np.asarray(0.5, dtype))
        assert g.dtype == dtype and g.flags.c_contiguous
        np.testing.assert_allclose(g, want, rtol=rtol, atol=rtol * np.abs(want).max())
        assert SoftmaxCrossEntropy().forward(scores, y) == loss
    # the interpreter's fused step for the loss and its gradient: one softmax for both
    both = SoftmaxCrossEntropy().fused_forward(("s", "y"), SoftmaxCrossEntropyGrad(), ("s", "y", "g"))
    fused_loss, fused_g = both(s, y, s, y, np.asarray(0.5, dtype))
    assert fused_loss == loss and np.array_equal(fused_g, SoftmaxCrossEntropyGrad().forward(s, y, np.asarray(0.5, dtype)))
    assert SoftmaxCrossEntropy().fused_forward(("s", "y"), SoftmaxCrossEntropyGrad(), ("other", "y", "g")) is None


def test_hinge_loss_reproduces_the_course_example():
    """Three images, three classes (cat, car, frog): per-image losses 2.9, 0 and 12.9, mean 5.27."""
    s = np.array([[3.2, 5.1, -1.7], [1.3, 4.9, 2.0], [2.2, 2.5, -3.1]])
    y = np.array([0, 1, 2])
    assert Hinge().forward(s, y) == pytest.approx((2.9 + 0 + 12.9) / 3)


def test_hinge_gradient_counts_positive_margins():
    s, y = RNG.standard_normal((6, 5)), RNG.integers(0, 5, 6)
    want = np.zeros_like(s)
    for i in range(6):
        for j in range(5):
            if j != y[i] and s[i, j] - s[i, y[i]] + 0.5 > 0:
                want[i, j] += 1
                want[i, y[i]] -= 1
    np.testing.assert_allclose(HingeGrad(margin=0.5).forward(s, y, np.asarray(3.0)), 3.0 * want / 6)


def test_sigmoid_cross_entropy_matches_the_naive_form_and_is_stable():
    x, t = RNG.standard_normal((4, 3)), RNG.uniform(0, 1, (4, 3))
    sig = 1 / (1 + np.exp(-x))
    naive = np.mean(-t * np.log(sig) - (1 - t) * np.log(1 - sig))
    assert SigmoidCrossEntropy().forward(x, t) == pytest.approx(naive, rel=1e-12)
    np.testing.assert_allclose(SigmoidCrossEntropyGrad().forward(x, t, np.asarray(1.0)), (sig - t) / 12, rtol=1e-12)
    big = np.array([-1000.0, 1000.0], dtype=np.float32)
    loss = SigmoidCrossEntropy().forward(big, np.array([1.0, 0.0], dtype=np.float32))
    assert loss.dtype == np.float32 and loss == pytest.approx(1000.0)


def test_mse_l1_and_their_gradients():
    p, t = RNG.standard_normal((3, 4)), RNG.standard_normal((3, 4))
    assert MSE().forward(p, t) == pytest.approx(((p - t) ** 2).sum() / 12)
    assert L1().forward(p, t) == pytest.approx(np.abs(p - t).sum() / 12)
    np.testing.assert_allclose(MSEGrad().forward(p, t, np.asarray(1.0)), 2 * (p - t) / 12)
    np.testing.assert_allclose(L1Grad().forward(p, t, np.asarray(1.0)), np.sign(p - t) / 12)


def test_pair_losses_give_target_gradients_too():
    for cls, want in ((MSE, lambda p, t: -2 * (p - t) / p.size), (L1, lambda p, t: -np.sign(p - t) / p.size),
                      (SigmoidCrossEntropy, lambda p, t: -p / p.size)):
        vals, _, grads = op_gradients(cls, {}, [(3, 4), (3, 4)])
        np.testing.assert_allclose(grads["in1"], want(vals["in0"], vals["in1"]) * vals["r"], rtol=1e-12)


def test_l2_penalty_is_half_lambda_sum_of_squares_with_gradient_lambda_w():
    w1, w2 = RNG.standard_normal((3, 4)), RNG.standard_normal((2,))
    op = L2Penalty(strength=0.3)
    assert op.forward(w1, w2) == pytest.approx(0.15 * ((w1 ** 2).sum() + (w2 ** 2).sum()))
    vals, _, grads = op_gradients(L2Penalty, {"strength": 0.3}, [(3, 4), (2,)])
    for name in ("in0", "in1"):
        np.testing.assert_allclose(grads[name], 0.3 * vals[name] * vals["r"])


@pytest.mark.parametrize("cls,inputs", [
    (SoftmaxCrossEntropy, lambda d: (RNG.standard_normal((4, 3)).astype(d), np.array([0, 1, 2, 0]))),
    (Hinge, lambda d: (RNG.standard_normal((4, 3)).astype(d), np.array([0, 1, 2, 0]))),
    (SigmoidCrossEntropy, lambda d: (RNG.standard_normal((4, 3)).astype(d), RNG.uniform(0, 1, (4, 3)).astype(d))),
    (MSE, lambda d: (RNG.standard_normal((4, 3)).astype(d), RNG.standard_normal((4, 3)).astype(d))),
    (L1, lambda d: (RNG.standard_normal((4, 3)).astype(d), RNG.standard_normal((4, 3)).astype(d))),
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_losses_are_0d_arrays_of_the_scores_dtype(cls, inputs, dtype):
    loss = cls().forward(*inputs(dtype))
    assert isinstance(loss, np.ndarray) and loss.shape == () and loss.dtype == dtype


# --- normalisation --------------------------------------------------------------------------------

def bn_train_backward_staged(x, gamma, gy, eps):
    """The course's staged backward pass through the batchnorm computational graph (N, D)."""
    n = x.shape[0]
    mu = x.mean(axis=0)
    xmu = x - mu
    var = (xmu ** 2).mean(axis=0)
    ivar = 1 / np.sqrt(var + eps)
    xhat = xmu * ivar
    dxhat = gy * gamma
    divar = (dxhat * xmu).sum(axis=0)
    dxmu1 = dxhat * ivar
    dsqrtvar = -divar / (var + eps)
    dvar = 0.5 * dsqrtvar / np.sqrt(var + eps)
    dsq = dvar * np.ones_like(x) / n
    dxmu2 = 2 * xmu * dsq
    dx1 = dxmu1 + dxmu2
    dmu = -dx1.sum(axis=0)
    dx = dx1 + dmu * np.ones_like(x) / n
    return dx, (gy * xhat).sum(axis=0), gy.sum(axis=0)


def to_nd(x):
    """NCHW → (N·H·W, C): batchnorm over (0, 2, 3) is batchnorm over rows of this."""
    return x.transpose(0, 2, 3, 1).reshape(-1, x.shape[1])


def from_nd(a, shape):
    n, c, h, w = shape
    return a.reshape(n, h, w, c).transpose(0, 3, 1, 2)


def test_batchnorm_inference_uses_running_statistics():
    x = RNG.standard_normal((4, 3, 2, 2))
    gamma, beta, rm, rv = RNG.standard_normal(3), RNG.standard_normal(3), RNG.standard_normal(3), RNG.uniform(0.5, 1.5, 3)
    want = np.empty_like(x)
    for c in range(3):
        want[:, c] = gamma[c] * (x[:, c] - rm[c]) / np.sqrt(rv[c] + 1e-5) + beta[c]
    np.testing.assert_allclose(BatchNorm().forward(x, gamma, beta, rm, rv), want, rtol=1e-12)


def test_batchnorm_inference_gradients():
    vals, _, grads = op_gradients(BatchNorm, {"eps": 1e-3}, [(4, 3, 2, 2)])
    x, r, gamma = vals["in0"], vals["r"], vals["layer.gamma"]
    rm, rv = vals["layer.running_mean"], vals["layer.running_var"]
    inv = 1 / np.sqrt(rv + 1e-3)
    np.testing.assert_allclose(grads["in0"], r * (gamma * inv)[None, :, None, None], rtol=1e-12)
    xhat = (x - rm[None, :, None, None]) * inv[None, :, None, None]
    np.testing.assert_allclose(grads["layer.gamma"], (r * xhat).sum(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(grads["layer.beta"], r.sum(axis=(0, 2, 3)), rtol=1e-12)
    assert "layer.running_mean" not in grads and "layer.running_var" not in grads


def bn_train(x, gamma, beta, eps=1e-5):
    """Training-form batchnorm as the training graph computes it: the stats once, then the normalisation."""
    return BatchNormTrain().forward(x, BatchNormStats(eps=eps).forward(x), gamma, beta)


def bn_training_gradients(shape, values):
    """Gradients of ``Σ batchnorm(x) ⊙ r`` in training mode (stats node + batchnorm_train, fused VJP)."""
    graph, out = one_op_graph(BatchNorm, sample({}, shape))
    train = to_training_mode(graph)
    vals = sample_values(graph, seed=7)
    vals.update(values)
    wrt = ["in0", "layer.gamma", "layer.beta"]
    training, grads = differentiate(train, "loss", wrt)
    got = Program(training, [grads[w] for w in wrt]).run(vals)
    return {w: got[grads[w]] for w in wrt}


@pytest.mark.parametrize("shape", [(8, 5), (4, 3, 3, 2)])
def test_batchnorm_train_normalises_with_batch_statistics(shape):
    x = 3 + 2 * RNG.standard_normal(shape)
    c = shape[1]
    y = bn_train(x, np.ones(c), np.zeros(c))
    axes = (0,) if len(shape) == 2 else (0, 2, 3)
    np.testing.assert_allclose(y.mean(axis=axes), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=axes), 1, rtol=1e-4)  # biased variance, minus ε's share
    gamma, beta = RNG.standard_normal(c), RNG.standard_normal(c)
    x2 = x if len(shape) == 2 else to_nd(x)
    want = gamma * (x2 - x2.mean(0)) / np.sqrt(x2.var(0) + 1e-5) + beta
    got = bn_train(x, gamma, beta)
    np.testing.assert_allclose(got if len(shape) == 2 else to_nd(got), want, rtol=1e-10)
    stats = BatchNormStats().forward(x)
    np.testing.assert_allclose(stats, [x2.mean(0), x2.var(0), 1 / np.sqrt(x2.var(0) + 1e-5)], rtol=1e-12)


@pytest.mark.parametrize("shape", [(8, 5), (4, 3, 3, 2)])
def test_batchnorm_train_gradients_match_the_staged_backward_pass(shape):
    x, gy = RNG.standard_normal(shape), RNG.standard_normal(shape)
    gamma = RNG.standard_normal(shape[1])
    flat = (lambda a: a) if len(shape) == 2 else to_nd
    dx, dgamma, dbeta = bn_train_backward_staged(flat(x), gamma, flat(gy), 1e-5)
    stats = BatchNormStats().forward(x)
    got_gamma = BatchNormGradGamma().forward(x, stats, gy)
    np.testing.assert_allclose(got_gamma, dgamma, rtol=1e-10)
    got = BatchNormTrainGradInput().forward(x, stats, gamma, gy, got_gamma, dbeta)
    np.testing.assert_allclose(got, dx if len(shape) == 2 else from_nd(dx, shape), rtol=1e-9, atol=1e-12)
    grads = bn_training_gradients(shape, {"in0": x, "layer.gamma": gamma, "r": gy})
    np.testing.assert_allclose(grads["in0"], got, rtol=1e-12)
    np.testing.assert_allclose(grads["layer.gamma"], dgamma, rtol=1e-10)
    np.testing.assert_allclose(grads["layer.beta"], dbeta, rtol=1e-12)


@pytest.mark.parametrize("shape", [(8, 5), (4, 3, 3, 2)])
def test_batchnorm_running_updates_use_unbiased_variance(shape):
    x = RNG.standard_normal(shape)
    c = shape[1]
    running_mean, running_var = RNG.standard_normal(c), RNG.uniform(0.5, 1.5, c)
    rows = x if len(shape) == 2 else to_nd(x)
    m = rows.shape[0]
    mean = rows.sum(axis=0) / m
    unbiased = ((rows - mean) ** 2).sum(axis=0) / (m - 1)
    stats = BatchNormStats().forward(x)
    got_mean = BatchNormRunningUpdate(momentum=0.8, which="mean").forward(x, stats, running_mean)
    got_var = BatchNormRunningUpdate(momentum=0.8, which="var").forward(x, stats, running_var)
    np.testing.assert_allclose(got_mean, 0.8 * running_mean + 0.2 * mean, rtol=1e-12)
    np.testing.assert_allclose(got_var, 0.8 * running_var + 0.2 * unbiased, rtol=1e-12)


def layernorm_backward_staged(x, gamma, gy, eps):
    """Row-wise staged backward: the batchnorm graph transposed (rows are the examples)."""
    dx, _, _ = bn_train_backward_staged(x.T, np.ones(x.shape[0]), (gy * gamma).T, eps)
    return dx.T


def test_layernorm_forward_and_gradients():
    x, gy = RNG.standard_normal((2, 3, 6)), RNG.standard_normal((2, 3, 6))
    gamma, beta = RNG.standard_normal(6), RNG.standard_normal(6)
    want = np.empty_like(x)
    for i in range(2):
        for t in range(3):
            row = x[i, t]
            want[i, t] = gamma * (row - row.mean()) / math.sqrt(row.var() + 1e-5) + beta
    np.testing.assert_allclose(LayerNorm().forward(x, gamma, beta), want, rtol=1e-12)
    dx = layernorm_backward_staged(x.reshape(-1, 6), gamma, gy.reshape(-1, 6), 1e-5).reshape(x.shape)
    np.testing.assert_allclose(LayerNormGradInput().forward(x, gamma, gy), dx, rtol=1e-9, atol=1e-12)
    xhat = (want - beta) / gamma
    np.testing.assert_allclose(LayerNormGradGamma().forward(x, gy), (gy * xhat).sum(axis=(0, 1)), rtol=1e-10)


@pytest.mark.parametrize("cls,attrs,shapes", [
    (BatchNorm, {}, [(2, 3, 2, 2)]), (BatchNormTrain, {}, [(4, 3), (3, 3), (3,), (3,)]), (BatchNormStats, {}, [(4, 3, 2, 2)]),
    (LayerNorm, {}, [(3, 4)]),
])
def test_normalisation_preserves_float32(cls, attrs, shapes):
    graph, out = one_op_graph(cls, sample(attrs, *shapes))
    vals = {k: v.astype(np.float32) for k, v in sample_values(graph).items()}
    assert Program(graph, [out]).run(vals)[out].dtype == np.float32


# --- activations ----------------------------------------------------------------------------------

def test_maxout_takes_the_max_of_consecutive_pieces_and_routes_to_the_first_winner():
    x = RNG.standard_normal((2, 6, 3, 3))
    want = np.empty((2, 2, 3, 3))
    for n in range(2):
        for c in range(2):
            want[n, c] = np.max(x[n, 3 * c:3 * c + 3], axis=0)
    np.testing.assert_array_equal(Maxout(pieces=3).forward(x), want)
    tie = np.array([[1.0, 1.0, 0.0, 2.0, 5.0, 5.0]])  # groups of 3: (1, 1, 0) and (2, 5, 5)
    gx = MaxoutGrad(pieces=3).forward(tie, np.array([[10.0, 20.0]]))
    np.testing.assert_array_equal(gx, [[10.0, 0.0, 0.0, 0.0, 20.0, 0.0]])


def test_prelu_forward_and_gradients_per_channel():
    vals, y, grads = op_gradients(PRelu, {}, [(2, 3, 2, 2)])
    x, a, r = vals["in0"], vals["layer.slope"], vals["r"]
    want_y, want_gx, want_ga = np.empty_like(x), np.empty_like(x), np.zeros(3)
    for c in range(3):
        xc = x[:, c]
        want_y[:, c] = np.where(xc > 0, xc, a[c] * xc)
        want_gx[:, c] = np.where(xc > 0, 1.0, a[c]) * r[:, c]
        want_ga[c] = (r[:, c] * np.minimum(xc, 0)).sum()
    np.testing.assert_allclose(y, want_y)
    np.testing.assert_allclose(grads["in0"], want_gx)
    np.testing.assert_allclose(grads["layer.slope"], want_ga, rtol=1e-12)


def test_leaky_relu_elu_and_dropout():
    x = np.array([-2.0, -0.5, 0.5, 2.0], dtype=np.float32)
    y = LeakyRelu(alpha=0.1).forward(x)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, [-0.2, -0.05, 0.5, 2.0], rtol=1e-6)
    np.testing.assert_allclose(Elu(alpha=2.0).forward(x), [2 * (math.exp(-2) - 1), 2 * (math.exp(-0.5) - 1), 0.5, 2.0], rtol=1e-6)
    assert Elu().forward(np.array([1000.0], dtype=np.float32)).dtype == np.float32
    assert Dropout(p=0.5).forward(x) is x  # the inference form is the identity
    _, _, grads = op_gradients(Dropout, {"p": 0.5}, [(3, 4)], values={"r": np.full((3, 4), 2.0)})
    np.testing.assert_array_equal(grads["in0"], 2.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_grad_passes_gy_where_the_output_is_positive(dtype):
    y = np.maximum(RNG.standard_normal((6, 5)), 0).astype(dtype)
    y[0, :2] = [-0.0, np.nan]  # neither is > 0: both block the gradient
    for gy in (RNG.standard_normal((6, 5)).astype(dtype), np.broadcast_to(np.arange(5, dtype=dtype) - 2, (6, 5))):
        gx = ReluGrad().forward(y, gy)
        assert gx.dtype == dtype and gx.shape == (6, 5)
        np.testing.assert_array_equal(gx, np.where(y > 0, gy, 0))
