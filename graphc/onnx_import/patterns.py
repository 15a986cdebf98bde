"""Rewrites of a folded ONNX graph into the forms one graphc layer stands for.

Exporters spell one layer as several nodes; each rewrite here replaces such a group with one node,
so that ``to_spec`` maps node to layer one to one:

- ``Conv``/``ConvTranspose`` followed by ``Add`` of a per-channel constant: the convolution with its bias;
- ``MatMul(x, W)`` (+ ``Add`` of a constant over the last axis) and ``Gemm(x, B, C)`` with constant
  weights: ``Dense`` (graphc's ``dense``, ``W`` as (in, out); ``Gemm``'s ``alpha``, ``beta`` and
  ``transB`` folded into the arrays);
- ``BatchNormalization`` followed by a per-channel ``Mul`` and/or ``Add`` (Caffe2's scale layer,
  in DenseNet and Inception v2): one batch normalisation with ``γ' = γ·s`` and ``β' = β·s + b``;
- PyTorch's exact GELU, ``x · 0.5 · (1 + erf(x / √2))`` (``Div``/``Mul``, ``Erf``, ``Add``, two
  ``Mul`` in either order): ``Gelu``;
- graphc's 1-D pool (``Unsqueeze``, a 1×k pool, ``Squeeze``): the 1-D pool;
- the decomposed layer norm ``(x − mean(x)) / √(mean((x − mean(x))²) + ε) · γ + β`` over the last
  axis (``ReduceMean``, ``Sub``, ``Pow``, ``ReduceMean``, ``Add``, ``Sqrt``, ``Div``, ``Mul``, ``Add``):
  ``LayerNormalization``;
- ``Min(Max(x, lo), hi)`` with scalar bounds: ``Clip``;
- ``Clip(α·x + β, 0, 1)``: ``HardSigmoid``; ``x · HardSigmoid(x; 1/6, ½)`` and ``x · Clip(x + 3, 0, 6) / 6``: ``HardSwish``;
- ``Concat`` of an ``Expand`` repeating size-1 dims other than the axis: a broadcasting ``Concat``.

A group is rewritten only when its inner values feed nothing else and are not graph outputs.
"""

from __future__ import annotations

import math

import numpy as np

from ..tensor import free_name
from .fold import Folded, Node

DENSE = "graphc.Dense"  # a node type of this module's own: dense's (x, W (in, out), b?)


class Uses:
    """Who produces and who reads each value of a folded graph."""

    def __init__(self, f: Folded):
        self.f = f
        self.producer = {o: n for n in f.nodes for o in n.outputs}
        self.readers: dict[str, list[Node]] = {}
        for n in f.nodes:
            for i in dict.fromkeys(n.inputs):  # Mul(d, d) reads d once
                self.readers.setdefault(i, []).append(n)

    def only_reader(self, value: str) -> Node | None:
        """The one node reading ``value``, if it is read once and is no graph output."""
        readers = self.readers.get(value, [])
        return readers[0] if len(readers) == 1 and value not in self.f.outputs else None

    def private(self, value: str) -> bool:
        return len(self.readers.get(value, [])) <= 1 and value not in self.f.outputs

    def const(self, name: str):
        return self.f.consts.get(name)

    def rank(self, name: str) -> int | None:
        shape = self.f.shapes.get(name)
        return None if shape is None else len(shape)


def _replace(f: Folded, group: list[Node], new: Node) -> None:
    """Put ``new`` where the last node of ``group`` was and drop the group."""
    ids = {id(n) for n in group}
    last = max(i for i, n in enumerate(f.nodes) if id(n) in ids)
    f.nodes[last] = new
    f.nodes[:] = [n for n in f.nodes if id(n) not in ids or n is new]


def _other(node: Node, value: str) -> str:
    a, b = node.inputs[:2]
    return b if a == value else a


