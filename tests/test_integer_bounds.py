"""Integers in a spec are bounded: each oversized one is an error at its position naming the field
and the bound, never an OverflowError, a NumPy dimension error or a giant allocation."""

import pytest

from cli_safety import graphc, refused, snapshot
from graphc.spec.models import MAX_DIM

MLP = "name: mlp\ninputs:\n  x: {shape: [N, 4]}\nlayers:\n  - {name: fc1, op: dense, units: 8}\n"


def compile_refused(tmp_path, text, *fragments):
    (tmp_path / "spec.yaml").write_text(text)
    before = snapshot(tmp_path)
    err = refused(graphc("compile", "spec.yaml", "-o", "report.txt", cwd=tmp_path, memory_limit=1024**3), *fragments)
    assert snapshot(tmp_path) == before
    return err


def test_a_30_digit_units_is_located_and_names_the_bound(tmp_path):
    compile_refused(tmp_path, MLP.replace("units: 8", "units: 123456789012345678901234567890"),
                    "spec.yaml:5:35: error: 'units' is 123456789012345678901234567890 (30 digits), beyond the largest integer a spec may hold, 2^63 − 1")


def test_a_5000_digit_units_is_refused_before_python_converts_it(tmp_path):
    err = compile_refused(tmp_path, MLP.replace("units: 8", "units: " + "9" * 5000), "spec.yaml:5:35: error: 'units' is 999999999999…999999 (5000 digits)")
    assert "int_max_str_digits" not in err


def test_a_dimension_of_2_to_the_64_is_located(tmp_path):
    compile_refused(tmp_path, MLP.replace("[N, 4]", f"[N, {2**64}]"), f"spec.yaml:3:18: error: 'shape' is {2**64} (20 digits)")


def test_a_static_batch_of_2_to_the_40_is_refused_with_the_bound(tmp_path):
    compile_refused(tmp_path, MLP.replace("[N, 4]", f"[{2**40}, 4]"), f"spec.yaml:3:15: error: spec: 'inputs.x.shape.0' must be ≤ {MAX_DIM}")


@pytest.mark.parametrize("key", ["batch_size", "eval_batch_size"])
def test_train_batch_sizes_are_bounded(tmp_path, key):
    text = MLP + "loss: {op: softmax_cross_entropy, inputs: [fc1, label]}\n" + f"train: {{{key}: {2**40}}}\n"
    text = text.replace("  x: {shape: [N, 4]}\n", "  x: {shape: [N, 4]}\n  label: {shape: [N], dtype: int64}\n")
    compile_refused(tmp_path, text, f"'train.{key}' must be ≤ {MAX_DIM}")


def test_the_largest_int64_is_still_an_integer(tmp_path):
    from graphc.spec.safe_yaml import load_yaml_text

    assert load_yaml_text(f"a: {2**63 - 1}\nb: -{2**63 - 1}\n", "f.yaml") == {"a": 2**63 - 1, "b": -(2**63 - 1)}
