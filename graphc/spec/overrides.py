"""``--set`` overrides: ``--set train.lr=3e-4`` assigns a value (read as a YAML scalar: ``1e-3`` is a
number, ``null`` is null) at a dotted path into a spec's data before it is validated; paths are checked
against the spec's structure (with did-you-mean), so a typo is an error, never a silently ignored key.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from ..errors import GraphcError, Loc, did_you_mean
from .models import LayerEntry


def parse_assignment(text: str) -> tuple[list[str], Any]:
    """``'train.lr=3e-4'`` → (``['train', 'lr']``, ``0.0003``); the value is read as YAML."""
    from .safe_yaml import load_yaml_text

    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise GraphcError(f"--set {text}: expected KEY=VALUE, for example --set train.lr=3e-4")
    path = key.strip().split(".")
    if any(not p for p in path):
        raise GraphcError(f"--set {text}: '{key}' is not a dotted path (empty part)")
    try:
        value = load_yaml_text(raw, f"--set {key}") if raw.strip() else None
    except GraphcError as e:
        raise GraphcError(f"--set {text}: cannot read the value: {e.diagnostics[0].message}") from None
    return path, _plain(value)


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _shape(annotation):
    """What a field holds, for walking ``--set`` paths: ``("model", M)``, ``("map", item)``,
    ``("list", item)`` or ``("leaf",)`` (through ``X | None`` and ``Annotated``)."""
    import typing

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return ("model", annotation)
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is dict:
        return ("map", _shape(args[1]) if len(args) == 2 else ("leaf",))
    if origin is list:
        return ("list", _shape(args[0]) if args else ("leaf",))
    for arg in args:  # unions and Annotated: the first structured alternative
        found = _shape(arg)
        if found[0] != "leaf":
            return found
    return ("leaf",)


def _allowed_keys(model: type[BaseModel], node) -> list[str]:
    from ..ops import BY_KIND

    keys = list(model.model_fields)
    if model is LayerEntry and isinstance(node, dict) and node.get("op") in BY_KIND:
        keys += list(BY_KIND[node["op"]].model_fields)  # a layer's other keys are its op's attributes
    if model.__name__ == "LossDecl" and isinstance(node, dict) and node.get("op") in BY_KIND:
        keys += list(BY_KIND[node["op"]].model_fields)
    return keys


def apply_set(data: dict, text: str) -> None:
    """Apply one ``--set PATH=VALUE`` to the loaded spec data, in place (see the module docstring).

    A step is a key that exists, or one the spec language allows there (so ``train.lr`` works in a
    spec without ``train:``); in a list (``layers``) a step is an index or a layer's name; in a
    mapping of names (``inputs``, ``train.init``) a name may contain dots (``train.init.fc1.weight``).
    """
    from .models import Spec

    path, value = parse_assignment(text)
    node, shape = data, ("model", Spec)
    i = 0
    while i < len(path):
        step = path[i]
        here = ".".join(path[:i]) or "the spec"
        if isinstance(node, list):
            index = _list_index(node, step)
            if index is None:
                names = [str(e["name"]) for e in node if isinstance(e, dict) and e.get("name") is not None]
                raise GraphcError(f"--set {text}: '{here}' has no entry '{step}'",
                                  hint=did_you_mean(step, names, "layer name") if names else f"use an index 0..{len(node) - 1}")
            key, item, used = index, shape[1] if shape[0] == "list" else ("leaf",), 1
        elif isinstance(node, dict):
            key, used = step, 1
            if shape[0] == "model":
                allowed = _allowed_keys(shape[1], node)
                if step not in node and step not in allowed:
                    raise GraphcError(f"--set {text}: '{'.'.join(path[:i + 1])}' is not a key of {here}",
                                      hint=did_you_mean(step, sorted(set(allowed) | {str(k) for k in node}), "key"))
                field = shape[1].model_fields.get(step)
                item = _shape(field.annotation) if field is not None else ("leaf",)
            elif shape[0] == "map":
                item = shape[1]
                key, used = _map_key(node, path[i:], item)
            elif step in node:
                item = ("leaf",)
            else:
                raise GraphcError(f"--set {text}: '{here}' has no key '{step}'", hint=did_you_mean(step, [str(k) for k in node], "key"))
        else:
            raise GraphcError(f"--set {text}: '{here}' is a value, not a mapping or list, so it has no '{step}'")
        i += used
        if i == len(path):
            node[key] = value
            if hasattr(node, "value_locs"):
                node.value_locs[key] = Loc(f"--set {text}", 1, len(".".join(path)) + 2)
            return
        if isinstance(node, dict) and node.get(key) is None:
            node[key] = [] if item[0] == "list" else {}
        node, shape = node[key], item


def _map_key(node: dict, rest: list[str], item) -> tuple[str, int]:
    """The entry of a mapping of names that a path's ``rest`` starts with, and how many steps it
    takes: the longest existing name; else a new name, up to a last step that is a field of the
    entry's model (``inputs.y.shape``: name ``y``; ``train.init.*.bias``: name ``*.bias``)."""
    for n in range(len(rest), 0, -1):
        if ".".join(rest[:n]) in node:
            return ".".join(rest[:n]), n
    if len(rest) >= 2 and item[0] == "model" and rest[-1] in item[1].model_fields:
        return ".".join(rest[:-1]), len(rest) - 1
    return ".".join(rest), len(rest)


def _list_index(items: list, step: str) -> int | None:
    if step.lstrip("-").isdigit():
        i = int(step)
        return i if -len(items) <= i < len(items) else None
    for i, e in enumerate(items):
        if isinstance(e, dict) and e.get("name") == step:
            return i
    return None
