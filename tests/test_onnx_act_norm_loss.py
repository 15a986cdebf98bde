"""ONNX lowerings of the activation, normalisation and loss ops (and their gradient-only ops) beyond
tests/test_onnx_ops.py: they run on ``onnx.reference.ReferenceEvaluator`` too, in float64 on
onnxruntime, and with a symbolic batch dim fed at a batch size the export never saw."""

import numpy as np
import onnx
import pytest
from onnx.reference import ReferenceEvaluator
from op_harness import one_op_graph, sample_values

from graphc.backends.interpreter import Program
from graphc.backends.onnx_export import export_model
from graphc.backends.ort import run, session
from graphc.ir.graph import Builder, LayerContext
from graphc.ops import activations, loss, norm
from graphc.ops.elementwise import Mul
from graphc.ops.reduce import ReduceSum

OPS = activations.OPS + norm.OPS + loss.OPS
CASES = [(cls, i, s) for cls in OPS for i, s in enumerate(cls.samples)]
IDS = [f"{c.kind}-{i}" for c, i, _ in CASES]


def _graph(cls, s, shape_of, dtype_of):
    """``Σ op(inputs) ⊙ r`` as in op_harness.one_op_graph, with input shapes and dtypes mapped."""
    b = Builder()
    names = [b.input(f"in{i}", shape_of(i, x.shape), dtype_of(x.dtype)) for i, x in enumerate(s.inputs)]
    b.context = LayerContext("layer")
    out = cls.model_validate(s.attrs).expand(b, "layer", names)
    t = b.type_of(out)
    b.input("r", t.shape, t.dtype)
    b.context = LayerContext("loss", role="loss")
    b.op("prod", Mul(), [out, "r"])
    b.op("loss", ReduceSum(), ["prod"])
    return b.graph, out


def _check(got, want):
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cls,index,s", CASES, ids=IDS)
def test_reference_evaluator_matches_kernel(cls, index, s):
    graph, out = one_op_graph(cls, s)
    values = sample_values(graph, seed=index + 7, dtype=np.float32)
    model = export_model(graph, [out])
    onnx.checker.check_model(model, full_check=True)
    ref = ReferenceEvaluator(model)
    feeds = {i.name: values[i.name] for i in model.graph.input}
    got = dict(zip([o.name for o in model.graph.output], ref.run(None, feeds)))[out]
    _check(np.asarray(got), Program(graph, [out]).run(values)[out])


@pytest.mark.parametrize("cls,index,s", CASES, ids=IDS)
def test_float64_on_onnxruntime(cls, index, s):
    graph, out = _graph(cls, s, lambda i, shape: shape, lambda d: "float64" if d == "float32" else d)
    values = sample_values(graph, seed=index + 3, dtype=np.float64)
    values = {k: v.astype(graph.nodes[k]["type"].dtype) for k, v in values.items()}  # parameters stay float32
    model = export_model(graph, [out])
    onnx.checker.check_model(model, full_check=True)
    sess, _ = session(model, "cpu")
    _check(run(sess, values)[out], Program(graph, [out]).run(values)[out])


def _batched(s):
    """Which inputs share input 0's batch dim (labels, targets, gy of the same shape…); None to skip."""
    n = s.inputs[0].shape[0] if s.inputs[0].shape else None
    if n is None:
        return None
    return [x.rank >= 1 and x.shape[0] == n and (x.rank >= 2 or x.dtype == "int64") for x in s.inputs]


SYMBOLIC = [(c, i, s) for c, i, s in CASES if c.kind != "l2_penalty" and _batched(s)]


@pytest.mark.parametrize("cls,index,s", SYMBOLIC, ids=[f"{c.kind}-{i}" for c, i, _ in SYMBOLIC])
def test_symbolic_batch(cls, index, s):
    """Exported with batch "N", run at batch 5: no lowering may bake the batch size into a constant."""
    batched = _batched(s)
    graph, out = _graph(cls, s, lambda i, shape: ("N", *shape[1:]) if batched[i] else shape, lambda d: d)
    model = export_model(graph, [out])
    onnx.checker.check_model(model, full_check=True)
    concrete, cout = _graph(cls, s, lambda i, shape: (5, *shape[1:]) if batched[i] else shape, lambda d: d)
    values = sample_values(concrete, seed=index + 11, dtype=np.float32)
    sess, _ = session(model, "cpu")
    want = Program(concrete, [cout]).run(values)[cout]
    _check(run(sess, values)[out], want)
    ref = ReferenceEvaluator(model)
    got = dict(zip([o.name for o in model.graph.output], ref.run(None, {i.name: values[i.name] for i in model.graph.input})))[out]
    _check(np.asarray(got), want)
