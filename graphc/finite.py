"""Non-finite numbers at the boundaries: data that comes in, results and JSON that go out.

A NaN or Inf in an input array gives NaN scores without a word, and a bare ``NaN`` token in JSON is
rejected by strict parsers; both are stopped here, in one place. A result that overflowed (finite
inputs, NaN or ±Inf out) is written as computed and named in one warning line.
"""

from __future__ import annotations

import json
import math

import numpy as np

from .errors import GraphcError

ALLOW_HINT = "fix the data, or pass --allow-nonfinite if the model is meant to see them"


def first_nonfinite(array: np.ndarray) -> tuple[int, ...] | None:
    """The index of the first NaN/±Inf entry of ``array`` (C order), or None (integer arrays: None)."""
    a = np.asarray(array)
    if a.dtype.kind not in "fc":
        return None
    bad = ~np.isfinite(a)
    if not bad.any():
        return None
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(bad.reshape(-1))), a.shape))


def _index(index: tuple[int, ...]) -> str:
    return f"[{', '.join(map(str, index))}]"


def require_finite(arrays: dict[str, np.ndarray], source: str) -> None:
    """Refuse arrays holding NaN or ±Inf: one diagnostic per array, naming it and its first bad index."""
    problems = []
    for name, value in arrays.items():
        index = first_nonfinite(value)
        if index is not None:
            problems.append(f"{source}: '{name}' is not finite at index {_index(index)} (value {np.asarray(value)[index]})")
    if problems:
        raise GraphcError("; ".join(problems), hint=ALLOW_HINT)


def nonfinite_results(arrays: dict[str, np.ndarray], what: str, shown: int = 3) -> str | None:
    """Which of ``arrays`` hold NaN or ±Inf, in one sentence (the first ``shown`` named with their count
    and first bad index and value, the rest counted), or None when all are finite."""
    found = []
    for name, value in arrays.items():
        index = first_nonfinite(value)
        if index is not None:
            a = np.asarray(value)
            where = f"{int(np.count_nonzero(~np.isfinite(a))):,} of {a.size:,} values, the first at {_index(index)}: " if a.ndim else ""
            found.append(f"{what} '{name}' ({where}{a[index]})")
    if not found:
        return None
    more = f" and {len(found) - shown} more" if len(found) > shown else ""
    return f"NaN or ±Inf in {', '.join(found[:shown])}{more}, written as computed"


def json_safe(value):
    """``value`` with every non-finite float (Python or NumPy) replaced by None, NumPy scalars by Python ones."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def dumps(value, **kwargs) -> str:
    """Strict JSON (any parser reads it): ``null`` for a missing or non-finite number."""
    return json.dumps(json_safe(value), allow_nan=False, **kwargs)
