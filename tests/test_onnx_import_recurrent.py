"""Importing ONNX ``LSTM``, ``GRU`` and ``RNN`` nodes as graphc's ``lstm``, ``gru`` and ``rnn``
layers (``graphc/onnx_import/recurrent.py``): hand-built models with random weights, both layouts,
zero initial states given or absent, ``Y`` and ``Y_h`` used bare or through PyTorch's wrappers, run on
graphc's interpreter and on onnxruntime (float32: within rtol 1e-4 and atol 1e-4·max|y|); the
backend suite's own recurrent cases with their weight inputs made constants, against the outputs the
onnx package ships; and the forms graphc refuses, each with its reason.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import graphc
from graphc.backends.ort import run, session
from graphc.errors import GraphcError
from graphc.onnx_import import import_model
from helpers import reexported

GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
T, N, D, H = 4, 3, 5, 6


def close(a, b):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * max(float(np.abs(b).max()), 1e-6))


def recurrent_model(op_type, *, layout=0, wrappers=False, outputs=("Y_h",), zero_state=False, bias=True, seed=0, directions=1, **attrs):
    """A model around one recurrent node: input ``x`` batch first when ``wrappers`` (PyTorch's
    Transpose before, Squeeze/Transpose after), else in the node's own layout; outputs ``Y``, ``Y_h``
    as listed (through the wrappers: ``y`` (N, T, H) and ``h`` (N, H)); ``directions`` 2 stacks the
    weights twice (a bidirectional node has no wrappers)."""
    rng = np.random.default_rng(seed)
    g = GATES[op_type]
    if op_type == "GRU":
        attrs.setdefault("linear_before_reset", 1)
    inits = [numpy_helper.from_array((rng.standard_normal((directions, g * H, D)) * 0.5).astype(np.float32), "W"),
             numpy_helper.from_array((rng.standard_normal((directions, g * H, H)) * 0.5).astype(np.float32), "R")]
    ins = ["x_steps" if wrappers and layout == 0 else "x", "W", "R", "B" if bias else ""]
    if bias:
        inits.append(numpy_helper.from_array((rng.standard_normal((directions, 2 * g * H)) * 0.5).astype(np.float32), "B"))
    if zero_state:
        state = (N, 1, H) if layout else (1, N, H)
        inits.append(numpy_helper.from_array(np.zeros(state, np.float32), "h0"))
        ins += ["", "h0"] + (["h0"] if op_type == "LSTM" else [])
    nodes = []
    if wrappers and layout == 0:
        nodes.append(helper.make_node("Transpose", ["x"], ["x_steps"], perm=[1, 0, 2]))
    nodes.append(helper.make_node(op_type, ins, ["Y" if "Y" in outputs else "", "Y_h" if "Y_h" in outputs else ""], name="rnn",
                                  hidden_size=H, layout=layout, **attrs))
    outs = []
    if wrappers:
        inits.append(numpy_helper.from_array(np.asarray([1 + layout], np.int64), "seq_axis"))
        inits.append(numpy_helper.from_array(np.asarray([layout], np.int64), "last_axis"))
        if "Y" in outputs:
            nodes.append(helper.make_node("Squeeze", ["Y", "seq_axis"], ["y_steps" if layout == 0 else "y"]))
            if layout == 0:
                nodes.append(helper.make_node("Transpose", ["y_steps"], ["y"], perm=[1, 0, 2]))
            outs.append(helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", T, H]))
        if "Y_h" in outputs:
            nodes.append(helper.make_node("Squeeze", ["Y_h", "last_axis"], ["h"]))
            outs.append(helper.make_tensor_value_info("h", TensorProto.FLOAT, ["N", H]))
    else:
        nd = directions
        shapes = {"Y": (["N", T, nd, H] if layout else [T, nd, "N", H]), "Y_h": (["N", nd, H] if layout else [nd, "N", H])}
        outs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, shapes[o]) for o in outputs]
    x_shape = ["N", T, D] if wrappers or layout else [T, "N", D]
    graph = helper.make_graph(nodes, "recurrent", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)], outs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    return model


def check_against_onnxruntime(model):
    """graphc's import on its interpreter == onnxruntime (layout 0) or, for layout 1, which
    onnxruntime's CPU kernels refuse, onnx's reference evaluator."""
    from onnx.reference import ReferenceEvaluator

    imported = import_model(model, "recurrent.onnx")
    graph = imported.graph()
    x_shape = [d.dim_value or N for d in model.graph.input[0].type.tensor_type.shape.dim]
    x = np.random.default_rng(1).standard_normal(x_shape).astype(np.float32)
    if any(a.name == "layout" and a.i == 1 for n in model.graph.node for a in n.attribute):
        theirs = dict(zip([o.name for o in model.graph.output], ReferenceEvaluator(model).run(None, {"x": x})))
    else:
        sess, _ = session(model, "cpu")
        theirs = run(sess, {"x": x})
    ours = graphc.run_forward(graph, {imported.inputs["x"]: x}, imported.params)
    assert set(imported.outputs) == set(theirs)
    for name, key in imported.outputs.items():
        close(ours[key], theirs[name])
    # export(import(model)) on stock onnxruntime, layout 1 included: graphc writes its layers time first
    again = reexported(imported, {"x": x})
    for name in imported.outputs:
        close(again[name], theirs[name])
    return imported


def layer_ops(imported):
    return [layer["op"] for layer in imported.spec["layers"]]


@pytest.mark.parametrize("op_type", list(GATES))
@pytest.mark.parametrize("layout", [0, 1])
@pytest.mark.parametrize("outputs", [("Y_h",), ("Y",), ("Y", "Y_h")], ids=["Y_h", "Y", "Y+Y_h"])
def test_pytorch_wrapped_nodes_import_as_one_layer(op_type, layout, outputs):
    """Batch-first in and out through Transpose/Squeeze: the spec is the recurrent layer, plus a
    slice of its last step when both the sequence and the last state are used."""
    imported = check_against_onnxruntime(recurrent_model(op_type, layout=layout, wrappers=True, outputs=outputs))
    kind = op_type.lower()
    layer = imported.spec["layers"][0]
    assert layer["op"] == kind and layer["hidden"] == H and layer.get("return_sequences", False) == ("Y" in outputs)
    # Y_h (squeezed) beside Y: the sequence's last step sliced off and squeezed
    assert layer_ops(imported) == [kind] + (["slice", "flatten"] if outputs == ("Y", "Y_h") else [])


@pytest.mark.parametrize("op_type", list(GATES))
@pytest.mark.parametrize("layout", [0, 1])
@pytest.mark.parametrize("zero_state", [False, True], ids=["no_state", "zero_state"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
def test_bare_nodes_give_onnx_outputs(op_type, layout, zero_state, bias):
    """The node's own Y and Y_h (time first in layout 0) recomputed from graphc's layer."""
    imported = check_against_onnxruntime(recurrent_model(op_type, layout=layout, outputs=("Y", "Y_h"), zero_state=zero_state, bias=bias))
    assert layer_ops(imported).count(op_type.lower()) == 1


def test_pytorch_last_step_gather_is_the_last_state():
    """PyTorch's ``y[:, -1]`` of the whole sequence is the layer's last state: one layer, no slice."""
    model = recurrent_model("LSTM", wrappers=True, outputs=("Y",))
    graph = model.graph
    graph.output[0].CopyFrom(helper.make_tensor_value_info("last", TensorProto.FLOAT, ["N", H]))
    graph.initializer.append(numpy_helper.from_array(np.asarray(-1, np.int64), "minus_one"))
    graph.node.append(helper.make_node("Gather", ["y", "minus_one"], ["last"], axis=1))
    imported = check_against_onnxruntime(model)
    assert imported.spec["layers"] == [{"name": "rnn", "op": "lstm", "hidden": H}]


def test_pytorch_stacked_layers_with_zero_states_of_a_symbolic_batch():
    """``nn.GRU(num_layers=2, batch_first=True)`` as PyTorch writes it: h0 a ConstantOfShape of
    (2, N, H) (N read from the input's shape), sliced per layer; the first layer's Y squeezed time
    first into the second; the second's Y back batch first. Two layers, nothing else."""
    rng = np.random.default_rng(0)
    g = GATES["GRU"]
    inits, nodes = [], [helper.make_node("Transpose", ["x"], ["x_steps"], perm=[1, 0, 2])]

    def const(name, value):
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    nodes += [helper.make_node("Shape", ["x"], ["shape"]), helper.make_node("Gather", ["shape", const("zero", np.int64(0))], ["n"]),
              helper.make_node("Unsqueeze", ["n", const("axis0", np.asarray([0], np.int64))], ["n1"]),
              helper.make_node("Concat", [const("two", np.asarray([2], np.int64)), "n1", const("hid", np.asarray([H], np.int64))], ["h0_shape"], axis=0),
              helper.make_node("ConstantOfShape", ["h0_shape"], ["h0"])]
    source, width = "x_steps", D
    for k in range(2):
        w = const(f"W{k}", (rng.standard_normal((1, g * H, width)) * 0.5).astype(np.float32))
        r = const(f"R{k}", (rng.standard_normal((1, g * H, H)) * 0.5).astype(np.float32))
        b = const(f"B{k}", (rng.standard_normal((1, 2 * g * H)) * 0.5).astype(np.float32))
        nodes += [helper.make_node("Slice", ["h0", const(f"s{k}", np.asarray([k], np.int64)), const(f"e{k}", np.asarray([k + 1], np.int64)),
                                             "axis0"], [f"h0_{k}"]),
                  helper.make_node("GRU", [source, w, r, b, "", f"h0_{k}"], [f"Y{k}", f"Y_h{k}"], name=f"gru{k}", hidden_size=H, linear_before_reset=1),
                  helper.make_node("Squeeze", [f"Y{k}", const(f"one{k}", np.asarray([1], np.int64))], [f"y{k}_steps"])]
        source, width = f"y{k}_steps", H
    nodes.append(helper.make_node("Transpose", [source], ["y"], perm=[1, 0, 2]))
    graph = helper.make_graph(nodes, "stacked", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", T, D])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", T, H])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    imported = check_against_onnxruntime(model)
    assert imported.spec["layers"] == [{"name": "gru0", "op": "gru", "hidden": H, "return_sequences": True},
                                       {"name": "gru1", "op": "gru", "hidden": H, "return_sequences": True}]


