"""ONNX lowerings of the convolution, pooling and resampling ops beyond tests/test_onnx_ops.py: every
sample (and extra edge cases: grouped stride-2 transposed convs, large and asymmetric pads, ceil-mode
windows needing explicit padding, ties in max pooling) on ``onnx.reference.ReferenceEvaluator`` and
onnxruntime, and a symbolic batch dim exported as "N" and fed with batch 3."""

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx.reference import ReferenceEvaluator
from op_harness import one_op_graph, sample_values

from graphc.backends.interpreter import Program
from graphc.backends.onnx_export import export_model
from graphc.backends.ort import run, session
from graphc.ir.graph import Builder, LayerContext
from graphc.ops import conv, conv1d, pool
from graphc.ops.base import sample

C = conv
P = pool
SPECS = Path(__file__).resolve().parent.parent / "specs"
EXTRA = (
    (C.Conv2dGradInput, sample({"kernel": 3, "stride": 2, "groups": 2, "pads": [[1, 1], [0, 2]], "input_size": [6, 7]},
                               (2, 4, 3, 4), (4, 2, 3, 3), note="grouped stride 2 (Conv path)")),
    (C.Conv2dGradInput, sample({"kernel": 3, "stride": 2, "pads": [[0, 1], [0, 1]], "input_size": [6, 6]}, (1, 2, 3, 3), (2, 3, 3, 3),
                               note="same pads, output_padding")),
    (C.Conv2dGradInput, sample({"kernel": 3, "stride": 3, "pads": [[4, 0], [0, 5]], "input_size": [7, 5]}, (1, 2, 3, 3), (2, 1, 3, 3),
                               note="pads larger than the kernel, unread rows")),
    (C.Conv2dGradInput, sample({"kernel": 3, "stride": 2, "groups": 3, "pads": [[4, 0], [0, 5]], "input_size": [7, 5]},
                               (1, 3, 5, 4), (3, 1, 3, 3), note="depthwise, large pads (Conv path, cropped)")),
    (C.Conv2dGradWeight, sample({"kernel": 3, "stride": 2, "groups": 3, "pads": [[0, 1], [1, 1]]}, (2, 3, 6, 5), (2, 6, 3, 3),
                                note="grouped stride 2")),
    (C.Conv2dGradWeight, sample({"kernel": [3, 2], "stride": [2, 3], "dilation": [1, 2], "pads": [[0, 0], [0, 0]]}, (2, 2, 8, 9),
                                (2, 3, 3, 3), note="unread rows (cropped)")),
    (C.Conv2d, sample({"filters": 6, "kernel": 3, "stride": 2, "groups": 3, "padding": "same", "dilation": 2}, (2, 3, 7, 6))),
    (C.ConvTranspose2d, sample({"filters": 4, "kernel": 3, "stride": 2, "groups": 2, "padding": 1, "output_padding": 1}, (1, 4, 3, 4),
                               note="grouped (Conv path) with bias")),
    (C.ConvTranspose2d, sample({"filters": 2, "kernel": 2, "stride": 1, "dilation": 3, "output_padding": 2}, (1, 3, 3, 4),
                               note="output_padding ≥ stride")),
    (P.MaxPool2d, sample({"kernel": 2, "stride": 3, "ceil_mode": True}, (1, 2, 7, 8), note="ceil, kernel < stride")),
    (P.MaxPool2d, sample({"kernel": 2, "stride": 1, "dilation": 2, "padding": [2, 1]}, (1, 2, 5, 6), note="pad ≥ kernel")),
    (P.MaxPool2d, sample({"kernel": 3, "stride": 2, "padding": "same"}, (2, 2, 6, 7))),
    (P.MaxPool2dGrad, sample({"kernel": 2, "stride": 3, "ceil_mode": True}, (1, 2, 7, 8), (1, 2, 3, 3), note="ceil, kernel < stride")),
    (P.MaxPool2dGrad, sample({"kernel": 2, "stride": 1, "dilation": 2, "padding": [2, 1]}, (1, 2, 5, 6), (1, 2, 7, 6))),
    (P.MaxPool2dGrad, sample({"kernel": 3}, (2, 2, 6, 9), (2, 2, 2, 3), note="tiled 3×3: first maximum by window codes")),
    (P.MaxPool2dGrad, sample({"kernel": [2, 3]}, (1, 3, 4, 6), (1, 3, 2, 2), note="tiled 2×3")),
    (P.MaxPool2dGrad, sample({"kernel": 5}, (1, 2, 10, 5), (1, 2, 2, 1), note="tiled, 25 taps: MaxPool's indices")),
    (P.MaxPool2dAt, sample({"kernel": 2, "stride": 1, "dilation": 2, "padding": [2, 1]}, (1, 2, 5, 6), (1, 2, 5, 6))),
    (P.AvgPool2d, sample({"kernel": 3, "stride": 2, "padding": 1, "ceil_mode": True, "count_include_pad": True}, (1, 2, 6, 5),
                         note="ceil, padding counted: divisor map")),
    (P.AvgPool2d, sample({"kernel": 2, "stride": 3, "ceil_mode": True}, (1, 2, 7, 8), note="ceil, kernel < stride")),
    (P.AvgPool2d, sample({"kernel": 3, "stride": 1, "padding": "same"}, (1, 2, 4, 5))),
    (P.AvgPool2dGrad, sample({"kernel": 3, "stride": 2, "padding": 1, "ceil_mode": True, "count_include_pad": True,
                              "input_size": [6, 5]}, (1, 2, 4, 3))),
    (P.AvgPool2dGrad, sample({"kernel": 2, "stride": 3, "ceil_mode": True, "input_size": [7, 8]}, (2, 2, 3, 3))),
    (P.Upsample, sample({"scale": [3, 1]}, (1, 2, 2, 3))),
    (P.UpsampleGrad, sample({"scale": [1, 2], "mode": "bilinear"}, (1, 2, 3, 6))),
    (conv1d.Conv1d, sample({"filters": 6, "kernel": 3, "stride": 2, "groups": 3, "padding": "same", "dilation": 2}, (2, 3, 9))),
    (conv1d.MaxPool1d, sample({"kernel": 2, "stride": 3, "ceil_mode": True}, (1, 2, 8), note="ceil, kernel < stride")),
    (conv1d.MaxPool1d, sample({"kernel": 2, "stride": 1, "dilation": 2, "padding": {"left": 2, "right": 1}}, (1, 2, 6),
                              note="pad ≥ kernel")),
    (conv1d.MaxPool1dGrad, sample({"kernel": 2, "stride": 3, "ceil_mode": True}, (1, 2, 8), (1, 2, 3), note="ceil, kernel < stride")),
    (conv1d.AvgPool1d, sample({"kernel": 3, "stride": 2, "padding": 1, "ceil_mode": True, "count_include_pad": True}, (1, 2, 6),
                              note="ceil, padding counted: divisor map")),
    (conv1d.AvgPool1d, sample({"kernel": 3, "stride": 1, "padding": "same"}, (1, 2, 5))),
)
CASES = [(cls, s) for cls in conv.OPS + pool.OPS + conv1d.OPS for s in cls.samples] + list(EXTRA)
IDS = [f"{c.kind}-{i}" for i, (c, _) in enumerate(CASES)]
TIES = [(cls, s) for cls, s in CASES if cls in (P.MaxPool2d, P.MaxPool2dGrad, P.MaxPool2dAt)
        or cls in (conv1d.MaxPool1d, conv1d.MaxPool1dGrad, conv1d.MaxPool1dAt)]


