"""The Translate widget: the task widget, plus a model file chosen on disk."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.widgets import FileEdit

from napari_nlcl._napari._task import TaskWidget
from napari_nlcl._napari._workers import notify_error

if TYPE_CHECKING:  # pragma: no cover
    import napari


class TranslateWidget(TaskWidget):
    """Translate an image layer (domain A to B) with a trained CUT/FastCUT model.

    The model list holds the shipped example, the models saved in the Train
    widget's library, and any model file chosen below.
    """

    task = "translate"

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        self.model_file = FileEdit(label="or model file", mode="r", filter="*.pt *.pth *.ckpt")
        self.model_file.tooltip = "A translation model file (.pt) trained with the Train widget or the CLI"
        super().__init__(viewer)
        self.insert(self.index(self.method_combo) + 1, self.model_file)
        self.model_file.changed.connect(self._file_chosen)

    def _method_choices(self, *_: Any) -> list[tuple[str, str]]:
        choices = super()._method_choices()
        path = self._chosen_file()
        if path is not None and str(path) not in [v for _, v in choices]:
            choices.append((f"{path.name} (file)", str(path)))
        return choices

    def _chosen_file(self) -> Path | None:
        value = getattr(self, "model_file", None)
        value = value.value if value is not None else None
        if value is None or str(value) in ("", "."):
            return None
        path = Path(value)
        return path if path.is_file() else None

    def _file_chosen(self, *_: Any) -> None:
        path = self._chosen_file()
        if path is None:
            return
        from napari_nlcl.api import load_model

        try:
            load_model(path, task="translate")  # a clear message now rather than at Run
        except (ValueError, TypeError, FileNotFoundError, OSError) as exc:
            notify_error(f"cannot use {path.name}: {exc}")
            return
        self.method_combo.reset_choices()
        self.method_combo.value = str(path)
