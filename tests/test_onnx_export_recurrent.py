"""The forward export writes a recurrent layer whole, as ONNX's ``RNN``/``LSTM``/``GRU`` node
(the composites' ``onnx_layer`` facet): onnxruntime's recurrent kernels against graphc's unrolled
interpreter (float32: within rtol 1e-4 and atol 1e-4·max|y|), the training step still unrolled,
and a layer whose inner values something else reads kept expanded."""

from __future__ import annotations

import numpy as np
import pytest

import graphc
from graphc.backends.interpreter import Program
from graphc.backends.onnx_export import export_model, forward_model, training_model, whole_layers
from graphc.backends.ort import run, session
from graphc.ir.autodiff import training_graph
from graphc.ir.graph import topo_order
from graphc.ir.passes import optimize
from graphc.ir.params import initial_params

SPEC = """name: recurrent
inputs:
  seq: {{shape: [N, 5, 3]}}
  label: {{shape: [N], dtype: int64}}
layers:
  - {{name: first, op: {kind}, hidden: 4, return_sequences: true}}
  - {{name: second, op: {kind}, hidden: 6}}
  - {{name: fc, op: dense, units: 2}}
outputs: {{logits: fc}}
loss: {{op: softmax_cross_entropy, inputs: [fc, label]}}
"""
ONNX_OP = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}


def compiled(kind):
    return graphc.compile_spec(f"{kind}.yaml", SPEC.format(kind=kind))


@pytest.mark.parametrize("kind", list(ONNX_OP))
def test_forward_export_is_one_node_per_layer_and_agrees_with_the_interpreter(kind):
    graph = compiled(kind)
    rng = np.random.default_rng(0)
    params = {k: (v + 0.5 * rng.standard_normal(v.shape)).astype(np.float32) for k, v in initial_params(graph, 0).items()}
    model = forward_model(graph, params)
    ops = [n.op_type for n in model.graph.node]
    assert ops.count(ONNX_OP[kind]) == 2 and "MatMul" in ops and ops.count("MatMul") == 1  # the dense layer's alone
    seq = rng.standard_normal((3, 5, 3)).astype(np.float32)
    sess, _ = session(model, "cpu")
    got = run(sess, {"seq": seq})["logits"]
    want = Program(graph, ["fc"]).run({"seq": seq, **params})["fc"]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()))


def test_training_step_and_evaluation_graph_stay_unrolled():
    graph = compiled("lstm")
    training, _ = optimize(training_graph(graph))
    for model in (training_model(training), export_model(graph, ["fc"])):
        assert "LSTM" not in {n.op_type for n in model.graph.node}


def test_a_layer_whose_inner_values_are_read_elsewhere_stays_expanded():
    graph = compiled("gru")
    order = topo_order(graph)
    whole, inner = whole_layers(graph, order, {"fc"})
    assert set(whole) == {"first", "second"} and "second/t2/rz" in inner
    # a step's gates named as an output: that layer cannot be one node
    whole, inner = whole_layers(graph, order, {"fc", "second/t2/rz"})
    assert set(whole) == {"first"} and not any(n.startswith("second/") for n in inner)
    model = export_model(graph, ["fc", "second/t2/rz"], layers_whole=True)
    assert [n.op_type for n in model.graph.node].count("GRU") == 1
