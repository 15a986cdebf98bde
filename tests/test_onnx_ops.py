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
