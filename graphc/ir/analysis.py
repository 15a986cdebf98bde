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
  convolution products, for one example: symbolic dims count as 1; FLOPs = 2 × MACs), bytes of each
  activation.
- :func:`index_bound`: the range ``[0, bound)`` the ops reading an int64 node index with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import networkx as nx

from ..errors import Diagnostic, GraphcError, ShapeError
from ..tensor import TensorType
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


@dataclass(frozen=True)
class Field1D:
    """Receptive field along one spatial dim; ``size_min`` is the smallest over merged paths."""

    size: Fraction
    stride: Fraction
    padding: Fraction
    size_min: Fraction

    @staticmethod
    def unit() -> "Field1D":
        return Field1D(Fraction(1), Fraction(1), Fraction(0), Fraction(1))


def _num(x: Fraction):
    return int(x) if x.denominator == 1 else float(x)


def field_json(fields: tuple[Field1D, ...] | None):
    if fields is None:
        return None
    out = {"size": [_num(f.size) for f in fields], "stride": [_num(f.stride) for f in fields],
           "padding": [_num(f.padding) for f in fields]}
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
        strides = {s.stride for f in sources for s in f}
        per_path = [tuple(
            Field1D(f.size + (w.extent - 1) * f.stride, f.stride * w.step, f.padding - w.offset * f.stride, f.size_min + (w.extent - 1) * f.stride)
            for f, w in zip(src, windows)) for src in sources]
        if len({tuple(f.stride for f in p) for p in per_path}) > 1:
            shown = ", ".join(f"{i}: {[_num(f.stride) for f in fields[i]]}" for i in attrs["inputs"] if fields.get(i))
            errors.append(Diagnostic(f"'{name}' merges misaligned receptive fields (effective strides {shown})", attrs.get("loc"),
                                     "merged paths must downsample by the same total stride"))
            fields[name] = None
            continue
        merged = []
        for dim in zip(*per_path):
            start = min(-f.padding for f in dim)
            end = max(-f.padding + f.size for f in dim)
            merged.append(Field1D(end - start, dim[0].stride, -start, min(f.size_min for f in dim)))
        fields[name] = tuple(merged)
        del strides
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
