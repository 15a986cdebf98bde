"""Shape rules, parameters, windows and attribute validation of pooling, activation, norm and loss ops."""

from __future__ import annotations

from fractions import Fraction

import pytest
from pydantic import ValidationError

from graphc.errors import ShapeError
from graphc.ops import BY_KIND, LAYER_KINDS, LOSS_KINDS
from graphc.ops.activations import Dropout, Elu, LeakyRelu, Maxout, PRelu
from graphc.ops.base import IDENTITY_WINDOW, Init, Window
from graphc.ops.loss import L1, MSE, Hinge, L2Penalty, SigmoidCrossEntropy, SoftmaxCrossEntropy
from graphc.ops.norm import BatchNorm, LayerNorm
from graphc.ops.pool import AvgPool2d, GlobalAvgPool, MaxPool2d, Upsample
from graphc.tensor import Size, TensorType


def T(*shape, dtype="float32"):
    return TensorType(tuple(shape), dtype)


def infer_with_params(op, *xs):
    """Shape rule as the builder calls it: data inputs, then the op's params in dict order."""
    params = op.params(list(xs))
    return op.infer(list(xs) + [TensorType(p.shape) for p in params.values()])


# --- pooling ------------------------------------------------------------------------------------

def test_course_maxpool_2x2_stride2_on_4x4():
    assert MaxPool2d(kernel=2, stride=2).infer([T("N", 3, 4, 4)]) == T("N", 3, 2, 2)


def test_pool_stride_defaults_to_kernel():
    assert MaxPool2d(kernel=3).infer([T(1, 1, 9, 7)]) == T(1, 1, 3, 2)
    assert AvgPool2d(kernel=[2, 3]).infer([T(1, 1, 6, 6)]) == T(1, 1, 3, 2)


@pytest.mark.parametrize("attrs, hw, out", [
    ({"kernel": 3, "stride": 1, "padding": 1}, (5, 5), (5, 5)),
    ({"kernel": 3, "stride": 2, "padding": 1}, (7, 8), (4, 4)),
    ({"kernel": 2, "stride": 2, "padding": "same"}, (5, 4), (3, 2)),
    ({"kernel": 3, "stride": 1, "padding": "valid"}, (5, 6), (3, 4)),
    ({"kernel": 2, "stride": 1, "dilation": 2}, (7, 7), (5, 5)),
    ({"kernel": [2, 3], "stride": [1, 2]}, (4, 9), (3, 4)),
])
def test_maxpool_output_sizes(attrs, hw, out):
    assert MaxPool2d(**attrs).infer([T(2, 3, *hw)]) == T(2, 3, *out)


def test_ceil_mode_keeps_the_partial_window():
    # floor((5 − 2)/2) + 1 = 2, ceil((5 − 2)/2) + 1 = 3
    assert MaxPool2d(kernel=2, stride=2).infer([T(1, 1, 5, 5)]) == T(1, 1, 2, 2)
    assert MaxPool2d(kernel=2, stride=2, ceil_mode=True).infer([T(1, 1, 5, 5)]) == T(1, 1, 3, 3)
    assert AvgPool2d(kernel=2, ceil_mode=True).infer([T(1, 1, 5, 4)]) == T(1, 1, 3, 2)


def test_ceil_mode_drops_a_window_starting_in_the_right_padding():
    # ceil((5 + 2 − 2)/2) + 1 = 4, but window 4 would start at 6 ≥ 5 + 1: PyTorch gives 3
    assert MaxPool2d(kernel=2, stride=2, padding=1, ceil_mode=True).infer([T(1, 1, 5, 5)]) == T(1, 1, 3, 3)
    assert AvgPool2d(kernel=2, stride=2, padding=1, ceil_mode=True).infer([T(1, 1, 5, 5)]) == T(1, 1, 3, 3)


def test_pool_output_below_one_shows_the_arithmetic():
    with pytest.raises(ShapeError, match=r"height floor\(\(2 \+ 0 − 3\)/2\) \+ 1 = 0 is below 1"):
        MaxPool2d(kernel=3, stride=2).infer([T(1, 1, 2, 5)])


def test_pool_padding_must_be_smaller_than_the_window():
    with pytest.raises(ShapeError, match="smaller than the window extent 2"):
        AvgPool2d(kernel=2, padding=2).infer([T(1, 1, 6, 6)])


