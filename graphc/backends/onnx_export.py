"""ONNX export (DESIGN.md §6): every op lowers itself to default-domain ONNX nodes.

The facet ``op.onnx(ctx, xs, y)`` adds nodes computing the node ``y`` from the value names ``xs``
through :class:`OnnxContext`. The model is pinned to opset :data:`OPSET` and IR version
:data:`IR_VERSION`, which onnxruntime ≥ 1.18 reads; names follow the spec's layers and parameters;
every value carries its shape in ``value_info`` (symbolic dims as named dims, expressions of
symbolic sizes as unknown dims); each node's
doc string names the spec file and line it came from. Shape arithmetic over static shapes is folded
into constants (:mod:`.onnx_fold`); a graph whose batch is fixed (``graphc export --static-batch N``,
:func:`graphc.ir.graph.with_static_batch`) keeps none.
"""

from __future__ import annotations

import networkx as nx
import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..ir.graph import topo_order
from ..ops.base import ONNX_DTYPES
from ..errors import Diagnostic, GraphcError, ShapeError
from ..tensor import Size, TensorType, unique_name
from ..version import __version__
from .onnx_fold import fold_shapes

OPSET = 21
IR_VERSION = 10


class OnnxContext:
    """What a lowering sees: value types, and ways to add nodes and constants."""

    def __init__(self, graph: nx.DiGraph, float_dtype: str = "float32"):
        self.graph = graph
        self.float_dtype = float_dtype
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.current = ""
        self.loc = None  # the spec location of the node being lowered
        self._doc = ""
        self._names: set[str] = set(graph.nodes)
        self._consts: dict[tuple, str] = {}
        self._types: dict[str, TensorType] = {}
        # values one lowering leaves for later lowerings of the same export, keyed by what they compute
        # (a batchnorm's centred input, which its forward and gradient nodes all read): computed once
        self.shared: dict[tuple, str] = {}

    def type_of(self, name: str) -> TensorType:
        return self._types[name] if name in self._types else self.graph.nodes[name]["type"]

    def typed(self, name: str, t: TensorType) -> str:
        """Declare the type of an ONNX value that is no graph node (a 1-D op's input lifted to unit
        height for the 2-D lowering it reuses), so that lowerings may ask ``type_of`` it."""
        self._types[name] = t
        return name

    def fresh(self, hint: str) -> str:
        return unique_name(f"{self.current}/{hint}", self._names)

    def node(self, op_type: str, inputs, output: str | None = None, hint: str | None = None, slot: int = 0, **attrs) -> str:
        """Add one ONNX node; returns the name (``output`` or a fresh one) of the one output used: the
        op's output number ``slot`` (those before it are left unused, ``''``: an LSTM's ``Y_h`` is 1)."""
        out = output or self.fresh(hint or op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [""] * slot + [out], name=out, doc_string=self._doc,
                                           **{k: v for k, v in attrs.items() if v is not None}))
        return out

    def node_outputs(self, op_type: str, inputs, hints: list[str], **attrs) -> list[str]:
        """Add one ONNX node with several outputs (fresh names from ``hints``); returns their names."""
        outs = [self.fresh(h) for h in hints]
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, name=outs[0], doc_string=self._doc,
                                           **{k: v for k, v in attrs.items() if v is not None}))
        return outs

    def const(self, value, dtype: str | None = None, hint: str = "const") -> str:
        """An initializer holding ``value`` (shared between equal constants)."""
        array = np.asarray(value, dtype=dtype or self.float_dtype)
        key = (array.dtype.str, array.shape, array.tobytes())
        if key not in self._consts:
            name = self.fresh(hint)
            self.initializers.append(numpy_helper.from_array(array, name))
            self._consts[key] = name
        return self._consts[key]

    def initializer(self, name: str, array: np.ndarray) -> str:
        """The value ``name`` as an initializer holding ``array`` (a node's own constant value)."""
        self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def static_ints(self, values) -> list:
        """``values``, which a lowering bakes into constants: a symbolic size among them is a located error."""
        symbolic = [v for v in np.ravel(np.asarray(values, dtype=object)) if isinstance(v, str)]
        if symbolic:
            raise GraphcError(Diagnostic(f"the ONNX lowering of '{self.current}' needs a static size, got {symbolic[0]}",
                                         self.loc, "export the spec with its sizes given"))
        return values

    def ints(self, values, hint: str = "shape") -> str:
        return self.const(np.asarray(self.static_ints(values), dtype=np.int64), "int64", hint)


def _onnx_dim(d):
    """A dim of ``value_info``: an int, a named dim (``N``, ``H``), or unknown for an expression of
    names (``floor((H + 1)/2)`` is no name a runtime could bind)."""
    if isinstance(d, int):
        return d
    if isinstance(d, Size) and not d.is_name:
        return None
    return str(d)


