"""`graphc viz SPEC -o model.html`, through the real command: one self-contained page whose embedded
layouts and panel data match what graphc inferred; and in a real browser (headless Chromium, driven by
Playwright): a click shows a node's panel, a block instance expands and collapses, the search finds a
layer, the page asks for nothing over the network. A screenshot is left under the test's tmp dir."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import graphc
from graphc.report import compile_report

ROOT = Path(__file__).resolve().parent.parent
GRAPHC = shutil.which("graphc")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def viz(*args, env=None):
    env = dict(os.environ, GRAPHC_DOT="graphviz-pure") if env is None else env
    return subprocess.run([GRAPHC or "graphc", "viz", *map(str, args)], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300, check=False)


def page_data(path: Path) -> dict:
    text = path.read_text()
    found = re.search(r'<script type="application/json" id="graphc-data">(.*?)</script>', text, re.S)
    assert found, "no data script in the page"
    return json.loads(found.group(1))


def test_the_page_holds_one_layout_per_depth_and_per_instance_and_the_inferred_figures(tmp_path):
    spec = ROOT / "specs" / "resnet20_cifar.yaml"
    out = tmp_path / "model.html"
    r = viz(spec, "-o", out, "--backward")
    assert r.returncode == 0, r.stderr
    assert f"wrote {out}; rendered by graphviz-pure" in r.stderr
    text = out.read_text()
    # self-contained: no script, style, image or font from elsewhere
    assert not re.search(r'(src|href)\s*=\s*"(https?:)?//', text) and "<link" not in text and "@import" not in text
    graph = graphc.compile_spec(spec)
    deepest = max(len(i.scope) for i in graph.graph["instances"].values()) + 1
    data = page_data(out)
    instances = graph.graph["instances"]
    depths = [l["depth"] for l in data["layouts"]]
    assert depths == list(range(deepest + 1)) + [None] * len(instances)
    assert text.count("<svg") == deepest + 1 + len(instances)
    assert data["instances"] == {n: list(i.scope) for n, i in instances.items()}
    # one layout per instance: it and the instances around it open, every other one a single node
    alone = {tuple(l["open"]): l for l in data["layouts"] if l["depth"] is None}
    assert set(alone) == {tuple(sorted((*i.scope, n))) for n, i in instances.items()}
    layer2_b0 = {(u["kind"], u["name"]) for u in alone[("layer2", "layer2.b0")]["units"].values()}
    assert {("instance", "layer1"), ("instance", "layer3"), ("instance", "layer2.rest"), ("layer", "layer2.b0.conv1")} <= layer2_b0
    assert not any(name.startswith(("layer1.", "layer3.", "layer2.rest.")) for _, name in layer2_b0)
    assert data["backward"] is True
    # depth 0: the report's top-level rows, with their figures
    units = {u["name"]: u for u in data["layouts"][0]["units"].values() if u["kind"] in ("layer", "instance")}
    report = compile_report(graph)
    assert set(units) == {row["name"] for row in report["layers"]}
    for row in report["layers"]:
        u = units[row["name"]]
        assert (u["params"], u["params_trainable"], u["macs"], u["activation_bytes"]) == \
            (row["params"], row["params_trainable"], row["macs"], row["activation_bytes"]), row["name"]
        assert u["shape"] == "×".join(map(str, row["shape"]))
        if row["receptive_field"]:
            assert u["receptive_field"]["size"] == row["receptive_field"]["size"]
        assert u["backward"]["nodes"] > 0  # every layer with a gradient has its backward group
    conv1 = units["conv1"]
    assert conv1["op"] == "conv2d" and conv1["attributes"]["filters"] == 16 and conv1["inputs"] == [["image", "N×3×32×32"]]
    assert units["layer2"]["opens_at_depth"] == 1 and units["layer2"]["attributes"]["block"] == "down_stage"
    # the deepest layout: one unit per layer
    deep = {u["name"] for u in data["layouts"][deepest]["units"].values() if u["kind"] == "layer"}
    assert deep == set(graph.graph["layers"])


def test_hostile_text_stays_inside_the_data(tmp_path):
    # the spec's name and its path are free text (layer names are letters, digits, '_' and '-')
    where = tmp_path / "<"
    where.mkdir()
    spec = where / "script><!--&.yaml"  # the path reads .../</script><!--&.yaml
    spec.write_text("""\
name: "</script><script>alert(1)</script><!--"
inputs:
  x: {shape: [N, 4]}
layers:
  - {name: fc, op: dense, units: 2}
