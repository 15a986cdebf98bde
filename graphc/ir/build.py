"""From a loaded spec to the IR: expand, validate every layer's op, check the wiring, lower to nodes.

Lowering walks the layers in dependency order and infers each node's type as it adds it (a layer's
parameter shapes depend on its input shapes). Shape errors are reported per layer; layers
downstream of a failed one are skipped, independent branches still report their own errors.
"""

from __future__ import annotations

from pathlib import Path

import networkx as nx
from pydantic import ValidationError

from ..errors import Diagnostic, GraphcError, Loc, ShapeError, did_you_mean
from ..gc_pause import without_gc
from ..ops import BY_KIND, LAYER_KINDS, LOSS_KINDS
from ..ops.base import Op
from ..ops.elementwise import Add
from ..ops.loss import L2Penalty
from ..spec.diagnostics import diagnostics_from
from ..spec.expand import Expanded, FlatLayer, expand
from ..spec.load import LoadedSpec, load_spec
from ..spec.models import RESERVED_LAYER_KEYS
from ..spec.safe_yaml import LDict, loc_of
from .graph import Builder, LayerContext, added_in_order, topo_order

LOSS_NODE = "loss"


def _make_op(kind: str, attrs: LDict, where: Loc | None, what: str, errors: list[Diagnostic], losses: bool = False) -> Op | None:
    cls = BY_KIND.get(kind)
    allowed = LOSS_KINDS if losses else LAYER_KINDS
    if cls is None or kind not in allowed:
        wrong_section = (kind in LOSS_KINDS) != losses and kind in BY_KIND
        hint = (f"'{kind}' is a loss: put it in the spec's 'loss' section" if wrong_section and not losses
                else f"'{kind}' is not a loss; losses are: {', '.join(LOSS_KINDS)}" if wrong_section
                else did_you_mean(kind, allowed, "op"))
        errors.append(Diagnostic(f"unknown {'loss' if losses else 'op'} '{kind}'", where, hint))
        return None
    try:
        return cls.model_validate(attrs)
    except ValidationError as e:
        diags = diagnostics_from(e, cls, attrs, f"{kind} '{what}'")
        fixed = []
        for d in diags:
            if d.message.startswith("unknown key"):
                key = d.message.split("'")[1]
                choices = list(cls.model_fields) + [k for k in RESERVED_LAYER_KEYS if k != "block"]
                d = Diagnostic(f"unknown attribute '{key}' for {kind} '{what}'", d.loc, did_you_mean(key, choices, "attribute"))
            fixed.append(d)
        errors.extend(fixed)
        return None


def _layer_graph(ex: Expanded, inputs: list[str]) -> nx.DiGraph:
    """The layer-level DAG (aliases resolved), used for cycle and reachability checks."""
    g = nx.DiGraph()
    g.add_nodes_from(inputs)
    for layer in ex.layers:
        g.add_node(layer.name)
        for src in layer.inputs:
            g.add_edge(ex.resolve(src), layer.name)
    return g


def _cycle(lg: nx.DiGraph) -> list[tuple[str, str]] | None:
    """A cycle of the layer graph as its edges, or None. Layers written after their inputs (the usual
    order) are acyclic by that alone, seen in one look at each edge; only otherwise does networkx
    search (its depth-first search is a sixth of building a large spec)."""
    if added_in_order(lg):
        return None
    try:
        return nx.find_cycle(lg)
    except nx.NetworkXNoCycle:
        return None


