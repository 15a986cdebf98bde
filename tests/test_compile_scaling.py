"""Large specs compile in time proportional to their size (README, Performance): YAML is read by
libyaml's parser with graphc's own composer (positions, limits and messages unchanged), and the
garbage collector does not walk the compile's objects over and over. Checked by what runs, not by
timings: the two loaders give the same data, positions and errors on every YAML file of the
repository, and no automatic collection happens inside a compile."""

import gc
import sys
from pathlib import Path

import pytest

from graphc.errors import GraphcError
from graphc.gc_pause import gc_paused
from graphc.ir.build import build_graph
from graphc.report import compile_report
from graphc.spec import safe_yaml
from graphc.spec.load import load_spec

ROOT = Path(__file__).resolve().parent.parent
YAML_FILES = sorted(p for d in ("specs", "tests", "examples") for p in (ROOT / d).rglob("*.yaml"))
sys.path.insert(0, str(ROOT / "tools"))
from bench_compile import generate  # noqa: E402


def with_positions(value):
    """The loaded data with every position spelled out (LDict/LList carry them beside the values)."""
    if isinstance(value, safe_yaml.LDict):
        return ("map", str(value.loc), [(k, str(value.key_locs.get(k)), str(value.value_locs.get(k)), with_positions(v)) for k, v in value.items()])
    if isinstance(value, safe_yaml.LList):
        return ("seq", str(value.loc), [(str(l), with_positions(v)) for l, v in zip(value.item_locs, value)])
    return (type(value).__name__, value)


def load_with(text, name, fast, monkeypatch):
    monkeypatch.setattr(safe_yaml, "_FAST", fast)
    try:
        return with_positions(safe_yaml.load_yaml_text(text, name, document=True))
    except GraphcError as e:
        return ("error", [str(d) for d in e.diagnostics])


def test_libyaml_is_there():
    assert safe_yaml._FAST, "PyYAML without libyaml: large specs load with the slow pure-Python scanner"


@pytest.mark.parametrize("path", YAML_FILES, ids=[str(p.relative_to(ROOT)) for p in YAML_FILES])
def test_both_loaders_agree_on_data_positions_and_errors(path, monkeypatch):
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        pytest.skip("not text")  # a deliberately binary bad spec: refused before YAML (sniff)
    assert load_with(text, path.name, True, monkeypatch) == load_with(text, path.name, False, monkeypatch)


@pytest.mark.parametrize("text", ["a: [1, 2", "a: 'open", "a: !!python/object x", "a: 1\na: 2", "x: \x07", "[" * 70 + "]" * 70,
                                  "a: b: c", "- a\nb: 1", "a: 1e-3\nb: 2024-02-30\nc: yes\nd: 0x1F\ne: 1:30"])
def test_both_loaders_agree_on_hand_written_cases(text, monkeypatch):
    assert load_with(text, "t.yaml", True, monkeypatch) == load_with(text, "t.yaml", False, monkeypatch)


def test_no_automatic_collection_inside_a_compile(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text(generate(2000))
    compile_report(build_graph(load_spec(path)))  # op validators built once
    runs = []

    def count(phase, info):
        if phase == "start":
            runs.append(info["generation"])

    gc.callbacks.append(count)
    try:
        compile_report(build_graph(load_spec(path)))
    finally:
        gc.callbacks.remove(count)
    # at most one as each stage starts (the allocations between them); unpaused, hundreds
    assert len(runs) <= 3, runs


def test_the_pause_nests_and_restores():
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()  # a caller's own pause is kept
    finally:
        gc.enable()
