"""A dependency-free live line plot of training losses, used by the Train widget.

:class:`LossPlot` is a plain :class:`qtpy.QtWidgets.QWidget` that draws its
series with :class:`~qtpy.QtGui.QPainter`; it needs neither matplotlib nor
pyqtgraph.  The Train dock widget feeds it from the training worker's progress
signal (always in the GUI thread) with::

    plot.add_point(step, {"total": 0.31, "contrastive": 0.12, ...})

Every loss name becomes a series the first time it is seen; a series may skip
steps.  To keep long runs cheap, each series holds at most ``max_points``
points: when a series grows past the limit, every second point of its older
half is dropped (the newest points are always kept at full resolution, and the
latest point is never dropped).  The y axis is logarithmic by default because
losses often span several decades.

The dock widgets are magicgui :class:`~magicgui.widgets.Container` objects,
whose ``append`` accepts only magicgui widgets.  :func:`wrap_native` wraps any
existing QWidget in a real :class:`magicgui.widgets.Widget` (via a tiny
backend class built on magicgui's own Qt backend), so it can be appended,
labelled, shown and hidden like any other magicgui widget::

    mgui_plot, plot = loss_plot_widget()
    container.append(mgui_plot)          # or: attach_to(container, plot)

:func:`attach_to` is the low-level alternative: it adds the native widget to
the container's native Qt layout (the container then does not know about it).
"""

from __future__ import annotations

import math
from typing import Any

from qtpy.QtCore import QPointF, QRectF, QSize, Qt
from qtpy.QtGui import QColor, QFont, QFontMetrics, QPainter, QPalette, QPen, QPolygonF
from qtpy.QtWidgets import QSizePolicy, QWidget

__all__ = ["PALETTE", "LossPlot", "attach_to", "loss_plot_widget", "wrap_native"]

#: Series colours (tab10-like), assigned in order of first appearance.
PALETTE: tuple[str, ...] = (
    "#1f77b4",  # blue
    "#ff7f0e",  # orange
    "#2ca02c",  # green
    "#d62728",  # red
    "#9467bd",  # purple
    "#8c564b",  # brown
    "#e377c2",  # pink
    "#17becf",  # cyan
)

_EMPTY_TEXT = "no training yet"


