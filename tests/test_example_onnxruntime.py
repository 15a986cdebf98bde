"""examples/train_with_onnxruntime.py drives graphc's exported training step with plain onnxruntime, and
`export --training` lists the step's inputs as a table (through the real commands)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "examples" / "train_with_onnxruntime.py"

DROPOUT = """\
inputs:
  x: {shape: [N, 64]}
  label: {shape: [N], dtype: int64}
layers:
  - {name: fc1, op: dense, units: 100}
  - {name: relu1, op: relu}
  - {name: drop, op: dropout, p: 0.2}
  - {name: fc2, op: dense, units: 10}
loss: {op: softmax_cross_entropy, inputs: [fc2, label]}
"""


def run(*args):
    return subprocess.run([*map(str, args)], capture_output=True, text=True, cwd=ROOT, timeout=300)


def table(stderr: str) -> dict[str, list[str]]:
    """The export's input table: name -> [shape, dtype, role, default]."""
    lines = stderr.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:2] == ["input", "shape"])
    rows = {}
    for line in lines[start + 2:]:
        cells = re.split(r"\s{2,}", line.strip())
        rows[cells[0]] = cells[1:]
    return rows


@pytest.mark.parametrize("spec,optimizer,extra", [
    ("specs/mlp_digits.yaml", "adam", []),
    ("dropout.yaml", "momentum", ["--dropout", "0.2", "--lr", "0.05"]),
])
def test_plain_onnxruntime_loop_lowers_the_loss(tmp_path, spec, optimizer, extra):
    if spec == "dropout.yaml":
        spec = tmp_path / spec
        spec.write_text(DROPOUT)
    model = tmp_path / "model.train.onnx"
    export = run("graphc", "export", spec, "-o", model, "--training", "--optimizer", optimizer)
    assert export.returncode == 0, export.stderr
    inputs = table(export.stderr)
    assert inputs["x"] == ["(N, 64)", "float32", "data", "-"] and inputs["label"] == ["(N)", "int64", "label", "-"]
    assert inputs["fc1.weight"] == ["(64, 100)", "float32", "parameter", "embedded"]
    assert inputs["lr"] == ["()", "float32", "learning rate", "-"]
    slot = "m" if optimizer == "adam" else "velocity"
    assert inputs[f"state/fc1.weight/{slot}"] == ["(64, 100)", "float32", f"optimiser state ({slot})", "-"]
    if "--dropout" in extra:
        assert inputs["drop.mask"] == ["(N, 100)", "float32", "dropout mask", "-"]
    r = run(sys.executable, SCRIPT, model, "--steps", "60", *extra)
    assert r.returncode == 0, r.stderr
    losses = [float(m) for m in re.findall(r"^step +\d+ +loss ([\d.]+)$", r.stdout, re.M)]
    assert len(losses) == 60
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < first / 3, (first, last)


def test_the_script_refuses_a_step_without_an_optimizer(tmp_path):
    model = tmp_path / "grads.onnx"
    assert run("graphc", "export", "specs/mlp_digits.yaml", "-o", model, "--training").returncode == 0
    r = run(sys.executable, SCRIPT, model, "--steps", "2")
    assert r.returncode == 1 and "export it with --training --optimizer KIND" in r.stderr
