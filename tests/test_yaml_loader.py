"""The YAML loader: pure data, positions kept, limits enforced."""


import pytest

from graphc.errors import GraphcError
from graphc.spec.safe_yaml import MAX_NODES, load_yaml_text


def one_error(text):
    with pytest.raises(GraphcError) as e:
        load_yaml_text(text, "f.yaml")
    (d,) = e.value.diagnostics
    return d


def test_positions_of_keys_values_and_items():
    d = load_yaml_text("a: 1\nb:\n  - x\n  - {c: 2}\n", "f.yaml")
    assert (d.value_locs["a"].line, d.value_locs["a"].col) == (1, 4)
    assert (d["b"].item_locs[1].line, d["b"].item_locs[1].col) == (4, 5)
    assert d["b"][1].key_locs["c"].line == 4


def test_yaml_12_floats_and_no_yes_no_booleans():
    d = load_yaml_text("lr: 1e-3\nbig: 2E+5\nflag: yes\non: true\nt: 1:30\n", "f.yaml")
    assert d["lr"] == 0.001 and isinstance(d["lr"], float)
    assert d["big"] == 200000.0
    assert d["flag"] == "yes" and d["on"] is True
    assert d["t"] == "1:30"  # not the sexagesimal 90


def test_quoted_numbers_stay_strings():
    assert load_yaml_text("a: '3'\n", "f.yaml")["a"] == "3"


@pytest.mark.parametrize("text", ["a: !!python/object/apply:os.system [ls]\n", "a: !foo 3\n", "a: !!binary aGk=\n", "!!map {a: 1}\n"])
def test_tags_are_refused(text):
    d = one_error(text)
    assert "tag" in d.message and "not allowed" in d.message


def test_duplicate_keys_are_refused_with_both_lines():
    d = one_error("a: 1\nb: 2\na: 3\n")
    assert "duplicate key 'a'" in d.message and "line 1" in d.message and d.loc.line == 3


def test_merge_keys_are_refused():
    assert "merge" in one_error("base: &b {x: 1}\nc:\n  <<: *b\n").message


def test_billion_laughs_is_bounded():
    levels = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 10):
        prev = chr(ord("a") + i - 1)
        name = chr(ord("a") + i)
        levels.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 10) + "]")
    d = one_error("\n".join(levels) + "\n")  # 10^10 values unbounded: the error is the bound
    assert f"more than {MAX_NODES}" in d.message


def test_deep_nesting_is_refused():
    d = one_error("a: " + "[" * 100 + "]" * 100 + "\n")
    assert "nesting deeper" in d.message


def test_syntax_error_has_position():
    d = one_error("a: [1, 2\nb: 3\n")
    assert d.message.startswith("invalid YAML") and d.loc.file == "f.yaml"


def test_empty_document():
    assert "empty" in one_error("# nothing\n").message
