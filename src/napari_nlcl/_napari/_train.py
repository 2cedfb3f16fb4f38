"""The Train widget: fine-tune a model on the user's own layers or folders, live.

A thin view over the headless trainer.  The form (:mod:`._train_form`) says
what to train; this module runs it.  ``Trainer.fit_iter()`` runs in a napari
generator worker; every event it yields (a step with its losses, a preview, a
checkpoint) comes back to the main thread through the worker's ``yielded``
signal, where the loss plot, the progress line and the preview layer are
updated.  Nothing napari-side is touched from the worker thread.

* Stop is ``worker.quit()``: it takes effect at the next yield (one step) and
  the trainer's generator is closed in the worker thread, which writes a
  valid checkpoint at the current step.
* Continue runs ``fit_iter()`` again on the same trainer: it resumes exactly
  where Stop left it (same weights, optimiser, schedule and data stream).
* Reset drops the trainer and frees the GPU's cached memory.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari_nlcl._napari._layers import replace_image
from napari_nlcl._napari._train_form import DEFAULT, SCRATCH, TrainForm
from napari_nlcl._napari._workers import (
    closing_worker,
    memory_hint,
    notify_error,
    notify_info,
    original_error,
    predict_worker,
)

if TYPE_CHECKING:  # pragma: no cover
    import napari

def _format_seconds(s: float) -> str:
    """``s`` seconds as m:ss, or h:mm:ss from an hour on ('?' when not finite)."""
    if not math.isfinite(s):
        return "?"
    s = int(round(s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class TrainWidget(TrainForm):
    """Fine-tune or train a model on layers or folders, with live loss and preview."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        self._worker = None
        self._failed = False
        self._quality = ""
        self.trainer = None
        super().__init__(viewer)
        self.start_button.changed.connect(self.start)
        self.stop_button.changed.connect(self.stop)
        self.continue_button.changed.connect(self.resume)
        self.reset_button.changed.connect(self.reset)
        self.save_button.changed.connect(self.save_model)
        self.apply_button.changed.connect(self.apply_to_stack)
        viewer.dims.events.current_step.connect(self._update_preview_frame)

    # ------------------------------------------------------------------ building a run
    def _sources(self) -> dict[str, Any]:
        """The chosen training sources: a folder where one is given, else the layer."""
        from napari_nlcl.training.data import ImageSource

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
        return sources

    def _update_preview_frame(self, *_: Any) -> None:
        if self.trainer is not None and self.preview_combo.value is not None:
            try:
                self.trainer.preview_image = self._preview_frame()  # read by the worker at its next preview
            except (ValueError, IndexError):
                pass

    def _build_trainer(self):
        """The run the form describes (:func:`napari_nlcl.training.plan.plan_run`, as the CLI and finetune())."""
        from napari_nlcl.training.plan import plan_run

        start = self.start_combo.value
        minutes = float(self.minutes_spin.value)
        return plan_run(
            self.task_combo.value, self._sources(),
            start=None if start == SCRATCH else ("default" if start == DEFAULT else start),
            settings=self._settings(), steps=None if minutes else int(self.steps_spin.value),
            crop=int(self.crop_spin.value), batch_size=int(self.batch_spin.value), lr=float(self.lr_spin.value),
            seed=int(self.seed_spin.value), checkpoint=self._run_dir / "run.pt",
            metadata={"command": "napari Train widget"}, preview_image=self._preview_frame(),
            device=self.device_combo.value, precision=self.precision_combo.value,
            preview_every=int(self.preview_spin.value), monitor_every=int(self.monitor_spin.value),
            patience=int(self.patience_spin.value), keep_best=bool(self.keep_best_check.value), minutes=minutes)

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
        trainer = self.trainer
        worker = closing_worker(trainer.fit_iter(), total=max(trainer.config.steps - trainer.step, 1),
                                desc=f"training {self.task_combo.value}")
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
                text += f"; {tr.kept_summary()}"
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

    # ------------------------------------------------------------------ the trained model
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
        from napari_nlcl.inference import plan_inference, predict

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
                return replace_image(self._viewer, name, result, layer)
            plan = plan_inference(layer.data, model, channel_axis=-1 if layer.rgb else None,
                                  device=self.device_combo.value, precision=self.precision_combo.value)
            worker = predict_worker(layer.data, model, plan)
            worker.returned.connect(lambda out: replace_image(self._viewer, name, out, layer))
            worker.errored.connect(lambda exc: notify_error(f"apply failed: {original_error(exc)}"))
            worker.start()
            return worker
        except (ValueError, TypeError) as exc:
            notify_error(str(exc))
            return None
