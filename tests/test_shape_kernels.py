"""Shape-op kernels and gradients against independent NumPy references (hand-written formulas,
not the kernels themselves), including the composites that expand into them."""

from __future__ import annotations

import math

import numpy as np
import pytest

from graphc.backends.interpreter import Program
from graphc.ir.autodiff import differentiate
from graphc.ir.graph import Builder, LayerContext
from graphc.ops.attention import MultiHeadAttention
from graphc.ops.elementwise import Mul
from graphc.ops.recurrent import LSTM, RNN
from graphc.ops.reduce import ReduceSum, SumTo
from graphc.ops.shape_ops import (
    MASK_FILL,
    CausalMask,
    Concat,
    Flatten,
    MatMul,
    PositionalEncoding,
    Reshape,
    Select,
    SelectGrad,
    Slice,
    SliceGrad,
    Stack,
    Transpose,
)

RNG = np.random.default_rng(7)


def randn(*shape, dtype=np.float64):
    return RNG.standard_normal(shape).astype(dtype)


# --- kernels ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernels_preserve_dtype(dtype):
    x = randn(2, 3, 4, dtype=dtype)
    outs = [Flatten().forward(x), Reshape(shape=(0, -1)).forward(x), Transpose(perm=(2, 0, 1)).forward(x),
            Concat(axis=1).forward(x, x), MatMul().forward(x, randn(4, 5, dtype=dtype)), Select(axis=1, index=0).forward(x),
            Stack(axis=0).forward(x, x), Slice(axis=2, start=1, end=3).forward(x), CausalMask().forward(randn(2, 3, 3, dtype=dtype)),
            PositionalEncoding().forward(x)]
    assert all(o.dtype == dtype for o in outs)


def test_reshape_resolves_zero_and_minus_one_from_the_array():
    x = np.arange(5 * 12 * 4, dtype=np.float32).reshape(5, 12, 4)  # batch 5 at run time
    y = Reshape(shape=(0, -1, 2, 4)).forward(x)
    assert y.shape == (5, 6, 2, 4)
    np.testing.assert_array_equal(y.ravel(), x.ravel())
    assert np.shares_memory(x, y)  # a view, not a copy


def test_flatten_and_transpose_are_views_with_numpy_semantics():
    x = randn(2, 3, 4, 5)
    assert Flatten().forward(x).shape == (2, 60)
    assert Flatten(axis=2).forward(x).shape == (6, 20)
    assert Flatten(axis=0).forward(x).shape == (1, 120)
    y = Transpose(perm=(0, 2, 1, 3)).forward(x)
    assert np.shares_memory(x, y)
    for n, i, j, k in [(0, 1, 2, 3), (1, 3, 0, 4)]:
        assert y[n, i, j, k] == x[n, j, i, k]


def test_matmul_matches_einsum_with_broadcast_batch():
    a, b = randn(2, 1, 3, 4), randn(5, 4, 6)
    np.testing.assert_allclose(MatMul().forward(a, b), np.einsum("xymk,ykp->xymp", np.broadcast_to(a, (2, 5, 3, 4)), b), rtol=1e-12)


def test_select_stack_slice_concat():
    x = randn(2, 4, 3)
    np.testing.assert_array_equal(Select(axis=1, index=2).forward(x), x[:, 2, :])
    np.testing.assert_array_equal(Select(axis=-1, index=-1).forward(x), x[:, :, 2])
    np.testing.assert_array_equal(Slice(axis=-1, start=1, end=3).forward(x), x[:, :, 1:3])
    parts = [x[:, t] for t in range(4)]
    np.testing.assert_array_equal(Stack(axis=1).forward(*parts), x)
    np.testing.assert_array_equal(Concat(axis=1).forward(x[:, :1], x[:, 1:]), x)
    gy = randn(2, 3)
    gx = SelectGrad(axis=1, index=2, size=4).forward(gy)
    want = np.zeros((2, 4, 3))
    want[:, 2] = gy
    np.testing.assert_array_equal(gx, want)
    gs = SliceGrad(axis=2, start=1, end=3, size=5).forward(randn(2, 4, 2))
    assert gs.shape == (2, 4, 5) and not gs[:, :, [0, 3, 4]].any()


