"""The Train widget on a real viewer (under Xvfb), with tiny models so each test takes seconds."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest

pytest.importorskip("napari")

from napari_nlcl._napari import _dehaze, _library, _train
from napari_nlcl.modelfile import read_checkpoint

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("main_thread_only", "toy_recipe")]


@pytest.fixture
def train(make_napari_viewer, toy_recipe):
    viewer = make_napari_viewer()
    w = _train.TrainWidget(viewer)
    viewer.window.add_dock_widget(w)
    return viewer, w


def _wait(qtbot, w, timeout=60000):
    qtbot.waitUntil(lambda: w._worker is None, timeout=timeout)


def _image(shape=(80, 96, 3), seed=0):
    return (np.random.default_rng(seed).random(shape) * 255).astype(np.uint8)


def _setup_dehaze(w, hazy, clear=None, *, steps):
    """A tiny dehaze run from scratch (no CR: no encoder needed), no preview."""
    w.task_combo.value = "dehaze"
    w._source_widgets["hazy"][0].value = hazy
    w._source_widgets["clear"][0].value = clear
    w.start_combo.value = _train.SCRATCH
    w._advanced["cr_weight"].value = 0.0
    w.steps_spin.value = steps
    w.batch_spin.value = 1
    w.crop_spin.value = 32
    w.preview_combo.value = None


def test_recipes_and_their_inputs_come_from_the_registry(train):
    viewer, w = train
    assert {"dehaze", "toy"} <= set(w.task_combo.choices)
    w.task_combo.value = "dehaze"
    assert set(w._source_widgets) == {"hazy", "clear"}
    assert "cr_weight" in w._advanced and "dark_weight" in w._advanced
    w.task_combo.value = "toy"
    assert set(w._source_widgets) == {"image"}
    assert w.start_combo.choices == (_train.SCRATCH,)  # toy ships no default and has no saved models


def test_advanced_shows_readable_settings_and_hides_the_rest(train):
    from napari_nlcl.training import recipe_class

    viewer, w = train
    w.task_combo.value = "derain"
    labels = list(recipe_class("derain").user_settings)
    shown = [c for c in w.advanced_box if c in w._advanced.values()]
    assert [name for name, c in w._advanced.items() if c in shown] == labels  # in the recipe's order
    assert shown[0].label == "stay close to the start" and "nl_patches" not in [c.label for c in shown]
    expert = w._advanced["nl_patches"]  # a sampling size: behind the second switch, by its name
    assert expert.label == "nl_patches" and expert in w.expert_box and w.expert_box.native.isHidden()
    w.show_advanced.value = True
    w.expert_check.value = True
    assert not w.expert_box.native.isHidden()
    assert {"anchor_weight", "nl_patches", "bank_seed"} <= set(w._settings())  # every value still counts
    assert all(c.tooltip for c in w._advanced.values())


def test_start_stop_continue_and_live_plot(train, qtbot, errors, fill_toy_run):
    viewer, w = train
    fill_toy_run(viewer, w, steps=400)
    worker = w.start()
    assert worker is not None and errors == []
    qtbot.waitUntil(lambda: w.trainer.step >= 5, timeout=30000)
    w.stop()
    _wait(qtbot, w)
    stopped = w.trainer.step
    assert 5 <= stopped < 400
    ckpt = read_checkpoint(w.trainer.checkpoint)  # Stop left a valid checkpoint at that step
    assert int(ckpt["step"]) == stopped
    assert "stopped" in w.status.value and w.continue_button.enabled
    points = w.plot.series()["l1"]
    assert points and points[-1][0] == stopped
    w.steps_spin.value = 10
    w.trainer.config.steps = stopped + 10  # continue to a nearby end
    w.resume()
    _wait(qtbot, w)
    assert w.trainer.step == stopped + 10
    steps = [s for s, _ in w.plot.series()["l1"]]
    assert steps == sorted(set(steps)) and steps[-1] == stopped + 10  # one curve, no restart
    assert "done" in w.status.value
    assert errors == []


def test_preview_layer_is_updated_in_place(train, qtbot, errors, fill_toy_run):
    viewer, w = train
    fill_toy_run(viewer, w, steps=6, preview_every=2)
    inserted = []
    viewer.layers.events.inserted.connect(lambda e: inserted.append(e.value.name))
    w.start()
    _wait(qtbot, w)
    assert inserted.count("toy preview") == 1  # created once, then data replaced
    preview = viewer.layers["toy preview"]
    assert preview.data.shape == viewer.layers["frames"].data.shape
    assert errors == []


def test_reset_frees_the_run(train, qtbot, fill_toy_run):
    viewer, w = train
    fill_toy_run(viewer, w, steps=3)
    w.start()
    _wait(qtbot, w)
    w.reset()
    assert w.trainer is None and not w.continue_button.enabled
    assert w.plot.series() == {}


def test_bad_layer_choice_shows_a_notification_and_changes_nothing(train, errors, fill_toy_run):
    viewer, w = train
    fill_toy_run(viewer, w)
    viewer.add_image(np.zeros((10, 12), np.float32), name="tiny")
    w._source_widgets["image"][0].value = viewer.layers["tiny"]
    before = [layer.name for layer in viewer.layers]
    assert w.start() is None
    assert errors and "smaller than the 32 px crop" in errors[0]
    assert [layer.name for layer in viewer.layers] == before
    assert w.trainer is None


def test_two_lazy_stacks_are_read_frame_by_frame(train, qtbot, errors):
    viewer, w = train
    reads: list[tuple[str, int]] = []

    def stack(kind, n=40):
        def load(i):
            reads.append((kind, i))
            return _image((64, 64, 3), seed=i)

        return da.stack([da.from_delayed(dask.delayed(load)(i), (64, 64, 3), np.uint8) for i in range(n)])

    hazy = viewer.add_image(stack("hazy"), name="hazy", rgb=True, contrast_limits=(0, 255))
    clear = viewer.add_image(stack("clear"), name="clear", rgb=True, contrast_limits=(0, 255))
    _setup_dehaze(w, hazy, clear, steps=3)
    reads.clear()
    w.start()
    _wait(qtbot, w)
    assert errors == []
    assert w.trainer.recipe.config.mode == "paired"
    assert 0 < len(reads) <= 6  # 3 steps x 1 frame x 2 stacks, never the 80 frames


def test_saved_model_appears_in_the_dehaze_widget(train, qtbot, errors, monkeypatch):
    viewer, w = train
    dehaze = _dehaze.DehazeWidget(viewer)
    hazy = viewer.add_image(_image((64, 64, 3)), name="hazy", rgb=True)
    _setup_dehaze(w, hazy, steps=2)
    w.start()
    _wait(qtbot, w)
    assert w.trainer.recipe.config.mode == "unsupervised"
    w.name_edit.value = "harbour fog"
    path = w.save_model()
    assert path is not None and errors == []
    assert str(path) in dehaze.method_combo.choices  # listed at once
    assert str(path) in w.start_combo.choices  # and offered as a starting point
    w.library.combo.value = str(path)
    w.library.export_path.value = path.parent.parent / "exported.pt"
    assert w.library.export_model().is_file()
    asked = []
    monkeypatch.setattr(_library, "confirm", lambda parent, q: asked.append(q) or False)
    w.library.delete_model()  # "No": nothing is deleted
    assert path.is_file() and "harbour fog" in asked[0]
    monkeypatch.setattr(_library, "confirm", lambda parent, q: True)
    w.library.delete_model()
    assert str(path) not in dehaze.method_combo.choices and not path.exists()


def test_apply_to_a_lazy_stack_adds_a_lazy_layer(train, qtbot, errors, fill_toy_run):
    viewer, w = train
    layer = fill_toy_run(viewer, w, steps=2)
    w.start()
    _wait(qtbot, w)
    stack = da.from_array(np.stack([_image()] * 5), chunks=(1, 80, 96, 3))
    lazy = viewer.add_image(stack, name="lazy", rgb=True)
    w._source_widgets["image"][0].value = lazy
    assert w.apply_to_stack() is None  # lazy: no worker
    out = viewer.layers["lazy toy (trained)"]
    assert isinstance(out.data, da.Array) and out.data.shape == stack.shape
    w._source_widgets["image"][0].value = layer
    worker = w.apply_to_stack()
    qtbot.waitUntil(lambda: "frames toy (trained)" in viewer.layers, timeout=30000)
    assert worker is not None and errors == []


def test_quality_monitor_is_plotted_and_the_kept_step_is_saved(train, qtbot, errors, model_library,
                                                                fill_toy_run):
    """The toy recipe's monitor (its known degradation): the widget plots it, says the best,
    and "Save to my models" writes the kept (best) weights."""
    import json

    viewer, w = train
    fill_toy_run(viewer, w, steps=30)
    w.monitor_spin.value = 5
    w.patience_spin.value = 0
    w.start()
    _wait(qtbot, w)
    points = w.quality_plot.series()["quality (dB)"]
    assert [s for s, _ in points] == [0, 5, 10, 15, 20, 25, 30]
    best_step, best = max(points, key=lambda p: p[1])
    assert w.trainer.best["step"] == best_step
    assert f"keeps step {best_step}" in w.status.value
    w.name_edit.value = "kept"
    path = w.save_model()
    assert path is not None and errors == []
    payload = read_checkpoint(path)
    assert json.loads(payload["metadata"])["kept"]["step"] == best_step


def test_train_widget_fits_a_1280x800_screen(train):
    viewer, w = train
    w.show_advanced.value = True
    # napari docks w.native: the form scrolls inside it instead of forcing the window taller
    assert w.native.minimumSizeHint().height() < 500 < w.form.native.minimumSizeHint().height()
    dock = viewer.window._qt_window.findChildren(type(w.native.parentWidget()))
    assert dock and viewer.window._qt_window.minimumSizeHint().height() < 800
    for task in ("dehaze", "derain", "translate"):  # and a narrow (400 px) dock
        w.task_combo.value = task
        w.expert_check.value = True
        assert w.form.native.minimumSizeHint().width() <= 360, task
        assert w.native.minimumSizeHint().width() <= 400, task


def test_closing_the_dock_mid_run_stops_training(make_napari_viewer, qtbot, errors):
    viewer = make_napari_viewer()
    w = _train.TrainWidget(viewer)
    dock = viewer.window.add_dock_widget(w)
    hazy = viewer.add_image(np.random.default_rng(0).random((2, 48, 48, 3)).astype(np.float32), rgb=True)
    _setup_dehaze(w, hazy, steps=100_000)
    w.monitor_spin.value = 0
    w.start()
    qtbot.waitUntil(lambda: w.trainer is not None and w.trainer.step >= 2, timeout=60000)
    viewer.window.remove_dock_widget(dock)  # the dock's close button
    _wait(qtbot, w)
    assert w.trainer.step < 1000 and errors == []
