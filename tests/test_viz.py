"""`graphc viz`, through the real command: every example spec drawn, the SVG parsed and checked
against what graphc inferred; hostile names, failing specs, --depth/--expand, --highlight, and the
renderers: graphviz-pure (a graphc dependency) when the system has no Graphviz, the system's `dot`
when it has one, the fallback when neither can write the format."""

from __future__ import annotations

import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import graphc
from graphc.ir.autodiff import training_graph
from graphc.ir.build import build_graph
from graphc.ir.passes import optimize
from graphc.report import compile_report
from graphc.spec.load import load_spec
from graphc.chart import graphviz_pure
from graphc.viz import dot_string, find_renderer, html_text

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.yaml"))
SVG = "{http://www.w3.org/2000/svg}"
XLINK = "{http://www.w3.org/1999/xlink}"
GRAPHC = shutil.which("graphc")
SYSTEM_DOT = shutil.which("dot")
PURE = graphviz_pure()



def graphc_cmd(*args, env=None, cwd=ROOT):
    """The real command. Unless a test says otherwise, pictures come from graphviz-pure (GRAPHC_DOT), so
    these tests prove what `pip install` alone gives; one test below runs the system's dot when it is there."""
    if env is None:
        env = dict(os.environ, GRAPHC_DOT="graphviz-pure")
    return subprocess.run([GRAPHC or "graphc", *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env, timeout=300, check=False)


def shape_of(shape, dtype="float32") -> str:
    """What an edge label shows: the report's shape, dims joined by ×, dtype when not float32."""
    dims = "×".join(map(str, shape)) if shape else "scalar"
    return dims if dtype == "float32" else f"{dims} {dtype}"


class Picture:
    """A parsed SVG from graphc viz: nodes by name (first tooltip line), their classes, edges with labels."""

    def __init__(self, path: Path):
        self.root = ET.parse(path).getroot()
        self.nodes: dict[str, dict] = {}  # name -> {classes, texts, tooltip}
        by_id = {}
        for g in self.root.iter(f"{SVG}g"):
            classes = g.get("class", "").split()
            if classes[:1] == ["node"]:
                anchor = g.find(f".//{SVG}a")
                tooltip = anchor.get(f"{XLINK}title") if anchor is not None else ""
                name = tooltip.split("\n")[0]
                kind = classes[1]
                key = (kind, name)
                assert key not in self.nodes, f"{key} drawn twice"
                self.nodes[key] = {"classes": set(classes[1:]), "texts": ["".join(t.itertext()) for t in g.iter(f"{SVG}text")],
                                   "tooltip": tooltip}
                by_id[g.find(f"{SVG}title").text] = key
        self.edges = []  # (src key, dst key, [label lines], classes)
        self.clusters = []
        for g in self.root.iter(f"{SVG}g"):
            classes = g.get("class", "").split()
            if classes[:1] == ["edge"]:
                src, dst = g.find(f"{SVG}title").text.split("->")
                labels = ["".join(t.itertext()) for t in g.iter(f"{SVG}text")]
                self.edges.append((by_id[src], by_id[dst], labels, set(classes[1:])))
            elif classes[:1] == ["cluster"]:
                self.clusters.append(g.find(f".//{SVG}a").get(f"{XLINK}title").split("\n")[0])

    def names(self, *kinds) -> set[str]:
        return {name for kind, name in self.nodes if kind in kinds}

    def edge_labels(self, src, dst) -> list[str]:
        found = [labels for s, d, labels, _ in self.edges if s == src and d == dst]
        assert found, f"no edge {src} -> {dst}"
        return found[0]


def _render(job):
    spec, out, args = job
    return job, graphc_cmd("viz", spec, "-o", out, *args)


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    """Every example spec, collapsed (forward) and fully expanded (with --backward when it has a loss)."""
    tmp = tmp_path_factory.mktemp("viz")
    jobs = []
    for spec in SPECS:
        has_loss = graphc.compile_spec(spec).graph["loss"] is not None
        jobs.append((spec, tmp / f"{spec.stem}.svg", ()))
        jobs.append((spec, tmp / f"{spec.stem}-expanded.svg", ("--expand", "--backward") if has_loss else ("--expand",)))
    with ThreadPoolExecutor(max_workers=4) as pool:
        done = list(pool.map(_render, jobs))
    for (spec, out, args), r in done:
        assert r.returncode == 0, f"{spec.name} {args}: {r.stderr}"
        assert f"wrote {out}" in r.stderr
    return {(spec.stem, bool(args)): (Picture(out), args) for (spec, out, args), _ in done}


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_collapsed_view_has_one_node_per_entry_and_the_inferred_shapes(pictures, spec):
    pic, _ = pictures[(spec.stem, False)]
    graph = graphc.compile_spec(spec)
    report = compile_report(graph)
    rows = {r["name"]: r for r in report["layers"]}
    # one node per top-level layer or block instance, named as the report names them
    assert pic.names("layer", "instance") == set(rows)
    assert pic.names("instance") == {n for n in rows if n in graph.graph["instances"]}
    assert pic.names("input") == {i["name"] for i in report["inputs"]}
    assert pic.names("output") == {o["name"] for o in report["outputs"]}
    assert pic.names("loss") == ({"loss"} if report["loss"] else set())
    assert not pic.clusters and not pic.names("grad")
    # every connection carries the shape graphc inferred for the tensor on it
    shapes = {r["name"]: shape_of(r["shape"], r["dtype"]) for r in report["layers"]}
    kinds = {r["name"]: "instance" if r["name"] in graph.graph["instances"] else "layer" for r in report["layers"]}
    for i in report["inputs"]:
        shapes[i["name"]], kinds[i["name"]] = shape_of(i["shape"], i["dtype"]), "input"
    for row in report["layers"]:
        for src in row["inputs"]:
            assert shapes[src] in pic.edge_labels((kinds[src], src), (kinds[row["name"]], row["name"])), (src, row["name"])
    entry_of = {graph.graph["instances"][n].output if n in graph.graph["instances"] else n: n for n in rows}
    for o in report["outputs"]:
        entry = entry_of[o["layer"]]
        assert pic.edge_labels((kinds[entry], entry), ("output", o["name"])) == [shape_of(o["shape"], o["dtype"])]
    # nodes show op and key attributes, parameter counts and receptive fields
    for row in report["layers"]:
        texts = " ".join(pic.nodes[(kinds[row["name"]], row["name"])]["texts"])
        if row.get("attributes_text"):
            assert f"{row['op']} {row['attributes_text']}" in texts
        if row["params"]:
            assert "params" in texts
        if row["receptive_field"] and len(set(row["receptive_field"]["size"])) == 1:
            assert f"RF {row['receptive_field']['size'][0]} /" in texts


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_expanded_view_has_one_node_per_layer_and_the_backward_view_every_gradient_node(pictures, spec):
    pic, args = pictures[(spec.stem, True)]
    graph = graphc.compile_spec(spec)
    layers = graph.graph["layers"]
    assert pic.names("layer") == {r["name"] for r in compile_report(graph, expand=True)["layers"]} == set(layers)
    assert not pic.names("instance")
    assert len(pic.clusters) == len(graph.graph["instances"])
    for name, attrs in graph.nodes(data=True):  # every edge between layers carries its tensor's shape
        for src in attrs["inputs"]:
            a = graph.nodes[src]
            if attrs["role"] == "op" and a["role"] in ("op", "input") and a["layer"] != attrs["layer"]:
                kind = "input" if a["role"] == "input" else "layer"
                assert shape_of(a["type"].shape, a["type"].dtype) in pic.edge_labels((kind, a["layer"]), ("layer", attrs["layer"]))
    if "--backward" not in args:
        return
    training, _ = optimize(training_graph(graph))
    grads = {n: a for n, a in training.nodes(data=True) if a["role"] == "grad"}
    drawn = {}
    for (kind, name), node in pic.nodes.items():
        if kind == "grad":
            assert name.startswith("∇ ") and "grad" in node["classes"]
            for listed in node["tooltip"].split("\n")[2:]:
                drawn[listed] = name[2:]
    assert set(drawn) == set(grads)  # every backward node is drawn, in its forward layer's group
    for n, a in grads.items():
        assert drawn[n] == ("loss" if a["layer"] == "loss" else a["layer"])
    links = {(s, d) for s, d, _, classes in pic.edges if "gradlink" in classes}
    for group in pic.names("grad"):
        fwd = group[2:]
        assert ((("loss" if fwd == "loss" else "layer"), fwd), ("grad", group)) in links
    cotangent_shapes = {shape_of(a["type"].shape, a["type"].dtype) for a in grads.values()}
    grad_edges = [labels for s, d, labels, classes in pic.edges if "grad" in classes]
    assert grad_edges and all(set(labels) <= cotangent_shapes for labels in grad_edges)


def test_depth_opens_that_many_levels(tmp_path):
    spec = ROOT / "specs" / "resnet20_cifar.yaml"
    graph = graphc.compile_spec(spec)
    instances = graph.graph["instances"]
    for depth in (1, 2):
        out = tmp_path / f"d{depth}.svg"
        r = graphc_cmd("viz", spec, "-o", out, "--depth", depth)
        assert r.returncode == 0, r.stderr
        pic = Picture(out)
        assert pic.names("instance") == {n for n, i in instances.items() if len(i.scope) == depth}
        assert pic.names("layer") == {n for n, l in graph.graph["layers"].items() if len(l.scope) <= depth}
        assert len(pic.clusters) == sum(len(i.scope) < depth for i in instances.values())
    # depth 1: layer1 (basic ×3) is a cluster of three instance nodes
    assert {"layer1.0", "layer1.1", "layer1.2", "layer2.b0", "layer2.rest"} <= Picture(tmp_path / "d1.svg").names("instance")


def test_highlight_marks_the_receptive_field_path(tmp_path):
    out = tmp_path / "h.svg"
    r = graphc_cmd("viz", ROOT / "specs" / "resnet20_cifar.yaml", "-o", out, "--depth", "1", "--highlight", "layer2.b0")
    assert r.returncode == 0, r.stderr
    pic = Picture(out)
    lit = {key for key, node in pic.nodes.items() if "highlight" in node["classes"]}
    assert ("instance", "layer2.b0") in lit and "target" in pic.nodes[("instance", "layer2.b0")]["classes"]
    assert {("input", "image"), ("layer", "conv1"), ("layer", "bn1"), ("layer", "relu"), ("instance", "layer1.2")} <= lit
    assert not lit & {("input", "label"), ("instance", "layer2.rest"), ("layer", "fc"), ("loss", "loss")}
    lit_edges = {(s, d) for s, d, _, classes in pic.edges if "highlight" in classes}
    assert (("instance", "layer1.2"), ("instance", "layer2.b0")) in lit_edges
    assert all(s in lit and d in lit for s, d in lit_edges)
    assert any("receptive-field path (RF 21 /2)" in t for t in pic.root.find(f"{SVG}g").itertext())
    # an unknown name is an error, and nothing is written
    bad = tmp_path / "bad.svg"
    r = graphc_cmd("viz", ROOT / "specs" / "resnet20_cifar.yaml", "-o", bad, "--highlight", "layer2.bo")
    assert r.returncode == 65 and "no layer, block instance or node named 'layer2.bo'" in r.stderr and "did you mean" in r.stderr
    assert not bad.exists()


FAILING = """\
name: failing
inputs:
  x: {shape: [N, 3, 16, 16]}
blocks:
  cb:
    layers:
      - {name: conv, op: conv2d, filters: 8, kernel: 3, padding: 1}
      - {name: big, op: conv2d, filters: 8, kernel: 40}
      - {name: relu, op: relu}
layers:
  - {name: stem, op: conv2d, filters: 4, kernel: 3}
  - {name: side, op: relu, inputs: [x]}
  - {name: body, block: cb, inputs: [stem]}
  - {name: head, op: dense, units: 3}
outputs: {out: head, side: side}
"""


@pytest.mark.parametrize("args", [(), ("--expand",)], ids=["collapsed", "expanded"])
def test_a_spec_failing_shape_inference_is_drawn_up_to_the_failing_layer(tmp_path, args):
    spec = tmp_path / "failing.yaml"
    spec.write_text(FAILING)
    out = tmp_path / "f.svg"
    r = graphc_cmd("viz", spec, "-o", out, *args)
    assert r.returncode == 65
    assert "failing.yaml:8:9: error: conv2d 'body.big': output height" in r.stderr
    pic = Picture(out)
    failed = [key for key, node in pic.nodes.items() if "failed" in node["classes"]]
    assert failed == ([("layer", "body.big")] if args else [("instance", "body")])
    texts = " ".join(pic.nodes[failed[0]]["texts"])
    assert "shape inference failed" in texts and "conv2d 'body.big': output height" in texts
    assert {"stem", "side"} <= pic.names("layer") and "head" not in pic.names("layer")  # downstream of the failure: not built
    assert pic.names("output") == {"side"}
    if args:
        assert pic.edge_labels(("layer", "body.conv"), ("layer", "body.big")) == ["N×8×14×14"]
    else:
        assert pic.edge_labels(("layer", "stem"), ("instance", "body")) == ["N×4×14×14"]


def test_build_graph_partial_keeps_the_graph_up_to_the_failure(tmp_path):
    spec = tmp_path / "failing.yaml"
    spec.write_text(FAILING)
    with pytest.raises(graphc.GraphcError):
        build_graph(load_spec(spec))
    g = build_graph(load_spec(spec), partial=True)
    assert list(g.graph["failed"]) == ["body.big"] and "body.conv" in g and "body.relu" not in g and "head" not in g
    assert graphc.compile_spec(ROOT / "specs" / "lenet5.yaml").graph["failed"] == {}
    # errors other than shape inference still raise, and viz writes nothing for them
    bad = tmp_path / "bad.yaml"
    bad.write_text(FAILING.replace("op: relu}", "op: rleu}"))
    with pytest.raises(graphc.GraphcError):
        build_graph(load_spec(bad), partial=True)
    r = graphc_cmd("viz", bad, "-o", tmp_path / "bad.svg")
    assert r.returncode == 65 and "did you mean 'relu'" in r.stderr and not (tmp_path / "bad.svg").exists()


HOSTILE_NAME = 'x"<b>bold</b> & {braces} \\N \\" ]; } digraph x { <<>> &amp; &#60; \x01 line\nbreak'
HOSTILE_SPEC = """\
name: "x\\"<b>bold</b> & {braces} \\\\N \\\\\\" ]; } digraph x { <<>> &amp; &#60; \\x01 line\\nbreak"
inputs:
  graph: {shape: [N, 3, 8, 8]}
blocks:
  node:
    layers:
      - {name: subgraph, op: conv2d, filters: 4, kernel: 3, padding: 1}
      - {name: edge-, op: relu}
layers:
  - {name: "0", block: node, repeat: 2}
  - {name: a-b, op: flatten}
  - {name: strict, op: dense, units: 2}
outputs: {digraph: strict}
"""


def test_hostile_names_are_escaped(tmp_path):
    # the spec's name and its path are free text; layer names are DOT keywords, digits and dashes
    where = tmp_path / 'we"ird<&>{dir}\\'
    where.mkdir()
    spec = where / 'a"b<c>&d{e}\\f];.yaml'
    spec.write_text(HOSTILE_SPEC)
    assert load_spec(spec).spec.name == HOSTILE_NAME
    for args in ((), ("--expand",)):
        out = where / "out.svg"
        r = graphc_cmd("viz", spec.name, "-o", out.name, *args, cwd=where)
        assert r.returncode == 0, r.stderr
        pic = Picture(out)
        title = list(pic.root.find(f"{SVG}g").iter(f"{SVG}text"))
        shown = ["".join(t.itertext()) for t in title]
        assert shown[0] == 'x"<b>bold</b> & {braces} \\N \\" ]; } digraph x { <<>> &amp; &#60; \\x01 line'
        assert shown[1] == "break"
        assert shown[2].strip() == spec.name
    assert pic.names("layer") == {"0.0.subgraph", "0.0.edge-", "0.1.subgraph", "0.1.edge-", "a-b", "strict"}
    assert pic.names("input") == {"graph"} and pic.names("output") == {"digraph"}
    assert pic.edge_labels(("layer", "a-b"), ("layer", "strict")) == ["N×256"]


@pytest.mark.parametrize("text", [HOSTILE_NAME, "<", ">", "&", '"', "'", "\\", "\\\\", "{}", "[]", "\n", "&lt;", "a\\Nb\\Gc\\lz", "-> --", "</b>", "]]>"])
@pytest.mark.parametrize("program", [PURE] + ([SYSTEM_DOT] if SYSTEM_DOT else []), ids=lambda p: Path(p).name)
def test_escaping_functions_survive_graphviz(tmp_path, text, program):
    escaped = html_text(text)
    assert not set(escaped.replace('<br align="left"/>', "")) & set("\"'<>")
    assert "\n" not in dot_string(text) and dot_string(text).count('"') - dot_string(text).count('\\"') == 2
    dot = f"digraph {{ n0 [label=<{escaped}>, tooltip={dot_string(text)}]; }}"
    svg = subprocess.run([program, "-Tsvg"], input=dot.encode(), capture_output=True, check=True).stdout
    node = next(g for g in ET.fromstring(svg).iter(f"{SVG}g") if g.get("class") == "node")
    visible = text.replace("\x01", "\\x01")
    assert [("".join(t.itertext())) for t in node.iter(f"{SVG}text")] == [line for line in visible.split("\n") if line] or visible == "\n"
    assert node.find(f".//{SVG}a").get(f"{XLINK}title") == visible.replace("\\", "\u29f5")  # tooltips show ⧵ for \\


def test_without_system_dot_graphviz_pure_draws_svg_and_png_and_pdf_is_a_clear_error(tmp_path):
    bin_dir = tmp_path / "bin"  # a PATH without Graphviz or graphviz-pure (graphc is run by its full path)
    bin_dir.mkdir()
    env = dict(os.environ, PATH=str(bin_dir))
    env.pop("GRAPHC_DOT", None)
    for suffix, magic in ((".svg", b"<?xml"), (".png", b"\x89PNG")):
        out = tmp_path / f"lenet{suffix}"
        r = graphc_cmd("viz", ROOT / "specs" / "lenet5.yaml", "-o", out, env=env)
        assert r.returncode == 0, r.stderr
        assert out.read_bytes().startswith(magic)
        assert f"wrote {out}; rendered by graphviz-pure (" in r.stderr  # found beside graphc's Python
        assert "Warning" not in r.stderr  # graphviz-pure's width-estimate warnings are not passed on
    r = graphc_cmd("viz", "--help", env=env)
    assert "Here the picture is drawn by graphviz-pure" in " ".join(r.stdout.split())
    out = tmp_path / "lenet.pdf"
    r = graphc_cmd("viz", ROOT / "specs" / "lenet5.yaml", "-o", out, env=env)
    assert r.returncode == 69 and "Traceback" not in r.stderr  # EX_UNAVAILABLE: the spec is fine, a program is missing
    assert "PDF needs Graphviz's own 'dot', which is not on PATH (graphviz-pure writes svg, png)" in r.stderr
    assert not out.exists() and (tmp_path / "lenet.dot").read_text().startswith("digraph graphc {")
    assert f"dot -Tpdf {tmp_path / 'lenet.dot'} -o {out}" in r.stderr and "apt-get install graphviz" in r.stderr


def test_without_any_renderer_the_dot_file_is_written_with_install_instructions(tmp_path):
    env = dict(os.environ, GRAPHC_DOT="none")  # names no program: neither dot nor graphviz-pure is used
    out = tmp_path / "lenet.svg"
    r = graphc_cmd("viz", ROOT / "specs" / "lenet5.yaml", "-o", out, env=env)
    assert r.returncode == 69 and "Traceback" not in r.stderr
    assert not out.exists() and (tmp_path / "lenet.dot").read_text().startswith("digraph graphc {")
    assert "neither Graphviz's 'dot' nor 'graphviz-pure'" in r.stderr and "apt-get install graphviz" in r.stderr and "brew install graphviz" in r.stderr
    assert f"dot -Tsvg {tmp_path / 'lenet.dot'} -o {out}" in r.stderr
    # asking for DOT text needs no renderer
    r = graphc_cmd("viz", ROOT / "specs" / "lenet5.yaml", "-o", tmp_path / "x.dot", env=env)
    assert r.returncode == 0 and (tmp_path / "x.dot").read_text() == (tmp_path / "lenet.dot").read_text()
    assert "neither Graphviz's dot nor graphviz-pure" in " ".join(graphc_cmd("viz", "--help", env=env).stdout.split())


def test_a_missing_renderer_exits_69_unless_the_spec_is_bad_too(tmp_path):
    """69 (EX_UNAVAILABLE) says "install a program", 65 "fix the input": a bad spec drawn without a
    renderer is 65, both problems reported."""
    bin_dir = tmp_path / "bin"  # no Graphviz on PATH, and GRAPHC_DOT=none turns graphviz-pure away too
    bin_dir.mkdir()
    env = dict(os.environ, PATH=str(bin_dir), GRAPHC_DOT="none")
    for suffix in (".svg", ".png", ".pdf", ".html"):
        out = tmp_path / f"m{suffix}"
        r = graphc_cmd("viz", ROOT / "specs" / "lenet5.yaml", "-o", out, env=env)
        assert r.returncode == 69 and "Traceback" not in r.stderr, (suffix, r.stderr)
        assert f"so {out} was not rendered; wrote the graph to {tmp_path / 'm.dot'}" in r.stderr and not out.exists()
    bad = tmp_path / "bad.yaml"
    bad.write_text("inputs: {x: {shape: [N, 3, 4, 4]}}\nlayers:\n  - {name: c, op: conv2d, filters: 2, kernel: 7}\n")
    r = graphc_cmd("viz", bad, "-o", tmp_path / "bad.svg", env=env)
    assert r.returncode == 65 and "bad.yaml:3:5: error: conv2d 'c'" in r.stderr and "neither Graphviz's 'dot'" in r.stderr
    # a renderer that is there but does not start (not an executable format) is unavailable too
    broken = bin_dir / "dot"
    broken.write_text("not a program\n")
    broken.chmod(0o755)
    r = graphc_cmd("viz", ROOT / "specs" / "lenet5.yaml", "-o", tmp_path / "m.svg", env=dict(env, GRAPHC_DOT=str(broken)))
    assert r.returncode == 69 and f"graphc: error: could not run {broken}:" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.skipif(SYSTEM_DOT is None, reason="the system has no Graphviz 'dot' (graphviz-pure draws everything else here)")
def test_the_system_dot_is_preferred_when_it_is_there_and_writes_pdf(tmp_path):
    env = dict(os.environ)
    env.pop("GRAPHC_DOT", None)
    assert find_renderer().name == "Graphviz dot"
    for suffix, magic in ((".svg", b"<?xml"), (".png", b"\x89PNG"), (".pdf", b"%PDF")):
        out = tmp_path / f"m{suffix}"
        r = graphc_cmd("viz", ROOT / "specs" / "resnet20_cifar.yaml", "-o", out, "--depth", "1", "--backward", env=env)
        assert r.returncode == 0, r.stderr
        assert out.read_bytes().startswith(magic) and f"rendered by Graphviz dot ({SYSTEM_DOT})" in r.stderr
    assert Picture(tmp_path / "m.svg").names("grad")


def test_png_and_a_bad_suffix(tmp_path):
    out = tmp_path / "m.png"
    r = graphc_cmd("viz", ROOT / "specs" / "mlp_digits.yaml", "-o", out, "--rankdir", "LR")
    assert r.returncode == 0, r.stderr
    assert out.read_bytes().startswith(b"\x89PNG")
    r = graphc_cmd("viz", ROOT / "specs" / "mlp_digits.yaml", "-o", tmp_path / "m.jpg")
    assert r.returncode == 2 and "must end in one of .svg, .png, .pdf, .dot" in r.stderr and not (tmp_path / "m.jpg").exists()
    r = graphc_cmd("viz", ROOT / "specs" / "dilated_stack.yaml", "-o", tmp_path / "b.svg", "--backward")
    if graphc.compile_spec(ROOT / "specs" / "dilated_stack.yaml").graph["loss"] is None:
        assert r.returncode == 65 and "no loss" in r.stderr and not (tmp_path / "b.svg").exists()


#: what graphviz-pure's bundled fonts (Arimo, Tinos, Cousine) draw: Latin-1 and a few symbols; ∇ and ✗ are boxes
DRAWN_GLYPHS = set(map(chr, range(0x20, 0x7F))) | set(map(chr, range(0xA0, 0x100))) | set("∂…—–→≥≤")


def test_labels_use_only_glyphs_the_bundled_fonts_draw(pictures):
    # every text drawn in every example picture (tooltips are shown by the viewer's fonts, not drawn)
    for (stem, _), (pic, _) in pictures.items():
        for g in pic.root.iter(f"{SVG}g"):
            for t in g.iter(f"{SVG}text"):
                assert set("".join(t.itertext())) <= DRAWN_GLYPHS, (stem, "".join(t.itertext()))
    backward = [pic for (stem, expanded), (pic, args) in pictures.items() if "--backward" in args]
    assert backward and all(any(t.startswith("∂ ") for n in pic.nodes.values() for t in n["texts"]) for pic in backward)


def test_non_latin_text_gets_the_room_it_is_drawn_in(tmp_path):
    # graphviz-pure sizes characters past Latin-1 as one space per UTF-8 byte (Ш: 0.56 em, drawn 0.83 em):
    # without graphc's widening, a Cyrillic title runs out of the picture
    (tmp_path / "cy.yaml").write_text("name: " + "Ш" * 30 + "\ninputs:\n  x: {shape: [N, 4]}\n"
                                      "layers:\n  - {name: fc, op: dense, units: 2}\noutputs: {y: fc}\n")
    r = graphc_cmd("viz", "cy.yaml", "-o", "cy.svg", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    width = float(ET.parse(tmp_path / "cy.svg").getroot().get("viewBox").split()[2])
    assert width >= 30 * 0.83 * 11  # the bold 11 pt title alone, at Arial's advance for Ш
    # the DOT text, which any renderer may draw, is not widened
    r = graphc_cmd("viz", "cy.yaml", "-o", "cy.dot", cwd=tmp_path)
    assert "Ш" * 30 + "</b>" in (tmp_path / "cy.dot").read_text()