def test_causal_mask_fills_strictly_above_the_diagonal():
    x = randn(2, 3, 3)
    y = CausalMask().forward(x)
    for i in range(3):
        for j in range(3):
            if j > i:
                assert np.all(y[:, i, j] == MASK_FILL)
            else:
                np.testing.assert_array_equal(y[:, i, j], x[:, i, j])
    assert not CausalMask(fill=0.0).forward(np.ones((3, 3)))[np.triu_indices(3, 1)].any()


def test_positional_encoding_table_by_the_formula():
    x = np.zeros((2, 5, 6))
    y = PositionalEncoding().forward(x)
    for t in range(5):
        for i in range(3):
            assert math.isclose(y[1, t, 2 * i], math.sin(t / 10000 ** (2 * i / 6)), abs_tol=1e-12)
            assert math.isclose(y[1, t, 2 * i + 1], math.cos(t / 10000 ** (2 * i / 6)), abs_tol=1e-12)


# --- graphs ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("in_shape,shape", [((7, 5), (5,)), ((7, 1), (1,)), ((7, 5), (1, 5)), ((7, 5), (7, 1)),
                                             ((2, 3, 4, 4), (3, 1, 1)), ((2, 3, 4), (4,)), ((6,), ()), ((3, 4), (3, 4))])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32])
def test_sum_to_undoes_broadcasting(in_shape, shape, dtype):
    x = (10 * RNG.standard_normal(in_shape)).astype(dtype)
    lead = len(in_shape) - len(shape)
    want = x.sum(axis=tuple(range(lead)), dtype=dtype)  # the leading axes, then the size-1 axes kept
    want = want.sum(axis=tuple(i for i, d in enumerate(shape) if d == 1), keepdims=True, dtype=dtype)
    got = np.asarray(SumTo(shape=shape).forward(x))
    assert got.dtype == dtype and got.shape == shape
    if np.dtype(dtype).kind == "f":  # float sums may be ordered differently (BLAS for bias gradients)
        np.testing.assert_allclose(got, want, rtol=8 * np.finfo(dtype).eps * in_shape[0], atol=1e-12)
    else:
        np.testing.assert_array_equal(got, want)


def test_course_example_sum_of_squares_of_xw():
    """X = [[0,1],[2,3]], W = ones: L = Σ(XW)² = 52, ∂L/∂X = [[4,4],[20,20]], ∂L/∂W = [[20,20],[32,32]]."""
    b = Builder()
    b.input("X", (2, 2), "float64")
    b.input("W", (2, 2), "float64")
    b.op("Y", MatMul(), ["X", "W"])
    b.op("Y2", Mul(), ["Y", "Y"])
    b.op("L", ReduceSum(), ["Y2"])
    training, grads = differentiate(b.graph, "L", ["X", "W"])
    out = Program(training, ["L", grads["X"], grads["W"]]).run({"X": np.array([[0.0, 1], [2, 3]]), "W": np.ones((2, 2))})
    assert out["L"] == 52
    np.testing.assert_array_equal(out[grads["X"]], [[4, 4], [20, 20]])
    np.testing.assert_array_equal(out[grads["W"]], [[20, 20], [32, 32]])


def composite(op, *inputs, dtype="float32"):
    """Expand ``op`` over named inputs ``(name, shape)`` (typed like the params; run in float64)."""
    b = Builder()
    names = [b.input(n, s, dtype) for n, s in inputs]
    b.context = LayerContext("layer")
    return b.graph, op.expand(b, "layer", names)


