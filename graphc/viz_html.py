"""``graphc viz SPEC -o model.html``: one self-contained page (no network access when opened) around the
pictures that :mod:`graphc.viz` lays out.

The page holds SVG layouts, each with the set of block instances it opens: one per depth (0: every
instance collapsed, then one more level open per layout) and one per instance (only it and the
instances around it open), and per drawn unit what the side panel shows. Its JavaScript (dependency-free, below) adds
pan (drag) and zoom (wheel, ``+``/``-``, ``0`` to fit), a click on a node → the panel (op,
attributes, input/output shapes, parameters, MACs, memory, receptive field, backward group) and the
node's receptive-field path (every ancestor back to the inputs) and backward group highlighted;
double-click or the panel's button expands one instance in place (the layout that opens what was
open plus that instance, else that instance alone, centred where the instance was; the others stay
collapsed) and collapses it again; a search box finds layers by name in any layout.

User text reaches the page only as JSON (``<`` escaped, so it cannot close the script element) and
through the SVGs, which the renderer escaped; the script writes panel text with ``textContent``.
"""

from __future__ import annotations

import html
import json

STYLE = """
* { box-sizing: border-box; }
body { margin: 0; font: 13px/1.4 Helvetica, Arial, sans-serif; color: #111827; display: flex; height: 100vh; overflow: hidden; }
#main { flex: 1; display: flex; flex-direction: column; min-width: 0; }
#bar { display: flex; gap: 8px; align-items: center; padding: 6px 10px; border-bottom: 1px solid #e5e7eb; background: #f9fafb; }
#bar h1 { font-size: 14px; margin: 0 12px 0 0; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
#bar input { width: 220px; padding: 3px 6px; }
#bar button, #panel button { padding: 2px 8px; cursor: pointer; }
#found, #opened { color: #6b7280; }
#stage { flex: 1; position: relative; overflow: hidden; cursor: grab; background: #fff; }
#stage.dragging { cursor: grabbing; }
.layout { position: absolute; inset: 0; }
.layout[hidden] { display: none; }
.layout svg { width: 100%; height: 100%; user-select: none; }
#panel { width: 340px; border-left: 1px solid #e5e7eb; padding: 10px 12px; overflow: auto; background: #fcfcfd; }
#panel h2 { font-size: 15px; margin: 0 0 4px; word-break: break-all; }
#panel .op { color: #374151; margin-bottom: 8px; }
#panel table { border-collapse: collapse; width: 100%; }
#panel th { text-align: left; vertical-align: top; color: #6b7280; font-weight: normal; padding: 2px 8px 2px 0; white-space: nowrap; }
#panel td { padding: 2px 0; word-break: break-word; }
#panel .hint { color: #6b7280; }
#panel .failed { color: #b91c1c; white-space: pre-wrap; }
g.node { cursor: pointer; }
g.cluster > path, g.cluster > polygon { cursor: zoom-out; }
svg.picked g.node:not(.sel):not(.rf):not(.bw), svg.picked g.edge:not(.rf) { opacity: 0.35; }
g.node.rf path, g.node.rf polygon, g.edge.rf path { stroke: #d97706; stroke-width: 2.5px; }
g.node.bw path, g.node.bw polygon { stroke: #dc2626; stroke-width: 3px; }
g.node.sel path, g.node.sel polygon { stroke: #2563eb; stroke-width: 4px; }
g.node.match path, g.node.match polygon { fill: #fde68a; }
"""

