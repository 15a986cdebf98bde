"""Training-form batchnorm: the batch statistics are computed once (``batchnorm_stats``) and shared,
the fused input gradient is exact (through μ and σ² too), and the fast kernels keep float32 and
match the straightforward formulas."""

from __future__ import annotations

import numpy as np
import pytest
from op_harness import one_op_graph, sample_values

from graphc.backends.interpreter import Program
from graphc.gradcheck import check_gradients
from graphc.ir.autodiff import to_training_mode, training_graph
from graphc.ir.graph import Builder, LayerContext
from graphc.ops.base import sample
from graphc.ops.elementwise import Add, Mul
from graphc.ops.norm import (
    BatchNorm,
    BatchNormGradGamma,
    BatchNormRunningUpdate,
    BatchNormStats,
    BatchNormStatsGrad,
    BatchNormTrain,
    BatchNormTrainGradInput,
    BatchNormTrainGradStats,
)
from graphc.ops.reduce import ReduceSum

RNG = np.random.default_rng(42)
SHAPES = [(6, 4), (3, 2, 4, 3)]


def kinds(graph):
    return [a["op"].kind for _, a in graph.nodes(data=True)]


def reference(x, eps=1e-5):
    axes = (0,) if x.ndim == 2 else (0, 2, 3)
    mean = x.mean(axis=axes, dtype=np.float64)
    var = x.astype(np.float64).var(axis=axes)
    return mean, var, 1 / np.sqrt(var + eps)


def view(v, ndim):
    return v.reshape((1, -1) + (1,) * (ndim - 2))


@pytest.mark.parametrize("shape", SHAPES)
def test_training_gradients_match_central_differences_through_the_statistics(shape):
    graph, _ = one_op_graph(BatchNorm, sample({}, shape))
    train = to_training_mode(graph)
    values = sample_values(graph, seed=5)
    values["in0"] = 3 + 2 * values["in0"]  # an offset mean: the μ path matters
    results = check_gradients(train, "loss", values, ["in0", "layer.gamma", "layer.beta"], max_entries=200)
    assert {r.name for r in results} == {"in0", "layer.gamma", "layer.beta"}
    for r in results:
        assert r.max_rel_error < 1e-6 or r.max_abs_error < 1e-8, f"{r.name}: {r.max_rel_error:.2e}"


def test_the_statistics_are_computed_once_and_the_backward_is_fused():
    graph, _ = one_op_graph(BatchNorm, sample({}, (4, 3, 3, 3)))
    graph.graph["loss"] = "loss"
    trained = training_graph(graph, wrt_inputs=("in0",))
    k = kinds(trained)
    assert k.count("batchnorm_stats") == 1
    assert k.count("batchnorm_train_grad_input") == 1 and k.count("batchnorm_grad_gamma") == 1
    # the fused input gradient covers the paths through the statistics: nothing flows into them
    assert "batchnorm_stats_grad" not in k and "batchnorm_train_grad_stats" not in k
    stats = [n for n, a in trained.nodes(data=True) if a["op"].kind == "batchnorm_stats"][0]
    users = sorted(trained.nodes[s]["op"].kind for s in trained.successors(stats))
    assert users == ["batchnorm_grad_gamma", "batchnorm_running_update", "batchnorm_running_update",
                     "batchnorm_train", "batchnorm_train_grad_input"]


@pytest.mark.parametrize("shape", SHAPES)
def test_statistics_with_another_user_on_the_loss_path_still_get_its_cotangent(shape):
    """loss = Σ r⊙batchnorm_train(x, S(x), γ, β) + Σ q⊙S(x): the fused gx covers the first term only,
    the second flows through batchnorm_stats' own VJP."""
    c = shape[1]
    b = Builder()
    for name, s in (("x", shape), ("gamma", (c,)), ("beta", (c,)), ("r", shape), ("q", (3, c))):
        b.input(name, s, "float64")
    b.context = LayerContext("layer")
    b.op("stats", BatchNormStats(), ["x"])
    b.op("y", BatchNormTrain(), ["x", "stats", "gamma", "beta"])
    b.context = LayerContext("loss", role="loss")
    b.op("a", ReduceSum(), [b.op("ry", Mul(), ["y", "r"])])
    b.op("bq", ReduceSum(), [b.op("qs", Mul(), ["stats", "q"])])
    b.op("loss", Add(), ["a", "bq"])
    values = {k: RNG.standard_normal(s) for k, s in (("x", shape), ("gamma", (c,)), ("beta", (c,)), ("r", shape), ("q", (3, c)))}
    values["x"] = 1 + values["x"]
    results = check_gradients(b.graph, "loss", values, ["x", "gamma", "beta"], max_entries=200)
    for r in results:
        assert r.max_rel_error < 1e-6 or r.max_abs_error < 1e-8, f"{r.name}: {r.max_rel_error:.2e}"


