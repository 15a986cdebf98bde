"""`graphc import` and ONNX files wherever a spec goes: graphc's own exports, hand-built models and
the model zoo's networks shipped in the onnx package, imported, compiled, run and re-exported.

Round trips: ``import(export(spec))`` compiles to the spec's report (shapes, parameters, MACs,
receptive fields), and ``export(import(model))`` computes the model's outputs on onnxruntime
(float32: within rtol 1e-4 and atol 1e-4·max|y|).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import graphc
from graphc.backends.onnx_export import forward_model
from graphc.backends.ort import run, session
from graphc.errors import GraphcError
from graphc.ir.params import initial_params
from graphc.onnx_import import import_model
from graphc.report import compile_report
from helpers import reexported

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.yaml"))
LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
#: exported and imported, these specs are large: their round trips are slow tests
SLOW = {"vgg16", "resnet18", "resnet50", "googlenet", "alexnet", "squeezenet1_1", "vit_b16"}


def graphc_cli(*args, cwd=ROOT):
    return subprocess.run(["graphc", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=600)


def close(a, b):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * max(float(np.abs(b).max()), 1e-6))


def exported(spec: Path, seed: int = 0):
    graph = graphc.compile_spec(spec)
    return graph, forward_model(graph, initial_params(graph, seed))


def ort_outputs(model, feeds):
    sess, _ = session(model, "cpu")
    return run(sess, feeds)


def random_feeds(model, batch: int = 2, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    inits = {t.name for t in model.graph.initializer}
    feeds = {}
    for i in model.graph.input:
        if i.name in inits:
            continue
        shape = [d.dim_value if d.HasField("dim_value") else batch for d in i.type.tensor_type.shape.dim]
        if i.type.tensor_type.elem_type == TensorProto.INT64:  # token ids, below every example's vocabulary (gpt_decoder's 64)
            feeds[i.name] = rng.integers(0, 8, shape)
        else:
            feeds[i.name] = rng.standard_normal(shape).astype(np.float32)
    return feeds


# ── round trips ───────────────────────────────────────────────────────────────────────────────────

def _summary(report: dict) -> dict:
    """What an import must keep: totals, inputs and outputs, and every layer's shape and receptive
    field by its (sanitised) name."""
    keys = ("params_total", "params_trainable", "params_non_trainable", "macs_total")
    return {**{k: report[k] for k in keys}, "outputs": [(o["shape"], o["dtype"]) for o in report["outputs"]]}


def _layers(report: dict) -> dict:
    return {r["name"].replace(".", "_"): (r["shape"], r["receptive_field"]) for r in report["layers"]}


#: the example specs whose round trip is checked: every one (lstm_classifier and gru_classifier: the
#: forward export writes each recurrent layer as ONNX's LSTM/GRU node, imported back as the layer;
#: alexnet's adaptive pool to its input's 6×6 lowers to Identity, efficientnet_b0's and
#: mobilenet_v3_small's squeeze-excitation pools to ReduceMean with the dims kept, imported as
#: adaptive_avgpool2d to 1×1; hardswish and hardsigmoid to ONNX's ops; gpt_decoder's position
#: embedding and vit_b16's class token are constants read as data, imported as parameter layers,
#: gpt_decoder's causal mask a Where, vit_b16's broadcast concat an Expand and a Concat).
#: A spec added later and not listed is checked to import or to name what it lacks.
ROUND_TRIP = ("alexnet", "conv1d_sequence", "digits_cnn", "dilated_stack", "efficientnet_b0", "googlenet", "gpt_decoder", "gru_classifier",
              "inception_module", "keras_mnist_mlp", "lenet5", "lstm_classifier", "mlp_digits", "mobilenet", "mobilenet_v2",
              "mobilenet_v3_small", "resnet18", "resnet20_cifar", "resnet50", "squeezenet1_1", "transformer_encoder", "unet_small", "vgg16",
              "vit_b16")


@pytest.mark.parametrize("spec", [pytest.param(s, id=s.stem, marks=[pytest.mark.slow] if s.stem in SLOW else []) for s in SPECS])
def test_import_of_export_compiles_to_the_same_report(spec):
    graph, model = exported(spec)
    if spec.stem not in ROUND_TRIP:  # a spec added later: it imports, or names the nodes graphc cannot take
        imported = import_model(model, f"{spec.stem}.onnx", strict=False)
        if imported.unsupported:
            assert imported.spec is None and all(u.message(spec.name).startswith(f"{spec.name}: node '") for u in imported.unsupported)
        else:
            imported.graph()
        return
    imported = import_model(model, f"{spec.stem}.onnx")
    again = imported.graph()
    before, after = compile_report(graph, expand=True), compile_report(again, expand=True)
    assert _summary(after) == _summary(before)
    assert all(i in before["inputs"] for i in after["inputs"])  # the labels and targets of the loss are not in a forward export
    same_named = {k: v for k, v in _layers(after).items() if k in _layers(before)}
    assert same_named and all(_layers(before)[k] == v for k, v in same_named.items())
    # and the imported parameters are the exported ones: the same outputs on the interpreter
    feeds = random_feeds(model)
    theirs = ort_outputs(model, feeds)
    ours = graphc.run_forward(again, {imported.inputs[k]: v for k, v in feeds.items()}, initial_params(again))
    for name, key in imported.outputs.items():
        close(ours[key], theirs[name])
    # and export(import(export(spec))) computes the first export's outputs on onnxruntime
    twice = reexported(imported, feeds)
    assert twice.keys() == theirs.keys()
    for name in theirs:
        close(twice[name], theirs[name])


def test_import_names_layers_after_the_nodes_and_folds_idioms(tmp_path):
    _, model = exported(ROOT / "specs" / "lenet5.yaml")
    imported = import_model(model, "lenet5.onnx")
    layers = imported.spec["layers"]
    assert [l["name"] for l in layers] == ["conv1", "tanh1", "pool1", "conv2", "tanh2", "pool2", "flatten", "fc1", "tanh3", "fc2",
                                           "tanh4", "fc3"]
    assert layers[0] == {"name": "conv1", "op": "conv2d", "filters": 6, "kernel": 5, "padding": 2}
    assert layers[7] == {"name": "fc1", "op": "dense", "units": 120}  # MatMul + Add
    assert imported.spec["outputs"] == {"logits": "fc3"}
    assert sorted(imported.params) == sorted(initial_params(graphc.compile_spec(ROOT / "specs" / "lenet5.yaml")))


# ── hand-built models: the idioms other exporters write ──────────────────────────────────────────

def _model(nodes, inputs, outputs, inits, opset=17, name="hand"):
    g = helper.make_graph(nodes, name, inputs, outputs, [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=8, producer_name="hand")


def _vi(name, shape, dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, shape)


def pytorch_like_cnn():
    """Conv (bias as Add), BatchNormalization, Clip(0, 6), PyTorch's flatten through Shape → Gather →
    Unsqueeze → Concat → Reshape, Gemm with transB, and the exact GELU of Erf, Div, Add and Muls."""
    rng = np.random.default_rng(0)
    f32 = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    inits = {"conv.w": f32(4, 3, 3, 3), "conv.b": f32(1, 4, 1, 1), "bn.s": f32(4) + 2, "bn.b": f32(4), "bn.m": f32(4),
             "bn.v": np.abs(f32(4)) + 0.5, "zero": np.float32(0), "six": np.float32(6), "idx": np.int64(0),
             "minus1": np.array([-1], np.int64), "fc.w": f32(5, 4 * 6 * 6), "fc.b": f32(5), "sqrt2": np.float32(np.sqrt(2)),
             "one": np.float32(1), "half": np.float32(0.5), "axes0": np.array([0], np.int64)}
    nodes = [
        helper.make_node("Conv", ["x", "conv.w"], ["c"], name="/features/conv/Conv", pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c", "conv.b"], ["cb"], name="/features/conv/Add"),
        helper.make_node("BatchNormalization", ["cb", "bn.s", "bn.b", "bn.m", "bn.v"], ["bn"], name="/features/bn/BatchNormalization"),
        helper.make_node("Clip", ["bn", "zero", "six"], ["r6"], name="/features/act/Clip"),
        helper.make_node("Shape", ["r6"], ["shape"], name="/Shape"),
        helper.make_node("Gather", ["shape", "idx"], ["n"], name="/Gather", axis=0),
        helper.make_node("Unsqueeze", ["n", "axes0"], ["n1"], name="/Unsqueeze"),
        helper.make_node("Concat", ["n1", "minus1"], ["target"], name="/Concat", axis=0),
        helper.make_node("Reshape", ["r6", "target"], ["flat"], name="/Reshape"),
        helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], ["fc"], name="/classifier/fc/Gemm", transB=1),
        helper.make_node("Div", ["fc", "sqrt2"], ["d"], name="/act/Div"),
        helper.make_node("Erf", ["d"], ["e"], name="/act/Erf"),
        helper.make_node("Add", ["e", "one"], ["e1"], name="/act/Add"),
        helper.make_node("Mul", ["fc", "e1"], ["m"], name="/act/Mul"),
        helper.make_node("Mul", ["m", "half"], ["y"], name="/act/Mul_1"),
    ]
    return _model(nodes, [_vi("x", ["batch", 3, 6, 6])], [_vi("y", ["batch", 5])], inits)


def test_pytorch_idioms_become_single_layers():
    model = pytorch_like_cnn()
    imported = import_model(model, "cnn.onnx")
    assert [(l["name"], l["op"]) for l in imported.spec["layers"]] == [
        ("features_conv", "conv2d"), ("features_bn", "batchnorm"), ("features_act", "relu6"), ("Reshape", "flatten"),
        ("classifier_fc", "dense"), ("act", "gelu")]
    assert imported.spec["inputs"] == {"x": {"shape": ["batch", 3, 6, 6]}}
    assert set(imported.params) >= {"features_conv.bias", "features_bn.running_mean", "features_bn.running_var", "classifier_fc.weight"}
    assert imported.params["classifier_fc.weight"].shape == (144, 5)  # Gemm's transB: graphc's (in, out)
    feeds = random_feeds(model, batch=3)
    graph = imported.graph()
    ours = graphc.run_forward(graph, {"x": feeds["x"]}, initial_params(graph))
    close(ours["y"], ort_outputs(model, feeds)["y"])
    # and the exported import computes the same on onnxruntime
    close(reexported(imported, feeds)["y"], ort_outputs(model, feeds)["y"])


def test_decomposed_layer_norm_becomes_layernorm():
    rng = np.random.default_rng(1)
    inits = {"axes": np.array([-1], np.int64), "two": np.float32(2), "eps": np.float32(1e-6),
             "g": rng.standard_normal(8).astype(np.float32), "b": rng.standard_normal(8).astype(np.float32)}
    nodes = [helper.make_node("ReduceMean", ["x", "axes"], ["mu"], name="/ln/ReduceMean"),
             helper.make_node("Sub", ["x", "mu"], ["d"], name="/ln/Sub"),
             helper.make_node("Pow", ["d", "two"], ["sq"], name="/ln/Pow"),
             helper.make_node("ReduceMean", ["sq", "axes"], ["var"], name="/ln/ReduceMean_1"),
             helper.make_node("Add", ["var", "eps"], ["ve"], name="/ln/Add"),
             helper.make_node("Sqrt", ["ve"], ["sd"], name="/ln/Sqrt"),
             helper.make_node("Div", ["d", "sd"], ["xh"], name="/ln/Div"),
             helper.make_node("Mul", ["xh", "g"], ["gx"], name="/ln/Mul"),
             helper.make_node("Add", ["gx", "b"], ["y"], name="/ln/Add_1")]
    model = _model(nodes, [_vi("x", ["N", 4, 8])], [_vi("y", ["N", 4, 8])], inits, opset=18)
    imported = import_model(model, "ln.onnx")
    assert imported.spec["layers"] == [{"name": "ln", "op": "layernorm", "eps": 1e-6}]
    feeds = random_feeds(model)
    graph = imported.graph()
    theirs = ort_outputs(model, feeds)["y"]
    close(graphc.run_forward(graph, feeds, initial_params(graph))["y"], theirs)
    close(reexported(imported, feeds)["y"], theirs)  # export(import(model)) on onnxruntime


def layer_values(model, imported, feeds) -> tuple[dict, dict]:
    """(onnxruntime's, the interpreter's) value of every ONNX value a layer of the import computes."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    outputs = {o.name for o in model.graph.output}
    probe.graph.output.extend(helper.make_empty_tensor_value_info(v) for v in imported.values if v not in outputs)
    theirs = ort_outputs(probe, feeds)
    graph = imported.graph()
    every = graph.copy()
    every.graph["outputs"] = {name: name for name in set(imported.values.values())}
    ours = graphc.run_forward(every, {imported.inputs[k]: v for k, v in feeds.items()}, initial_params(graph))
    return theirs, {v: ours[name] for v, name in imported.values.items()}


