"""``graphc compile``: the per-layer report (Keras summary + Darknet layer table) as text and JSON.

The JSON object is a stable interface (documented in the README):

- ``name``, ``file``, ``graphc_version``, ``conventions`` (how MACs, FLOPs and memory are counted)
- ``inputs``: ``[{name, shape, dtype}]``; ``outputs``: ``[{name, layer, shape, dtype}]``
- ``layers``: one object per spec entry (a block instance or repeated layer appears once, its
  expanded layers under ``parts``), each with ``name``, ``op``, ``inputs``, ``shape``, ``dtype``,
  ``params``, ``params_trainable``, ``param_bytes``, ``macs``, ``flops``, ``activation_bytes``,
  ``receptive_field`` (``{size, stride, padding}``, one number per spatial dim, or null for
  non-spatial outputs) and ``loc``; an op layer (and a composite's part) adds ``attributes`` (every
  attribute as a field, window ops with ``padding_resolved``) and, when the table shows some,
  ``attributes_text`` (``16 k3 s1 psame``); with ``--expand`` every expanded layer is a row of its
  own, with ``--depth N`` the block instances of the outermost N levels are opened.
- ``loss``: the loss node (op, inputs, l2) or null
- totals: ``params_total``, ``params_trainable``, ``params_non_trainable``, ``param_bytes_total``, ``macs_total``,
  ``flops_total``, ``activation_bytes_total``
- ``warnings``: ``[{message, loc}]``

Over symbolic sizes (an input ``[N, 3, H, W]``) a shape dim, ``macs``, ``flops`` and
``activation_bytes`` are strings, expressions of the names (``floor((H + 1)/2)``,
``1728*floor((H + 1)/2)**2``); ``sizes`` lists the names (``[]`` for a static spec); a receptive
field's padding is null where it depends on the input size, with ``padding_note`` saying so.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx
import numpy as np

from .gc_pause import without_gc
from .ir.analysis import PADDING_NOTE, NodeCost, costs, field_json, graph_size_names, receptive_fields, warnings
from .ir.graph import topo_order
from .version import __version__

CONVENTIONS = {
    "macs": "multiply-accumulates of matmul and convolution products for one example (the batch N counts as 1; "
            "over symbolic sizes such as H, W an expression of them); "
            "activations, pooling, normalisation and elementwise ops count 0",
    "flops": "2 × MACs",
    "activation_bytes": "bytes of every node's output for one example",
    "receptive_field": "per spatial dim (H, W; L for (N, C, L) sequences): size r, effective stride j, effective padding P; "
                       "output unit u sees input pixels [u·j − P, u·j − P + r − 1]",
}


@dataclass
class Row:
    name: str
    op: str
    inputs: list[str]
    output: str
    nodes: list[str]
    loc: str | None
    describe: str = ""
    parts: list["Row"] = field(default_factory=list)
    attributes: dict | None = None  # op rows only: the op's attributes as JSON fields


def _shape_json(t):
    return [d if isinstance(d, int) else str(d) for d in t.shape]


def _count_json(n):
    """A count for JSON: an int, or the text of its expression over symbolic sizes."""
    return n if isinstance(n, int) else str(n)


def _rows(graph: nx.DiGraph, depth: int | None) -> list[Row]:
    layers = graph.graph["layers"]
    instances = graph.graph["instances"]
    by_layer: dict[str, list[str]] = {}
    for n, a in graph.nodes(data=True):
        if a["role"] in ("op", "param"):
            by_layer.setdefault(a["layer"], []).append(n)

    def attributes(op, node: str) -> dict:
        xs = [graph.nodes[i]["type"] for i in graph.nodes[node]["inputs"]] if node in graph else []
        return op.attributes(xs)

    def layer_row(name: str) -> Row:
        layer = layers[name]
        nodes = by_layer.get(name, [])
        parts = []
        if len([n for n in nodes if graph.nodes[n]["role"] == "op"]) > 1:
            parts = [Row(n, graph.nodes[n]["op"].kind, list(graph.nodes[n]["inputs"]), n, [n], None,
                         attributes=attributes(graph.nodes[n]["op"], n))
                     for n in nodes if graph.nodes[n]["role"] == "op"]
        op = graph.graph["layer_ops"].get(name)  # absent for layers a pass adds (input normalisation)
        return Row(name, layer.kind, list(layer.inputs), name, nodes, str(layer.loc) if layer.loc else None,
                   op.describe() if op is not None else "", parts, attributes(op, name) if op is not None else None)

    def instance_row(name: str) -> Row:
        inst = instances[name]
        children = []
        for child in _children(name):
            children.append(instance_row(child) if child in instances else layer_row(child))
        nodes = [n for c in children for n in c.nodes]
        return Row(name, inst.block, list(inst.inputs), inst.output, nodes, str(inst.loc) if inst.loc else None, "", children)

    # Each instance's children (the instances and layers one level inside it), in spec order: one
    # pass over the layers' scopes, not one per instance (that made the report quadratic in them).
    children: dict[str, dict[str, None]] = {}
    for lname, layer in layers.items():
        scope = layer.scope
        for i, parent in enumerate(scope):
            children.setdefault(parent, {})[scope[i + 1] if i + 1 < len(scope) else lname] = None

    def _children(name: str) -> list[str]:
        return list(children.get(name, ()))

    rows = []
    for entry in graph.graph["entries"]:
        row = instance_row(entry) if entry in instances else layer_row(entry)
        rows.extend(_open(row, depth))
    return rows


def _open(row: Row, depth: int | None) -> list[Row]:
    """``row`` with the block instances of its outermost ``depth`` levels replaced by their rows
    (``None``: every level, as ``--expand``)."""
    if row.attributes is not None or not row.parts or depth == 0:  # an op layer (composites stay whole)
        return [row]
    return [r for p in row.parts for r in _open(p, None if depth is None else depth - 1)]


def _param_bytes(graph: nx.DiGraph, nodes) -> int:
    return sum(graph.nodes[n]["type"].numel() * np.dtype(graph.nodes[n]["type"].dtype).itemsize
               for n in nodes if graph.nodes[n]["role"] == "param")


@without_gc
def compile_report(graph: nx.DiGraph, expand: bool = False, depth: int | None = 0) -> dict:
    """The report object that ``graphc compile --json`` prints.

    ``depth`` opens that many levels of block instances into rows of their own (``expand``: all)."""
    cost = costs(graph)
    fields = receptive_fields(graph)

    def row_json(row: Row) -> dict:
        total = NodeCost(*(sum(getattr(cost[n], f) for n in row.nodes) for f in NodeCost.__dataclass_fields__))
        out_type = graph.nodes[row.output]["type"]
        obj = {
            "name": row.name, "op": row.op, "inputs": row.inputs, "shape": _shape_json(out_type), "dtype": out_type.dtype,
            "params": total.params, "params_trainable": total.params_trainable, "param_bytes": _param_bytes(graph, row.nodes),
            "macs": _count_json(total.macs), "flops": _count_json(2 * total.macs),
            "activation_bytes": _count_json(total.activation_bytes), "receptive_field": field_json(fields.get(row.output)), "loc": row.loc,
        }
        if row.attributes is not None:
            obj["attributes"] = row.attributes
        if row.describe:
            obj["attributes_text"] = row.describe
        if row.parts:
            obj["parts"] = [row_json(p) for p in row.parts]
        return obj

    rows = [row_json(r) for r in _rows(graph, None if expand else depth)]
    totals = NodeCost(*(sum(getattr(c, f) for c in cost.values()) for f in NodeCost.__dataclass_fields__))
    loss = graph.graph.get("loss")
    loss_data = f"{loss}/data" if f"{loss}/data" in graph else loss
    report = {
        "name": graph.graph.get("name"),
        "file": graph.graph.get("file"),
        "graphc_version": __version__,
        "conventions": CONVENTIONS,
        "inputs": [{"name": n, "shape": _shape_json(a["type"]), "dtype": a["type"].dtype}
                   for n, a in graph.nodes(data=True) if a["role"] == "input"],
        "outputs": [{"name": k, "layer": v, "shape": _shape_json(graph.nodes[v]["type"]), "dtype": graph.nodes[v]["type"].dtype}
                    for k, v in graph.graph["outputs"].items()],
        "layers": rows,
        "loss": None if loss is None else {
            "op": graph.nodes[loss_data]["op"].kind,
            "inputs": list(graph.nodes[loss_data]["inputs"]),
            "l2": graph.nodes[f"{loss}/l2"]["op"].strength if f"{loss}/l2" in graph else 0.0,
        },
        "params_total": totals.params,
        "params_trainable": totals.params_trainable,
        "params_non_trainable": totals.params - totals.params_trainable,
        "param_bytes_total": _param_bytes(graph, graph.nodes),
        "macs_total": _count_json(totals.macs),
        "flops_total": _count_json(2 * totals.macs),
        "activation_bytes_total": _count_json(totals.activation_bytes),
        "sizes": sorted(graph_size_names(graph)),
        "warnings": [{"message": d.message, "loc": str(d.loc) if d.loc else None} for d in warnings(graph)],
    }
    return report


def _fmt_int(n) -> str:
    """``1,234``; an expression over symbolic sizes as it is."""
    return f"{n:,}" if isinstance(n, int) else str(n)


def _fmt_bytes(n) -> str:
    """Bytes in the largest binary unit that keeps the number at least 1 (``235.7 KiB``)."""
    if not isinstance(n, int):
        return f"{n} B"
    if n < 1024:
        return f"{n} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        n /= 1024
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}"


def _fmt_rf(rf) -> str:
    if rf is None:
        return "-"
    parts = []
    for key in ("size", "stride", "padding"):
        v = ["?" if x is None else x for x in rf[key]]  # ?: a padding that depends on the input size
        parts.append(str(v[0]) if len(set(v)) == 1 else "x".join(map(str, v)))  # one number per spatial dim (H, W or L)
    return " / ".join(parts)


def format_table(report: dict) -> str:
    """The human-readable table: one row per layer, then totals."""
    header = ("layer", "op", "output shape", "params", "trainable", "param bytes", "MACs", "RF size / stride / pad", "connected to")
    body = []
    for row in report["layers"]:
        op = row["op"] + (f" {row['attributes_text']}" if row.get("attributes_text") else "")
        body.append((row["name"], op, "(" + ", ".join(map(str, row["shape"])) + ")", _fmt_int(row["params"]),
                     _fmt_int(row["params_trainable"]), _fmt_bytes(row["param_bytes"]),
                     _fmt_int(row["macs"]), _fmt_rf(row["receptive_field"]), ", ".join(row["inputs"])))
    widths = [max(len(r[i]) for r in [header] + body) for i in range(len(header))]
    right = {3, 4, 5, 6}

    def line(cells):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    out = [f"{report['name']} ({report['file']})", line(header), line(["─" * w for w in widths])]
    out += [line(r) for r in body]
    out.append(line(["─" * w for w in widths]))
    ins = ", ".join(f"{i['name']} ({', '.join(map(str, i['shape']))}) {i['dtype']}" for i in report["inputs"])
    outs = ", ".join(f"{o['name']} ({', '.join(map(str, o['shape']))})" for o in report["outputs"])
    out.append(f"inputs:  {ins}")
    out.append(f"outputs: {outs}")
    if report["loss"]:
        loss = report["loss"]
        out.append(f"loss:    {loss['op']}({', '.join(loss['inputs'])})" + (f" + l2 {loss['l2']:g}" if loss["l2"] else ""))
    out.append(f"params:  {_fmt_int(report['params_total'])} total, {_fmt_int(report['params_trainable'])} trainable, "
               f"{_fmt_int(report['params_non_trainable'])} non-trainable ({_fmt_bytes(report['param_bytes_total'])})")
    out.append(f"MACs:    {_fmt_int(report['macs_total'])} per example (FLOPs = 2 × MACs = {_fmt_int(report['flops_total'])})")
    activations = report["activation_bytes_total"]
    out.append(f"memory:  {activations / 2**20:.2f} MiB of activations per example" if isinstance(activations, int)
               else f"memory:  {activations} bytes of activations per example")
    if report.get("sizes"):
        out.append(f"sizes:   {', '.join(report['sizes'])} symbolic (graphc compile --size {'=…,'.join(report['sizes'])}=… binds them)")
    if any(r["receptive_field"] and "padding_note" in r["receptive_field"] for r in report["layers"]):
        out.append(f"RF pad ?: {PADDING_NOTE.split(': ', 1)[1]}")
    return "\n".join(out)


def backward_report(training: nx.DiGraph, forward: dict) -> dict:
    """``compile --backward --json``: the forward report plus the training graph's backward nodes.

    Adds ``backward`` (one object per backward node: ``name, op, inputs, shape, dtype, macs, of, layer``
    where ``of`` is the forward node whose gradient rule emitted it), ``grads`` (parameter → gradient
    node), ``updates`` (running statistic → update node), ``masks`` (dropout masks fed at run time),
    ``backward_macs_total`` and ``training_macs_total`` (forward + backward, per example).
    """
    cost = costs(training)
    backward = []
    for name in topo_order(training):
        a = training.nodes[name]
        if a["role"] != "grad":
            continue
        backward.append({"name": name, "op": a["op"].kind, "inputs": list(a["inputs"]), "shape": _shape_json(a["type"]),
                         "dtype": a["type"].dtype, "macs": cost[name].macs, "of": a.get("of"), "layer": a.get("layer")})
    forward_training = sum(cost[n].macs for n, a in training.nodes(data=True) if a["role"] != "grad")
    report = dict(forward)
    report["backward"] = backward
    report["grads"] = dict(training.graph.get("grads", {}))
    report["updates"] = dict(training.graph.get("updates", {}))
    report["masks"] = sorted(training.graph.get("masks", {}))
    report["backward_macs_total"] = sum(b["macs"] for b in backward)
    report["training_macs_total"] = forward_training + report["backward_macs_total"]
    return report


def format_backward(report: dict) -> str:
    """The forward table, then the backward nodes grouped by the layer they differentiate."""
    groups: dict[str, list[dict]] = {}
    for b in report["backward"]:
        groups.setdefault(b["layer"] or b["of"], []).append(b)
    header = ("gradient of", "nodes", "ops", "MACs", "cotangent shapes")
    body = []
    for layer, nodes in groups.items():
        kinds = ", ".join(dict.fromkeys(n["op"] for n in nodes))
        shapes = ", ".join(dict.fromkeys("(" + ", ".join(map(str, n["shape"])) + ")" for n in nodes if n["op"] != "const"))
        body.append((layer, str(len(nodes)), kinds, _fmt_int(sum(n["macs"] for n in nodes)), shapes))
    widths = [min(max(len(r[i]) for r in [header] + body), 60) for i in range(len(header))]

    def line(cells):
        return "  ".join((c if len(c) <= w else c[: w - 1] + "…").rjust(w) if i == 3 else (c if len(c) <= w else c[: w - 1] + "…").ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    out = [format_table(report), "", "backward (training graph, after constant folding, CSE and dead-code elimination)",
           line(header), line(["─" * w for w in widths])]
    out += [line(r) for r in body]
    out.append(line(["─" * w for w in widths]))
    out.append(f"gradients: {len(report['grads'])} parameters" + (f", {len(report['updates'])} running statistics updated" if report["updates"] else "")
               + (f", {len(report['masks'])} dropout masks fed" if report["masks"] else ""))
    out.append(f"MACs:    {_fmt_int(report['backward_macs_total'])} backward, {_fmt_int(report['training_macs_total'])} per training example in all")
    return "\n".join(out)


def model_inputs(model, graph: nx.DiGraph, masks=()) -> list[dict]:
    """An exported ONNX model's inputs, each ``{name, shape, dtype, role, default}``: what a caller
    feeds. ``role`` is ``data``/``label`` (spec inputs; labels are the loss's), ``dropout mask``,
    ``parameter``, ``running statistic``, ``learning rate``, ``optimiser state (<slot>)`` or
    ``optimiser step``; ``default`` says whether the model carries a value (an initializer)."""
    import onnx.helper

    loss = graph.graph.get("loss")
    loss_data = f"{loss}/data" if loss is not None and f"{loss}/data" in graph else loss
    labels = set(graph.nodes[loss_data]["inputs"]) if loss_data in graph else set()
    embedded = {t.name for t in model.graph.initializer}

    def role(name: str) -> str:
        if name in graph and graph.nodes[name]["role"] == "input":
            return "label" if name in labels else "data"
        if name in graph and graph.nodes[name]["role"] == "param":
            return "parameter" if graph.nodes[name]["op"].trainable else "running statistic"
        if name in masks:
            return "dropout mask"
        if name == "lr":
            return "learning rate"
        if name == "state/step":
            return "optimiser step"
        if name.startswith("state/"):
            return f"optimiser state ({name.rsplit('/', 1)[1]})"
        return "-"

    rows = []
    for i in model.graph.input:
        t = i.type.tensor_type
        shape = [d.dim_param or d.dim_value for d in t.shape.dim]
        rows.append({"name": i.name, "shape": shape, "dtype": str(onnx.helper.tensor_dtype_to_np_dtype(t.elem_type)),
                     "role": role(i.name), "default": i.name in embedded})
    return rows


def format_model_inputs(rows: list[dict]) -> str:
    """The inputs as a table: name, shape, dtype, role, and whether the model carries a default."""
    header = ("input", "shape", "dtype", "role", "default")
    body = [(r["name"], "(" + ", ".join(map(str, r["shape"])) + ")", r["dtype"], r["role"], "embedded" if r["default"] else "-")
            for r in rows]
    widths = [max(len(r[i]) for r in [header] + body) for i in range(len(header))]

    def line(cells):
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()

    return "\n".join([line(header), line(["─" * w for w in widths])] + [line(r) for r in body])