outputs: {y: fc}
""")
    out = tmp_path / "h.html"
    r = viz(spec, "-o", out)
    assert r.returncode == 0, r.stderr
    text = out.read_text()
    assert text.count("</script>") == 2 and text.count("<script") == 2  # the data's and the code's, none from the spec
    assert "<!--" not in text.split("<body>", 1)[1].split('<div id="stage">')[0]
    data = page_data(out)
    assert data["file"].endswith("</script><!--&.yaml")
    fc = next(u for u in data["layouts"][0]["units"].values() if u["name"] == "fc")
    assert "</script><!--&.yaml:5:" in fc["loc"]


def test_without_any_renderer_html_is_the_dot_fallback(tmp_path):
    out = tmp_path / "m.html"
    r = viz(ROOT / "specs" / "lenet5.yaml", "-o", out, env=dict(os.environ, GRAPHC_DOT="none"))
    assert r.returncode == 69 and not out.exists() and (tmp_path / "m.dot").exists()
    assert "neither Graphviz's 'dot' nor 'graphviz-pure'" in r.stderr
    assert "-Thtml" not in r.stderr and "then run graphc viz again" in r.stderr  # dot cannot write the page


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="no chromium installed (.ci/run installs Debian's chromium)")
def test_in_a_browser_click_expand_collapse_search(tmp_path):
    from playwright.sync_api import sync_playwright  # the test extra

    out = tmp_path / "resnet20.html"
    r = viz(ROOT / "specs" / "resnet20_cifar.yaml", "-o", out, "--backward")
    assert r.returncode == 0, r.stderr
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            errors, requests = [], []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda req: requests.append(req.url))
            page.goto(out.as_uri())
            panel = page.locator("#panel")
            assert "Click a node" in panel.inner_text()
            # a click on a layer: its op, attributes, shapes, params, MACs, memory, receptive field
            page.locator("#layout-0 g.node.layer", has_text="conv1").first.click()
            text = panel.inner_text()
            for part in ("conv1", "conv2d 16 k3 s1 p1", "filters: 16", "N×3×32×32 from image", "N×16×32×32",
                         "432", "442,368 per example", "64.0 KiB of activations", "size 3×3, stride 1×1", "backward"):
                assert part in text, (part, text)
            # its receptive-field path and its backward group are marked
            assert page.locator("#layout-0 g.node.sel").count() == 1
            assert page.locator("#layout-0 g.node.rf", has_text="image").count() == 1
            assert page.locator("#layout-0 g.node.bw.grad").count() == 1
            # one block instance expands in place: a cluster with its layers, its siblings stay single nodes
            def shown():  # the visible layout's open instances, clusters and instance nodes
                return page.evaluate("""() => { const v = graphcPage.views[graphcPage.current()];
                    return {open: [...v.open].sort(), clusters: Object.keys(v.clusters).filter(Boolean).sort(),
                            instances: Object.values(v.units).filter(u => u.kind === "instance").map(u => u.name).sort(),
                            visible: !v.div.hidden}; }""")

            page.locator("#layout-0 g.node.instance", has_text="layer2").first.click()
            assert "block down_stage" in panel.inner_text() and "23" in panel.inner_text()
            page.locator("#expand").click()
            assert page.locator("#layout-0").is_hidden()
            now = shown()
            assert now["visible"] and now["open"] == ["layer2"] and now["clusters"] == ["layer2"]
            assert now["instances"] == ["layer1", "layer2.b0", "layer2.rest", "layer3"]  # layer1, layer3 stay collapsed
            assert page.locator("#opened").inner_text() == "open: layer2"
            # a nested instance by double-click: it opens too, its sibling b0 stays one node
            page.locator(".layout:not([hidden]) g.node.instance", has_text="rest").first.dblclick()
            now = shown()
            assert now["open"] == ["layer2", "layer2.rest"] and now["clusters"] == ["layer2", "layer2.rest"]
            assert now["instances"] == ["layer1", "layer2.b0", "layer2.rest.0", "layer2.rest.1", "layer3"]
            assert page.locator(".layout:not([hidden]) g.node.layer", has_text="conv1").count() == 1  # layer1's conv1 only
            page.screenshot(path=str(tmp_path / "expanded.png"))
            page.locator("#collapse").click()  # the panel shows layer2.rest: close it, layer2 stays open
            now = shown()
            assert now["open"] == ["layer2"] and "layer2.rest" in now["instances"]
            assert page.locator(".layout:not([hidden]) g.node.instance.sel", has_text="rest").count() == 1
            page.locator(".layout:not([hidden]) g.cluster", has_text="layer2").first.locator("path, polygon").first.dblclick(position={"x": 30, "y": 6})  # its frame, by the label
            assert page.locator("#layout-0").is_visible() and shown()["open"] == []
            assert page.locator("#layout-0 g.node.instance.sel", has_text="layer2").count() == 1
            # the search finds a layer inside nested blocks, opening as many levels as it takes
            page.fill("#search", "layer3.rest.0.conv2")
            page.press("#search", "Enter")
            assert panel.locator("h2").inner_text() == "layer3.rest.0.conv2"
            assert shown()["open"] == ["layer3", "layer3.rest", "layer3.rest.0"]  # just the path to it
            page.mouse.wheel(0, -300)  # zoom in: the viewBox shrinks
            box = page.evaluate("graphcPage.views[graphcPage.current()].box")
            home = page.evaluate("graphcPage.views[graphcPage.current()].home")
            assert box["w"] < home["w"]
            page.screenshot(path=str(tmp_path / "page.png"))
            assert not errors, errors
            assert requests == [out.as_uri()]  # nothing but the page itself
        finally:
            browser.close()
    assert (tmp_path / "page.png").stat().st_size > 10_000