def test_pool_rejects_wrong_rank_and_takes_symbolic_spatial_dims():
    with pytest.raises(ShapeError, match="rank 4"):
        MaxPool2d(kernel=2).infer([T(2, 8)])
    out = MaxPool2d(kernel=2).infer([T(1, 1, Size("H"), 4)])  # a symbolic size becomes an expression
    assert (str(out.shape[2]), out.shape[3]) == ("floor(H/2)", 2)


def test_pool_window_and_tiling_warning():
    op = MaxPool2d(kernel=3, stride=2, padding=1)
    assert op.window([T(1, 1, 8, 8)]) == (Window(Fraction(2), Fraction(-1), 3),) * 2
    assert MaxPool2d(kernel=2).window([T(1, 1, 4, 4)]) == (Window(Fraction(2), Fraction(0), 2),) * 2
    assert MaxPool2d(kernel=2, stride=1, dilation=3).window([T(1, 1, 8, 8)])[0].extent == 4
    untiled = MaxPool2d(kernel=2, stride=2).warnings([T(1, 1, 5, 4)])
    assert len(untiled) == 1 and "row" in untiled[0]
    assert MaxPool2d(kernel=2, stride=2).warnings([T(1, 1, 4, 4)]) == []
    assert MaxPool2d(kernel=2, stride=2, ceil_mode=True).warnings([T(1, 1, 5, 4)]) == []


def test_pool_costs_and_description():
    x = T(1, 3, 4, 4)
    op = MaxPool2d(kernel=2, stride=2)
    assert op.macs([x], op.infer([x])) == 0
    assert op.params([x]) == {}
    assert op.describe() == "k2 s2 p0"
    assert AvgPool2d(kernel=3, stride=2, padding=1, ceil_mode=True).describe() == "k3 s2 p1 ceil"


def test_avgpool_has_no_dilation_and_counts_pad_by_flag():
    with pytest.raises(ValidationError):
        AvgPool2d(kernel=2, dilation=2)
    assert AvgPool2d(kernel=2).count_include_pad is False
    assert AvgPool2d(kernel=2, count_include_pad=True) != AvgPool2d(kernel=2)


def test_global_avgpool():
    op = GlobalAvgPool()
    assert op.infer([T("N", 7, 5, 3)]) == T("N", 7)
    assert op.window([T(1, 7, 5, 3)]) is None
    with pytest.raises(ShapeError, match="rank 4"):
        op.infer([T(2, 7)])


@pytest.mark.parametrize("attrs, out", [
    ({}, (2, 3, 6, 10)),
    ({"scale": 3}, (2, 3, 9, 15)),
    ({"scale": [1, 2], "mode": "bilinear"}, (2, 3, 3, 10)),
])
def test_upsample_shapes(attrs, out):
    assert Upsample(**attrs).infer([T(2, 3, 3, 5)]) == T(*out)


def test_upsample_windows():
    x = [T(1, 1, 4, 4)]
    assert Upsample(scale=2).window(x) == (Window(Fraction(1, 2), Fraction(0), 1),) * 2
    # output o samples (o + ½)/f − ½ and reads its floor and floor + 1; for output 0 that is −1 and 0
    assert Upsample(scale=2, mode="bilinear").window(x) == (Window(Fraction(1, 2), Fraction(-1), 2),) * 2
    assert Upsample(scale=[1, 4], mode="bilinear").window(x) == (IDENTITY_WINDOW, Window(Fraction(1, 4), Fraction(-1), 2))


# --- activations --------------------------------------------------------------------------------

@pytest.mark.parametrize("op", [LeakyRelu(), Elu(alpha=0.5), Dropout(p=0.3)])
def test_pointwise_activations_keep_the_type(op):
    assert op.infer([T("N", 3, 4, 4, dtype="float64")]) == T("N", 3, 4, 4, dtype="float64")
    assert op.window([T(1, 3, 4, 4)]) == (IDENTITY_WINDOW, IDENTITY_WINDOW)
    with pytest.raises(ShapeError, match="floating point"):
        op.infer([T(3, dtype="int64")])