class LossPlot(QWidget):
    """Live line plot of named loss curves against the training step.

    Parameters
    ----------
    parent
        Optional Qt parent.
    max_points
        Maximum number of points kept per series (older points are decimated).
    log_y
        Whether the y axis is logarithmic (non-positive values are then not
        drawn, but they are kept and reappear in linear mode).
    """

    def __init__(
        self,
        parent: QWidget | None = None,
        *,
        max_points: int = 2000,
        log_y: bool = True,
    ) -> None:
        super().__init__(parent)
        self.max_points = max(4, int(max_points))
        self._log_y = bool(log_y)
        self._data: dict[str, list[tuple[int, float]]] = {}
        self._colors: dict[str, QColor] = {}
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setToolTip("Training losses (latest value in the legend)")

    # ------------------------------------------------------------------ data
    def add_point(self, step: int, losses: dict[str, float]) -> None:
        """Append ``losses[name]`` at ``step`` to each named series and repaint.

        Unknown names start new series; non-finite (or non-numeric) values are
        ignored.  Cheap: amortised O(1) per value plus a scheduled repaint.
        """
        try:
            step = int(step)
        except (TypeError, ValueError):
            return
        changed = False
        for name, value in dict(losses).items():
            try:
                v = float(value)
            except (TypeError, ValueError):
                continue
            if not math.isfinite(v):
                continue
            name = str(name)
            pts = self._data.get(name)
            if pts is None:
                pts = self._data[name] = []
                self._colors[name] = QColor(PALETTE[(len(self._colors)) % len(PALETTE)])
            pts.append((step, v))
            if len(pts) > self.max_points:
                self._data[name] = self._decimate(pts)
            changed = True
        if changed:
            self.update()

    @staticmethod
    def _decimate(pts: list[tuple[int, float]]) -> list[tuple[int, float]]:
        """Keep every second point of the older half and all of the newer half."""
        half = len(pts) // 2
        return pts[:half:2] + pts[half:]

    def clear(self) -> None:
        """Remove all series and repaint (shows the empty-plot text)."""
        self._data.clear()
        self._colors.clear()
        self.update()

    def series(self) -> dict[str, list[tuple[int, float]]]:
        """A copy of the stored data: ``{name: [(step, value), ...]}``."""
        return {name: list(pts) for name, pts in self._data.items()}

    @property
    def log_y(self) -> bool:
        """Logarithmic y axis (default ``True``)."""
        return self._log_y

    @log_y.setter
    def log_y(self, value: bool) -> None:
        value = bool(value)
        if value != self._log_y:
            self._log_y = value
            self.update()

    def _plot_data(self) -> dict[str, list[tuple[float, float]]]:
        """Points as drawn: y is log10(value) in log mode, non-positive skipped."""
        out: dict[str, list[tuple[float, float]]] = {}
        for name, pts in self._data.items():
            if self._log_y:
                xy = [(float(s), math.log10(v)) for s, v in pts if v > 0]
            else:
                xy = [(float(s), v) for s, v in pts]
            if xy:
                out[name] = xy
        return out

    # ------------------------------------------------------------------- Qt
    def minimumSizeHint(self) -> QSize:  # noqa: N802 (Qt API)
        return QSize(260, 160)

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt API)
        return QSize(320, 200)

    def paintEvent(self, event: Any) -> None:  # noqa: N802 (Qt API)
        painter = QPainter(self)
        try:
            self._paint(painter)
        except Exception:  # noqa: BLE001 - a plot must never break the GUI
            pass
        finally:
            painter.end()

    # --------------------------------------------------------------- drawing
    def _paint(self, p: QPainter) -> None:
        pal = self.palette()
        bg = pal.color(QPalette.ColorRole.Base)
        fg = pal.color(QPalette.ColorRole.Text)
        w, h = self.width(), self.height()
        p.fillRect(0, 0, w, h, bg)
        font = QFont(self.font())
        size = font.pointSizeF()
        if size > 0:
            font.setPointSizeF(max(6.0, size * 0.8))
        p.setFont(font)
        fm = QFontMetrics(font)

        data = self._plot_data()
        if not data:
            p.setPen(fg)
            p.drawText(QRectF(0, 0, w, h), int(Qt.AlignmentFlag.AlignCenter), _EMPTY_TEXT)
            return
        limits = self._limits(data)
        box = self._paint_axes(p, fm, fg, limits)
        self._paint_curves(p, data, box, limits, fg)
        self._paint_legend(p, fm, box, pal)

    def _limits(self, data: dict[str, list[tuple[float, float]]]) -> tuple[float, float, float, float]:
        """(x0, x1, y0, y1) of the plotted points, the y range padded (never empty)."""
        xs = [x for pts in data.values() for x, _ in pts]
        ys = [y for pts in data.values() for _, y in pts]
        x0, x1 = min(xs), max(xs)
        y0, y1 = min(ys), max(ys)
        if x1 <= x0:
            x0, x1 = x0 - 1.0, x1 + 1.0
        if y1 <= y0:
            pad = 0.5 if self._log_y else max(abs(y0) * 0.1, 1e-3)
            y0, y1 = y0 - pad, y1 + pad
        else:
            pad = 0.05 * (y1 - y0)
            y0, y1 = y0 - pad, y1 + pad
        return x0, x1, y0, y1

    def _paint_axes(self, p: QPainter, fm: QFontMetrics, fg: QColor,
                    limits: tuple[float, float, float, float]) -> QRectF:
        """The axes box and its tick labels; returns the box (the plotting area)."""
        x0, x1, y0, y1 = limits
        w, h = self.width(), self.height()

        def ylabel(v: float) -> str:
            return f"{10.0 ** v:.3g}" if self._log_y else f"{v:.3g}"

        ylab_top, ylab_bot = ylabel(y1), ylabel(y0)
        th = fm.height()
        left = 6 + max(fm.horizontalAdvance(ylab_top), fm.horizontalAdvance(ylab_bot))
        box = QRectF(left, 6, max(10.0, w - left - 8), max(10.0, h - 6 - th - 6))

        p.setPen(QPen(fg, 1))
        p.drawRect(box)
        right_align = int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        p.drawText(QRectF(0, box.top() - th / 2, left - 3, th), right_align, ylab_top)
        p.drawText(QRectF(0, box.bottom() - th / 2, left - 3, th), right_align, ylab_bot)
        below = box.bottom() + 2
        p.drawText(QRectF(box.left(), below, box.width() / 2, th),
                   int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop),
                   f"{int(round(x0))}")
        p.drawText(QRectF(box.center().x(), below, box.width() / 2, th),
                   int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignTop),
                   f"{int(round(x1))}")
        if self._log_y:
            p.drawText(QRectF(box.left(), below, box.width(), th),
                       int(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop),
                       "step (log y)")
        return box

    def _paint_curves(self, p: QPainter, data: dict[str, list[tuple[float, float]]], box: QRectF,
                      limits: tuple[float, float, float, float], fg: QColor) -> None:
        """Each series as a line (a dot while it has one point), clipped to ``box``."""
        x0, x1, y0, y1 = limits
        sx = box.width() / (x1 - x0)
        sy = box.height() / (y1 - y0)
        bx, by = box.left(), box.bottom()
        p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        p.setClipRect(box.adjusted(-1, -1, 1, 1))
        for name, pts in data.items():
            color = self._colors.get(name, fg)
            pen = QPen(color, 1.5)
            p.setPen(pen)
            poly = [QPointF(bx + (x - x0) * sx, by - (y - y0) * sy) for x, y in pts]
            if len(poly) == 1:
                p.setBrush(color)
                p.drawEllipse(poly[0], 2.5, 2.5)
                p.setBrush(Qt.BrushStyle.NoBrush)
            else:
                p.drawPolyline(QPolygonF(poly))
        p.setClipping(False)
        p.setRenderHint(QPainter.RenderHint.Antialiasing, False)

    def _paint_legend(self, p: QPainter, fm: QFontMetrics, box: QRectF, pal: QPalette) -> None:
        """The legend (name + latest stored value), top-right inside ``box``."""
        bg = pal.color(QPalette.ColorRole.Base)
        fg = pal.color(QPalette.ColorRole.Text)
        rows = []
        for name, pts in self._data.items():
            if pts:
                rows.append((name, f"{name}  {pts[-1][1]:.4g}", self._colors.get(name, fg)))
        if not rows:
            return
        th = fm.height()
        swatch = 10
        lw = swatch + 6 + max(fm.horizontalAdvance(text) for _, text, _ in rows) + 8
        lh = len(rows) * th + 6
        legend = QRectF(box.right() - lw - 4, box.top() + 4, lw, lh)
        fill = QColor(bg)
        fill.setAlpha(210)
        p.fillRect(legend, fill)
        p.setPen(QPen(pal.color(QPalette.ColorRole.Mid), 1))
        p.drawRect(legend)
        y = legend.top() + 3
        for _, text, color in rows:
            p.fillRect(QRectF(legend.left() + 4, y + (th - swatch) / 2, swatch, swatch), color)
            p.setPen(fg)
            p.drawText(QRectF(legend.left() + 4 + swatch + 4, y, lw - swatch - 8, th),
                       int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter), text)
            y += th