def params_of(graph):
    return {n: randn(*a["type"].shape) for n, a in graph.nodes(data=True) if a["role"] == "param"}


def softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize("causal", [False, True])
def test_attention_matches_numpy_reference(causal):
    n, t, d, heads = 2, 3, 4, 2
    graph, out = composite(MultiHeadAttention(heads=heads, causal=causal), ("x", (n, t, d)))
    p = params_of(graph)
    x = randn(n, t, d)
    y = Program(graph, [out]).run({"x": x, **p})[out]
    dk = d // heads
    want = np.zeros((n, t, d))
    for h in range(heads):
        cols = slice(h * dk, (h + 1) * dk)
        q = (x @ p["layer.wq"] + p["layer.bq"])[:, :, cols]
        k = (x @ p["layer.wk"] + p["layer.bk"])[:, :, cols]
        v = (x @ p["layer.wv"] + p["layer.bv"])[:, :, cols]
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(dk)
        if causal:
            scores = np.where(np.triu(np.ones((t, t), bool), 1), -np.inf, scores)
        want[:, :, cols] = softmax(scores) @ v
    want = want @ p["layer.wo"] + p["layer.bo"]
    np.testing.assert_allclose(y, want, rtol=1e-10, atol=1e-12)


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def test_lstm_matches_the_course_formulas():
    n, t, d, hid = 2, 3, 4, 3
    graph, out = composite(LSTM(hidden=hid, return_sequences=True), ("x", (n, t, d)))
    p = params_of(graph)
    x = randn(n, t, d)
    y = Program(graph, [out]).run({"x": x, **p})[out]
    h, c = np.zeros((n, hid)), np.zeros((n, hid))
    for step in range(t):
        a = x[:, step] @ p["layer.wx"] + h @ p["layer.wh"] + p["layer.b"]
        i, f, o, g = sigmoid(a[:, :hid]), sigmoid(a[:, hid:2 * hid]), sigmoid(a[:, 2 * hid:3 * hid]), np.tanh(a[:, 3 * hid:])
        c = f * c + i * g
        h = o * np.tanh(c)
        np.testing.assert_allclose(y[:, step], h, rtol=1e-10, atol=1e-12)


def test_rnn_gradient_of_wx_by_hand_for_one_step():
    """T = 1: h = tanh(x Wx + b), L = Σ h ⇒ ∂L/∂Wx = xᵀ (1 − h²)."""
    graph, out = composite(RNN(hidden=3), ("x", (4, 1, 5)))
    b = Builder(graph)
    b.op("L", ReduceSum(), [out])
    p = params_of(graph)
    x = randn(4, 1, 5)
    training, grads = differentiate(graph, "L", ["layer.wx", "x"])
    got = Program(training, [grads["layer.wx"], grads["x"]]).run({"x": x, **p})
    h = np.tanh(x[:, 0] @ p["layer.wx"] + p["layer.b"])
    np.testing.assert_allclose(got[grads["layer.wx"]], x[:, 0].T @ (1 - h * h), rtol=1e-10)
    np.testing.assert_allclose(got[grads["x"]][:, 0], (1 - h * h) @ p["layer.wx"].T, rtol=1e-10)


def test_dense_weight_gradient_on_a_sequence_sums_over_batch_and_time():
    """y = x W on x (N, T, D), L = Σ y ⊙ r ⇒ ∂L/∂W = Σ_{n,t} x[n,t]ᵀ r[n,t], ∂L/∂x = r Wᵀ."""
    b = Builder()
    b.input("x", (3, 4, 5), "float64")
    b.input("W", (5, 2), "float64")
    b.input("r", (3, 4, 2), "float64")
    b.op("y", MatMul(), ["x", "W"])
    b.op("yr", Mul(), ["y", "r"])
    b.op("L", ReduceSum(), ["yr"])
    x, w, r = randn(3, 4, 5), randn(5, 2), randn(3, 4, 2)
    training, grads = differentiate(b.graph, "L", ["x", "W"])
    got = Program(training, [grads["x"], grads["W"]]).run({"x": x, "W": w, "r": r})
    np.testing.assert_allclose(got[grads["W"]], np.einsum("ntd,ntu->du", x, r), rtol=1e-12)
    np.testing.assert_allclose(got[grads["x"]], r @ w.T, rtol=1e-12)


