"""The napari side, run for real on a viewer under Xvfb."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest

pytest.importorskip("napari")

from napari_nlcl._napari._dehaze import DehazeWidget

pytestmark = pytest.mark.gui


def _wait_idle(qtbot, w, worker):
    """Wait until the widget's worker has finished (its finished slot ran)."""
    assert worker is not None
    qtbot.waitUntil(lambda: w._worker is None, timeout=60000)


@pytest.fixture
def widget(make_napari_viewer):
    viewer = make_napari_viewer()
    w = DehazeWidget(viewer)
    w.method_combo.value = "dcp"  # the engine/widget mechanics tests use the fast, exact DCP
    viewer.window.add_dock_widget(w)
    return viewer, w


def _hazy(shape=(96, 128, 3)):
    from napari_nlcl import synth

    rng = np.random.default_rng(0)
    clean = rng.random(shape[:2] + (3,)).astype(np.float32) * 0.6
    hazy, _ = synth.add_haze(clean, beta=1.5, rng=1)
    return (hazy * 255).astype(np.uint8)


def test_manifest_is_valid():
    from npe2 import PluginManifest

    pm = PluginManifest.from_distribution("napari-nlcl")
    pm.validate_imports()
    assert pm.categories == ["Image Processing"]
    assert "napari/layers/filter" in pm.contributions.menus


def test_layer_choices_follow_viewer(widget):
    viewer, w = widget
    assert w.layer_combo.choices == ()
    layer = viewer.add_image(_hazy(), name="hazy")
    assert w.layer_combo.value is layer
    viewer.add_points()  # not an image: not offered
    assert len(w.layer_combo.choices) == 1


def test_dehaze_numpy_layer(widget, qtbot, errors):
    viewer, w = widget
    data = _hazy((300, 320, 3))
    layer = viewer.add_image(data.copy(), name="hazy", rgb=True)
    w.tile_spin.value = 192  # several tiles: progress moves
    worker = w.run()
    _wait_idle(qtbot, w, worker)
    assert errors == []
    out = viewer.layers["hazy dehazed"]
    assert out.data.shape == data.shape and out.data.dtype == np.uint8
    assert out.data.std() > layer.data.std()  # contrast restored
    np.testing.assert_array_equal(layer.data, data)  # input untouched
    assert w.progress.value == w.progress.max
    # running again updates the same layer in place
    w._option_widgets["omega"].value = 0.7
    worker = w.run()
    _wait_idle(qtbot, w, worker)
    assert viewer.layers["hazy dehazed"] is out
    assert len(viewer.layers) == 2


def test_lazy_stack_layer_computes_nothing_until_asked(widget, errors, qtbot):
    viewer, w = widget
    reads: list[int] = []
    frame = _hazy((64, 80, 3))

    def load(i):
        reads.append(i)
        return frame

    stack = da.stack([da.from_delayed(dask.delayed(load)(i), frame.shape, np.uint8) for i in range(30)])
    viewer.add_image(stack, name="stack", rgb=True, contrast_limits=(0, 255))
    viewer.dims.set_current_step(0, 0)
    reads.clear()
    _wait_idle(qtbot, w, w.run())  # lazy: a worker computes only the plane on screen first
    out = viewer.layers["stack dehazed"]
    assert isinstance(out.data, da.Array) and out.data.shape == stack.shape
    assert len(set(reads)) <= 2  # only what napari shows, never the whole stack
    reads.clear()
    plane = np.asarray(out.data[17])
    assert reads == [17] and plane.shape == frame.shape
    assert errors == []


def test_stop_leaves_layers_unchanged(widget, qtbot):
    viewer, w = widget
    viewer.add_image(np.stack([_hazy((256, 256, 3))] * 8), name="big", rgb=True)
    w.tile_spin.value = 192
    worker = w.run()
    qtbot.waitUntil(lambda: w.progress.value > 0, timeout=30000)
    w.stop()
    _wait_idle(qtbot, w, worker)
    assert [layer.name for layer in viewer.layers] == ["big"]
    assert "stopped" in w.status.value
    assert w.run_button.enabled and not w.stop_button.enabled


def test_bad_layer_shows_error_and_changes_nothing(widget, errors, qtbot):
    viewer, w = widget
    viewer.add_image(_hazy(), name="ok")
    with pytest.raises(ValueError, match="outside of the allowed range"):
        w.tile_spin.value = 64  # smaller than the overlap the model needs: not offered
    viewer.layers.clear()
    viewer.add_image(np.zeros((6, 6), np.float32), name="tiny")
    assert w.run() is None
    assert errors and "needs at least" in errors[0]
    viewer.add_image(np.full((40, 40), np.nan, np.float32), name="nan")
    w.layer_combo.value = viewer.layers["nan"]
    worker = w.run()  # NaN is found while processing and reported by the worker
    _wait_idle(qtbot, w, worker)
    assert any("NaN" in e for e in errors)
    assert [layer.name for layer in viewer.layers] == ["tiny", "nan"]


