"""Analysis passes over the IR (DESIGN.md §5). Each is a pure function of the graph.

- :func:`infer_shapes`: every node's type from its op's shape rule (re-checks a built graph).
- :func:`receptive_fields`: per NCHW node and spatial dim (per NCL node, its length), size ``r``, effective stride ``j`` and effective
  padding ``P``: an output unit ``u`` sees input pixels ``[u·j − P, u·j − P + r − 1]``. Composed from
  each op's window ``(step s, offset a, extent e)`` by ``j' = j·s``, ``P' = P − a·j``,
  ``r' = r + (e − 1)·j`` (Araujo et al., Distill 2019). Fractional strides (upsampling, transposed
  convolution) give the widest field over output phases, with the padding of output unit 0. At a
  merge the field is the union of the inputs' fields; inputs whose strides differ are misaligned
  and rejected.
- :func:`costs`: parameters (trainable and not), MACs (multiply-accumulates of matmul and
  convolution products, for one example: the batch counts as 1; FLOPs = 2 × MACs), bytes of each
  activation. Over symbolic sizes (``H``, ``W``) MACs and bytes are expressions of them; parameters
  never depend on them.
- :func:`specialize`: the graph with its symbolic sizes bound to ints (``--size``, or a run's
  inputs), every shape re-inferred, so that every rule decides what it deferred.
- :func:`index_bound`: the range ``[0, bound)`` the ops reading an int64 node index with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import networkx as nx

from ..errors import Diagnostic, GraphcError, ShapeError
from ..ops.base import Window
from ..tensor import Size, TensorType, evaluate, fmt_shape, size_names
from .graph import topo_order


def infer_shapes(graph: nx.DiGraph) -> dict[str, TensorType]:
    """Every node's type, recomputed from its op's shape rule along the ordered inputs."""
    types: dict[str, TensorType] = {}
    errors = []
    for name in topo_order(graph):
        attrs = graph.nodes[name]
        try:
            types[name] = attrs["op"].infer([types[i] for i in attrs["inputs"]])
        except ShapeError as e:
            errors.append(Diagnostic(f"{attrs['op'].kind} '{name}': {e}", attrs.get("loc")))
            types[name] = attrs["type"]
        except KeyError:
            continue
    if errors:
        raise GraphcError(errors)
    return types


Rational = int | Fraction


def _exact(x: Rational) -> Rational:
    """``x`` as an int when it is whole: receptive fields are whole numbers but for fractional strides,
    and int arithmetic is about ten times cheaper than Fraction's (the pass does a dozen per node)."""
    return x.numerator if x.denominator == 1 else x


@dataclass(frozen=True)
class Field1D:
    """Receptive field along one spatial dim; ``size_min`` is the smallest over merged paths. Each
    number is an int, or a Fraction where it is not whole (:func:`_exact`).

    ``padding`` is None where it depends on a symbolic input size: 'same' padding with stride > 1
    pads ``(ceil(n/s) − 1)·s + d(k − 1) + 1 − n`` rows, which depends on ``n mod s``. Size and stride
    never depend on the input size, except at a merge of such fields (the union's width needs
    where each sits): there the size is the largest merged one."""

    size: Rational
    stride: Rational
    padding: Rational | None
    size_min: Rational

    @staticmethod
    def unit() -> "Field1D":
        return Field1D(1, 1, 0, 1)

    def through(self, w: Window) -> "Field1D":
        """The field seen through window ``w``: ``r' = r + (e − 1)·j``, ``j' = j·s``, ``P' = P − a·j``."""
        step, offset = _exact(w.step), None if w.offset is None else _exact(w.offset)  # ops state them as Fractions
        reach = (w.extent - 1) * self.stride
        padding = None if self.padding is None or offset is None else _exact(self.padding - offset * self.stride)
        return Field1D(_exact(self.size + reach), _exact(self.stride * step), padding, _exact(self.size_min + reach))


PADDING_NOTE = "null: depends on the input size ('same' padding with stride > 1 over a symbolic size)"


