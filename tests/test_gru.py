"""gru: PyTorch's nn.GRU equations (gate order r, z, n; the reset gate inside the hidden projection's
n block, both biases), its parameter count, and both output modes, against a NumPy reference
written in PyTorch's layout (weight_ih (3H, D), weight_hh (3H, H), bias_ih, bias_hh)."""

import numpy as np
import pytest

from helpers import compile_text, report_of
from graphc.backends.run import run_forward

SPEC = """
name: gru_seq
inputs:
  seq: {{shape: [N, 4, 3]}}
layers:
  - {{name: gru, op: gru, hidden: 5, return_sequences: {seq}}}
outputs: {{h: gru}}
"""


def sigmoid(a):
    return 1 / (1 + np.exp(-a))


def torch_gru(x, weight_ih, weight_hh, bias_ih, bias_hh):
    """PyTorch's documented nn.GRU recurrence, one step at a time (batch_first, h_0 = 0)."""
    n, steps, _ = x.shape
    hid = weight_hh.shape[1]
    h, out = np.zeros((n, hid)), []
    for t in range(steps):
        gi = x[:, t] @ weight_ih.T + bias_ih
        gh = h @ weight_hh.T + bias_hh
        r = sigmoid(gi[:, :hid] + gh[:, :hid])
        z = sigmoid(gi[:, hid:2 * hid] + gh[:, hid:2 * hid])
        cand = np.tanh(gi[:, 2 * hid:] + r * gh[:, 2 * hid:])
        h = (1 - z) * cand + z * h
        out.append(h)
    return np.stack(out, axis=1)


@pytest.mark.parametrize("seq", [False, True])
def test_gru_is_pytorchs_recurrence(seq):
    graph = compile_text(SPEC.format(seq=str(seq).lower()))
    rng = np.random.default_rng(1)
    d, hid = 3, 5
    w_ih, w_hh = rng.standard_normal((3 * hid, d)), rng.standard_normal((3 * hid, hid))
    b_ih, b_hh = rng.standard_normal(3 * hid), rng.standard_normal(3 * hid)  # non-zero: both biases matter
    x = rng.standard_normal((2, 4, d))
    params = {"gru.wx": w_ih.T, "gru.wh": w_hh.T, "gru.bx": b_ih, "gru.bh": b_hh}
    got = run_forward(graph, {"seq": x}, params, dtype=np.float64)["h"]
    want = torch_gru(x, w_ih, w_hh, b_ih, b_hh)
    np.testing.assert_allclose(got, want if seq else want[:, -1], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("seq,shape", [(False, ["N", 5]), (True, ["N", 4, 5])])
def test_gru_has_pytorchs_parameter_count_and_shapes(seq, shape):
    report = report_of(SPEC.format(seq=str(seq).lower()))
    d, hid = 3, 5
    assert report["params_trainable"] == 3 * hid * (d + hid) + 6 * hid == 150
    row = next(r for r in report["layers"] if r["name"] == "gru")
    assert row["shape"] == shape
