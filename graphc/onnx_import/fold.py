"""Constant folding at import: what an ONNX graph computes from constants alone becomes one array.

Exporters compute weights and shapes in the graph: ``Constant`` nodes, ``ConstantOfShape`` (the
model zoo's light models build every weight so), ``Unsqueeze`` of a bias, and PyTorch's flatten
``x.view(x.size(0), -1)`` as ``Shape → Gather → Unsqueeze → Concat → Reshape``. Three kinds of value:

- **constants**: initializers, ``Constant`` outputs, and the outputs of deterministic nodes whose
  inputs are all constants, evaluated by onnx's own ``ReferenceEvaluator`` (one node at a time, at
  the model's opset, so each op keeps the semantics of its version);
- **shape values**: 1-D int64 tensors whose entries are known sizes or symbolic dims (``N``),
  from ``Shape`` of a tensor whose shape inference knows every dim, through ``Gather``,
  ``Unsqueeze``, ``Squeeze``, ``Concat``, ``Slice``, ``Cast``, ``Identity``, a 1-D ``Reshape``, and the
  ``Equal``/``Where`` with which PyTorch's ``expand(n, -1, -1)`` replaces each −1 by 1. A ``Reshape``
  target made of them becomes a constant: a symbolic dim that copies the input's dim at its place
  is ONNX's ``0``, one other unknown is ``-1``;
- **tensors**: everything else, the nodes that become graphc layers.

A folded constant is bounded (:data:`MAX_CONSTANT_BYTES`), and the ops that can blow a small input
up (``ConstantOfShape``, ``Expand``, ``Tile``, ``Range``) are checked before they are evaluated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import GraphcError

MAX_CONSTANT_BYTES = 2**31
#: never folded: their value changes from run to run, or they hold subgraphs
NOT_FOLDED = frozenset({"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli",
                        "If", "Loop", "Scan", "SequenceMap", "Dropout"})
SHAPE_OPS = frozenset({"Gather", "Unsqueeze", "Squeeze", "Concat", "Slice", "Cast", "Identity", "Reshape", "Equal", "Where"})


@dataclass
class Node:
    """One ONNX node, its attributes as Python values (tensors as arrays)."""

    op_type: str
    name: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict
    domain: str = ""

    @property
    def label(self) -> str:
        return self.name or (self.outputs[0] if self.outputs else self.op_type)


@dataclass
class Folded:
    """A model after folding: its data inputs, outputs, remaining nodes (in topological order), the
    constants they read, and the shape and element type shape inference gives every value."""

    inputs: list[str]
    outputs: list[str]
    nodes: list[Node]
    consts: dict[str, np.ndarray]
    shapes: dict[str, tuple | None]
    dtypes: dict[str, int]
    opset: int
    symbolic: dict[str, list] = field(default_factory=dict)  # shape values no Reshape consumed


def attributes(proto) -> dict:
    from onnx import helper, numpy_helper

    out = {}
    for a in proto.attribute:
        value = helper.get_attribute_value(a)
        if hasattr(value, "data_type") and hasattr(value, "dims"):
            value = numpy_helper.to_array(value)
        out[a.name] = value.decode() if isinstance(value, bytes) else value
    return out


def _shape_of(value_info) -> tuple | None:
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        return None
    return tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim)


def _without_large_tensors(model):
    """``model`` with its large initializers as typed inputs: shape inference needs their shapes,
    not their values, and serialising gigabytes of weights to it would take seconds."""
    from onnx import helper

    g = model.graph
    small = [t for t in g.initializer if math.prod(t.dims) <= 4096]
    names = {i.name for i in g.input}
    large = [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in g.initializer
             if math.prod(t.dims) > 4096 and t.name not in names]
    graph = helper.make_graph(list(g.node), g.name, list(g.input) + large, list(g.output), small, value_info=list(g.value_info))
    return helper.make_model(graph, opset_imports=list(model.opset_import), ir_version=max(model.ir_version, 4))


def infer(model) -> tuple[dict[str, tuple | None], dict[str, int]]:
    """Shapes and element types of every value shape inference reaches (symbolic dims as names)."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(_without_large_tensors(model), data_prop=True)
    except Exception:  # noqa: BLE001 - inference is a help, not a requirement: unknown shapes stay unknown
        inferred = model
    shapes, dtypes = {}, {}
    g = inferred.graph
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        shapes[vi.name] = _shape_of(vi)
        dtypes[vi.name] = vi.type.tensor_type.elem_type
    for t in g.initializer:
        shapes[t.name], dtypes[t.name] = tuple(t.dims), t.data_type
    return shapes, dtypes