def per_channel(c: np.ndarray | None, rank: int | None, channels: int) -> np.ndarray | None:
    """``c`` as a (channels,) vector if it broadcasts over axis 1 of a rank-``rank`` tensor only."""
    if c is None or rank is None or c.ndim > rank or c.dtype.kind != "f":
        return None
    shape = (1,) * (rank - c.ndim) + c.shape
    if rank < 2 or any(s != 1 for i, s in enumerate(shape) if i != 1) or shape[1] not in (1, channels):
        return None
    return np.broadcast_to(c.reshape(-1), (channels,)).astype(np.float32, copy=False)


def last_axis(c: np.ndarray | None, units: int) -> np.ndarray | None:
    """``c`` as a (units,) vector if it broadcasts over the last axis only."""
    if c is None or c.dtype.kind != "f" or any(s != 1 for s in c.shape[:-1]) or (c.ndim and c.shape[-1] not in (1, units)):
        return None
    return np.broadcast_to(c.reshape(-1), (units,)).astype(np.float32, copy=False)


def _new_const(f: Folded, base: str, value: np.ndarray) -> str:
    name = free_name(base, f.consts)
    f.consts[name] = np.ascontiguousarray(value, dtype=np.float32)
    return name


def conv_bias(f: Folded) -> None:
    u = Uses(f)
    for conv in [n for n in f.nodes if n.op_type in ("Conv", "ConvTranspose")]:
        add = u.only_reader(conv.outputs[0])
        w = u.const(conv.inputs[1]) if len(conv.inputs) > 1 else None
        if add is None or add.op_type != "Add" or w is None:
            continue
        channels = w.shape[0] if conv.op_type == "Conv" else w.shape[1] * conv.attrs.get("group", 1)
        b = per_channel(u.const(_other(add, conv.outputs[0])), u.rank(conv.outputs[0]) or w.ndim, channels)
        if b is None:
            continue
        if len(conv.inputs) > 2 and conv.inputs[2]:
            b = b + u.const(conv.inputs[2])
        fused = Node(conv.op_type, add.name or conv.name, [conv.inputs[0], conv.inputs[1], _new_const(f, f"{conv.label}/bias", b)],
                     add.outputs, conv.attrs)
        _replace(f, [conv, add], fused)
        u = Uses(f)


def dense(f: Folded) -> None:
    u = Uses(f)
    for node in list(f.nodes):
        if node.op_type == "MatMul" and u.const(node.inputs[1]) is not None and u.const(node.inputs[0]) is None:
            w = u.const(node.inputs[1])
            if w.ndim != 2 or w.dtype.kind != "f":
                continue
            add = u.only_reader(node.outputs[0])
            b = last_axis(u.const(_other(add, node.outputs[0])), w.shape[1]) if add is not None and add.op_type == "Add" else None
            group = [node, add] if b is not None else [node]
            last = group[-1]
            inputs = [node.inputs[0], node.inputs[1]] + ([_new_const(f, f"{last.label}/bias", b)] if b is not None else [])
            _replace(f, group, Node(DENSE, last.name or node.name, inputs, last.outputs, {}))
            u = Uses(f)
        elif node.op_type == "Gemm" and u.const(node.inputs[1]) is not None and not node.attrs.get("transA", 0):
            b_mat = u.const(node.inputs[1]).astype(np.float32, copy=False)
            w = (b_mat.T if node.attrs.get("transB", 0) else b_mat) * np.float32(node.attrs.get("alpha", 1.0))
            inputs = [node.inputs[0], _new_const(f, f"{node.label}/weight", w)]
            if len(node.inputs) > 2 and node.inputs[2]:
                c = u.const(node.inputs[2])
                bias = last_axis(c, w.shape[1])
                if bias is None:
                    continue
                inputs.append(_new_const(f, f"{node.label}/bias", bias * np.float32(node.attrs.get("beta", 1.0))))
            _replace(f, [node], Node(DENSE, node.name, inputs, node.outputs, {}))
            u = Uses(f)