def _check(got, want):
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def _run_both(graph, out, values):
    model = export_model(graph, [out])
    onnx.checker.check_model(model, full_check=True)
    assert all(n.domain in ("", "ai.onnx") for n in model.graph.node)
    want = Program(graph, [out]).run(values)[out]
    feeds = {i.name: values[i.name] for i in model.graph.input}
    ref = dict(zip([o.name for o in model.graph.output], ReferenceEvaluator(model).run(None, feeds)))[out]
    _check(np.asarray(ref), want)
    sess, _ = session(model, "cpu")
    _check(run(sess, values)[out], want)


@pytest.mark.parametrize("cls,s", CASES, ids=IDS)
def test_reference_evaluator_and_onnxruntime_match_kernel(cls, s):
    graph, out = one_op_graph(cls, s)
    _run_both(graph, out, sample_values(graph, seed=11, dtype=np.float32))


@pytest.mark.parametrize("cls,s", TIES, ids=[f"{c.kind}-ties-{i}" for i, (c, _) in enumerate(TIES)])
def test_max_pooling_ties_pick_the_first_maximum(cls, s):
    """Inputs from {−1, 0, 1}: most windows tie, and both runtimes must pick the kernel's first maximum."""
    graph, out = one_op_graph(cls, s)
    values = sample_values(graph, seed=5, dtype=np.float32)
    for name in ("in0", "in1") if cls in (P.MaxPool2dAt, conv1d.MaxPool1dAt) else ("in0",):
        values[name] = np.sign(np.round(values[name])).astype(np.float32)
    _run_both(graph, out, values)