LIGHT_SLOW = {"light_vgg19", "light_densenet121", "light_inception_v2", "light_resnet50", "light_bvlc_alexnet", "light_zfnet512"}


def _hand(op, inputs, attrs, x_shape, y_shape, inits=None, opset=21, x_dtype=TensorProto.FLOAT):
    if op == "Where":  # Where(future, fill, x): the condition and fill come first
        inputs, inits = ["future", "fill"], {"future": np.triu(np.ones(x_shape[-2:], bool), k=1), "fill": np.array(-1e9, np.float32)}
        return _model([helper.make_node(op, [*inputs, "x"], ["y"], name=f"/m/{op}")], [_vi("x", x_shape, x_dtype)],
                      [_vi("y", y_shape)], inits, opset=opset)
    return _model([helper.make_node(op, ["x", *inputs], ["y"], name=f"/m/{op}", **attrs)], [_vi("x", x_shape, x_dtype)],
                  [_vi("y", y_shape)], inits or {}, opset=opset)


_rng = np.random.default_rng(2)
HAND = {
    "embedding": (_model([helper.make_node("Gather", ["table", "x"], ["y"], name="/emb/Gather")], [_vi("x", ["N", 5], TensorProto.INT64)],
                         [_vi("y", ["N", 5, 4])], {"table": _rng.standard_normal((7, 4)).astype(np.float32)}), "embedding"),
    "reduce_mean": (_hand("ReduceMean", ["axes"], {"keepdims": 0}, ["N", 3, 4], ["N", 3], {"axes": np.array([-1], np.int64)}), "reduce_mean"),
    # PyTorch's exports: nn.Hardswish (opset 14), nn.Hardsigmoid (α = 1/6), nn.AdaptiveAvgPool2d(1)
    # and nn.AdaptiveMaxPool2d(1) (GlobalAveragePool, GlobalMaxPool), x.mean((2, 3), keepdim=True)
    "hardswish": (_hand("HardSwish", [], {}, ["N", 3, 4], ["N", 3, 4], opset=14), "hardswish"),
    "hardsigmoid": (_hand("HardSigmoid", [], {"alpha": 1 / 6}, ["N", 3, 4], ["N", 3, 4]), "hardsigmoid"),
    "global_avgpool_kept": (_hand("GlobalAveragePool", [], {}, ["N", 3, 4, 5], ["N", 3, 1, 1]), "adaptive_avgpool2d"),
    "global_maxpool_kept": (_hand("GlobalMaxPool", [], {}, ["N", 3, 4, 5], ["N", 3, 1, 1]), "adaptive_maxpool2d"),
    "reduce_mean_hw_kept": (_hand("ReduceMean", ["axes"], {}, ["N", 3, 4, 5], ["N", 3, 1, 1], {"axes": np.array([2, 3], np.int64)}),
                            "adaptive_avgpool2d"),
    "reduce_mean_hw": (_hand("ReduceMean", ["axes"], {"keepdims": 0}, ["N", 3, 4, 5], ["N", 3], {"axes": np.array([-2, -1], np.int64)}),
                       "global_avgpool"),
    "reduce_sum_kept": (_hand("ReduceSum", ["axes"], {}, ["N", 3, 4], ["N", 1, 4], {"axes": np.array([1], np.int64)}), "reduce_sum"),
    # a float constant read as data: GPT-2's learned position embedding, added
    "position_embedding": (_hand("Add", ["pos"], {}, ["N", 5, 4], ["N", 5, 4], {"pos": _rng.standard_normal((1, 5, 4)).astype(np.float32)}),
                           ["parameter", "add"]),
    # graphc's causal mask, Where([j > i], fill, scores), and PyTorch's masked_fill(tril == 0, -inf)
    # before the softmax, Where([j ≤ i], scores, -inf)
    "causal_mask": (_hand("Where", [], {}, ["N", 2, 4, 4], ["N", 2, 4, 4]), "causal_mask"),
    "masked_fill": (_model([helper.make_node("Where", ["keep", "x", "minus_inf"], ["s"], name="/attn/Where"),
                            helper.make_node("Softmax", ["s"], ["y"], name="/attn/Softmax", axis=-1)],
                           [_vi("x", ["N", 2, 4, 4])], [_vi("y", ["N", 2, 4, 4])],
                           {"keep": np.tril(np.ones((4, 4), bool)), "minus_inf": np.array(-np.inf, np.float32)}), ["causal_mask", "softmax"]),
    # torchvision's ViT: cat([class_token.expand(N, -1, -1), x], 1) with the batch read by Shape
    "class_token": (_model([helper.make_node("Shape", ["x"], ["shape"], name="/Shape"),
                            helper.make_node("Gather", ["shape", "zero"], ["n"], name="/Gather", axis=0),
                            helper.make_node("Unsqueeze", ["n", "axes0"], ["n1"], name="/Unsqueeze"),
                            helper.make_node("Concat", ["n1", "one_d"], ["target"], name="/Concat", axis=0),
                            helper.make_node("Expand", ["class_token", "target"], ["expanded"], name="/Expand"),
                            helper.make_node("Concat", ["expanded", "x"], ["y"], name="/Concat_1", axis=1)],
                           [_vi("x", ["N", 5, 4])], [_vi("y", ["N", 6, 4])],
                           {"zero": np.array(0, np.int64), "axes0": np.array([0], np.int64), "one_d": np.array([1, 4], np.int64),
                            "class_token": _rng.standard_normal((1, 1, 4)).astype(np.float32)}), ["parameter", "concat"]),
    # PyTorch's own export of class_token.expand(x.shape[0], -1, -1): the sizes reshaped to 1-D, each −1
    # replaced by 1 through ConstantOfShape, Mul, Equal and Where, then Expand
    "class_token_torch": (_model([helper.make_node("Shape", ["x"], ["shape"], name="/Shape"),
                                  helper.make_node("Gather", ["shape", "zero"], ["n"], name="/Gather", axis=0),
                                  helper.make_node("Unsqueeze", ["n", "axes0"], ["n1"], name="/Unsqueeze"),
                                  helper.make_node("Concat", ["n1", "minus1s"], ["sizes"], name="/Concat", axis=0),
                                  helper.make_node("Reshape", ["sizes", "flat"], ["sizes1"], name="/Reshape"),
                                  helper.make_node("Shape", ["sizes1"], ["count"], name="/Shape_1"),
                                  helper.make_node("ConstantOfShape", ["count"], ["ones"], name="/ConstantOfShape",
                                                   value=numpy_helper.from_array(np.array([1], np.int64))),
                                  helper.make_node("Mul", ["ones", "minus1"], ["neg"], name="/Mul"),
                                  helper.make_node("Equal", ["sizes1", "neg"], ["is_neg"], name="/Equal"),
                                  helper.make_node("Where", ["is_neg", "ones", "sizes1"], ["target"], name="/Where"),
                                  helper.make_node("Expand", ["cls", "target"], ["expanded"], name="/Expand"),
                                  helper.make_node("Concat", ["expanded", "x"], ["y"], name="/Concat_1", axis=1)],
                                 [_vi("x", ["N", 5, 4])], [_vi("y", ["N", 6, 4])],
                                 {"zero": np.array(0, np.int64), "axes0": np.array([0], np.int64), "minus1s": np.array([-1, -1], np.int64),
                                  "flat": np.array([-1], np.int64), "minus1": np.array(-1, np.int64),
                                  "cls": _rng.standard_normal((1, 1, 4)).astype(np.float32)}, opset=17), ["parameter", "concat"]),
    # their decompositions: PyTorch's before opset 14, x·HardSigmoid(x; 1/6, ½); TensorFlow's x·relu6(x + 3)/6;
    # the line α·x + β clipped to [0, 1]
    "hardswish_opset13": (_model([helper.make_node("HardSigmoid", ["x"], ["h"], name="/act/HardSigmoid", alpha=1 / 6),
                                  helper.make_node("Mul", ["x", "h"], ["y"], name="/act/Mul")],
                                 [_vi("x", ["N", 3, 4])], [_vi("y", ["N", 3, 4])], {}, opset=13), "hardswish"),
    "hardswish_relu6": (_model([helper.make_node("Add", ["x", "three"], ["a"], name="/act/add"),
                                helper.make_node("Clip", ["a", "zero", "six"], ["c"], name="/act/Relu6"),
                                helper.make_node("Mul", ["c", "x"], ["m"], name="/act/mul"),
                                helper.make_node("Div", ["m", "six"], ["y"], name="/act/truediv")],
                               [_vi("x", ["N", 3, 4])], [_vi("y", ["N", 3, 4])],
                               {"three": np.float32(3), "zero": np.float32(0), "six": np.float32(6)}), "hardswish"),
    "hardsigmoid_clip": (_model([helper.make_node("Mul", ["x", "alpha"], ["m"], name="/act/Mul"),
                                 helper.make_node("Add", ["m", "beta"], ["a"], name="/act/Add"),
                                 helper.make_node("Clip", ["a", "zero", "one"], ["y"], name="/act/Clip")],
                                [_vi("x", ["N", 3, 4])], [_vi("y", ["N", 3, 4])],
                                {"alpha": np.float32(0.25), "beta": np.float32(0.4), "zero": np.float32(0), "one": np.float32(1)}), "hardsigmoid"),
    "groupnorm": (_hand("GroupNormalization", ["s", "b"], {"num_groups": 2, "epsilon": 1e-3}, ["N", 4, 3, 3], ["N", 4, 3, 3],
                        {"s": _rng.standard_normal(4).astype(np.float32), "b": _rng.standard_normal(4).astype(np.float32)}), "groupnorm"),
    "resize": (_hand("Resize", ["", "scales"], {"mode": "nearest"}, ["N", 2, 3, 3], ["N", 2, 6, 6],
                     {"scales": np.array([1, 1, 2, 2], np.float32)}), "upsample"),
    "resize_linear": (_hand("Resize", ["", "scales"], {"mode": "linear"}, ["N", 2, 3, 3], ["N", 2, 6, 6],
                            {"scales": np.array([1, 1, 2, 2], np.float32)}), "upsample"),
}


