"""The Dehaze widget."""

from __future__ import annotations

from napari_nlcl._napari._task import TaskWidget


class DehazeWidget(TaskWidget):
    """Remove haze from an image layer with any registered dehazing method."""

    task = "dehaze"
