"""reduce_sum and reduce_mean are ONNX's ReduceSum and ReduceMean over listed axes (negative ones
count from the end, none: all), keepdims false by default; reduce_mean's gradient reads the count
of reduced elements at run time, so a symbolic axis (the batch) may be reduced."""

import numpy as np
import pytest

from helpers import compile_text
from graphc.backends.onnx_export import export_model
from graphc.backends.ort import run, session
from graphc.errors import ShapeError
from graphc.ir.autodiff import differentiate
from graphc.ops.reduce import ReduceMean, ReduceSum
from graphc.tensor import TensorType

X = np.random.default_rng(0).standard_normal((2, 3, 4, 5))


@pytest.mark.parametrize("axes,keepdims", [((1,), False), ((-1, 0), True), ((), False), ((-2,), True)])
def test_values_are_numpys(axes, keepdims):
    np_axes = axes or None
    np.testing.assert_allclose(ReduceSum(axes=axes, keepdims=keepdims).forward(X), X.sum(axis=np_axes, keepdims=keepdims))
    np.testing.assert_allclose(ReduceMean(axes=axes, keepdims=keepdims).forward(X), X.mean(axis=np_axes, keepdims=keepdims))
    t = TensorType(X.shape)
    for op in (ReduceSum(axes=axes, keepdims=keepdims), ReduceMean(axes=axes, keepdims=keepdims)):
        assert op.infer([t]).shape == X.sum(axis=np_axes, keepdims=keepdims).shape


def test_bad_axes_are_errors():
    t = TensorType(("N", 4, 5))
    with pytest.raises(ShapeError, match=r"axis -4 is out of range .* axes are in \[-3, 2\]"):
        ReduceMean(axes=(-4,)).infer([t])
    with pytest.raises(ShapeError, match=r"name axis 2 twice"):
        ReduceSum(axes=(2, -1)).infer([t])


def test_mean_over_the_symbolic_batch_has_gradient_one_over_n_in_onnxruntime():
    graph = compile_text("""
    inputs:
      x: {shape: [N, 3]}
    layers:
      - {name: m, op: reduce_mean, axes: [0]}
      - {name: total, op: reduce_sum}
    """)
    training, grads = differentiate(graph, "total", ["x"])
    sess, _ = session(export_model(training, {"gx": grads["x"], "total": "total"}), "cpu")
    for n in (2, 5):
        x = np.arange(3.0 * n, dtype=np.float32).reshape(n, 3)
        got = run(sess, {"x": x})
        np.testing.assert_allclose(got["gx"], np.full((n, 3), 1 / n), rtol=1e-6)
        np.testing.assert_allclose(got["total"], x.mean(axis=0).sum(), rtol=1e-6)


def test_the_gradient_ops_share_the_broadcast_check_and_reduce_mean_grad_also_needs_the_rank():
    """broadcast_like (reduce_sum's gradient) takes any a that broadcasts to like; reduce_mean_grad
    only a cotangent with the reduced axes kept (same rank): (5,) broadcasts to (3, 5), but is no
    kept-axes reduction of it."""
    from graphc.errors import ShapeError
    from graphc.ops.reduce import BroadcastLike, ReduceMeanGrad
    from graphc.tensor import TensorType

    row, grid = TensorType((5,)), TensorType((3, 5))
    assert BroadcastLike().infer([row, grid]) == grid
    with pytest.raises(ShapeError, match=r"reduce_mean_grad: gy \(5\) is not x \(3, 5\) reduced with kept axes"):
        ReduceMeanGrad().infer([row, grid])
    assert ReduceMeanGrad().infer([TensorType((1, 5), "float64"), grid]) == TensorType((3, 5), "float64")
    with pytest.raises(ShapeError, match="cannot broadcast"):
        BroadcastLike().infer([TensorType((4,)), grid])
    assert BroadcastLike().window([row, grid]) is None and ReduceMeanGrad().window([row, grid]) is None
