"""YAML limits graphc enforces itself: nesting before PyYAML recurses, errors at their own position."""

from cli_safety import graphc, refused, snapshot
from graphc.spec.safe_yaml import MAX_DEPTH

MLP = "name: mlp\ninputs:\n  x: {shape: [N, 4]}\nlayers:\n  - {name: fc1, op: dense, units: 8}\n"


def write(tmp_path, text, name="spec.yaml"):
    (tmp_path / name).write_text(text)
    return name


def test_20000_open_brackets_are_a_nesting_error_not_a_recursion_error(tmp_path):
    name = write(tmp_path, "[" * 20_000 + "\n")
    before = snapshot(tmp_path)
    err = refused(graphc("compile", name, cwd=tmp_path), f"spec.yaml:1:{MAX_DEPTH + 2}: error: nesting deeper than {MAX_DEPTH} levels")
    assert "RecursionError" not in err
    assert snapshot(tmp_path) == before


def test_deep_block_mappings_are_a_nesting_error(tmp_path):
    text = "".join(" " * i + "k:\n" for i in range(1000)) + " " * 1000 + "v\n"
    refused(graphc("compile", write(tmp_path, text), cwd=tmp_path), f"nesting deeper than {MAX_DEPTH} levels")


def test_an_unclosed_quote_points_at_the_quote(tmp_path):
    text = MLP.replace("name: mlp", 'name: "mlp') + "\n" * 5
    refused(graphc("compile", write(tmp_path, text), cwd=tmp_path),
            "spec.yaml:1:7: error: invalid YAML: a quoted scalar that starts here is never closed")


def test_an_unclosed_flow_mapping_points_at_its_brace(tmp_path):
    text = MLP.replace("{name: fc1, op: dense, units: 8}", "{name: fc1, op: dense, units: 8") + "\n\n"
    refused(graphc("compile", write(tmp_path, text), cwd=tmp_path),
            "spec.yaml:5:5: error: invalid YAML: a flow mapping that starts here is never closed")


def test_a_control_character_points_at_itself(tmp_path):
    text = MLP.replace("units: 8", "units: 8\x1b[2J")
    refused(graphc("compile", write(tmp_path, text), cwd=tmp_path), "spec.yaml:5:36: error: control character U+001B is not allowed")


def test_a_top_level_scalar_is_located(tmp_path):
    refused(graphc("compile", write(tmp_path, "# a comment\n\n  hello\n"), cwd=tmp_path),
            "spec.yaml:3:3: error: the file holds the single value 'hello', expected a mapping")


def test_a_top_level_list_is_located(tmp_path):
    refused(graphc("compile", write(tmp_path, "- a\n- b\n"), cwd=tmp_path), "spec.yaml:1:1: error: spec must be a mapping")


def test_dates_in_free_text_fields_are_strings(tmp_path):
    import json

    text = MLP.replace("name: mlp", "name: 2024-02-30\ndescription: 2024-02-03")
    r = graphc("compile", "--json", write(tmp_path, text), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["name"] == "2024-02-30"
    assert "timestamp" not in r.stderr
    from graphc.spec.load import load_spec

    assert load_spec(tmp_path / "spec.yaml").spec.description == "2024-02-03"
