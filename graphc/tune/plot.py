"""``tune.png``: the validation metric against each searched value."""

from __future__ import annotations

import io
import math
from pathlib import Path

from ..files import write_atomic
from .space import Dim
from .store import Search, sort_key


def plot(dims: list[Dim], trials: list[dict], title: str) -> bytes:
    """Validation accuracy against each searched value (log x for log-uniform dimensions)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    n = len(dims)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(4.2 * cols, 3.4 * rows), dpi=100)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    best = min(trials, key=sort_key)
    for ax, d in zip(axes, dims):
        xs = [t["values"][d.path] for t in trials]
        ys = [100 * t["val_accuracy"] for t in trials]
        numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs)
        if not numeric:
            labels = sorted({str(x) for x in xs})
            pos = {s: i for i, s in enumerate(labels)}
            xs = [pos[str(x)] for x in xs]
            ax.set_xticks(range(len(labels)), labels)
        ax.scatter(xs, ys, s=22, alpha=0.75)
        bx = best["values"][d.path]
        ax.scatter([bx if numeric else pos[str(bx)]], [100 * best["val_accuracy"]], marker="*", s=160, color="C3",
                   label=f"best ({best['id']})")
        if d.kind == "loguniform" or (numeric and d.kind == "grid" and min(xs) > 0 and max(xs) / min(xs) >= 100):
            ax.set_xscale("log")
        ax.set(xlabel=f"{d.path} ({d.kind})", ylabel="validation accuracy (%)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    for ax in axes[n:]:
        ax.set_visible(False)
    fig.suptitle(f"{title}: {len(trials)} trained trials")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def write_plot(search: Search) -> Path | None:
    """``tune.png`` in the search's directory, when a trial has trained; its path, else None."""
    ok = [t for t in search.trials if t["status"] == "ok" and t.get("val_accuracy") is not None]
    if not ok or not search.state["dims"]:
        return None
    write_atomic(search.out / "tune.png", plot(search.dims(), ok, str(search.state.get("name"))))
    return search.out / "tune.png"
