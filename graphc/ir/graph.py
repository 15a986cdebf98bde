"""The IR (DESIGN.md §2): a ``networkx.DiGraph`` whose nodes are single-output op applications.

Node attributes: ``op`` (an :class:`~graphc.ops.base.Op`), ``inputs`` (the ordered tuple of input node
names — the truth; edges are derived from it), ``type`` (:class:`~graphc.tensor.TensorType`),
``layer`` (the expanded spec layer the node belongs to), ``scope`` (block-instance path of that
layer), ``loc`` (its spec position) and ``role`` (``input``, ``param``, ``op`` or ``loss``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx

from ..errors import GraphcError, Loc, ShapeError
from ..ops.base import Init, Op, Param
from ..ops.source import Input, ParamOp
from ..tensor import TensorType


@dataclass
class LayerContext:
    """What the builder knows about the spec layer whose nodes it is adding."""

    name: str
    loc: Loc | None = None
    scope: tuple[str, ...] = ()
    init: dict[str, Init] = field(default_factory=dict)
    role: str = "op"


class Builder:
    """Adds nodes to a graph, inferring each node's type as it goes (params need input shapes)."""

    def __init__(self, graph: nx.DiGraph | None = None):
        self.graph = graph if graph is not None else nx.DiGraph()
        self.context = LayerContext("")
        self.used_inits: set[tuple[str, str]] = set()

    def type_of(self, name: str) -> TensorType:
        return self.graph.nodes[name]["type"]

    def input(self, name: str, shape, dtype: str = "float32", loc: Loc | None = None) -> str:
        op = Input(shape=tuple(shape), dtype=dtype)
        self._add(name, op, (), op.infer([]), layer=name, loc=loc, scope=(), role="input")
        return name

    def param(self, layer: str, pname: str, param: Param) -> str:
        """Parameter node ``<layer>.<pname>``; the spec layer's ``init`` overrides the op's default."""
        name = f"{layer}.{pname}"
        init = self.context.init.get(pname, param.init)
        self.used_inits.add((self.context.name, pname))
        op = ParamOp(shape=tuple(param.shape), init=init, trainable=param.trainable)
        self._add(name, op, (), op.infer([]), layer=layer, loc=self.context.loc, scope=self.context.scope, role="param")
        return name

    def op(self, name: str, op: Op, inputs) -> str:
        """Add ``op`` applied to ``inputs`` as node ``name``; raises ShapeError from its shape rule."""
        inputs = tuple(inputs)
        y = op.infer([self.type_of(i) for i in inputs])
        self._add(name, op, inputs, y, layer=self.context.name, loc=self.context.loc, scope=self.context.scope, role=self.context.role)
        return name

    def _add(self, name, op, inputs, y, **attrs):
        if name in self.graph:
            raise ShapeError(f"node '{name}' is defined twice")
        self.graph.add_node(name, op=op, inputs=inputs, type=y, **attrs)
        for src in inputs:
            self.graph.add_edge(src, name)


def topo_order(graph: nx.DiGraph) -> list[str]:
    """Deterministic topological order (ties broken by insertion order).

    That is the insertion order itself whenever every node was added after its inputs, as the
    :class:`Builder` adds them: the earliest node not yet placed then always has all its inputs
    placed. Checking it is one look at each edge; only a graph built otherwise (a pass that adds a
    node before the ones it reads) pays for the sort by heap."""
    if added_in_order(graph):
        return list(graph.nodes)
    index = {n: i for i, n in enumerate(graph.nodes)}
    return list(nx.lexicographical_topological_sort(graph, key=index.__getitem__))


def added_in_order(graph: nx.DiGraph) -> bool:
    """Whether every edge runs from an earlier-added node to a later one (then the graph is acyclic
    and its insertion order is topological)."""
    index = {n: i for i, n in enumerate(graph.nodes)}
    return all(index[u] < index[v] for u, v in graph.edges)


def batch_symbols(graph: nx.DiGraph) -> set[str]:
    """The symbolic batch dims of a graph: the symbols its inputs (data and labels) start with."""
    return {a["type"].shape[0] for a in graph.nodes.values()
            if a.get("role") == "input" and a["type"].rank and isinstance(a["type"].shape[0], str)}


def with_static_batch(graph: nx.DiGraph, batch: int) -> nx.DiGraph:
    """A copy of ``graph`` with its batch symbols (:func:`batch_symbols`) fixed to ``batch`` in every
    node's type, as if the spec declared that batch. Each op's type is inferred again from its
    inputs' and must agree (a shape rule cannot depend on a symbol being a symbol); other symbols stay."""
    fixed = dict.fromkeys(batch_symbols(graph), batch)
    if not fixed:
        shapes = ", ".join(f"{n} {a['type']}" for n, a in graph.nodes(data=True) if a.get("role") == "input")
        raise GraphcError(f"the spec's inputs have no symbolic batch dim to fix to {batch}: {shapes}",
                          hint="a static batch is fixed already; export without --static-batch")
    out = graph.copy()  # node attribute dicts are the copy's own
    for n in topo_order(out):
        a = out.nodes[n]
        t = a["type"]
        static_type = t.with_shape(fixed.get(d, d) if isinstance(d, str) else d for d in t.shape)
        if a["inputs"]:
            inferred = a["op"].infer([out.nodes[i]["type"] for i in a["inputs"]])
            if inferred != static_type:
                raise ShapeError(f"node '{n}' ({a['op'].kind}) has type {static_type} with batch {batch} but its shape rule gives {inferred}")
        a["type"] = static_type
    return out
