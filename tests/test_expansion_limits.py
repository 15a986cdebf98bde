"""Expansion work is bounded: nested repeats are refused from their product, before any is unrolled."""

from cli_safety import graphc, refused, snapshot
from graphc.spec.expand import MAX_LAYERS

NESTED = """\
inputs:
  x: {shape: [N, 4]}
blocks:
  inner:
    layers:
      - {op: relu, repeat: 10000}
  outer:
    layers:
      - {block: inner, repeat: 10000}
layers:
  - {name: fc, op: dense, units: 4}
  - {name: big, block: inner, repeat: 10000}
  - {name: out, op: dense, units: 2}
"""


def test_a_block_of_10k_repeated_10k_times_stops_at_once(tmp_path):
    (tmp_path / "spec.yaml").write_text(NESTED)
    before = snapshot(tmp_path)
    # unrolling 10^8 layers one by one takes minutes: the timeout makes a regression fail
    r = graphc("compile", "spec.yaml", "-o", "report.txt", cwd=tmp_path, timeout=30, memory_limit=2 * 1024**3)
    refused(r, f"spec.yaml:12:39: error: 'big' expands to 10000 × 10000 = 100000000 layers (block 'inner'), more than the limit of {MAX_LAYERS} layers")
    assert r.stderr.count("error:") == 1, r.stderr
    assert snapshot(tmp_path) == before


def test_three_levels_of_repeats_are_refused_from_the_product(tmp_path):
    (tmp_path / "spec.yaml").write_text(NESTED.replace("block: inner, repeat: 10000}\n  - {name: out", "block: outer, repeat: 10000}\n  - {name: out"))
    r = graphc("compile", "spec.yaml", cwd=tmp_path, timeout=30)
    refused(r, "'big' expands to 10000 × 100000000 = 1000000000000 layers (block 'outer')")


def test_repeats_that_add_up_past_the_limit_are_refused_where_they_cross_it(tmp_path):
    layers = "".join(f"  - {{name: r{i}, op: relu, repeat: 10000}}\n" for i in range(MAX_LAYERS // 10000 + 1))
    (tmp_path / "spec.yaml").write_text("inputs:\n  x: {shape: [N, 4]}\nlayers:\n" + layers)
    r = graphc("compile", "spec.yaml", cwd=tmp_path, timeout=60)
    refused(r, f"'r{MAX_LAYERS // 10000}' expands to 10000 layers (op relu), more than the limit of {MAX_LAYERS} layers")


def test_a_large_repeat_within_the_limit_still_compiles(tmp_path):
    (tmp_path / "spec.yaml").write_text("inputs:\n  x: {shape: [N, 4]}\nlayers:\n  - {name: r, op: relu, repeat: 2000}\n")
    r = graphc("compile", "spec.yaml", cwd=tmp_path, timeout=60)
    assert r.returncode == 0, r.stderr
