"""Expansion: blocks, block arguments and ``repeat`` unrolled into a flat list of layers.

Names are scoped like PyTorch modules: a block call ``layer1`` with ``repeat: 2`` becomes instances
``layer1.0`` and ``layer1.1`` whose layers are ``layer1.0.conv1`` and so on; a reference to ``layer1``
means the output of its last instance. References inside a block see the block's own layers and
inputs only. Every flat layer keeps the YAML position it came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import Diagnostic, Loc, did_you_mean
from ..ops import BY_KIND
from ..ops.base import Init
from .safe_yaml import LDict, LList, loc_of

MAX_BLOCK_DEPTH = 32
MAX_LAYERS = 200_000


@dataclass
class FlatLayer:
    name: str
    kind: str
    attrs: LDict
    inputs: tuple[str, ...]
    init: dict[str, Init]
    loc: Loc | None
    scope: tuple[str, ...]  # enclosing block instances, outermost first
    inputs_loc: Loc | None = None
    init_loc: Loc | None = None
    op_loc: Loc | None = None


@dataclass
class Instance:
    """A block call (or a repeated op) shown as one row, its layers folded inside."""

    name: str
    block: str
    loc: Loc | None
    scope: tuple[str, ...]
    output: str = ""
    inputs: tuple[str, ...] = ()


@dataclass
class Expanded:
    layers: list[FlatLayer] = field(default_factory=list)
    aliases: dict[str, str] = field(default_factory=dict)  # instance name -> the name of its output
    instances: dict[str, Instance] = field(default_factory=dict)
    errors: list[Diagnostic] = field(default_factory=list)
    entries: list[str] = field(default_factory=list)  # top-level entry names, in spec order

    def resolve(self, name: str) -> str:
        seen = set()
        while name in self.aliases and name not in seen:
            seen.add(name)
            name = self.aliases[name]
        return name


def _substitute(value, args: dict, errors: list, where: Loc | None):
    """``value`` with every ``$arg`` string replaced by its argument's value; positions follow.

    A mapping or list in which nothing is replaced is returned itself, not copied (most layers hold
    no ``$``; the loaded spec is never changed afterwards, so sharing it is safe)."""
    if isinstance(value, str) and value.startswith("$"):
        key = value[1:]
        if key in args:
            return args[key][0], args[key][1]
        errors.append(Diagnostic(f"unknown block argument '{value}'", where, did_you_mean(key, args, "argument") if args else "this block has no arguments"))
        return value, where
    if isinstance(value, LDict):
        subs = {k: _substitute(v, args, errors, value.value_locs.get(k, where)) for k, v in value.items()}
        if all(new is value[k] and k in value.value_locs for k, (new, _) in subs.items()):
            return value, where
        out = LDict()
        out.loc = value.loc
        out.key_locs = dict(value.key_locs)
        for k, (new, loc) in subs.items():
            out[k], out.value_locs[k] = new, loc
        return out, where
    if isinstance(value, LList):
        subs = [_substitute(v, args, errors, value.item_locs[i] if i < len(value.item_locs) else where) for i, v in enumerate(value)]
        if len(value.item_locs) == len(value) and all(new is v for (new, _), v in zip(subs, value)):
            return value, where
        out = LList()
        out.loc = value.loc
        for new, loc in subs:
            out.append(new)
            out.item_locs.append(loc)
        return out, where
    return value, where


def takes_no_input(kind) -> bool:
    """Whether the op ``kind`` is a layer without inputs (``parameter``), so an entry without
    ``inputs:`` does not take the previous entry's output."""
    cls = BY_KIND.get(kind) if isinstance(kind, str) else None
    return cls is not None and cls.arity == (0, 0)


def _init_of(entry: LDict) -> dict[str, Init]:
    raw = entry.get("init") or {}
    out = {}
    for pname, spec in raw.items():
        out[pname] = Init(kind=spec) if isinstance(spec, str) else Init(**{k: v for k, v in spec.items()})
    return out