def test_save_stack_to_zarr(widget, qtbot, tmp_path, errors):
    viewer, w = widget
    stack = np.stack([_hazy((64, 64, 3))] * 3)
    viewer.add_image(stack, name="s", rgb=True)
    w.zarr_path.value = tmp_path / "out.zarr"
    worker = w.save_zarr()
    _wait_idle(qtbot, w, worker)
    assert errors == []
    from napari_nlcl.io import read_image

    saved = np.asarray(read_image(tmp_path / "out.zarr"))
    assert saved.shape == stack.shape
    assert "saved" in w.status.value


def test_sample_data_opens(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-nlcl", "hazy_scene")
    viewer.open_sample("napari-nlcl", "rainy_stack")
    assert viewer.layers["hazy scene"].rgb
    stack = viewer.layers["rainy stack"]
    assert isinstance(stack.data, da.Array) and stack.data.shape[0] == 20
    viewer.open_sample("napari-nlcl", "translation_pair")
    assert viewer.layers["photos (domain A)"].rgb and viewer.layers["film look (domain B)"].rgb


@pytest.mark.parametrize("name", ["Dehaze", "Derain", "Translate", "Train / fine-tune"])
def test_widget_from_plugin_manager(make_napari_viewer, name):
    from napari_nlcl._napari._derain import DerainWidget
    from napari_nlcl._napari._train import TrainWidget
    from napari_nlcl._napari._translate import TranslateWidget

    viewer = make_napari_viewer()
    _dock, w = viewer.window.add_plugin_dock_widget("napari-nlcl", name)
    expected = {"Dehaze": DehazeWidget, "Derain": DerainWidget, "Translate": TranslateWidget,
                "Train / fine-tune": TrainWidget}[name]
    assert isinstance(w, expected)


def test_default_model_is_preselected_and_runs(make_napari_viewer, qtbot, errors, hazy_example):
    from napari_nlcl.nets.aecr import DEFAULT_WEIGHTS

    if not DEFAULT_WEIGHTS.is_file():
        pytest.skip("default weights not built")
    viewer = make_napari_viewer()
    w = DehazeWidget(viewer)
    assert w.method_combo.value == "default"
    clear, hazy = hazy_example
    data = (hazy * 255).round().astype(np.uint8)
    viewer.add_image(data.copy(), name="hazy", rgb=True)
    worker = w.run()
    _wait_idle(qtbot, w, worker)
    assert errors == []
    out = viewer.layers["hazy dehazed"].data
    assert out.shape == data.shape and out.dtype == np.uint8
    err_in = np.abs(data / 255.0 - clear).mean()
    assert np.abs(out / 255.0 - clear).mean() < 0.7 * err_in  # closer to the clear image


def test_saved_model_appears_in_the_picker_and_runs(make_napari_viewer, qtbot, errors, tiny_dehaze_model):
    from napari_nlcl import library

    viewer = make_napari_viewer()
    w = DehazeWidget(viewer)
    saved = library.save_model(tiny_dehaze_model, "harbour fog")
    w.refresh_models()
    assert str(saved) in w.method_combo.choices
    combo = w.method_combo.native
    assert "harbour fog (my model)" in [combo.itemText(i) for i in range(combo.count())]
    w.method_combo.value = str(saved)
    assert w.options() == {}  # a saved model has no method options
    viewer.add_image(_hazy((64, 96, 3)), name="hazy", rgb=True)
    worker = w.run()
    _wait_idle(qtbot, w, worker)
    assert errors == []
    assert viewer.layers["hazy dehazed"].data.shape == (64, 96, 3)


def test_12_bit_data_in_uint16_uses_the_layer_contrast_limits(widget, qtbot, errors):
    """A 12-bit microscopy stack stored as uint16: by default the widget maps the layer's
    contrast limits (not 0-65535) to the model's range, so the result is not nearly black."""
    viewer, w = widget
    hazy = _hazy((96, 128, 3)).mean(-1)
    data = (719 + hazy / 255.0 * (4050 - 719)).astype(np.uint16)
    layer = viewer.add_image(data, name="em", contrast_limits=(719, 4050))
    assert w.range_combo.value == "contrast limits"
    _wait_idle(qtbot, w, w.run())
    out = viewer.layers["em dehazed"].data
    assert out.dtype == np.uint16 and 719 <= out.min() and out.max() <= 4050
    assert out.max() - out.min() > 0.5 * (4050 - 719)  # spans the limits: contrast was restored
    w.range_combo.value = "data type"  # the old behaviour stays available
    _wait_idle(qtbot, w, w.run())
    by_type = viewer.layers["em dehazed"].data
    assert not np.array_equal(by_type, out)
    np.testing.assert_array_equal(layer.data, data)
    assert errors == []


def test_runs_report_in_napari_activity_dock(widget, qtbot, errors, monkeypatch):
    import napari.utils

    seen = []

    class Recorded(napari.utils.progress):
        def __init__(self, *a, **k):
            self.updates = []  # tqdm refreshes while it is built
            super().__init__(*a, **k)
            seen.append(self)

        def refresh(self, *a, **k):
            self.updates.append((self.n, self.total))
            return super().refresh(*a, **k)

    monkeypatch.setattr(napari.utils, "progress", Recorded)
    viewer, w = widget
    viewer.add_image(_hazy((300, 320, 3)), name="hazy", rgb=True)
    w.tile_spin.value = 192  # several tiles
    _wait_idle(qtbot, w, w.run())
    assert errors == []
    assert len(seen) == 1 and seen[0].desc == "dehaze hazy"
    ups = [u for u in seen[0].updates if u[1]]
    assert ups[0][0] == 0 and ups[-1][0] == ups[-1][1] > 1  # from 0 to the last tile
    assert w._activity is None and errors == []


def test_save_stack_to_zarr_uses_an_active_dask_client(widget, qtbot, tmp_path, errors):
    distributed = pytest.importorskip("distributed")
    from napari_nlcl.io import read_image

    viewer, w = widget
    stack = np.stack([_hazy((64, 64, 3))] * 3)
    viewer.add_image(stack, name="s", rgb=True)
    w.zarr_path.value = tmp_path / "local.zarr"
    _wait_idle(qtbot, w, w.save_zarr())
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=2,
                            dashboard_address=None) as client:
        w.zarr_path.value = tmp_path / "cluster.zarr"
        _wait_idle(qtbot, w, w.save_zarr())
        ran = client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.task_prefixes))
    assert errors == []
    assert ran > 0  # the planes were computed on the cluster
    np.testing.assert_array_equal(np.asarray(read_image(tmp_path / "cluster.zarr")),
                                  np.asarray(read_image(tmp_path / "local.zarr")))


