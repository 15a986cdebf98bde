"""One rewritten ONNX node → one graphc layer (or a short chain of them), with its parameters in
graphc's layout; and the spec as YAML a person would have written.

Each converter takes the node and returns its layers, or raises :class:`Unsupported` with the
reason (an attribute value graphc has no form for, a constant operand where graphc takes a
tensor, …). Layouts: conv weights stay OIHW; dense weights become (in, out) (``Gemm``'s ``transB``
transposed away); batchnorm's ``scale``, ``B``, ``mean``, ``var`` become ``gamma``, ``beta``,
``running_mean``, ``running_var``. ONNX pads ``[top, left, bottom, right]`` become an int, ``[ph, pw]``
or ``{top, bottom, left, right}``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from ..tensor import unique_name
from .fold import Folded, Node
from .patterns import DENSE, per_channel

INT64_MAX = 2**63 - 1


class Unsupported(Exception):
    """A node graphc cannot take; the message says why (None: its op type as a whole)."""


@dataclass
class Layer:
    name: str
    op: str
    attrs: dict
    inputs: list[str]
    params: dict[str, np.ndarray] = field(default_factory=dict)


_SAFE = re.compile(r"[^A-Za-z0-9_\-]+")


def _is_op_name(part: str, op_type: str) -> bool:
    """Whether a name's last part is an op type (``Conv``, ``Mul_1``): PyTorch's node names end so."""
    from onnx import defs

    base = re.sub(r"_\d+$", "", part)
    return base == op_type or (base[:1].isupper() and defs.has(base))


def f32(value) -> float:
    """A float32 attribute as the shortest number that reads back to it (1e-06, not 9.99999997e-07)."""
    return float(str(np.float32(value)))


def sanitise(name: str, op_type: str = "") -> str:
    """A graphc layer name from an ONNX name: PyTorch's ``/layer1/layer1.0/conv1/Conv`` is
    ``layer1_0_conv1`` (the trailing op type dropped, a scope the next one repeats dropped, every
    run of characters outside ``[A-Za-z0-9_-]`` one ``_``)."""
    parts = [p for p in name.split("/") if p]
    if len(parts) > 1 and _is_op_name(parts[-1], op_type):
        parts = parts[:-1]
    parts = [p for i, p in enumerate(parts) if not (i + 1 < len(parts) and parts[i + 1].startswith(p + "."))]
    text = _SAFE.sub("_", "_".join(parts)).strip("_")
    if not text or text[0] == "-":
        text = (op_type.lower() or "layer") + ("_" + text if text else "")
    return text


class Context:
    """What the converters see: the folded graph, the graphc name of each tensor, constants."""

    def __init__(self, f: Folded):
        self.f = f
        self.ref: dict[str, str] = {}  # ONNX value → graphc layer or input name
        self.taken: set[str] = set()
        self.used = {i for n in f.nodes for i in n.inputs} | set(f.outputs)
        #: parameter layers made for constants read as data while converting the current node
        self.pending: list[Layer] = []

    def extra_outputs_used(self, node: Node) -> bool:
        """Whether anything reads a node's outputs after the first (Dropout's mask, MaxPool's indices)."""
        return any(o and o in self.used for o in node.outputs[1:])

    def unique(self, base: str) -> str:
        return unique_name(base, self.taken)

    def const(self, name: str | None):
        return self.f.consts.get(name) if name else None

    def tensor(self, name: str) -> str:
        """The graphc name of value ``name``: a layer's or input's, or for a float constant of rank ≥ 1
        read as data (a position embedding added, a class token concatenated) a ``parameter`` layer
        holding it, made once and shared by every reader."""
        if name in self.ref:
            return self.ref[name]
        if name in self.f.consts:
            c = self.f.consts[name]
            if c.dtype.kind != "f" or c.ndim == 0:
                raise Unsupported(f"its input '{name}' is a constant {'scalar' if c.ndim == 0 else c.dtype.name + ' tensor'} where graphc "
                                  "takes a computed one (a parameter layer holds a float tensor of rank ≥ 1)")
            layer = Layer(self.unique(sanitise(name)), "parameter", {"shape": [int(d) for d in c.shape]}, [],
                          {"value": c.astype(np.float32, copy=False)})
            self.pending.append(layer)
            self.ref[name] = layer.name
            return layer.name
        if name in self.f.symbolic:
            raise Unsupported(f"its input '{name}' is computed from a tensor's shape at run time")
        raise Unsupported(f"its input '{name}' comes from an unsupported node")

    def shape(self, name: str) -> tuple | None:
        return self.f.shapes.get(name)

    def rank(self, name: str) -> int | None:
        s = self.shape(name)
        return None if s is None else len(s)


def _one_or_two(values) -> int | list[int]:
    values = [int(v) for v in values]
    return values[0] if len(set(values)) == 1 else values


def _padding(pads, spatial: int = 2):
    pads = [int(p) for p in (pads if pads is not None else [0] * 2 * spatial)]
    top, left, bottom, right = pads
    if top == bottom and left == right:
        return _one_or_two([top, left])
    return {"top": top, "bottom": bottom, "left": left, "right": right}


