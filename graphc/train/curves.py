"""``curves.png``: loss (training batches and validation, log scale when positive) and accuracy
(training and validation) per epoch, drawn by :mod:`graphc.chart`."""

from __future__ import annotations

import math

from ..chart import COLORS, Panel, Series, png


def panels(history: list[dict], title: str) -> list[Panel]:
    epochs = [r["epoch"] for r in history]

    def series(key, scale=1.0):
        return [scale * r[key] if r.get(key) is not None else float("nan") for r in history]

    loss = Panel(f"{title}: loss", "epoch", "loss", [Series("training (batches)", epochs, series("loss"), COLORS[0])], integer_x=True)
    acc = Panel(f"{title}: accuracy", "epoch", "accuracy (%)", [Series("training", epochs, series("train_accuracy", 100), COLORS[0])],
                integer_x=True, legend="lower right")
    if any(r.get("val_loss") is not None for r in history):
        loss.series.append(Series("validation", epochs, series("val_loss"), COLORS[1]))
    if any(r.get("val_accuracy") is not None for r in history):
        acc.series.append(Series("validation", epochs, series("val_accuracy", 100), COLORS[1]))
    loss.ylog = all(v > 0 for v in series("loss") if math.isfinite(v))
    return [loss, acc]


def plot(history: list[dict], title: str) -> bytes:
    """The PNG bytes: two panels side by side (1333 × 533 pixels)."""
    return png(panels(history, title), cols=2, size=(500, 400))
