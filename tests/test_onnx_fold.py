"""Shape arithmetic folded at export (graphc/backends/onnx_fold.py) and ``graphc export --static-batch N``:
the default export keeps its batch symbolic; a static one has no Shape or Size node left, and both
compute the same step in onnxruntime."""

import subprocess
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from graphc.backends.onnx_fold import fold_shapes

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
SHAPE_ARITHMETIC = ("Shape", "Size", "Gather", "Cast")


def graphc(*args, cwd=ROOT):
    return subprocess.run(["graphc", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=600)


def counts(model) -> dict[str, int]:
    c = Counter(n.op_type for n in model.graph.node)
    return {k: c[k] for k in SHAPE_ARITHMETIC}


def export(tmp_path, spec, *options) -> onnx.ModelProto:
    path = tmp_path / f"{spec}{'_'.join(map(str, options))}.onnx".replace("--", "_")
    r = graphc("export", SPECS / f"{spec}.yaml", "-o", path, *options)
    assert r.returncode == 0, r.stderr
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    return model


def leading_dims(model):
    return {i.name: i.type.tensor_type.shape.dim[0] for i in model.graph.input if i.type.tensor_type.shape.dim}


def test_resnet20_training_step_static_batch_folds_its_shape_arithmetic_and_computes_the_same(tmp_path):
    options = ("--training", "--optimizer", "momentum")
    symbolic = export(tmp_path, "resnet20_cifar", *options)
    static = export(tmp_path, "resnet20_cifar", *options, "--static-batch", 2)
    # the default stays batch-symbolic; --static-batch fixes every input's batch
    assert {d.dim_param for d in leading_dims(symbolic).values() if d.dim_param} == {"N"}
    assert leading_dims(static)["image"].dim_value == 2 and not any(d.dim_param for d in leading_dims(static).values())
    # symbolic: each of the 21 batchnorms' per-channel count N·H·W is Size(x)/C at run time, once per
    # batchnorm (its lowerings share it), and one more for the loss's mean; static: none. What stays:
    # the Gathers pick the rows (μ, σ², 1/σ) of the batch statistics (data, not shapes), the Casts the
    # float64 channel sums of the batchnorm gradients and each of the 19 ReLU gradients' 0/1 mask
    assert counts(symbolic) == {"Shape": 0, "Size": 22, "Gather": 105, "Cast": 107}
    assert counts(static) == {"Shape": 0, "Size": 0, "Gather": 105, "Cast": 85}
    assert sum(n.op_type == "Cast" and n.output[0].endswith("/grad/dx/mask") for n in static.graph.node) == 19
    assert len(symbolic.graph.node) - len(static.graph.node) == 87  # with each count's Div and Cast
    rng = np.random.default_rng(0)
    sessions = [ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]) for m in (symbolic, static)]
    feeds = {}
    for i in sessions[0].get_inputs():
        shape = [2 if isinstance(d, str) else d for d in i.shape]
        if i.name == "label":
            feeds[i.name] = rng.integers(0, 10, shape)
        elif i.name.startswith("state/"):
            feeds[i.name] = rng.standard_normal(shape).astype(np.float32) * 0.01
        elif i.name == "lr":
            feeds[i.name] = np.array(0.05, np.float32)
        else:
            feeds[i.name] = rng.standard_normal(shape).astype(np.float32)
    names = [o.name for o in sessions[0].get_outputs()]
    assert names == [o.name for o in sessions[1].get_outputs()]
    got = [dict(zip(names, s.run(names, feeds))) for s in sessions]
    for name in names:
        want = got[0][name]
        np.testing.assert_allclose(got[1][name], want, rtol=1e-5, atol=1e-6 * float(np.max(np.abs(want))) + 1e-7, err_msg=name)
    with pytest.raises(Exception, match="image"):  # the static model takes batches of 2 only
        sessions[1].run(names, {**feeds, "image": np.zeros((3, 3, 32, 32), np.float32)})