def batchnorm_affine(f: Folded) -> None:
    u = Uses(f)
    for bn in [n for n in f.nodes if n.op_type == "BatchNormalization"]:
        if len(bn.outputs) > 1 and any(bn.outputs[1:]) or any(u.const(i) is None for i in bn.inputs[1:5]):
            continue
        gamma, beta = u.const(bn.inputs[1]).astype(np.float32, copy=False), u.const(bn.inputs[2]).astype(np.float32, copy=False)
        rank, out, group = u.rank(bn.outputs[0]), bn.outputs[0], [bn]
        while (nxt := u.only_reader(out)) is not None and nxt.op_type in ("Mul", "Add"):
            c = per_channel(u.const(_other(nxt, out)), rank, gamma.shape[0])
            if c is None:
                break
            if nxt.op_type == "Mul":
                gamma, beta = gamma * c, beta * c
            else:
                beta = beta + c
            group.append(nxt)
            out = nxt.outputs[0]
        if len(group) == 1:
            continue
        last = group[-1]
        inputs = [bn.inputs[0], _new_const(f, f"{bn.label}/scale", gamma), _new_const(f, f"{bn.label}/bias", beta), bn.inputs[3], bn.inputs[4]]
        _replace(f, group, Node("BatchNormalization", bn.name or last.name, inputs, last.outputs, bn.attrs))
        u = Uses(f)


def _scalar(u: Uses, node: Node, value: str) -> float | None:
    c = u.const(_other(node, value))
    return float(c.reshape(-1)[0]) if c is not None and c.size == 1 else None


def gelu(f: Folded) -> None:
    """``x·0.5·(1 + erf(x/√2))``: from each ``Erf`` back to ``x`` and on to the last ``Mul``."""
    u = Uses(f)
    for erf in [n for n in f.nodes if n.op_type == "Erf"]:
        pre = u.producer.get(erf.inputs[0])
        if pre is None or pre.op_type not in ("Div", "Mul") or not u.private(pre.outputs[0]) or u.const(pre.inputs[0]) is not None:
            continue
        x, k = pre.inputs[0], _scalar(u, pre, pre.inputs[0])
        if k is None or not math.isclose(k if pre.op_type == "Div" else 1 / k, math.sqrt(2), rel_tol=1e-4):
            continue
        add = u.only_reader(erf.outputs[0])
        if add is None or add.op_type != "Add" or not math.isclose(_scalar(u, add, erf.outputs[0]) or 0, 1.0, rel_tol=1e-6):
            continue
        group, value, factor, seen_x = [pre, erf, add], add.outputs[0], 1.0, False
        half_x = None  # PyTorch may compute 0.5·x first: Mul(x, 0.5) feeding the product
        while (m := u.only_reader(value) if len(group) < 6 else None) is not None and m.op_type == "Mul":
            other = _other(m, value)
            s = _scalar(u, m, value)
            if s is not None:
                factor *= s
            elif other == x and not seen_x:
                seen_x = True
            elif (h := u.producer.get(other)) is not None and h.op_type == "Mul" and x in h.inputs and not seen_x and u.private(other):
                half_x = h
                s2 = _scalar(u, h, x)
                if s2 is None:
                    break
                factor *= s2
                seen_x = True
            else:
                break
            group.append(m)
            value = m.outputs[0]
            if seen_x and math.isclose(factor, 0.5, rel_tol=1e-6):
                break
        if not (seen_x and math.isclose(factor, 0.5, rel_tol=1e-6)):
            continue
        group += [half_x] if half_x is not None else []
        _replace(f, group, Node("Gelu", group[-1 if half_x is None else -2].name, [x], [value], {"approximate": "none"}))
        u = Uses(f)


def _reduce_axes(node: Node, u: Uses) -> list[int] | None:
    axes = node.attrs.get("axes")
    if axes is None and len(node.inputs) > 1 and node.inputs[1]:
        c = u.const(node.inputs[1])
        axes = None if c is None else [int(a) for a in c.reshape(-1)]
    return list(axes) if axes is not None else None


