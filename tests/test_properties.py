"""Property tests (hypothesis): shape rules against kernels, and receptive fields against the
closed form, over random convolution and pooling geometries."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from graphc.errors import ShapeError
from graphc.ir.analysis import receptive_fields
from graphc.ir.graph import Builder, LayerContext
from graphc.ops.conv import Conv2d
from graphc.ops.pool import AvgPool2d, MaxPool2d
from graphc.tensor import TensorType

geometry = st.fixed_dictionaries({
    "n": st.integers(1, 12), "k": st.integers(1, 5), "s": st.integers(1, 3), "p": st.integers(0, 2), "d": st.integers(1, 3),
})


@settings(max_examples=60, deadline=None)
@given(geometry, st.booleans())
def test_conv_shape_rule_matches_kernel(g, same):
    op = Conv2d(filters=2, kernel=g["k"], stride=g["s"], padding="same" if same else g["p"], dilation=g["d"])
    x = np.random.default_rng(0).standard_normal((1, 2, g["n"], g["n"] + 1)).astype(np.float32)
    xs = [TensorType(x.shape)]
    try:
        w_shape = op.params(xs)["weight"].shape
        y = op.infer(xs + [TensorType(w_shape), TensorType((2,))])
    except ShapeError:
        return  # the rule rejects it (output below 1); nothing to run
    out = op.forward(x, np.ones(w_shape, np.float32), np.zeros(2, np.float32))
    assert out.shape == y.shape


@settings(max_examples=60, deadline=None)
@given(geometry, st.booleans(), st.sampled_from([MaxPool2d, AvgPool2d]))
def test_pool_shape_rule_matches_kernel(g, ceil, cls):
    attrs = {"kernel": g["k"], "stride": g["s"], "padding": min(g["p"], (g["k"] - 1) // 2), "ceil_mode": ceil}
    if cls is MaxPool2d:
        attrs["dilation"] = 1
    op = cls(**attrs)
    x = np.random.default_rng(1).standard_normal((1, 1, g["n"], g["n"])).astype(np.float32)
    try:
        y = op.infer([TensorType(x.shape)])
    except ShapeError:
        return
    assert op.forward(x).shape == y.shape


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 4), st.integers(1, 2), st.integers(1, 2)), min_size=1, max_size=5))
def test_chain_receptive_field_is_the_closed_form(layers):
    """r = 1 + Σ d(k − 1)·Π s_before, j = Π s, for any chain of convolutions (sizes kept legal)."""
    b = Builder()
    b.input("x", ("N", 1, 200, 200))
    r, j, name = 1, 1, "x"
    for i, (k, s, d) in enumerate(layers):
        b.context = LayerContext(f"c{i}")
        name = Conv2d(filters=1, kernel=k, stride=s, dilation=d, padding=0).expand(b, f"c{i}", [name])
        r += d * (k - 1) * j
        j *= s
    field = receptive_fields(b.graph)[name]
    assert [f.size for f in field] == [r, r] and [f.stride for f in field] == [j, j]
