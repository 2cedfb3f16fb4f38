"""The Derain widget: the task widget, and optionally the removed rain as a layer of its own."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from magicgui.widgets import CheckBox

from napari_nlcl._napari._layers import put_image
from napari_nlcl._napari._task import TaskWidget

if TYPE_CHECKING:  # pragma: no cover
    import napari


class DerainWidget(TaskWidget):
    """Remove rain streaks from an image layer with any registered deraining method.

    "show rain layer" also adds the removed rain (input - background) as a layer.
    """

    task = "derain"

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(viewer)
        self.rain_check = CheckBox(text="show rain layer (input - background)", value=False)
        self.rain_check.tooltip = ("Also add what was removed (input - background), hidden below the "
                                   "result: check that no scene detail was taken as rain")
        self.insert(self.index(self.lazy_check) + 1, self.rain_check)

    def _show_result(self, layer: Any, result: Any) -> None:
        super()._show_result(layer, result)
        name = f"{layer.name} rain"
        if self.rain_check.value:
            from napari_nlcl.inference.intensity import residual

            new = name not in self._viewer.layers
            put_image(self._viewer, name, residual(layer.data, result), layer)
            rain = self._viewer.layers[name]
            lo, hi = layer.contrast_limits  # rain is faint: show it at twice the input's contrast
            rain.contrast_limits = (lo, lo + (hi - lo) / 2)
            if new:  # below the result, hidden: it must not cover what the user asked for
                rain.visible = False
                layers = self._viewer.layers
                target = layers.index(self.output_name(layer))
                layers.move(layers.index(rain), target)
        elif name in self._viewer.layers:  # a rain layer of an earlier run would now be stale
            self._viewer.layers.remove(name)
