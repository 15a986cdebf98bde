"""The static pre-filter of ``graphc tune``: every candidate is compiled before it is trained, and
rejected (with the values, the layer and the message) when its shapes fail or it exceeds a budget.

Memory budget: ``params × 4 bytes + activation bytes per example × train.batch_size`` (float32).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..errors import GraphcError
from .space import sets_of, values_text

SUFFIXES = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "kb": 2**10, "mb": 2**20, "gb": 2**30, "tb": 2**40,
            "kib": 2**10, "mib": 2**20, "gib": 2**30, "b": 1}


@dataclass
class Budgets:
    max_params: int | None = None
    max_macs: int | None = None
    max_memory: int | None = None


def parse_amount(text: str) -> int:
    """``1000``, ``2.5M``, ``1e6``, ``64MB``, ``1GiB`` → an integer (k/M/G/T decimal; kB/MB/GB binary)."""
    m = re.fullmatch(r"\s*([0-9.eE+-]+)\s*([A-Za-z]*)\s*", str(text))
    if not m or m.group(2).lower() not in SUFFIXES:
        raise ValueError(f"'{text}' is not an amount (examples: 500000, 2.5M, 64MB)")
    try:
        return int(float(m.group(1)) * SUFFIXES[m.group(2).lower()])
    except ValueError:
        raise ValueError(f"'{text}' is not an amount (examples: 500000, 2.5M, 64MB)") from None


def prefilter(spec: str, fixed: list[str], values: dict[str, Any], budgets: Budgets) -> dict:
    """Compile one candidate without training it: ``{"status": "ok", params, macs, memory_bytes}`` or
    ``{"status": "rejected", "reason": …, "layer": …}`` naming the values, the layer and the message."""
    from ..report import compile_report
    from ..train.training_spec import data_inputs, load_for_training

    shown = values_text(values) or "(the spec as it is)"
    try:
        graph, t, _, _ = load_for_training(spec, list(fixed) + sets_of(values))
        data_inputs(graph)
    except GraphcError as e:
        first = e.diagnostics[0]
        layer = _layer_of(first.message)
        msgs = "; ".join(f"{d.message}" + (f" ({d.loc})" if d.loc else "") + (f" — {d.hint}" if d.hint else "")
                         for d in e.diagnostics)
        return {"status": "rejected", "layer": layer, "reason": f"{shown}: {msgs}"}
    report = compile_report(graph)
    params, macs = report["params_total"], report["macs_total"]
    memory = 4 * params + report["activation_bytes_total"] * t.batch_size
    out = {"status": "ok", "params": params, "macs": macs, "memory_bytes": memory}

    def largest(key):
        rows = [r for r in report["layers"] if r.get(key)]
        return max(rows, key=lambda r: r[key]) if rows else None

    for name, have, limit, key, unit in (("params", params, budgets.max_params, "params", ""),
                                         ("MACs", macs, budgets.max_macs, "macs", ""),
                                         ("memory", memory, budgets.max_memory, "activation_bytes", " bytes")):
        if limit is not None and have > limit:
            big = largest(key)
            where = f" (largest layer: {big['op']} '{big['name']}' with {big[key]:,}{unit})" if big else ""
            flag = {"params": "--max-params", "MACs": "--max-macs", "memory": "--max-trial-memory"}[name]
            return {**out, "status": "rejected", "layer": big["name"] if big else None,
                    "reason": f"{shown}: {name} {have:,}{unit} exceed {flag} {limit:,}{where}"}
    return out


def _layer_of(message: str) -> str | None:
    m = re.match(r"\s*[\w.]+ '([^']+)'", message)
    return m.group(1) if m else None