def test_prelu_slope_per_channel():
    op = PRelu()
    params = op.params([T("N", 6, 4, 4)])
    assert list(params) == ["slope"]
    assert params["slope"].shape == (6,) and params["slope"].trainable
    assert params["slope"].init == Init(kind="constant", value=0.25)
    assert infer_with_params(op, T("N", 6, 4, 4)) == T("N", 6, 4, 4)
    with pytest.raises(ShapeError, match=r"does not match the 6 channels"):
        op.infer([T(2, 6, 4, 4), T(5)])


def test_maxout_groups_channels():
    assert Maxout(pieces=2).infer([T("N", 8, 5, 5)]) == T("N", 4, 5, 5)
    assert Maxout(pieces=3).infer([T(4, 12)]) == T(4, 4)
    with pytest.raises(ShapeError, match=r"axis-1 size 10 is not divisible by pieces=3 \(10 = 3·3 \+ 1\)"):
        Maxout(pieces=3).infer([T(2, 10)])
    with pytest.raises(ValidationError):
        Maxout(pieces=1)


def test_activation_attribute_ranges():
    for bad in (1.0, 1.5, -0.1):
        with pytest.raises(ValidationError):
            Dropout(p=bad)
    assert Dropout(p=0.0).p == 0.0
    with pytest.raises(ValidationError):
        LeakyRelu(alpha="0.1")
    with pytest.raises(ValidationError):
        Elu(beta=1.0)


# --- normalisation ------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [("N", 5), ("N", 5, 3, 3)])
def test_batchnorm_params(shape):
    op = BatchNorm()
    params = op.params([T(*shape)])
    assert list(params) == ["gamma", "beta", "running_mean", "running_var"]
    assert {name: p.shape for name, p in params.items()} == dict.fromkeys(params, (5,))
    assert {name: p.trainable for name, p in params.items()} == {
        "gamma": True, "beta": True, "running_mean": False, "running_var": False}
    assert {name: p.init.kind for name, p in params.items()} == {
        "gamma": "ones", "beta": "zeros", "running_mean": "zeros", "running_var": "ones"}
    assert infer_with_params(op, T(*shape)) == T(*shape)


def test_batchnorm_checks():
    with pytest.raises(ShapeError, match="rank 2 or 4"):
        BatchNorm().params([T(2, 3, 4)])
    with pytest.raises(ShapeError, match=r"running_var shape \(4\) does not match channel size 5 of input \(2, 5\) \(expected \(5\)\)"):
        BatchNorm().infer([T(2, 5), T(5), T(5), T(5), T(4)])
    with pytest.raises(ValidationError):
        BatchNorm(eps=0.0)
    with pytest.raises(ValidationError):
        BatchNorm(momentum=1.5)
    assert BatchNorm().momentum == 0.9 and BatchNorm().eps == 1e-5


def test_layernorm_over_last_axis():
    op = LayerNorm()
    params = op.params([T("N", 7, 16)])
    assert {name: (p.shape, p.init.kind, p.trainable) for name, p in params.items()} == {
        "gamma": ((16,), "ones", True), "beta": ((16,), "zeros", True)}
    assert infer_with_params(op, T("N", 7, 16)) == T("N", 7, 16)
    with pytest.raises(ShapeError, match="gamma shape"):
        op.infer([T(2, 16), T(7), T(16)])
    assert op.window([T(1, 2, 3, 4), T(4), T(4)]) is None


# --- losses -------------------------------------------------------------------------------------

def test_class_losses():
    for op in (SoftmaxCrossEntropy(), Hinge(margin=0.5)):
        assert op.infer([T("N", 10), T("N", dtype="int64")]) == T()
        assert op.infer([T(4, 3, dtype="float64"), T(4, dtype="int64")]) == T(dtype="float64")
        with pytest.raises(ShapeError, match="labels must be int64 class indices, got float32"):
            op.infer([T(4, 10), T(4)])
        with pytest.raises(ShapeError, match="N = 4 but labels .* N = 5"):
            op.infer([T(4, 10), T(5, dtype="int64")])
        with pytest.raises(ShapeError, match=r"scores \(N, C\) must have rank 2|must be \(N, C\) and \(N,\), or \(N, T, …, C\) and \(N, T, …\)"):
            op.infer([T(4, 10, 2), T(4, dtype="int64")])


