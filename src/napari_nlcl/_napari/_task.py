"""TaskWidget: apply a restoration method of one task to an image layer, the base of the
Dehaze, Derain and Translate widgets.  A thin view over :mod:`napari_nlcl.inference`.

Heavy work runs in a generator worker (:mod:`._workers`): the engine yields
progress between tiles, the worker forwards it to the progress bar, and Stop
quits the worker at the next yield.  No napari object is touched from the
worker thread; layers are added or updated in the main thread from the
worker's ``returned`` signal.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    ProgressBar,
    PushButton,
    SpinBox,
)

from napari_nlcl._napari._form import fit_narrow_docks, set_tooltips
from napari_nlcl._napari._layers import (
    block_on_screen,
    follow_viewer,
    image_layers,
    preferred_layer,
    put_image,
)
from napari_nlcl._napari._workers import (
    generator_worker,
    memory_hint,
    notify_error,
    notify_info,
    original_error,
    predict_worker,
)

if TYPE_CHECKING:  # pragma: no cover
    import napari

#: the widgets' "value range" choices -> the engine's value_range ("limits": the layer's contrast limits)
VALUE_RANGES = {"contrast limits": "limits", "data type": None, "each plane": "plane"}
OUTPUT_SUFFIX = {"dehaze": "dehazed", "derain": "derained", "translate": "translated"}

TOOLTIPS = {
    "layer_combo": "The image layer to process (grey, RGB, or a stack: every plane is processed)",
    "method_combo": "The method or model: the shipped default, a classical method, or one of "
                    "your saved models",
    "tile_spin": "Planes larger than this are processed in overlapping tiles of this size: "
                 "smaller uses less memory, larger is a little faster. The overlap is chosen "
                 "from the model so that tiles leave no seams",
    "device_combo": "Where the model runs: auto picks a GPU when there is one, else the CPU",
    "precision_combo": "Arithmetic of the network: auto uses bfloat16 on CPUs that compute it natively (1.7-3x "
                       "faster, measured within 0.01 dB of float32), else float32; float16 is for CUDA",
    "range_combo": "Which intensities map to black and white for the model. 'contrast limits': the layer's "
                   "(right for 12-bit data in uint16 and other data that does not fill its type); "
                   "'data type': 0-255 / 0-65535; 'each plane': each plane's own minimum and maximum.",
    "lazy_check": "For a lazy (dask) stack: add the result at once and compute each plane when "
                  "you look at it, instead of processing the whole stack first",
    "run_button": "Process the selected layer in the background; the result is a new layer "
                  "(the input is never changed)",
    "stop_button": "Stop the running job; layers stay as they were",
    "zarr_path": "Where to write the whole processed stack (a .zarr folder, written plane by "
                 "plane; an existing one is replaced only when the new one is complete)",
    "zarr_button": "Process every plane of the layer and write the result to the zarr file above",
    "progress": "Tiles done",
    "status": "What the last run did",
}

_SMALLEST_TILE: dict[tuple[str, str], int] = {}


def smallest_tile(task: str, method: Any) -> int | None:
    """The smallest tile (a multiple of 64 px) larger than ``method``'s default overlap, or None."""
    if method is None:
        return None
    key = (task, str(method))
    if key not in _SMALLEST_TILE:
        from napari_nlcl import load_model
        from napari_nlcl.inference import default_overlap

        try:
            info = load_model(method, task=task).info
        except Exception:  # noqa: BLE001 - a model that does not load is reported when it is run
            return None
        _SMALLEST_TILE[key] = max(64, (default_overlap(info) // 64 + 1) * 64)
    return _SMALLEST_TILE[key]


def option_widget(opt: Any) -> Any:
    """The spin box for a method's option ``opt`` (an integer one when all its numbers are)."""
    is_int = all(isinstance(v, int) for v in (opt.default, opt.minimum, opt.maximum, opt.step))
    cls = SpinBox if is_int else FloatSpinBox
    w = cls(label=opt.label, min=opt.minimum, max=opt.maximum, step=opt.step, value=opt.default)
    w.tooltip = opt.help or f"{opt.label}: {opt.minimum} to {opt.maximum} (default {opt.default})"
    return w


class TaskWidget(Container):
    """Apply a restoration method of ``task`` to an image layer.

    Subclasses only set ``task``; the methods and their options come from the
    method registry, so a newly registered method appears here unchanged.
    """

    task = "dehaze"

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        from napari_nlcl import registry

        super().__init__(labels=True)
        self._viewer = viewer
        self._worker = None
        self._specs = {s.name: s for s in registry.methods(self.task)}
        self._add_controls()
        set_tooltips(self, TOOLTIPS)
        self._option_widgets: dict[str, Any] = {}
        self._rebuild_options()
        self.method_combo.changed.connect(self._rebuild_options)
        self.run_button.changed.connect(self.run)
        self.stop_button.changed.connect(self.stop)
        self.zarr_button.changed.connect(self.save_zarr)
        # a model saved in the Train widget appears at once
        follow_viewer(self, viewer, on_layers=self._refresh_layers, on_library=self.refresh_models)
        fit_narrow_docks(self)

    def _add_controls(self) -> None:
        from napari_nlcl.inference import DEFAULT_TILE, available_devices
        from napari_nlcl.inference.precision import PRECISIONS

        self.layer_combo = ComboBox(label="image", choices=self._image_layers, nullable=False)
        if preferred_layer(self._viewer) is not None:
            self.layer_combo.value = preferred_layer(self._viewer)
        self.method_combo = ComboBox(label="method", choices=self._method_choices)
        if "default" in self._specs:
            self.method_combo.value = "default"
        self.tile_spin = SpinBox(label="tile (px)", min=64, max=8192, step=64, value=DEFAULT_TILE)
        self.device_combo = ComboBox(label="device", choices=["auto", *available_devices()], value="auto")
        self.precision_combo = ComboBox(label="precision", choices=list(PRECISIONS), value="auto")
        self.range_combo = ComboBox(label="value range", choices=list(VALUE_RANGES), value="contrast limits")
        self.lazy_check = CheckBox(text="lazy output for stacks", value=True)
        self.options_box = Container(labels=True)
        self.run_button = PushButton(text="Run")
        self.stop_button = PushButton(text="Stop", enabled=False)
        self.progress = ProgressBar(label="progress", min=0, max=1, value=0)
        self.status = Label(label="", value="")
        self.status.native.setWordWrap(True)  # long messages wrap instead of widening the dock
        self.zarr_path = FileEdit(label="save stack to", mode="w", filter="*.zarr")
        self.zarr_button = PushButton(text="Process whole stack to zarr")
        self.extend([
            self.layer_combo, self.method_combo, self.options_box, self.tile_spin,
            self.device_combo, self.precision_combo, self.range_combo, self.lazy_check, self.run_button,
            self.stop_button, self.progress, self.status, self.zarr_path, self.zarr_button,
        ])

    # ------------------------------------------------------------------ helpers
    def _image_layers(self, *_: Any) -> list[tuple[str, Any]]:
        return image_layers(self._viewer)

    def _method_choices(self, *_: Any) -> list[tuple[str, str]]:
        """Registered methods, then the user's saved models of this task (by file path)."""
        from napari_nlcl.library import list_models

        choices = [(s.description.split(":")[0].split(" (")[0] if s.name != "default"
                    else "default model", s.name) for s in self._specs.values()]
        choices += [(f"{m.name} (my model)", str(m.path)) for m in list_models(self.task)]
        return choices

    def refresh_models(self) -> None:
        """Re-read the model library (a newly saved model appears in the method list)."""
        self.method_combo.reset_choices()

    def _refresh_layers(self, *_: Any) -> None:
        self.layer_combo.reset_choices()

    def _rebuild_options(self, *_: Any) -> None:
        self.options_box.clear()
        self._option_widgets = {}
        self._limit_tiles()
        spec = self._specs.get(self.method_combo.value)
        for opt in spec.options if spec else ():
            self._option_widgets[opt.name] = w = option_widget(opt)
            self.options_box.append(w)

    def _limit_tiles(self) -> None:
        """Offer only tiles larger than the chosen model's overlap (smaller ones never run)."""
        smallest = smallest_tile(self.task, self.method_combo.value)
        if smallest is not None:
            self.tile_spin.min = smallest
            self.tile_spin.value = max(int(self.tile_spin.value), smallest)

    def options(self) -> dict[str, Any]:
        return {name: w.value for name, w in self._option_widgets.items()}

    def output_name(self, layer: Any) -> str:
        return f"{layer.name} {OUTPUT_SUFFIX.get(self.task, self.task)}"

    def _busy(self, busy: bool) -> None:
        self.run_button.enabled = not busy
        self.zarr_button.enabled = not busy
        self.stop_button.enabled = busy

    def _prepare(self):
        """Check the selection in the main thread; return (layer, model, the engine's plan)."""
        from napari_nlcl.api import load_model
        from napari_nlcl.inference import plan_inference

        layer = self.layer_combo.value
        if layer is None:
            raise ValueError("no image layer selected: open an image or a sample first")
        if layer.multiscale:
            raise ValueError(f"layer {layer.name!r} is multiscale; these are not supported yet")
        model = load_model(self.method_combo.value, task=self.task, **self.options())
        channel_axis = -1 if layer.rgb else None
        plan = plan_inference(layer.data, model, channel_axis=channel_axis, tile=int(self.tile_spin.value),
                              device=self.device_combo.value, precision=self.precision_combo.value,
                              value_range=self._value_range(layer))
        return layer, model, plan

    def _value_range(self, layer: Any) -> Any:
        """The ``value_range`` of the engine for the chosen "value range" setting."""
        choice = VALUE_RANGES[self.range_combo.value]
        if choice == "limits":
            lo, hi = (float(v) for v in layer.contrast_limits)
            return (lo, hi) if hi > lo else None
        return choice

    # ------------------------------------------------------------------ actions
    def run(self, *_: Any):
        """Process the selected layer; returns the worker (or None when lazy/failed)."""
        from napari_nlcl.checks import is_dask

        if self._worker is not None:
            return None
        try:
            layer, model, plan = self._prepare()
        except (ValueError, TypeError, OSError) as exc:  # OSError: a missing model file
            notify_error(str(exc))
            return None
        if is_dask(layer.data) and self.lazy_check.value:
            return self._run_lazy(layer, model, plan)
        return self._start(predict_worker(layer.data, model, plan), layer)

    def _run_lazy(self, layer: Any, model: Any, plan: Any):
        """Add a lazy result of a dask ``layer`` once the plane on screen is computed."""
        from napari_nlcl.inference import run_plan, shared_planes

        try:
            result = run_plan(layer.data, model, plan)  # lazy: builds the graph (checked in _prepare)
        except (ValueError, TypeError) as exc:
            notify_error(str(exc))
            return None
        # each plane computed once (the rain layer reuses it), and the plane on screen is
        # computed in a worker before the layers are added: napari slices them on the main
        # thread, where it then finds that plane ready instead of running the model there
        result = shared_planes(result)
        key = block_on_screen(self._viewer, layer, result)

        def first_plane():
            yield 0, 1
            result.blocks[key].compute(scheduler="sync")
            return result

        def added(lazy: Any) -> None:
            self._show_result(layer, lazy)
            self.status.value = "lazy result added: planes are computed as you browse"

        return self._start(generator_worker(first_plane()), layer, on_done=added)

    def _start(self, worker, layer: Any, on_done=None):
        self._worker = worker
        self._busy(True)
        self.progress.value = 0
        self.status.value = "running..."
        from napari.utils import progress

        self._activity = progress(total=0, desc=f"{self.task} {getattr(layer, 'name', '')}".strip())
        docked = self._docked = self.native.parent() is not None
        handle = on_done or (lambda result: self._show_result(layer, result))

        def returned(result: Any) -> None:
            if docked and self.native.parent() is None:  # the dock was closed while it ran
                notify_info(f"{self.task}: the widget was closed before the run ended; nothing was added")
                return
            handle(result)

        worker.yielded.connect(self._on_progress)
        worker.returned.connect(returned)
        worker.errored.connect(self._on_error)
        worker.aborted.connect(lambda: setattr(self.status, "value", "stopped; layers unchanged"))
        worker.finished.connect(self._on_finished)
        worker.start()
        return worker

    def _on_progress(self, value: tuple[int, int]) -> None:
        if getattr(self, "_docked", False) and self.native.parent() is None and self._worker is not None:
            self._worker.quit()  # the dock was closed: stop computing what nobody will see
        done, total = value
        self.progress.max = max(total, 1)
        self.progress.value = done
        self.status.value = f"{done}/{total}"
        bar = getattr(self, "_activity", None)
        if bar is not None:  # napari's activity dock
            bar.total = max(total, 1)
            bar.n = done
            bar.refresh()

    def _on_error(self, exc: BaseException) -> None:
        exc = original_error(exc)
        self.status.value = "failed; layers unchanged"
        notify_error(f"{self.task} failed: {exc}{memory_hint(exc)}")

    def _on_finished(self) -> None:
        self._worker = None
        bar, self._activity = getattr(self, "_activity", None), None
        if bar is not None:
            bar.close()
        self._busy(False)

    def stop(self, *_: Any) -> None:
        if self._worker is not None:
            self.status.value = "stopping..."
            self._worker.quit()

    def _show_result(self, layer: Any, result: Any) -> None:
        name = self.output_name(layer)
        put_image(self._viewer, name, result, layer)
        self.status.value = f"done: {name}"

    def save_zarr(self, *_: Any):
        """Process the whole layer lazily and write it plane by plane to a zarr file."""
        from napari_nlcl.inference import run_plan
        from napari_nlcl.io import check_target, iter_write

        if self._worker is not None:
            return None
        try:
            layer, model, plan = self._prepare()
            path = Path(self.zarr_path.value)
            if path.suffix.lower() != ".zarr":
                path = path.with_name(path.name + ".zarr") if path.name else path
            check_target(path, {".zarr"})
            import dask.array as da

            lazy = run_plan(da.asarray(layer.data), model, plan)  # rechunked to planes there
        except (ValueError, TypeError, FileNotFoundError, PermissionError) as exc:
            notify_error(str(exc))
            return None

        def done(written: Path) -> None:
            self.status.value = f"saved {written}"
            notify_info(f"saved {written}")

        return self._start(generator_worker(iter_write(path, lazy, rgb=layer.rgb)), layer, on_done=done)
