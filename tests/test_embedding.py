"""embedding: the lookup, its scatter-add gradient (ids that repeat add up), and ids out of range refused."""

import numpy as np
import pytest

from cli_safety import graphc, refused, snapshot
from graphc.errors import GraphcError
from graphc.ops.embedding import Embedding, EmbeddingGrad

SPEC = """name: bag_of_tokens
inputs:
  ids: {shape: [N, 5], dtype: int64}
  label: {shape: [N], dtype: int64}
layers:
  - {name: emb, op: embedding, num_embeddings: 10, dim: 4}
  - {name: flat, op: flatten}
  - {name: fc, op: dense, units: 3}
outputs: {scores: fc}
loss: {op: softmax_cross_entropy, inputs: [fc, label]}
"""


def test_the_lookup_reads_table_rows_and_the_gradient_adds_repeated_ids():
    rng = np.random.default_rng(0)
    w, ids, gy = rng.standard_normal((4, 3)), np.array([[1, 3, 1], [0, 1, 3]]), rng.standard_normal((2, 3, 3))
    y = Embedding(num_embeddings=4, dim=3).forward(ids, w)
    for i in range(2):
        for t in range(3):
            np.testing.assert_array_equal(y[i, t], w[ids[i, t]])
    gw = EmbeddingGrad(num_embeddings=4).forward(ids, gy)
    want = np.zeros((4, 3))
    for i in range(2):
        for t in range(3):
            want[ids[i, t]] += gy[i, t]
    np.testing.assert_allclose(gw, want, rtol=1e-12)
    assert not gw[2].any()  # an id that does not occur gets a zero row


@pytest.mark.parametrize("bad", [10, -1])
def test_the_kernel_refuses_an_id_outside_the_table(bad):
    with pytest.raises(GraphcError, match=rf"id {bad} at index \[1, 0\] is out of range: ids must lie in \[0, 10\)"):
        Embedding(num_embeddings=10, dim=2).forward(np.array([[0, 1], [bad, 2]]), np.zeros((10, 2)))


@pytest.mark.parametrize("backend", ["numpy", "onnxruntime"])
@pytest.mark.parametrize("bad", [10, -3])
def test_run_refuses_ids_out_of_range_naming_input_value_and_index(tmp_path, backend, bad):
    (tmp_path / "spec.yaml").write_text(SPEC)
    ids = np.arange(10).reshape(2, 5)
    ids[1, 2] = bad
    np.savez(tmp_path / "in.npz", ids=ids, label=np.array([0, 2]))
    before = snapshot(tmp_path)
    refused(graphc("run", "spec.yaml", "--inputs", "in.npz", "--backend", backend, "--out", "out.npz", cwd=tmp_path, timeout=120),
            f"--inputs: 'ids' holds {bad} at index [1, 2], outside [0, 10)")
    assert snapshot(tmp_path) == before


def test_run_refuses_a_label_beyond_the_class_count(tmp_path):
    (tmp_path / "spec.yaml").write_text(SPEC)
    np.savez(tmp_path / "in.npz", ids=np.zeros((2, 5), np.int64), label=np.array([0, 3]))
    refused(graphc("run", "spec.yaml", "--inputs", "in.npz", "--out", "out.npz", cwd=tmp_path, timeout=120),
            "--inputs: 'label' holds 3 at index [1], outside [0, 3)")


def test_a_spec_with_an_embedding_runs_and_its_table_gradient_checks(tmp_path):
    (tmp_path / "spec.yaml").write_text(SPEC)
    r = graphc("check-grad", "spec.yaml", cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "emb.weight" in r.stdout