@pytest.mark.parametrize("case", sorted(HAND))
def test_hand_built_ops_import_and_agree_with_onnxruntime(case):
    model, kind = HAND[case]
    imported = import_model(model, f"{case}.onnx")
    assert [l["op"] for l in imported.spec["layers"]] == ([kind] if isinstance(kind, str) else kind)
    rng = np.random.default_rng(0)
    x = model.graph.input[0]
    shape = [d.dim_value or 2 for d in x.type.tensor_type.shape.dim]
    feeds = {"x": rng.integers(0, 7, shape) if x.type.tensor_type.elem_type == TensorProto.INT64 else rng.standard_normal(shape).astype(np.float32)}
    graph = imported.graph()
    theirs = ort_outputs(model, feeds)["y"]
    close(graphc.run_forward(graph, feeds, initial_params(graph))["y"], theirs)
    close(reexported(imported, feeds)["y"], theirs)  # export(import(model)) on onnxruntime


def test_constants_read_as_data_become_parameter_layers_and_masks_and_broadcasts_keep_their_form():
    imported = import_model(HAND["class_token"][0], "vit.onnx")
    assert imported.spec["layers"] == [{"name": "class_token", "op": "parameter", "shape": [1, 1, 4]},
                                       {"name": "Concat_1", "op": "concat", "broadcast": True, "inputs": ["class_token", "x"]}]
    assert np.array_equal(imported.params["class_token.value"], numpy_helper.to_array(HAND["class_token"][0].graph.initializer[-1]))
    masked = import_model(HAND["masked_fill"][0], "attn.onnx").spec["layers"][0]
    assert masked["op"] == "causal_mask" and np.float32(masked["fill"]) == np.finfo(np.float32).min  # −∞ as the lowest float32
    assert import_model(HAND["causal_mask"][0], "m.onnx").spec["layers"][0] == {"name": "m", "op": "causal_mask"}  # graphc's −1e9