def _predicted_bytes(node: Node, values: dict[str, np.ndarray]) -> int | None:
    """Bytes of the output of an op that can make a large tensor of a small input, before running it."""
    ins = [values.get(i) for i in node.inputs]
    try:
        if node.op_type == "ConstantOfShape":
            return math.prod(int(d) for d in ins[0]) * 8
        if node.op_type == "Expand":
            return math.prod(np.broadcast_shapes(ins[0].shape, tuple(int(d) for d in ins[1]))) * ins[0].itemsize
        if node.op_type == "Tile":
            return math.prod(s * int(r) for s, r in zip(ins[0].shape, ins[1])) * ins[0].itemsize
        if node.op_type == "Range":
            start, limit, delta = (float(v) for v in ins[:3])
            return max(0, math.ceil((limit - start) / delta)) * 8 if delta else None
    except (TypeError, ValueError, IndexError):
        return None
    return 0


def evaluate(node: Node, proto, values: dict[str, np.ndarray], opsets) -> list[np.ndarray]:
    """The outputs of one node on constant inputs, by onnx's reference evaluator at the model's opsets."""
    from onnx import helper
    from onnx.reference import ReferenceEvaluator

    need = _predicted_bytes(node, values)
    if need is None or need > MAX_CONSTANT_BYTES:
        raise GraphcError(f"node '{node.label}' ({node.op_type}) would make a constant of "
                          f"{'unknown size' if need is None else f'{need:,} bytes'}, more than graphc folds ({MAX_CONSTANT_BYTES:,})")
    names = [i for i in node.inputs if i]
    inputs = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(values[n].dtype), values[n].shape) for n in dict.fromkeys(names)]
    outputs = [helper.make_empty_tensor_value_info(o) for o in node.outputs if o]
    graph = helper.make_graph([proto], "fold", inputs, outputs)
    model = helper.make_model(graph, opset_imports=list(opsets), ir_version=8)
    results = ReferenceEvaluator(model).run(None, {n: values[n] for n in dict.fromkeys(names)})
    out = [np.asarray(r) for r in results]
    for r in out:
        if r.nbytes > MAX_CONSTANT_BYTES:
            raise GraphcError(f"node '{node.label}' ({node.op_type}) makes a constant of {r.nbytes:,} bytes, more than graphc folds")
    return out


def _symbolic(node: Node, consts: dict, sym: dict) -> list | None:
    """The shape value a shape-arithmetic node makes of shape values and constants, or None."""
    def value(name):
        if name in sym:
            return sym[name]
        if name in consts and consts[name].ndim <= 1 and consts[name].dtype.kind in "iu":
            return [int(v) for v in np.atleast_1d(consts[name])]
        return None

    ins = [value(i) if i else None for i in node.inputs]
    op, a = node.op_type, node.attrs
    if op == "Where":  # its condition is no shape value: a decided Equal's constant
        cond = consts.get(node.inputs[0])
        if cond is None or cond.dtype != bool or cond.ndim > 1 or len(ins) != 3 or None in ins[1:]:
            return None
        cond = np.atleast_1d(cond)
        n = len(cond)
        x, y = (v * n if len(v) == 1 else v for v in ins[1:])
        return [p if c else q for c, p, q in zip(cond, x, y)] if len(x) == len(y) == n else None
    if ins[0] is None:
        return None
    if op in ("Identity", "Cast"):
        return ins[0] if op == "Identity" or a.get("to") in (6, 7) else None
    if op == "Gather" and a.get("axis", 0) == 0 and node.inputs[1] in consts:
        idx = consts[node.inputs[1]]
        picked = [ins[0][int(i)] for i in np.atleast_1d(idx)]
        return picked if idx.ndim == 1 else picked[:1]  # a scalar index: a scalar, kept as one entry
    if op == "Unsqueeze" or op == "Squeeze":
        return ins[0] if len(ins[0]) == 1 else None
    if op == "Concat":
        return [d for v in ins for d in v] if all(v is not None for v in ins) else None
    if op == "Reshape":  # a shape value kept 1-D (PyTorch reshapes the sizes it concatenated to [-1])
        return ins[0] if len(ins) > 1 and ins[1] is not None and len(ins[1]) == 1 and ins[1][0] in (-1, len(ins[0])) else None
    if op == "Equal" and len(ins) > 1 and ins[1] is not None and len(ins[1]) in (1, len(ins[0])):
        # PyTorch's expand(n, -1, -1) asks which sizes are −1: a symbolic size is ≥ 1, so never one ≤ 0
        others = ins[1] * len(ins[0]) if len(ins[1]) == 1 else ins[1]
        decided = [d == c if isinstance(d, int) and isinstance(c, int) else False if isinstance(c, int) and c <= 0 else None
                   for d, c in zip(ins[0], others)]
        return None if None in decided else decided
    if op == "Slice":
        starts, ends = (a.get("starts"), a.get("ends")) if "starts" in a else (ins[1], ins[2] if len(ins) > 2 else None)
        steps = ins[4] if len(node.inputs) > 4 and node.inputs[4] else [1]
        axes = ins[3] if len(node.inputs) > 3 and node.inputs[3] else a.get("axes", [0])
        if starts is None or ends is None or list(axes) != [0] or list(steps) != [1] or any(isinstance(v, str) for v in starts + ends):
            return None
        return ins[0][slice(starts[0], min(ends[0], len(ins[0])))]
    return None


