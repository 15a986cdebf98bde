"""``graphc viz``: a spec's graph drawn with Graphviz — shapes on the edges, parameters and receptive
fields on the nodes, block instances as clusters, the backward graph beside the forward one.

The picture is made of *units*: one drawn node per spec layer, per collapsed block instance, per
input, output, loss and (with ``--backward``) per gradient group. Every IR node is folded into one
unit (:meth:`Drawing.unit_of`); an IR edge between two units becomes one drawn edge, labelled with
the shape of the tensor it carries. ``--depth N`` opens the outermost N levels of block instances
into clusters (``--expand``: all of them); a collapsed instance is one node.

The DOT text is written here (no Graphviz Python bindings): every node and cluster gets a synthetic
id (``n12``, ``cluster_3``), so user text never appears as a DOT identifier; it appears only in
HTML-like labels (escaped by :func:`html_text`) and quoted strings (escaped by :func:`dot_string`).
``dot -T<fmt>`` renders it (:func:`find_renderer`: the system's Graphviz ``dot`` when it is on PATH,
else the ``graphviz-pure`` program that graphc depends on — a port of Graphviz's dot, SVG and PNG, no
PDF); the result is written atomically.

Labels use only glyphs that graphviz-pure's bundled fonts (Arimo, Tinos, Cousine: Latin, Greek,
Cyrillic, common symbols) carry, so a PNG shows no boxes: gradient groups are ``∂ conv1``
(``∇``, U+2207, is not in them) and a failed layer is marked ``×``. Tooltips keep ``∇``: the
viewer's own fonts show them. graphviz-pure sizes text past Latin-1 by estimate, short of what it
draws; for it, labels are widened (:func:`widen_for_estimate`); the DOT text written to a file is not.

Exit codes: 0 when the picture is written; 1 when the spec has errors (for a spec that fails shape
inference the picture is still written, up to the failing layer, which is marked and carries the
message), and 1 when no renderer can write the format (no program at all, or PDF without the
system's Graphviz): the DOT text is then written next to the requested output, as ``OUT.dot``, with
instructions to install Graphviz.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shutil
import subprocess
import sys
import textwrap
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # networkx is imported where it is used: 'graphc --help' and 'graphc schema' need none
    import networkx as nx

from .chart import graphviz_pure
from .errors import Diagnostic, GraphcError, Unavailable, did_you_mean
from .files import write_atomic
from .tensor import TensorType

FORMATS = ("svg", "png", "pdf", "dot", "html")
PURE_FORMATS = ("svg", "png")  # what graphviz-pure renders (it has no PDF output)
GRAD_MARK = "∂"  # in labels; U+2207 ∇ renders as a box in graphviz-pure's fonts
FAILED_MARK = "×"  # U+2717 ✗ too
INSTALL_HINT = ("install Graphviz from your package manager (Debian/Ubuntu: sudo apt-get install graphviz; "
                "Fedora: sudo dnf install graphviz; macOS: brew install graphviz), then run")

# style per unit kind: DOT attributes (fixed strings, no user text)
STYLES = {
    "input": 'shape=box, style="rounded,filled", fillcolor="#dbeafe", color="#1d4ed8"',
    "output": 'shape=box, style="rounded,filled", fillcolor="#dcfce7", color="#15803d"',
    "loss": 'shape=octagon, style=filled, fillcolor="#fed7aa", color="#c2410c"',
    "param": 'shape=note, style=filled, fillcolor="#f3f4f6", color="#6b7280", fontsize=8',
    "layer": 'shape=box, style="rounded,filled", fillcolor="#ffffff", color="#374151"',
    "instance": 'shape=box3d, style=filled, fillcolor="#ede9fe", color="#6d28d9"',
    "grad": 'shape=box, style="rounded,dashed,filled", fillcolor="#fee2e2", color="#dc2626", fontcolor="#991b1b"',
}
FAILED_STYLE = 'style="rounded,filled,bold", fillcolor="#fca5a5", color="#b91c1c", penwidth=3'
HIGHLIGHT_STYLE = 'penwidth=3, color="#d97706"'
TARGET_STYLE = 'penwidth=4, color="#d97706", fillcolor="#fde68a"'

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _printable(s) -> str:
    """Control characters (which XML cannot carry) shown as ``\\xNN``; tabs as spaces."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(s).replace("\t", " "))


def html_text(s) -> str:
    r"""``s`` as text inside a Graphviz HTML-like label: ``& < > " '`` become entities; backslashes are
    doubled, because Graphviz applies its escString rules to HTML-like labels too (``\N`` would show the
    node's id, ``\G`` the graph's; ``\\`` shows one backslash); control characters become a visible
    ``\xNN``; a newline becomes a line break."""
    s = _printable(s).replace("\\", "\\\\")
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;").replace("'", "&#39;")
    return s.replace("\r\n", "\n").replace("\r", "\n").replace("\n", '<br align="left"/>')