@pytest.mark.parametrize("shape", SHAPES + [(32, 16, 8, 8)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernels_match_the_straightforward_formulas_and_keep_the_dtype(shape, dtype):
    c = shape[1]
    x = (100 + 3 * RNG.standard_normal(shape)).astype(dtype)  # |μ| ≫ σ: cancellation would show
    gy = RNG.standard_normal(shape[::-1]).astype(dtype).T  # a non-contiguous cotangent
    gamma, beta = RNG.standard_normal(c).astype(dtype), RNG.standard_normal(c).astype(dtype)
    mean, var, rstd = reference(x)
    tol = 1e-12 if dtype == np.float64 else 2e-5
    stats = BatchNormStats().forward(x)
    assert stats.dtype == dtype
    np.testing.assert_allclose(stats, [mean, var, rstd], rtol=tol)
    nd, n = x.ndim, x.size // c
    x64, gy64, g64 = x.astype(np.float64), gy.astype(np.float64), gamma.astype(np.float64)
    xhat = (x64 - view(mean, nd)) * view(rstd, nd)
    axes = (0,) if nd == 2 else (0, 2, 3)
    y = BatchNormTrain().forward(x, stats, gamma, beta)
    assert y.dtype == dtype and y.shape == shape
    np.testing.assert_allclose(y, xhat * view(g64, nd) + view(beta.astype(np.float64), nd), rtol=tol, atol=tol * 10)
    ggamma = BatchNormGradGamma().forward(x, stats, gy)
    want_ggamma = (gy64 * xhat).sum(axis=axes)
    assert ggamma.dtype == dtype
    np.testing.assert_allclose(ggamma, want_ggamma, rtol=tol * 10, atol=tol * 10)
    gbeta = gy64.sum(axis=axes)
    gx = BatchNormTrainGradInput().forward(x, stats, gamma, gy, ggamma, gbeta.astype(dtype))
    want = view(g64 * rstd / n, nd) * (n * gy64 - view(gbeta, nd) - xhat * view(want_ggamma, nd))
    assert gx.dtype == dtype
    np.testing.assert_allclose(gx, want, rtol=tol * 100, atol=tol * 10 * np.abs(want).max())
    gstats = RNG.standard_normal((3, c)).astype(dtype)
    gs = BatchNormStatsGrad().forward(x, stats, gstats)
    g0, g1, g2 = gstats.astype(np.float64)
    want_gs = (view(g0, nd) + view(2 * g1 - g2 * rstd ** 3, nd) * (x64 - view(mean, nd))) / n
    assert gs.dtype == dtype
    np.testing.assert_allclose(gs, want_gs, rtol=tol * 100, atol=tol * 10 * np.abs(want_gs).max())
    gst = BatchNormTrainGradStats().forward(x, stats, gamma, gy)
    assert gst.dtype == dtype
    np.testing.assert_allclose(gst[0], -g64 * rstd * gbeta, rtol=tol * 10, atol=tol * 10)
    np.testing.assert_allclose(gst[2], g64 * (gy64 * (x64 - view(mean, nd))).sum(axis=axes), rtol=tol * 10, atol=tol * 100)
    running = np.ones(c, dtype)
    upd = BatchNormRunningUpdate(momentum=0.9, which="var").forward(x, stats, running)
    assert upd.dtype == dtype
    np.testing.assert_allclose(upd, 0.9 + 0.1 * var * n / (n - 1), rtol=tol)


def test_training_step_running_updates_and_outputs_are_float32():
    graph, out = one_op_graph(BatchNorm, sample({}, (4, 3, 5, 5)))
    graph.graph["loss"] = "loss"
    trained = training_graph(graph)
    vals = {k: v.astype(np.float32) for k, v in sample_values(graph).items()}
    outs = [out, *trained.graph["grads"].values(), *trained.graph["updates"].values()]
    got = Program(trained, outs).run(vals)
    assert all(got[o].dtype == np.float32 for o in outs)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_uncentred_sums_keep_the_accuracy_of_the_centred_form(dtype):
    """σ² from Σx² − nμ² cancels as |μ|/σ grows; channels with μ² > 3σ² are redone centred, so every
    channel keeps its variance to a few units of roundoff (and gγ, computed centred, too)."""
    shape, eps = (8, 12, 6, 6), np.finfo(dtype).eps
    ratio = np.array([0, 0.5, 1, 1.5, 1.7, 1.8, 2, 3, 5, 10, 30, 100])  # |μ|/σ per channel, either side of √3
    for _ in range(5):
        x = (view(ratio * RNG.choice([-1, 1], 12), 4) + RNG.standard_normal(shape)).astype(dtype)
        gy = RNG.standard_normal(shape).astype(dtype)
        xl, gyl, axes = x.astype(np.longdouble), gy.astype(np.longdouble), (0, 2, 3)
        var = ((xl - view(xl.mean(axis=axes), 4)) ** 2).mean(axis=axes)
        stats = BatchNormStats().forward(x)
        np.testing.assert_allclose(stats[1], var, rtol=8 * eps)
        xhat = (xl - view(stats[0], 4)) * view(stats[2], 4)
        ggamma = BatchNormGradGamma().forward(x, stats, gy)
        scale = np.abs(gyl * xhat).sum(axis=axes)  # the size of the terms of Σ gy·x̂
        assert np.all(np.abs(ggamma - (gyl * xhat).sum(axis=axes)) <= 2 * eps * scale)