def test_only_tiles_larger_than_the_models_overlap_are_offered(widget):
    from napari_nlcl import load_model
    from napari_nlcl.inference import default_overlap

    viewer, w = widget
    for method in ("default", "dcp"):
        w.method_combo.value = method
        overlap = default_overlap(load_model(method, task="dehaze").info)
        assert overlap < w.tile_spin.min <= overlap + 64 and w.tile_spin.min % 64 == 0
    w.tile_spin.value = w.tile_spin.min
    w.method_combo.value = "default"  # a larger overlap raises the tile with the minimum
    assert w.tile_spin.value == w.tile_spin.min > default_overlap(load_model("dcp", task="dehaze").info)


def test_widgets_offer_the_selected_layer_first(make_napari_viewer):
    from napari_nlcl._napari._train import TrainWidget
    from napari_nlcl._napari._translate import TranslateWidget

    viewer = make_napari_viewer()
    viewer.add_image(_hazy(), name="unrelated")
    viewer.open_sample("napari-nlcl", "translation_pair")
    source = viewer.layers["photos (domain A)"]
    assert viewer.layers.selection.active is source  # the sample adds the source last
    assert TranslateWidget(viewer).layer_combo.value is source
    train = TrainWidget(viewer)
    train.task_combo.value = "translate"
    assert train._source_widgets["source"][0].value is source
    assert train._source_widgets["target"][0].value is None
    viewer.layers.selection.active = viewer.layers["unrelated"]
    assert TranslateWidget(viewer).layer_combo.value is viewer.layers["unrelated"]


def test_closing_the_dock_mid_run_adds_nothing(make_napari_viewer, qtbot, errors):
    viewer = make_napari_viewer()
    w = DehazeWidget(viewer)
    w.method_combo.value = "dcp"
    dock = viewer.window.add_dock_widget(w)
    viewer.add_image(np.stack([_hazy((256, 256, 3))] * 4), name="big", rgb=True)
    w.layer_combo.value = viewer.layers["big"]
    worker = w.run()
    qtbot.waitUntil(lambda: w.progress.value > 0, timeout=30000)
    viewer.window.remove_dock_widget(dock)  # what the dock's close button does
    _wait_idle(qtbot, w, worker)
    assert [layer.name for layer in viewer.layers] == ["big"] and errors == []


def test_task_widgets_fit_a_narrow_dock(make_napari_viewer):
    from napari_nlcl._napari._derain import DerainWidget
    from napari_nlcl._napari._translate import TranslateWidget

    viewer = make_napari_viewer()
    viewer.open_sample("napari-nlcl", "rainy_scene")
    for cls in (DehazeWidget, DerainWidget, TranslateWidget):
        w = cls(viewer)
        assert w.native.minimumSizeHint().width() <= 400, cls.__name__
