"""YAML as pure data, with the position of every value kept.

The loader refuses what makes YAML dangerous or ambiguous in a spec: explicit tags (``!!python/...``),
duplicate keys, merge keys, unbounded nesting, oversized files and alias expansion beyond a node
budget (a "billion laughs" document fails after a bounded amount of work, not after eating memory).
It also reads ``1e-3`` as a float, which YAML 1.1 (and so plain PyYAML) would read as a string.

Mappings load as :class:`LDict` and sequences as :class:`LList`: ordinary ``dict``/``list`` that also
carry the :class:`~graphc.errors.Loc` of themselves, of each key and of each value.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from ..errors import Diagnostic, GraphcError, Loc, MissingInput

MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_DEPTH = 64
MAX_NODES = 200_000  # values constructed, counting every alias expansion


class LDict(dict):
    """A dict loaded from YAML: ``loc`` of the mapping, ``key_locs``/``value_locs`` per key."""

    loc: Loc | None = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.key_locs: dict = {}
        self.value_locs: dict = {}


class LList(list):
    """A list loaded from YAML: ``loc`` of the sequence, ``item_locs`` per item."""

    loc: Loc | None = None

    def __init__(self, *args):
        super().__init__(*args)
        self.item_locs: list = []


def loc_of(container, key=None) -> Loc | None:
    """Position of ``container[key]`` (or of the container itself when key is None)."""
    if key is None:
        return getattr(container, "loc", None)
    if isinstance(container, LDict):
        return container.value_locs.get(key, container.loc)
    if isinstance(container, LList) and isinstance(key, int) and 0 <= key < len(container.item_locs):
        return container.item_locs[key]
    return getattr(container, "loc", None)


def locate(data, path) -> Loc | None:
    """Deepest known position along ``path`` (a pydantic error ``loc``, say) inside loaded data."""
    best = loc_of(data)
    node = data
    for key in path:
        if isinstance(node, dict) and key in node:
            best = loc_of(node, key) or best
            node = node[key]
        elif isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node):
            best = loc_of(node, key) or best
            node = node[key]
        else:
            break
    return best


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses explicit tags and whose float resolver also accepts ``1e-3`` (YAML 1.2)."""

    def compose_node(self, parent, index):
        event = self.peek_event()
        tag = getattr(event, "tag", None)
        if tag not in (None, "!") and not isinstance(event, yaml.AliasEvent):
            raise yaml.MarkedYAMLError(problem=f"YAML tag {tag!r} is not allowed (a spec is plain data: remove the tag)",
                                       problem_mark=event.start_mark)
        return super().compose_node(parent, index)


_FLOAT = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+][0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)
_Loader.yaml_implicit_resolvers = {k: [r for r in v if r[0] != "tag:yaml.org,2002:float"] for k, v in _Loader.yaml_implicit_resolvers.copy().items()}
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))
# YAML 1.1's sexagesimal ints (``1:30`` == 90) and yes/no booleans surprise people; keep true/false only.
_Loader.yaml_implicit_resolvers = {
    k: [r for r in v if not (r[0] == "tag:yaml.org,2002:bool")] for k, v in _Loader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
_Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) if tag != "tag:yaml.org,2002:int" else (tag, re.compile(r"^[-+]?(?:0|[1-9][0-9_]*)$")) for tag, rx in v]
    for k, v in _Loader.yaml_implicit_resolvers.items()
}


def _loc(file: str, mark) -> Loc:
    return Loc(file, mark.line + 1, mark.column + 1)