@without_gc
def build_graph(loaded: LoadedSpec, partial: bool = False, sizes: dict[str, int] | None = None) -> nx.DiGraph:
    """The forward IR of a spec, with the loss nodes (role ``loss``) when the spec has a loss.

    ``sizes`` binds names of the inputs' shapes to ints (``compile --size H=224,W=224``): the graph is
    the one of the spec written with those sizes.

    ``graph.graph["failed"]`` maps each layer (or ``loss``) whose shape rule failed to its diagnostic.
    It is empty unless ``partial=True``: then shape-inference failures do not raise, and the graph
    holds every layer lowered before or beside them (layers downstream of a failure are absent);
    every other error still raises. ``graphc viz`` uses it to draw a spec up to its failing layer.
    """
    data = loaded.data
    ex = expand(data, loaded.blocks)
    errors = list(loaded.errors) + ex.errors
    layer_by_name: dict[str, FlatLayer] = {}
    ops: dict[str, Op] = {}

    def tainted(name: str) -> bool:
        return any(name == t or name.startswith(t + ".") for t in ex.tainted)

    for layer in ex.layers:
        layer_by_name[layer.name] = layer
        if tainted(layer.name):
            continue  # its bad block argument is reported already
        op = _make_op(layer.kind, layer.attrs, layer.op_loc or layer.loc, layer.name, errors)
        if op is not None and layer.name not in ex.broken:
            lo, hi = type(op).arity
            if not (lo <= len(layer.inputs) <= (hi if hi is not None else len(layer.inputs))):
                want = f"{lo}" if lo == hi else f"at least {lo}" if hi is None else f"{lo} to {hi}"
                errors.append(Diagnostic(f"{layer.kind} '{layer.name}' takes {want} input(s), got {len(layer.inputs)}",
                                         layer.inputs_loc or layer.loc, "remove its 'inputs:'" if hi == 0 else "list them under 'inputs:'"))
            ops[layer.name] = op
    input_names = list(data["inputs"])
    # Outputs and the loss.
    outputs = _outputs(loaded, ex, errors)
    loss_decl = data.get("loss")
    loss_op, loss_inputs = None, []
    if not (isinstance(loss_decl, dict) and isinstance(loss_decl.get("op"), str) and isinstance(loss_decl.get("inputs"), list)):
        loss_decl = None
    if loss_decl is not None:
        attrs = LDict({k: v for k, v in loss_decl.items() if k not in ("op", "inputs", "l2")})
        # a loss made by --set is a plain mapping, without positions
        attrs.loc, attrs.value_locs, attrs.key_locs = (getattr(loss_decl, "loc", None), getattr(loss_decl, "value_locs", {}),
                                                       getattr(loss_decl, "key_locs", {}))
        loss_op = _make_op(loss_decl["op"], attrs, loc_of(loss_decl, "op"), "loss", errors, losses=True)
        top_names = ex.env
        for i, ref in enumerate(loss_decl["inputs"]):
            if ref not in top_names:
                errors.append(Diagnostic(f"the loss takes input '{ref}', which is not defined", loc_of(loss_decl["inputs"], i),
                                         did_you_mean(ref, top_names, "name")))
            else:
                loss_inputs.append(ex.resolve(top_names[ref]))
    name_errors = bool(loaded.errors or ex.errors or outputs is None and data.get("outputs") is not None) or any(
        "is not defined" in d.message or "unknown output" in d.message for d in errors)
    if name_errors:  # wiring checks on a graph with missing names would only report follow-on errors
        raise GraphcError(errors)
    # Wiring: cycles, reachability.
    lg = _layer_graph(ex, input_names)
    cycle_nodes = set()
    cycle = _cycle(lg)
    if cycle:
        path = [u for u, _ in cycle] + [cycle[0][0]]
        cycle_nodes = {u for u, _ in cycle}
        first = layer_by_name.get(path[0])
        errors.append(Diagnostic(f"the layers form a cycle: {' → '.join(path)}", first.loc if first else None,
                                 "a network is a DAG: one of these 'inputs' must name an earlier layer"))
    if not cycle_nodes and outputs is not None:
        sinks = set(outputs.values()) | set(loss_inputs)
        needed = set(sinks)
        for s in sinks:
            if s in lg:
                needed |= nx.ancestors(lg, s)
        for layer in ex.layers:
            if layer.name not in needed:
                errors.append(Diagnostic(f"layer '{layer.name}' does not reach any output" + (" or the loss" if loss_decl else ""), layer.loc,
                                         "connect it, list it under 'outputs:', or remove it"))
    sizes = sizes or {}
    names = {d for n in input_names for d in data["inputs"][n]["shape"] if isinstance(d, str)}
    if set(sizes) - names:
        errors.append(Diagnostic(f"--size binds {', '.join(sorted(set(sizes) - names))}, which is not a symbolic dim of the spec's inputs",
                                 hint=f"the spec's symbolic dims: {', '.join(sorted(names)) or 'none'}"))
    if errors:
        raise GraphcError(errors)
    # Lowering, in dependency order.
    builder = Builder()
    builder.graph.graph.update(name=loaded.name, file=loaded.path)
    for name in input_names:
        decl = data["inputs"][name]
        shape = [sizes.get(d, d) if isinstance(d, str) else d for d in decl["shape"]]
        builder.input(name, shape, decl.get("dtype", "float32"), loc_of(data["inputs"], name))
    failed: set[str] = set()
    shape_failures: dict[str, Diagnostic] = {}
    for name in topo_order(lg):
        layer = layer_by_name.get(name)
        if layer is None:
            continue
        srcs = [ex.resolve(s) for s in layer.inputs]
        if any(s in failed for s in srcs):
            failed.add(name)
            continue
        builder.context = LayerContext(name, layer.loc, layer.scope, layer.init)
        try:
            ops[name].expand(builder, name, srcs)
        except ShapeError as e:
            failed.add(name)
            shown = ", ".join(f"{s} {builder.type_of(s)}" for s in srcs)
            shape_failures[name] = Diagnostic(f"{layer.kind} '{name}': {e}", layer.loc, f"inputs: {shown}" if shown else None)
            errors.append(shape_failures[name])
            continue
        for pname in layer.init:
            if (name, pname) not in builder.used_inits:
                have = [p.split(".")[-1] for p in builder.graph.nodes if builder.graph.nodes[p]["role"] == "param" and builder.graph.nodes[p]["layer"] == name]
                errors.append(Diagnostic(f"'{name}' has no parameter '{pname}' to initialise", layer.init_loc or layer.loc,
                                         did_you_mean(pname, have, "parameter") if have else f"{layer.kind} has no parameters"))
    if loss_op is not None and not failed & set(loss_inputs):
        builder.context = LayerContext(LOSS_NODE, loc_of(loss_decl, "op"), (), {}, role="loss")
        try:
            data_loss = builder.op(LOSS_NODE if not loss_decl.get("l2") else f"{LOSS_NODE}/data", loss_op, loss_inputs)
            if loss_decl.get("l2"):
                weights = [n for n, a in builder.graph.nodes(data=True)
                           if a["role"] == "param" and a["op"].trainable and len(a["op"].shape) >= 2]
                if weights:
                    penalty = builder.op(f"{LOSS_NODE}/l2", L2Penalty(strength=loss_decl["l2"]), weights)
                    builder.op(LOSS_NODE, Add(), [data_loss, penalty])
                else:
                    errors.append(Diagnostic("'l2' is set but the network has no weights to regularise", loc_of(loss_decl, "l2")))
        except ShapeError as e:
            shown = ", ".join(f"{s} {builder.type_of(s)}" for s in loss_inputs)
            shape_failures[LOSS_NODE] = Diagnostic(f"loss {loss_decl['op']}: {e}", loc_of(loss_decl, "op"), f"inputs: {shown}")
            errors.append(shape_failures[LOSS_NODE])
    if errors and not (partial and len(errors) == len(shape_failures)):
        raise GraphcError(errors)
    g = builder.graph
    g.graph["outputs"] = {k: ex.resolve(v) for k, v in outputs.items()}
    g.graph["loss"] = LOSS_NODE if LOSS_NODE in g else None
    g.graph["entries"] = ex.entries
    for inst in ex.instances.values():
        inst.output = ex.resolve(inst.output)
    g.graph["instances"] = ex.instances
    g.graph["layers"] = {l.name: l for l in ex.layers}
    g.graph["layer_ops"] = ops  # the spec-level op of each layer (a composite's, not its last part's)
    g.graph["failed"] = shape_failures
    if data.get("params"):  # parameter values to start from, relative to the spec (read by ir.params when needed)
        g.graph["params_file"] = str(Path(loaded.path).parent / data["params"])
    return g


