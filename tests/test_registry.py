"""Tests generated from the op registry (DESIGN.md §7): every op, every sample, every facet so far."""

import pytest
from pydantic import ValidationError

from graphc.ir.graph import Builder, LayerContext
from graphc.ops import BY_KIND, LAYER_KINDS, LOSS_KINDS, REGISTRY
from graphc.ops.base import Composite, Op, Window
from graphc.tensor import TensorType

SAMPLES = [(cls, i, s) for cls in REGISTRY for i, s in enumerate(cls.samples)]


def build(cls, s):
    """Expand the op on the sample's inputs: the graph and the output node."""
    b = Builder()
    names = [b.input(f"in{i}", x.shape, x.dtype) for i, x in enumerate(s.inputs)]
    b.context = LayerContext("layer")
    op = cls.model_validate(s.attrs)
    return op, b.graph, op.expand(b, "layer", names)


@pytest.mark.parametrize("cls,index,s", SAMPLES, ids=[f"{c.kind}-{i}" for c, i, _ in SAMPLES])
def test_sample_facets(cls, index, s):
    op, graph, out = build(cls, s)
    xs = [graph.nodes[i]["type"] for i in graph.nodes[out]["inputs"]] if not cls.composite else list(s.inputs)
    y = graph.nodes[out]["type"]
    assert isinstance(y, TensorType)
    assert op.infer(xs) == y  # the shape rule agrees with the expansion (composites) / is stable
    assert isinstance(op.macs(xs, y), int) and op.macs(xs, y) >= 0
    windows = op.window(xs)
    assert windows is None or (len(windows) == y.rank - 2 and all(isinstance(w, Window) for w in windows))
    assert isinstance(op.describe(), str)
    for name, attrs in graph.nodes(data=True):
        if attrs["role"] == "param":
            assert name.startswith("layer.")


@pytest.mark.parametrize("cls", REGISTRY, ids=[c.kind for c in REGISTRY])
def test_every_op_is_complete(cls):
    assert cls.__doc__ and len(cls.__doc__.strip()) > 20, "docstring with the formula"
    assert BY_KIND[cls.kind] is cls
    if cls.user_facing:
        assert cls.samples, "user-facing ops need samples for the generated tests"
    if not cls.composite and cls.kind not in ("input", "param"):
        assert cls.infer is not Op.infer, "a primitive needs a shape rule"
    if cls.composite:
        assert cls.expand is not Composite.expand


@pytest.mark.parametrize("cls", [c for c in REGISTRY if c.samples], ids=[c.kind for c in REGISTRY if c.samples])
def test_ops_are_equal_and_hashable_by_attributes(cls):
    a = cls.model_validate(cls.samples[0].attrs)
    b = cls.model_validate(dict(cls.samples[0].attrs))
    assert a == b and hash(a) == hash(b)
    with pytest.raises(ValidationError):
        cls.model_validate({**cls.samples[0].attrs, "no_such_attribute": 1})


def test_the_course_layers_are_all_there():
    wanted = {"dense", "conv2d", "conv_transpose2d", "maxpool2d", "avgpool2d", "global_avgpool", "upsample", "flatten",
              "reshape", "transpose", "concat", "add", "sub", "mul", "div", "matmul", "relu", "leaky_relu", "prelu", "elu",
              "sigmoid", "tanh", "softmax", "maxout", "batchnorm", "layernorm", "dropout", "rnn", "lstm", "attention",
              "positional_encoding"}
    assert wanted <= set(LAYER_KINDS)
    assert {"softmax_cross_entropy", "sigmoid_cross_entropy", "mse", "l1", "hinge", "l2_penalty"} <= set(LOSS_KINDS)
