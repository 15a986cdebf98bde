"""``tune.png``: the validation metric against each searched value."""

from __future__ import annotations

from pathlib import Path

from ..chart import COLORS, Panel, Series, png
from ..files import write_atomic
from .space import Dim
from .store import Search, sort_key


def plot(dims: list[Dim], trials: list[dict], title: str) -> bytes:
    """Validation accuracy against each searched value, one panel per dimension, the best trial a red
    star (log x for log-uniform dimensions and for numeric grids spanning 100× or more; categories
    and booleans evenly spaced by name)."""
    best = min(trials, key=sort_key)
    panels = []
    for d in dims:
        xs = [t["values"][d.path] for t in trials]
        ys = [100 * t["val_accuracy"] for t in trials]
        bx = best["values"][d.path]
        numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs)
        ticks = None
        if not numeric:
            labels = sorted({str(x) for x in xs})
            pos = {s: i for i, s in enumerate(labels)}
            xs, bx = [pos[str(x)] for x in xs], pos[str(bx)]
            ticks = list(enumerate(labels))
        log = d.kind == "loguniform" or (numeric and d.kind == "grid" and min(xs) > 0 and max(xs) / min(xs) >= 100)
        panels.append(Panel("", f"{d.path} ({d.kind})", "validation accuracy (%)",
                            [Series("", xs, ys, COLORS[0], line=False, size=6),
                             Series(f"best ({best['id']})", [bx], [100 * best["val_accuracy"]], COLORS[3], line=False,
                                    marker="star", size=13)],
                            xlog=log, xticks=ticks, legend="lower right"))
    return png(panels, cols=min(len(dims), 3), size=(300, 245), title=f"{title}: {len(trials)} trained trials")


def write_plot(search: Search) -> Path | None:
    """``tune.png`` in the search's directory, when a trial has trained; its path, else None."""
    ok = [t for t in search.trials if t["status"] == "ok" and t.get("val_accuracy") is not None]
    if not ok or not search.state["dims"]:
        return None
    write_atomic(search.out / "tune.png", plot(search.dims(), ok, str(search.state.get("name"))))
    return search.out / "tune.png"