def dot_string(s) -> str:
    r"""``s`` as a quoted DOT string for ``tooltip``: quotes escaped, newlines as ``\n``, ``&`` as ``&amp;``
    (Graphviz passes entities through to the SVG untouched), and each backslash shown as ``⧵`` (U+29F5):
    Graphviz 2.43 unescapes tooltips twice (``\\N`` in the DOT text still shows the node's id, four
    backslashes make one) and other versions may not, so no backslash sequence is a portable literal."""
    s = _printable(s).replace("\\", "\u29f5").replace("&", "&amp;").replace('"', '\\"')
    return '"' + s.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\\n") + '"'


SPACE_EM = 0.278  # a space in Helvetica/Arial, in em


def _em(ch: str) -> float:
    """A generous guess at a character's advance in Arial/Arimo, in em (ASCII and Latin-1 are sized exactly
    by the renderer and not counted here)."""
    if unicodedata.east_asian_width(ch) in "WF":
        return 1.0
    return 0.92 if unicodedata.category(ch) == "Lu" else 0.62


def widen_for_estimate(s, bold: bool = False) -> str:
    """``s`` with trailing spaces on each line that make up for graphviz-pure's width estimate.

    Without Graphviz's font libraries, text is sized from per-character tables that stop at Latin-1;
    any other character counts as one space per UTF-8 byte (Ш: 2 × 0.278 em, drawn 0.83 em), so a
    Cyrillic or Greek title overflows its box. Trailing spaces are sized exactly, and the text starts
    where the estimate put it, so padding by the shortfall makes the box fit the drawn text."""
    lines = []
    for line in str(s).split("\n"):
        short = sum(_em(ch) * (1.1 if bold else 1.0) - len(ch.encode("utf-8")) * SPACE_EM for ch in line if ord(ch) > 0xFF)
        lines.append(line + " " * max(0, math.ceil(short / SPACE_EM)))
    return "\n".join(lines)


def shape_text(t: TensorType) -> str:
    """A tensor type as an edge label: ``N×3×32×32`` (dtype added when it is not float32)."""
    dims = "×".join(map(str, t.shape)) if t.shape else "scalar"
    return dims if t.dtype == "float32" else f"{dims} {t.dtype}"


def _short(n: int) -> str:
    if not isinstance(n, int):  # an expression of symbolic sizes
        return str(n)
    if n < 10_000:
        return f"{n:,}"
    for div, unit in ((10**9, "G"), (10**6, "M"), (10**3, "k")):
        if n >= div:
            return f"{n / div:.1f}{unit}"
    return str(n)


def _rf_text(fields) -> str:
    """Receptive field as ``RF 7 /2`` (size, effective stride), per dim when H and W differ."""
    def num(x):
        return str(int(x)) if x.denominator == 1 else f"{float(x):g}"
    sizes = {num(f.size) for f in fields}
    strides = {num(f.stride) for f in fields}
    size = sizes.pop() if len(sizes) == 1 else "×".join(num(f.size) for f in fields)
    stride = strides.pop() if len(strides) == 1 else "×".join(num(f.stride) for f in fields)
    return f"RF {size} /{stride}"


def _wrap(message: str, width: int = 48) -> list[str]:
    return [line for para in str(message).splitlines() for line in (textwrap.wrap(para, width) or [""])]


@dataclass
class Unit:
    key: tuple[str, str]  # (kind, name): kinds share no namespace with each other
    id: str  # synthetic DOT id
    cluster: tuple[str, ...]  # the expanded block instances around it, outermost first
    nodes: list[str] = field(default_factory=list)  # IR nodes folded into it
    output: str | None = None  # the IR node whose tensor leaves it (for its receptive field)

    @property
    def kind(self) -> str:
        return self.key[0]

    @property
    def name(self) -> str:
        return self.key[1]


