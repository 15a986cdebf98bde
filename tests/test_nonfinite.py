"""NaN and Inf in the data are refused (array name, first bad index) unless --allow-nonfinite; every
JSON graphc writes is strict. Through the real command."""

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent

SPEC = """\
name: tiny
inputs:
  x: {shape: [N, 4]}
  label: {shape: [N], dtype: int64}
layers:
  - {name: fc, op: dense, units: 3}
outputs: {scores: fc}
loss: {op: softmax_cross_entropy, inputs: [fc, label]}
train:
  data: data.npz
  epochs: 2
  batch_size: 8
"""


def graphc(*args, cwd=ROOT):
    return subprocess.run(["graphc", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=600)


def strict_load(path):
    """json.load that refuses NaN/Infinity tokens, as strict parsers do."""
    def refuse(token):
        raise ValueError(f"non-standard JSON token {token}")
    return json.loads(Path(path).read_text(), parse_constant=refuse)


@pytest.fixture
def spec(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(SPEC)
    return path


@pytest.mark.parametrize("command", ["run", "grad"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_inputs_are_refused(tmp_path, spec, command, bad):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 4)).astype(np.float32)
    x[3, 1] = bad
    np.savez(tmp_path / "in.npz", x=x, label=rng.integers(0, 3, 5))
    out = tmp_path / "out.npz"
    r = graphc(command, spec, "--inputs", tmp_path / "in.npz", "--out", out)
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
    assert "--inputs: 'x' is not finite at index [3, 1]" in r.stderr and "--allow-nonfinite" in r.stderr, r.stderr
    assert not out.exists()
    r = graphc(command, spec, "--inputs", tmp_path / "in.npz", "--out", out, "--allow-nonfinite")
    assert r.returncode == 0 and out.exists(), r.stderr


@pytest.mark.parametrize("command, backend", [("run", "numpy"), ("run", "onnxruntime"), ("grad", "numpy"), ("grad", "onnxruntime")])
def test_results_that_overflow_are_written_and_named_in_one_warning(tmp_path, spec, command, backend):
    """Finite inputs whose products overflow float32: the results are written as computed, and one
    warning line in graphc's voice names them, instead of NumPy's RuntimeWarnings with source lines."""
    rng = np.random.default_rng(0)
    x = np.full((5, 4), 3e38, np.float32)
    np.savez(tmp_path / "in.npz", x=x, label=rng.integers(0, 3, 5))
    out = tmp_path / "out.npz"
    r = graphc(command, spec, "--inputs", tmp_path / "in.npz", "--out", out, "--backend", backend)
    assert r.returncode == 0 and out.exists(), r.stderr
    warnings = [line for line in r.stderr.splitlines() if "warning" in line.lower()]
    assert len(warnings) == 1 and warnings[0].startswith("graphc: warning: NaN or ±Inf in "), r.stderr
    assert "RuntimeWarning" not in r.stderr and ".py:" not in r.stderr, r.stderr
    results = dict(np.load(out))
    bad = [name for name, value in results.items() if not np.isfinite(value).all()]
    assert bad, "the case does not overflow"
    first = "output 'scores'" if command == "run" else "result 'loss'"
    assert first in warnings[0] and "written as computed" in warnings[0] and "--float64" in warnings[0], warnings[0]
    if command == "run":
        bad_at = np.argwhere(~np.isfinite(results["scores"]))  # row-major, as the message's "first"
        i, j = bad_at[0]
        assert f"({len(bad_at):,} of 15 values, the first at [{i}, {j}]: {results['scores'][i, j]})" in warnings[0], warnings[0]
    # finite results: no warning at all
    np.savez(tmp_path / "ok.npz", x=rng.standard_normal((5, 4)).astype(np.float32), label=rng.integers(0, 3, 5))
    r = graphc(command, spec, "--inputs", tmp_path / "ok.npz", "--out", tmp_path / "ok_out.npz", "--backend", backend)
    assert r.returncode == 0 and "warning" not in r.stderr.lower(), r.stderr


def test_nonfinite_training_data_is_refused_and_metrics_json_is_strict(tmp_path, spec):
    rng = np.random.default_rng(0)
    x_test = rng.standard_normal((10, 4)).astype(np.float32)
    x_test[2, 0] = np.nan
    np.savez(tmp_path / "data.npz", x_train=rng.standard_normal((40, 4)).astype(np.float32), y_train=rng.integers(0, 3, 40),
             x_test=x_test, y_test=rng.integers(0, 3, 10))
    r = graphc("train", spec, "--out", tmp_path / "run")
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
    assert "train.data (data.npz): 'x_test' is not finite at index [2, 0]" in r.stderr, r.stderr
    assert not (tmp_path / "run").exists()
    r = graphc("train", spec, "--out", tmp_path / "run2", "--allow-nonfinite")
    assert r.returncode == 0, r.stderr
    metrics = strict_load(tmp_path / "run2" / "metrics.json")  # a bare NaN token would fail here
    assert metrics["test_loss"] is None and len(metrics["epochs"]) == 2
    strict_load(tmp_path / "run2" / "run.json")


def test_check_grad_json_is_strict():
    r = graphc("check-grad", ROOT / "specs" / "mlp_digits.yaml", "--json", "--tolerance", "inf")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout, parse_constant=lambda t: pytest.fail(f"non-standard JSON token {t}"))
    assert report["tolerance"] is None  # inf has no JSON spelling: null
