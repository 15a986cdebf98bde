"""Line and scatter charts as PNG without a plotting library (``curves.png``, ``tune.png``).

A chart is written as DOT text in which every element has a pinned position (``pos="x,y!"``, in
points, y up): the frame is a fixed-size box, grid lines and curves are straight edges between
points, markers are small nodes, text is plaintext nodes. graphviz-pure (a graphc dependency, the
same program ``graphc viz`` falls back to) draws it with ``-Kneato -n2``, which keeps the given
positions, so the picture costs one short subprocess instead of importing matplotlib (about 0.4 s
of import and 0.3 s of drawing for the training curves).

Axes map a value ``v`` in ``[lo, hi]`` to ``left + (v - lo) / (hi - lo) · width`` (on a log axis,
``log10 v`` in ``[log10 lo, log10 hi]``); ticks are "nice" numbers ``{1, 2, 5} · 10^k``.
"""

from __future__ import annotations

import html
import math
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .errors import GraphcError

#: matplotlib's first colours, so the pictures look as they did
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd")
FONT = "Helvetica"
MARGIN = {"left": 58.0, "right": 14.0, "bottom": 42.0, "top": 40.0}  # around each panel's frame, in points


@dataclass
class Series:
    label: str
    xs: list[float]
    ys: list[float]  # NaN or None: no point there (the line breaks)
    color: str = COLORS[0]
    line: bool = True  # False: markers only (a scatter)
    marker: str = "circle"  # or "star"
    size: float = 4.0  # marker diameter in points


@dataclass
class Panel:
    title: str
    xlabel: str
    ylabel: str
    series: list[Series] = field(default_factory=list)
    xlog: bool = False
    ylog: bool = False
    xticks: list[tuple[float, str]] | None = None  # fixed ticks (categories); else nice numbers
    integer_x: bool = False  # only whole-number ticks on x (epochs)
    legend: str = "upper right"  # or "lower right"


def graphviz_pure() -> str | None:
    """The ``graphviz-pure`` program: on PATH, or beside this Python (a venv's ``bin``, used without
    activating the venv)."""
    found = shutil.which("graphviz-pure")
    if found:
        return found
    import sysconfig

    for folder in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        candidate = Path(folder) / "graphviz-pure"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def _finite(v) -> bool:
    return v is not None and isinstance(v, (int, float)) and math.isfinite(v)


