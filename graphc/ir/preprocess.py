"""Input preprocessing as ordinary IR nodes: the normalisation a trained model was fitted with.

``graphc train`` feeds the network ``x' = (x − mean) / scale`` (statistics of the training split).
For the trained model to be one thing — the same in ``run``, ``export``, ``viz`` and ``compile`` —
that transform becomes part of the forward graph, in front of every consumer of the data input::

    x ──► <x>.normalize.center = sub(x, <x>.normalize.mean) ──► <x>.normalize = div(·, <x>.normalize.scale) ──► …

``mean`` (one example's shape, or a scalar) and ``scale`` (a scalar) are non-trainable parameters,
like batchnorm's running statistics: their values travel with the other parameters (embedded in an
exported ONNX file), and the arithmetic is exactly the training loop's, in the same order.
"""

from __future__ import annotations

from dataclasses import replace

import networkx as nx

from ..errors import GraphcError
from ..ops.base import Init
from ..ops.elementwise import Div, Sub
from ..ops.source import ParamOp
from ..spec.expand import FlatLayer
from ..spec.safe_yaml import LDict
from ..tensor import TensorType, broadcast

NORMALIZE_KIND = "normalize"


def normalization_names(input_name: str) -> dict[str, str]:
    """The node names the normalisation of ``input_name`` adds (``mean``/``scale`` are its parameters)."""
    layer = f"{input_name}.normalize"
    return {"layer": layer, "mean": f"{layer}.mean", "scale": f"{layer}.scale", "center": f"{layer}.center"}


def with_input_normalization(graph: nx.DiGraph, input_name: str, mean_shape: tuple[int, ...]) -> nx.DiGraph:
    """A copy of ``graph`` whose data input ``input_name`` is normalised before anything reads it.

    ``mean_shape`` is the shape of the mean parameter: ``()`` or one example's shape (it must
    broadcast against the input). The layer ``<input>.normalize`` is the first row of the report.
    """
    if input_name not in graph or graph.nodes[input_name]["role"] != "input":
        raise GraphcError(f"cannot normalise '{input_name}': it is not an input of the spec")
    x_type: TensorType = graph.nodes[input_name]["type"]
    if not x_type.dtype.startswith("float"):
        raise GraphcError(f"cannot normalise input '{input_name}': it has dtype {x_type.dtype}, not floating point")
    try:
        if broadcast(x_type.shape, tuple(mean_shape)) != tuple(x_type.shape):
            raise ValueError
    except Exception:
        raise GraphcError(f"the normalisation's mean has shape {tuple(mean_shape)}, which does not fit input '{input_name}' "
                          f"({', '.join(map(str, x_type.shape))})",
                          hint="the run directory was trained on a spec whose input has another shape") from None
    names = normalization_names(input_name)
    clash = [n for n in names.values() if n in graph]
    if clash:
        raise GraphcError(f"the graph already has a node '{clash[0]}' (normalised twice?)")
    consumers = [n for n in graph.successors(input_name)]
    g = graph.copy()
    layer, where = names["layer"], graph.nodes[input_name].get("loc")
    common = dict(layer=layer, scope=(), loc=where)
    for pname, shape in (("mean", tuple(mean_shape)), ("scale", ())):
        op = ParamOp(shape=shape, init=Init(kind="zeros" if pname == "mean" else "ones"), trainable=False)
        g.add_node(names[pname], op=op, inputs=(), type=op.infer([]), role="param", **common)
    steps = ((names["center"], Sub(), (input_name, names["mean"])), (layer, Div(), (names["center"], names["scale"])))
    for name, op, inputs in steps:
        g.add_node(name, op=op, inputs=inputs, type=op.infer([g.nodes[i]["type"] for i in inputs]), role="op", **common)
        for src in inputs:
            g.add_edge(src, name)
    for n in consumers:  # the ordered inputs tuple is the truth; the edges follow it
        g.nodes[n]["inputs"] = tuple(layer if i == input_name else i for i in g.nodes[n]["inputs"])
        g.remove_edge(input_name, n)
        g.add_edge(layer, n)
    def reads_normalized(inputs: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(layer if i == input_name else i for i in inputs)

    layers = {name: replace(l, inputs=reads_normalized(l.inputs)) for name, l in graph.graph.get("layers", {}).items()}
    g.graph["layers"] = {layer: FlatLayer(layer, NORMALIZE_KIND, LDict(), (input_name,), {}, where, ()), **layers}
    g.graph["instances"] = {name: replace(inst, inputs=reads_normalized(inst.inputs))
                            for name, inst in graph.graph.get("instances", {}).items()}
    g.graph["entries"] = [layer, *graph.graph.get("entries", [])]
    g.graph["outputs"] = {k: layer if v == input_name else v for k, v in graph.graph.get("outputs", {}).items()}
    g.graph["normalized_inputs"] = {**graph.graph.get("normalized_inputs", {}), input_name: layer}
    return g