def _window_attrs(node: Node, ctx: Context, kernel) -> dict:
    a = node.attrs
    auto = a.get("auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER") and auto == "SAME_LOWER":
        raise Unsupported("auto_pad SAME_LOWER (the extra padding row first) has no graphc form; graphc's 'same' is SAME_UPPER")
    out = {"kernel": _one_or_two(kernel)}
    stride = _one_or_two(a.get("strides", [1, 1]))
    if stride != (1 if node.op_type in ("Conv", "ConvTranspose") else out["kernel"]):  # graphc's defaults: 1; a pool's kernel
        out["stride"] = stride
    padding = "same" if auto == "SAME_UPPER" else 0 if auto == "VALID" else _padding(a.get("pads"))
    if padding != 0:
        out["padding"] = padding
    dilation = _one_or_two(a.get("dilations", [1, 1]))
    if dilation != 1:
        out["dilation"] = dilation
    return out


def _spatial_2d(node: Node, ctx: Context, kernel) -> None:
    if len(kernel) != 2 or ctx.rank(node.inputs[0]) not in (None, 4):
        raise Unsupported(f"a {len(kernel)}-D window: graphc's convolutions and pools are 2-D (NCHW)")


def conv(node: Node, ctx: Context) -> list[Layer]:
    w = ctx.const(node.inputs[1])
    if w is None:
        raise Unsupported("its weight is computed, not a constant")
    kernel = node.attrs.get("kernel_shape", w.shape[2:])
    groups = int(node.attrs.get("group", 1))
    if len(kernel) == 1 and node.op_type == "Conv":
        return [_conv1d(node, ctx, w, groups)]
    _spatial_2d(node, ctx, kernel)
    bias = ctx.const(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
    transposed = node.op_type == "ConvTranspose"
    filters = w.shape[1] * groups if transposed else w.shape[0]
    attrs = {"filters": int(filters), **_window_attrs(node, ctx, kernel)}
    if transposed:
        if "output_shape" in node.attrs:
            raise Unsupported("output_shape: give output_padding and pads instead")
        if node.attrs.get("auto_pad", "NOTSET") != "NOTSET":
            raise Unsupported("auto_pad on a transposed convolution")
        op = _one_or_two(node.attrs.get("output_padding", [0, 0]))
        if op != 0:
            attrs["output_padding"] = op
    if groups != 1:
        attrs["groups"] = groups
    params = {"weight": w.astype(np.float32, copy=False)}
    if bias is not None:
        params["bias"] = bias.astype(np.float32, copy=False).reshape(-1)
    else:
        attrs["bias"] = False
    return [Layer("", "conv_transpose2d" if transposed else "conv2d", attrs, [ctx.tensor(node.inputs[0])], params)]


def _conv1d(node: Node, ctx: Context, w, groups: int) -> Layer:
    """A 1-D ``Conv`` over (N, C, L): graphc's ``conv1d`` (padding one int or ``{left, right}``)."""
    a = node.attrs
    auto = a.get("auto_pad", "NOTSET")
    if auto == "SAME_LOWER":
        raise Unsupported("auto_pad SAME_LOWER (the extra padding first) has no graphc form")
    attrs = {"filters": int(w.shape[0]), "kernel": int(w.shape[2])}
    left, right = (int(p) for p in a.get("pads", [0, 0]))
    padding = "same" if auto == "SAME_UPPER" else 0 if auto == "VALID" else left if left == right else {"left": left, "right": right}
    for key, value, default in (("stride", a.get("strides", [1])[0], 1), ("padding", padding, 0), ("dilation", a.get("dilations", [1])[0], 1),
                                ("groups", groups, 1)):
        if value != default:
            attrs[key] = int(value) if isinstance(value, (int, np.integer)) else value
    params = {"weight": w.astype(np.float32, copy=False)}
    if len(node.inputs) > 2 and node.inputs[2]:
        params["bias"] = ctx.const(node.inputs[2]).astype(np.float32, copy=False).reshape(-1)
    else:
        attrs["bias"] = False
    return Layer("", "conv1d", attrs, [ctx.tensor(node.inputs[0])], params)


def _pool1d(node: Node, ctx: Context) -> Layer:
    """A 1-D ``MaxPool``/``AveragePool`` over (N, C, L): ``maxpool1d``/``avgpool1d``."""
    a = node.attrs
    if a.get("auto_pad", "NOTSET") != "NOTSET":
        raise Unsupported("auto_pad on a 1-D pool")
    k = int(a["kernel_shape"][0])
    left, right = (int(p) for p in a.get("pads", [0, 0]))
    attrs = {"kernel": k}
    stride = int(a.get("strides", [1])[0])
    if stride != k:
        attrs["stride"] = stride
    if left or right:
        attrs["padding"] = left if left == right else {"left": left, "right": right}
    if a.get("ceil_mode", 0):
        attrs["ceil_mode"] = True
    dilation = int(a.get("dilations", [1])[0])
    if node.op_type == "MaxPool":
        if dilation != 1:
            attrs["dilation"] = dilation
    elif dilation != 1:
        raise Unsupported("a dilated average pool")
    elif a.get("count_include_pad", 0):
        attrs["count_include_pad"] = True
    return Layer("", "maxpool1d" if node.op_type == "MaxPool" else "avgpool1d", attrs, [ctx.tensor(node.inputs[0])])


def pool(node: Node, ctx: Context) -> list[Layer]:
    a = node.attrs
    if ctx.extra_outputs_used(node):
        raise Unsupported("its Indices output is used")
    if a.get("storage_order", 0):
        raise Unsupported("storage_order 1")
    kernel = a["kernel_shape"]
    if len(kernel) == 1 and ctx.rank(node.inputs[0]) in (None, 3):
        return [_pool1d(node, ctx)]
    _spatial_2d(node, ctx, kernel)
    attrs = _window_attrs(node, ctx, kernel)
    if a.get("ceil_mode", 0):
        attrs["ceil_mode"] = True
    if node.op_type == "AveragePool":
        if attrs.pop("dilation", 1) != 1:
            raise Unsupported("a dilated average pool")
        if a.get("count_include_pad", 0):
            attrs["count_include_pad"] = True
    return [Layer("", "maxpool2d" if node.op_type == "MaxPool" else "avgpool2d", attrs, [ctx.tensor(node.inputs[0])])]


def reduce_pool(node: Node, ctx: Context) -> list[Layer]:
    """``ReduceMean``/``ReduceMax`` over H and W of an NCHW image: graphc's global pools, or with the
    dims kept ((N, C, 1, 1), as ``GlobalAveragePool``/``GlobalMaxPool``) its adaptive pools to 1×1;
    ``ReduceMean``/``ReduceSum`` over other axes: ``reduce_mean``/``reduce_sum``."""
    rank = ctx.rank(node.inputs[0])
    if node.op_type.startswith("Global"):
        kind, keep = ("global_avgpool" if node.op_type == "GlobalAveragePool" else "global_maxpool"), True
    else:
        axes = node.attrs.get("axes")
        if axes is None and len(node.inputs) > 1 and node.inputs[1]:
            c = ctx.const(node.inputs[1])
            if c is None:
                raise Unsupported("computed axes")
            axes = [int(a) for a in c.reshape(-1)] or None  # an empty axes input is no axes input
        if rank is None:
            raise Unsupported("its input's rank is unknown")
        if axes is None and node.attrs.get("noop_with_empty_axes", 0):
            return [Layer("", "alias", {}, [ctx.tensor(node.inputs[0])])]
        axes = sorted(a % rank for a in (axes if axes is not None else range(rank)))
        keepdims = bool(node.attrs.get("keepdims", 1))
        if rank != 4 or axes != [2, 3] or node.op_type != "ReduceMean" and node.op_type != "ReduceMax":
            if node.op_type not in ("ReduceMean", "ReduceSum"):
                raise Unsupported("a max over axes other than H and W of an NCHW image (graphc's global max pool)")
            attrs = {"axes": axes, **({"keepdims": True} if keepdims else {})}
            return [Layer("", "reduce_mean" if node.op_type == "ReduceMean" else "reduce_sum", attrs, [ctx.tensor(node.inputs[0])])]
        kind, keep = ("global_avgpool" if node.op_type == "ReduceMean" else "global_maxpool"), bool(node.attrs.get("keepdims", 1))
    if rank not in (None, 4):
        raise Unsupported("graphc's global pools take NCHW images")
    if keep:
        return [Layer("", f"adaptive_{kind.removeprefix('global_')}2d", {"output_size": 1}, [ctx.tensor(node.inputs[0])])]
    return [Layer("", kind, {}, [ctx.tensor(node.inputs[0])])]


def batchnorm(node: Node, ctx: Context) -> list[Layer]:
    if node.attrs.get("training_mode", 0) or ctx.extra_outputs_used(node):
        raise Unsupported("training mode (graphc's batchnorm switches to batch statistics itself when training)")
    arrays = [ctx.const(i) for i in node.inputs[1:5]]
    if any(a is None for a in arrays):
        raise Unsupported("its scale, bias, mean or variance is computed, not a constant")
    if ctx.rank(node.inputs[0]) not in (None, 2, 4):
        raise Unsupported("graphc's batchnorm takes (N, D) or (N, C, H, W)")
    attrs = {}
    eps = f32((node.attrs.get("epsilon", 1e-5)))
    if eps != f32((1e-5)):
        attrs["eps"] = eps
    momentum = float(node.attrs.get("momentum", 0.9))
    if not math.isclose(momentum, 0.9, rel_tol=1e-6):
        attrs["momentum"] = momentum
    names = ("gamma", "beta", "running_mean", "running_var")
    return [Layer("", "batchnorm", attrs, [ctx.tensor(node.inputs[0])], {n: a.astype(np.float32, copy=False).reshape(-1) for n, a in zip(names, arrays)})]


def dense(node: Node, ctx: Context) -> list[Layer]:
    w = ctx.const(node.inputs[1])
    attrs = {"units": int(w.shape[1])}
    params = {"weight": w.astype(np.float32, copy=False)}
    if len(node.inputs) > 2:
        params["bias"] = ctx.const(node.inputs[2])
    else:
        attrs["bias"] = False
    return [Layer("", "dense", attrs, [ctx.tensor(node.inputs[0])], params)]


def matmul(node: Node, ctx: Context) -> list[Layer]:
    attrs = {}
    if node.op_type == "Gemm":
        a = node.attrs
        if len(node.inputs) > 2 and node.inputs[2] or a.get("alpha", 1.0) != 1.0:
            raise Unsupported("a Gemm of two computed matrices with alpha or C")
        attrs = {k: True for k, key in (("transpose_a", "transA"), ("transpose_b", "transB")) if a.get(key, 0)}
    if any(shape is not None and len(shape) < 2 for shape in map(ctx.shape, node.inputs[:2])):
        raise Unsupported("a 1-D operand (which ONNX promotes to a matrix); graphc's matmul takes (…, M, K) @ (…, K, P)")
    return [Layer("", "matmul", attrs, [ctx.tensor(i) for i in node.inputs[:2]])]


def _scalar(c) -> float | None:
    return float(c.reshape(-1)[0]) if c is not None and c.size == 1 else None


def _positional(x: str, c, ctx: Context) -> bool:
    """Whether adding ``c`` to ``x`` (N, T, D) adds graphc's sinusoidal position table."""
    from ..ops.shape_ops import positional_table

    shape = ctx.shape(x)
    if c is None or shape is None or len(shape) != 3 or c.shape[-2:] != tuple(shape[1:]) or c.size != math.prod(c.shape[-2:]):
        return False
    return bool(np.allclose(c.reshape(c.shape[-2:]), positional_table(*c.shape[-2:], "float64"), atol=1e-6))


def arithmetic(node: Node, ctx: Context) -> list[Layer]:
    op = node.op_type.lower()
    a, b = node.inputs[:2]
    ca, cb = ctx.const(a), ctx.const(b)
    if op == "add" and (ca is None) != (cb is None) and _positional(a if cb is not None else b, cb if cb is not None else ca, ctx):
        return [Layer("", "positional_encoding", {}, [ctx.tensor(a if cb is not None else b)])]
    k = _scalar(cb if cb is not None else ca) if op in ("mul", "div") and (cb is not None or ca is not None and op == "mul") else None
    if k is not None:
        if op == "div" and k == 0:
            raise Unsupported("a division by the constant 0")
        return [Layer("", "scale", {"factor": k if op == "mul" else 1.0 / k}, [ctx.tensor(a if cb is not None else b)])]
    return [Layer("", op, {}, [ctx.tensor(a), ctx.tensor(b)])]  # a constant tensor operand: a parameter layer


def total(node: Node, ctx: Context) -> list[Layer]:
    """``Sum`` of n tensors: n − 1 ``add`` layers, chained."""
    refs = [ctx.tensor(i) for i in node.inputs]
    if len(refs) == 1:
        return [Layer("", "alias", {}, refs)]
    layers = [Layer("", "add", {}, refs[:2])]
    for r in refs[2:]:
        layers.append(Layer("", "add", {}, [None, r]))  # None: the previous layer of the chain
    return layers


SIMPLE = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "HardSwish": "hardswish", "Softplus": "softplus"}