class _Expander:
    def __init__(self, blocks: dict[str, LDict], result: Expanded):
        self.blocks = blocks
        self.out = result
        self.stack: list[str] = []  # block names being expanded, for recursion detection
        self.broken: set[str] = set()  # layers whose inputs could not be resolved (already reported)
        self.tainted: set[str] = set()  # layers and instances whose attributes hold bad arguments
        self.sizes: dict[str, int] = {}  # block name -> layers one instance expands to
        self.full = False  # the layer limit was reached: nothing more is expanded

    def flat_size(self, bname: str, calling: tuple[str, ...] = ()) -> int:
        """How many flat layers one call of block ``bname`` expands to: Σ repeat × (1 for an op, the
        called block's size for a call), computed from the block bodies without expanding anything.
        A ``repeat`` given as a block argument counts once, so this is a lower bound then."""
        if bname in self.sizes:
            return self.sizes[bname]
        block = self.blocks.get(bname)
        if block is None or bname in calling:
            return 1  # reported when expanded
        total = 0
        for raw in block.get("layers") or ():
            repeat = raw.get("repeat")
            repeat = repeat if isinstance(repeat, int) and not isinstance(repeat, bool) and repeat >= 1 else 1
            inner = raw.get("block")
            total += repeat * (self.flat_size(inner, calling + (bname,)) if isinstance(inner, str) else 1)
        self.sizes[bname] = total
        return total

    def fits(self, absolute: str, entry: LDict, repeat: int, each: int, what: str) -> bool:
        """Whether ``repeat × each`` more layers stay within ``MAX_LAYERS``; reported once if not, before
        any of them is expanded (nested repeats would otherwise loop through the whole product)."""
        if self.full:
            return False
        need = repeat * each
        if len(self.out.layers) + need <= MAX_LAYERS:
            return True
        self.full = True
        product = f"{repeat} × {each} = {need}" if repeat > 1 and each > 1 else f"{need}"
        self.out.errors.append(Diagnostic(f"'{absolute}' expands to {product} layers ({what}), more than the limit of {MAX_LAYERS} layers",
                                          loc_of(entry, "repeat") if "repeat" in entry else entry.loc, "lower a 'repeat' count"))
        return False

    def scope_body(self, entries: LList, prefix: str, env: dict[str, str], first_input: str | None,
                   args: dict, scope: tuple[str, ...]) -> str | None:
        """Expand one list of entries; ``env`` maps local names to absolute names. Returns the last output."""
        errors = self.out.errors
        # Pass 1: every entry's local and absolute name, so that references may point forward.
        names = []
        for index, raw in enumerate(entries):
            kind = raw.get("op") or raw.get("block") or "layer"
            local = raw.get("name") or f"{kind}_{index + 1}"
            if local in env:
                first = self._defined_at.get(prefix + local)
                errors.append(Diagnostic(f"duplicate name '{local}'" + (f" (first defined at {first})" if first else ""),
                                         loc_of(raw, "name") if "name" in raw else raw.loc, "give each layer a unique name"))
            else:
                env[local] = prefix + local
                self._defined_at[prefix + local] = raw.loc
            names.append(local)
        previous = first_input
        for raw, local in zip(entries, names):
            before = len(errors)
            entry, _ = _substitute(raw, args, errors, raw.loc)
            absolute = prefix + local
            if len(errors) > before:
                self.tainted.add(absolute)
            if not scope:
                self.out.entries.append(absolute)
            inputs = self.references(entry, env, previous, absolute, local)
            repeat = entry.get("repeat") or 1
            if not isinstance(repeat, int) or isinstance(repeat, bool) or repeat < 1:
                errors.append(Diagnostic(f"'repeat' must be a positive integer, got {repeat!r}", loc_of(entry, "repeat")))
                repeat = 1
            if entry.get("op") and entry.get("block"):
                errors.append(Diagnostic(f"layer '{local}' has both 'op' and 'block'", entry.loc, "a layer is either an op or a block call"))
            elif entry.get("block"):
                self.block_call(entry, absolute, inputs, repeat, scope)
            elif entry.get("op"):
                self.op_layer(entry, absolute, inputs, repeat, scope)
            else:
                errors.append(Diagnostic(f"layer '{local}' has neither 'op' nor 'block'", entry.loc, "add 'op: <op name>' or 'block: <block name>'"))
            previous = absolute
        return previous

    def references(self, entry: LDict, env: dict[str, str], previous: str | None, absolute: str, local: str) -> tuple[str, ...]:
        if entry.get("inputs") is None:
            if takes_no_input(entry.get("op")):
                return ()  # a parameter layer: it does not chain from the previous entry
            if previous is None:
                self.out.errors.append(Diagnostic(f"layer '{absolute}' has no input", entry.loc,
                                                  "the first layer of a block needs 'inputs: [...]' when the block has no inputs"))
                return ()
            return (previous,)
        resolved = []
        refs = entry["inputs"]
        for i, ref in enumerate(refs):
            if ref in env:
                resolved.append(env[ref])
            else:
                self.out.errors.append(Diagnostic(f"'{absolute}' takes input '{ref}', which is not defined", loc_of(refs, i),
                                                  did_you_mean(ref, [n for n in env if n != local], "name")))
                self.broken.add(absolute)
        return tuple(resolved)

    def op_layer(self, entry: LDict, absolute: str, inputs, repeat: int, scope):
        attrs = LDict()
        attrs.loc = entry.loc
        for k, v in entry.items():
            if k not in ("name", "op", "block", "inputs", "repeat", "args", "init"):
                attrs[k] = v
                attrs.key_locs[k] = entry.key_locs.get(k)
                attrs.value_locs[k] = entry.value_locs.get(k)
        if entry.get("args") is not None:
            self.out.errors.append(Diagnostic(f"'args' is for block calls; '{absolute}' is an op layer", loc_of(entry, "args"),
                                              "write the op's attributes directly in the layer"))
        init = _init_of(entry)
        if repeat > 1 and takes_no_input(entry["op"]):
            # repeat feeds each copy the previous one's output, and this op reads no input
            self.out.errors.append(Diagnostic(
                f"'repeat: {repeat}' on {entry['op']} layer '{absolute}': repeat chains copies, each fed the previous "
                f"one's output, and a {entry['op']} takes no input", loc_of(entry, "repeat"),
                f"remove 'repeat': one {entry['op']} layer is one tensor; for several, write one {entry['op']} layer for each"))
            repeat = 1
        if not self.fits(absolute, entry, repeat, 1, f"op {entry['op']}"):
            return
        if repeat == 1:
            self.add(FlatLayer(absolute, entry["op"], attrs, inputs, init, entry.loc, scope, loc_of(entry, "inputs"), loc_of(entry, "init"), loc_of(entry, "op")))
            return
        self.out.instances[absolute] = Instance(absolute, f"{entry['op']} ×{repeat}", entry.loc, scope, inputs=inputs)
        current = inputs
        for r in range(repeat):
            name = f"{absolute}.{r}"
            self.add(FlatLayer(name, entry["op"], attrs, current, init, entry.loc, scope + (absolute,), loc_of(entry, "inputs"), loc_of(entry, "init"), loc_of(entry, "op")))
            current = (name,) + tuple(inputs[1:])
        self.out.aliases[absolute] = current[0]
        self.out.instances[absolute].output = current[0]

    def block_call(self, entry: LDict, absolute: str, inputs, repeat: int, scope):
        errors = self.out.errors
        bname = entry["block"]
        block = self.blocks.get(bname)
        if block is None:
            errors.append(Diagnostic(f"unknown block '{bname}'", loc_of(entry, "block"), did_you_mean(bname, self.blocks, "block")))
            return
        if bname in self.stack:
            cycle = " → ".join(self.stack[self.stack.index(bname):] + [bname])
            errors.append(Diagnostic(f"block '{bname}' calls itself: {cycle}", loc_of(entry, "block"), "blocks may not be recursive"))
            return
        if len(self.stack) >= MAX_BLOCK_DEPTH:
            errors.append(Diagnostic(f"blocks nested deeper than {MAX_BLOCK_DEPTH}", entry.loc))
            return
        extra = set(entry) - {"name", "block", "inputs", "repeat", "args"}
        for key in sorted(extra):
            errors.append(Diagnostic(f"unknown key '{key}' in a call of block '{bname}'", entry.key_locs.get(key),
                                     f"pass block arguments under 'args:' ({', '.join(block.get('args', {})) or 'this block takes none'})"))
        declared = block.get("args") or {}
        given = entry.get("args") or LDict()
        args = {}
        before = len(errors)
        for key, value in given.items():
            if key not in declared:
                errors.append(Diagnostic(f"block '{bname}' has no argument '{key}'", given.key_locs.get(key), did_you_mean(key, declared, "argument")))
            else:
                args[key] = (value, given.value_locs.get(key))
        for key, default in declared.items():
            if key not in args:
                if default is None:
                    errors.append(Diagnostic(f"block '{bname}' needs argument '{key}'", entry.loc, f"add 'args: {{{key}: …}}'"))
                    args[key] = (None, entry.loc)
                else:
                    args[key] = (default, declared.value_locs.get(key))
        if len(errors) > before:
            self.tainted.add(absolute)
        block_inputs = block.get("inputs") or ["x"]
        if not inputs:
            return  # already reported
        if len(inputs) != len(block_inputs):
            errors.append(Diagnostic(f"block '{bname}' takes {len(block_inputs)} input(s) ({', '.join(block_inputs)}), "
                                     f"'{absolute}' gives {len(inputs)}", loc_of(entry, "inputs") or entry.loc))
            return
        if not self.fits(absolute, entry, repeat, self.flat_size(bname), f"block '{bname}'"):
            return
        self.out.instances[absolute] = Instance(absolute, bname if repeat == 1 else f"{bname} ×{repeat}", entry.loc, scope, inputs=inputs)
        current = inputs
        self.stack.append(bname)
        for r in range(repeat):
            instance = absolute if repeat == 1 else f"{absolute}.{r}"
            if repeat > 1:
                self.out.instances[instance] = Instance(instance, bname, entry.loc, scope + (absolute,), inputs=current)
            env = dict(zip(block_inputs, current))
            inner_scope = scope + ((absolute,) if repeat == 1 else (absolute, instance))
            last = self.scope_body(block["layers"], instance + ".", env, current[0] if current else None, args, inner_scope)
            output = block.get("output")
            if output is not None:
                if output in env:
                    last = env[output]
                else:
                    errors.append(Diagnostic(f"block '{bname}' output '{output}' is not one of its layers", loc_of(block, "output"),
                                             did_you_mean(output, env, "layer")))
            if repeat > 1:
                self.out.aliases[instance] = last
                self.out.instances[instance].output = last
            current = (instance,) + tuple(current[1:])
        self.stack.pop()
        self.out.aliases[absolute] = current[0] if repeat > 1 else last
        self.out.instances[absolute].output = self.out.aliases[absolute]

    def add(self, layer: FlatLayer):
        if len(self.out.layers) >= MAX_LAYERS:
            if len(self.out.layers) == MAX_LAYERS:
                self.out.errors.append(Diagnostic(f"the spec expands to more than {MAX_LAYERS} layers", layer.loc, "lower a 'repeat' count"))
                self.out.layers.append(layer)
            return
        self.out.layers.append(layer)


def expand(spec: LDict, blocks: dict[str, LDict]) -> Expanded:
    """Flatten ``spec['layers']`` (already structurally valid) with ``blocks`` (own and included)."""
    result = Expanded()
    expander = _Expander(blocks, result)
    expander._defined_at = {}
    env = {name: name for name in spec["inputs"]}
    for name in spec["inputs"]:
        expander._defined_at[name] = loc_of(spec["inputs"], name)
    first = next(iter(spec["inputs"]))  # the first layer reads the first declared input by default
    expander.scope_body(spec["layers"], "", env, first, {}, ())
    result.env = env
    result.broken = expander.broken
    result.tainted = expander.tainted
    return result
