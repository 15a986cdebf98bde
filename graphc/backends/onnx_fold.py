"""Shape arithmetic folded at export: what an exported graph would compute about shapes at run time
although the shapes are known, computed once here instead.

Op lowerings are written for a symbolic batch: a count is ``Size(x)``, a reshape back is
``Reshape(g, Shape(x))``. Where ``x``'s shape is static (every dim of its ``value_info`` an int, as
with ``graphc export --static-batch N``), :func:`fold_shapes`

- replaces ``Shape`` and ``Size`` of a statically shaped value by constants, and then every node of
  :data:`FOLDABLE` whose inputs are all constants and whose output is small (a shape, a count; never
  data) by its value, evaluated by onnx's reference implementation of the op;
- turns ``Reshape(g, Shape(x))`` and ``Expand(g, Shape(x))`` into a constant shape where ``x``'s only
  symbolic dims are ``g``'s at the same positions (``0`` copies a dim in ``Reshape``, ``1`` keeps it in
  ``Expand``), which is the case of a symbolic batch;
- drops the nodes and constants nothing reads any more.

Graph inputs are never folded, even those with an initializer as their default (a training step's
parameters): a caller may feed them.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import numpy_helper

from ..tensor import unique_name

FOLDABLE = frozenset({"Cast", "Concat", "Div", "Mul", "Add", "Sub", "Neg", "Gather", "Unsqueeze", "Squeeze", "Slice",
                      "Reshape", "Identity", "ReduceProd", "Range", "Equal", "Where", "Expand", "ConstantOfShape"})
SMALL = 64  # elements: the largest value folded (shapes and counts are a few numbers)


def _dims(value_info: onnx.ValueInfoProto) -> tuple | None:
    """A value's shape as ints and symbol names (``None`` when unknown)."""
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        return None
    return tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim)


def _static(shape) -> bool:
    return shape is not None and all(isinstance(d, int) for d in shape)


def _attr(node: onnx.NodeProto, name: str, default=None):
    return next((onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)


def _shape_value(node: onnx.NodeProto, shape) -> np.ndarray | None:
    """``Shape(x)`` (with its ``start``/``end``) or ``Size(x)`` of a value of ``shape``, when static."""
    if node.op_type == "Size":
        return np.array(math.prod(shape), np.int64) if _static(shape) else None
    start, end = _attr(node, "start", 0), _attr(node, "end", None)
    part = shape[start:end] if shape is not None else None
    return np.array(part, np.int64) if _static(part) else None


def _evaluate(node: onnx.NodeProto, inputs: list[np.ndarray], opset: int) -> np.ndarray:
    from onnx.reference import ReferenceEvaluator

    names = [f"in{i}" if name else "" for i, name in enumerate(node.input)]
    lone = onnx.helper.make_node(node.op_type, names, ["out"], **{a.name: onnx.helper.get_attribute_value(a) for a in node.attribute})
    feeds = {n: v for n, v in zip(names, inputs) if n}
    return np.asarray(ReferenceEvaluator(lone, opsets={"": opset}).run(None, feeds)[0])


def _like_shape(kind: str, data, like) -> np.ndarray | None:
    """The constant that ``Reshape``/``Expand`` of a value of shape ``data`` by ``Shape(like)`` may take
    instead: like's static dims, and at each symbolic one ``0`` (Reshape: copy) or ``1`` (Expand: keep)
    where data has that symbol at that position; ``None`` where that does not express it."""
    if data is None or like is None or None in like:
        return None
    offset = len(data) - len(like) if kind == "Expand" else 0  # Expand aligns trailing dims
    out = []
    for i, d in enumerate(like):
        if isinstance(d, int):
            out.append(d)
        elif 0 <= i + offset < len(data) and data[i + offset] == d:
            out.append(0 if kind == "Reshape" else 1)
        else:
            return None
    return np.array(out, np.int64)


def fold_shapes(model: onnx.ModelProto, keep=frozenset()) -> onnx.ModelProto:
    """``model`` with its static shape arithmetic folded (module docstring); changed in place and returned.
    ``keep``: initializers that are the model's parameters, never folded into a renamed copy (a
    parameter stays findable by its name, e.g. to replace its values in another tool)."""
    g = model.graph
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    inferred = onnx.shape_inference.infer_shapes(model).graph  # the lowerings' own intermediate values have no value_info
    shapes = {v.name: _dims(v) for v in (*inferred.value_info, *g.input, *g.value_info, *g.output)}
    fed = {i.name for i in g.input}
    outputs = {o.name for o in g.output}
    known = {t.name: numpy_helper.to_array(t) for t in g.initializer if t.name not in fed and t.name not in keep and math.prod(t.dims) <= SMALL}
    made: dict[str, np.ndarray] = {}  # folded values, initializers to add
    shape_of: dict[str, str] = {}  # output of a whole-shape Shape node → the value it measures
    taken = set(shapes) | {t.name for t in g.initializer} | {o for n in g.node for o in n.output}
    kept = []
    for node in g.node:
        value = _fold(node, shapes, known, shape_of, opset) if len(node.output) == 1 and node.output[0] not in outputs else None
        if value is not None:
            known[node.output[0]] = made[node.output[0]] = value
            continue
        if (node.op_type in ("Reshape", "Expand") and node.input[1] in shape_of and node.input[1] not in known
                and not _attr(node, "allowzero", 0)):
            target = _like_shape(node.op_type, shapes.get(node.input[0]), shapes.get(shape_of[node.input[1]]))
            if target is not None:
                name = unique_name(f"{node.output[0]}/like_shape", taken)
                known[name] = made[name] = target
                node.input[1] = name
        kept.append(node)
    g.initializer.extend(numpy_helper.from_array(v, n) for n, v in made.items())
    _drop_unused(g, kept, fed, outputs)
    return model


def _fold(node: onnx.NodeProto, shapes: dict, known: dict, shape_of: dict, opset: int) -> np.ndarray | None:
    """The value of ``node``'s output when the shapes or constants it reads determine it (and it is
    small); notes a whole-shape ``Shape`` node in ``shape_of``."""
    if node.op_type in ("Shape", "Size"):
        if node.op_type == "Shape" and _attr(node, "start", 0) == 0 and _attr(node, "end") is None:
            shape_of[node.output[0]] = node.input[0]
        return _shape_value(node, shapes.get(node.input[0]))
    if node.op_type in FOLDABLE and all(not i or i in known for i in node.input):
        value = _evaluate(node, [known[i] if i else None for i in node.input], opset)
        return value if value.size <= SMALL else None
    return None


def _drop_unused(g: onnx.GraphProto, nodes: list[onnx.NodeProto], fed: set[str], outputs: set[str]) -> None:
    """Keep the nodes whose outputs something reads (a later node or a graph output), and the
    initializers still read or fed."""
    needed = set(outputs)
    live = []
    for node in reversed(nodes):
        if any(o in needed for o in node.output):
            live.append(node)
            needed.update(i for i in node.input if i)
    live.reverse()
    del g.node[:]
    g.node.extend(live)
    produced = {o for n in live for o in n.output}
    inits = [t for t in g.initializer if t.name in needed or t.name in fed]
    del g.initializer[:]
    g.initializer.extend(inits)
    infos = [v for v in g.value_info if v.name in produced]
    del g.value_info[:]
    g.value_info.extend(infos)