def test_gradients_through_reshape_and_flatten_with_a_symbolic_batch():
    """Compiled for batch N, run with N = 5: the gradient reshape reads the batch at run time."""
    b = Builder()
    b.input("x", ("N", 3, 4), "float64")
    b.op("r", Reshape(shape=(0, 2, 6)), ["x"])
    b.op("t", Transpose(perm=(0, 2, 1)), ["r"])
    b.op("f", Flatten(), ["t"])
    b.op("sq", Mul(), ["f", "f"])
    b.op("L", ReduceSum(), ["sq"])
    training, grads = differentiate(b.graph, "L", ["x"])
    assert training.nodes[grads["x"]]["type"].shape == ("N", 3, 4)
    x = randn(5, 3, 4)
    np.testing.assert_allclose(Program(training, [grads["x"]]).run({"x": x})[grads["x"]], 2 * x, rtol=1e-12)


def test_concat_stack_slice_select_gradients_route_each_part():
    """L = Σ concat(a, b)[..., 1:4] ⊙ r + Σ stack(a, a)[:, 1] ⊙ s: each part of r and s lands on its source."""
    b = Builder()
    for name, shape in (("a", (2, 2)), ("c", (2, 3)), ("r", (2, 3)), ("s", (2, 2))):
        b.input(name, shape, "float64")
    b.op("cat", Concat(axis=1), ["a", "c"])
    b.op("sl", Slice(axis=1, start=1, end=4), ["cat"])
    b.op("st", Stack(axis=1), ["a", "a"])
    b.op("se", Select(axis=1, index=1), ["st"])
    b.op("p1", Mul(), ["sl", "r"])
    b.op("p2", Mul(), ["se", "s"])
    b.op("l1", ReduceSum(), ["p1"])
    b.op("l2", ReduceSum(), ["p2"])
    b.op("L", Concat(axis=0), [b.op("u1", Reshape(shape=(1,)), ["l1"]), b.op("u2", Reshape(shape=(1,)), ["l2"])])
    b.op("Ls", ReduceSum(), ["L"])
    r, s = randn(2, 3), randn(2, 2)
    training, grads = differentiate(b.graph, "Ls", ["a", "c"])
    got = Program(training, [grads["a"], grads["c"]]).run({"a": randn(2, 2), "c": randn(2, 3), "r": r, "s": s})
    np.testing.assert_allclose(got[grads["a"]], np.stack([np.zeros(2), r[:, 0]], axis=1) + s, rtol=1e-12)
    np.testing.assert_allclose(got[grads["c"]], np.concatenate([r[:, 1:], np.zeros((2, 1))], axis=1), rtol=1e-12)


def test_transpose_gradient_uses_the_inverse_permutation():
    """L = Σ transpose(x, (1, 2, 0)) ⊙ r ⇒ gx = transpose(r, (2, 0, 1)) (a perm that is not its own inverse)."""
    b = Builder()
    b.input("x", (2, 3, 4), "float64")
    b.input("r", (3, 4, 2), "float64")
    b.op("t", Transpose(perm=(1, 2, 0)), ["x"])
    b.op("tr", Mul(), ["t", "r"])
    b.op("L", ReduceSum(), ["tr"])
    r = randn(3, 4, 2)
    training, grads = differentiate(b.graph, "L", ["x"])
    np.testing.assert_array_equal(Program(training, [grads["x"]]).run({"x": randn(2, 3, 4), "r": r})[grads["x"]], r.transpose(2, 0, 1))
