"""The Train widget's form: its controls and their layout, and the parts of it that come from
the training recipe (the data inputs, the models to start from, the advanced settings).

The task list, the data inputs and the "advanced" loss weights all come from
the recipe registry (``napari_nlcl.training``): a recipe registered tomorrow
appears here without changes to this file.  :class:`~._train.TrainWidget`
adds the running: it starts, stops and shows the run this form describes.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    LineEdit,
    ProgressBar,
    PushButton,
    SpinBox,
)

from napari_nlcl._napari._form import (
    fit_narrow_docks,
    set_tooltips,
    shorten_file_edits,
    span_unlabelled_rows,
)
from napari_nlcl._napari._layers import follow_viewer, image_layers, preferred_layer
from napari_nlcl._napari._library import ModelLibraryPanel

if TYPE_CHECKING:  # pragma: no cover
    import napari

SCRATCH = "(from scratch)"
DEFAULT = "(shipped default)"

TOOLTIPS = {
    "task_combo": "What to train: each task lists the data it takes below",
    "start_combo": "Fine-tune the shipped model or one of yours (recommended: a gain in minutes), "
                   "or train from scratch (hours)",
    "steps_spin": "Training steps (one batch of random crops each); with a budget, the most "
                  "the run may take",
    "minutes_spin": "Time budget in minutes: the run plans its steps (and its learning-rate "
                    "schedule) to end within it. 0: train for the given steps.",
    "monitor_spin": "Fine-tuning: every this many steps, score the model on pairs built from your own "
                    "frames (their rain or haze, as the starting model finds it, laid over clean photos) "
                    "and keep the best-scoring model. 0: off.",
    "patience_spin": "Stop when this many scores in a row did not beat the best (0: never stop early).",
    "keep_best_check": "Checked: the saved and applied model is the step the quality score liked "
                       "best (the start included). Unchecked: the last step",
    "crop_spin": "Size of the random crops trained on, in pixels",
    "batch_spin": "Crops per step: larger is smoother and slower, and needs more memory",
    "lr_spin": "Learning rate; choosing a model to start from proposes the recipe's gentle "
               "fine-tuning rate",
    "seed_spin": "Random seed: the same seed and settings give the same run",
    "device_combo": "Where to train: auto picks a GPU when there is one, else the CPU",
    "precision_combo": "Arithmetic of the training steps: auto uses bfloat16 on CPUs that compute "
                       "it natively (faster steps; the weights stay float32), else float32; "
                       "float16 is for CUDA",
    "show_advanced": "Show the recipe's loss weights and settings",
    "preview_combo": "Apply the model being trained to the frame you are looking at in this layer",
    "preview_spin": "Update the preview every this many steps (0: never)",
    "start_button": "Start a new run with these settings (in the background)",
    "stop_button": "Stop after the current step; the run is saved and Continue resumes it",
    "continue_button": "Continue the stopped run exactly where it was (or train further)",
    "reset_button": "Forget the run and free its memory",
    "progress": "Steps done",
    "status": "Speed, time left, and the quality score of the model (fine-tuning)",
    "name_edit": "Name to save the model under in your model library",
    "save_button": "Save the kept model (the best-scoring step, or the last) to your model library; "
                   "the Dehaze/Derain/Translate widgets list it at once",
    "apply_button": "Apply the kept model to the whole first data layer (lazily for stacks)",
}


def setting_widget(f: Any, label: str):
    """The control for recipe setting ``f`` (a dataclass field), or None for structural ones."""
    default = f.default if f.default is not dataclasses.MISSING else None
    if f.metadata.get("choices"):  # e.g. a translation mode
        return ComboBox(label=label, choices=list(f.metadata["choices"]), value=default)
    if isinstance(default, bool):
        return CheckBox(label=label, value=default)
    if isinstance(default, int):
        return SpinBox(label=label, min=0, max=1_000_000, value=default)
    if isinstance(default, float):
        w = FloatSpinBox(label=label, min=0.0, max=1e4, step=0.01, value=default)
        w.native.setDecimals(4)
        return w
    return None


class TrainForm(Container):
    """The Train widget's controls, laid out in a form that scrolls inside the dock."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=False)
        # the form scrolls inside the dock, so the widget fits a 1280x800 screen (napari docks
        # ``native``, not magicgui's own scroll area)
        self.form = Container(labels=True)
        self._viewer = viewer
        self._run_dir = Path(tempfile.mkdtemp(prefix="napari-nlcl-run-"))
        self._source_widgets: dict[str, tuple[ComboBox, FileEdit]] = {}
        self._advanced: dict[str, Any] = {}
        self._add_settings()
        self._add_run_controls()
        self._lay_out()
        set_tooltips(self, TOOLTIPS)
        self.task_combo.changed.connect(self._task_changed)
        self.start_combo.changed.connect(self._start_changed)
        self.show_advanced.changed.connect(lambda v: setattr(self.advanced_box, "visible", bool(v)))
        follow_viewer(self, viewer, on_layers=self._refresh_layers, on_library=self._refresh_library)
        self._fit_width()
        self._task_changed()

    def _add_settings(self) -> None:
        """The controls that describe a run, from the task to the preview."""
        from napari_nlcl.inference import available_devices
        from napari_nlcl.inference.precision import PRECISIONS
        from napari_nlcl.training import recipe_names
        from napari_nlcl.training.data import MIN_CROP

        self.task_combo = ComboBox(label="task", choices=recipe_names())
        self.sources_box = Container(labels=True)
        self.start_combo = ComboBox(label="start from", choices=self._start_choices)
        self.steps_spin = SpinBox(label="steps", min=1, max=1_000_000, step=100, value=500)
        self.minutes_spin = FloatSpinBox(label="budget (min)", min=0.0, max=100_000.0, step=1.0, value=0.0)
        self.monitor_spin = SpinBox(label="score every", min=0, max=100_000, step=10, value=50)
        self.patience_spin = SpinBox(label="stop after no gain", min=0, max=10_000, value=10)
        self.keep_best_check = CheckBox(text="keep the best-scoring model", value=True)
        self.crop_spin = SpinBox(label="crop (px)", min=MIN_CROP, max=1024, step=16, value=128)
        self.batch_spin = SpinBox(label="batch size", min=1, max=256, value=4)
        self.lr_spin = FloatSpinBox(label="learning rate", min=1e-6, max=1e-1, step=1e-5, value=1e-4)
        self.lr_spin.native.setDecimals(6)
        self.seed_spin = SpinBox(label="seed", min=0, max=2**31 - 1, value=0)
        self.device_combo = ComboBox(label="device", choices=["auto", *available_devices()], value="auto")
        self.precision_combo = ComboBox(label="precision", choices=list(PRECISIONS), value="auto")
        self.show_advanced = CheckBox(text="advanced: loss weights and settings", value=False)
        self.advanced_box = Container(labels=True, visible=False)
        self.preview_combo = ComboBox(label="preview on", choices=self._preview_choices, nullable=True)
        self.preview_spin = SpinBox(label="preview every", min=0, max=100_000, step=10, value=50)

    def _add_run_controls(self) -> None:
        """The buttons, the progress and plots of the run, saving the model and the library."""
        from napari_nlcl._napari._plot import LossPlot

        self.start_button = PushButton(text="Start")
        self.stop_button = PushButton(text="Stop", enabled=False)
        self.continue_button = PushButton(text="Continue", enabled=False)
        self.reset_button = PushButton(text="Reset", enabled=False)
        self.progress = ProgressBar(label="progress", min=0, max=1, value=0)
        self.status = Label(label="", value="not started")
        self.status.native.setWordWrap(True)  # long status lines wrap instead of widening the dock
        self.name_edit = LineEdit(label="model name", value="")
        self.save_button = PushButton(text="Save to my models", enabled=False)
        self.apply_button = PushButton(text="Apply to stack", enabled=False)
        self.library = ModelLibraryPanel()
        self.plot = LossPlot()
        self.quality_plot = LossPlot(log_y=False)
        self.quality_plot.setToolTip("Quality score on pairs built from your frames (PSNR, dB; higher "
                                     "is better): the kept model is the best point")

    def _lay_out(self) -> None:
        from qtpy.QtCore import Qt
        from qtpy.QtWidgets import QFrame, QScrollArea

        from napari_nlcl._napari._plot import attach_to, wrap_native

        # two rows of two buttons: the form fits a narrow dock
        buttons = Container(layout="vertical", labels=False, widgets=[
            Container(layout="horizontal", labels=False, widgets=[self.start_button, self.stop_button]),
            Container(layout="horizontal", labels=False, widgets=[self.continue_button, self.reset_button]),
        ])
        self.plot_box = Container(labels=False)
        attach_to(self.plot_box, self.plot)
        attach_to(self.plot_box, self.quality_plot)
        self.form.extend([
            self.task_combo, self.sources_box, self.start_combo, self.steps_spin, self.minutes_spin,
            self.monitor_spin, self.patience_spin, self.keep_best_check, self.crop_spin,
            self.batch_spin, self.lr_spin, self.seed_spin, self.device_combo, self.precision_combo,
            self.show_advanced, self.advanced_box, self.preview_combo, self.preview_spin, buttons, self.progress,
            self.status, self.plot_box, self.name_edit, self.save_button, self.apply_button, self.library,
        ])
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        # a dock narrower than the form scrolls sideways rather than cutting it (the form itself
        # is kept narrow enough for a 400 px dock: _fit_width)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        scroll.setWidget(self.form.native)
        self.append(wrap_native(scroll, name="form_scroll"))

    # ------------------------------------------------------------------ recipe-driven parts
    def _recipe_cls(self):
        from napari_nlcl.training import recipe_class

        return recipe_class(self.task_combo.value)

    def _image_layers(self) -> list[tuple[str, Any]]:
        return image_layers(self._viewer)

    def _preview_choices(self, *_: Any):
        return self._image_layers()

    def _start_choices(self, *_: Any) -> list[tuple[str, str]]:
        from napari_nlcl.library import list_models

        if self.task_combo.value is None:
            return [(SCRATCH, SCRATCH)]
        cls = self._recipe_cls()
        choices = [(DEFAULT, DEFAULT)] if cls.default_weights and Path(cls.default_weights).is_file() else []
        choices += [(f"{m.name} (my model)", str(m.path)) for m in list_models(cls.task)
                    if m.recipe == cls.name]
        return choices + [(SCRATCH, SCRATCH)]

    def _task_changed(self, *_: Any) -> None:
        if self.task_combo.value is None:
            self.status.value = "no training recipes are registered"
            return
        cls = self._recipe_cls()
        self._show_sources(cls)
        self._show_settings(cls)
        self._fit_width()  # the new source and setting controls too
        self.start_combo.reset_choices()
        # the shipped model (fine-tuning), or scratch for recipes that train anew (translation)
        self.start_combo.value = self.start_combo.choices[0] if cls.fine_tune_by_default else SCRATCH
        self._start_changed()

    def _show_sources(self, cls: Any) -> None:
        """A layer and a folder chooser for each data input of recipe ``cls``."""
        self.sources_box.clear()
        self._source_widgets = {}
        layers = self._image_layers()
        for i, name in enumerate(cls.accepted_sources or cls.data_sources):
            combo = ComboBox(label=f"{name} layer", nullable=True,
                             choices=lambda *_: self._image_layers())
            combo.value = preferred_layer(self._viewer) if (i == 0 and layers) else None
            folder = FileEdit(label=f"{name} folder", mode="d")
            combo.tooltip = f"Your {name} images as a layer (an image or a stack; read lazily)"
            folder.tooltip = f"Or a folder of {name} images (used instead of the layer when given)"
            self._source_widgets[name] = (combo, folder)
            self.sources_box.extend([combo, folder])

    def _show_settings(self, cls: Any) -> None:
        """The controls of recipe ``cls``'s settings under *advanced*."""
        self.advanced_box.clear()
        self._advanced = {}
        # the settings a user may want to change, with readable labels; the rest (sampling sizes,
        # rain banks, architecture) behind "every setting", under their field names
        named = cls.user_settings
        fields = {f.name: f for f in dataclasses.fields(cls.Config)}
        expert = self.expert_box = Container(labels=True, visible=False)
        self.expert_check = CheckBox(text="every setting (-S NAME=VALUE)", value=False)
        self.expert_check.tooltip = "Show the recipe's other settings too; most are best left as stored"
        self.expert_check.changed.connect(lambda v: setattr(expert, "visible", bool(v)))
        for name in [*[n for n in named if n in fields], *[n for n in fields if n not in named]]:
            f = fields[name]
            label, help_ = named.get(name, (name, ""))
            w = setting_widget(f, label)
            if w is None:
                continue  # other structural settings (architecture overrides) stay as stored
            default = f.default if f.default is not dataclasses.MISSING else None
            w.tooltip = (f"{help_ + '. ' if help_ else ''}Recipe setting {name!r} (default {default!r}; "
                         f"-S {name}=... on the command line)")
            self._advanced[name] = w
            (self.advanced_box if name in named else expert).append(w)
        if len(expert):
            self.advanced_box.extend([self.expert_check, expert])

    def _fit_width(self) -> None:
        """Controls that fit a narrow dock: short file buttons, small line edits, and rows
        without a label (buttons, plots, boxes) spanning the label column."""
        fit_narrow_docks(self)
        shorten_file_edits(self.form)
        span_unlabelled_rows(self.form)

    def _start_changed(self, *_: Any) -> None:
        """Show the settings the chosen starting model was trained with (fine-tuning keeps them
        unless you change them); "scratch" shows the recipe's defaults."""
        from napari_nlcl.training import recipe_config_of

        start = self.start_combo.value
        if start is not None:
            self.lr_spin.value = self._recipe_cls().proposed_lr(start != SCRATCH, 1e-4)
        if not self._advanced or start is None:
            return
        stored: dict[str, Any] = {}
        if start != SCRATCH:
            source = self._recipe_cls().default_weights if start == DEFAULT else start
            try:
                stored = recipe_config_of(source)[1]
            except (ValueError, FileNotFoundError):
                stored = {}
        defaults = {f.name: f.default for f in dataclasses.fields(self._recipe_cls().Config)}
        for name, widget in self._advanced.items():
            value = stored.get(name, defaults.get(name))
            if value is not None:
                widget.value = value

    def _refresh_layers(self, *_: Any) -> None:
        for combo, _folder in self._source_widgets.values():
            combo.reset_choices()
        self.preview_combo.reset_choices()

    def _refresh_library(self, *_: Any) -> None:
        self.start_combo.reset_choices()
        self.library.refresh()

    def _settings(self) -> dict[str, Any]:
        """The recipe settings shown in *advanced* (loss weights, and choices such as a mode)."""
        return {k: w.value for k, w in self._advanced.items()}

    def _preview_frame(self):
        """The plane of the preview layer that the viewer shows now (None without a preview layer)."""
        import numpy as np

        layer = self.preview_combo.value
        if layer is None:
            return None
        data = layer.data
        lead = data.ndim - (3 if layer.rgb else 2)
        index = tuple(int(i) for i in self._viewer.dims.current_step[:lead]) if lead else ()
        index = tuple(min(i, s - 1) for i, s in zip(index, data.shape[:lead]))
        return np.asarray(data[index] if index else data)
