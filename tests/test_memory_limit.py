"""Commands that allocate first estimate, with Python integers, the memory they need, and refuse
above --max-memory naming the figure and the largest tensor. Run under RLIMIT_AS: a regression that
allocates fails instead of swapping."""

import numpy as np
import pytest

import graphc
from cli_safety import graphc as run_graphc
from cli_safety import refused, snapshot, zip_bomb
from graphc.ir.autodiff import training_graph
from graphc.ir.memory import estimate_memory, format_bytes, parse_bytes

SPEC = """\
inputs:
  x: {shape: [N, 4]}
  label: {shape: [N], dtype: int64}
layers:
  - {name: fc1, op: dense, units: UNITS}
  - {name: act, op: relu}
  - {name: fc2, op: dense, units: 3}
loss: {op: softmax_cross_entropy, inputs: [fc2, label]}
"""
LIMIT = 1024**3  # address space of the command: enough for graphc, far less than the refused runs


def setup(tmp_path, units=8):
    (tmp_path / "spec.yaml").write_text(SPEC.replace("UNITS", str(units)))
    np.savez(tmp_path / "in.npz", x=np.ones((3, 4), np.float32), label=np.array([0, 1, 2]))
    return snapshot(tmp_path)


def test_the_estimate_is_the_peak_of_live_tensors(tmp_path):
    setup(tmp_path)
    graph = graphc.compile_spec(tmp_path / "spec.yaml")
    # fed: x (2·4) + fc1 (4·8 + 8) + fc2 (8·3 + 3) floats; then fc1/matmul and fc1 (2·8 each) are live
    # together with the fed values, the matmul freed once the bias is added
    fed = 4 * (2 * 4 + 4 * 8 + 8 + 8 * 3 + 3) + 8 * 2
    est = estimate_memory(graph, {"N": 2})
    assert est.fed == fed and est.peak == fed + 2 * 4 * 2 * 8
    assert (est.largest, est.largest_bytes) == ("fc1.weight", 128)
    # training: the forward activations the backward pass reads stay alive, so more is needed
    assert estimate_memory(training_graph(graph), {"N": 2}).peak > est.peak
    assert estimate_memory(graph, {"N": 2}, float_bytes=8).peak > est.peak


def test_a_layer_of_2_to_the_40_units_is_refused_before_allocating(tmp_path):
    before = setup(tmp_path, units=2**40)
    for command in ("run", "grad"):
        r = run_graphc(command, "spec.yaml", "--inputs", "in.npz", "--out", "out.npz", cwd=tmp_path, memory_limit=LIMIT)
        refused(r, f"graphc: error: {command} needs about", "more than --max-memory",
                "the largest tensor is 'fc1.weight' (4, 1099511627776) float32, 16 TiB")
        assert snapshot(tmp_path) == before


def test_a_batch_bound_by_the_inputs_headers_is_refused_before_reading_them(tmp_path):
    before = setup(tmp_path)
    zip_bomb(tmp_path / "in.npz", "x", (150_000_000, 4))
    before = snapshot(tmp_path)
    r = run_graphc("run", "spec.yaml", "--inputs", "in.npz", "--out", "out.npz", "--max-memory", "1GiB", cwd=tmp_path, memory_limit=LIMIT)
    refused(r, "run needs about 11.2 GiB (12,000,000,268 bytes), more than --max-memory 1 GiB",
            "the largest tensor is 'fc1/matmul' (N=150000000, 8) float32, 4.47 GiB")
    assert snapshot(tmp_path) == before


def test_check_grad_with_a_batch_of_2_to_the_40_is_refused(tmp_path):
    setup(tmp_path)
    r = run_graphc("check-grad", "spec.yaml", "--batch", 2**40, cwd=tmp_path, memory_limit=LIMIT)
    refused(r, "check-grad --batch 1099511627776 needs about", "the largest tensor is", "float64")


def test_check_grad_at_a_small_batch_still_runs_under_the_limit(tmp_path):
    setup(tmp_path)
    r = run_graphc("check-grad", "spec.yaml", "--batch", 4, "--max-memory", "64MiB", cwd=tmp_path, memory_limit=LIMIT)
    assert r.returncode == 0, r.stderr


def test_export_with_parameters_is_refused_without_them_it_is_not(tmp_path):
    before = setup(tmp_path, units=2**40)
    r = run_graphc("export", "spec.yaml", "-o", "model.onnx", cwd=tmp_path, memory_limit=LIMIT)
    refused(r, "export with parameters embedded needs about", "'fc1.weight' (4, 1099511627776) float32")
    assert snapshot(tmp_path) == before
    r = run_graphc("export", "spec.yaml", "-o", "model.onnx", "--no-params", cwd=tmp_path, memory_limit=LIMIT)
    assert r.returncode == 0, r.stderr


def test_max_memory_takes_sizes_with_units(tmp_path):
    setup(tmp_path)
    ok = run_graphc("run", "spec.yaml", "--inputs", "in.npz", "--out", "out.npz", "--max-memory", "4GiB", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    tight = run_graphc("run", "spec.yaml", "--inputs", "in.npz", "--out", "out.npz", "--max-memory", "100B", cwd=tmp_path)
    refused(tight, "more than --max-memory 100 B")
    bad = run_graphc("run", "spec.yaml", "--inputs", "in.npz", "--out", "out.npz", "--max-memory", "lots", cwd=tmp_path)
    assert bad.returncode == 2 and "expected a size such as 4GiB" in bad.stderr


@pytest.mark.parametrize("text, value", [("4GiB", 4 * 2**30), ("512MiB", 512 * 2**20), ("8GB", 8 * 10**9), ("2G", 2 * 2**30),
                                         ("1000", 1000), ("1.5 KiB", 1536)])
def test_parse_bytes(text, value):
    assert parse_bytes(text) == value


def test_format_bytes():
    assert [format_bytes(n) for n in (100, 1536, 12_000_000_268, 2**44)] == ["100 B", "1.5 KiB", "11.2 GiB", "16 TiB"]


TRAIN = """\
inputs:
  x: {shape: [N, 64]}
  label: {shape: [N], dtype: int64}
layers:
  - {name: fc1, op: dense, units: UNITS}
  - {name: act, op: relu}
  - {name: fc2, op: dense, units: 10}
loss: {op: softmax_cross_entropy, inputs: [fc2, label]}
train: {epochs: 1}
"""


def test_train_with_a_layer_of_2_to_the_40_units_is_refused_before_any_run_directory(tmp_path):
    (tmp_path / "spec.yaml").write_text(TRAIN.replace("UNITS", str(2**40)))
    before = snapshot(tmp_path)
    r = run_graphc("train", "spec.yaml", cwd=tmp_path, memory_limit=2 * LIMIT, timeout=120)
    refused(r, "train (a step at batch_size 64) needs about", "the largest tensor is 'fc1.weight' (64, 1099511627776) float32, 256 TiB")
    assert snapshot(tmp_path) == before


def test_train_checks_the_evaluation_batch_too(tmp_path):
    (tmp_path / "spec.yaml").write_text(TRAIN.replace("UNITS", "16"))
    before = snapshot(tmp_path)
    r = run_graphc("train", "spec.yaml", "--max-memory", "100KiB", cwd=tmp_path, memory_limit=2 * LIMIT, timeout=120)
    refused(r, "train (an evaluation at eval_batch_size 1024) needs about 397 KiB (406,248 bytes), more than --max-memory 100 KiB",
            "the largest tensor is 'x' (N=1024, 64) float32, 256 KiB")
    assert snapshot(tmp_path) == before