def activation(node: Node, ctx: Context) -> list[Layer]:
    x = [ctx.tensor(node.inputs[0])]
    a, t = node.attrs, node.op_type
    if t in SIMPLE:
        return [Layer("", SIMPLE[t], {}, x)]
    if t == "LeakyRelu":
        return [Layer("", "leaky_relu", {"alpha": f32((a.get("alpha", 0.01)))}, x)]
    if t == "Elu":
        return [Layer("", "elu", {"alpha": f32((a.get("alpha", 1.0)))}, x)]
    if t == "HardSigmoid":
        return [Layer("", "hardsigmoid", {"alpha": f32((a.get("alpha", 0.2))), "beta": f32((a.get("beta", 0.5)))}, x)]
    if t == "Gelu":
        return [Layer("", "gelu", {} if a.get("approximate", "none") == "none" else {"approximate": a["approximate"]}, x)]
    if t in ("Softmax", "LogSoftmax"):
        rank = ctx.rank(node.inputs[0])
        axis = a.get("axis", -1 if ctx.f.opset >= 13 else 1)
        if rank is None:
            raise Unsupported("its input's rank is unknown")
        axis = axis % rank
        trailing = ctx.shape(node.inputs[0])[axis + 1:]
        if ctx.f.opset < 13 and any(d != 1 for d in trailing):  # before 13, the dims from axis on are one row
            raise Unsupported(f"opset {ctx.f.opset}'s softmax over axes {axis}… flattened together")
        return [Layer("", "softmax" if t == "Softmax" else "log_softmax", {} if axis == rank - 1 else {"axis": axis}, x)]
    if t == "PRelu":
        slope = ctx.const(node.inputs[1])
        shape = ctx.shape(node.inputs[0])
        c = per_channel(slope, len(shape), shape[1]) if shape and isinstance(shape[1] if len(shape) > 1 else None, int) else None
        if c is None:
            raise Unsupported("a slope that is not one number per channel (axis 1)")
        return [Layer("", "prelu", {}, x, {"slope": c})]
    if t == "Clip":
        lo = a.get("min", _scalar(ctx.const(node.inputs[1] if len(node.inputs) > 1 else None)))
        hi = a.get("max", _scalar(ctx.const(node.inputs[2] if len(node.inputs) > 2 else None)))
        lo = None if lo is None or lo <= -3.4e38 else f32((lo))
        hi = None if hi is None or hi >= 3.4e38 else f32((hi))
        if any(len(node.inputs) > i and node.inputs[i] and ctx.const(node.inputs[i]) is None for i in (1, 2)):
            raise Unsupported("its bounds are computed, not constants")
        if lo is not None and hi is not None and lo > hi:
            lo = hi  # ONNX's Clip is min(max(x, lo), hi): hi everywhere, as clip(x, hi, hi) is
        if (lo, hi) == (0.0, 6.0):
            return [Layer("", "relu6", {}, x)]
        if (lo, hi) == (0.0, None):
            return [Layer("", "relu", {}, x)]
        return [Layer("", "clip", {k: v for k, v in (("min", lo), ("max", hi)) if v is not None}, x)]
    raise AssertionError(t)