def test_gate_orders_map_onto_graphcs_parameters():
    """ONNX LSTM blocks i, o, f, c become graphc's i, f, o, g (columns of wx = Wᵀ), B's halves summed;
    GRU z, r, h become r, z, n with bx = Wb, bh = Rb."""
    from graphc.onnx_import.recurrent import graphc_params

    h, d = 2, 3
    w = np.arange(4 * h * d, dtype=np.float32).reshape(1, 4 * h, d)
    r = np.zeros((1, 4 * h, h), np.float32)
    b = np.arange(8 * h, dtype=np.float32).reshape(1, -1)
    p = graphc_params("LSTM", h, w, r, b)
    i, o, f, c = (w[0, k * h:(k + 1) * h].T for k in range(4))
    np.testing.assert_array_equal(p["wx"], np.concatenate([i, f, o, c], axis=1))
    wb, rb = b[0, :4 * h], b[0, 4 * h:]
    blocks = lambda v: [v[k * h:(k + 1) * h] for k in range(4)]  # noqa: E731
    np.testing.assert_array_equal(p["b"], np.concatenate([blocks(wb + rb)[k] for k in (0, 2, 1, 3)]))
    g = graphc_params("GRU", h, w[:, :3 * h], r[:, :3 * h], b[:, :6 * h])
    z, rr, n = (w[0, k * h:(k + 1) * h].T for k in range(3))
    np.testing.assert_array_equal(g["wx"], np.concatenate([rr, z, n], axis=1))
    np.testing.assert_array_equal(g["bx"], np.concatenate([b[0, h:2 * h], b[0, :h], b[0, 2 * h:3 * h]]))
    np.testing.assert_array_equal(g["bh"], np.concatenate([b[0, 4 * h:5 * h], b[0, 3 * h:4 * h], b[0, 5 * h:6 * h]]))


