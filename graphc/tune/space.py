"""The search space of ``graphc tune``: dimensions named by ``--set``'s dotted paths, parsed from the
command line or a YAML ``tune:`` mapping, and expanded into candidates.

Grid dimensions (``--grid path=v1,v2``) are crossed; random dimensions
(``--random path=loguniform(1e-4,1e-1)``; also ``uniform(a,b)``, ``int(a,b)`` with both ends included,
``choice(a,b,c)``) are sampled ``--trials`` times per grid point from ``--seed``.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import GraphcError

KINDS = ("grid", "uniform", "loguniform", "int", "choice")


@dataclass
class Dim:
    """One searched value: ``path`` (as ``--set``), ``kind`` (one of KINDS) and ``args``: the values
    for grid and choice, ``[low, high]`` for uniform, loguniform and int."""

    path: str
    kind: str
    args: list

    def sample(self, rng):
        if self.kind in ("grid", "choice"):
            return self.args[int(rng.integers(len(self.args)))]
        lo, hi = self.args
        if self.kind == "int":
            return int(rng.integers(int(lo), int(hi) + 1))
        if self.kind == "loguniform":
            return round_sig(math.exp(rng.uniform(math.log(lo), math.log(hi))))
        return round_sig(float(rng.uniform(lo, hi)))

    def describe(self) -> str:
        if self.kind == "grid":
            return f"{self.path}={','.join(map(as_yaml, self.args))}"
        return f"{self.path}={self.kind}({','.join(map(as_yaml, self.args))})"

    def to_json(self) -> dict:
        return {"path": self.path, "kind": self.kind, "args": self.args}

    @classmethod
    def from_json(cls, d: dict) -> "Dim":
        return cls(d["path"], d["kind"], list(d["args"]))


def round_sig(x: float) -> float:
    return float(f"{x:.4g}")


def as_yaml(v) -> str:
    """A value as ``--set`` reads it (YAML; JSON is YAML)."""
    return json.dumps(v)


def _read_value(raw: str, what: str):
    from ..spec.overrides import parse_assignment

    try:
        return parse_assignment(f"value={raw}")[1]
    except GraphcError:
        raise GraphcError(f"{what}: cannot read the value '{raw}'") from None


def _split(raw: str) -> list[str]:
    """Split on commas outside brackets and quotes: ``1,[2,3],'a,b'`` → three items."""
    items, depth, quote, cur = [], 0, None, ""
    for ch in raw:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(cur.strip())
            cur = ""
            continue
        cur += ch
    items.append(cur.strip())
    return [i for i in items if i != ""]


def _path_and_rest(text: str, flag: str) -> tuple[str, str]:
    path, sep, rest = text.partition("=")
    if not sep or not path.strip() or not rest.strip():
        raise GraphcError(f"{flag} {text}: expected PATH=VALUES, for example {flag} "
                          f"{'train.lr=1e-3,1e-2' if flag == '--grid' else 'train.lr=loguniform(1e-4,1e-1)'}")
    return path.strip(), rest.strip()


def parse_grid(text: str) -> Dim:
    """``layers.fc1.units=50,100,200`` (values read as YAML)."""
    path, rest = _path_and_rest(text, "--grid")
    values = [_read_value(v, f"--grid {text}") for v in _split(rest)]
    if not values:
        raise GraphcError(f"--grid {text}: no values")
    return Dim(path, "grid", values)


def parse_random(text: str, flag: str = "--random") -> Dim:
    """``train.lr=loguniform(1e-4,1e-1)``, ``uniform(a,b)``, ``int(a,b)``, ``choice(a,b,c)``."""
    path, rest = _path_and_rest(text, flag)
    m = re.fullmatch(r"(\w+)\s*\((.*)\)", rest)
    kinds = ("uniform", "loguniform", "int", "choice")
    if not m or m.group(1) not in kinds:
        from ..errors import did_you_mean

        got = m.group(1) if m else rest
        raise GraphcError(f"{flag} {text}: '{got}' is not a distribution",
                          hint=(did_you_mean(got, list(kinds), "distribution") if m else None)
                          or "use uniform(a,b), loguniform(a,b), int(a,b) or choice(a,b,...)")
    kind = m.group(1)
    args = [_read_value(v, f"{flag} {text}") for v in _split(m.group(2))]
    return _checked(Dim(path, kind, args), f"{flag} {text}")


def _checked(d: Dim, what: str) -> Dim:
    if d.kind == "choice":
        if not d.args:
            raise GraphcError(f"{what}: choice() needs at least one value")
        return d
    if d.kind == "grid":
        return d
    if len(d.args) != 2 or not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in d.args):
        raise GraphcError(f"{what}: {d.kind}() takes two numbers, low and high")
    lo, hi = d.args
    if lo > hi:
        raise GraphcError(f"{what}: low {lo} is above high {hi}")
    if d.kind == "loguniform" and lo <= 0:
        raise GraphcError(f"{what}: loguniform() needs low > 0 (it samples log(low)..log(high))")
    if d.kind == "int" and (lo != int(lo) or hi != int(hi)):
        raise GraphcError(f"{what}: int() takes whole numbers")
    return Dim(d.path, d.kind, [int(lo), int(hi)] if d.kind == "int" else [float(lo), float(hi)])


def space_from_file(path: str | Path) -> tuple[list[Dim], dict]:
    """A search space from YAML — a spec's ``tune:`` section, or a file with a ``tune:`` mapping (or
    just the mapping at the top level) — with ``grid: {path: [values]}``,
    ``random: {path: "loguniform(1e-4,1e-1)"}`` and optional ``trials:``, ``seed:``."""
    from ..spec.safe_yaml import load_yaml_file

    data = load_yaml_file(path)
    if isinstance(data, dict) and "tune" in data:
        data = data["tune"]
    if not isinstance(data, dict):
        raise GraphcError(f"--space {path}: expected a mapping with grid: and/or random:")
    unknown = set(data) - {"grid", "random", "trials", "seed"}
    if unknown:
        raise GraphcError(f"--space {path}: unknown keys {sorted(unknown)}", hint="use grid, random, trials, seed")
    dims = []
    for p, values in (data.get("grid") or {}).items():
        values = values if isinstance(values, list) else [values]
        dims.append(Dim(str(p), "grid", [plain(v) for v in values]))
    for p, dist in (data.get("random") or {}).items():
        dims.append(parse_random(f"{p}={dist}", f"--space {path}: random"))
    extra = {k: data[k] for k in ("trials", "seed") if k in data}
    return dims, extra


def has_tune_section(path) -> bool:
    """Whether a spec file has a ``tune:`` section (the search space when no --space is given)."""
    from ..spec.safe_yaml import load_yaml_file

    data = load_yaml_file(path)
    return isinstance(data, dict) and isinstance(data.get("tune"), dict)


def plain(v):
    return json.loads(json.dumps(v, default=str))


def expand(dims: list[Dim], trials: int, seed: int) -> list[dict[str, Any]]:
    """Every candidate: the grid's cross product, times ``trials`` random draws when there are random
    dimensions (reproducible from ``seed``)."""
    import numpy as np

    paths = [d.path for d in dims]
    if len(set(paths)) != len(paths):
        dup = sorted({p for p in paths if paths.count(p) > 1})
        raise GraphcError(f"the search space names {', '.join(dup)} more than once")
    grid = [d for d in dims if d.kind == "grid"]
    rand = [d for d in dims if d.kind != "grid"]
    rng = np.random.default_rng(seed)
    out = []
    for point in itertools.product(*(d.args for d in grid)):
        for _ in range(trials if rand else 1):
            cand = dict(zip((d.path for d in grid), point))
            for d in rand:
                cand[d.path] = d.sample(rng)
            out.append({d.path: cand[d.path] for d in dims})
    return out


def sets_of(values: dict[str, Any]) -> list[str]:
    return [f"{p}={as_yaml(v)}" for p, v in values.items()]


def values_text(values: dict[str, Any]) -> str:
    return " ".join(f"{p}={fmt_value(v)}" for p, v in values.items())


def fmt_value(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v) if not isinstance(v, str) else v