def bound(node: Node, ctx: Context) -> list[Layer]:
    """``Max``/``Min`` of a tensor and one number: ``clip`` (``relu`` for max with 0)."""
    consts = [ctx.const(i) for i in node.inputs]
    if len(node.inputs) != 2 or sum(c is not None for c in consts) != 1 or _scalar(next(c for c in consts if c is not None)) is None:
        raise Unsupported("a max or min other than of one tensor and one number")
    k = f32(_scalar(next(c for c in consts if c is not None)))
    x = [ctx.tensor(next(i for i, c in zip(node.inputs, consts) if c is None))]
    if node.op_type == "Max":
        return [Layer("", "relu", {}, x)] if k == 0 else [Layer("", "clip", {"min": k}, x)]
    return [Layer("", "clip", {"max": k}, x)]


def dropout(node: Node, ctx: Context) -> list[Layer]:
    if ctx.extra_outputs_used(node):
        raise Unsupported("its mask output is used")
    ratio = node.attrs.get("ratio", _scalar(ctx.const(node.inputs[1] if len(node.inputs) > 1 else None)))
    ratio = 0.5 if ratio is None else f32((ratio))
    return [Layer("", "dropout", {} if ratio == 0.5 else {"p": ratio}, [ctx.tensor(node.inputs[0])])]


