"""The ops' documentation for ``graphc ops``, generated from the registry: each op's summary, formula,
attributes (type, default, bound and description, read from the same JSON Schema that ``graphc
schema`` prints), inputs, parameters and an example layer line."""

from __future__ import annotations

import inspect

from pydantic_core import PydanticUndefined

from ..errors import GraphcError, did_you_mean
from ..ops import BY_KIND, LAYER_KINDS, LOSS_KINDS
from ..ops.base import Op, Param, _Expansion
from ..tensor import fmt_shape
from .diagnostics import expected

_BOUNDS = (("minimum", "≥"), ("exclusiveMinimum", ">"), ("maximum", "≤"), ("exclusiveMaximum", "<"))


def bound(schema: dict) -> str:
    """The numeric limits anywhere in a property's schema (``≥ 1``; ``≥ 0, < 1``), or ``-``."""
    found: dict[str, object] = {}

    def walk(node):
        if isinstance(node, dict):
            for key, _ in _BOUNDS:
                if key in node:
                    found.setdefault(key, node[key])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return ", ".join(f"{sign} {found[key]}" for key, sign in _BOUNDS if key in found) or "-"


def attributes(cls: type[Op]) -> list[dict]:
    """One row per attribute: name, type, default (``required`` when there is none), bound, description."""
    properties = cls.model_json_schema().get("properties", {})
    rows = []
    for name, field in cls.model_fields.items():
        default = "required" if field.default is PydanticUndefined else _yaml(field.default)
        rows.append({"name": name, "type": expected(field.annotation), "default": default,
                     "bound": bound(properties.get(name, {})), "description": field.description or ""})
    return rows


def _yaml(value) -> str:
    """A value as it is written in a spec's flow style."""
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_yaml(v) for v in value) + "]"
    return str(value)


def example_line(cls: type[Op]) -> str:
    """The op's first sample as a spec line (its inputs named as in :func:`example_inputs`)."""
    attrs = cls.samples[0].attrs if cls.samples else {}
    body = ", ".join([f"op: {cls.kind}"] + [f"{k}: {_yaml(v)}" for k, v in attrs.items()])
    names = list(example_inputs(cls))
    if cls.is_loss:
        return f"loss: {{{body}, inputs: [{', '.join(names)}]}}"
    return f"- {{{body}" + (f", inputs: [{', '.join(names)}]}}" if len(names) > 1 else "}")


def example_inputs(cls: type[Op]) -> dict:
    """The example's input names and types: ``scores, labels`` for class losses, ``prediction, target``
    for the other losses, ``a, b, …`` for layers with several inputs, ``x`` for one."""
    types = cls.samples[0].inputs if cls.samples else ()
    if cls.is_loss and len(types) == 2:
        names = ("scores", "labels") if types[1].dtype == "int64" else ("prediction", "target")
    elif len(types) == 1:
        names = ("x",)
    else:
        names = tuple("abcdefgh"[: len(types)])
    return dict(zip(names, types))


class _Recorder(_Expansion):
    """An expansion that keeps the parameters' initialisers too."""

    def __init__(self, op, xs):
        self.created: dict[str, Param] = {}
        super().__init__(op, xs)

    def param(self, layer, pname, param):
        self.created[pname] = param
        return super().param(layer, pname, param)


def _inputs(cls: type[Op]) -> str:
    low, high = cls.arity
    if cls.is_loss:
        return f"{low}{'' if high == low else ' or more'} tensors named in the loss's 'inputs:' list"
    if (low, high) == (0, 0):
        return "none: the layer makes its tensor itself (write no 'inputs:'); other layers name it in theirs"
    if (low, high) == (1, 1):
        return "1 tensor: the previous layer's output, or the one named in 'inputs:'"
    count = f"{low}" if high == low else (f"{low} or more" if high is None else f"{low} to {high}")
    return f"{count} tensors{' (the first defaults to the previous layer)' if low == 1 else ''}, named in 'inputs:'"


def _example(cls: type[Op]) -> tuple[str, str]:
    """The example's parameters and its input → output shapes."""
    if not cls.samples:
        return "none", ""
    s = cls.samples[0]
    rec = _Recorder(cls.model_validate(s.attrs), list(s.inputs))
    made = ", ".join(f"{name} {fmt_shape(p.shape)} ({p.init.kind}{'' if p.trainable else ', not trained'})"
                     for name, p in rec.created.items())
    ins = ", ".join(f"{name} {fmt_shape(t.shape)}" for name, t in example_inputs(cls).items())
    return (f"{made} (in the example)" if made else "none"), f"{ins or 'no input'} → {fmt_shape(rec.output.shape)}"


def ops_list() -> str:
    """``graphc ops``: every layer and loss with its one-sentence summary."""
    lines = []
    for title, kinds in (("layers", LAYER_KINDS), ("losses", LOSS_KINDS)):
        lines.append(f"{title}:")
        width = max(len(k) for k in kinds)
        lines += [f"  {kind:<{width}}  {BY_KIND[kind].summary}" for kind in kinds]
    lines.append("'graphc ops KIND' shows one op: its formula, attributes, inputs, parameters and an example.")
    return "\n".join(lines)


def op_page(kind: str) -> str:
    """``graphc ops KIND``: one op in full."""
    kinds = LAYER_KINDS + LOSS_KINDS
    if kind not in kinds:
        raise GraphcError(f"unknown op '{kind}'", hint=did_you_mean(kind, kinds, "op") or "'graphc ops' lists the ops")
    cls = BY_KIND[kind]
    lines = [f"{kind}: {cls.summary}", "", inspect.cleandoc(cls.__doc__ or ""), ""]
    rows = attributes(cls)
    if rows:
        heads = {"name": "attribute", "type": "type", "default": "default", "bound": "bound", "description": "description"}
        widths = {k: max(len(heads[k]), *(len(r[k]) for r in rows)) for k in heads}
        lines.append("  ".join(f"{heads[k]:<{widths[k]}}" for k in heads).rstrip())
        lines += ["  ".join(f"{r[k]:<{widths[k]}}" for k in heads).rstrip() for r in rows]
    else:
        lines.append("attributes: none")
    made, shapes = _example(cls)
    lines += ["", f"inputs: {_inputs(cls)}", f"parameters: {made}", f"example: {example_line(cls)}",
              f"example shapes: {shapes}"]
    return "\n".join(lines)