class Drawing:
    """Builds the DOT text of a forward graph (and optionally its training graph)."""

    def __init__(self, graph: nx.DiGraph, training: nx.DiGraph | None = None, depth: int | None = 0,
                 highlight: str | None = None, rankdir: str = "TB", show_params: bool = False, loss_inputs=(),
                 estimated_widths: bool = False, opened: frozenset[str] | None = None):
        from .ir.analysis import costs, receptive_fields

        self.graph, self.training, self.depth = graph, training, depth
        self.opened = opened  # when given, exactly these block instances are open (``depth`` is then unused)
        self.rankdir, self.show_params = rankdir, show_params
        self.drawn = training if training is not None else graph
        self.instances = graph.graph.get("instances", {})
        self.layers = graph.graph.get("layers", {})
        self.failed: dict[str, Diagnostic] = graph.graph.get("failed", {})
        self.cost = costs(graph)
        self.grad_cost = costs(training) if training is not None else {}
        self.fields = receptive_fields(graph)
        self.units: dict[tuple[str, str], Unit] = {}
        self.loss_inputs = loss_inputs
        self.estimated_widths = estimated_widths  # the renderer sizes non-ASCII text by estimate (graphviz-pure)
        self.highlight, self.lit = self._highlight(highlight)

    def _t(self, s, bold: bool = False) -> str:
        """Label text: :func:`html_text`, widened for a renderer that estimates non-ASCII widths."""
        return html_text(widen_for_estimate(s, bold) if self.estimated_widths else s)

    # -- which unit an IR node belongs to ------------------------------------------------------------

    def _is_open(self, instance: str, level: int) -> bool:
        if self.opened is not None:
            return instance in self.opened
        return self.depth is None or level < self.depth

    def _visible(self, layer: str, scope: tuple[str, ...]) -> tuple[tuple[str, str], tuple[str, ...]]:
        """The unit a layer is drawn in (its outermost closed instance, else itself), and the clusters
        around that unit."""
        for level, instance in enumerate(scope):
            if not self._is_open(instance, level):
                return ("instance", instance), tuple(scope[:level])
        return ("layer", layer), tuple(scope)

    def _unit(self, key, cluster) -> Unit:
        if key not in self.units:
            self.units[key] = Unit(key, f"n{len(self.units)}", cluster)
        return self.units[key]

    def unit_of(self, node: str) -> Unit | None:
        a = self.drawn.nodes[node]
        role, layer = a["role"], a.get("layer", node)
        if role == "input" and layer == node:
            return self._unit(("input", node), ())
        if role == "loss" or (role == "grad" and layer == "loss" and layer not in self.layers):
            key, cluster = ("loss", "loss"), ()
        elif layer in self.layers:
            key, cluster = self._visible(layer, self.layers[layer].scope)
        else:
            key, cluster = ("layer", layer), tuple(a.get("scope", ()))
        if role == "grad":
            return self._unit(("grad", f"{key[0]}:{key[1]}"), cluster)
        if role == "param" and self.show_params:
            return self._unit(("param", node), cluster)
        return self._unit(key, cluster)

    # -- highlight ---------------------------------------------------------------------------------

    def _resolve(self, name: str) -> str:
        seen = set()
        while name in self.instances and name not in seen:
            seen.add(name)
            name = self.instances[name].output
        return name

    def _highlight(self, name: str | None) -> tuple[str | None, set[str]]:
        """The highlighted IR node and its receptive-field path: every ancestor but parameters."""
        if name is None:
            return None, set()
        target = self._resolve(name)
        if target not in self.graph:
            choices = [n for n in list(self.instances) + list(self.graph.nodes) if self._resolve(n) in self.graph]
            raise GraphcError(f"--highlight: no layer, block instance or node named '{name}'" +
                              (" in the part of the graph that was built" if self.failed else ""),
                              hint=did_you_mean(name, choices, "name"))
        import networkx as nx

        path = {n for n in nx.ancestors(self.graph, target) if self.graph.nodes[n]["role"] != "param"}
        return target, path | {target}

    # -- the DOT text ------------------------------------------------------------------------------

    def _collect(self):
        """Units (in topological order) and edges ``(src unit, dst unit, tensor node)``."""
        from .ir.graph import topo_order

        edges: dict[tuple[str, str, str], bool] = {}  # (src unit, dst unit, tensor) -> on the highlighted path
        order = topo_order(self.drawn)
        for name in order:
            self.unit_of(name).nodes.append(name)
        training = self.training is not None
        for v in order:
            a = self.drawn.nodes[v]
            dst = self.unit_of(v)
            for u in a["inputs"]:
                src = self.unit_of(u)
                ur = self.drawn.nodes[u]["role"]
                if src is dst or (ur == "param" and not self.show_params):
                    continue
                if training and a["role"] == "grad" and ur != "grad":
                    continue  # activations read by gradient rules: shown by the forward–gradient link instead
                edges[(src.id, dst.id, u)] = edges.get((src.id, dst.id, u), False) or (u in self.lit and v in self.lit)
        # outputs, failed layers and the failed loss
        for oname, node in self.graph.graph.get("outputs", {}).items():
            if node in self.drawn:
                out = self._unit(("output", oname), ())
                out.output = node
                edges[(self.unit_of(node).id, out.id, node)] = False
        for lname in self.failed:
            if lname in self.layers:
                key, cluster = self._visible(lname, self.layers[lname].scope)
                srcs = [self._resolve(s) for s in self.layers[lname].inputs]
            else:
                key, cluster, srcs = ("loss", "loss"), (), [self._resolve(s) for s in self.loss_inputs]
            unit = self._unit(key, cluster)
            for s in srcs:
                if s in self.drawn and self.unit_of(s) is not unit:
                    edges[(self.unit_of(s).id, unit.id, s)] = False
        for unit in self.units.values():
            if unit.output is None:
                if unit.kind == "instance":
                    unit.output = self._resolve(unit.name)
                elif unit.kind in ("layer", "input", "param"):
                    unit.output = unit.name
                elif unit.kind == "loss":
                    unit.output = "loss"
        return list(self.units.values()), edges

    def _failures_in(self, unit: Unit) -> list[Diagnostic]:
        found = []
        for lname, diag in self.failed.items():
            if lname in self.layers:
                key, _ = self._visible(lname, self.layers[lname].scope)
            else:
                key = ("loss", "loss")
            if key == unit.key:
                found.append(diag)
        return found

    def _label(self, unit: Unit) -> tuple[str, str]:
        """(HTML-like label, tooltip text). Inside a cluster, names drop the cluster's prefix."""
        g = self.graph
        prefix = unit.cluster[-1] + "." if unit.cluster else ""
        short = unit.name[len(prefix):] if prefix and unit.name.startswith(prefix) else unit.name
        lines: list[str] = []  # already-escaped HTML lines
        tip: list[str] = [unit.name if unit.kind != "grad" else "∇ " + unit.name.split(":", 1)[1]]
        out_type = self.drawn.nodes[unit.output]["type"] if unit.output in self.drawn else None
        params = sum(self.cost[n].params for n in unit.nodes if n in self.cost and g.nodes[n]["role"] == "param")
        macs = sum(self.cost[n].macs for n in unit.nodes if n in self.cost)
        field_ = self.fields.get(unit.output) if unit.output in self.fields else None
        stats = []
        if unit.kind == "layer":
            op = g.graph.get("layer_ops", {}).get(unit.name)
            layer = self.layers.get(unit.name)
            kind = op.kind if op is not None else (layer.kind if layer else "")
            desc = op.describe() if op is not None else ""
            lines.append(f"<b>{self._t(short, bold=True)}</b>")
            lines.append(self._t(f"{kind} {desc}".strip()))
            tip.append(f"{kind} {desc}".strip())
            if layer is not None and layer.loc:
                tip.append(str(layer.loc))
        elif unit.kind == "instance":
            inst = self.instances[unit.name]
            inside = sum(1 for l in self.layers.values() if unit.name in l.scope)
            lines.append(f"<b>{self._t(short, bold=True)}</b>")
            lines.append(self._t(f"{inst.block} · {inside} layers"))
            tip.append(f"block {inst.block}, {inside} layers")
            if inst.loc:
                tip.append(str(inst.loc))
        elif unit.kind == "input":
            lines.append(f"<b>{self._t(unit.name, bold=True)}</b>")
            if out_type is not None:
                lines.append(self._t(shape_text(out_type)))
        elif unit.kind == "output":
            lines.append(f"<b>{self._t(unit.name, bold=True)}</b>")
            lines.append("output")
        elif unit.kind == "param":
            lines.append(self._t(unit.name.rsplit(".", 1)[-1]))
            if out_type is not None:
                lines.append(self._t(shape_text(out_type)))
        elif unit.kind == "loss":
            loss_data = "loss/data" if "loss/data" in g else "loss"
            kind = g.nodes[loss_data]["op"].kind if loss_data in g else "loss"
            lines.append("<b>loss</b>")
            lines.append(self._t(kind + (" + l2" if "loss/l2" in g else "")))
        elif unit.kind == "grad":
            kinds = list(dict.fromkeys(self.drawn.nodes[n]["op"].kind for n in unit.nodes))
            gmacs = sum(self.grad_cost[n].macs for n in unit.nodes)
            of = unit.name.split(":", 1)[1]
            lines.append(f"<b>{GRAD_MARK} {self._t(of)}</b>")
            shown = ", ".join(kinds[:3]) + (", …" if len(kinds) > 3 else "")
            lines.append(self._t(f"{len(unit.nodes)} node{'s' if len(unit.nodes) != 1 else ''}: {shown}"))
            if gmacs:
                stats.append(f"{_short(gmacs)} MACs")
            tip += [f"{len(unit.nodes)} backward nodes"] + unit.nodes
        if unit.kind in ("layer", "instance"):
            if params:
                stats.append(f"{_short(params)} params")
            if field_:
                stats.append(_rf_text(field_))
            tip.append(f"params {params:,} · MACs {macs:,}" + (f" · {_rf_text(field_)}" if field_ else ""))
        if stats:
            lines.append(f'<font point-size="8">{self._t(" · ".join(stats))}</font>')
        for diag in self._failures_in(unit):
            lines.append(f'<font color="#7f1d1d"><b>{FAILED_MARK} shape inference failed</b></font>')
            wrapped = _wrap(diag.message) + (_wrap(diag.hint) if diag.hint else [])
            lines.append('<font point-size="8" color="#7f1d1d">' + '<br align="left"/>'.join(map(self._t, wrapped)) + '<br align="left"/></font>')
            tip.append(str(diag))
        if unit.kind == "output" and out_type is not None:
            tip.append(shape_text(out_type))
        return "<" + "<br/>".join(lines) + ">", "\n".join(tip)

    def dot(self) -> str:
        units, edges = self._collect()
        self.edges = edges
        by_id = {u.id: u for u in units}
        lit_units = {self.unit_of(n).id for n in self.lit if n in self.drawn}
        target_unit = self.unit_of(self.highlight).id if self.highlight in self.drawn else None
        failed_units = {u.id for u in units if self._failures_in(u)}
        g = self.graph
        out = ["digraph graphc {",
               (f'  graph [rankdir={self.rankdir}, newrank=true, nodesep=0.25, ranksep=0.35, fontname="Helvetica", fontsize=11, '
                'labelloc=t, tooltip=" "];'),
               '  node [fontname="Helvetica", fontsize=10, margin="0.12,0.04"];',
               '  edge [fontname="Helvetica", fontsize=8, color="#4b5563", arrowsize=0.6];']
        title = [f"<b>{self._t(g.graph.get('name') or '', bold=True)}</b> {self._t(g.graph.get('file') or '')}"]
        total_params = sum(c.params for c in self.cost.values())
        total_macs = sum(c.macs for c in self.cost.values())
        title.append(self._t(f"{total_params:,} params · {total_macs:,} MACs per example"
                               + (" · backward in red" if self.training is not None else "")))
        if self.highlight is not None:
            f = self.fields.get(self.highlight)
            title.append(self._t(f"highlighted: {self.highlight} and its receptive-field path" + (f" ({_rf_text(f)})" if f else "")))
        if self.failed:
            title.append('<font color="#b91c1c">' + self._t(f"shape inference failed at {', '.join(self.failed)}: drawn up to there") + "</font>")
        out.append(f"  label=<{'<br/>'.join(title)}>;")

        def node_line(u: Unit, indent: str) -> str:
            label, tip = self._label(u)
            style = STYLES[u.kind]
            classes = [u.kind]
            if u.id in failed_units:
                style += ", " + FAILED_STYLE
                classes.append("failed")
            if u.id == target_unit:
                style += ", " + TARGET_STYLE
                classes.append("highlight target")
            elif u.id in lit_units:
                style += ", " + HIGHLIGHT_STYLE
                classes.append("highlight")
            return f'{indent}{u.id} [{style}, class="{" ".join(classes)}", label={label}, tooltip={dot_string(tip)}];'

        # clusters: a tree of expanded instances
        children: dict[tuple[str, ...], list[tuple[str, ...]]] = {}
        for u in units:
            for i in range(1, len(u.cluster) + 1):
                path = u.cluster[:i]
                siblings = children.setdefault(path[:-1], [])
                if path not in siblings:
                    siblings.append(path)
        grads_of = {}
        if self.training is not None:
            for u in units:
                if u.kind == "grad":
                    kind, name = u.name.split(":", 1)
                    fwd = self.units.get((kind, name))
                    if fwd is not None:
                        grads_of[fwd.id] = u.id
        counter = iter(range(10**9))

        def emit(path: tuple[str, ...], indent: str):
            for u in units:
                if u.cluster == path:
                    out.append(node_line(u, indent))
                    if u.id in grads_of:  # the gradient group beside its forward unit
                        out.append(f"{indent}{{rank=same; {u.id}; {grads_of[u.id]};}}")
            for child in children.get(path, []):
                inst = self.instances.get(child[-1])
                out.append(f"{indent}subgraph cluster_{next(counter)} {{")
                block = f" · {inst.block}" if inst else ""
                prefix = child[-2] + "." if len(child) > 1 and child[-1].startswith(child[-2] + ".") else ""
                tip = "\n".join([child[-1], f"block {inst.block}" if inst else ""] + ([str(inst.loc)] if inst and inst.loc else []))
                out.append(f'{indent}  label=<<b>{self._t(child[-1][len(prefix):], bold=True)}</b>{self._t(block)}>; class="instance"; '
                           f'tooltip={dot_string(tip)}; style="rounded,filled"; fillcolor="#f5f3ff"; color="#8b5cf6"; fontsize=10; labeljust=l;')
                emit(child, indent + "  ")
                out.append(f"{indent}}}")

        emit((), "  ")
        merged: dict[tuple[str, str], list[str]] = {}  # several tensors between two units: one edge
        lit_edges = set()
        for (src, dst, tensor), lit in edges.items():
            merged.setdefault((src, dst), []).append(tensor)
            if lit:
                lit_edges.add((src, dst))
        for (src, dst), tensors in merged.items():
            a, b = by_id[src], by_id[dst]
            shapes = list(dict.fromkeys(shape_text(self.drawn.nodes[t]["type"]) for t in tensors))
            attrs = [f"label=<{'<br/>'.join(map(self._t, shapes))}>"]
            classes = ["shape"]
            if a.kind == "grad" and b.kind == "grad":
                attrs.append('color="#dc2626", fontcolor="#991b1b", style=dashed, constraint=false')
                classes.append("grad")
            elif a.kind == "param":
                attrs.append('style=dotted, color="#9ca3af"')
            if (src, dst) in lit_edges:
                attrs.append('color="#d97706", penwidth=2.5')
                classes.append("highlight")
            out.append(f'  {src} -> {dst} [{", ".join(attrs)}, class="{" ".join(classes)}"];')
        for fwd, grad in grads_of.items():
            out.append(f'  {fwd} -> {grad} [style=dotted, color="#f87171", arrowhead=none, class="gradlink"];')
        out.append("}")
        return "\n".join(out) + "\n"


    # -- what the interactive page's side panel shows -----------------------------------------------

    def panel(self) -> dict[str, dict]:
        """Per drawn unit (by its DOT id), after :meth:`dot`: what the page's side panel shows — op and
        attributes, input and output shapes, parameters, MACs, memory, receptive field, backward group."""
        from .ir.analysis import field_json

        g, drawn = self.graph, self.drawn
        ins: dict[str, list] = {}
        outs: dict[str, list] = {}
        by_id = {u.id: u for u in self.units.values()}
        for src, dst, tensor in self.edges:
            shape = shape_text(drawn.nodes[tensor]["type"])
            ins.setdefault(dst, []).append([by_id[src].name, shape])
            outs.setdefault(src, []).append([by_id[dst].name, shape])
        data = {}
        for unit in self.units.values():
            forward = [n for n in unit.nodes if n in g]
            params = [n for n in forward if g.nodes[n]["role"] == "param"]
            out_type = drawn.nodes[unit.output]["type"] if unit.output in drawn else None
            info = {"key": f"{unit.kind}:{unit.name}", "kind": unit.kind, "name": unit.name, "cluster": list(unit.cluster),
                    "inputs": ins.get(unit.id, []), "outputs": outs.get(unit.id, []),
                    "shape": shape_text(out_type) if out_type is not None else None,
                    "params": sum(self.cost[n].params for n in params),
                    "params_trainable": sum(self.cost[n].params_trainable for n in params),
                    "param_bytes": sum(g.nodes[n]["type"].nbytes() for n in params),
                    "macs": sum(self.cost[n].macs for n in forward if n in self.cost),
                    "activation_bytes": sum(self.cost[n].activation_bytes for n in forward if g.nodes[n]["role"] not in ("param", "input")),
                    "failed": [str(d) for d in self._failures_in(unit)]}
            field_ = self.fields.get(unit.output) if unit.kind in ("layer", "instance", "input") else None
            if field_:
                info["receptive_field"] = field_json(field_) | {"text": _rf_text(field_)}
            if unit.kind == "layer":
                op = g.graph.get("layer_ops", {}).get(unit.name)
                layer = self.layers.get(unit.name)
                info["op"] = op.kind if op is not None else (layer.kind if layer else "")
                info["describe"] = op.describe() if op is not None else ""
                info["attributes"] = op.model_dump(mode="json") if op is not None else {}
                info["loc"] = str(layer.loc) if layer is not None and layer.loc else None
            elif unit.kind == "instance":
                inst = self.instances[unit.name]
                info["op"] = f"block {inst.block}"
                info["attributes"] = {"block": inst.block, "layers": sum(1 for l in self.layers.values() if unit.name in l.scope)}
                info["loc"] = str(inst.loc) if inst.loc else None
                info["opens_at_depth"] = len(inst.scope) + 1
            elif unit.kind == "grad":
                kinds = list(dict.fromkeys(drawn.nodes[n]["op"].kind for n in unit.nodes))
                info["op"] = "backward: " + ", ".join(kinds)
                info["macs"] = sum(self.grad_cost[n].macs for n in unit.nodes)
                info["activation_bytes"] = sum(self.grad_cost[n].activation_bytes for n in unit.nodes)
                info["backward_nodes"] = list(unit.nodes)
                info["of"] = unit.name  # the forward unit's key: "layer:conv1"
            else:
                info["op"] = unit.kind
            grad = self.units.get(("grad", f"{unit.kind}:{unit.name}"))
            if grad is not None:
                info["backward"] = {"id": grad.id, "nodes": len(grad.nodes),
                                    "macs": sum(self.grad_cost[n].macs for n in grad.nodes)}
            data[unit.id] = info
        return data