def nice_ticks(lo: float, hi: float, count: int = 5, integer: bool = False) -> list[float]:
    """Ticks spaced by the smallest ``{1, 2, 5} · 10^k`` (at least 1 if ``integer``) that gives at most
    about ``count`` of them over ``[lo, hi]`` (widened when empty): from the step's multiple at or
    below ``lo`` up to ``hi``; the axis starts at the first tick and reaches past ``hi``."""
    if hi <= lo:
        lo, hi = lo - (abs(lo) or 1) * 0.5, hi + (abs(hi) or 1) * 0.5
    raw = (hi - lo) / max(count - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    if integer:
        step = max(step, 1.0)
    start = math.floor(lo / step + 1e-9) * step
    ticks, k = [], 0
    while start + k * step <= hi + step * 1e-9:
        ticks.append(round(start + k * step, 12))
        k += 1
    return ticks if len(ticks) > 1 else [lo, hi]


def log_ticks(lo: float, hi: float) -> list[float]:
    """Powers of ten from below ``lo`` to above ``hi``, with 2 and 5 between them when that spans few decades."""
    a, b = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    if b == a:
        b += 1
    steps = (1,) if b - a > 2 else (1, 2, 5)
    return [m * 10.0**e for e in range(a, b + 1) for m in steps if m * 10.0**e <= 10.0**b]


def _label(v: float) -> str:
    return f"{v:g}" if abs(v) < 1e5 else f"{v:.0e}"


class _Axis:
    """One axis: the value range (widened to its outer ticks) and the mapping to points."""

    def __init__(self, values: list[float], log: bool, start: float, length: float, fixed=None, integer=False):
        values = [v for v in values if _finite(v) and (v > 0 or not log)] or [1.0]
        lo, hi = min(values), max(values)
        self.log, self.start, self.length = log, start, length
        if fixed is not None:
            self.ticks = list(fixed)
            positions = [p for p, _ in fixed] + values
            lo, hi = min(positions) - 0.5, max(positions) + 0.5
        elif log:
            pad = 10 ** 0.08
            lo, hi = lo / pad, hi * pad
            self.ticks = [(t, _label(t)) for t in log_ticks(lo, hi) if lo <= t <= hi]
        else:
            ticks = nice_ticks(lo, hi, integer=integer)
            span = (hi - lo) or 1.0
            lo, hi = min(lo - 0.06 * span, ticks[0]), max(hi + 0.06 * span, ticks[-1])
            self.ticks = [(t, _label(t)) for t in ticks if lo <= t <= hi]
        self.lo, self.hi = (math.log10(lo), math.log10(hi)) if log else (lo, hi)

    def __call__(self, v: float) -> float:
        t = math.log10(v) if self.log else v
        return self.start + (t - self.lo) / ((self.hi - self.lo) or 1.0) * self.length


class _Dot:
    """The DOT statements of one picture, with generated node names."""

    def __init__(self):
        self.lines: list[str] = []
        self.count = 0

    def node(self, x: float, y: float, attrs: str) -> str:
        name = f"p{self.count}"
        self.count += 1
        self.lines.append(f'  {name} [pos="{x:.2f},{y:.2f}!", {attrs}];')
        return name

    def anchor(self, x: float, y: float) -> str:
        return self.node(x, y, 'shape=point, width=0, height=0, style=invis, label=""')

    def text(self, x: float, y: float, s: str, size: float = 10, color: str = "#222222", bold: bool = False) -> str | None:
        if not s:
            return None
        label = f"<<b>{html.escape(str(s), quote=False)}</b>>" if bold else f'"{_escape(s)}"'
        return self.node(x, y, f'shape=plaintext, margin=0, width=0, height=0, fontsize={size}, fontcolor="{color}", '
                               f'fontname="{FONT}", label={label}')

    def line(self, a: str, b: str, color: str, width: float = 1.0, dashed: bool = False) -> None:
        self.lines.append(f'  {a} -- {b} [color="{color}", penwidth={width}{", style=dashed" if dashed else ""}];')


def _escape(s: str) -> str:
    return str(s).replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")


def _text_width(s: str, size: float) -> float:
    return 0.55 * size * len(s)  # Helvetica's average advance; enough to keep legend text off the lines


def _panel(d: _Dot, p: Panel, x0: float, y0: float, width: float, height: float) -> None:
    left, bottom = x0 + MARGIN["left"], y0 + MARGIN["bottom"]
    w, h = width - MARGIN["left"] - MARGIN["right"], height - MARGIN["bottom"] - MARGIN["top"]
    xs = [x for s in p.series for x, y in zip(s.xs, s.ys) if _finite(y)]
    ys = [y for s in p.series for y in s.ys if _finite(y)]
    ax = _Axis(xs, p.xlog, left, w, p.xticks, p.integer_x)
    ay = _Axis(ys, p.ylog, bottom, h)
    d.node(left + w / 2, bottom + h / 2, f'shape=box, fixedsize=true, width={w / 72:.4f}, height={h / 72:.4f}, '
                                         'color="#9ca3af", style=filled, fillcolor=white, label=""')
    for t, text in ax.ticks:
        x = ax(t) if not (p.xlog and t <= 0) else left
        d.line(d.anchor(x, bottom), d.anchor(x, bottom + h), "#e5e7eb", 0.6)
        d.text(x, bottom - 10, text, 8)
    for t, text in ay.ticks:
        y = ay(t)
        d.line(d.anchor(left, y), d.anchor(left + w, y), "#e5e7eb", 0.6)
        d.text(left - 6 - _text_width(text, 8) / 2, y, text, 8)
    d.text(left + w / 2, bottom - 28, p.xlabel, 9)
    d.text(left + _text_width(p.ylabel, 9) / 2 - 40, bottom + h + 9, p.ylabel, 9)
    d.text(left + w / 2, bottom + h + 24, p.title, 11, bold=True)
    for s in p.series:
        points = [(ax(x), ay(y)) if _finite(y) and (y > 0 or not p.ylog) else None for x, y in zip(s.xs, s.ys)]
        shape = "star" if s.marker == "star" else "circle"
        prev = None
        for pt in points:
            if pt is None:
                prev = None
                continue
            here = d.node(*pt, f'shape={shape}, fixedsize=true, width={s.size / 72:.4f}, height={s.size / 72:.4f}, '
                               f'style=filled, color="{s.color}", fillcolor="{s.color}", label=""')
            if s.line and prev is not None:
                d.line(prev, here, s.color, 1.5)
            prev = here
    labelled = [s for s in p.series if s.label]
    longest = max((_text_width(s.label, 8) for s in labelled), default=0)
    for i, s in enumerate(labelled):  # the legend, inside the frame's corner
        y = (bottom + h - 12 - 13 * i) if p.legend == "upper right" else (bottom + 10 + 13 * (len(labelled) - 1 - i))
        x = left + w - 10 - longest
        if s.line:
            d.line(d.anchor(x - 22, y), d.anchor(x - 6, y), s.color, 1.5)
        d.node(x - 14, y, f'shape={"star" if s.marker == "star" else "circle"}, fixedsize=true, width={min(s.size, 8) / 72:.4f}, '
                          f'height={min(s.size, 8) / 72:.4f}, style=filled, color="{s.color}", fillcolor="{s.color}", label=""')
        d.text(x + _text_width(s.label, 8) / 2, y, s.label, 8)


def to_dot(panels: list[Panel], cols: int = 2, size: tuple[float, float] = (500, 400), title: str | None = None) -> str:
    """The DOT text of ``panels`` laid out in ``cols`` columns, each panel ``size`` points (the PNG is
    drawn at 96 dpi: 4/3 pixel a point), with an optional ``title`` above them all."""
    cols = max(1, min(cols, len(panels)))
    rows = math.ceil(len(panels) / cols)
    width, height = size
    top = 24.0 if title else 0.0
    d = _Dot()
    for i, p in enumerate(panels):
        r, c = divmod(i, cols)
        _panel(d, p, c * width, (rows - 1 - r) * height, width, height)
    if title:
        d.text(cols * width / 2, rows * height + top / 2, title, 12, bold=True)
    d.anchor(0, 0)  # two corners fix the canvas' extent
    d.anchor(cols * width, rows * height + top)
    return ("graph chart {\n"
            '  graph [bgcolor=white, pad=0, outputorder=nodesfirst, splines=line];\n'
            "  edge [headclip=false, tailclip=false];\n" + "\n".join(d.lines) + "\n}\n")


def png(panels: list[Panel], cols: int = 2, size: tuple[float, float] = (500, 400), title: str | None = None) -> bytes:
    """The chart (see :func:`to_dot`) as PNG bytes, drawn by graphviz-pure."""
    program = graphviz_pure() or shutil.which("neato")
    if program is None:
        raise GraphcError("cannot draw the chart: graphviz-pure (a graphc dependency) is not installed",
                          hint="pip install graphviz-pure")
    try:
        done = subprocess.run([program, "-Kneato", "-n2", "-Tpng"], input=to_dot(panels, cols, size, title).encode("utf-8"),
                              capture_output=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise GraphcError(f"could not run {program}: {e}") from None
    if done.returncode != 0 or not done.stdout.startswith(b"\x89PNG"):
        raise GraphcError(f"{Path(program).name} could not draw the chart (exit {done.returncode}): "
                          f"{done.stderr.decode(errors='replace').strip()}")
    return done.stdout