def concat(node: Node, ctx: Context) -> list[Layer]:
    """``Concat``: ``concat``; with ``broadcast`` (:func:`.patterns.expand_concat`: an ``Expand`` of an
    input folded in) graphc's ``broadcast: true``."""
    refs = [ctx.tensor(i) for i in node.inputs]
    rank = ctx.rank(node.inputs[0])
    axis = node.attrs.get("axis", 1)
    axis = axis % rank if rank else axis
    if len(refs) == 1:
        return [Layer("", "alias", {}, refs)]
    return [Layer("", "concat", {**({} if axis == 1 else {"axis": axis}), **({"broadcast": True} if node.attrs.get("broadcast") else {})}, refs)]


def expand(node: Node, ctx: Context) -> list[Layer]:
    """``Expand`` is taken only folded into the ``Concat`` it feeds (:func:`.patterns.expand_concat`)."""
    raise Unsupported("an Expand other than of a Concat's input repeating its size-1 dims (graphc's concat with broadcast: true)")


def where(node: Node, ctx: Context) -> list[Layer]:
    """``Where(future, fill, x)`` with the constant ``[j > i]`` of a (…, T, T) tensor and one number
    (or ``Where([j ≤ i], x, fill)``, PyTorch's ``masked_fill`` of a lower-triangular mask): the causal
    mask of attention scores, ``causal_mask``. ONNX's −∞ fill is the lowest float32 (a spec's numbers
    are finite; the softmax that follows gives either weight 0)."""
    cond, a, b = (ctx.const(i) for i in node.inputs)
    shape = ctx.shape(node.outputs[0]) or ctx.shape(node.inputs[2 if a is not None else 1])
    t = shape[-1] if shape and len(shape) >= 2 and shape[-1] == shape[-2] else None
    future = None if not isinstance(t, int) or cond is None or cond.dtype != bool or cond.shape[-2:] != (t, t) else \
        np.triu(np.ones((t, t), bool), k=1)
    if future is None or cond.size != t * t:
        raise Unsupported("a where other than the causal mask (a constant [key j > query i] over square (…, T, T) scores)")
    plane = cond.reshape(t, t)
    if np.array_equal(plane, future) and _scalar(a) is not None and b is None:
        fill, x = _scalar(a), node.inputs[2]
    elif np.array_equal(plane, ~future) and _scalar(b) is not None and a is None:
        fill, x = _scalar(b), node.inputs[1]
    else:
        raise Unsupported("a where other than the causal mask (a constant [key j > query i] over square (…, T, T) scores)")
    fill = f32(max(fill, float(np.finfo(np.float32).min)))
    from ..ops.shape_ops import MASK_FILL

    return [Layer("", "causal_mask", {} if fill == f32(MASK_FILL) else {"fill": fill}, [ctx.tensor(x)])]


