"""graphc.chart: nice ticks, and a chart drawn by the real graphviz-pure whose curve lands where the
axes put its values (decoded by matplotlib's PNG reader, not graphc's writer)."""

from __future__ import annotations

import numpy as np

from graphc.chart import Panel, Series, log_ticks, nice_ticks, png


def test_ticks_are_nice_numbers():
    assert nice_ticks(0.0, 10.0) == [0, 5, 10]
    assert nice_ticks(1, 50, integer=True) == [0, 20, 40]  # the axis itself reaches past 50
    assert nice_ticks(0.013, 0.071) == [0.0, 0.02, 0.04, 0.06]  # from the step's multiple at or below lo
    assert nice_ticks(1, 3, integer=True) == [1, 2, 3]  # never a step below one epoch
    assert nice_ticks(5.0, 5.0)[0] < 5.0 < nice_ticks(5.0, 5.0)[-1]  # a flat series still gets a range
    assert log_ticks(0.003, 2.0) == [0.001, 0.01, 0.1, 1.0, 10.0]
    assert log_ticks(0.3, 2.0) == [0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0]


def test_a_rising_line_is_drawn_from_the_lower_left_to_the_upper_right(tmp_path):
    import matplotlib.image

    data = png([Panel("t", "x", "y", [Series("rising", [0, 1, 2, 3], [0.0, 1.0, 2.0, 3.0], "#ff0000")])], cols=1)
    (tmp_path / "c.png").write_bytes(data)
    rgb = np.round(matplotlib.image.imread(tmp_path / "c.png")[..., :3] * 255)
    red = (rgb[..., 0] > 200) & (rgb[..., 1] < 80) & (rgb[..., 2] < 80)
    rows, cols = np.nonzero(red)
    assert red.sum() > 100
    low_x, high_x = cols < np.percentile(cols, 20), cols > np.percentile(cols, 80)
    assert rows[low_x].mean() > rows[high_x].mean() + 0.3 * rgb.shape[0]  # image rows grow downwards
