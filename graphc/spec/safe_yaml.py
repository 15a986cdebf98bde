"""YAML as pure data, with the position of every value kept.

The loader refuses what makes YAML dangerous or ambiguous in a spec: explicit tags (``!!python/...``),
duplicate keys, merge keys, unbounded nesting, oversized files and alias expansion beyond a node
budget (a "billion laughs" document fails after a bounded amount of work, not after eating memory).
It also reads ``1e-3`` as a float, which YAML 1.1 (and so plain PyYAML) would read as a string.

Mappings load as :class:`LDict` and sequences as :class:`LList`: ordinary ``dict``/``list`` that also
carry the :class:`~graphc.errors.Loc` of themselves, of each key and of each value.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import yaml

from ..errors import Diagnostic, GraphcError, Loc, MissingInput
from ..files import file_kind, require_regular_file
from .sniff import sniff

MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_DEPTH = 64
MAX_NODES = 200_000  # values constructed, counting every alias expansion
#: the largest integer a spec may hold (int64, what ONNX and NumPy index with); longer digit strings
#: are refused before Python converts them (a 5,000-digit literal would otherwise fail inside int())
MAX_INT = 2**63 - 1


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


class _Bounded:
    """Composing that refuses explicit tags and stops nesting at ``MAX_DEPTH`` (PyYAML's composer
    recurses once per level, so 20,000 ``[`` would otherwise exhaust Python's stack)."""

    _depth = 0

    def compose_node(self, parent, index):
        event = self.peek_event()
        tag = getattr(event, "tag", None)
        if tag not in (None, "!") and not isinstance(event, yaml.AliasEvent):
            raise yaml.MarkedYAMLError(problem=f"YAML tag {tag!r} is not allowed (a spec is plain data: remove the tag)",
                                       problem_mark=event.start_mark)
        if self._depth > MAX_DEPTH:
            raise yaml.MarkedYAMLError(problem=f"nesting deeper than {MAX_DEPTH} levels is not allowed", problem_mark=event.start_mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class _Loader(_Bounded, yaml.SafeLoader):
    """SafeLoader composing through :class:`_Bounded`, whose float resolver also accepts ``1e-3``
    (YAML 1.2). Pure Python: its error messages are the ones graphc reports."""


try:
    from yaml._yaml import CParser
except ImportError:  # PyYAML built without libyaml: the pure-Python loader alone
    CParser = None

if CParser is None:
    _FastLoader = _Loader
else:
    class _FastLoader(_Bounded, yaml.composer.Composer, CParser, yaml.constructor.SafeConstructor, yaml.resolver.Resolver):
        """The same composer and resolvers on libyaml's scanner and parser (``yaml.CParser``: events in C,
        with the same line:col marks), about 5× faster on a large spec; :func:`load_yaml_text` falls back
        to :class:`_Loader` on any error, so the messages do not depend on which one ran."""

        def __init__(self, stream):
            CParser.__init__(self, stream)
            yaml.composer.Composer.__init__(self)
            yaml.constructor.SafeConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)


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
# A spec holds no dates: ``2024-02-03`` in a name or a description is the text the user wrote, not a
# timestamp (which would then be refused as a tag the user never wrote, or fail on ``2024-02-30``).
_Loader.yaml_implicit_resolvers = {
    k: [r for r in v if r[0] != "tag:yaml.org,2002:timestamp"] for k, v in _Loader.yaml_implicit_resolvers.items()
}
_Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) if tag != "tag:yaml.org,2002:int" else (tag, re.compile(r"^[-+]?(?:0|[1-9][0-9_]*)$")) for tag, rx in v]
    for k, v in _Loader.yaml_implicit_resolvers.items()
}
_FastLoader.yaml_implicit_resolvers = _Loader.yaml_implicit_resolvers
_FAST = CParser is not None