SCRIPT = r"""
(() => {
  "use strict";
  const DATA = JSON.parse(document.getElementById("graphc-data").textContent);
  const XLINK = "http://www.w3.org/1999/xlink";
  const stage = document.getElementById("stage"), panel = document.getElementById("panel");
  const search = document.getElementById("search"), found = document.getElementById("found");
  const opened = document.getElementById("opened");
  const views = DATA.layouts.map((layout, i) => {
    const div = document.getElementById("layout-" + i), svg = div.querySelector("svg");
    svg.removeAttribute("width"); svg.removeAttribute("height");
    const nodes = {}, byKey = {}, back = {}, edges = [], clusters = {};
    svg.querySelectorAll("g.node").forEach(g => {
      const id = g.querySelector("title").textContent;
      nodes[id] = g; g.dataset.unit = id;
      if (layout.units[id]) byKey[layout.units[id].key] = id;
    });
    svg.querySelectorAll("g.edge").forEach(g => {
      const [src, dst] = g.querySelector("title").textContent.split("->");
      edges.push({g, src, dst});
      if (!g.classList.contains("grad") && !g.classList.contains("gradlink")) (back[dst] = back[dst] || []).push(src);
    });
    svg.querySelectorAll("g.cluster").forEach(g => {
      const a = g.querySelector("a");
      const name = a ? (a.getAttributeNS(XLINK, "title") || "").split("\n")[0] : "";
      clusters[name] = g; g.dataset.instance = name;
    });
    const b = svg.viewBox.baseVal;
    return {div, svg, units: layout.units, depth: layout.depth, open: new Set(layout.open), nodes, byKey, back, edges, clusters,
            home: {x: b.x, y: b.y, w: b.width, h: b.height}};
  });
  let cur = 0, picked = null;  // picked: {key, info}

  function setBox(v, box) { v.box = box; v.svg.setAttribute("viewBox", [box.x, box.y, box.w, box.h].join(" ")); }
  views.forEach(v => setBox(v, {...v.home}));

  function toSvg(v, cx, cy) {  // client coordinates to the SVG's user coordinates
    const p = v.svg.createSVGPoint(); p.x = cx; p.y = cy;
    return p.matrixTransform(v.svg.getScreenCTM().inverse());
  }
  function centre(v, el) {  // keep the zoom, put el in the middle
    const r = el.getBoundingClientRect();
    const c = toSvg(v, r.x + r.width / 2, r.y + r.height / 2);
    setBox(v, {...v.box, x: c.x - v.box.w / 2, y: c.y - v.box.h / 2});
  }
  function show(i, keepScale) {  // both layouts are in points: keep the zoom by keeping the box's size
    const old = views[cur], v = views[i];
    views.forEach((w, j) => { w.div.hidden = j !== i; });
    if (keepScale && old !== v) setBox(v, {...v.box, w: old.box.w, h: old.box.h});
    cur = i;
    document.querySelectorAll("#depths button").forEach(b => { b.disabled = Number(b.dataset.view) === i; });
    opened.textContent = v.open.size ? "open: " + [...v.open].filter(n => ![...v.open].some(m => m !== n && DATA.instances[m].includes(n))).join(", ") : "";
  }

  function el(tag, text, cls) { const e = document.createElement(tag); if (text !== undefined) e.textContent = text; if (cls) e.className = cls; return e; }
  function num(n) { return n.toLocaleString("en-US"); }
  function bytes(n) { return n < 1024 ? n + " B" : n < 1048576 ? (n / 1024).toFixed(1) + " KiB" : (n / 1048576).toFixed(2) + " MiB"; }
  function infoByKey(key) {
    for (const v of views) { const id = v.byKey[key]; if (id) return v.units[id]; }
    return null;
  }

  function clear(v) {
    v.svg.classList.remove("picked");
    v.svg.querySelectorAll(".sel, .rf, .bw").forEach(g => g.classList.remove("sel", "rf", "bw"));
  }
  function mark(v, id) {  // the node, its receptive-field path, its backward group
    clear(v);
    const info = v.units[id]; if (!info) return;
    const seen = new Set([id]), todo = [id];
    while (todo.length) for (const s of v.back[todo.pop()] || []) if (!seen.has(s) && v.units[s] && v.units[s].kind !== "param") { seen.add(s); todo.push(s); }
    seen.forEach(s => v.nodes[s] && v.nodes[s].classList.add("rf"));
    v.edges.forEach(e => { if (seen.has(e.src) && seen.has(e.dst) && !e.g.classList.contains("grad") && !e.g.classList.contains("gradlink")) e.g.classList.add("rf"); });
    const grad = info.backward ? info.backward.id : (info.kind === "grad" ? id : null);
    if (grad && v.nodes[grad]) v.nodes[grad].classList.add("bw");
    if (info.kind === "grad" && v.byKey[info.of]) v.nodes[v.byKey[info.of]].classList.add("sel");
    v.nodes[id].classList.add("sel");
    v.svg.classList.add("picked");
  }

  function row(table, name, value) {
    if (value === null || value === undefined || value === "" || (Array.isArray(value) && !value.length)) return;
    const tr = table.appendChild(el("tr")); tr.appendChild(el("th", name));
    const td = tr.appendChild(el("td"));
    if (Array.isArray(value)) value.forEach(line => td.appendChild(el("div", line))); else td.textContent = value;
  }
  function render(info) {
    panel.replaceChildren();
    if (!info) { panel.appendChild(el("p", "Click a node for its details; double-click a block instance to open it, a cluster's frame to close it.", "hint")); return; }
    panel.appendChild(el("h2", info.kind === "grad" ? "\u2207 " + info.name.split(":").slice(1).join(":") : info.name));
    panel.appendChild(el("div", [info.op, info.describe].filter(Boolean).join(" "), "op"));
    const t = panel.appendChild(el("table"));
    row(t, "kind", info.kind);
    row(t, "defined at", info.loc);
    if (info.attributes) row(t, "attributes", Object.entries(info.attributes).map(([k, val]) => k + ": " + JSON.stringify(val)));
    row(t, "inputs", info.inputs.map(([from, shape]) => shape + " from " + from));
    row(t, "output", info.shape);
    row(t, "consumers", info.outputs.map(([to, shape]) => shape + " to " + to));
    if (info.params) row(t, "params", num(info.params) + (info.params_trainable !== info.params ? " (" + num(info.params_trainable) + " trainable)" : "") + ", " + bytes(info.param_bytes));
    row(t, "MACs", num(info.macs) + " per example");
    row(t, "memory", bytes(info.activation_bytes) + " of activations per example");
    const rf = info.receptive_field;
    if (rf) row(t, "receptive field", "size " + rf.size.join("\u00d7") + ", stride " + rf.stride.join("\u00d7") + ", padding " + rf.padding.join("\u00d7"));
    if (info.backward) row(t, "backward", info.backward.nodes + " node" + (info.backward.nodes === 1 ? "" : "s") + ", " + num(info.backward.macs) + " MACs (red)");
    if (info.backward_nodes) row(t, "backward nodes", info.backward_nodes);
    info.failed.forEach(f => panel.appendChild(el("p", f, "failed")));
    const v = views[cur];
    if (info.kind === "instance" && v.byKey[info.key]) {
      const b = panel.appendChild(el("button", "Expand " + info.name)); b.id = "expand"; b.onclick = () => expand(info.name);
    }
    const inside = info.kind === "instance" && v.clusters[info.name] ? [...info.cluster, info.name] : info.cluster;
    if (inside.length) {
      const name = inside[inside.length - 1];
      const b = panel.appendChild(el("button", "Collapse " + name)); b.id = "collapse"; b.onclick = () => collapse(name);
    }
  }
  function pick(id) {
    const v = views[cur], info = v.units[id];
    picked = info ? {key: info.key, info} : null;
    if (info) mark(v, id); else clear(v);
    render(info);
  }
  function pickKey(key) {
    const v = views[cur], id = v.byKey[key];
    if (id) { pick(id); centre(v, v.nodes[id]); }
  }

  // The page holds layouts by the set of instances they open: a whole depth, or one instance with
  // the ones around it. Opening (closing) an instance asks for the current set plus (minus) it; a set
  // the page does not hold falls back to that instance alone, then to its whole level.
  function layoutFor(open) {
    return views.findIndex(v => v.open.size === open.size && [...open].every(n => v.open.has(n)));
  }
  function firstOf(...tries) { for (const i of tries) if (i >= 0) return i; return -1; }
  function expand(name) {
    const path = [...DATA.instances[name], name];
    const i = firstOf(layoutFor(new Set([...views[cur].open, ...path])), layoutFor(new Set(path)),
                      views.findIndex(v => v.depth === path.length));
    if (i < 0) return;
    const before = views[cur], node = before.nodes[before.byKey["instance:" + name]];
    show(i, true);
    const v = views[cur];
    clear(v);
    if (v.clusters[name]) centre(v, v.clusters[name]);
    else if (node) centre(v, node);
    render(infoByKey("instance:" + name));
  }
  function collapse(name) {
    const around = DATA.instances[name];
    const rest = [...views[cur].open].filter(n => n !== name && !DATA.instances[n].includes(name));
    const i = firstOf(layoutFor(new Set(rest)), layoutFor(new Set(around)), views.findIndex(v => v.depth === around.length));
    if (i < 0) return;
    show(i, true);
    pickKey("instance:" + name);
  }

  function find(text) {
    const q = text.trim().toLowerCase();
    views.forEach(v => v.svg.querySelectorAll(".match").forEach(g => g.classList.remove("match")));
    if (!q) { found.textContent = ""; return; }
    const hits = v => Object.entries(v.units).filter(([, u]) => u.kind !== "grad" && u.name.toLowerCase().includes(q));
    let here = hits(views[cur]);
    const exact = v => hits(v).some(([, u]) => u.name.toLowerCase() === q);
    if (!exact(views[cur])) {  // look in the other layouts: the one opening fewest instances that draws the name itself
      const i = views.map((v, j) => j).filter(j => exact(views[j])).sort((a, b) => views[a].open.size - views[b].open.size)[0];
      if (i !== undefined) { show(i, true); here = hits(views[cur]); }
    }
    const v = views[cur];
    here.forEach(([id]) => v.nodes[id] && v.nodes[id].classList.add("match"));
    found.textContent = here.length ? here.length + " found" : "no layer named like '" + text.trim() + "'";
    const best = here.find(([, u]) => u.name.toLowerCase() === q) || here[0];
    if (best) { pick(best[0]); centre(v, v.nodes[best[0]]); }
  }

  // pointer: drag pans, a click without a drag picks, wheel zooms around the pointer
  let drag = null;
  stage.addEventListener("mousedown", e => { if (e.button === 0) drag = {x: e.clientX, y: e.clientY, box: {...views[cur].box}, moved: false}; });
  window.addEventListener("mousemove", e => {
    if (!drag) return;
    const v = views[cur], s = 1 / v.svg.getScreenCTM().a, dx = e.clientX - drag.x, dy = e.clientY - drag.y;
    if (Math.abs(dx) + Math.abs(dy) > 3) { drag.moved = true; stage.classList.add("dragging"); }
    if (drag.moved) setBox(v, {...drag.box, x: drag.box.x - dx * s, y: drag.box.y - dy * s});
  });
  window.addEventListener("mouseup", () => { stage.classList.remove("dragging"); setTimeout(() => { drag = null; }, 0); });
  stage.addEventListener("click", e => {
    if (drag && drag.moved) return;
    const node = e.target.closest("g.node"), cluster = e.target.closest("g.cluster");
    if (node) pick(node.dataset.unit);
    else if (cluster) { clear(views[cur]); render(infoByKey("instance:" + cluster.dataset.instance)); }
    else { picked = null; clear(views[cur]); render(null); }
  });
  stage.addEventListener("dblclick", e => {
    const node = e.target.closest("g.node"), cluster = e.target.closest("g.cluster");
    const info = node && views[cur].units[node.dataset.unit];
    if (info && info.kind === "instance") expand(info.name);
    else if (!node && cluster) collapse(cluster.dataset.instance);
  });
  function zoom(f, cx, cy) {
    const v = views[cur], r = stage.getBoundingClientRect();
    const p = toSvg(v, cx === undefined ? r.x + r.width / 2 : cx, cy === undefined ? r.y + r.height / 2 : cy);
    setBox(v, {x: p.x - (p.x - v.box.x) * f, y: p.y - (p.y - v.box.y) * f, w: v.box.w * f, h: v.box.h * f});
  }
  stage.addEventListener("wheel", e => { e.preventDefault(); zoom(Math.exp(e.deltaY * 0.0015), e.clientX, e.clientY); }, {passive: false});
  document.getElementById("zoom-in").onclick = () => zoom(1 / 1.25);
  document.getElementById("zoom-out").onclick = () => zoom(1.25);
  document.getElementById("fit").onclick = () => setBox(views[cur], {...views[cur].home});
  window.addEventListener("keydown", e => {
    if (e.target === search) { if (e.key === "Enter") find(search.value); return; }
    if (e.key === "+" || e.key === "=") zoom(1 / 1.25);
    else if (e.key === "-") zoom(1.25);
    else if (e.key === "0") setBox(views[cur], {...views[cur].home});
    else if (e.key === "Escape") { clear(views[cur]); render(null); }
    else if (e.key === "/") { e.preventDefault(); search.focus(); }
  });
  search.addEventListener("change", () => find(search.value));
  const depths = document.getElementById("depths");
  if (views.length > 1) views.forEach((v, i) => {
    if (v.depth === null) return;  // one instance's layout: reached by opening that instance
    const b = depths.appendChild(el("button", String(v.depth)));
    b.dataset.view = i;
    b.title = v.depth === 0 ? "every block instance collapsed" : "open " + v.depth + " level" + (v.depth > 1 ? "s" : "") + " of block instances";
    b.onclick = () => { show(i); if (picked) pickKey(picked.key); };
  });
  else depths.hidden = true;
  const names = document.getElementById("names");
  new Set(views.flatMap(v => Object.values(v.units).filter(u => u.kind !== "grad").map(u => u.name))).forEach(n => names.appendChild(el("option", n)));
  show(0);
  render(null);
  window.graphcPage = {views, pick, expand, collapse, find, current: () => cur};  // for scripts and tests
})();
"""


