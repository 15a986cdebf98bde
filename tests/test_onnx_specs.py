"""Every example spec exports (forward and training step), passes the full checker, uses only the
default ONNX domain, and runs on onnxruntime and on onnx's ReferenceEvaluator with the interpreter's
results: three independent executions of the same step.

Tolerances (float32 everywhere: onnxruntime's CPU convolutions have no float64 kernels): forward
outputs within rtol 1e-4 and atol 1e-4·max|y|; training-step results (loss, gradients, updates)
within rtol 1e-4 and atol 5e-4·max|g| + 5e-6 of the step's largest gradient — a weight gradient sums
thousands of float32 products whose order differs between engines, deep backward passes compound it,
and a gradient that batchnorms make (nearly) zero is nothing but that rounding.

A ReLU input within float32 rounding of zero (|x| ~ 1e-7·max|x|) can fall on different sides of the
kink in two engines, which moves that unit's cotangent wholesale and, through the layers below it,
every gradient: deep ReLU nets (U-Net, VGG-16) have such units in every batch. So the training step
is compared with its ReLUs, max pools and piecewise activations (relu6, clip, hardsigmoid, hardswish)
frozen to the pieces of a float64 reference run (:func:`graphc.gradcheck.freeze_kinks`): the same
step on the same piece, every other lowering exercised; raw ReLU and max pooling are compared by the
forward test and the per-op tests.
"""

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx.reference import ReferenceEvaluator

import graphc
from helpers import compile_example
from graphc.backends.interpreter import Program
from graphc.backends.onnx_export import forward_model, training_model, training_outputs
from graphc.backends.ort import run, session
from graphc.backends.run import draw_masks
from graphc.gradcheck import KINKS, freeze_kinks, spec_values
from graphc.ir.autodiff import training_graph
from graphc.ir.passes import optimize

SPECS = sorted((Path(__file__).resolve().parent.parent / "specs").glob("*.yaml"))
ZOO = ("resnet50", "googlenet", "mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0")
SLOW = {"vgg16", "resnet18", "unet_small", "resnet20_cifar", *ZOO}
PARAMS = [pytest.param(p, marks=[pytest.mark.slow] if p.stem in SLOW else [], id=p.stem) for p in SPECS]


def values_for(graph, batch=2):
    values = {k: (v.astype(np.float32) if v.dtype.kind == "f" else v) for k, v in spec_values(graph, batch, 0).items()}
    values.update(draw_masks(graph, {"N": batch}, 0))
    return values


def close(got, want, what, atol=1e-4, floor=0.0):
    scale = float(np.max(np.abs(want))) if np.size(want) else 0.0
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=atol * scale + max(1e-6, floor), err_msg=what)


def default_domain_only(model):
    return all(n.domain in ("", "ai.onnx") for n in model.graph.node)


@pytest.mark.parametrize("path", PARAMS)
def test_forward_export_matches_interpreter(path):
    graph = compile_example(path)
    values = values_for(graph)
    params = {k: values[k] for k, a in graph.nodes(data=True) if a["role"] == "param"}
    model = forward_model(graph, params)
    onnx.checker.check_model(model, full_check=True)
    assert default_domain_only(model)
    assert model.ir_version <= 10 and model.opset_import[0].version == 21
    sess, _ = session(model, "cpu")
    got = run(sess, values)
    want = Program(graph, list(graph.graph["outputs"].values())).run(values)
    for name, node in graph.graph["outputs"].items():
        close(got[name], want[node], name)


