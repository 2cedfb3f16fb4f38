"""The model-library panel of the Train widget: the user's saved models, importing a model file
into the library, exporting one, and deleting one.

Every change reaches the other widgets through ``napari_nlcl.library.changed``
(their method lists update at once); the Train widget calls :meth:`refresh`
when it fires.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from magicgui.widgets import ComboBox, Container, FileEdit, PushButton

from napari_nlcl._napari._form import confirm, set_tooltips, span_unlabelled_rows
from napari_nlcl._napari._workers import notify_error

TOOLTIPS = {
    "combo": "Your saved models",
    "import_path": "A model file to copy into your library",
    "import_button": "Copy the chosen model file into your library",
    "export_path": "Where to write a copy of the selected model",
    "export_button": "Write the selected model to the file above",
    "delete_button": "Delete the selected model from your library",
}


class ModelLibraryPanel(Container):
    """Pick one of the saved models, import a model file, export or delete the picked model."""

    def __init__(self) -> None:
        super().__init__(labels=True)
        self.margins = (0, 0, 0, 0)  # its rows line up with those of the form it sits in
        self.combo = ComboBox(label="my models", choices=self._choices, nullable=True)
        self.import_path = FileEdit(label="import file", mode="r", filter="*.pt")
        self.import_button = PushButton(text="Import")
        self.export_path = FileEdit(label="export to", mode="w", filter="*.pt")
        self.export_button = PushButton(text="Export")
        self.delete_button = PushButton(text="Delete")
        buttons = Container(layout="horizontal", labels=False,
                            widgets=[self.import_button, self.export_button, self.delete_button])
        self.extend([self.combo, self.import_path, self.export_path, buttons])
        span_unlabelled_rows(self)  # the button row spans the label column
        set_tooltips(self, TOOLTIPS)
        self.import_button.changed.connect(self.import_model)
        self.export_button.changed.connect(self.export_model)
        self.delete_button.changed.connect(self.delete_model)

    def _choices(self, *_: Any) -> list[tuple[str, str]]:
        from napari_nlcl.library import list_models

        return [(f"{m.name} [{m.task}]", str(m.path)) for m in list_models()]

    def refresh(self) -> None:
        """Re-read the library (a model saved, imported or deleted elsewhere)."""
        self.combo.reset_choices()

    def import_model(self, *_: Any):
        """Copy the chosen model file into the library; returns its path there (None on error)."""
        from napari_nlcl import library

        path = self.import_path.value
        try:
            if path is None or not Path(path).is_file():
                raise FileNotFoundError(f"choose a model file (.pt) to import, got {path}")
            return library.save_model(path, Path(path).stem)
        except (ValueError, OSError) as exc:
            notify_error(f"cannot import: {exc}")
            return None

    def export_model(self, *_: Any):
        """Write the picked model to the chosen file; returns that path (None on error)."""
        from napari_nlcl.training import export_model

        src = self.combo.value
        dst = self.export_path.value
        try:
            if src is None:
                raise ValueError("select one of my models to export")
            if dst is None or Path(dst).suffix.lower() != ".pt":
                raise ValueError("choose the file to export to (ending in .pt) in 'export to'")
            return export_model(src, dst)
        except (ValueError, OSError) as exc:
            notify_error(f"cannot export: {exc}")
            return None

    def delete_model(self, *_: Any) -> None:
        """Delete the picked model from the library, once the user said Yes."""
        from napari_nlcl import library

        src = self.combo.value
        if src is None:
            notify_error("select one of my models to delete")
            return
        if not confirm(self, f"Delete the model {Path(src).stem!r} from your library? This cannot be undone."):
            return
        try:
            library.remove_model(Path(src).stem)
        except (ValueError, OSError) as exc:
            notify_error(f"cannot delete: {exc}")
