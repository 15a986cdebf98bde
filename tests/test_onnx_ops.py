"""Generated from the registry (DESIGN.md §7.3): onnxruntime running each op's lowering == its NumPy
kernel, for every sample; every model passes the full checker and uses the default domain only."""

import numpy as np
import onnx
import pytest
from op_harness import one_op_graph, sample_values

from graphc.backends.interpreter import Program
from graphc.backends.onnx_export import export_model
from graphc.backends.ort import run, session
from graphc.ops import REGISTRY

CASES = [(cls, i, s) for cls in REGISTRY for i, s in enumerate(cls.samples)]


@pytest.mark.parametrize("cls,index,s", CASES, ids=[f"{c.kind}-{i}" for c, i, _ in CASES])
def test_lowering_matches_kernel(cls, index, s):
    graph, out = one_op_graph(cls, s)
    values = sample_values(graph, seed=index + 7, dtype=np.float32, positive=s.positive)
    model = export_model(graph, [out])
    onnx.checker.check_model(model, full_check=True)
    assert all(n.domain in ("", "ai.onnx") for n in model.graph.node)
    sess, provider = session(model, "cpu")
    got = run(sess, values)[out]
    want = Program(graph, [out]).run(values)[out]
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_relu_grad_lowering_is_the_kernel_on_non_finite_values():
    """gy ⊙ float(y > 0) on both sides: an infinite gy under a blocked output is NaN in each, ±0 and NaN
    outputs block, and the results agree bit for bit (a Where lowering would give 0 where the kernel gives NaN)."""
    from graphc.ops.elementwise import ReluGrad

    graph, out = one_op_graph(ReluGrad, ReluGrad.samples[0])
    values = sample_values(graph, seed=0, dtype=np.float32)
    y_name, gy_name = graph.nodes[out]["inputs"]  # the IR's ordered inputs: (y, gy)
    shape = values[y_name].shape
    y = np.tile(np.array([1.0, 0.0, -0.0, -2.0, np.nan, np.inf], np.float32), -(-int(np.prod(shape)) // 6))[:np.prod(shape)]
    gy = np.tile(np.array([np.inf, -np.inf, np.nan, 3.0, -0.0], np.float32), -(-int(np.prod(shape)) // 5))[:np.prod(shape)]
    values[y_name], values[gy_name] = y.reshape(shape), gy.reshape(shape)
    got = run(session(export_model(graph, [out]), "cpu")[0], values)[out]
    with np.errstate(invalid="ignore"):  # inf · 0 is the case under test
        want = Program(graph, [out]).run(values)[out]
    assert np.isnan(want).any() and np.isinf(want).any()  # the case is exercised
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