def _compose(text: str, fast: bool):
    loader = (_FastLoader if fast else _Loader)(text)
    try:
        # Explicit tags are refused before anything is constructed.
        return loader.get_single_node()
    finally:
        loader.dispose()


def _loc(file: str, mark) -> Loc:
    return Loc(file, mark.line + 1, mark.column + 1)


def _text_loc(file: str, text: str, index: int) -> Loc:
    """The line:col of character ``index`` of ``text``."""
    line = text.count("\n", 0, index) + 1
    return Loc(file, line, index - (text.rfind("\n", 0, index) + 1) + 1)


def _syntax_error(e: yaml.MarkedYAMLError, file: str) -> GraphcError:
    """A YAML syntax error at the place that is wrong: an unclosed quote or bracket is reported where
    it opens (PyYAML's problem mark is then the end of the file, its context mark the opening)."""
    problem = e.problem or e.context or "syntax error"
    if "is not allowed" in problem:
        return GraphcError(problem, _loc(file, e.problem_mark) if e.problem_mark else Loc(file, 1, 1))
    mark, context = e.problem_mark, e.context
    if context and e.context_mark is not None and (mark is None or "end of stream" in problem or "<stream end>" in problem):
        end = f" (reached the end of the file at line {mark.line + 1})" if mark is not None else ""
        what = context.removeprefix("while scanning ").removeprefix("while parsing ")
        return GraphcError(f"invalid YAML: {what} that starts here is never closed{end}", _loc(file, e.context_mark),
                           "close the quote or bracket")
    message = f"invalid YAML: {problem}" + (f" ({context} at line {e.context_mark.line + 1})" if context and e.context_mark else "")
    return GraphcError(message, _loc(file, mark) if mark else Loc(file, 1, 1))


def _check_int(literal: str, field: str | None, where: Loc) -> None:
    """Refuse an integer literal beyond ``±MAX_INT``, from its digits, before converting it."""
    digits = literal.lstrip("+-").replace("_", "")
    if len(digits) < 19 or (len(digits) == 19 and int(digits) <= MAX_INT):
        return
    shown = digits if len(digits) <= 30 else f"{digits[:12]}…{digits[-6:]}"
    raise GraphcError(f"{f'{field!r}' if field else 'an integer'} is {'-' if literal.startswith('-') else ''}{shown} "
                      f"({len(digits)} digits), beyond the largest integer a spec may hold, 2^63 − 1 = {MAX_INT}",
                      where, "no size in a network comes near it: check the value")


