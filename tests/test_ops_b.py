"""Shape ops, dense, recurrent and attention: shape rules, expansions, parameters and attribute strictness."""

from __future__ import annotations

import math

import pydantic
import pytest

from graphc.errors import ShapeError
from graphc.ir.graph import Builder
from graphc.ops.attention import MultiHeadAttention
from graphc.ops.base import Init
from graphc.ops.dense import Dense
from graphc.ops.elementwise import Add, Mul, Scale, Softmax, Tanh
from graphc.ops.recurrent import LSTM, RNN
from graphc.ops.shape_ops import CausalMask, Concat, Flatten, MatMul, PositionalEncoding, Reshape, Select, Slice, Stack, Transpose
from graphc.tensor import TensorType


def t(*shape, dtype="float32"):
    return TensorType(tuple(shape), dtype)


def build(op, *shapes):
    """Expand ``op`` as layer ``layer`` on inputs ``x`` (and ``x2``); return the builder and the output node."""
    b = Builder()
    names = [b.input("x" if i == 0 else f"x{i + 1}", s) for i, s in enumerate(shapes)]
    return b, op.expand(b, "layer", names)


def params_of(b):
    nodes = b.graph.nodes
    return {n: nodes[n]["type"].shape for n in nodes if nodes[n]["role"] == "param"}


def ops_of(b, kind):
    nodes = b.graph.nodes
    return [n for n in nodes if nodes[n]["role"] == "op" and nodes[n]["op"].kind == kind]


def n_params(b):
    return sum(math.prod(s) for s in params_of(b).values())


# --- flatten ------------------------------------------------------------------------------------

def test_flatten_keeps_symbolic_batch():
    assert Flatten().infer([t("N", 3, 4, 5)]) == t("N", 60)


def test_flatten_axis_two_multiplies_leading_dims():
    assert Flatten(axis=2).infer([t(2, 3, 4, 5)]) == t(6, 20)
    assert Flatten(axis=-1).infer([t(2, 3, 4)]) == t(6, 4)


def test_flatten_needs_static_trailing_dims():
    with pytest.raises(ShapeError, match="symbolic 'H'"):
        Flatten().infer([t("N", 3, "H", 4)])


# --- reshape ------------------------------------------------------------------------------------

def test_reshape_zero_copies_and_minus_one_is_inferred():
    assert Reshape(shape=(0, -1, 2, 4)).infer([t("N", 12, 4)]) == t("N", 6, 2, 4)
    assert Reshape(shape=(-1, 6)).infer([t(2, 3, 4)]) == t(4, 6)


def test_reshape_accepts_a_list_from_yaml():
    assert Reshape(shape=[0, -1]).shape == (0, -1)


def test_reshape_count_mismatch_shows_both_shapes_and_products():
    with pytest.raises(ShapeError) as err:
        Reshape(shape=(0, 5, 3)).infer([t("N", 3, 4)])
    text = str(err.value)
    assert "(N, 3, 4)" in text and "(N, 5, 3)" in text and "12" in text and "15" in text


def test_reshape_indivisible_minus_one():
    with pytest.raises(ShapeError, match="not divisible"):
        Reshape(shape=(0, -1, 5)).infer([t(2, 3, 4)])


def test_reshape_symbolic_must_be_kept_with_zero():
    with pytest.raises(ShapeError, match="kept with 0"):
        Reshape(shape=(3, 4)).infer([t("N", 12)])


def test_reshape_zero_beyond_input_rank():
    with pytest.raises(ShapeError, match="rank 2"):
        Reshape(shape=(0, 0, 0)).infer([t(2, 3)])


@pytest.mark.parametrize("shape", [(0, -1, -1), (2, -3)])
def test_reshape_bad_shape_attribute(shape):
    with pytest.raises(pydantic.ValidationError):
        Reshape(shape=shape)


# --- transpose ----------------------------------------------------------------------------------

def test_transpose_permutes_dims():
    assert Transpose(perm=(0, 2, 1, 3)).infer([t("N", 3, 4, 5)]) == t("N", 4, 3, 5)


def test_transpose_perm_must_be_a_permutation():
    with pytest.raises(pydantic.ValidationError):
        Transpose(perm=(0, 0, 1))


def test_transpose_perm_length_must_match_rank():
    with pytest.raises(ShapeError, match="rank 3"):
        Transpose(perm=(1, 0)).infer([t(2, 3, 4)])


# --- concat -------------------------------------------------------------------------------------

def test_concat_adds_along_axis_and_keeps_symbolic_batch():
    assert Concat().infer([t("N", 3, 4, 4), t("N", 5, 4, 4)]) == t("N", 8, 4, 4)
    assert Concat(axis=-1).infer([t(2, 3), t(2, 4), t(2, 1)]) == t(2, 8)