def test_graphcs_float64_lowerings_of_hardswish_and_hardsigmoid_import_as_the_layers():
    from helpers import compile_text

    graph = compile_text("""
        inputs: {x: {shape: [N, 6], dtype: float64}}
        layers:
          - {name: hs, op: hardswish}
          - {name: hsig, op: hardsigmoid, alpha: 0.25}
    """)
    model = forward_model(graph, {})
    assert {"HardSwish", "HardSigmoid"}.isdisjoint(n.op_type for n in model.graph.node)  # no float64 kernels on onnxruntime's CPU
    imported = import_model(model, "act.onnx")
    assert [(l["op"], l.get("alpha")) for l in imported.spec["layers"]] == [("hardswish", None), ("hardsigmoid", 0.25)]
    x = np.linspace(-5, 5, 12).reshape(2, 6)
    again = imported.graph()
    y = model.graph.output[0].name
    theirs = ort_outputs(model, {"x": x})[y]
    close(graphc.run_forward(again, {"x": x}, {})[imported.outputs[y]], theirs)
    close(reexported(imported, {"x": x})[y], theirs)  # re-exported: float64 still lowered without the two ops


def test_other_wheres_and_expands_are_refused_with_the_reason():
    anti = _hand("Where", [], {}, ["N", 4, 4], ["N", 4, 4])
    anti.graph.initializer[0].CopyFrom(numpy_helper.from_array(np.tril(np.ones((4, 4), bool), k=-1), "future"))  # [j < i]: not causal
    lone = _hand("Expand", ["shape"], {}, ["N", 1, 4], ["N", 3, 4], {"shape": np.array([1, 3, 4], np.int64)})
    for model, reason in ((anti, "a where other than the causal mask"), (lone, "an Expand other than of a Concat's input")):
        problems = import_model(model, "m.onnx", strict=False).unsupported
        assert len(problems) == 1 and reason in problems[0].message("m.onnx")


