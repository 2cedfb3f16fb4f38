"""The Derain widget on a real viewer (Xvfb): default model, rain layer, lazy stacks, the library."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest

pytest.importorskip("napari")

from napari_nlcl._napari._derain import DerainWidget

pytestmark = pytest.mark.gui


def _rainy(example, shape=(128, 160)):
    clean, rainy = example
    h, w = shape
    return clean[:h, :w], (rainy[:h, :w] * 255).round().astype(np.uint8)


def _wait_idle(qtbot, w):
    qtbot.waitUntil(lambda: w._worker is None, timeout=60000)


def test_default_model_removes_rain_and_shows_the_rain_layer(make_napari_viewer, qtbot, errors,
                                                              rainy_example):
    viewer = make_napari_viewer()
    w = DerainWidget(viewer)
    assert w.method_combo.value == "default"
    clean, data = _rainy(rainy_example, (256, 384))
    layer = viewer.add_image(data.copy(), name="rainy", rgb=True)
    w.rain_check.value = True
    worker = w.run()
    assert worker is not None
    _wait_idle(qtbot, w)
    assert errors == []
    out = viewer.layers["rainy derained"].data
    rain = viewer.layers["rainy rain"].data
    assert out.shape == data.shape and out.dtype == np.uint8 and rain.dtype == np.uint8
    err_in = np.abs(data / 255.0 - clean).mean()
    assert np.abs(out / 255.0 - clean).mean() < 0.7 * err_in
    np.testing.assert_array_equal(rain, np.clip(data.astype(int) - out.astype(int), 0, 255))
    np.testing.assert_array_equal(layer.data, data)  # input untouched
    # running again updates both layers in place
    rain_layer = viewer.layers["rainy rain"]
    assert w.run() is not None
    _wait_idle(qtbot, w)
    assert viewer.layers["rainy rain"] is rain_layer and len(viewer.layers) == 3
    # the rain layer never covers the result: hidden, below it
    names = [lay.name for lay in viewer.layers]
    assert not rain_layer.visible and names.index("rainy rain") < names.index("rainy derained")
    # unchecked on a later run: no stale rain layer is left
    w.rain_check.value = False
    assert w.run() is not None
    _wait_idle(qtbot, w)
    assert "rainy rain" not in viewer.layers and "rainy derained" in viewer.layers


def _wait_worker(qtbot, w, worker):
    assert worker is not None
    qtbot.waitUntil(lambda: w._worker is None, timeout=60000)


def test_lazy_stack_gives_lazy_background_and_rain(make_napari_viewer, errors, qtbot, rainy_example):
    viewer = make_napari_viewer()
    w = DerainWidget(viewer)
    _, frame = _rainy(rainy_example, (64, 96))
    reads: list[int] = []

    def load(i):
        reads.append(i)
        return frame

    stack = da.stack([da.from_delayed(dask.delayed(load)(i), frame.shape, np.uint8) for i in range(25)])
    viewer.add_image(stack, name="stack", rgb=True, contrast_limits=(0, 255))
    w.rain_check.value = True
    reads.clear()
    _wait_worker(qtbot, w, w.run())  # lazy: the worker computes the plane on screen, then adds
    assert isinstance(viewer.layers["stack derained"].data, da.Array)
    assert isinstance(viewer.layers["stack rain"].data, da.Array)
    assert len(set(reads)) <= 4  # what napari shows, never the whole stack
    assert errors == []


def test_baseline_method_has_options_and_bad_layers_are_refused(make_napari_viewer, qtbot, errors):
    viewer = make_napari_viewer()
    w = DerainWidget(viewer)
    names = [v for v in w.method_combo.choices]
    assert "default" in names and "dcp" not in names  # only deraining methods
    viewer.add_image(np.zeros((8, 8, 3), np.uint8), name="tiny", rgb=True)
    assert w.run() is None
    assert len(errors) == 1 and ("smaller" in errors[0].lower() or "at least" in errors[0].lower())
    assert [layer.name for layer in viewer.layers] == ["tiny"]


def test_widget_from_plugin_manager(make_napari_viewer):
    viewer = make_napari_viewer()
    _, w = viewer.window.add_plugin_dock_widget("napari-nlcl", "Derain")
    assert isinstance(w, DerainWidget)


def test_train_widget_offers_derain_with_rainy_and_clean_inputs(make_napari_viewer):
    from napari_nlcl._napari._train import TrainWidget

    viewer = make_napari_viewer()
    w = TrainWidget(viewer)
    assert "derain" in list(w.task_combo.choices)
    w.task_combo.value = "derain"
    assert set(w._source_widgets) == {"rainy", "clean"}


def test_train_widget_shows_the_starting_models_settings(make_napari_viewer):
    from napari_nlcl._napari._train import DEFAULT, SCRATCH, TrainWidget
    from napari_nlcl.nets.derain import DEFAULT_WEIGHTS
    from napari_nlcl.training import recipe_config_of
    from napari_nlcl.training.derain_config import DerainConfig

    viewer = make_napari_viewer()
    w = TrainWidget(viewer)
    w.task_combo.value = "derain"
    w.start_combo.value = DEFAULT
    stored = recipe_config_of(DEFAULT_WEIGHTS)[1]
    for name in ("layer_weight", "location_weight", "gan_weight", "transplant_weight"):
        assert w._advanced[name].value == pytest.approx(stored[name])  # fine-tuning keeps them
    assert w.lr_spin.value == pytest.approx(1e-5)  # and a gentle rate (the recipe's fine_tune_lr)
    w.start_combo.value = SCRATCH
    assert w._advanced["location_weight"].value == DerainConfig().location_weight
    assert w.lr_spin.value == pytest.approx(1e-4)


def test_lazy_background_and_rain_run_the_model_once_per_plane(make_napari_viewer, errors, qtbot,
                                                               make_identity_model):
    """Browsing a lazy stack with the rain layer shown: one model pass per plane, not two."""
    import napari_nlcl

    frames = (np.random.default_rng(0).random((6, 64, 64, 3)) * 255).astype(np.uint8)
    stack = da.from_array(frames, chunks=(1, 64, 64, 3))
    model = make_identity_model()
    model.info = model.info.__class__(task="derain", name="identity", in_channels=None)
    background, rain = napari_nlcl.derain(stack, model=model, rain_layer=True, device="cpu")
    for t in (0, 3, 3, 0):
        np.asarray(background[t])
        np.asarray(rain[t])
    assert model.calls == 2  # planes 0 and 3, each once
    np.testing.assert_array_equal(np.asarray(rain[3]), np.zeros((64, 64, 3), np.uint8))
    # the widget's lazy path: both layers share the planes too
    viewer = make_napari_viewer()
    w = DerainWidget(viewer)
    viewer.add_image(stack, name="stack", rgb=True, contrast_limits=(0, 255))
    w.rain_check.value = True
    model.calls = 0
    import napari_nlcl.api

    original = napari_nlcl.api.load_model
    napari_nlcl.api.load_model = lambda *a, **k: model
    import threading

    threads = []
    inner_forward = model.forward
    model.forward = lambda x, **k: threads.append((threading.current_thread(), float(x.mean()))) or inner_forward(x, **k)
    try:
        _wait_worker(qtbot, w, w.run())
    finally:
        napari_nlcl.api.load_model = original
    shown = model.calls  # the planes napari showed while both layers were added
    assert 1 <= shown <= 2  # the plane on screen once for both layers (and napari's first slice)
    assert threads and threading.main_thread() not in [t for t, _ in threads]  # not on the main thread
    for t in range(6):  # browse every plane of both layers: each plane runs the model once
        np.asarray(viewer.layers["stack derained"].data[t])
        np.asarray(viewer.layers["stack rain"].data[t])
    assert model.calls == 6 and errors == []