def _reshape_target(node: Node, ctx: Context) -> list[int]:
    """The target of a reshape-like node as ONNX Reshape numbers (0 copies, −1 is inferred)."""
    x, y = ctx.shape(node.inputs[0]), ctx.shape(node.outputs[0])
    if node.op_type == "Reshape":
        target = ctx.const(node.inputs[1])
        if target is None:
            raise Unsupported("its target shape is computed at run time")
        target = [int(v) for v in target]
        if node.attrs.get("allowzero", 0) and 0 in target:
            raise Unsupported("allowzero with a 0 in the shape")
        return target
    if y is None or x is None:
        raise Unsupported("shape inference does not know its shapes")
    out = [d if isinstance(d, int) else 0 if i < len(x) and x[i] == d else -1 for i, d in enumerate(y)]
    if out.count(-1) > 1 or None in y:
        raise Unsupported("more than one unknown dim in its output")
    return out


def reshape(node: Node, ctx: Context) -> list[Layer]:
    x, y = ctx.shape(node.inputs[0]), ctx.shape(node.outputs[0])
    ref = [ctx.tensor(node.inputs[0])]
    if node.op_type == "Flatten":
        axis = node.attrs.get("axis", 1)
        axis = axis % len(x) if x and axis < 0 else axis
        if axis == 0:
            return [Layer("", "reshape", {"shape": [1, -1]}, ref)]
        return [Layer("", "flatten", {} if axis == 1 else {"axis": axis}, ref)]
    target = _reshape_target(node, ctx)
    # PyTorch's x.view(x.size(0), -1) and friends: keep the batch, flatten the rest
    if x is not None and y is not None and len(x) >= 2 and len(y) == 2 and y[0] == x[0] and x[0] is not None and target[0] in (0, x[0]):
        if target[1] == -1 or all(isinstance(d, int) for d in x[1:]) and target[1] == math.prod(x[1:]):
            return [Layer("", "flatten", {}, ref)]
    return [Layer("", "reshape", {"shape": target}, ref)]


def transpose(node: Node, ctx: Context) -> list[Layer]:
    rank = ctx.rank(node.inputs[0])
    perm = node.attrs.get("perm")
    if perm is None:
        if rank is None:
            raise Unsupported("no perm and an unknown rank")
        perm = list(range(rank))[::-1]
    return [Layer("", "transpose", {"perm": [int(p) for p in perm]}, [ctx.tensor(node.inputs[0])])]


