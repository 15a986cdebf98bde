"""Training curves as a PNG: loss (training batches and validation) and accuracy (training and
validation) per epoch, drawn with matplotlib's non-interactive Agg backend."""

from __future__ import annotations

import io
import math


def plot(history: list[dict], title: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    epochs = [r["epoch"] for r in history]

    def series(key):
        return [r.get(key) if r.get(key) is not None else float("nan") for r in history]

    fig = Figure(figsize=(10, 4), dpi=100)
    loss_ax, acc_ax = fig.subplots(1, 2)
    loss_ax.plot(epochs, series("loss"), marker=".", label="training (batches)")
    if any(r.get("val_loss") is not None for r in history):
        loss_ax.plot(epochs, series("val_loss"), marker=".", label="validation")
    loss_ax.set(title=f"{title}: loss", xlabel="epoch", ylabel="loss")
    if all(v > 0 for v in series("loss") if math.isfinite(v)):
        loss_ax.set_yscale("log")
    acc_ax.plot(epochs, [100 * v for v in series("train_accuracy")], marker=".", label="training")
    if any(r.get("val_accuracy") is not None for r in history):
        acc_ax.plot(epochs, [100 * v for v in series("val_accuracy")], marker=".", label="validation")
    acc_ax.set(title=f"{title}: accuracy", xlabel="epoch", ylabel="accuracy (%)")
    for ax in (loss_ax, acc_ax):
        ax.grid(True, alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
