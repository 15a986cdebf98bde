"""Graph passes that keep a (training) graph small. Each is a pure function: it returns a new graph
and the list of what it changed, so ``graphc compile --backward --passes`` can print it.

- :func:`fold_constants`: nodes computed from constants alone become constants (when the result is a
  filled tensor), and algebraic identities disappear: ``x·1``, ``1·x``, ``x + 0``, ``scale(x, 1)``.
- :func:`eliminate_common_subexpressions`: nodes applying an equal op to the same inputs are merged.
- :func:`eliminate_dead_code`: nodes that no kept node depends on are removed.
"""

from __future__ import annotations

import networkx as nx
import numpy as np

from ..ops.source import Const
from .graph import topo_order

SOURCE_KINDS = ("input", "param", "random_mask")
NAMED_RESULTS = ("outputs", "grads", "updates")
IDENTITIES = {"mul": (1.0, "x·1"), "add": (0.0, "x + 0")}  # op kind → (its neutral constant, how it reads)


def _copy(graph: nx.DiGraph) -> nx.DiGraph:
    g = graph.copy()
    for n in g.nodes:
        g.nodes[n].update(dict(graph.nodes[n]))
    for key in NAMED_RESULTS:
        if key in graph.graph:
            g.graph[key] = dict(graph.graph[key])
    return g


def _replace(g: nx.DiGraph, old: str, new: str) -> None:
    """Every use of ``old`` (inputs, named results) becomes ``new``; ``old`` is removed."""
    for user in list(g.successors(old)):
        g.nodes[user]["inputs"] = tuple(new if i == old else i for i in g.nodes[user]["inputs"])
        g.add_edge(new, user)
    for key in NAMED_RESULTS:
        mapping = g.graph.get(key, {})
        for k, v in mapping.items():
            if v == old:
                mapping[k] = new
    if g.graph.get("loss") == old:
        g.graph["loss"] = new
    g.remove_node(old)


def _const_value(g, name):
    op = g.nodes[name]["op"]
    return op.value if isinstance(op, Const) else None


def fold_constants(graph: nx.DiGraph) -> tuple[nx.DiGraph, list[str]]:
    g = _copy(graph)
    changed = []
    for name in topo_order(graph):
        if name not in g:
            continue
        a = g.nodes[name]
        op, ins = a["op"], a["inputs"]
        if a["role"] in ("input", "param") or not ins:
            continue
        same_shape = lambda i: g.nodes[i]["type"].shape == a["type"].shape  # noqa: E731
        identity = IDENTITIES.get(op.kind)
        if identity is not None and any(_const_value(g, i) == identity[0] for i in ins):
            other = ins[1] if _const_value(g, ins[0]) == identity[0] else ins[0]
            if same_shape(other):
                changed.append(f"{name}: {identity[1]} → {other}")
                _replace(g, name, other)
                continue
        if op.kind == "scale" and op.factor == 1.0:
            changed.append(f"{name}: scale by 1 → {ins[0]}")
            _replace(g, name, ins[0])
            continue
        if all(isinstance(g.nodes[i]["op"], Const) for i in ins) and all(isinstance(d, int) for d in a["type"].shape):
            value = op.forward(*[g.nodes[i]["op"].forward() for i in ins])
            flat = np.asarray(value).ravel()
            if flat.size and np.all(flat == flat[0]):
                a["op"] = Const(value=float(flat[0]), shape=tuple(a["type"].shape), dtype=a["type"].dtype)
                for i in ins:
                    g.remove_edge(i, name)
                a["inputs"] = ()
                changed.append(f"{name}: {op.kind} of constants → constant {float(flat[0]):g}")
    return g, changed


def eliminate_common_subexpressions(graph: nx.DiGraph) -> tuple[nx.DiGraph, list[str]]:
    g = _copy(graph)
    seen: dict[tuple, str] = {}
    changed = []
    for name in topo_order(graph):
        a = g.nodes[name]
        if a["op"].kind in SOURCE_KINDS:
            continue
        key = (a["op"], a["inputs"])  # ops are equal and hashable by their attributes
        if key in seen:
            changed.append(f"{name} = {seen[key]}")
            _replace(g, name, seen[key])
        else:
            seen[key] = name
    return g, changed


def eliminate_dead_code(graph: nx.DiGraph, keep: list[str] | None = None) -> tuple[nx.DiGraph, list[str]]:
    """Keep ``keep`` (default: outputs, loss, gradients, updates) and what they depend on."""
    if keep is None:
        keep = list(graph.graph.get("outputs", {}).values()) + list(graph.graph.get("grads", {}).values()) + list(
            graph.graph.get("updates", {}).values()) + ([graph.graph["loss"]] if graph.graph.get("loss") else [])
    live = set(keep)
    for k in keep:
        live |= nx.ancestors(graph, k)
    g = _copy(graph)
    removed = [n for n in topo_order(graph) if n not in live and graph.nodes[n]["role"] != "input"]
    g.remove_nodes_from(removed)
    return g, removed


def optimize(graph: nx.DiGraph) -> tuple[nx.DiGraph, dict[str, list[str]]]:
    """Constant folding, then CSE, then DCE; returns the graph and what each pass changed."""
    log = {}
    graph, log["constant folding"] = fold_constants(graph)
    graph, log["common subexpressions"] = eliminate_common_subexpressions(graph)
    graph, log["dead code"] = eliminate_dead_code(graph)
    return graph, log