def layernorm(node: Node, ctx: Context) -> list[Layer]:
    rank = ctx.rank(node.inputs[0])
    axis = node.attrs.get("axis", -1)
    if rank is None or axis % rank != rank - 1:
        raise Unsupported(f"normalisation over axes from {axis} on: graphc's layernorm normalises the last axis")
    width = ctx.shape(node.inputs[0])[-1]
    gamma = ctx.const(node.inputs[1])
    beta = ctx.const(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else np.zeros(width, np.float32)
    if gamma is None or beta is None:
        raise Unsupported("its scale or bias is computed, not a constant")
    eps = f32((node.attrs.get("epsilon", 1e-5)))
    attrs = {} if eps == f32((1e-5)) else {"eps": eps}
    params = {"gamma": np.broadcast_to(gamma.reshape(-1), (width,)).astype(np.float32, copy=False),
              "beta": np.broadcast_to(beta.reshape(-1), (width,)).astype(np.float32, copy=False)}
    return [Layer("", "layernorm", attrs, [ctx.tensor(node.inputs[0])], params)]


def pad(node: Node, ctx: Context) -> list[Layer]:
    a = node.attrs
    mode = a.get("mode", "constant")
    if mode not in ("constant", "reflect", "edge"):
        raise Unsupported(f"mode '{mode}'")
    pads = a.get("pads", ctx.const(node.inputs[1]) if len(node.inputs) > 1 else None)
    value = a.get("value", _scalar(ctx.const(node.inputs[2] if len(node.inputs) > 2 else None)))
    if pads is None or len(node.inputs) > 3 and node.inputs[3]:
        raise Unsupported("computed pads or an axes input")
    pads = [int(p) for p in pads]
    if len(pads) != 8 or any(pads[i] for i in (0, 1, 4, 5)) or any(p < 0 for p in pads):
        raise Unsupported("padding other than the two spatial dims of an NCHW image (or a negative pad)")
    attrs = {"padding": _padding([pads[2], pads[3], pads[6], pads[7]])}
    if mode != "constant":
        attrs["mode"] = mode
    if value:
        attrs["value"] = f32((value))
    return [Layer("", "pad", attrs, [ctx.tensor(node.inputs[0])])]


def _slices(node: Node, ctx: Context, ranges) -> list[Layer]:
    """One ``slice`` layer per (axis, start, end), chained."""
    layers = []
    for axis, start, end in ranges:
        layers.append(Layer("", "slice", {"axis": axis, "start": start, "end": end}, [ctx.tensor(node.inputs[0]) if not layers else None]))
    return layers or [Layer("", "alias", {}, [ctx.tensor(node.inputs[0])])]


def _clamp(value: int, size: int) -> int:
    return max(0, min(size, value + size if value < 0 else value))


def slice_(node: Node, ctx: Context) -> list[Layer]:
    x = ctx.shape(node.inputs[0])
    a = node.attrs
    if "starts" in a:
        starts, ends, axes, steps = a["starts"], a["ends"], a.get("axes"), None
    else:
        starts, ends, axes, steps = (ctx.const(node.inputs[i]) if len(node.inputs) > i and node.inputs[i] else None for i in range(1, 5))
        if starts is None or ends is None or any(len(node.inputs) > i and node.inputs[i] and ctx.const(node.inputs[i]) is None for i in (3, 4)):
            raise Unsupported("computed starts, ends, axes or steps")
    if x is None:
        raise Unsupported("its input's shape is unknown")
    axes = list(range(len(starts))) if axes is None else [int(v) % len(x) for v in axes]
    if steps is not None and any(int(s) != 1 for s in steps):
        raise Unsupported("a step other than 1")
    ranges = []
    for axis, s, e in zip(axes, starts, ends):
        size = x[axis]
        if not isinstance(size, int):
            raise Unsupported(f"slicing the symbolic dim {size}")
        start, end = _clamp(int(s), size), _clamp(min(int(e), INT64_MAX), size)
        if start >= end:
            raise Unsupported("an empty slice")
        if (start, end) != (0, size):
            ranges.append((axis, start, end))
    return _slices(node, ctx, ranges)


def split(node: Node, ctx: Context) -> list[Layer]:
    """``Split`` into k outputs: k ``slice`` layers of its input (``split_outputs`` names them)."""
    x = ctx.shape(node.inputs[0])
    if x is None:
        raise Unsupported("its input's shape is unknown")
    axis = node.attrs.get("axis", 0) % len(x)
    size = x[axis]
    if not isinstance(size, int):
        raise Unsupported(f"splitting the symbolic dim {size}")
    sizes = node.attrs.get("split")
    if sizes is None and len(node.inputs) > 1 and node.inputs[1]:
        sizes = ctx.const(node.inputs[1])
        if sizes is None:
            raise Unsupported("computed split sizes")
    k = len(node.outputs)
    if sizes is None:
        part = -(-size // k)
        sizes = [min(part, size - i * part) for i in range(k)]
    if any(int(n) <= 0 for n in sizes):
        raise Unsupported("a split size of 0 (graphc's tensors are never empty)")
    ref = ctx.tensor(node.inputs[0])
    layers, start = [], 0
    for n in sizes:
        layers.append(Layer("", "slice", {"axis": axis, "start": start, "end": start + int(n)}, [ref]))
        start += int(n)
    return layers


def gather(node: Node, ctx: Context) -> list[Layer]:
    """``Gather(W, indices)`` of a constant (num_embeddings, dim) table along axis 0: ``embedding``."""
    w = ctx.const(node.inputs[0])
    if w is None or w.ndim != 2 or node.attrs.get("axis", 0) != 0 or ctx.const(node.inputs[1]) is not None:
        raise Unsupported("a gather other than rows of a constant (num_embeddings, dim) table by computed indices (graphc's embedding)")
    return [Layer("", "embedding", {"num_embeddings": int(w.shape[0]), "dim": int(w.shape[1])}, [ctx.tensor(node.inputs[1])],
                  {"weight": w.astype(np.float32, copy=False)})]


def groupnorm(node: Node, ctx: Context) -> list[Layer]:
    """``GroupNormalization``: before opset 21 its scale and bias are per group (each group's value
    stands for its C/G channels), from 21 per channel, as graphc's ``groupnorm``."""
    shape = ctx.shape(node.inputs[0])
    groups = int(node.attrs["num_groups"])
    scale, bias = ctx.const(node.inputs[1]), ctx.const(node.inputs[2])
    if shape is None or not isinstance(shape[1], int) or scale is None or bias is None:
        raise Unsupported("computed scale or bias, or unknown channels")
    c = shape[1]
    if scale.size == groups and c != groups:
        scale, bias = np.repeat(scale.reshape(-1), c // groups), np.repeat(bias.reshape(-1), c // groups)
    eps = f32(node.attrs.get("epsilon", 1e-5))
    attrs = {"groups": groups, **({} if eps == f32(1e-5) else {"eps": eps})}
    return [Layer("", "groupnorm", attrs, [ctx.tensor(node.inputs[0])],
                  {"gamma": scale.astype(np.float32).reshape(-1), "beta": bias.astype(np.float32).reshape(-1)})]


def resize(node: Node, ctx: Context) -> list[Layer]:
    """``Resize``/``Upsample`` of an NCHW image by one integer factor: ``upsample`` (nearest, or
    linear with half-pixel centres as graphc's bilinear)."""
    a = node.attrs
    x, y = ctx.shape(node.inputs[0]), ctx.shape(node.outputs[0])
    if x is None or y is None or len(x) != 4 or not all(isinstance(d, int) for d in (x[2], x[3], y[2], y[3])):
        raise Unsupported("an upsampling of other than an NCHW image of known size")
    if y[2] % x[2] or y[3] % x[3] or y[2] // x[2] != y[3] // x[3] or y[:2] != x[:2] or y[2] == x[2]:
        raise Unsupported("a resize other than one integer factor on H and W")
    mode = a.get("mode", "nearest")
    transform = a.get("coordinate_transformation_mode", "half_pixel")
    if mode == "nearest" and (transform, a.get("nearest_mode", "round_prefer_floor")) not in (
            ("asymmetric", "floor"), ("half_pixel", "round_prefer_floor"), ("pytorch_half_pixel", "round_prefer_floor")):
        raise Unsupported(f"nearest with {transform} and {a.get('nearest_mode')}")
    if mode == "linear" and transform not in ("half_pixel", "pytorch_half_pixel"):
        raise Unsupported(f"linear with {transform} (graphc's bilinear has half-pixel centres)")
    if mode not in ("nearest", "linear") or a.get("antialias", 0):
        raise Unsupported(f"mode {mode}")
    attrs = {"scale": y[2] // x[2], **({"mode": "bilinear"} if mode == "linear" else {})}
    return [Layer("", "upsample", attrs, [ctx.tensor(node.inputs[0])])]


def identity(node: Node, ctx: Context) -> list[Layer]:
    return [Layer("", "alias", {}, [ctx.tensor(node.inputs[0])])]


def _extra_ops() -> dict:
    """Converters for ops that newer graphc versions have (looked up in the registry)."""
    from ..ops import BY_KIND

    out = {}
    if "lrn" in BY_KIND:
        def lrn(node: Node, ctx: Context) -> list[Layer]:
            a = node.attrs
            fields = BY_KIND["lrn"].model_fields
            attrs = {"size": int(a["size"]), "alpha": f32((a.get("alpha", 1e-4))), "beta": f32((a.get("beta", 0.75))),
                     "bias": f32((a.get("bias", 1.0)))}
            return [Layer("", "lrn", {k: v for k, v in attrs.items() if k in fields}, [ctx.tensor(node.inputs[0])])]
        out["LRN"] = lrn
    return out


CONVERTERS = {
    "Conv": conv, "ConvTranspose": conv, "MaxPool": pool, "AveragePool": pool, "GlobalAveragePool": reduce_pool,
    "GlobalMaxPool": reduce_pool, "ReduceMean": reduce_pool, "ReduceMax": reduce_pool, "BatchNormalization": batchnorm, DENSE: dense, "MatMul": matmul, "Gemm": matmul,
    "Add": arithmetic, "Sub": arithmetic, "Mul": arithmetic, "Div": arithmetic, "Sum": total,
    "Relu": activation, "Sigmoid": activation, "Tanh": activation, "HardSwish": activation, "Softplus": activation,
    "LeakyRelu": activation, "Elu": activation, "HardSigmoid": activation, "Gelu": activation, "Softmax": activation,
    "LogSoftmax": activation, "PRelu": activation, "Clip": activation, "Dropout": dropout, "Concat": concat,
    "Flatten": reshape, "Reshape": reshape, "Squeeze": reshape, "Unsqueeze": reshape, "Transpose": transpose,
    "LayerNormalization": layernorm, "Pad": pad, "Slice": slice_, "Split": split, "Identity": identity,
    "ReduceSum": reduce_pool, "Max": bound, "Min": bound, "Gather": gather, "GroupNormalization": groupnorm, "Resize": resize, "Upsample": resize,
    "Where": where, "Expand": expand,
}


def converters() -> dict:
    return {**CONVERTERS, **_extra_ops()}


# ── YAML ────────────────────────────────────────────────────────────────────────────────────────

_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-/]*$")
_WORDS = {"null", "true", "false", "nan", "inf"}  # graphc reads YAML 1.2: yes, no, on, off are strings


def scalar(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        short = str(np.float32(value))
        text = short if f32((short)) == f32((value)) and f32((value)) == value else repr(value)
        return text if any(c in text for c in ".e") else text + ".0"
    if value is None:
        return "null"
    text = str(value)
    if _PLAIN.match(text) and text.lower() not in _WORDS:
        return text
    return "'" + text.replace("'", "''") + "'"


def flow(value) -> str:
    """``value`` in YAML flow style: ``{name: conv1, op: conv2d, kernel: [3, 5]}``."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{scalar(k)}: {flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(flow(v) for v in value) + "]"
    return scalar(value)


def spec_text(spec: dict, header: str) -> str:
    """The spec as YAML: top-level keys in block style, each layer one flow-style line."""
    lines = [f"# {line}" for line in header.splitlines()]
    for key, value in spec.items():
        if key == "layers":
            lines.append("layers:")
            lines += [f"  - {flow(layer)}" for layer in value]
        elif key == "inputs":
            lines.append("inputs:")
            lines += [f"  {scalar(k)}: {flow(v)}" for k, v in value.items()]
        else:
            lines.append(f"{key}: {flow(value)}")
    return "\n".join(lines) + "\n"