@pytest.mark.parametrize("path", [pytest.param(p, id=p.stem, marks=[pytest.mark.slow] if p.stem in LIGHT_SLOW else [])
                                  for p in sorted(LIGHT.glob("light_*.onnx"))])
def test_model_zoo_networks(path):
    """The onnx package's light model-zoo networks (weights from ConstantOfShape, folded): imported,
    compiled with the file's shapes; every value a layer computes equals onnxruntime's, on the
    interpreter and in the re-exported model. Their constant weights make logits of 10⁵–10⁷, whose
    softmax amplifies float32 rounding beyond any tolerance: a softmax is compared by its input."""
    model = onnx.load(path)
    imported = import_model(model, path.name)
    graph = imported.graph()
    for o in model.graph.output:
        shape = [d.dim_value for d in o.type.tensor_type.shape.dim]
        assert list(graph.nodes[graph.graph["outputs"][imported.outputs[o.name]]]["type"].shape) == shape
    feeds = random_feeds(model)
    theirs, ours = layer_values(model, imported, feeds)
    softmaxes = [n for n in model.graph.node if n.op_type == "Softmax"]
    softmaxed = {n.output[0] for n in softmaxes}
    assert all(n.input[0] in ours for n in softmaxes)  # each softmax's input is a layer's value, compared below
    compared = [v for v in ours if v not in softmaxed]
    for value in compared:
        close(ours[value], theirs[value])
    # export(import(model)) on onnxruntime: the same values, read as extra outputs of the re-exported model
    again = reexported(imported, feeds, values=compared)
    for value in compared:
        close(again[value], theirs[value])
    for name in imported.outputs:
        assert again[name].shape == theirs[name].shape
        if name not in softmaxed:
            close(again[name], theirs[name])