def load_yaml_text(text: str, file: str = "<string>"):
    """Parse ``text`` into LDict/LList/scalars, enforcing the limits above."""
    try:
        loader = _Loader(text)
        try:
            # Explicit tags are refused before anything is constructed.
            root = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        problem = e.problem or e.context
        text = problem if "is not allowed" in problem else f"invalid YAML: {problem}"
        raise GraphcError(text, _loc(file, mark) if mark else Loc(file, 1, 1)) from None
    except yaml.YAMLError as e:
        raise GraphcError(f"invalid YAML: {e}", Loc(file, 1, 1)) from None
    if root is None:
        raise GraphcError("the spec is empty", Loc(file, 1, 1), "expected a mapping with 'inputs' and 'layers'")
    budget = [MAX_NODES]
    constructor = yaml.SafeLoader("")  # only for scalar construction

    def convert(node, depth: int):
        budget[0] -= 1
        if budget[0] < 0:
            raise GraphcError(
                f"the document expands to more than {MAX_NODES} values (aliases expanding without bound?)",
                _loc(file, node.start_mark),
                "write the values out, or use blocks and repeat instead of YAML aliases",
            )
        if depth > MAX_DEPTH:
            raise GraphcError(f"nesting deeper than {MAX_DEPTH} levels", _loc(file, node.start_mark))
        here = _loc(file, node.start_mark)
        if isinstance(node, yaml.ScalarNode):
            if node.tag.startswith("tag:yaml.org,2002:") and node.tag.split(":")[-1] in {"str", "int", "float", "bool", "null"}:
                if node.tag == "tag:yaml.org,2002:str" or node.style in ("'", '"', "|", ">"):
                    return str(node.value)
                try:
                    return constructor.construct_object(node, deep=True)
                except (yaml.YAMLError, ValueError) as e:
                    raise GraphcError(f"cannot read scalar {node.value!r}: {e}", here) from None
            raise GraphcError(f"YAML tag {node.tag!r} is not allowed", here, "a spec is plain data: remove the tag")
        if isinstance(node, yaml.SequenceNode):
            if node.tag != "tag:yaml.org,2002:seq":
                raise GraphcError(f"YAML tag {node.tag!r} is not allowed", here, "a spec is plain data: remove the tag")
            out = LList()
            out.loc = here
            for item in node.value:
                out.append(convert(item, depth + 1))
                out.item_locs.append(_loc(file, item.start_mark))
            return out
        if isinstance(node, yaml.MappingNode):
            if node.tag != "tag:yaml.org,2002:map":
                raise GraphcError(f"YAML tag {node.tag!r} is not allowed", here, "a spec is plain data: remove the tag")
            out = LDict()
            out.loc = here
            for key_node, value_node in node.value:
                key_loc = _loc(file, key_node.start_mark)
                if key_node.tag == "tag:yaml.org,2002:merge":
                    raise GraphcError("YAML merge keys ('<<') are not allowed", key_loc, "write the keys out or use a block")
                key = convert(key_node, depth + 1)
                if isinstance(key, (dict, list)):
                    raise GraphcError("a mapping key must be a plain value", key_loc)
                if key in out:
                    first = out.key_locs[key]
                    raise GraphcError(f"duplicate key '{key}' (first at line {first.line})", key_loc, "each key may appear once in a mapping")
                out[key] = convert(value_node, depth + 1)
                out.key_locs[key] = key_loc
                out.value_locs[key] = _loc(file, value_node.start_mark)
            return out
        raise GraphcError("unsupported YAML node", here)  # pragma: no cover - composer makes only the three kinds

    return convert(root, 0)


def load_yaml_file(path: str | Path):
    """Read and parse one spec file; the size is checked before reading."""
    path = Path(path)
    shown = str(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise MissingInput(f"no such file: {shown}") from None
    except OSError as e:
        raise MissingInput(f"cannot read {shown}: {e.strerror}") from None
    if path.is_dir():
        raise GraphcError(f"{shown} is a directory, expected a YAML spec file")
    if size > MAX_FILE_BYTES:
        raise GraphcError(f"spec file is {size} bytes, more than the limit of {MAX_FILE_BYTES}", Loc(shown, 1, 1))
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        col = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise GraphcError(f"spec is not UTF-8 text (byte 0x{raw[e.start]:02x})", Loc(shown, line, col), "save the file as UTF-8") from None
    return load_yaml_text(text, shown)


__all__ = ["LDict", "LList", "Diagnostic", "load_yaml_file", "load_yaml_text", "loc_of", "locate"]