def layernorm(f: Folded) -> None:
    """The decomposed layer norm over the last axis, from each ``Sub(x, ReduceMean(x))``."""
    u = Uses(f)
    for sub in [n for n in f.nodes if n.op_type == "Sub"]:
        x, mean_name = sub.inputs[:2]
        mean = u.producer.get(mean_name)
        rank = u.rank(x)
        if mean is None or mean.op_type != "ReduceMean" or mean.inputs[0] != x or rank is None or not u.private(mean_name):
            continue
        if _reduce_axes(mean, u) not in ([-1], [rank - 1]) or not mean.attrs.get("keepdims", 1):
            continue
        d = sub.outputs[0]
        readers = u.readers.get(d, [])
        pow_ = next((r for r in readers if r.op_type == "Pow" and r.inputs[0] == d and _scalar(u, r, d) == 2.0), None)
        if pow_ is None:
            pow_ = next((r for r in readers if r.op_type == "Mul" and r.inputs == [d, d]), None)
        div = next((r for r in readers if r.op_type == "Div" and r.inputs[0] == d), None)
        if pow_ is None or div is None or len(readers) != 2 or d in f.outputs:
            continue
        var = u.only_reader(pow_.outputs[0])
        if var is None or var.op_type != "ReduceMean" or _reduce_axes(var, u) not in ([-1], [rank - 1]):
            continue
        add = u.only_reader(var.outputs[0])
        eps = _scalar(u, add, var.outputs[0]) if add is not None and add.op_type == "Add" else None
        sqrt = u.only_reader(add.outputs[0]) if eps is not None else None
        if sqrt is None or sqrt.op_type != "Sqrt" or u.only_reader(sqrt.outputs[0]) is not div:
            continue
        group, out = [mean, sub, pow_, var, add, sqrt, div], div.outputs[0]
        width = (f.shapes.get(x) or (None,))[-1]
        gamma = beta = None
        if isinstance(width, int) and (mul := u.only_reader(out)) is not None and mul.op_type == "Mul":
            gamma = last_axis(u.const(_other(mul, out)), width)
            if gamma is not None:
                group.append(mul)
                out = mul.outputs[0]
                if (plus := u.only_reader(out)) is not None and plus.op_type == "Add":
                    beta = last_axis(u.const(_other(plus, out)), width)
                    if beta is not None:
                        group.append(plus)
                        out = plus.outputs[0]
        if not isinstance(width, int):
            continue
        label = group[-1].name or sub.name
        scale = _new_const(f, f"{label}/scale", gamma if gamma is not None else np.ones(width, np.float32))
        bias = _new_const(f, f"{label}/bias", beta if beta is not None else np.zeros(width, np.float32))
        _replace(f, group, Node("LayerNormalization", label, [x, scale, bias], [out], {"axis": -1, "epsilon": eps}))
        u = Uses(f)


def _axes(node: Node, u: Uses) -> list[int] | None:
    if "axes" in node.attrs:
        return list(node.attrs["axes"])
    c = u.const(node.inputs[1]) if len(node.inputs) > 1 and node.inputs[1] else None
    return None if c is None else [int(a) for a in c.reshape(-1)]


def planar_pool(f: Folded) -> None:
    """``Unsqueeze(x, [2])`` → a 1×k ``MaxPool``/``AveragePool`` → ``Squeeze([2])`` (graphc's own
    lowering of a 1-D pool over (N, C, L)): the 1-D pool itself."""
    u = Uses(f)
    for pool in [n for n in f.nodes if n.op_type in ("MaxPool", "AveragePool") and len(n.attrs.get("kernel_shape", ())) == 2]:
        up, down = u.producer.get(pool.inputs[0]), u.only_reader(pool.outputs[0])
        a = pool.attrs
        if (up is None or up.op_type != "Unsqueeze" or _axes(up, u) != [2] or not u.private(up.outputs[0]) or down is None
                or down.op_type != "Squeeze" or _axes(down, u) != [2] or a["kernel_shape"][0] != 1 or u.rank(up.inputs[0]) != 3
                or a.get("strides", [1, 1])[0] != 1 or any(a.get("pads", [0, 0, 0, 0])[i] for i in (0, 2)) or pool.outputs[1:]):
            continue
        pads = a.get("pads", [0, 0, 0, 0])
        attrs = {**a, "kernel_shape": [a["kernel_shape"][1]], "strides": [a.get("strides", [1, 1])[1]], "pads": [pads[1], pads[3]]}
        if "dilations" in a:
            attrs["dilations"] = [a["dilations"][1]]
        _replace(f, [up, pool, down], Node(pool.op_type, down.name or pool.name, [up.inputs[0]], down.outputs, attrs))
        u = Uses(f)