def _num(x: Rational):
    return x if isinstance(x, int) else float(x)


def field_json(fields: tuple[Field1D, ...] | None):
    if fields is None:
        return None
    out = {"size": [_num(f.size) for f in fields], "stride": [_num(f.stride) for f in fields],
           "padding": [None if f.padding is None else _num(f.padding) for f in fields]}
    if any(f.padding is None for f in fields):
        out["padding_note"] = PADDING_NOTE
    if any(f.size_min != f.size for f in fields):
        out["size_min"] = [_num(f.size_min) for f in fields]
    return out


def receptive_fields(graph: nx.DiGraph) -> dict[str, tuple[Field1D, ...] | None]:
    """Receptive field of every NCHW node with respect to the graph's NCHW inputs, and of every
    rank-3 node (N, C, L) along L with respect to the rank-3 inputs. (Sequences laid out (N, T, D)
    get a field along D, which ends at the first op that mixes D: a matmul, a norm, a recurrence.)"""
    fields: dict[str, tuple[Field1D, ...] | None] = {}
    errors = []
    for name in topo_order(graph):
        attrs = graph.nodes[name]
        role, y = attrs["role"], attrs["type"]
        if role == "input":
            fields[name] = (Field1D.unit(),) * (y.rank - 2) if y.rank in (3, 4) else None
            continue
        if role == "param" or y.rank not in (3, 4):
            fields[name] = None
            continue
        xs = [graph.nodes[i]["type"] for i in attrs["inputs"]]
        windows = attrs["op"].window(xs)
        sources = [fields.get(i) for i in attrs["inputs"] if fields.get(i) is not None]
        if windows is None or not sources or any(len(f) != len(windows) for f in sources):
            fields[name] = None
            continue
        per_path = [tuple(f.through(w) for f, w in zip(src, windows)) for src in sources]
        if len({tuple(f.stride for f in p) for p in per_path}) > 1:
            shown = ", ".join(f"{i}: {[_num(f.stride) for f in fields[i]]}" for i in attrs["inputs"] if fields.get(i))
            errors.append(Diagnostic(f"'{name}' merges misaligned receptive fields (effective strides {shown})", attrs.get("loc"),
                                     "merged paths must downsample by the same total stride"))
            fields[name] = None
            continue
        if len(per_path) == 1:  # one path: the union is that field
            fields[name] = per_path[0]
            continue
        merged = []
        for dim in zip(*per_path):
            if any(f.padding is None for f in dim):  # where the fields sit depends on the input size
                merged.append(Field1D(max(f.size for f in dim), dim[0].stride, None, min(f.size_min for f in dim)))
                continue
            start = min(-f.padding for f in dim)
            end = max(-f.padding + f.size for f in dim)
            merged.append(Field1D(_exact(end - start), dim[0].stride, -start, min(f.size_min for f in dim)))
        fields[name] = tuple(merged)
    if errors:
        raise GraphcError(errors)
    return fields


def index_bound(graph: nx.DiGraph, name: str) -> int | None:
    """The values an int64 node may take, ``[0, bound)``: the smallest bound its users' ops state
    (a loss's class count, an embedding's ``num_embeddings``); ``None`` when none states one."""
    bounds = []
    for user in graph.successors(name):
        attrs = graph.nodes[user]
        xs = [graph.nodes[i]["type"] for i in attrs["inputs"]]
        bounds += [b for i, x in enumerate(attrs["inputs"]) if x == name
                   for b in [attrs["op"].index_bound(xs, i)] if b is not None]
    return min(bounds, default=None)


@dataclass(frozen=True)
class NodeCost:
    params: int
    params_trainable: int
    macs: int
    activation_bytes: int


