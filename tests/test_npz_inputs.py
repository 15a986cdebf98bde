""".npz inputs are checked against the spec from their headers, before anything is inflated."""

import numpy as np

from cli_safety import graphc, refused, snapshot, zip_bomb

SPEC = """\
inputs:
  x: {shape: [N, 4]}
  label: {shape: [N], dtype: int64}
layers:
  - {name: fc, op: dense, units: 3}
loss: {op: softmax_cross_entropy, inputs: [fc, label]}
"""
#: the address space the command may use: enough for graphc, far less than the bombs inflate to
LIMIT = 1024**3


def setup(tmp_path):
    (tmp_path / "spec.yaml").write_text(SPEC)
    return snapshot(tmp_path)


def test_a_small_file_of_gigabytes_with_the_wrong_shape_is_refused_unread(tmp_path):
    assert zip_bomb(tmp_path / "in.npz", "x", (10, 60_000_000)) > 2 * LIMIT
    before = setup(tmp_path)
    for command in ("run", "grad"):
        r = graphc(command, "spec.yaml", "--inputs", "in.npz", "--out", "out.npz", cwd=tmp_path, memory_limit=LIMIT)
        refused(r, "--inputs: 'x' has shape (10, 60000000), the spec declares (N, 4)")
        assert snapshot(tmp_path) == before


def test_a_small_file_of_gigabytes_with_the_wrong_dtype_is_refused_unread(tmp_path):
    zip_bomb(tmp_path / "in.npz", "label", (600_000_000,), "<f4")
    before = setup(tmp_path)
    r = graphc("grad", "spec.yaml", "--inputs", "in.npz", "--out", "out.npz", cwd=tmp_path, memory_limit=LIMIT)
    refused(r, "--inputs: 'label' has dtype float32, the spec declares int64")
    assert snapshot(tmp_path) == before


def test_inconsistent_symbolic_sizes_are_refused_from_the_headers(tmp_path):
    np.savez(tmp_path / "in.npz", x=np.zeros((5, 4), np.float32), label=np.zeros(6, np.int64))
    setup(tmp_path)
    r = graphc("grad", "spec.yaml", "--inputs", "in.npz", "--out", "out.npz", cwd=tmp_path)
    refused(r, "--inputs: 'label' has N = 6, but another input has N = 5")
    assert not (tmp_path / "out.npz").exists()


def test_a_directory_as_inputs_says_it_is_a_directory(tmp_path):
    (tmp_path / "in.npz").mkdir()
    before = setup(tmp_path)
    r = graphc("run", "spec.yaml", "--inputs", "in.npz", "--out", "out.npz", cwd=tmp_path)
    refused(r, "--inputs: in.npz is a directory, expected an .npz file of arrays")
    assert snapshot(tmp_path) == before


def test_matching_inputs_still_run(tmp_path):
    np.savez(tmp_path / "in.npz", x=np.ones((2, 4), np.float32), label=np.array([0, 2]))
    setup(tmp_path)
    r = graphc("grad", "spec.yaml", "--inputs", "in.npz", "--out", "out.npz", cwd=tmp_path, memory_limit=LIMIT)
    assert r.returncode == 0, r.stderr
    with np.load(tmp_path / "out.npz") as g:
        assert g["grad/fc.weight"].shape == (4, 3)


def test_a_params_file_of_gigabytes_with_the_wrong_shape_is_refused_unread(tmp_path):
    zip_bomb(tmp_path / "p.npz", "fc.weight", (4, 150_000_000))
    np.savez(tmp_path / "in.npz", x=np.ones((2, 4), np.float32), label=np.array([0, 2]))
    before = setup(tmp_path)
    for command in ("run", "grad"):
        r = graphc(command, "spec.yaml", "--inputs", "in.npz", "--params", "p.npz", "--out", "out.npz", cwd=tmp_path, memory_limit=LIMIT)
        refused(r, "--params: 'fc.weight' has shape (4, 150000000), the spec needs (4, 3)")
        assert snapshot(tmp_path) == before
    r = graphc("export", "spec.yaml", "--params", "p.npz", "-o", "model.onnx", cwd=tmp_path, memory_limit=LIMIT)
    refused(r, "--params: 'fc.weight' has shape (4, 150000000), the spec needs (4, 3)")
    assert snapshot(tmp_path) == before


def test_training_data_of_gigabytes_is_refused_from_the_headers(tmp_path):
    (tmp_path / "spec.yaml").write_text(SPEC + "train: {data: data.npz, epochs: 1, batch_size: 2}\n")
    need = zip_bomb(tmp_path / "data.npz", "x_train", (150_000_000, 4))
    assert need > 2 * LIMIT
    before = snapshot(tmp_path)
    r = graphc("train", "spec.yaml", "--max-memory", "256MiB", cwd=tmp_path, memory_limit=LIMIT)
    refused(r, "train.data:", "data.npz holds", "more than --max-memory 256 MiB", "the largest is 'x_train' (150000000, 4) float32")
    assert snapshot(tmp_path) == before