def test_concat_mismatch_names_the_axis():
    with pytest.raises(ShapeError, match=r"axis 2 \(5 ≠ 4\)"):
        Concat().infer([t(2, 3, 4, 4), t(2, 5, 5, 4)])


def test_concat_different_symbols_do_not_match():
    with pytest.raises(ShapeError, match="axis 0"):
        Concat().infer([t("N", 3), t("M", 3)])


def test_concat_window_is_identity_only_over_channels():
    assert Concat().window([t(2, 3, 4, 4), t(2, 5, 4, 4)]) is not None
    assert Concat(axis=2).window([t(2, 3, 4, 4), t(2, 3, 4, 4)]) is None


# --- matmul -------------------------------------------------------------------------------------

def test_matmul_broadcasts_batch_dims_and_counts_macs():
    a, w = t("N", 3, 4), t(4, 5)
    y = MatMul().infer([a, w])
    assert y == t("N", 3, 5)
    assert MatMul().macs([a, w], y) == 3 * 4 * 5
    a, b = t(2, 1, 3, 4), t(5, 4, 6)
    y = MatMul().infer([a, b])
    assert y == t(2, 5, 3, 6)
    assert MatMul().macs([a, b], y) == 2 * 5 * 3 * 4 * 6


def test_matmul_inner_dims_must_match():
    with pytest.raises(ShapeError, match="K = 4.*K = 5"):
        MatMul().infer([t(3, 4), t(5, 6)])


def test_matmul_batch_dims_must_broadcast():
    with pytest.raises(ShapeError, match="broadcast"):
        MatMul().infer([t(2, 3, 4), t(3, 4, 5)])


def test_matmul_needs_rank_two():
    with pytest.raises(ShapeError, match="rank ≥ 2"):
        MatMul().infer([t(4), t(4, 5)])


# --- select, stack, slice, causal mask, positional encoding --------------------------------------

def test_select_stack_slice():
    assert Select(axis=1, index=2).infer([t("N", 4, 3)]) == t("N", 3)
    assert Stack().infer([t("N", 3)] * 4) == t("N", 4, 3)
    assert Slice(axis=-1, start=2, end=5).infer([t("N", 8)]) == t("N", 3)
    with pytest.raises(ShapeError, match="out of range"):
        Select(axis=1, index=4).infer([t(2, 4)])
    with pytest.raises(ShapeError, match="equal shapes"):
        Stack().infer([t(2, 3), t(2, 4)])
    with pytest.raises(ShapeError, match="exceeds its size 8"):
        Slice(axis=1, start=2, end=9).infer([t(2, 8)])
    with pytest.raises(pydantic.ValidationError):
        Slice(axis=1, start=3, end=3)


def test_causal_mask_needs_square_scores():
    assert CausalMask().infer([t("N", 2, 5, 5)]) == t("N", 2, 5, 5)
    with pytest.raises(ShapeError, match="square"):
        CausalMask().infer([t(2, 4, 5)])


def test_positional_encoding_needs_even_static_features():
    assert PositionalEncoding().infer([t("N", 7, 6)]) == t("N", 7, 6)
    with pytest.raises(ShapeError, match="even"):
        PositionalEncoding().infer([t("N", 7, 5)])
    with pytest.raises(ShapeError, match="symbolic 'T'"):
        PositionalEncoding().infer([t("N", "T", 6)])


# --- dense --------------------------------------------------------------------------------------

def test_dense_mnist_layer():
    b, out = build(Dense(units=500), ("N", 784))
    assert out == "layer"
    assert b.type_of(out) == t("N", 500)
    assert params_of(b) == {"layer.weight": (784, 500), "layer.bias": (500,)}
    assert n_params(b) == 392_000 + 500
    assert b.graph.nodes["layer/matmul"]["op"] == MatMul()
    assert b.graph.nodes["layer"]["inputs"] == ("layer/matmul", "layer.bias")
    assert b.graph.nodes["layer.weight"]["op"].init == Init(kind="xavier")
    assert b.graph.nodes["layer.bias"]["op"].init == Init(kind="zeros")


def test_dense_without_bias_is_one_matmul_named_as_the_layer():
    b, out = build(Dense(units=3, bias=False), (2, 7, 5))
    assert b.type_of(out) == t(2, 7, 3)
    assert b.graph.nodes["layer"]["op"] == MatMul()
    assert params_of(b) == {"layer.weight": (5, 3)}


def test_dense_infer_and_macs_come_from_the_expansion():
    x = t("N", 6)
    y = Dense(units=4).infer([x])
    assert y == t("N", 4)
    assert Dense(units=4).macs([x], y) == 24


@pytest.mark.parametrize("units", ["3", 3.0, 0, True])
def test_dense_units_are_strict(units):
    with pytest.raises(pydantic.ValidationError):
        Dense(units=units)