def test_pair_losses():
    for op in (SigmoidCrossEntropy(), MSE(), L1()):
        assert op.infer([T("N", 3, 2, 2), T("N", 3, 2, 2)]) == T()
        with pytest.raises(ShapeError, match=r"\(4, 3\) and targets \(4, 2\)"):
            op.infer([T(4, 3), T(4, 2)])
        with pytest.raises(ShapeError, match="same dtype"):
            op.infer([T(4, 3), T(4, 3, dtype="float64")])
        with pytest.raises(ShapeError, match="targets must be floating point, got int64"):
            op.infer([T(4, 3), T(4, 3, dtype="int64")])
        assert op.window([T(1, 1, 4, 4), T(1, 1, 4, 4)]) is None


def test_l2_penalty_is_variadic():
    op = L2Penalty(strength=1e-3)
    assert op.infer([T(3, 4)]) == T()
    assert op.infer([T(8, 3, 3, 3), T(8), T(72, 10)]) == T()
    assert op.infer([T(8), T(3, dtype="float64")]) == T(dtype="float64")
    assert L2Penalty.arity == (1, None)
    with pytest.raises(ShapeError, match="l2_penalty input 1 must be floating point"):
        op.infer([T(3), T(3, dtype="int64")])
    with pytest.raises(ValidationError):
        L2Penalty(strength=-1.0)
    with pytest.raises(ValidationError):
        L2Penalty()


def test_losses_are_registered_as_losses():
    ours = {"softmax_cross_entropy", "sigmoid_cross_entropy", "mse", "l1", "hinge", "l2_penalty"}
    assert ours <= set(LOSS_KINDS)
    assert not ours & set(LAYER_KINDS)
    assert {"maxpool2d", "avgpool2d", "global_avgpool", "upsample", "leaky_relu", "prelu", "elu", "maxout",
            "dropout", "batchnorm", "layernorm"} <= set(LAYER_KINDS)
    for kind in ours:
        assert BY_KIND[kind].is_loss
        assert BY_KIND[kind].arity[0] >= 1


# --- attribute strictness -----------------------------------------------------------------------

@pytest.mark.parametrize("cls, attrs", [
    (MaxPool2d, {"kernel": "3"}),
    (MaxPool2d, {"kernel": 3.0}),
    (MaxPool2d, {"kernel": True}),
    (MaxPool2d, {"kernel": 0}),
    (MaxPool2d, {"kernel": [2, 2, 2]}),
    (MaxPool2d, {"kernel": 2, "stride": 0}),
    (MaxPool2d, {"kernel": 2, "padding": -1}),
    (MaxPool2d, {"kernel": 2, "padding": "full"}),
    (MaxPool2d, {"kernel": 2, "ceil_mode": "yes"}),
    (MaxPool2d, {"kernel": 2, "size": 2}),
    (AvgPool2d, {"kernel": 2, "count_include_pad": 1}),
    (Upsample, {"scale": 0}),
    (Upsample, {"scale": 1.5}),
    (Upsample, {"mode": "bicubic"}),
    (Maxout, {"pieces": "2"}),
])
def test_invalid_attributes_are_rejected(cls, attrs):
    with pytest.raises(ValidationError):
        cls(**attrs)


def test_lists_become_tuples_and_ops_are_hashable():
    a, b = MaxPool2d(kernel=[2, 3], stride=[1, 2]), MaxPool2d(kernel=(2, 3), stride=(1, 2))
    assert a == b and hash(a) == hash(b)
    assert a != MaxPool2d(kernel=(2, 3))
    with pytest.raises(ValidationError):
        a.kernel = 4  # frozen


def test_every_sample_infers():
    for cls in (MaxPool2d, AvgPool2d, GlobalAvgPool, Upsample, LeakyRelu, PRelu, Elu, Maxout, Dropout, BatchNorm,
                LayerNorm, SoftmaxCrossEntropy, SigmoidCrossEntropy, MSE, L1, Hinge, L2Penalty):
        assert cls.__doc__ and "=" in cls.__doc__, cls.kind
        assert 2 <= len(cls.samples) <= 6, cls.kind  # enough to cover the attributes, few enough to keep the suite quick
        for s in cls.samples:
            op = cls(**s.attrs)
            y = infer_with_params(op, *s.inputs)
            assert y.dtype == s.inputs[0].dtype
            assert (y.rank == 0) == cls.is_loss
