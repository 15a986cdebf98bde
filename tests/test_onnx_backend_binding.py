"""``GraphcBackend`` with constants given at run time: a weight, shape or axes fed as a graph input
is deferred by ``prepare`` and bound by ``run`` (``graphc.onnx_import.backend``). Outputs are
compared with onnxruntime's on the same model and inputs."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from graphc.errors import GraphcError
from graphc.onnx_import import import_model
from graphc.onnx_import.backend import GraphcBackend

RNG = np.random.default_rng(0)


def _model(nodes, inputs, outputs, initializers=()) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "bound", inputs, outputs, list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def _conv_model() -> onnx.ModelProto:
    """Conv(Reshape(x, shape), w): the target shape and the weight are graph inputs."""
    return _model([helper.make_node("Reshape", ["x", "shape"], ["r"]),
                   helper.make_node("Conv", ["r", "w"], ["y"], pads=[1, 1, 1, 1])],
                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 50]),
                   helper.make_tensor_value_info("shape", TensorProto.INT64, [4]),
                   helper.make_tensor_value_info("w", TensorProto.FLOAT, [3, 2, 3, 3])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 5, 5])])


def _onnxruntime(model, feeds):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)


def test_a_weight_and_a_shape_fed_as_inputs_are_bound_at_run_time():
    model = _conv_model()
    rep = GraphcBackend.prepare(model)
    assert rep.deferred == ("shape",)  # the Conv reads the refused Reshape: judged once the shape is bound
    x = RNG.standard_normal((1, 50)).astype(np.float32)
    w = RNG.standard_normal((3, 2, 3, 3)).astype(np.float32)
    shape = np.array([1, 2, 5, 5], dtype=np.int64)
    (y,) = rep.run([x, shape, w])
    (want,) = _onnxruntime(model, {"x": x, "w": w, "shape": shape})
    assert y.shape == (1, 3, 5, 5) and rep.deferred == ("shape", "w")
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)
    (by_name,) = rep.run({"x": x, "w": w, "shape": shape})
    np.testing.assert_array_equal(by_name, y)


def test_equal_bound_values_import_once_and_new_ones_again():
    rep = GraphcBackend.prepare(_conv_model())
    w = RNG.standard_normal((3, 2, 3, 3)).astype(np.float32)
    shape = np.array([1, 2, 5, 5], dtype=np.int64)
    first = rep.bind({"w": w, "shape": shape})
    assert rep.bind({"w": w.copy(), "shape": shape.copy()}) is first  # the same bytes: the cached import
    other = rep.bind({"w": w + 1, "shape": shape})
    assert other is not first
    np.testing.assert_array_equal(other[0].params[next(k for k in other[0].params if k.endswith(".weight"))], w + 1)
    assert rep.bind({"w": w, "shape": shape}) is first  # still cached beside the other
    x = RNG.standard_normal((1, 50)).astype(np.float32)
    (y1,) = rep.run([x, shape, w])
    (y2,) = rep.run([x, shape, w + 1])
    assert not np.allclose(y1, y2)  # each run uses its own weights, not the cached first ones


def test_a_wrongly_shaped_or_typed_bound_value_is_a_clear_error():
    rep = GraphcBackend.prepare(_conv_model())
    x = np.zeros((1, 50), np.float32)
    shape = np.array([1, 2, 5, 5], dtype=np.int64)
    with pytest.raises(GraphcError) as wrong:
        rep.run([x, shape, np.zeros((2, 2, 3, 3), np.float32)])
    assert str(wrong.value).splitlines()[0].endswith(
        "bound: input 'w' is given a float32 array of shape [2, 2, 3, 3]; the model declares float32 [3, 2, 3, 3]")
    with pytest.raises(GraphcError, match=r"input 'shape' is given a int32 array of shape \[4\]; the model declares int64 \[4\]"):
        rep.run([x, shape.astype(np.int32), np.zeros((3, 2, 3, 3), np.float32)])


def test_a_node_refused_once_its_constants_are_bound_says_why_at_run_time():
    """A 3-D Conv with its weight an input: deferred by prepare, refused for its window when bound."""
    model = _model([helper.make_node("Conv", ["x", "w"], ["y"])],
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 3, 3, 3]),
                    helper.make_tensor_value_info("w", TensorProto.FLOAT, [1, 1, 2, 2, 2])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 2, 2, 2])])
    rep = GraphcBackend.prepare(model)
    with pytest.raises(GraphcError, match="is not supported by graphc: a 3-D window"):
        rep.run([np.zeros((1, 1, 3, 3, 3), np.float32), np.zeros((1, 1, 2, 2, 2), np.float32)])


def test_an_lstm_asking_for_its_weights_one_at_a_time_gets_them_all():
    """LSTM(X, W, R): the importer asks for R only once W is a constant; ``bind`` binds both."""
    hidden, d, t = 3, 2, 4
    model = _model([helper.make_node("LSTM", ["x", "w", "r"], ["", "h"], hidden_size=hidden)],
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, [t, 1, d]),
                    helper.make_tensor_value_info("w", TensorProto.FLOAT, [1, 4 * hidden, d]),
                    helper.make_tensor_value_info("r", TensorProto.FLOAT, [1, 4 * hidden, hidden])],
                   [helper.make_tensor_value_info("h", TensorProto.FLOAT, [1, 1, hidden])])
    rep = GraphcBackend.prepare(model)
    assert rep.deferred == ("w",)
    x = RNG.standard_normal((t, 1, d)).astype(np.float32)
    w = RNG.standard_normal((1, 4 * hidden, d)).astype(np.float32) * 0.5
    r = RNG.standard_normal((1, 4 * hidden, hidden)).astype(np.float32) * 0.5
    (h,) = rep.run([x, w, r])
    assert rep.deferred == ("w", "r")
    np.testing.assert_allclose(h, _onnxruntime(model, {"x": x, "w": w, "r": r})[0], rtol=1e-5, atol=1e-5)


def test_other_refusals_stay_refused_at_prepare_and_the_cli_form_is_unchanged():
    """A weight input beside an op graphc lacks: prepare refuses it all at once, as the importer does."""
    model = _model([helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Cos", ["c"], ["y"])],
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 3, 3]),
                    helper.make_tensor_value_info("w", TensorProto.FLOAT, [1, 1, 2, 2])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 2, 2])])
    with pytest.raises(GraphcError) as refused:
        GraphcBackend.prepare(model)
    with pytest.raises(GraphcError) as imported:
        import_model(model, "bound")
    assert str(refused.value) == str(imported.value)
    assert "node 'c' (Conv, opset 13) is not supported by graphc: its weight is computed, not a constant" in str(imported.value)
    assert "node 'y' (Cos, opset 13) is not supported by graphc" in str(imported.value)