def costs(graph: nx.DiGraph) -> dict[str, NodeCost]:
    """Per node: its parameter count (param nodes), MACs and output bytes, for one example."""
    out = {}
    for name, attrs in graph.nodes(data=True):
        op, y = attrs["op"], attrs["type"]
        if attrs["role"] == "param":
            n = y.numel()
            out[name] = NodeCost(n, n if op.trainable else 0, 0, 0)
        elif attrs["role"] == "input":
            out[name] = NodeCost(0, 0, 0, y.nbytes())
        else:
            xs = [graph.nodes[i]["type"] for i in attrs["inputs"]]
            out[name] = NodeCost(0, 0, op.macs(xs, y), y.nbytes())
    return out


def warnings(graph: nx.DiGraph) -> list[Diagnostic]:
    """Legal but suspicious arithmetic, such as windows that leave input rows unread."""
    found = []
    for name in topo_order(graph):
        attrs = graph.nodes[name]
        if attrs["role"] in ("op", "loss"):
            xs = [graph.nodes[i]["type"] for i in attrs["inputs"]]
            for message in attrs["op"].warnings(xs):
                found.append(Diagnostic(f"'{name}': {message}{call_sites(graph, attrs)}", attrs.get("loc"), severity="warning"))
    return found


def call_sites(graph: nx.DiGraph, attrs: dict) -> str:
    """Where a node inside a block was instantiated, innermost call first: `` (in 'layer2.0', called at
    spec.yaml:40:5)``; empty for a top-level layer. The diagnostic's own location is the block's line,
    the same for every instance, so the call site says which instance is meant."""
    instances = graph.graph.get("instances", {})
    shown, seen = [], set()
    for scope in reversed(attrs.get("scope") or ()):
        inst = instances.get(scope)
        if inst is None or inst.loc is None or str(inst.loc) in seen or inst.loc == attrs.get("loc"):
            continue
        seen.add(str(inst.loc))
        shown.append(f"in '{scope}', called at {inst.loc}")
    return f" ({'; '.join(shown)})" if shown else ""


def graph_size_names(graph: nx.DiGraph) -> set[str]:
    """The symbolic sizes of the graph's inputs (``H``, ``W``; the batch's plain names excluded)."""
    return {n for _, a in graph.nodes(data=True) if a["role"] == "input" for n in size_names(a["type"].shape)}


def specialize(graph: nx.DiGraph, sizes: dict[str, int], source: str = "--size") -> nx.DiGraph:
    """A copy of ``graph`` whose inputs have the names in ``sizes`` bound to those ints, every node's
    type re-inferred by its shape rule in topological order.

    The rules now decide what they deferred over symbolic sizes (an output below 1, windows that do
    not tile, an op that needs a static size): a failure is a located error saying which sizes gave
    it. Each re-inferred dim must also be the value of the expression the symbolic compile gave it
    (the expressions evaluate consistently with the rules). ``source`` names where the sizes came from."""
    shown = ", ".join(f"{k}={v}" for k, v in sorted(sizes.items()))
    g = graph.copy()
    errors, failed = [], set()
    for name in topo_order(g):
        a = g.nodes[name]
        if a["role"] == "input" and a["op"].kind == "input":
            shape = tuple(sizes.get(d, d) if isinstance(d, str) else d for d in a["op"].shape)
            a["op"] = a["op"].model_copy(update={"shape": shape})
        if failed & set(a["inputs"]):
            failed.add(name)
            continue
        try:
            t = a["op"].infer([g.nodes[i]["type"] for i in a["inputs"]])
        except ShapeError as e:
            errors.append(Diagnostic(f"{a['op'].kind} '{name}' with {shown} ({source}): {e}", a.get("loc")))
            failed.add(name)
            continue
        for axis, (was, now) in enumerate(zip(a["type"].shape, t.shape)):
            if isinstance(was, Size) and set(was.names) <= set(sizes) and evaluate(was, sizes) != now:
                errors.append(Diagnostic(f"{a['op'].kind} '{name}': dim {axis} is {was} = {evaluate(was, sizes)} with {shown}, "
                                         f"but its shape rule gives {now} (shape {fmt_shape(t.shape)})", a.get("loc")))
        a["type"] = t
    if errors:
        raise GraphcError(errors)
    return g
