"""`graphc compile`: structured attributes in --json, trainable and byte columns, --depth, through the real command."""

import json
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"

SAME = """\
inputs: {image: {shape: [N, 3, 32, 32]}}
layers:
  - {name: conv, op: conv2d, filters: 16, kernel: 4, stride: 2, padding: same}
  - {name: bn, op: batchnorm}
  - {name: pool, op: maxpool2d, kernel: 3, stride: 1, padding: valid}
"""


def graphc(*args, cwd=ROOT):
    return subprocess.run(["graphc", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=600)


def rows(report):
    return {r["name"]: r for r in report["layers"]}


def test_json_attributes_are_fields_with_resolved_padding(tmp_path):
    spec = tmp_path / "same.yaml"
    spec.write_text(SAME)
    r = graphc("compile", spec, "--json")
    assert r.returncode == 0, r.stderr
    by = rows(json.loads(r.stdout))
    conv = by["conv"]
    assert conv["attributes_text"] == "16 k4 s2 psame"
    expected = {"filters": 16, "kernel": 4, "stride": 2, "padding": "same", "dilation": 1, "groups": 1, "bias": True,
                "padding_resolved": [[1, 1], [1, 1]]}
    assert {k: conv["attributes"].get(k) for k in expected} == expected
    # 32 rows, stride 2, kernel 4: ceil(32/2) = 16 outputs need (16−1)·2 + 4 − 32 = 2 rows of padding
    assert conv["shape"] == ["N", 16, 16, 16]
    assert by["pool"]["attributes"]["padding_resolved"] == [[0, 0], [0, 0]]
    assert by["bn"]["attributes"] == {"momentum": 0.9, "eps": 1e-5}


def test_trainable_and_parameter_bytes(tmp_path):
    spec = tmp_path / "same.yaml"
    spec.write_text(SAME)
    report = json.loads(graphc("compile", spec, "--json").stdout)
    bn = rows(report)["bn"]
    assert (bn["params"], bn["params_trainable"], bn["param_bytes"]) == (64, 32, 256)
    assert rows(report)["conv"]["param_bytes"] == (16 * 3 * 16 + 16) * 4
    assert report["param_bytes_total"] == 4 * report["params_total"]
    table = graphc("compile", spec).stdout.splitlines()
    assert table[1].split()[:7] == ["layer", "op", "output", "shape", "params", "trainable", "param"]
    bn_line = next(line for line in table if line.startswith("bn "))
    assert "64" in bn_line and "32" in bn_line and "256 B" in bn_line
    assert "(3.3 KiB)" in table[-3]


def test_depth_opens_outer_instances_only():
    spec = SPECS / "resnet20_cifar.yaml"
    names = {d: [r["name"] for r in json.loads(graphc("compile", spec, "--json", "--depth", d).stdout)["layers"]] for d in (0, 1, 2)}
    expanded = [r["name"] for r in json.loads(graphc("compile", spec, "--json", "--expand").stdout)["layers"]]
    assert "layer2" in names[0] and "layer2.b0" not in names[0]
    assert "layer2.b0" in names[1] and "layer2.rest" in names[1] and "layer2.b0.conv1" not in names[1]
    assert "layer2.b0.conv1" in names[2] and "layer2.rest.0" in names[2]
    assert len(names[0]) < len(names[1]) < len(names[2]) <= len(expanded)
    table = graphc("compile", spec, "--depth", "1").stdout
    assert "\nlayer2.b0 " in table
    bad = graphc("compile", spec, "--depth", "x")
    assert bad.returncode == 2 and "not a number of levels" in bad.stderr


def _files(tmp_path):
    """Real files of each format, written by the libraries that make them."""
    import bz2
    import gzip
    import zipfile

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig = plt.figure(figsize=(1, 1))
    fig.savefig(tmp_path / "plot.png")
    fig.savefig(tmp_path / "plot.pdf")
    plt.close(fig)
    np.savez(tmp_path / "arrays.npz", x=np.zeros(3))
    np.save(tmp_path / "array.npy", np.zeros(3))
    spec = (SPECS / "lenet5.yaml").read_bytes()
    (tmp_path / "lenet5.yaml.gz").write_bytes(gzip.compress(spec))
    (tmp_path / "lenet5.yaml.bz2").write_bytes(bz2.compress(spec))
    with zipfile.ZipFile(tmp_path / "specs.zip", "w") as z:
        z.writestr("lenet5.yaml", spec)
    return {
        tmp_path / "plot.png": "this is a PNG image",
        tmp_path / "plot.pdf": "this is a PDF document",
        tmp_path / "arrays.npz": "this is a NumPy .npz archive",
        tmp_path / "array.npy": "this is a NumPy .npy array",
        tmp_path / "lenet5.yaml.gz": "this is gzip-compressed data",
        tmp_path / "lenet5.yaml.bz2": "this is bzip2-compressed data",
        tmp_path / "specs.zip": "this is a zip archive",
    }


def test_non_yaml_files_are_named_by_what_they_are(tmp_path):
    for path, message in _files(tmp_path).items():
        r = graphc("compile", path)
        assert r.returncode == 65, (path, r.stderr)
        line = r.stderr.strip()
        assert line.startswith(f"{path}:1:1: error: {message}") and "\n" not in line and "UTF-8" not in line, line
        assert "Traceback" not in r.stderr


def test_an_onnx_model_larger_than_the_spec_limit_is_imported(tmp_path):
    """An ONNX file is a model to import (graphc import), not a YAML file: the 4 MiB limit of specs is not its limit."""
    model = tmp_path / "mobilenet.onnx"
    assert graphc("export", SPECS / "mobilenet.yaml", "-o", model).returncode == 0
    assert model.stat().st_size > 4 << 20
    r = graphc("compile", model)
    assert r.returncode == 0 and "1,360,586 total" in r.stdout, r.stderr


def test_an_onnx_model_named_in_include_is_named_by_what_it_is(tmp_path):
    model = tmp_path / "lenet.onnx"
    assert graphc("export", SPECS / "mlp_digits.yaml", "-o", model).returncode == 0
    spec = tmp_path / "spec.yaml"
    spec.write_text("include: [lenet.onnx]\n" + (SPECS / "mlp_digits.yaml").read_text())
    r = graphc("compile", spec)
    assert r.returncode == 65 and "this is an ONNX model (IR version 10, produced by graphc), not a YAML spec file" in r.stderr, r.stderr
    assert "graphc import" in r.stderr


def test_latin1_text_still_says_utf8(tmp_path):
    spec = tmp_path / "latin1.yaml"
    spec.write_bytes("name: caf\xe9\n".encode("latin-1"))
    r = graphc("compile", spec)
    assert r.returncode == 65 and "not UTF-8 text" in r.stderr


def test_resnet_downsampling_shortcut_is_not_warned_about():
    """A 1×1 stride-2 shortcut reads every other row by design: the README's first command is quiet."""
    r = graphc("compile", SPECS / "resnet18.yaml")
    assert r.returncode == 0, r.stderr
    assert "warning" not in r.stderr, r.stderr


WINDOWS = """\
name: windows
inputs:
  x: {shape: [N, 3, 9, 9]}
  u: {shape: [N, 3, 10, 10]}
blocks:
  down:
    layers:
      - {name: c, op: conv2d, filters: 4, kernel: 2, stride: 2}
layers:
  - {name: b1, block: down, inputs: [x]}
  - {name: s, op: conv2d, filters: 4, kernel: 1, stride: 3, inputs: [x]}
  - {name: t, op: conv2d, filters: 4, kernel: 2, stride: 3, inputs: [u]}
outputs: {y: b1, z: s, w: t}
"""


def test_window_warnings_say_what_happens_and_where_the_block_was_called(tmp_path):
    spec = tmp_path / "windows.yaml"
    spec.write_text(WINDOWS)
    r = graphc("compile", spec)
    assert r.returncode == 0, r.stderr
    warnings = [line for line in r.stderr.splitlines() if ": warning: " in line]
    # b1.c: inside the block, at the block's line and at the call site
    assert [w for w in warnings if "'b1.c'" in w] == [
        f"{spec}:8:9: warning: 'b1.c': conv2d windows do not tile the input along {axis}: (9 + 0 − 2)/2 + 1 = 9/2 is not an "
        f"integer; the last 1 input {axis}(s) are never read (choose padding or stride so that (n + 2p − k) is divisible by s) "
        f"(in 'b1', called at {spec}:10:5)" for axis in ("row", "col")]
    assert not [w for w in warnings if "'s'" in w]  # 1×1 stride 3 on 9: every window skips 2 rows, the end too
    t = [w for w in warnings if "'t'" in w]
    assert len(t) == 2 and all(w.startswith(f"{spec}:12:5: warning: ") for w in t)
    assert "windows (2 row(s) wide, stride 3) skip 1 input row(s) between windows, and the last 2 input row(s) after the last window are never read" in t[0]
    assert len(warnings) == 4, warnings
