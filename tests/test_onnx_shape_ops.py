"""Shape ops' ONNX lowerings (DESIGN.md §6) on the ONNX reference evaluator, and ONNX shape inference
agreeing with graphc's types, symbolic dims kept as named dims."""

import numpy as np
import onnx
import pytest
from onnx.reference import ReferenceEvaluator
from op_harness import SYMBOL_SIZE, concrete

from graphc.backends.interpreter import Program
from graphc.backends.onnx_export import export_model
from graphc.ir.graph import Builder, LayerContext
from graphc.ops import shape_ops
from graphc.ops.shape_ops import CausalMask

CASES = [(cls, i, s) for cls in shape_ops.OPS for i, s in enumerate(cls.samples)]
IDS = [f"{c.kind}-{i}" for c, i, _ in CASES]


def single_op(op, input_types, concretize: bool):
    """``y = op(in0, …)`` with the inputs' shapes as given (symbolic dims kept unless ``concretize``)."""
    b = Builder()
    names = [b.input(f"in{i}", concrete(t.shape) if concretize else t.shape, t.dtype) for i, t in enumerate(input_types)]
    b.context = LayerContext("layer")
    out = op.expand(b, "layer", names)
    return b.graph, out


def feeds(graph, seed):
    rng = np.random.default_rng(seed)
    return {n: rng.standard_normal(concrete(a["type"].shape)).astype(a["type"].dtype)
            for n, a in graph.nodes(data=True) if a["role"] == "input"}


def dims(type_proto):
    return tuple(d.dim_param if d.HasField("dim_param") else d.dim_value for d in type_proto.tensor_type.shape.dim)


@pytest.mark.parametrize("cls,index,s", CASES, ids=IDS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_reference_evaluator_matches_kernel(cls, index, s, dtype):
    types = [t.__class__(t.shape, dtype) for t in s.inputs]
    graph, out = single_op(cls.model_validate(s.attrs), types, concretize=False)
    values = feeds(graph, index)
    model = export_model(graph, [out])
    onnx.checker.check_model(model, full_check=True)
    got = ReferenceEvaluator(model).run(None, values)[0]
    want = Program(graph, [out]).run(values)[out]
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("cls,index,s", CASES, ids=IDS)
def test_shape_inference_agrees(cls, index, s):
    graph, out = single_op(cls.model_validate(s.attrs), s.inputs, concretize=False)
    model = export_model(graph, [out])
    # forget every declared intermediate and output shape: ONNX must infer the output's by itself
    del model.graph.value_info[:]
    model.graph.output[0].type.tensor_type.ClearField("shape")
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    want = tuple(d if isinstance(d, int) else str(d) for d in graph.nodes[out]["type"].shape)
    assert dims(inferred.graph.output[0].type) == want


def test_causal_mask_symbolic_length():
    """A symbolic T builds the mask at run time (Range/Greater) instead of a constant."""
    from graphc.tensor import TensorType

    graph, out = single_op(CausalMask(fill=-4.0), [TensorType(("N", 2, "T", "T"), "float32")], concretize=False)
    model = export_model(graph, [out])
    onnx.checker.check_model(model, full_check=True)
    assert not any(init.data_type == onnx.TensorProto.BOOL for init in model.graph.initializer)
    x = np.random.default_rng(0).standard_normal((SYMBOL_SIZE, 2, 5, 5)).astype(np.float32)
    got = ReferenceEvaluator(model).run(None, {"in0": x})[0]
    np.testing.assert_array_equal(got, CausalMask(fill=-4.0).forward(x))
