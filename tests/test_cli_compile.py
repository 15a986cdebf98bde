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