def value_info(name: str, t: TensorType) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, ONNX_DTYPES[t.dtype], [_onnx_dim(d) for d in t.shape])


def whole_layers(graph: nx.DiGraph, order: list[str], outputs: set[str]) -> tuple[dict[str, tuple], set[str]]:
    """The layers lowered whole by their composite's ``onnx_layer`` facet
    (:class:`~graphc.ops.base.Composite`): ``{the layer's value: (op, data input, {param: node})}``,
    and the nodes of their expansions that this lowering replaces. A layer qualifies when its value
    is the node named after it, nothing outside the layer reads any other of its nodes (a pass that
    merged or rewired one keeps the layer expanded) and, besides its own parameters, it reads one
    data input. It reads every parameter the layer has: one its expansion leaves unread (an lstm of
    one step never reads ``wh``, h₋₁ being 0) is no input of the export, so the layer stays expanded."""
    layer_ops = graph.graph.get("layer_ops", {})
    members: dict[str, list[str]] = {}
    for n in order:
        a = graph.nodes[n]
        if a["role"] == "op" and hasattr(layer_ops.get(a.get("layer")), "onnx_layer"):
            members.setdefault(a["layer"], []).append(n)
    owned: dict[str, int] = {}
    for n, a in graph.nodes(data=True):
        if a["role"] == "param" and a.get("layer") in members:
            owned[a["layer"]] = owned.get(a["layer"], 0) + 1
    whole, inner = {}, set()
    for layer, nodes in members.items():
        inside = set(nodes)
        if layer not in inside or any(n != layer and (n in outputs or any(s not in inside for s in graph.successors(n))) for n in nodes):
            continue
        reads = {i for n in nodes for i in graph.nodes[n]["inputs"] if i not in inside}
        params = {r[len(layer) + 1:]: r for r in reads if graph.nodes[r]["role"] == "param" and graph.nodes[r]["layer"] == layer}
        data = reads - set(params.values())
        if len(data) == 1 and len(params) == owned.get(layer, 0):
            whole[layer] = (layer_ops[layer], data.pop(), params)
            inner |= inside - {layer}
    return whole, inner


def _output_renames(ctx: OnnxContext, named: dict[str, str]) -> dict[str, str]:
    """Give a node's value its output name where that is its only one: ``{node: output name}``, with
    the lowered nodes rewritten to it. An Identity would copy the value (a weight gradient as large as
    the weight) on every run; one stays for each further name of a shared value, and for a fed node."""
    aliases: dict[str, list[str]] = {}
    for shown, o in named.items():
        aliases.setdefault(o, []).append(shown)
    produced = {out for n in ctx.nodes for out in n.output}
    renames = {o: names[0] for o, names in aliases.items()
               if o not in names and o in produced and names[0] not in ctx._names and names[0] not in produced}
    if renames:
        for n in ctx.nodes:
            for field in (n.input, n.output):
                for i, v in enumerate(field):
                    if v in renames:
                        field[i] = renames[v]
    return renames