def test_dense_rejects_unknown_attributes_and_is_frozen():
    with pytest.raises(pydantic.ValidationError):
        Dense(units=3, activations="relu")  # a misspelt attribute
    with pytest.raises(pydantic.ValidationError):
        Dense(units=3).units = 4
    assert Dense(units=3) == Dense(units=3) and hash(Dense(units=3)) == hash(Dense(units=3))


# --- recurrent ----------------------------------------------------------------------------------

def test_rnn_unrolls_and_returns_last_state():
    b, out = build(RNN(hidden=4), ("N", 3, 5))
    assert out == "layer" and b.type_of(out) == t("N", 4)
    assert params_of(b) == {"layer.wx": (5, 4), "layer.wh": (4, 4), "layer.b": (4,)}
    assert len(ops_of(b, "tanh")) == 3
    # h_{-1} = 0: the recurrent matmul is skipped at t = 0
    assert len(ops_of(b, "matmul")) == 3 + 2
    assert b.graph.nodes["layer"]["op"] == Tanh()


def test_rnn_return_sequences_stacks_every_step():
    b, out = build(RNN(hidden=4, return_sequences=True), ("N", 3, 5))
    assert b.type_of(out) == t("N", 3, 4)
    assert b.graph.nodes["layer"]["op"] == Stack(axis=1)
    assert len(b.graph.nodes["layer"]["inputs"]) == 3


def test_rnn_needs_static_time():
    with pytest.raises(ShapeError, match="time steps T must be a static size, got 'T'"):
        build(RNN(hidden=2), ("N", "T", 5))


def test_lstm_parameters_and_output():
    n_in, hid, steps = 5, 3, 4
    b, out = build(LSTM(hidden=hid), ("N", steps, n_in))
    assert b.type_of(out) == t("N", hid)
    assert params_of(b) == {"layer.wx": (n_in, 4 * hid), "layer.wh": (hid, 4 * hid), "layer.b": (4 * hid,)}
    assert n_params(b) == 4 * hid * (n_in + hid) + 4 * hid
    assert b.graph.nodes["layer"]["op"] == Mul()
    gates = {b.graph.nodes[n]["op"] for n in ops_of(b, "slice") if n.startswith("layer/t1/")}
    assert gates == {Slice(axis=-1, start=k * hid, end=(k + 1) * hid) for k in range(4)}
    # c_{-1} = 0: no forget gate at t = 0
    assert "layer/t0/f" not in b.graph and "layer/t1/f" in b.graph


def test_lstm_return_sequences():
    b, out = build(LSTM(hidden=2, return_sequences=True), (3, 5, 4))
    assert b.type_of(out) == t(3, 5, 2)


# --- attention ----------------------------------------------------------------------------------

def test_self_attention_parameters_and_nodes():
    d = 8
    b, out = build(MultiHeadAttention(heads=2), ("N", 5, d))
    assert out == "layer" and b.type_of(out) == t("N", 5, d)
    want = {f"layer.w{p}": (d, d) for p in "qkvo"} | {f"layer.b{p}": (d,) for p in "qkvo"}
    assert params_of(b) == want
    assert n_params(b) == 4 * d * d + 4 * d
    nodes = b.graph.nodes
    assert nodes["layer/scores"]["type"] == t("N", 2, 5, 5)
    assert nodes["layer/scaled"]["op"] == Scale(factor=1 / math.sqrt(4))
    assert nodes["layer/weights"]["op"] == Softmax(axis=-1)
    assert nodes["layer/k_heads"]["type"] == t("N", 2, 4, 5)
    assert nodes["layer"]["op"] == Add()
    assert not ops_of(b, "causal_mask")


def test_causal_attention_masks_before_softmax():
    b, _ = build(MultiHeadAttention(heads=1, causal=True), (2, 3, 4))
    assert b.graph.nodes["layer/weights"]["inputs"] == ("layer/masked",)
    assert b.graph.nodes["layer/masked"]["op"] == CausalMask()


def test_cross_attention_takes_keys_from_second_input():
    b, out = build(MultiHeadAttention(heads=2, bias=False), ("N", 3, 4), ("N", 6, 4))
    assert b.type_of(out) == t("N", 3, 4)
    assert b.graph.nodes["layer/scores"]["type"] == t("N", 2, 3, 6)
    assert b.graph.nodes["layer/k"]["inputs"] == ("x2", "layer.wk")
    assert n_params(b) == 4 * 4 * 4


def test_attention_heads_must_divide_features():
    with pytest.raises(ShapeError, match="not divisible by heads = 3"):
        build(MultiHeadAttention(heads=3), ("N", 5, 8))


def test_attention_heads_are_strict():
    with pytest.raises(pydantic.ValidationError):
        MultiHeadAttention(heads=2.0)
