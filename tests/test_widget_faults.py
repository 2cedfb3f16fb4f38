"""Fault injection: a model (or a training step) raising mid-run never leaves a widget stuck.

superqt's generator worker *returns* a ``RuntimeError`` raised by its generator
instead of raising it, so without care neither ``errored`` nor ``finished`` is
emitted; every torch error (out-of-memory included) is a ``RuntimeError``.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
torch = pytest.importorskip("torch")

from napari_nlcl._napari import _train  # noqa: E402
from napari_nlcl._napari._dehaze import DehazeWidget  # noqa: E402
from napari_nlcl._napari._derain import DerainWidget  # noqa: E402
from napari_nlcl._napari._translate import TranslateWidget  # noqa: E402

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("main_thread_only", "toy_recipe")]

FAULTS = {
    "runtime": lambda: RuntimeError("boom inside a convolution"),
    "oom": lambda: torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
}


class Flaky(torch.nn.Module):
    """A conv model (``inner``) whose ``fail_at``-th forward call raises (once)."""

    def __init__(self, inner, fault, fail_at=2):
        super().__init__()
        self.inner = inner
        self.info = self.inner.info
        self.fault, self.fail_at, self.calls = fault, fail_at, 0

    def forward(self, x):
        self.calls += 1
        if self.calls == self.fail_at:
            raise FAULTS[self.fault]()
        return self.inner(x)


def _task_widget(make_napari_viewer, make_conv_model, cls, monkeypatch, fault):
    viewer = make_napari_viewer()
    w = cls(viewer)
    viewer.window.add_dock_widget(w)
    image = (np.random.default_rng(0).random((150, 170, 3)) * 255).astype(np.uint8)
    layer = viewer.add_image(image, name="photo", rgb=True)
    w.layer_combo.value = layer
    w.tile_spin.min = 64  # the flaky stand-in below needs no overlap (the real default's is larger)
    w.tile_spin.value = 64  # several tiles: the fault lands mid-plane
    model = Flaky(make_conv_model(), fault)
    import napari_nlcl.api

    # the widget builds its model with api.load_model: it gets the flaky one
    monkeypatch.setattr(napari_nlcl.api, "load_model", lambda *a, **k: model)
    return viewer, w, layer


@pytest.mark.parametrize("fault", sorted(FAULTS))
@pytest.mark.parametrize("cls", [DehazeWidget, DerainWidget, TranslateWidget])
def test_task_widget_reports_a_runtime_error_and_runs_again(make_napari_viewer, make_conv_model, qtbot,
                                                            errors, monkeypatch, cls, fault):
    viewer, w, layer = _task_widget(make_napari_viewer, make_conv_model, cls, monkeypatch, fault)
    before = len(viewer.layers)
    assert w.run() is not None
    qtbot.waitUntil(lambda: w._worker is None, timeout=30000)
    assert len(errors) == 1 and "failed" in errors[0]
    assert ("out of memory" in errors[0]) if fault == "oom" else ("boom" in errors[0])
    assert len(viewer.layers) == before  # nothing added
    assert w.run_button.enabled and not w.stop_button.enabled
    assert w.run() is not None  # the widget is usable: the next run succeeds
    qtbot.waitUntil(lambda: w._worker is None, timeout=30000)
    assert len(errors) == 1
    assert w.output_name(layer) in viewer.layers


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_zarr_export_reports_a_runtime_error_and_runs_again(make_napari_viewer, make_conv_model, qtbot,
                                                           errors, monkeypatch, tmp_path, fault):
    viewer, w, layer = _task_widget(make_napari_viewer, make_conv_model, DerainWidget, monkeypatch, fault)
    w.zarr_path.value = str(tmp_path / "out.zarr")
    assert w.save_zarr() is not None
    qtbot.waitUntil(lambda: w._worker is None, timeout=30000)
    assert len(errors) == 1 and "failed" in errors[0]
    assert list(tmp_path.iterdir()) == []  # no partial output
    assert w.save_zarr() is not None
    qtbot.waitUntil(lambda: w._worker is None, timeout=30000)
    assert len(errors) == 1 and (tmp_path / "out.zarr").is_dir()


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_train_widget_reports_a_runtime_error_and_continues(make_napari_viewer, fill_toy_run, qtbot,
                                                            errors, monkeypatch, fault):
    viewer = make_napari_viewer()
    w = _train.TrainWidget(viewer)
    viewer.window.add_dock_widget(w)
    fill_toy_run(viewer, w, steps=12)
    build = _train.TrainWidget._build_trainer
    fail = {"on": True}

    def build_failing(self):
        trainer = build(self)
        step_fn = trainer.recipe.training_step

        def failing_step(batch, step):
            if step == 5 and fail["on"]:
                raise FAULTS[fault]()
            return step_fn(batch, step)

        trainer.recipe.training_step = failing_step
        return trainer

    monkeypatch.setattr(_train.TrainWidget, "_build_trainer", build_failing)
    assert w.start() is not None
    qtbot.waitUntil(lambda: w._worker is None, timeout=30000)
    assert len(errors) == 1 and "training failed" in errors[0]
    assert ("out of memory" in errors[0]) if fault == "oom" else ("boom" in errors[0])
    assert w.trainer.step == 5 and "failed" in w.status.value and "checkpoint saved" not in w.status.value
    assert w.continue_button.enabled and w.start_button.enabled and not w.stop_button.enabled
    fail["on"] = False
    assert w.resume() is not None
    qtbot.waitUntil(lambda: w._worker is None, timeout=30000)
    assert w.trainer.step == 12 and "done" in w.status.value and len(errors) == 1


def test_every_control_has_a_tooltip(make_napari_viewer):
    """Every control a user can touch says what it does (its tooltip)."""
    from magicgui.widgets import Container, Label

    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((64, 64, 3), np.uint8), rgb=True)

    def controls(c):
        for w in c:
            if isinstance(w, Container):
                yield from controls(w)
            elif not isinstance(w, Label) and w.widget_type not in ("EmptyWidget",) and w.name != "form_scroll":
                yield w

    for cls in (DehazeWidget, DerainWidget, TranslateWidget, _train.TrainWidget):
        w = cls(viewer)
        missing = []
        for task in (getattr(w, "task_combo", None) and w.task_combo.choices) or [None]:
            if task is not None:
                w.task_combo.value = task
            for method in (getattr(w, "method_combo", None) and list(w.method_combo.choices)) or [None]:
                if method is not None:
                    w.method_combo.value = method
                root = getattr(w, "form", w)
                found = list(controls(root))
                assert len(found) >= 8, (cls.__name__, len(found))  # the walk reaches the controls
                missing += [f"{cls.__name__}: {x.label or x.name}" for x in found if not x.tooltip]
        assert not missing, sorted(set(missing))
