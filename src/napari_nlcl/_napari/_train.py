"""The Train widget: fine-tune a model on the user's own layers or folders, live.

A thin view over the headless engine.  ``Trainer.fit_iter()`` runs in a
napari generator worker; every event it yields (a step with its losses, a
preview, a checkpoint) comes back to the main thread through the worker's
``yielded`` signal, where the loss plot, the progress line and the preview
layer are updated.  Nothing napari-side is touched from the worker thread.

* Stop is ``worker.quit()``: it takes effect at the next yield (one step) and
  the trainer's generator is closed in the worker thread, which writes a
  valid checkpoint at the current step.
* Continue runs ``fit_iter()`` again on the same trainer: it resumes exactly
  where Stop left it (same weights, optimiser, schedule and data stream).
* Reset drops the trainer and frees the GPU's cached memory.

The task list, the data inputs and the "advanced" loss weights all come from
the recipe registry (``napari_nlcl.training.engine``): a recipe registered tomorrow
appears here without changes to this file.
"""

from __future__ import annotations

import dataclasses
import math
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

from napari_nlcl._napari._widgets import (
    notify_error,
    notify_info,
    confirm,
    fit_narrow_docks,
    follow_viewer,
    image_layers,
    memory_hint,
    original_error,
    predict_worker,
    preferred_layer,
    shielded,
)

if TYPE_CHECKING:  # pragma: no cover
    import napari

SCRATCH = "(from scratch)"
DEFAULT = "(shipped default)"


def _closing_worker_class():
    from napari.qt.threading import GeneratorWorker

    class ClosingGeneratorWorker(GeneratorWorker):
        """A generator worker that closes its generator in the worker thread when it ends.

        napari's worker simply stops iterating on ``quit()``; closing the
        generator runs the trainer's ``finally``/``GeneratorExit`` code (the
        checkpoint of the current step) before ``finished`` is emitted.
        """

        def work(self):
            try:
                return super().work()
            finally:
                self._gen.close()

    return ClosingGeneratorWorker