def to_dot(graph: nx.DiGraph, backward: bool = False, depth: int | None = 0, highlight: str | None = None,
           rankdir: str = "TB", show_params: bool = False, loss_inputs=(), estimated_widths: bool = False) -> str:
    """The DOT text of ``graph`` (a forward IR from :func:`graphc.ir.build.build_graph`, possibly partial).

    ``backward`` also draws the training graph's backward nodes, one group per forward unit beside it;
    ``depth`` opens that many levels of block instances (``None``: all); ``highlight`` names a layer,
    block instance or IR node whose receptive-field path (its ancestors back to the inputs) is marked.
    """
    training = None
    if backward and not graph.graph.get("failed"):
        from .ir.autodiff import training_graph
        from .ir.passes import optimize

        training, _ = optimize(training_graph(graph))
    return Drawing(graph, training, depth, highlight, rankdir, show_params, loss_inputs, estimated_widths).dot()


@dataclass(frozen=True)
class Renderer:
    """The program that turns DOT text into a picture, and which formats it writes."""

    program: str  # full path
    name: str  # as said to the user: "Graphviz dot" or "graphviz-pure"
    formats: tuple[str, ...]

    def describe(self) -> str:
        return f"{self.name} ({self.program})"


def find_renderer() -> Renderer | None:
    """The system's Graphviz ``dot`` when it is on PATH, else ``graphviz-pure``; ``None`` when neither.

    ``GRAPHC_DOT`` overrides the search: a program name or path to render with (``graphviz-pure``
    picks the bundled one even where ``dot`` is installed); set but naming nothing runnable (e.g.
    ``GRAPHC_DOT=none``), no renderer is found."""
    override = os.environ.get("GRAPHC_DOT")
    if override is not None:
        program = graphviz_pure() if override == "graphviz-pure" else shutil.which(override)
    else:
        program = shutil.which("dot") or graphviz_pure()
    if program is None:
        return None
    if Path(program).name.startswith("graphviz-pure"):
        return Renderer(program, "graphviz-pure", PURE_FORMATS)
    return Renderer(program, "Graphviz dot", ("svg", "png", "pdf"))