# ── the command line ──────────────────────────────────────────────────────────────────────────────

@pytest.fixture(scope="module")
def lenet_onnx(tmp_path_factory):
    path = tmp_path_factory.mktemp("lenet") / "lenet.onnx"
    assert graphc_cli("export", ROOT / "specs" / "lenet5.yaml", "-o", path).returncode == 0
    return path


def test_import_command_writes_spec_and_params(tmp_path, lenet_onnx):
    out = tmp_path / "lenet.yaml"
    r = graphc_cli("import", lenet_onnx, "-o", out)
    assert r.returncode == 0, r.stderr
    assert "61,706 parameters" in r.stderr
    text = out.read_text()
    assert "params: lenet.npz" in text and "- {name: conv1, op: conv2d, filters: 6, kernel: 5, padding: 2}" in text
    with np.load(tmp_path / "lenet.npz") as z:
        assert z["conv1.weight"].shape == (6, 1, 5, 5)
    # the written spec and the ONNX file compile to the same report
    a = json.loads(graphc_cli("compile", out, "--json").stdout)
    b = json.loads(graphc_cli("compile", lenet_onnx, "--json").stdout)
    spec = json.loads(graphc_cli("compile", ROOT / "specs" / "lenet5.yaml", "--json").stdout)
    for report in (a, b):
        assert _summary(report) == _summary(spec) and _layers(report) == _layers(spec)
    # the spec runs with the model's parameters: its outputs are the ONNX file's on onnxruntime
    np.savez(tmp_path / "in.npz", image=np.random.default_rng(0).standard_normal((3, 1, 28, 28)).astype(np.float32))
    for source, extra in ((out, ()), (lenet_onnx, ("--backend", "numpy")), (lenet_onnx, ())):
        r = graphc_cli("run", source, "--inputs", tmp_path / "in.npz", "--out", tmp_path / "o.npz", *extra)
        assert r.returncode == 0, r.stderr
        with np.load(tmp_path / "o.npz") as z:
            got = z["logits"]
        if source == out:
            first = got
        close(got, first)