def _reshape_target(target: list, x_shape: tuple | None) -> np.ndarray | None:
    """A Reshape target of known sizes and symbolic dims as ONNX numbers: a dim copied from the
    input's same place is 0, one other unknown is -1."""
    out = []
    for i, d in enumerate(target):
        if isinstance(d, int):
            out.append(d)
        elif x_shape is not None and i < len(x_shape) and x_shape[i] == d:
            out.append(0)
        else:
            out.append(-1)
    return np.asarray(out, dtype=np.int64) if out.count(-1) <= 1 else None


def fold(model) -> Folded:
    """Fold ``model``'s constant subgraphs (see the module's docstring)."""
    from onnx import numpy_helper

    g = model.graph
    opsets = list(model.opset_import)
    opset = next((o.version for o in opsets if o.domain in ("", "ai.onnx")), 0)
    shapes, dtypes = infer(model)
    consts: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    sym: dict[str, list] = {}
    kept: list[Node] = []
    for proto in g.node:
        node = Node(proto.op_type, proto.name, list(proto.input), list(proto.output), attributes(proto), proto.domain)
        present = [i for i in node.inputs if i]
        default_domain = node.domain in ("", "ai.onnx")
        if default_domain and node.op_type == "Constant":
            (key, value), = node.attrs.items()
            consts[node.outputs[0]] = np.asarray(value, dtype=np.float32 if key in ("value_float", "value_floats") else
                                                 np.int64 if key in ("value_int", "value_ints") else None)
            continue
        if default_domain and node.op_type not in NOT_FOLDED and present and all(i in consts for i in present):
            for name, value in zip(node.outputs, evaluate(node, proto, consts, opsets)):
                consts[name] = value
            continue
        if default_domain and node.op_type == "Shape" and shapes.get(node.inputs[0]) is not None:
            dims = list(shapes[node.inputs[0]])
            if all(d is not None for d in dims):
                dims = dims[slice(node.attrs.get("start", 0), node.attrs.get("end"))]
                if all(isinstance(d, int) for d in dims):
                    consts[node.outputs[0]] = np.asarray(dims, dtype=np.int64)
                else:
                    sym[node.outputs[0]] = dims
                continue
        if default_domain and node.op_type in SHAPE_OPS and any(i in sym for i in present):
            value = _symbolic(node, consts, sym)
            if value is not None:
                if node.op_type == "Equal":
                    consts[node.outputs[0]] = np.asarray(value, dtype=bool)
                elif all(isinstance(d, int) for d in value):
                    consts[node.outputs[0]] = np.asarray(value, dtype=np.int64)
                else:
                    sym[node.outputs[0]] = value
                continue
        if default_domain and node.op_type == "Reshape" and len(node.inputs) > 1 and node.inputs[1] in sym:
            target = _reshape_target(sym[node.inputs[1]], shapes.get(node.inputs[0]))
            if target is not None:
                name = f"{node.inputs[1]}/folded"
                consts[name] = target
                node.inputs[1] = name
        kept.append(node)
    used = {i for n in kept for i in n.inputs} | set(o.name for o in g.output)
    inputs = [i.name for i in g.input if i.name not in consts]
    return Folded(inputs, [o.name for o in g.output], kept, {k: v for k, v in consts.items() if k in used}, shapes, dtypes, opset,
                  {k: v for k, v in sym.items() if k in used})
