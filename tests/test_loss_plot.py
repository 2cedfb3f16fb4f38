"""LossPlot: the QPainter live loss plot used by the Train widget."""

from __future__ import annotations

import math

import pytest

pytest.importorskip("qtpy")
pytest.importorskip("pytestqt")

pytestmark = pytest.mark.gui

from qtpy.QtGui import QImage, QPainter  # noqa: E402

from napari_nlcl._napari._plot import (  # noqa: E402
    LossPlot,
    attach_to,
    loss_plot_widget,
    wrap_native,
)


@pytest.fixture
def plot(qtbot):
    w = LossPlot()
    qtbot.addWidget(w)
    w.resize(300, 200)
    return w


def _colours(image: QImage, stride: int = 3) -> set[int]:
    return {
        image.pixel(x, y)
        for y in range(0, image.height(), stride)
        for x in range(0, image.width(), stride)
    }


def _paint_strict(plot: LossPlot) -> QImage:
    """Paint via the internal routine so exceptions are not swallowed."""
    img = QImage(plot.width(), plot.height(), QImage.Format.Format_ARGB32)
    p = QPainter(img)
    try:
        plot._paint(p)
    finally:
        p.end()
    return img


def test_add_points_creates_series(plot):
    plot.add_point(0, {"total": 1.0, "nce": 0.5})
    plot.add_point(1, {"total": 0.8})
    plot.add_point(2, {"total": 0.6, "nce": 0.4, "tv": 0.01})  # new name mid-run
    s = plot.series()
    assert set(s) == {"total", "nce", "tv"}
    assert s["total"] == [(0, 1.0), (1, 0.8), (2, 0.6)]
    assert s["nce"] == [(0, 0.5), (2, 0.4)]  # skipped step 1
    s["total"].append((9, 9.0))  # a copy
    assert len(plot.series()["total"]) == 3
    plot.clear()
    assert plot.series() == {}


def test_non_finite_ignored(plot):
    plot.add_point(0, {"a": float("nan"), "b": float("inf"), "c": 1.0, "d": "x"})
    plot.add_point(1, {"a": -math.inf})
    assert plot.series() == {"c": [(0, 1.0)]}


def test_decimation_bounded_and_keeps_latest(qtbot):
    w = LossPlot(max_points=100)
    qtbot.addWidget(w)
    n = 10_000
    for i in range(n):
        w.add_point(i, {"loss": 1.0 / (i + 1), "aux": float(i)} if i % 2 else {"loss": 1.0 / (i + 1)})
    s = w.series()
    assert 0 < len(s["loss"]) <= 100
    assert 0 < len(s["aux"]) <= 100
    assert s["loss"][-1] == (n - 1, 1.0 / n)
    assert s["loss"][0][0] == 0  # the first point survives too
    steps = [st for st, _ in s["loss"]]
    assert steps == sorted(steps)
    assert s["aux"][-1] == (n - 1, float(n - 1))


def test_log_mode_skips_non_positive(plot):
    assert plot.log_y is True
    plot.add_point(0, {"a": 1.0, "b": -1.0})
    plot.add_point(1, {"a": 0.0, "b": 0.0})
    plot.add_point(2, {"a": 0.01})
    drawn = plot._plot_data()
    assert set(drawn) == {"a"}
    assert drawn["a"] == [(0.0, 0.0), (2.0, -2.0)]
    plot.log_y = False
    drawn = plot._plot_data()
    assert drawn["b"] == [(0.0, -1.0), (1.0, 0.0)]
    assert len(drawn["a"]) == 3
    assert len(plot.series()["b"]) == 2  # stored either way


def test_renders_something(plot):
    for i in range(50):
        plot.add_point(i * 10, {"total": 2.0 * 0.9**i, "nce": 0.5 + 0.01 * i})
    img = _paint_strict(plot)
    assert len(_colours(img)) > 5
    grabbed = plot.grab().toImage()
    assert grabbed.width() == 300 and grabbed.height() == 200
    assert len(_colours(grabbed)) > 5
    plot.log_y = False
    assert len(_colours(plot.grab().toImage())) > 5


@pytest.mark.parametrize(
    "points",
    [
        [],
        [(5, {"a": 1.0})],  # single point
        [(0, {"a": 2.0}), (1, {"a": 2.0})],  # all equal
        [(3, {"a": 0.0})],  # nothing positive in log mode
        [(0, {"a": 1e-8}), (0, {"b": 1e8})],  # same step, huge range
    ],
)
def test_degenerate_data_renders(plot, points):
    for step, losses in points:
        plot.add_point(step, losses)
    img = _paint_strict(plot)  # raises if painting fails
    assert len(_colours(img)) > 1  # text or curve drawn over the background
    assert not plot.grab().isNull()


def test_minimum_size_hint(plot):
    hint = plot.minimumSizeHint()
    assert hint.width() >= 200 and hint.height() >= 120


def test_attach_to_magicgui_container(qtbot):
    from magicgui.widgets import Container, Label

    mgui_plot, plot = loss_plot_widget()
    assert isinstance(plot, LossPlot)
    assert mgui_plot.native is plot
    c = Container(widgets=[Label(value="train")])
    c.append(mgui_plot)
    qtbot.addWidget(c.native)
    assert c[-1] is mgui_plot
    assert c.loss_plot is mgui_plot
    plot.add_point(0, {"a": 1.0})
    c.show()
    mgui_plot.visible = False
    assert not plot.isVisible()
    mgui_plot.visible = True
    assert plot.isVisible()

    other = LossPlot()
    w = wrap_native(other, name="p2")
    c.append(w)
    assert w.native is other

    raw = LossPlot()
    attach_to(c, raw)
    assert c.native.layout().indexOf(raw) >= 0 or c.native.isAncestorOf(raw)
    c.close()
