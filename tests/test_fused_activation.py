"""``activation:`` on dense and conv2d: the layer ends in the activation node, the report shows the
activation in the layer's row, values equal the separate layers', and gradients check."""

import json
import subprocess
from pathlib import Path

import numpy as np

from helpers import compile_text

from graphc.backends.interpreter import Program

SPEC = """\
inputs:
  image: {shape: [N, 3, 8, 8]}
  label: {shape: [N], dtype: int64}
layers:
  - {name: c1, op: conv2d, filters: 4, kernel: 3, activation: relu6}
  - {name: f, op: flatten}
  - {name: fc, op: dense, units: 5, activation: gelu}
  - {name: out, op: dense, units: 3}
loss: {op: softmax_cross_entropy, inputs: [out, label]}
"""

SEPARATE = """\
inputs:
  image: {shape: [N, 3, 8, 8]}
layers:
  - {name: c1, op: conv2d, filters: 4, kernel: 3}
  - {name: c1_act, op: relu6}
  - {name: f, op: flatten}
  - {name: fc, op: dense, units: 5}
  - {name: fc_act, op: gelu}
  - {name: out, op: dense, units: 3}
"""


def graphc(*args):
    return subprocess.run(["graphc", *map(str, args)], capture_output=True, text=True, timeout=120)


def test_report_row_shows_the_activation_and_its_node(tmp_path):
    spec = tmp_path / "act.yaml"
    spec.write_text(SPEC)
    r = graphc("compile", spec, "--json")
    assert r.returncode == 0, r.stderr
    rows = {row["name"]: row for row in json.loads(r.stdout)["layers"]}
    assert rows["c1"]["attributes_text"] == "4 k3 s1 p0 relu6"
    assert rows["c1"]["attributes"]["activation"] == "relu6"
    assert [p["name"] for p in rows["c1"]["parts"]] == ["c1/conv", "c1"]
    assert [p["op"] for p in rows["c1"]["parts"]] == ["conv2d", "relu6"]
    assert rows["fc"]["attributes_text"] == "5 gelu"
    assert rows["fc"]["attributes"]["activation"] == "gelu"
    assert [p["op"] for p in rows["fc"]["parts"]][-1] == "gelu"
    assert rows["c1"]["params"] == 4 * 3 * 9 + 4 and rows["c1"]["receptive_field"]["size"] == [3, 3]
    assert rows["c1"]["macs"] == 4 * 6 * 6 * 3 * 9  # the activation adds no MACs
    text = graphc("compile", spec).stdout
    assert "conv2d 4 k3 s1 p0 relu6" in text and "dense 5 gelu" in text


def test_values_equal_the_separate_layers():
    fused, separate = compile_text(SPEC), compile_text(SEPARATE)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 8, 8)) * 3
    params = {n: rng.standard_normal(a["type"].shape) for n, a in fused.nodes(data=True) if a["role"] == "param"}
    got = Program(fused, ["c1", "out"]).run({"image": x, **params})
    want = Program(separate, ["c1_act", "out"]).run({"image": x, **params})
    assert got["c1"].max() > 0 and np.all(got["c1"] <= 6) and got["c1"].max() == 6.0  # the cap was reached
    np.testing.assert_allclose(got["c1"], want["c1_act"])
    np.testing.assert_allclose(got["out"], want["out"])


def test_check_grad_passes(tmp_path):
    spec = tmp_path / "act.yaml"
    spec.write_text(SPEC.replace("relu6", "silu"))
    r = graphc("check-grad", spec, "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)["ok"] is True


def test_unknown_activation_is_one_located_line(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text(SPEC.replace("activation: gelu", "activation: gleu"))
    r = graphc("compile", spec)
    assert r.returncode == 65 and "Traceback" not in r.stderr
    assert r.stderr.startswith(f"{spec}:7:") and "gelu" in r.stderr, r.stderr
