"""Shared test helpers: compile a spec written inline."""

from __future__ import annotations

import textwrap

import graphc
from graphc.report import compile_report


def compile_text(text: str, name: str = "inline.yaml"):
    return graphc.compile_spec(name, textwrap.dedent(text))


def report_of(text: str, expand: bool = False) -> dict:
    return compile_report(compile_text(text), expand=expand)


def layer(report: dict, name: str) -> dict:
    found = [row for row in report["layers"] if row["name"] == name]
    assert found, f"no layer {name} in {[r['name'] for r in report['layers']]}"
    return found[0]


#: The example specs too large to run, differentiate and gradient-check at their declared size in
#: the suite: the same spec with these ``--set`` overrides (a smaller image or a shallower, narrower
#: instance of the same blocks). test_zoo.py checks their published figures at the declared size.
#: Their last feature maps stay at least 2×2: batchnorm over a batch of one 1×1 map has no variance,
#: and ResNet-50's 2×2 maps at 64×64 leave its gradient too ill-conditioned for the 1e-6 check.
REDUCED = {
    "resnet50": ["inputs.image.shape=[N, 3, 128, 128]"] + [f"layers.layer{i}.args.more=1" for i in range(1, 5)],
    "googlenet": ["inputs.image.shape=[N, 3, 96, 96]"],
    "squeezenet1_1": ["inputs.image.shape=[N, 3, 64, 64]"],
    # 96×96 leaves 2×2 features, which the adaptive pool spreads over 6×6 (windows that do not divide)
    "alexnet": ["inputs.image.shape=[N, 3, 96, 96]", "layers.fc1.units=256", "layers.fc2.units=256"],
    # one block fewer in each repeated stage: every kind of block (with and without expansion,
    # squeeze-excite and shortcut) is still there
    "mobilenet_v2": ["inputs.image.shape=[N, 3, 64, 64]"] + [f"layers.stage{i}.args.more=1" for i in range(3, 7)],
    "mobilenet_v3_small": ["inputs.image.shape=[N, 3, 64, 64]", "layers.bneck5_6.repeat=1", "layers.bneck10_11.repeat=1"],
    "efficientnet_b0": ["inputs.image.shape=[N, 3, 64, 64]"] + [f"layers.stage{i}.args.more=1" for i in range(4, 7)],
    # the same blocks 2 deep and 64 wide (4 heads, MLP 256) on 32×32: 2×2 patches of 16, 5 tokens with the class token
    "vit_b16": ["inputs.image.shape=[N, 3, 32, 32]", "layers.conv_proj.filters=64", "layers.class_token.shape=[1, 1, 64]",
                "layers.pos_embedding.shape=[1, 5, 64]", "layers.encoder.repeat=2", "blocks.encoder_block.args.hidden_dim=64",
                "blocks.encoder_block.args.mlp_dim=256", "blocks.encoder_block.args.heads=4", "layers.head.units=10"],
}

#: The batch check-grad uses for these reduced specs (1 for the others). Their last maps are 2×2 at
#: 64×64: batchnorm over one such map (4 values) gives the loss third derivatives that put central
#: differences 1e-5 off (MobileNetV3-Small measured 1.2e-3 on its stem); two images (8 values) check
#: within 1e-7, in fewer loss evaluations than one image at 96×96 (713 against 1,669).
CHECK_BATCH = {"mobilenet_v2": 2, "mobilenet_v3_small": 2, "efficientnet_b0": 2}

#: Further overrides for check-grad only (the other suites still run these specs as ``REDUCED`` gives them).
#: VGG-16 at 224×224 costs 15 G MACs per loss evaluation and its fc6 alone holds 103 M weights; at
#: 64×64 (2×2 maps before the flatten) with 256-unit fc6/fc7 it keeps all 13 convs, 5 max pools and 3
#: dense layers, so all 32 tensors, of every kind, are still checked.
CHECK_REDUCED = {
    "vgg16": ["inputs.image.shape=[N, 3, 64, 64]", "layers.fc6.units=256", "layers.fc7.units=256"],
}


def compile_example(path, check: bool = False):
    """An example spec's forward graph, with its ``REDUCED`` overrides if it has any (and, with
    ``check``, its ``CHECK_REDUCED`` ones: the instance check-grad tests)."""
    from pathlib import Path

    from graphc.ir.build import build_graph
    from graphc.spec.load import validate_spec
    from graphc.spec.overrides import apply_set
    from graphc.spec.safe_yaml import load_yaml_file

    sets = REDUCED.get(Path(path).stem, []) + (CHECK_REDUCED.get(Path(path).stem, []) if check else [])
    if not sets:
        return graphc.compile_spec(path)
    data = load_yaml_file(str(path))
    for text in sets:
        apply_set(data, text)
    return build_graph(validate_spec(str(path), data))


def reexported(imported, feeds: dict, values=(), dtype=None) -> dict:
    """``export(import(model))`` on stock onnxruntime: the imported graph exported as ``graphc
    export`` writes it (:func:`~graphc.backends.onnx_export.forward_model`, the imported parameters
    embedded), run on ``feeds`` keyed by the ONNX model's input names. Returns the model's outputs
    by their ONNX names, and each ONNX value in ``values`` (one a layer computes, ``imported.values``)
    under its own name, read from the re-exported model as an extra output of its layer's node.
    ``dtype``: the parameters' (float32 unless given, as the command line embeds them)."""
    from graphc.backends.onnx_export import forward_model
    from graphc.backends.ort import run, session
    from graphc.ir.params import initial_params

    graph = imported.graph()
    params = initial_params(graph)
    if dtype is not None:
        params = {k: imported.params[k].astype(dtype) for k in params}
    probe = graph.copy()
    spec_outputs = dict(graph.graph["outputs"])
    extra = {f"value:{v}": imported.values[v] for v in values}  # a prefix no spec output name has
    probe.graph["outputs"] = {**spec_outputs, **extra}
    sess, _ = session(forward_model(probe, params), "cpu")
    got = run(sess, {imported.inputs[k]: v for k, v in feeds.items()})
    out = {name: got[key] for name, key in imported.outputs.items()}
    return {**out, **{v: got[f"value:{v}"] for v in values}}
