"""Adaptive pooling follows PyTorch's window rule start = floor(i·n/o), end = ceil((i+1)·n/o) exactly,
also for sizes that do not divide; global_maxpool is the max over the plane; the ONNX lowering is the plain op where one is exact."""

import numpy as np
import pytest

from helpers import compile_text
from graphc.backends.interpreter import Program
from graphc.backends.onnx_export import forward_model
from graphc.backends.ort import run, session
from graphc.ops.adaptive_pool import AdaptiveAvgPool2d, AdaptiveMaxPool2d, AdaptiveMaxPool2dGrad, GlobalMaxPool, adaptive_bounds
from graphc.ops.pool import AvgPool2d


def test_bounds_are_pytorchs():
    # n = 5, o = 3: [0, 2), [1, 4), [3, 5) (torch.nn.AdaptiveAvgPool1d(3) on 5 inputs)
    start, end = adaptive_bounds(5, 3)
    assert start.tolist() == [0, 1, 3] and end.tolist() == [2, 4, 5]
    start, end = adaptive_bounds(7, 7)
    assert start.tolist() == list(range(7)) and end.tolist() == list(range(1, 8))
    start, end = adaptive_bounds(3, 4)  # upsampling: windows of one, repeated
    assert start.tolist() == [0, 0, 1, 2] and end.tolist() == [1, 2, 3, 3]


def test_values_when_sizes_do_not_divide():
    x = np.arange(5.0).reshape(1, 1, 1, 5) + np.zeros((1, 1, 2, 1))
    avg = AdaptiveAvgPool2d(output_size=[1, 3]).forward(x)
    np.testing.assert_allclose(avg[0, 0, 0], [0.5, 2.0, 3.5])
    mx = AdaptiveMaxPool2d(output_size=[1, 3]).forward(x)
    np.testing.assert_allclose(mx[0, 0, 0], [1, 3, 4])


def test_dividing_sizes_equal_a_plain_pool():
    x = np.random.default_rng(0).standard_normal((2, 3, 14, 12))
    np.testing.assert_allclose(AdaptiveAvgPool2d(output_size=[7, 3]).forward(x),
                               AvgPool2d(kernel=[2, 4], stride=[2, 4]).forward(x))


def test_max_gradient_goes_to_the_first_maximum_of_each_window_and_sums_over_overlaps():
    x = np.array([[[[1.0, 5.0, 5.0, 0.0, 2.0]]]])  # windows [0, 2) [1, 4) [3, 5): maxima at 1, 1, 4
    gx = AdaptiveMaxPool2dGrad(output_size=[1, 3]).forward(x, np.array([[[[1.0, 10.0, 100.0]]]]))
    np.testing.assert_allclose(gx[0, 0, 0], [0, 11, 0, 0, 100])


def test_global_maxpool():
    x = np.random.default_rng(1).standard_normal((2, 3, 4, 5))
    np.testing.assert_allclose(GlobalMaxPool().forward(x), x.max(axis=(2, 3)))


@pytest.mark.parametrize("kind,output_size,hw,lowered", [
    ("adaptive_avgpool2d", 1, (5, 4), "ReduceMean"), ("adaptive_avgpool2d", [3, 4], (3, 4), "Identity"),
    ("adaptive_avgpool2d", [2, 3], (6, 9), "AveragePool"), ("adaptive_avgpool2d", [3, 2], (7, 5), "MatMul"),
    ("adaptive_maxpool2d", 1, (5, 4), "ReduceMax"), ("adaptive_maxpool2d", [3, 4], (3, 4), "Identity"),
    ("adaptive_maxpool2d", [2, 3], (6, 9), "MaxPool"), ("adaptive_maxpool2d", [3, 2], (7, 5), "Gather"),
])
def test_the_lowering_is_the_exact_plain_op_where_one_exists(kind, output_size, hw, lowered):
    """1×1: a reduction over H and W with the dims kept; output = input: Identity; output dividing the
    input: a pool with kernel = stride = input/output; otherwise the window matrices or gathers."""
    graph = compile_text(f"""
        inputs: {{x: {{shape: [N, 2, {hw[0]}, {hw[1]}]}}}}
        layers: [{{name: pool, op: {kind}, output_size: {output_size}}}]
    """)
    model = forward_model(graph, {})
    assert lowered in [n.op_type for n in model.graph.node]
    x = np.random.default_rng(0).standard_normal((3, 2, *hw)).astype(np.float32)
    sess, _ = session(model, "cpu")
    np.testing.assert_allclose(run(sess, {"x": x})["pool"], Program(graph, ["pool"]).run({"x": x})["pool"], rtol=1e-5, atol=1e-6)


def test_a_pool_to_1x1_exports_over_symbolic_sizes_and_runs_at_any():
    graph = compile_text("""
        inputs: {x: {shape: [N, 2, H, W]}}
        layers: [{name: pool, op: adaptive_avgpool2d, output_size: 1}]
    """)
    sess, _ = session(forward_model(graph, {}), "cpu")
    for h, w in ((4, 6), (7, 3)):
        x = np.random.default_rng(h).standard_normal((2, 2, h, w)).astype(np.float32)
        np.testing.assert_allclose(run(sess, {"x": x})["pool"], x.mean(axis=(2, 3), keepdims=True), rtol=1e-5, atol=1e-6)