def _json_for_script(value) -> str:
    """JSON that is safe inside ``<script type="application/json">``: every ``<`` written ``\\u003c``, so
    neither ``</script>`` nor ``<!--`` can end or change it."""
    return json.dumps(value, ensure_ascii=False).replace("<", "\\u003c")


def page(title: str, layouts: list[dict], meta: dict) -> str:
    """The HTML text: ``layouts`` is ``[{depth, open, svg, units: {dot id: panel data}}]`` (depth 0 first;
    ``depth`` None for one instance's layout, ``open`` the instances it opens); ``meta["instances"]``
    maps each instance to the instances around it, outermost first."""
    data = {"layouts": [{"depth": l["depth"], "open": l["open"], "units": l["units"]} for l in layouts], **meta}
    svgs = "\n".join(f'<div class="layout" id="layout-{i}" hidden>{l["svg"]}</div>' for i, l in enumerate(layouts))
    depth_label = '<span id="depths">depth </span>' if len(layouts) > 1 else '<span id="depths" hidden></span>'
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">
<title>{html.escape(title)} · graphc</title>
<style>{STYLE}</style>
</head>
<body>
<div id="main">
<div id="bar">
<h1>{html.escape(title)}</h1>
<input id="search" type="search" list="names" placeholder="find a layer (/)" autocomplete="off">
<datalist id="names"></datalist>
<span id="found"></span>
<span id="opened"></span>
<span style="flex:1"></span>
{depth_label}
<button id="zoom-out" title="zoom out (-)">−</button><button id="zoom-in" title="zoom in (+)">+</button><button id="fit" title="fit (0)">fit</button>
</div>
<div id="stage">
{svgs}
</div>
</div>
<aside id="panel"></aside>
<script type="application/json" id="graphc-data">{_json_for_script(data)}</script>
<script>{SCRIPT}</script>
</body>
</html>
"""
