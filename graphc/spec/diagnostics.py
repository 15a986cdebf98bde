"""Turn pydantic validation errors into diagnostics at the YAML position of the offending value."""

from __future__ import annotations

import typing

from pydantic import BaseModel, ValidationError

from ..errors import Diagnostic, did_you_mean
from .safe_yaml import locate


def _shown(value) -> str:
    if isinstance(value, str):
        return f"the string '{value}'"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "null"
    return repr(value)


def expected(annotation) -> str:
    """Plain-words description of a field type: ``an integer or a list [h, w]``."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return expected(args[0])
    if origin in (typing.Union, getattr(__import__("types"), "UnionType")):
        parts = [expected(a) for a in args if a is not type(None)]
        text = " or ".join(dict.fromkeys(parts))
        return text + (" or null" if type(None) in args else "")
    if origin is typing.Literal:
        return " or ".join(f"'{a}'" if isinstance(a, str) else str(a) for a in args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {expected(args[0]).removeprefix('an ').removeprefix('a ')}s"
        return "a list [" + ", ".join(expected(a).removeprefix("an ").removeprefix("a ") for a in args) + "]"
    if origin is list:
        return f"a list of {expected(args[0]).removeprefix('an ').removeprefix('a ')}s" if args else "a list"
    if origin is dict:
        return "a mapping"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "a mapping"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _literals(annotation) -> list[str]:
    """The string choices a field accepts, for did-you-mean hints."""
    if typing.get_origin(annotation) is typing.Literal:
        return [a for a in typing.get_args(annotation) if isinstance(a, str)]
    return [c for a in typing.get_args(annotation) for c in _literals(a)]


_LIMITS = {"greater_than_equal": ("≥", "ge"), "greater_than": (">", "gt"), "less_than_equal": ("≤", "le"), "less_than": ("<", "lt")}


def _constraint(err) -> str | None:
    """Plain words for a value of the right type that breaks a limit, or None for type errors."""
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind in _LIMITS:
        sign, key = _LIMITS[kind]
        return f"must be {sign} {ctx.get(key)}"
    if kind == "string_pattern_mismatch":
        return "must be a name made of letters, digits, '_' and '-'" if "A-Za-z0-9_]" in str((err.get("ctx") or {}).get("pattern", "")) else "must be a name: letters, digits, '_' and '-', starting with a letter or '_'"
    if kind == "finite_number":  # .inf, -.inf, .nan, 1e999 (which YAML reads as inf)
        return "must be a finite number"
    if kind == "too_short":
        return f"must have at least {ctx.get('min_length')} item(s)"
    if kind == "too_long":
        return f"must have at most {ctx.get('max_length')} item(s)"
    if kind in ("value_error", "assertion_error"):
        return err["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
    return None


def _model_at(model, path):
    """The pydantic model that holds the last key of ``path`` (for the did-you-mean of an unknown key)."""
    current = model
    for key in path:
        if isinstance(current, type) and issubclass(current, BaseModel) and isinstance(key, str) and key in current.model_fields:
            current = current.model_fields[key].annotation
        elif typing.get_origin(current) is dict and isinstance(key, str):
            current = typing.get_args(current)[1]
        elif typing.get_origin(current) is list and isinstance(key, int):
            current = typing.get_args(current)[0]
        else:
            return None
        while True:  # unwrap Annotated[...] and X | None
            origin = typing.get_origin(current)
            if origin is typing.Annotated:
                current = typing.get_args(current)[0]
            elif origin in (typing.Union, getattr(__import__("types"), "UnionType")):
                models = [a for a in typing.get_args(current) if isinstance(a, type) and issubclass(a, BaseModel)]
                current = models[0] if len(models) == 1 else current
                break
            else:
                break
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _field(model: type[BaseModel], path) -> tuple[str | None, typing.Any]:
    """(name, annotation) of the top-level field an error path starts with, when there is one."""
    if path and isinstance(path[0], str) and path[0] in model.model_fields:
        return path[0], model.model_fields[path[0]].annotation
    return None, None


def _data_path(err, data) -> list:
    """The error's location with only the path elements that exist in the data (pydantic adds union
    branch names)."""
    path, node = [], data
    for key in err["loc"]:
        if isinstance(node, dict) and key in node:
            node = node[key]
            path.append(key)
        elif isinstance(node, list) and isinstance(key, int) and key < len(node):
            node = node[key]
            path.append(key)
        elif err["type"] in ("missing", "extra_forbidden") and key == err["loc"][-1]:
            path.append(key)
    return path


def diagnostics_from(error: ValidationError, model: type[BaseModel], data, what: str) -> list[Diagnostic]:
    """One diagnostic per offending value (union alternatives folded into one message)."""
    seen: dict[tuple, Diagnostic] = {}
    errors = [(err, _data_path(err, data)) for err in error.errors()]
    paths = {tuple(path) for _, path in errors}
    for err, path in errors:
        key = tuple(path)
        if key in seen:
            continue
        if _constraint(err) is None and any(len(p) > len(key) and p[:len(key)] == key for p in paths):
            continue  # a union branch's type error where another branch went deeper: the deeper error says more
        dotted = ".".join(map(str, path))
        field, annotation = _field(model, path)
        kind = err["type"]
        if kind == "extra_forbidden":
            holder = _model_at(model, path[:-1]) or model
            hint = did_you_mean(path[-1], holder.model_fields, "key")
            where = what if len(path) == 1 else f"{what} at '{'.'.join(map(str, path[:-1]))}'"
            diag = Diagnostic(f"unknown key '{path[-1]}' in {where}", locate_key(data, path), hint)
        elif kind == "missing":
            diag = Diagnostic(f"{what} is missing '{dotted}'", locate(data, path[:-1]),
                              f"add '{path[-1]}: …' ({expected(annotation)})" if annotation else None)
        else:
            got = _shown(err.get("input"))
            limit = _constraint(err)
            if limit is not None:
                message = f"{what}: '{dotted}' {limit}, got {got}"
            elif field and len(path) == 1:
                message = f"{what}: '{dotted}' must be {expected(annotation)}, got {got}"
            else:
                message = f"{what}: '{dotted}' {err['msg'][0].lower() + err['msg'][1:]}, got {got}"
            hint = None
            choices = _literals(annotation) if annotation is not None else []
            if choices and isinstance(err.get("input"), str):
                hint = did_you_mean(err["input"], choices)
            numeric = annotation is not None and any(w in expected(annotation) for w in ("integer", "number"))
            if hint is None and numeric and isinstance(err.get("input"), str) and err["input"].lstrip("-").replace(".", "", 1).isdigit():
                hint = f"write {err['input']} without quotes"
            elif isinstance(err.get("input"), float) and err["input"].is_integer() and "integer" in message:
                hint = f"write {int(err['input'])}"
            diag = Diagnostic(message, locate(data, path), hint)
        seen[key] = diag
    return list(seen.values())


def locate_key(data, path):
    """Position of the key itself (for unknown keys), falling back to its value's."""
    parent = data
    for key in path[:-1]:
        try:
            parent = parent[key]
        except (KeyError, IndexError, TypeError):
            return locate(data, path)
    key_locs = getattr(parent, "key_locs", {})
    return key_locs.get(path[-1]) or locate(data, path)