def test_a_symbolic_batch_reshape_back_takes_a_constant_shape(tmp_path):
    """LeNet-5's flatten gradient reshapes (N, 400) back to (N, 16, 5, 5): [0, 16, 5, 5], no Shape node."""
    step = export(tmp_path, "lenet5", "--training")
    assert counts(step)["Shape"] == 0 and counts(step)["Size"] == 1
    reshape = next(n for n in step.graph.node if n.output[0] == "flatten/grad/dx")
    shape = next(t for t in step.graph.initializer if t.name == reshape.input[1])
    assert numpy_helper.to_array(shape).tolist() == [0, 16, 5, 5]
    static = export(tmp_path, "lenet5", "--training", "--static-batch", 3)
    assert {k: v for k, v in counts(static).items() if k != "Cast"} == {"Shape": 0, "Size": 0, "Gather": 0}
    # the Casts left are data, not shapes: the loss gradient's one-hot labels, and each max pool's
    # gradient's window maxima (bool to float, for the window codes) and its first-maximum mask (for the product with gy)
    casts = sorted(n.output[0] for n in static.graph.node if n.op_type == "Cast")
    assert len(casts) == 5 and [c for c in casts if "/grad/dx/" in c] == [
        "pool1/grad/dx/at_max_f", "pool1/grad/dx/first_max_f", "pool2/grad/dx/at_max_f", "pool2/grad/dx/first_max_f"], casts


def test_static_batch_of_a_spec_whose_batch_is_static_is_refused(tmp_path):
    (tmp_path / "spec.yaml").write_text("name: m\ninputs:\n  x: {shape: [4, 3]}\nlayers:\n  - {name: fc, op: dense, units: 2}\n")
    r = graphc("export", "spec.yaml", "-o", "m.onnx", "--static-batch", 4, cwd=tmp_path)
    assert r.returncode == 65 and "Traceback" not in r.stderr
    assert "the spec's inputs have no symbolic batch dim to fix to 4: x (4, 3)" in r.stderr
    r = graphc("export", "spec.yaml", "-o", "m.onnx", "--static-batch", 0, cwd=tmp_path)
    assert r.returncode == 2 and "--static-batch: must be ≥ 1" in r.stderr
    assert not (tmp_path / "m.onnx").exists()


def small_model(nodes, inputs, outputs, initializers=()):
    graph = helper.make_graph(nodes, "m", inputs, outputs, initializer=list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)


def test_fold_shapes_folds_static_chains_and_leaves_fed_values_and_symbolic_dims():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4])
    s = helper.make_tensor_value_info("s", TensorProto.FLOAT, ["N", 12])
    scale = numpy_helper.from_array(np.array(2.0, np.float32), "scale")  # an input with a default: a caller may feed it
    nodes = [
        helper.make_node("Size", ["x"], ["size"]),
        helper.make_node("Cast", ["size"], ["count"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["count", "scale"], ["scaled"]),
        helper.make_node("Div", ["x", "scaled"], ["y"]),
        helper.make_node("Shape", ["x"], ["x_shape"], start=1),
        helper.make_node("Shape", ["s"], ["s_shape"]),  # (N, 12): symbolic, stays
        helper.make_node("Reshape", ["w", "x_shape"], ["z"]),
        helper.make_node("Size", ["s"], ["s_size"]),
    ]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3, 4]),
               helper.make_tensor_value_info("z", TensorProto.FLOAT, [3, 4]),
               helper.make_tensor_value_info("s_shape", TensorProto.INT64, [2]),
               helper.make_tensor_value_info("s_size", TensorProto.INT64, [])]
    w = helper.make_tensor_value_info("w", TensorProto.FLOAT, [12])
    model = small_model(nodes, [x, s, w, helper.make_tensor_value_info("scale", TensorProto.FLOAT, [])], outputs, [scale])
    feeds = {"x": np.arange(24, dtype=np.float32).reshape(2, 3, 4), "s": np.ones((5, 12), np.float32),
             "w": np.arange(12, dtype=np.float32), "scale": np.array(3.0, np.float32)}
    want = ort.InferenceSession(model.SerializeToString()).run(None, feeds)
    folded = fold_shapes(model)
    onnx.checker.check_model(folded, full_check=True)
    assert [n.op_type for n in folded.graph.node] == ["Mul", "Div", "Shape", "Reshape", "Size"]
    consts = {t.name: numpy_helper.to_array(t) for t in folded.graph.initializer}
    assert consts["count"] == 24.0 and consts["x_shape"].tolist() == [3, 4] and "size" not in consts
    for got, w in zip(ort.InferenceSession(folded.SerializeToString()).run(None, feeds), want):
        np.testing.assert_array_equal(got, w)