def load_yaml_text(text: str, file: str = "<string>", *, document: bool = False):
    """Parse ``text`` into LDict/LList/scalars, enforcing the limits above. ``document``: ``text`` is a
    whole file, so a lone top-level scalar is an error at its position."""
    try:
        try:
            root = _compose(text, _FAST)
        except yaml.YAMLError:
            if not _FAST:
                raise
            root = _compose(text, False)  # the pure-Python loader's message and position
    except yaml.reader.ReaderError as e:
        shown = f"U+{e.character:04X}" if isinstance(e.character, int) else repr(e.character)
        raise GraphcError(f"control character {shown} is not allowed in YAML", _text_loc(file, text, e.position),
                          "remove it, or write it as an escape inside a double-quoted string") from None
    except yaml.MarkedYAMLError as e:
        raise _syntax_error(e, file) from None
    except yaml.YAMLError as e:
        raise GraphcError(f"invalid YAML: {e}", Loc(file, 1, 1)) from None
    if root is None:
        raise GraphcError("the spec is empty", Loc(file, 1, 1), "expected a mapping with 'inputs' and 'layers'")
    if document and isinstance(root, yaml.ScalarNode):
        raise GraphcError(f"the file holds the single value {root.value[:40]!r}, expected a mapping of keys to values",
                          _loc(file, root.start_mark), "a spec is a mapping with 'inputs' and 'layers'")
    budget = [MAX_NODES]
    constructor = yaml.SafeLoader("")  # only for scalar construction

    def convert(node, depth: int, field: str | None = None, here: Loc | None = None):
        """The value of ``node``; ``here`` is its position when the caller has made it already (it
        keeps the same one in its ``key_locs``/``value_locs``/``item_locs``: one Loc per value)."""
        here = here or _loc(file, node.start_mark)
        budget[0] -= 1
        if budget[0] < 0:
            raise GraphcError(
                f"the document expands to more than {MAX_NODES} values (aliases expanding without bound?)",
                here,
                "write the values out, or use blocks and repeat instead of YAML aliases",
            )
        if depth > MAX_DEPTH:
            raise GraphcError(f"nesting deeper than {MAX_DEPTH} levels", here)
        if isinstance(node, yaml.ScalarNode):
            if node.tag.startswith("tag:yaml.org,2002:") and node.tag.split(":")[-1] in {"str", "int", "float", "bool", "null"}:
                if node.tag == "tag:yaml.org,2002:str" or node.style in ("'", '"', "|", ">"):
                    return str(node.value)
                if node.tag == "tag:yaml.org,2002:int":
                    _check_int(node.value, field, here)
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
                item_loc = _loc(file, item.start_mark)
                out.append(convert(item, depth + 1, field, item_loc))
                out.item_locs.append(item_loc)
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
                key = convert(key_node, depth + 1, None, key_loc)
                if isinstance(key, (dict, list)):
                    raise GraphcError("a mapping key must be a plain value", key_loc)
                if key in out:
                    first = out.key_locs[key]
                    raise GraphcError(f"duplicate key '{key}' (first at line {first.line})", key_loc, "each key may appear once in a mapping")
                value_loc = _loc(file, value_node.start_mark)
                out[key] = convert(value_node, depth + 1, str(key), value_loc)
                out.key_locs[key] = key_loc
                out.value_locs[key] = value_loc
            return out
        raise GraphcError("unsupported YAML node", here)  # pragma: no cover - composer makes only the three kinds

    return convert(root, 0)


def read_bounded(path: str | Path, limit: int, what: str = "spec file") -> bytes:
    """The bytes of the regular file ``path``, refusing anything else by what it is and reading at
    most ``limit + 1`` bytes (a file that grows, or ``/proc`` files that claim size 0, stay bounded).

    The kind is checked with ``stat`` before opening, so a FIFO is never opened (opening one blocks
    until a writer comes); the open itself is non-blocking and re-checked with ``fstat`` in case the
    path was replaced in between."""
    shown = str(path)
    require_regular_file(shown, f"a YAML {what}")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise MissingInput(f"cannot read {shown}: {e.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        kind = file_kind(os.fstat(fd).st_mode)
        if kind is not None:
            raise GraphcError(f"{shown} is {kind}, expected a YAML {what}")
        try:
            raw = f.read(limit + 1)
        except OSError as e:
            raise MissingInput(f"cannot read {shown}: {e.strerror}") from None
    found = sniff(raw)
    if found:  # before the size limit: a 50 MB ONNX model is "an ONNX model", not "too large"
        raise GraphcError(f"this is {found[0]}, not a YAML {what}", Loc(shown, 1, 1), found[1])
    if len(raw) > limit:
        raise GraphcError(f"{what} holds more than the limit of {limit} bytes", Loc(shown, 1, 1), "split it with 'include:'")
    return raw


def load_yaml_file(path: str | Path):
    """Read and parse one spec file: a regular file of at most ``MAX_FILE_BYTES``."""
    path = Path(path)
    shown = str(path)
    raw = read_bounded(path, MAX_FILE_BYTES)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        col = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise GraphcError(f"spec is not UTF-8 text (byte 0x{raw[e.start]:02x})", Loc(shown, line, col), "save the file as UTF-8") from None
    return load_yaml_text(text, shown, document=True)


__all__ = ["LDict", "LList", "Diagnostic", "load_yaml_file", "load_yaml_text", "loc_of", "locate"]