def _outputs(loaded: LoadedSpec, ex: Expanded, errors: list[Diagnostic]) -> dict[str, str] | None:
    declared = loaded.data.get("outputs")
    top = ex.env
    if declared is not None and not isinstance(declared, (list, dict)):
        return None  # reported by the structural check
    if declared is None:
        if not ex.entries:
            return None
        return {ex.entries[-1]: ex.resolve(ex.entries[-1])}
    pairs = list(declared.items()) if isinstance(declared, dict) else [(r, r) for r in declared]
    out = {}
    for i, (oname, ref) in enumerate(pairs):
        where = loc_of(declared, oname if isinstance(declared, dict) else i)
        if ref not in top:
            errors.append(Diagnostic(f"unknown output '{ref}'", where, did_you_mean(ref, top, "layer")))
        elif oname in out:
            errors.append(Diagnostic(f"output '{oname}' is listed twice", where))
        else:
            out[oname] = ex.resolve(top[ref])
    return out


def compile_spec(path, text: str | None = None, sizes: dict[str, int] | None = None) -> nx.DiGraph:
    """Load, validate, expand and build a spec: the forward IR (a ``networkx.DiGraph``); ``sizes``
    binds symbolic dims of its inputs (:func:`build_graph`)."""
    return build_graph(load_spec(path, text), sizes=sizes)