@pytest.mark.parametrize("op_type, attrs, reason", [
    ("LSTM", {"direction": "bidirectional"}, "direction bidirectional: graphc's lstm runs forward only"),
    ("GRU", {"direction": "reverse"}, "direction reverse: graphc's gru runs forward only"),
    ("GRU", {"linear_before_reset": 0}, "linear_before_reset 0 (the reset gate applied before the hidden projection): "
                                        "graphc's gru is PyTorch's, linear_before_reset 1"),
    ("LSTM", {"clip": 3.0}, "clip 3: graphc's lstm does not clip its gate inputs"),
    ("RNN", {"activations": ["Relu"]}, "activations Relu: graphc's rnn uses Tanh"),
    ("LSTM", {"input_forget": 1}, "input_forget 1 (the input and forget gates coupled): graphc's lstm has both gates"),
])
def test_refused_forms_name_their_reason(op_type, attrs, reason):
    two = attrs.get("direction") == "bidirectional"
    model = recurrent_model(op_type, wrappers=not two, directions=2 if two else 1, **attrs)
    imported = import_model(model, "rnn.onnx", strict=False)
    assert [u.message("rnn.onnx") for u in imported.unsupported] == [
        f"rnn.onnx: node 'rnn' ({op_type}, opset 17) is not supported by graphc: {reason}"]
    with pytest.raises(GraphcError, match="1 node.s. not supported by graphc"):
        import_model(model, "rnn.onnx")