def clip_pair(f: Folded) -> None:
    """``Min(Max(x, lo), hi)`` (or ``Max(Min(x, hi), lo)``) with scalar bounds, graphc's own lowering
    of relu6 and clip: one ``Clip``."""
    u = Uses(f)
    for first in [n for n in f.nodes if n.op_type in ("Max", "Min") and len(n.inputs) == 2]:
        second = u.only_reader(first.outputs[0])
        if second is None or second.op_type not in ("Max", "Min") or second.op_type == first.op_type or len(second.inputs) != 2:
            continue
        a, b = _scalar(u, first, first.inputs[0] if u.const(first.inputs[1]) is not None else first.inputs[1]), _scalar(u, second, first.outputs[0])
        x = first.inputs[0] if u.const(first.inputs[1]) is not None else first.inputs[1]
        if a is None or b is None or u.const(x) is not None:
            continue
        lo, hi = (a, b) if first.op_type == "Max" else (b, a)
        bounds = [_new_const(f, f"{second.label}/min", np.float32(lo)), _new_const(f, f"{second.label}/max", np.float32(hi))]
        _replace(f, [first, second], Node("Clip", second.name or first.name, [x, *bounds], second.outputs, {}))
        u = Uses(f)


def _expanded(f: Folded, ex: Node) -> tuple | None:
    """The shape ``Expand`` makes of its input and a folded target (sizes and symbolic dims, which shape
    inference leaves unknown): NumPy broadcasting, a 1 taking the other side's size."""
    before = f.shapes.get(ex.inputs[0])
    target = f.symbolic.get(ex.inputs[1])
    if target is None and ex.inputs[1] in f.consts:
        target = [int(d) for d in f.consts[ex.inputs[1]].reshape(-1)]
    if before is None or target is None or len(target) != len(before):
        return None
    if any(b != 1 and t != 1 and b != t for b, t in zip(before, target)):
        return None
    return tuple(t if b == 1 else b for b, t in zip(before, target))


def expand_concat(f: Folded) -> None:
    """``Concat`` of an ``Expand`` that only repeats size-1 dims other than the axis (graphc's and
    PyTorch's ``cat([class_token.expand(N, −1, −1), x], 1)``): the concat of the unexpanded input with
    ``broadcast`` (graphc's ``concat`` with ``broadcast: true``)."""
    u = Uses(f)
    for cat in [n for n in f.nodes if n.op_type == "Concat"]:
        out = f.shapes.get(cat.outputs[0])
        if out is None:
            continue
        axis = cat.attrs.get("axis", 0) % len(out)
        inputs, group = list(cat.inputs), []
        for k, value in enumerate(cat.inputs):
            ex = u.producer.get(value)
            if ex is None or ex.op_type != "Expand" or not u.private(value) or ex in group:
                continue
            before, after = f.shapes.get(ex.inputs[0]), _expanded(f, ex) or f.shapes.get(value)
            if (before is None or after is None or len(before) != len(after) or before[axis] != after[axis]
                    or any(b not in (1, a) for b, a in zip(before, after))):
                continue
            inputs[k] = ex.inputs[0]
            group.append(ex)
        if group:
            _replace(f, [*group, cat], Node("Concat", cat.name, inputs, cat.outputs, {**cat.attrs, "broadcast": 1}))
            u = Uses(f)


