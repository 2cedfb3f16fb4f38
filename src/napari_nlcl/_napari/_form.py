"""Helpers for the widgets' forms: tooltips, fitting a narrow dock, and asking Yes / No."""

from __future__ import annotations

from typing import Any

from magicgui.widgets import Container


def set_tooltips(widget: Any, tips: dict[str, str]) -> None:
    """Give each control of ``widget`` (by attribute name) its tooltip from ``tips``."""
    for name, tip in tips.items():
        getattr(widget, name).tooltip = tip


def confirm(parent: Any, question: str) -> bool:
    """Ask ``question`` with Yes / No (No is the default); True for Yes."""
    from qtpy.QtWidgets import QMessageBox

    answer = QMessageBox.question(getattr(parent, "native", parent), "napari-nlcl", question,
                                  QMessageBox.Yes | QMessageBox.No, QMessageBox.No)
    return answer == QMessageBox.Yes


def descendants(container: Any, kind: type) -> list:
    """Every widget of type ``kind`` inside a magicgui ``container`` (nested containers too)."""
    found = []
    for child in container:
        if isinstance(child, kind):
            found.append(child)
        elif isinstance(child, Container):
            found.extend(descendants(child, kind))
    return found


def fit_narrow_docks(container: Any) -> None:
    """Let ``container`` shrink to a narrow dock: drop-downs no longer demand the width of their
    longest entry (they elide it) and check-box texts wrap (napari's docks are often 300-400 px)."""
    from qtpy.QtWidgets import QCheckBox, QComboBox

    for combo in container.native.findChildren(QComboBox):
        combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        combo.setMinimumContentsLength(8)
    for box in container.native.findChildren(QCheckBox):
        box.setMinimumWidth(0)


def shorten_file_edits(container: Any) -> None:
    """File choosers in ``container`` with a short "Browse" button and a line edit that may shrink."""
    from magicgui.widgets import FileEdit

    for edit in descendants(container, FileEdit):
        edit.choose_btn.text = "Browse"
        edit.line_edit.native.setMinimumWidth(40)


def span_unlabelled_rows(container: Any) -> None:
    """Rows of a labelled ``container`` that have no label (buttons, plots, boxes) span the label
    column instead of leaving it empty."""
    from qtpy.QtWidgets import QLabel

    layout = container.native.layout()
    for i in range(layout.count()):
        row = layout.itemAt(i).widget()
        label = row.findChild(QLabel) if row is not None else None
        if label is not None and label.parent() is row and not label.text():
            label.setVisible(False)
