"""conv1d, maxpool1d and avgpool1d against direct loops over PyTorch's definitions (per-side padding,
'same', dilation, groups, count_include_pad, ceil mode), and 1-D padding written ambiguously refused."""

import numpy as np
import pytest

from cli_safety import graphc, refused
from op_harness import one_op_graph
from graphc.backends.onnx_export import export_model
from graphc.ops.base import sample
from graphc.ops.conv1d import AvgPool1d, Conv1d, MaxPool1d

RNG = np.random.default_rng(0)


def conv1d_loops(x, w, b, stride, left, right, dilation, groups):
    n, c, length = x.shape
    o, cg, k = w.shape
    xp = np.concatenate([np.zeros((n, c, left)), x, np.zeros((n, c, right))], axis=2)
    out = (xp.shape[2] - dilation * (k - 1) - 1) // stride + 1
    y = np.zeros((n, o, out))
    for oc in range(o):
        g = oc // (o // groups)
        for i in range(out):
            for ci in range(cg):
                for u in range(k):
                    y[:, oc, i] += w[oc, ci, u] * xp[:, g * cg + ci, stride * i + dilation * u]
        y[:, oc] += 0 if b is None else b[oc]
    return y


@pytest.mark.parametrize("attrs,left,right", [
    ({"filters": 4, "kernel": 3, "padding": {"left": 2}}, 2, 0),
    ({"filters": 6, "kernel": 2, "stride": 2, "dilation": 3, "groups": 3, "padding": 1}, 1, 1),
    ({"filters": 4, "kernel": 4, "stride": 2, "padding": "same"}, 1, 2),  # ceil(11/2) = 6 outputs: 3 padded, the extra one at the end
])
def test_conv1d_is_the_direct_sum(attrs, left, right):
    op = Conv1d(**attrs)
    x = RNG.standard_normal((2, 6, 11))
    w = RNG.standard_normal((attrs["filters"], 6 // op.groups, op.kernel))
    b = RNG.standard_normal(attrs["filters"])
    assert op._pads(11) == (left, right)
    want = conv1d_loops(x, w, b, op.stride, left, right, op.dilation, op.groups)
    np.testing.assert_allclose(op.forward(x, w, b), want, rtol=1e-12, atol=1e-12)


def test_maxpool1d_and_avgpool1d_are_the_window_max_and_mean():
    x = RNG.standard_normal((2, 3, 9))
    # maxpool k3 s2 p1: windows over −∞-padded positions −1..9
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1)), constant_values=-np.inf)
    want = np.stack([xp[:, :, 2 * i:2 * i + 3].max(axis=2) for i in range(5)], axis=2)
    np.testing.assert_array_equal(MaxPool1d(kernel=3, stride=2, padding=1).forward(x), want)
    # avgpool k3 s2, padding right 2, not counted: the last window [8, 11) holds one real position
    got = AvgPool1d(kernel=3, stride=2, padding={"right": 2}).forward(x)
    want = np.stack([x[:, :, 2 * i:min(2 * i + 3, 9)].mean(axis=2) for i in range(5)], axis=2)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    counted = AvgPool1d(kernel=3, stride=2, padding={"right": 2}, count_include_pad=True).forward(x)
    np.testing.assert_allclose(counted, np.stack([x[:, :, 2 * i:2 * i + 3].sum(axis=2) / 3 for i in range(5)], axis=2), rtol=1e-12)


def test_dilated_maxpool1d_in_ceil_mode_has_pytorchs_length():
    # PyTorch: floor/ceil((L + 2p − d(k − 1) − 1)/s) + 1, the last window starting inside the input: ceil((10 + 0 − 2 − 1)/2) + 1 = 5
    assert MaxPool1d(kernel=2, stride=2, dilation=2, ceil_mode=True).forward(RNG.standard_normal((1, 1, 10))).shape == (1, 1, 5)


@pytest.mark.parametrize("padding,message", [
    ("[1, 2]", "a 1-D padding is one int (both sides), {left: …, right: …}, 'same' or 'valid', not a list"),
    ("{top: 1}", "padding side 'top' is not one of left, right"),
])
def test_a_1d_padding_in_another_form_is_refused_at_its_position(tmp_path, padding, message):
    (tmp_path / "spec.yaml").write_text("name: s\ninputs:\n  x: {shape: [N, 2, 8]}\nlayers:\n"
                                        f"  - {{name: c, op: conv1d, filters: 2, kernel: 3, padding: {padding}}}\n")
    refused(graphc("compile", "spec.yaml", cwd=tmp_path), "spec.yaml:5:", message)


def test_conv1d_refuses_an_nchw_image(tmp_path):
    (tmp_path / "spec.yaml").write_text("name: s\ninputs:\n  x: {shape: [N, 2, 8, 8]}\nlayers:\n"
                                        "  - {name: c, op: conv1d, filters: 2, kernel: 3}\n")
    refused(graphc("compile", "spec.yaml", cwd=tmp_path), "conv1d input (N, C, L) must have rank 3, got shape (N, 2, 8, 8)")


def test_conv1d_lowers_to_a_1d_onnx_conv_and_the_pools_to_unit_height_pools():
    graph, out = one_op_graph(Conv1d, sample({"filters": 2, "kernel": 3, "stride": 2, "padding": {"left": 2}, "dilation": 2}, (1, 3, 9)))
    conv = [n for n in export_model(graph, [out]).graph.node if n.op_type == "Conv"]
    assert len(conv) == 1
    attrs = {a.name: list(a.ints) for a in conv[0].attribute if a.ints}
    assert attrs == {"kernel_shape": [3], "strides": [2], "dilations": [2], "pads": [2, 0]}
    graph, out = one_op_graph(MaxPool1d, sample({"kernel": 3, "stride": 2}, (1, 3, 9)))
    ops = [n.op_type for n in export_model(graph, [out]).graph.node]
    assert ops[0] == "Unsqueeze" and "MaxPool" in ops and ops[-1] == "Squeeze"