def test_compile_of_an_onnx_file_prints_the_report_with_receptive_fields(lenet_onnx):
    r = graphc_cli("compile", lenet_onnx)
    assert r.returncode == 0, r.stderr
    assert "RF size / stride / pad" in r.stdout and "16 / 4 / 2" in r.stdout and "61,706 total" in r.stdout


def test_check_grad_and_viz_take_an_onnx_file(tmp_path):
    path = tmp_path / "mlp.onnx"
    assert graphc_cli("export", ROOT / "specs" / "mlp_digits.yaml", "-o", path).returncode == 0
    r = graphc_cli("check-grad", path)  # taken as a spec: one without a loss
    assert r.returncode == 65 and "the spec has no loss, so there is nothing to differentiate" in r.stderr, r.stderr
    r = graphc_cli("viz", path, "-o", tmp_path / "mlp.dot")
    assert r.returncode == 0, r.stderr
    assert "fc1" in (tmp_path / "mlp.dot").read_text()


# ── what graphc cannot take ───────────────────────────────────────────────────────────────────────

def test_unsupported_nodes_are_reported_all_at_once(tmp_path):
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="/layer0/Relu"),
             helper.make_node("Frobnicate", ["a"], ["b"], name="/layer1/Foo"),
             helper.make_node("Frobnicate", ["b"], ["c"], name="/layer2/Foo"),
             helper.make_node("Conv", ["x", "w"], ["d"], name="/conv", auto_pad="SAME_LOWER"),
             helper.make_node("Add", ["c", "d"], ["y"], name="/add")]
    model = _model(nodes, [_vi("x", ["N", 2, 5, 5])], [_vi("y", ["N", 2, 5, 5])], {"w": np.ones((2, 2, 3, 3), np.float32)})
    path = tmp_path / "resnet.onnx"
    path.write_bytes(model.SerializeToString())
    r = graphc_cli("import", path, "-o", tmp_path / "out.yaml")
    assert r.returncode == 65, r.stderr
    lines = r.stderr.strip().splitlines()
    assert f"{path}: node '/layer1/Foo' (Frobnicate, opset 17) is not supported by graphc" in lines[0]
    assert f"{path}: node '/layer2/Foo' (Frobnicate, opset 17) is not supported by graphc" in lines[1]
    assert "node '/conv' (Conv, opset 17) is not supported by graphc: auto_pad SAME_LOWER" in lines[2]
    assert "3 node(s) not supported by graphc (2 Frobnicate, 1 Conv)" in lines[3] and len(lines) == 4
    assert "Traceback" not in r.stderr and not list(tmp_path.glob("out*"))
    assert graphc_cli("compile", path).returncode == 65


