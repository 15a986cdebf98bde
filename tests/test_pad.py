"""The pad layer's modes and per-side padding on conv and pooling: the order is {top, bottom, left,
right}, a list of four is refused with a hint, and per-side conv padding equals pad + unpadded conv."""

import subprocess

import numpy as np

from helpers import compile_text

from graphc.backends.interpreter import Program
from graphc.ops.pad import Pad

ROW = np.arange(4.0).reshape(1, 1, 1, 4)


def test_modes_along_a_row():
    pad = {"left": 2, "right": 2}
    np.testing.assert_array_equal(Pad(padding=pad).forward(ROW)[0, 0, 0], [0, 0, 0, 1, 2, 3, 0, 0])
    np.testing.assert_array_equal(Pad(padding=pad, value=-1.0).forward(ROW)[0, 0, 0], [-1, -1, 0, 1, 2, 3, -1, -1])
    np.testing.assert_array_equal(Pad(padding=pad, mode="reflect").forward(ROW)[0, 0, 0], [2, 1, 0, 1, 2, 3, 2, 1])
    np.testing.assert_array_equal(Pad(padding=pad, mode="edge").forward(ROW)[0, 0, 0], [0, 0, 0, 1, 2, 3, 3, 3])


def test_sides_go_where_they_are_named():
    y = Pad(padding={"top": 1, "bottom": 2, "left": 3, "right": 4}).forward(np.ones((1, 1, 2, 2)))
    assert y.shape == (1, 1, 5, 9)
    assert y[0, 0, 1:3, 3:5].sum() == 4 and y.sum() == 4


def graphc(*args):
    return subprocess.run(["graphc", *map(str, args)], capture_output=True, text=True, timeout=120)


def test_a_list_of_four_is_refused_with_the_named_form(tmp_path):
    spec = tmp_path / "four.yaml"
    spec.write_text("inputs:\n  image: {shape: [N, 3, 8, 8]}\nlayers:\n"
                    "  - {name: c, op: conv2d, filters: 2, kernel: 3, padding: [0, 1, 0, 1]}\n")
    r = graphc("compile", spec)
    assert r.returncode == 65 and "Traceback" not in r.stderr and r.stdout == ""
    assert r.stderr.startswith(f"{spec}:4:") and "ambiguous" in r.stderr and "{top: …, bottom: …, left: …, right: …}" in r.stderr, r.stderr


def test_unknown_side_is_refused(tmp_path):
    spec = tmp_path / "side.yaml"
    spec.write_text("inputs:\n  image: {shape: [N, 3, 8, 8]}\nlayers:\n"
                    "  - {name: p, op: pad, padding: {up: 1}}\n")
    r = graphc("compile", spec)
    assert r.returncode == 65 and "'up' is not one of top, bottom, left, right" in r.stderr, r.stderr


PER_SIDE = """\
inputs:
  image: {shape: [N, 2, 7, 6]}
layers:
  - {name: c, op: conv2d, filters: 3, kernel: 3, stride: 2, padding: {top: 0, bottom: 1, left: 1, right: 0}}
  - {name: m, op: maxpool2d, kernel: 2, stride: 1, padding: {bottom: 1, right: 1}, inputs: [image]}
outputs: {c: c, m: m}
"""
EXPLICIT = """\
inputs:
  image: {shape: [N, 2, 7, 6]}
layers:
  - {name: p, op: pad, padding: {top: 0, bottom: 1, left: 1, right: 0}}
  - {name: c, op: conv2d, filters: 3, kernel: 3, stride: 2}
"""


def test_per_side_conv_padding_is_pad_then_conv_and_the_report_shows_it(tmp_path):
    a, b = compile_text(PER_SIDE), compile_text(EXPLICIT)
    assert a.nodes["c"]["type"].shape == ("N", 3, 3, 3)  # floor((7 + 1 − 3)/2) + 1, floor((6 + 1 − 3)/2) + 1 == b.nodes["c"]["type"].shape
    assert a.nodes["m"]["type"].shape == ("N", 2, 7, 6)  # 'same'-sized by padding the bottom/right only
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 2, 7, 6))
    params = {n: rng.standard_normal(t["type"].shape) for n, t in a.nodes(data=True) if t["role"] == "param"}
    np.testing.assert_allclose(Program(a, ["c"]).run({"image": x, **params})["c"], Program(b, ["c"]).run({"image": x, **params})["c"])
    spec = tmp_path / "per_side.yaml"
    spec.write_text(PER_SIDE)
    out = graphc("compile", spec).stdout
    assert "conv2d 3 k3 s2 p[t0 b1 l1 r0]" in out, out