SYMBOLIC = (
    (C.Conv2d, {"filters": 4, "kernel": 3, "stride": 2, "padding": "same"}, [(3, 7, 6)]),
    (C.Conv2d, {"filters": 4, "kernel": 3, "groups": 2, "padding": 1}, [(4, 5, 5)]),
    (C.Conv2dGradInput, {"kernel": 3, "stride": 2, "groups": 2, "pads": [[1, 1], [1, 1]], "input_size": [6, 5]},
     [(4, 3, 3), (4, 2, 3, 3)]),
    (C.Conv2dGradWeight, {"kernel": 3, "stride": 2, "groups": 2, "pads": [[1, 1], [1, 1]]}, [(4, 6, 5), (4, 3, 3)]),
    (P.MaxPool2d, {"kernel": 3, "stride": 2, "padding": 1, "ceil_mode": True}, [(2, 6, 5)]),
    (P.MaxPool2dGrad, {"kernel": 3, "stride": 2, "padding": 1, "ceil_mode": True}, [(2, 6, 5), (2, 4, 3)]),
    (P.MaxPool2dGrad, {"kernel": 2, "stride": 3, "ceil_mode": True}, [(2, 7, 8), (2, 3, 3)]),
    (P.AvgPool2dGrad, {"kernel": 3, "stride": 2, "padding": 1, "input_size": [5, 6]}, [(2, 3, 3)]),
)


@pytest.mark.parametrize("cls,attrs,shapes", SYMBOLIC, ids=[f"{c.kind}-{i}" for i, (c, _, _) in enumerate(SYMBOLIC)])
def test_symbolic_batch(cls, attrs, shapes):
    """Inputs of batch "N" (4-D shapes get it prepended; full shapes are weights), run with batch 3."""
    b = Builder()
    names = [b.input(f"in{i}", ("N", *s) if len(s) == 3 else s) for i, s in enumerate(shapes)]
    b.context = LayerContext("layer")
    out = cls.model_validate(attrs).expand(b, "layer", names)
    assert b.type_of(out).shape[0] == "N" or cls is C.Conv2dGradWeight
    model = export_model(b.graph, [out])
    onnx.checker.check_model(model, full_check=True)
    rng = np.random.default_rng(0)
    values = {}
    for name, a in b.graph.nodes(data=True):
        if a["role"] in ("input", "param"):
            values[name] = rng.standard_normal(tuple(3 if d == "N" else d for d in a["type"].shape)).astype(np.float32)
    want = Program(b.graph, [out]).run(values)[out]
    sess, _ = session(model, "cpu")
    _check(run(sess, values)[out], want)
    feeds = {i.name: values[i.name] for i in model.graph.input}
    _check(np.asarray(ReferenceEvaluator(model).run(None, feeds)[0]), want)


def test_tiled_max_pool_gradient_shares_the_forward_pool(tmp_path):
    """The tiled gradient's window maxima are the forward pool's: its MaxPool carries the forward's
    attributes as written, so that onnxruntime's common-subexpression elimination runs one MaxPool
    per pool in LeNet-5's training step (attributes spelled differently are not merged)."""
    import onnxruntime as ort

    import graphc
    from graphc.backends.onnx_export import training_model
    from graphc.ir.autodiff import training_graph

    model = training_model(training_graph(graphc.compile_spec(SPECS / "lenet5.yaml")))
    written = [n for n in model.graph.node if n.op_type == "MaxPool"]
    assert len(written) == 4  # the forward's two and their gradients' two
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    optimized = onnx.load(tmp_path / "optimized.onnx")
    assert sorted(n.input[0] for n in optimized.graph.node if n.op_type == "MaxPool") == ["tanh1", "tanh2"]
