"""The CLI documents itself: ``graphc ops``, ``graphc ops KIND`` and ``graphc schema`` are generated from
the op registry, so every op (those added later too) has a summary, and every attribute a description,
a default and its bound."""

import json
import subprocess

import pytest

import graphc
from graphc.ops import BY_KIND, LAYER_KINDS, LOSS_KINDS
from graphc.spec.op_docs import example_inputs, example_line
from graphc.tensor import fmt_shape

KINDS = LAYER_KINDS + LOSS_KINDS


def graphc_cmd(*args):
    return subprocess.run(["graphc", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("kind", KINDS)
def test_every_op_has_a_one_sentence_summary_and_every_attribute_a_description(kind):
    cls = BY_KIND[kind]
    s = cls.summary
    assert s and "\n" not in s and len(s) <= 110, f"{kind}: summary must be one short line"
    assert s[0].isupper() and s.endswith("."), f"{kind}: summary must be a full sentence: {s!r}"
    for name, field in cls.model_fields.items():
        assert field.description and len(field.description) > 8, f"{kind}.{name} has no description"


def test_ops_lists_every_op_with_its_summary():
    r = graphc_cmd("ops")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    for kind in KINDS:
        assert any(line.split() and line.split()[0] == kind and line.rstrip().endswith(BY_KIND[kind].summary)
                   for line in lines), kind


@pytest.mark.parametrize("kind", KINDS)
def test_ops_kind_shows_formula_attributes_inputs_parameters_and_example(kind):
    cls = BY_KIND[kind]
    r = graphc_cmd("ops", kind)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert out.startswith(f"{kind}: {cls.summary}\n")
    assert cls.__doc__.strip().splitlines()[0].strip() in out  # the docstring's formula
    rows = {line.split()[0]: line for line in out.splitlines() if line.split()}
    for name, field in cls.model_fields.items():
        assert name in rows and field.description in rows[name], f"{kind}.{name} row"
    assert "\ninputs: " in out and "\nparameters: " in out
    assert f"\nexample: {example_line(cls)}\n" in out


@pytest.mark.parametrize("kind", LAYER_KINDS)
def test_every_example_layer_line_compiles(kind):
    """The example line is a real layer: a spec with the sample's inputs and that line compiles, and its
    output has the shape the page states."""
    inputs = "\n".join(f"  {name}: {{shape: {list(t.shape)}, dtype: {t.dtype}}}" for name, t in example_inputs(BY_KIND[kind]).items())
    inputs = inputs or "  x: {shape: [1]}"  # a layer without inputs (parameter): a spec still declares one
    graph = graphc.compile_spec("example.yaml", f"inputs:\n{inputs}\nlayers:\n  {example_line(BY_KIND[kind])}\n")
    (out,) = graph.graph["outputs"].values()
    page = graphc_cmd("ops", kind).stdout
    assert f"→ {fmt_shape(graph.nodes[out]['type'].shape)}\n" in page


def test_conv2d_page_states_types_defaults_and_bounds():
    out = graphc_cmd("ops", "conv2d").stdout
    rows = {line.split()[0]: line for line in out.splitlines() if line.split()}
    assert "required" in rows["kernel"] and "≥ 1" in rows["kernel"]
    assert "≥ 1" in rows["stride"] and " 1 " in rows["stride"]
    assert "≥ 0" in rows["padding"] and "'same'" in rows["padding"]
    assert "weight (4, 3, 3, 3) (kaiming)" in out and "bias (4) (zeros)" in out


def test_ops_unknown_kind_suggests_the_nearest():
    r = graphc_cmd("ops", "conv")
    assert r.returncode == 65 and "unknown op 'conv'" in r.stderr and "conv2d" in r.stderr and "Traceback" not in r.stderr


def test_schema_carries_descriptions_defaults_and_bounds():
    r = graphc_cmd("schema")
    assert r.returncode == 0, r.stderr
    defs = json.loads(r.stdout)["$defs"]
    for kind in LAYER_KINDS:
        model = defs[f"layer_{kind}"]
        assert model["description"].startswith(BY_KIND[kind].summary)
        for name, field in BY_KIND[kind].model_fields.items():
            assert model["properties"][name]["description"] == field.description, f"{kind}.{name}"
            if not field.is_required():
                assert "default" in model["properties"][name], f"{kind}.{name}"
    conv = defs["layer_conv2d"]["properties"]
    assert {b["minimum"] for b in conv["kernel"]["anyOf"][:1] + conv["kernel"]["anyOf"][1]["prefixItems"]} == {1}
    assert conv["stride"]["default"] == 1 and conv["stride"]["anyOf"][0]["minimum"] == 1
    assert conv["padding"]["anyOf"][0]["minimum"] == 0
    assert defs["layer_dropout"]["properties"]["p"]["exclusiveMaximum"] == 1
    assert defs["layer_dense"]["properties"]["units"]["minimum"] == 1