def _format_seconds(s: float) -> str:
    if not math.isfinite(s):
        return "?"
    s = int(round(s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def _descendants(container: Any, kind: type) -> list:
    """Every widget of type ``kind`` inside a magicgui ``container`` (nested containers too)."""
    found = []
    for child in container:
        if isinstance(child, kind):
            found.append(child)
        elif isinstance(child, Container):
            found.extend(_descendants(child, kind))
    return found


class TrainWidget(Container):
    """Fine-tune or train a model on layers or folders, with live loss and preview."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        from napari_nlcl.training.engine import recipe_names
        from napari_nlcl.training.data import MIN_CROP
        from napari_nlcl.inference import available_devices
        from napari_nlcl.inference.precision import PRECISIONS

        super().__init__(labels=False)
        # the form scrolls inside the dock, so the widget fits a 1280x800 screen (napari docks
        # ``native``, not magicgui's own scroll area)
        self.form = Container(labels=True)
        self._viewer = viewer
        self._worker = None
        self._failed = False
        self._quality = ""
        self.trainer = None
        self._run_dir = Path(tempfile.mkdtemp(prefix="napari-nlcl-run-"))
        self._source_widgets: dict[str, tuple[ComboBox, FileEdit]] = {}
        self._advanced: dict[str, Any] = {}

        self.task_combo = ComboBox(label="task", choices=recipe_names())
        self.sources_box = Container(labels=True)
        self.start_combo = ComboBox(label="start from", choices=self._start_choices)
        self.steps_spin = SpinBox(label="steps", min=1, max=1_000_000, step=100, value=500)
        self.minutes_spin = FloatSpinBox(label="budget (min)", min=0.0, max=100_000.0, step=1.0, value=0.0)
        self.minutes_spin.tooltip = ("Time budget in minutes: the run plans its steps (and its learning-rate "
                                     "schedule) to end within it. 0: train for the given steps.")
        self.monitor_spin = SpinBox(label="score every", min=0, max=100_000, step=10, value=50)
        self.monitor_spin.tooltip = (
            "Fine-tuning: every this many steps, score the model on pairs built from your own frames "
            "(their rain or haze, as the starting model finds it, laid over clean photos) and keep "
            "the best-scoring model. 0: off.")
        self.patience_spin = SpinBox(label="stop after no gain", min=0, max=10_000, value=10)
        self.patience_spin.tooltip = ("Stop when this many scores in a row did not beat the best "
                                      "(0: never stop early).")
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
        self.library_combo = ComboBox(label="my models", choices=self._library_choices, nullable=True)
        self.import_path = FileEdit(label="import file", mode="r", filter="*.pt")
        self.import_button = PushButton(text="Import")
        self.export_path = FileEdit(label="export to", mode="w", filter="*.pt")
        self.export_button = PushButton(text="Export")
        self.delete_button = PushButton(text="Delete")

        from napari_nlcl._napari._plot import LossPlot, attach_to

        self.plot = LossPlot()
        self.quality_plot = LossPlot(log_y=False)
        self.quality_plot.setToolTip("Quality score on pairs built from your frames (PSNR, dB; higher "
                                     "is better): the kept model is the best point")
        # two rows of two buttons: the form fits a narrow dock
        buttons = Container(layout="vertical", labels=False, widgets=[
            Container(layout="horizontal", labels=False, widgets=[self.start_button, self.stop_button]),
            Container(layout="horizontal", labels=False, widgets=[self.continue_button, self.reset_button]),
        ])
        library_buttons = Container(layout="horizontal", labels=False,
                                    widgets=[self.import_button, self.export_button, self.delete_button])
        self.form.extend([
            self.task_combo, self.sources_box, self.start_combo, self.steps_spin, self.minutes_spin,
            self.monitor_spin, self.patience_spin, self.keep_best_check, self.crop_spin,
            self.batch_spin, self.lr_spin, self.seed_spin, self.device_combo, self.precision_combo,
            self.show_advanced, self.advanced_box, self.preview_combo, self.preview_spin, buttons, self.progress,
            self.status,
        ])
        self.plot_box = Container(labels=False)
        attach_to(self.plot_box, self.plot)
        attach_to(self.plot_box, self.quality_plot)
        self.form.extend([self.plot_box, self.name_edit, self.save_button, self.apply_button,
                     self.library_combo, self.import_path, self.export_path, library_buttons])
        from qtpy.QtCore import Qt
        from qtpy.QtWidgets import QFrame, QScrollArea

        from napari_nlcl._napari._plot import wrap_native

        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        # a dock narrower than the form scrolls sideways rather than cutting it (the form itself
        # is kept narrow enough for a 400 px dock: _fit_width)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        scroll.setWidget(self.form.native)
        self.append(wrap_native(scroll, name="form_scroll"))

        for control, tip in {
            self.task_combo: "What to train: each task lists the data it takes below",
            self.start_combo: "Fine-tune the shipped model or one of yours (recommended: a gain in minutes), "
                              "or train from scratch (hours)",
            self.steps_spin: "Training steps (one batch of random crops each); with a budget, the most "
                             "the run may take",
            self.crop_spin: "Size of the random crops trained on, in pixels",
            self.batch_spin: "Crops per step: larger is smoother and slower, and needs more memory",
            self.lr_spin: "Learning rate; choosing a model to start from proposes the recipe's gentle "
                          "fine-tuning rate",
            self.seed_spin: "Random seed: the same seed and settings give the same run",
            self.device_combo: "Where to train: auto picks a GPU when there is one, else the CPU",
            self.precision_combo: "Arithmetic of the training steps: auto uses bfloat16 on CPUs that compute "
                                  "it natively (faster steps; the weights stay float32), else float32; "
                                  "float16 is for CUDA",
            self.show_advanced: "Show the recipe's loss weights and settings",
            self.preview_combo: "Apply the model being trained to the frame you are looking at in this layer",
            self.preview_spin: "Update the preview every this many steps (0: never)",
            self.start_button: "Start a new run with these settings (in the background)",
            self.stop_button: "Stop after the current step; the run is saved and Continue resumes it",
            self.continue_button: "Continue the stopped run exactly where it was (or train further)",
            self.reset_button: "Forget the run and free its memory",
            self.progress: "Steps done",
            self.status: "Speed, time left, and the quality score of the model (fine-tuning)",
            self.name_edit: "Name to save the model under in your model library",
            self.save_button: "Save the kept model (the best-scoring step, or the last) to your model library; "
                              "the Dehaze/Derain/Translate widgets list it at once",
            self.apply_button: "Apply the kept model to the whole first data layer (lazily for stacks)",
            self.library_combo: "Your saved models",
            self.import_path: "A model file to copy into your library",
            self.import_button: "Copy the chosen model file into your library",
            self.export_path: "Where to write a copy of the selected model",
            self.export_button: "Write the selected model to the file above",
            self.delete_button: "Delete the selected model from your library",
            self.keep_best_check: "Checked: the saved and applied model is the step the quality score liked "
                                  "best (the start included). Unchecked: the last step",
        }.items():
            control.tooltip = tip
        self.task_combo.changed.connect(self._task_changed)
        self.start_combo.changed.connect(self._start_changed)
        self.show_advanced.changed.connect(lambda v: setattr(self.advanced_box, "visible", bool(v)))
        self.start_button.changed.connect(self.start)
        self.stop_button.changed.connect(self.stop)
        self.continue_button.changed.connect(self.resume)
        self.reset_button.changed.connect(self.reset)
        self.save_button.changed.connect(self.save_model)
        self.apply_button.changed.connect(self.apply_to_stack)
        self.import_button.changed.connect(self.import_model)
        self.export_button.changed.connect(self.export_model)
        self.delete_button.changed.connect(self.delete_model)
        follow_viewer(self, viewer, on_layers=self._refresh_layers, on_library=self._refresh_library)
        self._fit_width()
        viewer.dims.events.current_step.connect(self._update_preview_frame)
        self._task_changed()

    # ------------------------------------------------------------------ recipe-driven parts
    def _recipe_cls(self):
        from napari_nlcl.training.engine import recipe_class

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

    def _library_choices(self, *_: Any) -> list[tuple[str, str]]:
        from napari_nlcl.library import list_models

        return [(f"{m.name} [{m.task}]", str(m.path)) for m in list_models()]

    def _task_changed(self, *_: Any) -> None:
        if self.task_combo.value is None:
            self.status.value = "no training recipes are registered"
            return
        cls = self._recipe_cls()
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
            w = self._setting_widget(f, label)
            if w is None:
                continue  # other structural settings (architecture overrides) stay as stored
            default = f.default if f.default is not dataclasses.MISSING else None
            w.tooltip = (f"{help_ + '. ' if help_ else ''}Recipe setting {name!r} (default {default!r}; "
                         f"-S {name}=... on the command line)")
            self._advanced[name] = w
            (self.advanced_box if name in named else expert).append(w)
        if len(expert):
            self.advanced_box.extend([self.expert_check, expert])
        self._fit_width()  # the new source and setting controls too
        self.start_combo.reset_choices()
        # the shipped model (fine-tuning), or scratch for recipes that train anew (translation)
        self.start_combo.value = self.start_combo.choices[0] if cls.fine_tune_by_default else SCRATCH
        self._start_changed()

    @staticmethod
    def _setting_widget(f: Any, label: str):
        """The control for recipe setting ``f`` (a dataclass field), or None for structural ones."""
        import dataclasses

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

    def _fit_width(self) -> None:
        """Controls that fit a narrow dock: short file buttons, small line edits, and rows
        without a label (buttons, plots, boxes) spanning the label column."""
        from magicgui.widgets import FileEdit

        fit_narrow_docks(self)
        from qtpy.QtWidgets import QLabel

        for edit in _descendants(self.form, FileEdit):
            edit.choose_btn.text = "Browse"
            edit.line_edit.native.setMinimumWidth(40)
        layout = self.form.native.layout()
        for i in range(layout.count()):  # rows without a label (button rows, plots, boxes) span
            row = layout.itemAt(i).widget()
            label = row.findChild(QLabel) if row is not None else None
            if label is not None and label.parent() is row and not label.text():
                label.setVisible(False)

    def _start_changed(self, *_: Any) -> None:
        """Show the settings the chosen starting model was trained with (fine-tuning keeps them
        unless you change them); "scratch" shows the recipe's defaults."""
        import dataclasses

        from napari_nlcl.training.engine import recipe_config_of

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
        self.library_combo.reset_choices()

    # ------------------------------------------------------------------ building a run
    def _data(self):
        """The chosen sources as ``RandomCrops`` plus the recipe-config overrides."""
        from napari_nlcl.training.data import ImageSource, RandomCrops

        cls = self._recipe_cls()
        sources = {}
        for name, (combo, folder) in self._source_widgets.items():
            path = folder.value
            if path is not None and str(path) not in ("", ".") and Path(path).is_dir():
                sources[name] = ImageSource(str(path), name=name)
            elif combo.value is not None:
                layer = combo.value
                if layer.multiscale:
                    raise ValueError(f"layer {layer.name!r} is multiscale; choose a single-scale layer")
                sources[name] = ImageSource(layer.data, rgb=layer.rgb, name=f"{name} ({layer.name})")
        overrides, paired = cls.plan_data(sources)
        settings = {**overrides, **self._settings()}
        data = RandomCrops(sources, crop=int(self.crop_spin.value), batch_size=int(self.batch_spin.value),
                           paired=paired, seed=int(self.seed_spin.value), **cls.data_options(settings))
        return data, settings

    def _settings(self) -> dict[str, Any]:
        """The recipe settings shown in *advanced* (loss weights, and choices such as a mode)."""
        return {k: w.value for k, w in self._advanced.items()}

    def _preview_frame(self):
        import numpy as np

        layer = self.preview_combo.value
        if layer is None:
            return None
        data = layer.data
        lead = data.ndim - (3 if layer.rgb else 2)
        index = tuple(int(i) for i in self._viewer.dims.current_step[:lead]) if lead else ()
        index = tuple(min(i, s - 1) for i, s in zip(index, data.shape[:lead]))
        return np.asarray(data[index] if index else data)

    def _update_preview_frame(self, *_: Any) -> None:
        if self.trainer is not None and self.preview_combo.value is not None:
            try:
                self.trainer.preview_image = self._preview_frame()  # read by the worker at its next preview
            except (ValueError, IndexError):
                pass

    def _build_trainer(self):
        from napari_nlcl.training.engine import Trainer, TrainConfig

        data, settings = self._data()
        config = TrainConfig(
            steps=int(self.steps_spin.value), batch_size=int(self.batch_spin.value),
            crop=int(self.crop_spin.value), lr=float(self.lr_spin.value), seed=int(self.seed_spin.value),
            device=self.device_combo.value, precision=self.precision_combo.value,
            preview_every=int(self.preview_spin.value),
            schedule=self._recipe_cls().schedule, monitor_every=int(self.monitor_spin.value),
            patience=int(self.patience_spin.value), keep_best=bool(self.keep_best_check.value),
            minutes=float(self.minutes_spin.value),
        )
        if config.minutes:
            config.steps = 1_000_000  # the budget decides
        ckpt = self._run_dir / "run.pt"
        kwargs = dict(checkpoint=ckpt, preview_image=self._preview_frame(),
                      metadata={"command": "napari Train widget"})
        start = self.start_combo.value
        if start == SCRATCH:
            return Trainer.from_recipe_name(self.task_combo.value, data, config, recipe_config=settings,
                                            **kwargs)
        source = self._recipe_cls().default_weights if start == DEFAULT else start
        return Trainer.from_model(source, data, config, recipe_config=settings, **kwargs)

    # ------------------------------------------------------------------ actions
    def start(self, *_: Any):
        """Build a new run from the form and start it; returns the worker (None on bad input)."""
        if self._worker is not None:
            return None
        try:
            trainer = self._build_trainer()
        except (ValueError, TypeError, FileNotFoundError, OSError) as exc:
            notify_error(f"cannot start training: {exc}")
            return None
        self._release()
        self.trainer = trainer
        self.plot.clear()
        self.quality_plot.clear()
        self._quality = ""
        return self._run()

    def resume(self, *_: Any):
        """Continue the stopped (or finished) run exactly where it is."""
        if self._worker is not None or self.trainer is None:
            return None
        tr = self.trainer
        if tr.step >= tr.config.steps:  # finished: train for another "steps"
            tr.config.steps = tr.step + int(self.steps_spin.value)
        return self._run()

    def _run(self):
        from napari.qt.threading import create_worker

        trainer = self.trainer

        def work():
            yield from shielded(trainer.fit_iter())

        worker = create_worker(work, _start_thread=False, _worker_class=_closing_worker_class(),
                               _ignore_errors=True,  # errors reach _on_error as notifications
                               _progress={"total": max(trainer.config.steps - trainer.step, 1),
                                          "desc": f"training {self.task_combo.value}"})
        self._worker = worker
        self._failed = False
        self._docked = self.native.parent() is not None
        worker.yielded.connect(self._on_event)
        worker.errored.connect(self._on_error)
        worker.finished.connect(self._on_finished)
        self._set_busy(True)
        self.status.value = f"training from step {trainer.step}..."
        worker.start()
        return worker

    def stop(self, *_: Any) -> None:
        if self._worker is not None:
            self.status.value = "stopping after this step..."
            self._worker.quit()

    def reset(self, *_: Any) -> None:
        """Forget the run and free its memory (GPU cache included)."""
        if self._worker is not None:
            return
        self._release()
        self.plot.clear()
        self.progress.value = 0
        self.status.value = "reset"
        self._set_busy(False)

    def _release(self) -> None:
        self.trainer = None
        import gc

        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:  # pragma: no cover
            pass

    # ------------------------------------------------------------------ worker signals (main thread)
    def _on_event(self, event) -> None:
        if getattr(self, "_docked", False) and self.native.parent() is None and self._worker is not None:
            self._docked = False  # the dock was closed: stop after this step instead of training unseen
            self._worker.quit()
            notify_info(f"training stopped at step {event.step}: the Train widget was closed")
        if event.kind == "step":
            self.plot.add_point(event.step, event.losses)
            self.progress.max = max(event.total, 1)
            self.progress.value = event.step
            self.status.value = (f"step {event.step}/{event.total}  "
                                 f"{event.images_per_s / max(self.trainer.config.batch_size, 1):.2f} steps/s  "
                                 f"{_format_seconds(event.seconds_left)} left")
            if self._quality:
                self.status.value += f"  |  {self._quality}"
        elif event.kind == "monitor" and event.monitor is not None:
            m = event.monitor
            self.quality_plot.add_point(m.step, {"quality (dB)": m.score})
            since = self.trainer.evaluations_since_best() if self.trainer is not None else 0
            self._quality = (f"quality {m.score:.2f} dB, best {m.best_score:.2f} at step {m.best_step}"
                             + (f" (no gain for {since} scores)" if since else ""))
        elif event.kind == "preview" and event.preview is not None:
            self._show_preview(event.preview)

    def _show_preview(self, image) -> None:
        name = f"{self.task_combo.value} preview"
        source = self.preview_combo.value
        if name in self._viewer.layers and self._viewer.layers[name].data.shape == image.shape:
            self._viewer.layers[name].data = image  # in place: never a new layer per update
        else:
            if name in self._viewer.layers:
                self._viewer.layers.remove(name)
            rgb = bool(getattr(source, "rgb", image.ndim == 3 and image.shape[-1] in (3, 4)))
            self._viewer.add_image(image, name=name, rgb=rgb,
                                   contrast_limits=getattr(source, "contrast_limits", None))

    def _on_error(self, exc: BaseException) -> None:
        exc = original_error(exc)
        hint = memory_hint(exc) and " (out of memory: lower the batch size or the crop size, or train on the CPU)"
        notify_error(f"training failed: {exc}{hint}")
        self._failed = True
        tr = self.trainer
        saved = "" if tr is None or tr.saved_step is None else f"; the checkpoint holds step {tr.saved_step}"
        self.status.value = f"failed{saved}; Continue retries from the last completed step"

    def _on_finished(self) -> None:
        self._worker = None
        tr = self.trainer
        if tr is not None and not self._failed:  # _on_error has said what happened
            state = "done" if tr.step >= tr.config.steps else "stopped"
            saved = "; checkpoint saved" if tr.saved_step == tr.step else ""
            text = tr.stop_reason or f"{state} at step {tr.step}"
            if tr.best is not None and tr.config.keep_best:
                text += f"; keeps step {tr.best['step']} ({tr.best['score']:.2f} dB)"
            self.status.value = f"{text}{saved}"
        self._failed = False
        self._set_busy(False)

    def _set_busy(self, busy: bool) -> None:
        has_run = self.trainer is not None
        self.start_button.enabled = not busy
        self.stop_button.enabled = busy
        self.continue_button.enabled = not busy and has_run
        self.reset_button.enabled = not busy and has_run
        self.save_button.enabled = not busy and has_run
        self.apply_button.enabled = not busy and has_run
        self.task_combo.enabled = not busy

    # ------------------------------------------------------------------ models
    def save_model(self, *_: Any):
        """Save the current run to the model library under the given name."""
        from napari_nlcl import library

        if self.trainer is None or self._worker is not None:
            return None
        try:
            name = library.check_name(self.name_edit.value)
            ckpt = self.trainer.save()
            path = library.save_model(ckpt, name, overwrite=True)
        except (ValueError, OSError) as exc:
            notify_error(f"cannot save: {exc}")
            return None
        notify_info(f"saved {name!r} to {path.parent}")
        self.status.value = f"saved as {name!r}"
        return path

    def apply_to_stack(self, *_: Any):
        """Apply the current model to the whole first data layer (lazily for dask stacks)."""
        import copy

        from napari_nlcl.checks import is_dask
        from napari_nlcl.inference import predict

        if self.trainer is None or self._worker is not None:
            return None
        layer = next((c.value for c, _ in self._source_widgets.values() if c.value is not None), None)
        if layer is None:
            notify_error("choose a data layer to apply the model to")
            return None
        model = copy.deepcopy(self.trainer.model).cpu().eval()  # the weight average, if the run keeps one
        name = f"{layer.name} {self.task_combo.value} (trained)"
        try:
            if is_dask(layer.data):
                result = predict(layer.data, model, device="cpu")  # lazy: planes computed on view
                return self._put_layer(name, result, layer)
            worker = predict_worker(layer.data, model, {"device": self.device_combo.value,
                                                        "precision": self.precision_combo.value})
            worker.returned.connect(lambda out: self._put_layer(name, out, layer))
            worker.errored.connect(lambda exc: notify_error(f"apply failed: {original_error(exc)}"))
            worker.start()
            return worker
        except (ValueError, TypeError) as exc:
            notify_error(str(exc))
            return None

    def _put_layer(self, name: str, data: Any, like: Any) -> None:
        if name in self._viewer.layers:
            self._viewer.layers.remove(name)
        self._viewer.add_image(data, name=name, rgb=like.rgb, contrast_limits=like.contrast_limits,
                               scale=like.scale, translate=like.translate)

    def import_model(self, *_: Any):
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
        from napari_nlcl.training.engine import export_model

        src = self.library_combo.value
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
        from napari_nlcl import library

        src = self.library_combo.value
        if src is None:
            notify_error("select one of my models to delete")
            return
        if not confirm(self, f"Delete the model {Path(src).stem!r} from your library? This cannot be undone."):
            return
        try:
            library.remove_model(Path(src).stem)
        except (ValueError, OSError) as exc:
            notify_error(f"cannot delete: {exc}")