def test_a_reshape_or_expand_by_a_symbolic_shape_keeps_the_batch_by_0_or_1():
    g = helper.make_tensor_value_info("g", TensorProto.FLOAT, ["N", 6])
    like = helper.make_tensor_value_info("like", TensorProto.FLOAT, ["N", 2, 3])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, ["N", 1, 1])
    other = helper.make_tensor_value_info("other", TensorProto.FLOAT, ["M", 2, 3])
    nodes = [helper.make_node("Shape", ["like"], ["like_shape"]),
             helper.make_node("Reshape", ["g", "like_shape"], ["r"]),
             helper.make_node("Expand", ["b", "like_shape"], ["e"]),
             helper.make_node("Shape", ["other"], ["other_shape"]),
             helper.make_node("Reshape", ["g", "other_shape"], ["q"]),  # M is not g's dim: stays
             helper.make_node("Identity", ["r/like_shape"], ["taken"])]  # the name the folded shape would take
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [d, 2, 3]) for n, d in (("r", "N"), ("e", "N"), ("q", "M"))]
    outs.append(helper.make_tensor_value_info("taken", TensorProto.INT64, [3]))
    taken = helper.make_tensor_value_info("r/like_shape", TensorProto.INT64, [3])
    folded = fold_shapes(small_model(nodes, [g, like, b, other, taken], outs))
    onnx.checker.check_model(folded, full_check=True)
    consts = {t.name: numpy_helper.to_array(t).tolist() for t in folded.graph.initializer}
    inputs = {n.output[0]: list(n.input) for n in folded.graph.node}
    assert [n.op_type for n in folded.graph.node] == ["Reshape", "Expand", "Shape", "Reshape", "Identity"]
    assert inputs["r"][1] == "r/like_shape_2" and consts[inputs["r"][1]] == [0, 2, 3] and consts[inputs["e"][1]] == [1, 2, 3] and inputs["q"][1] == "other_shape"
    feeds = {"g": np.arange(24, dtype=np.float32).reshape(4, 6), "like": np.zeros((4, 2, 3), np.float32),
             "b": np.arange(4, dtype=np.float32).reshape(4, 1, 1), "other": np.zeros((4, 2, 3), np.float32),
             "r/like_shape": np.array([7, 7, 7])}
    r, e, q, _ = ort.InferenceSession(folded.SerializeToString()).run(None, feeds)
    np.testing.assert_array_equal(r, feeds["g"].reshape(4, 2, 3))
    np.testing.assert_array_equal(e, np.broadcast_to(feeds["b"], (4, 2, 3)))


def test_fresh_names_are_the_first_free_name_k():
    """The one naming rule of export, shape folding and import (graphc.tensor.unique_name)."""
    from graphc.tensor import unique_name

    taken = {"a", "a_2"}
    assert [unique_name("a", taken) for _ in range(2)] == ["a_3", "a_4"]
    assert unique_name("b", taken) == "b" and unique_name("b", taken) == "b_2"
    assert taken == {"a", "a_2", "a_3", "a_4", "b", "b_2"}