def export_model(graph: nx.DiGraph, outputs: list[str] | dict[str, str], *, initial: dict[str, np.ndarray] | None = None,
                 defaults: dict[str, np.ndarray] | None = None, name: str | None = None, doc: str = "",
                 layers_whole: bool = False) -> onnx.ModelProto:
    """An ONNX model computing ``outputs`` of ``graph``: node names, or ``{output name: node}``.

    Every fed node the outputs need (data inputs, parameters, masks, optimiser state) is a graph
    input, except those in ``initial``, which are embedded as initializers; those in ``defaults`` are
    inputs with an initializer as their default value. An output name other than its node's (spec
    output names, ``grad/<param>``…) names the node's value; where several names share one value
    (common-subexpression elimination merges equal gradients) the others are Identities of it, so
    every name is an output.
    Shape arithmetic the static shapes determine is folded (:func:`.onnx_fold.fold_shapes`).
    ``layers_whole``: a layer whose composite lowers itself whole (an LSTM as ONNX's ``LSTM``) is
    exported so (:func:`whole_layers`), not as its expansion; for inference graphs only, a training
    step's backward pass reading the expansion's inner values.
    """
    initial = dict(initial or {})
    defaults = dict(defaults or {})
    named = dict(outputs) if isinstance(outputs, dict) else {o: o for o in outputs}
    needed = set(named.values())
    for o in named.values():
        needed |= nx.ancestors(graph, o)
    order = [n for n in topo_order(graph) if n in needed]
    ctx = OnnxContext(graph)
    whole, inner = whole_layers(graph, order, set(named.values())) if layers_whole else ({}, set())
    fed = [n for n in order if graph.nodes[n]["op"].kind in ("input", "param", "random_mask")]
    graph_inputs = [n for n in fed if n not in initial]
    for n in fed:
        value = initial.get(n, defaults.get(n))
        if value is not None:
            ctx.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=graph.nodes[n]["type"].dtype), n))
    for n in order:
        a = graph.nodes[n]
        if n in fed or n in inner:
            continue
        ctx.current = n
        loc = ctx.loc = a.get("loc")
        ctx._doc = f"{loc} ({a.get('layer', n)})" if loc else str(a.get("layer", n))
        try:
            if n in whole:
                op, x, params = whole[n]
                op.onnx_layer(ctx, x, params, n)
            else:
                a["op"].onnx(ctx, list(a["inputs"]), n)
        except ShapeError as e:  # a lowering that cannot take a symbolic size
            raise GraphcError(Diagnostic(f"the ONNX lowering of {a['op'].kind} '{n}': {e}", loc, "export the spec with its sizes given")) from None
    renamed = _output_renames(ctx, named)
    final_outputs = []
    for shown, o in named.items():
        if shown != renamed.get(o, o):
            ctx.current = o
            ctx.node("Identity", [renamed.get(o, o)], output=shown)
        final_outputs.append(value_info(shown, graph.nodes[o]["type"]))
    infos = [value_info(n, graph.nodes[n]["type"]) for n in order
             if n not in fed and n not in named and n not in inner and n not in renamed]
    g = helper.make_graph(ctx.nodes, name or graph.graph.get("name") or "graphc", [value_info(n, graph.nodes[n]["type"]) for n in graph_inputs],
                          final_outputs, initializer=ctx.initializers, value_info=infos, doc_string=doc)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="graphc", producer_version=__version__,
                              ir_version=IR_VERSION, doc_string=doc)
    helper.set_model_props(model, {"graphc_version": __version__, "spec": str(graph.graph.get("name")),
                                   "spec_file": str(graph.graph.get("file"))})
    return fold_shapes(model, keep=set(initial))


def forward_model(graph: nx.DiGraph, params: dict[str, np.ndarray] | None = None) -> onnx.ModelProto:
    """The forward graph (inference mode): outputs by the spec's output names; ``params`` embedded
    as initializers (else parameters are inputs); recurrent layers as ONNX's ``LSTM``/``GRU``/``RNN``
    nodes (``layers_whole``), as PyTorch's exporter writes them."""
    outputs = graph.graph["outputs"]
    return export_model(graph, dict(outputs), initial=params, layers_whole=True,
                        doc=f"graphc forward graph of {graph.graph.get('name')} ({graph.graph.get('file')})")


def training_outputs(training: nx.DiGraph) -> dict[str, str]:
    """What a training step returns, ``{ONNX output name: node}``: ``loss``, ``grad/<param>`` and,
    with an optimiser, ``new/<param>`` and ``new/state/…`` (batchnorm statistics: ``new/<param>``).
    Keyed by name: two names may share one node (equal gradients merged by CSE), and both are outputs."""
    names = {"loss": training.graph["loss"]}
    names.update({f"grad/{p}": node for p, node in training.graph["grads"].items()})
    step = training.graph.get("step") or dict(training.graph.get("updates", {}))
    names.update({f"new/{target}": node for target, node in step.items()})  # new/<param>, new/state/<param>/<slot>, new/state/step
    return names


def training_model(training: nx.DiGraph, params: dict[str, np.ndarray] | None = None) -> onnx.ModelProto:
    """The whole training step: inputs are the data, labels, dropout masks, parameters (``params``
    as their default values), and with an optimiser ``lr`` and the ``state/…``; outputs as
    :func:`training_outputs`."""
    return export_model(training, training_outputs(training), defaults=params,
                        doc=f"graphc training step of {training.graph.get('name')} ({training.graph.get('file')})"
                            + (f" with {training.graph['optimizer']}" if training.graph.get("optimizer") else ""))


def save_model(model: onnx.ModelProto, path, limit: int = 2**31 - 2**26) -> None:
    """Write ``model`` atomically; models over ``limit`` bytes (protobuf's 2 GB, less a margin) keep
    their tensors in ``<name>.data`` beside it (ONNX external data)."""
    from pathlib import Path

    from ..files import write_atomic, write_atomic_staged

    path = Path(path)
    if model.ByteSize() < limit:
        write_atomic(path, model.SerializeToString())
        return
    data_name = path.name + ".data"  # a side file: same permissions as the model, renamed into place first
    write_atomic_staged(path, lambda staged: onnx.save_model(model, staged, save_as_external_data=True, all_tensors_to_one_file=True,
                                                              location=data_name, size_threshold=1024))