@pytest.mark.parametrize("path", PARAMS)
def test_training_step_matches_on_three_engines(path):
    graph = compile_example(path)
    training, _ = optimize(training_graph(graph))
    batch = 1 if path.stem in ("vgg16", "resnet18", "unet_small", "resnet20_cifar") else 2  # batchnorm over one 2×2 map loses float32 digits
    values = values_for(training, batch)
    kinks = [n for n, a in training.nodes(data=True) if a["op"].kind in KINKS]
    reference = Program(training, sorted({training.nodes[n]["inputs"][0] for n in kinks})).run(
        {k: (v.astype(np.float64) if v.dtype.kind == "f" else v) for k, v in values.items()}) if kinks else {}
    training, frozen = freeze_kinks(training, kinks, reference)
    values.update({k: v.astype(np.float32) for k, v in frozen.items()})
    model = training_model(training)
    onnx.checker.check_model(model, full_check=True)
    assert default_domain_only(model)
    names = training_outputs(training)
    want = Program(training, sorted(set(names.values()))).run(values)
    requested = {"loss"} | {f"grad/{p}" for p in training.graph["grads"]} | {f"new/{p}" for p in training.graph.get("updates", {})}
    assert set(names) == requested and {o.name for o in model.graph.output} == requested  # every gradient, merged by CSE or not
    feeds = {i.name: values[i.name] for i in model.graph.input}
    sess, _ = session(model, "cpu")
    engines = {"onnxruntime": run(sess, feeds)}
    if path.stem not in ("vgg16", "resnet18", *ZOO):  # the reference evaluator's convolutions take minutes on these
        engines["reference"] = dict(zip([o.name for o in model.graph.output], ReferenceEvaluator(model).run(None, feeds)))
    # A gradient that is (nearly) zero in exact arithmetic is float32 rounding of the whole backward
    # pass, whose scale is the step's largest gradient, not its own: a batchnorm's shift feeding only
    # a conv and another batchnorm (which removes any per-channel constant: MobileNetV2's
    # project_bn.beta), or its scale where the next batchnorm removes nearly all of it (stem.bn.gamma).
    # Hence a floor of 5e-6 of that largest gradient (measured: engines differ by up to 7e-7 of it).
    floor = 5e-6 * max(float(np.max(np.abs(want[node]), initial=0.0)) for name, node in names.items() if name.startswith("grad/"))
    for engine, got in engines.items():
        assert set(got) == requested, engine
        for name, node in names.items():
            close(got[name], want[node], f"{engine}: {name}", atol=5e-4, floor=floor)


def test_shape_inference_agrees_with_graphc():
    graph = graphc.compile_spec(SPECS[0].parent / "lenet5.yaml")
    training, _ = optimize(training_graph(graph))
    model = training_model(training)
    del model.graph.value_info[:]
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    shapes = {v.name: [d.dim_value or d.dim_param for d in v.type.tensor_type.shape.dim] for v in inferred.graph.value_info}
    shapes.update({t.name: list(t.dims) for t in model.graph.initializer})  # constants (the loss seed) carry their own shape
    boundary = {v.name for v in (*model.graph.input, *model.graph.output)}
    produced = {o for n in model.graph.node for o in n.output}  # a node whose value is an output carries the output's name
    inner = [n for n in training if n in produced and n not in boundary]
    assert len(inner) >= 25 and set(inner) <= set(shapes)  # every inner value is inferred, and agrees
    for n in inner:
        assert shapes[n] == [d if isinstance(d, int) else str(d) for d in training.nodes[n]["type"].shape], n


def test_exported_names_locations_and_metadata(tmp_path):
    graph = graphc.compile_spec(SPECS[0].parent / "lenet5.yaml")
    model = forward_model(graph, None)
    names = {i.name for i in model.graph.input}
    assert {"image", "conv1.weight", "fc3.bias"} <= names
    assert [o.name for o in model.graph.output] == ["logits"]
    docs = {n.doc_string for n in model.graph.node}
    assert any(d.endswith("lenet5.yaml:9:5 (conv1)") for d in docs)
    props = {p.key: p.value for p in model.metadata_props}
    assert props["graphc_version"] == graphc.__version__ and props["spec"] == "lenet5"
    image = next(i for i in model.graph.input if i.name == "image")
    assert image.type.tensor_type.shape.dim[0].dim_param == "N"
    assert {v.name for v in model.graph.value_info} >= {"conv1", "pool1", "fc1"}


def test_sessions_take_the_optimisation_level_of_their_graph_kind():
    """Forward graphs run at ORT_ENABLE_ALL (NCHWc layouts: ResNet-20's forward about 1.8× faster),
    training steps at EXTENDED (the layout reorders cost a training step more than they save);
    measured by ``tools/bench_peers.py --ort-levels``."""
    import onnxruntime as ort

    graph = graphc.compile_spec(SPECS[0].parent / "lenet5.yaml")
    training, _ = optimize(training_graph(graph))
    levels = {}
    for kind, model in (("forward", forward_model(graph)), ("training", training_model(training))):
        sess, _ = session(model, "cpu")
        levels[kind] = sess.get_session_options().graph_optimization_level
    assert levels == {"forward": ort.GraphOptimizationLevel.ORT_ENABLE_ALL, "training": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED}
    sess, _ = session(forward_model(graph), "cpu", optimization="ORT_DISABLE_ALL")
    assert sess.get_session_options().graph_optimization_level == ort.GraphOptimizationLevel.ORT_DISABLE_ALL