def render(dot_text: str, fmt: str, dot_program: str) -> bytes:
    """``dot -T<fmt>`` over ``dot_text``: the rendered bytes; the renderer's own errors as a GraphcError.
    Its warnings are dropped when it succeeds (graphviz-pure warns that it estimates the width of
    non-ASCII characters, as Graphviz does without its font libraries)."""
    try:
        done = subprocess.run([dot_program, f"-T{fmt}"], input=dot_text.encode("utf-8", "replace"), capture_output=True, timeout=600, check=False)
    except OSError as e:  # found, but it does not start: as good as missing
        raise Unavailable(f"could not run {dot_program}: {e}") from None
    except subprocess.TimeoutExpired as e:
        raise GraphcError(f"could not run {dot_program}: {e}") from None
    if done.returncode != 0 or not done.stdout:
        raise GraphcError(f"{Path(dot_program).name} failed (exit {done.returncode}): {done.stderr.decode(errors='replace').strip()}",
                          hint="write the DOT text with -o OUT.dot to inspect it")
    return done.stdout


def renderer_note() -> str:
    """One sentence for ``--help``: which program would draw the picture here."""
    r = find_renderer()
    if r is None:
        return "Here neither Graphviz's dot nor graphviz-pure is found, so only .dot can be written."
    if r.name == "graphviz-pure":
        return f"Here the picture is drawn by {r.describe()} (SVG and PNG; PDF needs the system's Graphviz)."
    return f"Here the picture is drawn by {r.describe()}."