# ------------------------------------------------------------------ magicgui
def _native_backend() -> type:
    """A magicgui Qt backend class that adopts an existing QWidget instance.

    magicgui's ``QBaseWidget`` constructs its QWidget from a class; this
    subclass instead receives the instance (``backend_kwargs={"qwidg": w}``).
    """
    from magicgui.backends._qtpy.widgets import EventFilter, QBaseWidget

    class _AdoptedQWidget(QBaseWidget):
        def __init__(self, qwidg: QWidget, parent: QWidget | None = None, **_: Any) -> None:
            self._qwidget = qwidg
            if parent is not None:
                qwidg.setParent(parent)
            self._event_filter = EventFilter()
            qwidg.installEventFilter(self._event_filter)

    return _AdoptedQWidget


def wrap_native(qwidget: QWidget, *, name: str = "", label: str | None = None) -> Any:
    """Wrap an existing QWidget as a :class:`magicgui.widgets.Widget`.

    The result can be appended to a :class:`magicgui.widgets.Container`
    (``container.append(wrap_native(plot, name="loss_plot"))``); its
    ``.native`` is ``qwidget`` itself.
    """
    from magicgui.widgets import Widget

    return Widget(
        widget_type=_native_backend(),
        name=name,
        label=label,
        backend_kwargs={"qwidg": qwidget},
    )


def loss_plot_widget(
    *, name: str = "loss_plot", label: str | None = "losses", **plot_kwargs: Any
) -> tuple[Any, LossPlot]:
    """Create a :class:`LossPlot` and its magicgui wrapper.

    Returns ``(mgui_widget, plot)``: append ``mgui_widget`` to a Container and
    feed ``plot.add_point``.  ``plot_kwargs`` go to :class:`LossPlot`.
    """
    plot = LossPlot(**plot_kwargs)
    return wrap_native(plot, name=name, label=label), plot


def attach_to(container: Any, plot: QWidget) -> None:
    """Low-level alternative: add ``plot`` to ``container.native``'s Qt layout.

    The magicgui Container does not track the widget (it is not in
    ``container``'s list); prefer ``container.append(wrap_native(plot))``.
    """
    layout = container.native.layout()
    if layout is None:  # pragma: no cover - magicgui containers always have one
        raise ValueError("container has no native layout")
    layout.addWidget(plot)