def test_nonzero_initial_state_and_used_cell_state_are_refused():
    model = recurrent_model("LSTM", zero_state=True, outputs=("Y_h",))
    next(t for t in model.graph.initializer if t.name == "h0").CopyFrom(numpy_helper.from_array(np.ones((1, N, H), np.float32), "h0"))
    imported = import_model(model, "rnn.onnx", strict=False)
    assert imported.unsupported[0].reason == "a nonzero or computed initial_h: graphc's recurrent layers start from zero"
    model = recurrent_model("LSTM", outputs=("Y_h",))
    model.graph.node[0].output.append("Y_c")
    model.graph.output.append(helper.make_tensor_value_info("Y_c", TensorProto.FLOAT, [1, "N", H]))
    imported = import_model(model, "rnn.onnx", strict=False)
    assert imported.unsupported[0].reason == "its cell state Y_c is used: graphc's lstm returns h only"


# ── the backend suite's recurrent cases, their weights made constants ─────────────────────────────

def suite_cases():
    """The onnx package's node tests of LSTM, GRU and RNN: name → (model, inputs, outputs)."""
    import warnings

    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the case generators warn about their own overflow tests
        cases = collect_testcases()
    return {c.name: (c.model, *c.data_sets[0]) for c in cases if c.name.startswith(("test_lstm", "test_gru", "test_rnn", "test_simple_rnn"))}


SUITE = suite_cases()
#: the cases graphc computes once their weights are constants; the rest are refused for a form (below)
COMPUTED = ("test_lstm_batchwise", "test_lstm_defaults", "test_lstm_with_initial_bias", "test_rnn_seq_length",
            "test_simple_rnn_batchwise", "test_simple_rnn_defaults", "test_simple_rnn_with_initial_bias")


def _weights_constant(model, inputs):
    """The model with every graph input but ``X`` an initializer holding the case's value."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    values = dict(zip([i.name for i in model.graph.input], inputs))
    keep = [i for i in m.graph.input if i.name == "X"]
    m.graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in values.items() if k != "X")
    del m.graph.input[:]
    m.graph.input.extend(keep)
    return m, values["X"]


@pytest.mark.parametrize("name", COMPUTED)
def test_suite_cases_with_constant_weights_match_the_shipped_outputs(name):
    model, inputs, want = SUITE[name]
    model, x = _weights_constant(model, inputs)
    imported = import_model(model, f"{name}.onnx")
    graph = imported.graph()
    ours = graphc.run_forward(graph, {imported.inputs["X"]: x}, imported.params, dtype=np.float64 if x.dtype == np.float64 else np.float32)
    again = reexported(imported, {"X": x}, dtype=x.dtype)  # export(import(model)) on onnxruntime
    for out, expected in zip(model.graph.output, want):
        close(ours[imported.outputs[out.name]], expected)
        close(again[out.name], expected)


def test_other_suite_cases_are_refused_for_their_form():
    reasons = {}
    for name in sorted(set(SUITE) - set(COMPUTED)):
        model, inputs, _ = SUITE[name]
        imported = import_model(_weights_constant(model, inputs)[0], f"{name}.onnx", strict=False)
        reasons[name] = imported.unsupported[0].reason.split(":")[0]
    gru = "linear_before_reset 0 (the reset gate applied before the hidden projection)"
    assert reasons == {"test_gru_batchwise": gru, "test_gru_defaults": gru, "test_gru_seq_length": gru, "test_gru_with_initial_bias": gru,
                       "test_gru_bidirectional": "direction bidirectional", "test_gru_reverse": "direction reverse",
                       "test_lstm_bidirectional": "direction bidirectional", "test_lstm_reverse": "direction reverse",
                       "test_lstm_with_peepholes": "peepholes P", "test_simple_rnn_bidirectional": "direction bidirectional",
                       "test_simple_rnn_reverse": "direction reverse"}