def _write(tmp_path, name, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_broken_files_get_clear_errors(tmp_path, lenet_onnx):
    raw = lenet_onnx.read_bytes()
    cases = {
        _write(tmp_path, "garbage.onnx", b"\xff\xfe this is not a protobuf \x00\x01" * 10): "is not a valid ONNX model",
        _write(tmp_path, "truncated.onnx", raw[: len(raw) // 2]): "is not a valid ONNX model: the protobuf does not parse",
        _write(tmp_path, "empty.onnx", b""): "is not a valid ONNX model: the file is empty",
    }
    newer = onnx.load(lenet_onnx)
    newer.opset_import[0].version = 99
    cases[_write(tmp_path, "newer.onnx", newer.SerializeToString())] = "opset 99 is newer than graphc knows (opsets 7 to 23)"
    for i, (path, message) in enumerate(cases.items()):
        r = graphc_cli(*(("import", path, "-o", tmp_path / "o.yaml") if i % 2 else ("compile", path)))
        assert r.returncode == 65 and message in r.stderr and "Traceback" not in r.stderr, (path, r.stderr)
    assert not (tmp_path / "o.yaml").exists()
    r = graphc_cli("import", tmp_path / "missing.onnx", "-o", tmp_path / "o.yaml")
    assert r.returncode == 66 and "no such file" in r.stderr


def test_external_data_must_stay_in_the_models_directory(tmp_path):
    from onnx.external_data_helper import convert_model_to_external_data

    (tmp_path / "inside").mkdir()
    (tmp_path / "secret.bin").write_bytes(b"\0" * (6 * 1 * 5 * 5 * 4))
    for location, message in (("../secret.bin", "outside the model's directory"), (str(tmp_path / "secret.bin"), "outside the model's directory"),
                              ("weights.bin", "no such file")):
        _, model = exported(ROOT / "specs" / "lenet5.yaml")
        convert_model_to_external_data(model, all_tensors_to_one_file=True, location="weights.bin", size_threshold=0)
        for t in model.graph.initializer:
            for e in t.external_data:
                if e.key == "location":
                    e.value = location
        path = tmp_path / "inside" / "model.onnx"
        path.write_bytes(model.SerializeToString())
        r = graphc_cli("compile", path)
        assert r.returncode in (65, 66) and message in r.stderr and "Traceback" not in r.stderr, (location, r.stderr)
    # inside the directory it loads
    _, model = exported(ROOT / "specs" / "lenet5.yaml")
    onnx.save_model(model, tmp_path / "inside" / "good.onnx", save_as_external_data=True, location="good.onnx.data", size_threshold=0)
    r = graphc_cli("compile", tmp_path / "inside" / "good.onnx")
    assert r.returncode == 0 and "61,706 total" in r.stdout, r.stderr


def test_import_in_python_lists_unsupported_nodes_without_raising():
    model = _model([helper.make_node("Frobnicate", ["x"], ["y"], name="f")], [_vi("x", [1])], [_vi("y", [1])], {})
    imported = import_model(model, "m.onnx", strict=False)
    assert imported.spec is None and [(u.node, u.op_type, u.opset) for u in imported.unsupported] == [("f", "Frobnicate", 17)]
    with pytest.raises(GraphcError):
        import_model(model, "m.onnx")


# ── training an imported model ────────────────────────────────────────────────────────────────────

def test_training_an_imported_model_starts_from_its_parameters(tmp_path):
    from graphc.train.loop import starting_params
    from graphc.train.training_spec import load_for_training

    model_path = tmp_path / "mlp.onnx"
    assert graphc_cli("export", ROOT / "specs" / "mlp_digits.yaml", "-o", model_path, "--seed", "3").returncode == 0
    out = tmp_path / "mlp.yaml"
    assert graphc_cli("import", model_path, "-o", out).returncode == 0
    with np.load(tmp_path / "mlp.npz") as z:
        imported = dict(z)
    sets = ["inputs.label={shape: [N], dtype: int64}", "loss.op=softmax_cross_entropy", "loss.inputs=[fc2, label]", "train.epochs=2"]
    graph, t, _, _ = load_for_training(out, sets)
    start = starting_params(graph, t)
    assert start.keys() == imported.keys() and all(np.array_equal(start[k], v) for k, v in imported.items())
    r = graphc_cli("train", out, *[a for s in sets for a in ("--set", s)], "--out", tmp_path / "run", "--backend", "onnxruntime")
    assert r.returncode == 0, r.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["test_accuracy"] > 0.5  # the digits, from the imported (random-seed 3) parameters, two epochs
    # the training step exported from the imported spec (a loss added by hand) runs on onnxruntime from them
    text = out.read_text().replace("\nparams:", "\n  label: {shape: [N], dtype: int64}\nparams:", 1)
    (tmp_path / "mlp_loss.yaml").write_text(text + "loss: {op: softmax_cross_entropy, inputs: [fc2, label]}\n")
    step = tmp_path / "step.onnx"
    r = graphc_cli("export", tmp_path / "mlp_loss.yaml", "-o", step, "--training", "--optimizer", "sgd")
    assert r.returncode == 0, r.stderr
    trained = onnx.load(step)
    defaults = {t.name: numpy_helper.to_array(t) for t in trained.graph.initializer}
    assert all(np.array_equal(defaults[k], v) for k, v in imported.items())
    rng = np.random.default_rng(0)
    result = ort_outputs(trained, {"x": rng.standard_normal((8, 64)).astype(np.float32), "label": np.arange(8) % 10,
                                   "lr": np.array(0.1, np.float32), **imported})
    assert np.isfinite(result["loss"]) and not np.array_equal(result["new/fc1.weight"], imported["fc1.weight"])