def _clip_bounds(u: Uses, clip: Node) -> tuple[float | None, float | None]:
    """A ``Clip``'s constant (min, max): attributes before opset 11, else inputs (None: none, or computed)."""
    if "min" in clip.attrs or "max" in clip.attrs:
        return clip.attrs.get("min"), clip.attrs.get("max")
    bounds = [u.const(i) if len(clip.inputs) > k and i else None for k, i in enumerate(clip.inputs[1:3], 1)]
    return tuple(float(b.reshape(-1)[0]) if b is not None and b.size == 1 else None for b in bounds + [None] * (2 - len(bounds)))


def _close(a: float | None, b: float) -> bool:
    return a is not None and math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-7)


def hard_activations(f: Folded) -> None:
    """The decompositions of ``HardSigmoid`` and ``HardSwish``: ``Clip(α·x + β, 0, 1)`` (graphc's float64
    lowering) is ``HardSigmoid``; ``x · HardSigmoid(x; 1/6, ½)`` (PyTorch before opset 14, and ONNX's
    own definition) and ``x · Clip(x + 3, 0, 6) / 6`` (graphc's float64 lowering, TensorFlow's
    ``x·relu6(x + 3)/6``) are ``HardSwish``."""
    u = Uses(f)
    for clip in [n for n in f.nodes if n.op_type == "Clip"]:
        lo, hi = _clip_bounds(u, clip)
        add = u.producer.get(clip.inputs[0])
        if add is None or add.op_type != "Add" or not u.private(add.outputs[0]):
            continue
        if _close(lo, 0.0) and _close(hi, 1.0):  # α·x + β
            mul = next((p for i in add.inputs if (p := u.producer.get(i)) is not None and p.op_type == "Mul"), None)
            if mul is None or not u.private(mul.outputs[0]):
                continue
            beta, alpha = _scalar(u, add, mul.outputs[0]), None
            x = next((i for i in mul.inputs if u.const(i) is None), None)
            alpha = _scalar(u, mul, x) if x is not None else None
            if alpha is None or beta is None or alpha <= 0:
                continue
            _replace(f, [mul, add, clip], Node("HardSigmoid", clip.name, [x], clip.outputs, {"alpha": alpha, "beta": beta}))
        elif _close(lo, 0.0) and _close(hi, 6.0):  # x · Clip(x + 3, 0, 6) / 6
            x = next((i for i in add.inputs if u.const(i) is None), None)
            if x is None or not _close(_scalar(u, add, x), 3.0):
                continue
            mul = u.only_reader(clip.outputs[0])
            if mul is None or mul.op_type != "Mul" or _other(mul, clip.outputs[0]) != x:
                continue
            last = u.only_reader(mul.outputs[0])
            k = _scalar(u, last, mul.outputs[0]) if last is not None and last.op_type in ("Div", "Mul") and last.inputs[0] == mul.outputs[0] else None
            if k is None or not _close(k if last.op_type == "Div" else 1 / k, 6.0):
                continue
            _replace(f, [add, clip, mul, last], Node("HardSwish", last.name or mul.name, [x], last.outputs, {}))
        u = Uses(f)
    for hs in [n for n in f.nodes if n.op_type == "HardSigmoid"]:
        x = hs.inputs[0]
        mul = u.only_reader(hs.outputs[0])
        if (mul is None or mul.op_type != "Mul" or _other(mul, hs.outputs[0]) != x or not _close(hs.attrs.get("alpha", 0.2), 1 / 6)
                or not _close(hs.attrs.get("beta", 0.5), 0.5)):
            continue
        _replace(f, [hs, mul], Node("HardSwish", mul.name or hs.name, [x], mul.outputs, {}))
        u = Uses(f)


REWRITES = (gelu, layernorm, conv_bias, dense, batchnorm_affine, planar_pool, clip_pair, hard_activations, expand_concat)


def rewrite(f: Folded) -> Folded:
    """``f`` with every group of :data:`REWRITES` replaced (in place; returned for chaining)."""
    for step in REWRITES:
        step(f)
    return f