PAGE_INSTANCE_LAYOUTS = 64  # above this many block instances the page holds only the per-depth layouts


def html_page(graph: nx.DiGraph, backward: bool, rankdir: str, show_params: bool, loss_inputs, highlight: str | None,
              program: str) -> str:
    """The interactive page, each layout an SVG drawn by ``program`` with the side panel's data of every
    drawn unit: one layout per depth (0: every block instance collapsed, up to every one open), and per
    block instance one where only it and the instances around it are open (its siblings and every
    other instance stay collapsed), so that the page opens and closes one instance at a time. A spec of
    more than :data:`PAGE_INSTANCE_LAYOUTS` instances gets the per-depth layouts only (opening an
    instance then opens its whole level)."""
    from .viz_html import page

    training = None
    if backward and not graph.graph.get("failed"):
        from .ir.autodiff import training_graph
        from .ir.passes import optimize

        training, _ = optimize(training_graph(graph))
    instances = graph.graph.get("instances", {})
    deepest = max((len(i.scope) + 1 for i in instances.values()), default=0)
    wanted: dict[frozenset[str], int | None] = {}  # open instances -> the depth it stands for (None: one instance's)
    for depth in range(deepest + 1):
        wanted[frozenset(n for n, i in instances.items() if len(i.scope) < depth)] = depth
    if len(instances) <= PAGE_INSTANCE_LAYOUTS:
        for name, inst in instances.items():
            wanted.setdefault(frozenset((*inst.scope, name)), None)
    estimated = Path(program).name.startswith("graphviz-pure")
    layouts = []
    for opened, depth in wanted.items():
        drawing = Drawing(graph, training, 0, highlight, rankdir, show_params, loss_inputs, estimated, opened)
        svg = render(drawing.dot(), "svg", program).decode("utf-8")
        layouts.append({"depth": depth, "open": sorted(opened), "svg": svg[svg.index("<svg"):], "units": drawing.panel()})
    title = graph.graph.get("name") or graph.graph.get("file") or "graph"
    return page(title, layouts, {"file": graph.graph.get("file"), "backward": training is not None,
                                 "instances": {n: list(i.scope) for n, i in instances.items()}})


def _output_path(text: str) -> Path:
    path = Path(text)
    fmt = path.suffix[1:].lower()
    if fmt not in FORMATS:
        raise argparse.ArgumentTypeError(f"'{text}': the output must end in one of {', '.join('.' + f for f in FORMATS)}")
    return path


def _depth(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number of levels (0, 1, 2, …)")
    return n


def cmd_viz(args) -> int:
    from .files import check_outputs
    from .ir.build import build_graph
    from .ir.params import PARAM_VALUES
    from .onnx_import import load_source

    check_outputs({"-o": args.output}, {"SPEC": args.spec})
    loaded, imported = load_source(args.spec)  # an ONNX model is imported in memory
    graph = build_graph(loaded, partial=True)
    if imported is not None:
        graph.graph[PARAM_VALUES] = imported
    failed = graph.graph.get("failed", {})
    if args.trained and not failed:
        from .backends.trained import trained_model

        graph, _, note = trained_model(graph, args.trained)
        if note:
            print(f"graphc: {note}", file=sys.stderr)
    loss = loaded.data.get("loss")
    loss_inputs = loss.get("inputs", []) if isinstance(loss, dict) and isinstance(loss.get("inputs"), list) else []
    depth = None if args.expand else args.depth
    out: Path = args.output
    fmt = out.suffix[1:].lower()
    renderer = find_renderer() if fmt != "dot" else None
    estimated = renderer is not None and renderer.name == "graphviz-pure"

    def text(estimated_widths: bool) -> str:  # the DOT written to a file is for any renderer: no widening
        return to_dot(graph, args.backward, depth, args.highlight, args.rankdir, args.params, loss_inputs, estimated_widths)

    problems = list(failed.values())
    missing = []  # the renderer the format needs: exit 69 when it is the only problem
    if args.backward and failed:
        problems.append(Diagnostic("the backward graph is not drawn: the forward graph failed shape inference"))
    if fmt == "dot":
        write_atomic(out, text(False))
        print(f"wrote {out}", file=sys.stderr)
    elif fmt == "html" and renderer is not None:
        write_atomic(out, html_page(graph, args.backward, args.rankdir, args.params, loss_inputs, args.highlight, renderer.program))
        print(f"wrote {out}" + (f" (drawn up to the failing layer{'s' if len(failed) > 1 else ''}: "
                                f"{', '.join(failed)})" if failed else "") + f"; rendered by {renderer.describe()}", file=sys.stderr)
    else:
        if renderer is None or fmt not in renderer.formats + ("html",):
            fallback = out.with_suffix(".dot")
            write_atomic(fallback, text(False))
            if renderer is None:
                why = "neither Graphviz's 'dot' nor 'graphviz-pure' (a graphc dependency: pip install graphviz-pure) is found"
            else:
                why = f"{fmt.upper()} needs Graphviz's own 'dot', which is not on PATH ({renderer.name} writes {', '.join(renderer.formats)})"
            hint = (f"{INSTALL_HINT} dot -T{fmt} {fallback} -o {out}" if fmt != "html" else  # the page is graphc's, not dot's
                    f"pip install graphviz-pure (or {INSTALL_HINT.replace(', then run', '')}), then run graphc viz again")
            missing.append(Diagnostic(f"{why}, so {out} was not rendered; wrote the graph to {fallback}", hint=hint))
        else:
            write_atomic(out, render(text(estimated), fmt, renderer.program))
            print(f"wrote {out}" + (f" (drawn up to the failing layer{'s' if len(failed) > 1 else ''}: "
                                    f"{', '.join(failed)})" if failed else "") + f"; rendered by {renderer.describe()}", file=sys.stderr)
    if problems:  # a bad spec is the first thing to fix (65), whether or not a renderer is missing too
        raise GraphcError(problems + missing)
    if missing:
        raise Unavailable(missing)
    return 0


def add_subcommand(sub, epilog: str) -> None:
    """Add ``graphc viz`` to the CLI's subparsers."""
    v = sub.add_parser(
        "viz", help="draw the graph with Graphviz: shapes on edges, params and receptive fields on nodes",
        description="Draw SPEC's graph with Graphviz's dot: one node per layer (op and key attributes, parameter count, "
                    "receptive field as 'RF size /stride'), edges labelled with the inferred tensor shapes, block instances "
                    "collapsed to one node (--expand or --depth N opens them as clusters); inputs blue, outputs green, the loss "
                    "orange, gradient groups red and dashed. A spec that fails shape inference is still drawn up to the failing "
                    "layer, marked red with the message; the picture is written and the exit code is 65. The renderer is the "
                    "system's Graphviz 'dot' when it is on PATH, else graphviz-pure (installed with graphc; SVG and PNG, no PDF); "
                    "GRAPHC_DOT=PROGRAM picks one. Without a renderer for the format, viz writes OUT.dot next to the requested "
                    "output, says how to install Graphviz and exits 69 (a program graphc needs is unavailable). " + renderer_note().replace("%", "%%") +
                    " Example: graphc viz specs/resnet20_cifar.yaml -o resnet20.svg --depth 1",
        epilog=epilog)
    v.add_argument("spec", help="the spec file (YAML)")
    v.add_argument("-o", "--output", required=True, type=_output_path, metavar="OUT.{svg,png,pdf,dot,html}",
                   help="where to write the picture (atomically); the suffix picks the format, .dot writes the DOT text, "
                        ".html one self-contained interactive page (pan, zoom, click a node for its details, expand blocks, search)")
    v.add_argument("--backward", action="store_true",
                   help="draw the training graph: beside each forward node, its group of backward nodes (red, dashed), "
                        "with the cotangent shapes on the backward edges")
    v.add_argument("--expand", action="store_true", help="open every block instance: one node per layer")
    v.add_argument("--depth", type=_depth, default=0, metavar="N",
                   help="open the outermost N levels of block instances as clusters (default 0: each instance is one node)")
    v.add_argument("--highlight", metavar="NODE",
                   help="mark a layer, block instance or input and its receptive-field path (all its ancestors back to the inputs)")
    v.add_argument("--rankdir", choices=("TB", "LR"), default="TB", help="layout direction: top to bottom (default) or left to right")
    v.add_argument("--params", action="store_true", help="also draw parameter nodes (weights, biases, running statistics)")
    v.add_argument("--trained", metavar="RUN_DIR|P.npz",
                   help="draw the trained model: a training run directory's input normalisation is drawn as the layer "
                        "<input>.normalize (a subtract and a divide) in front of the network")
    v.set_defaults(run=cmd_viz)
