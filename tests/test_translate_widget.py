"""The Translate widget and the Train widget's translate task on a real viewer (Xvfb)."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest

pytest.importorskip("napari")

from napari_nlcl._napari import _train
from napari_nlcl._napari._translate import TranslateWidget
from napari_nlcl.nets.translate import DEFAULT_WEIGHTS

TINY = {"net": {"ngf": 4, "blocks": 1}, "disc_ndf": 8, "num_patches": 16}


pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("main_thread_only")]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """A tiny translator trained for a few steps (a user's model file)."""
    from napari_nlcl.training import TrainConfig, Trainer
    from napari_nlcl.training.data import RandomCrops

    rng = np.random.default_rng(0)
    data = {"source": rng.random((2, 48, 48, 3)).astype(np.float32),
            "target": rng.random((2, 48, 48, 3)).astype(np.float32)}
    path = tmp_path_factory.mktemp("models") / "tiny_cut.pt"
    trainer = Trainer.from_recipe_name("translate", RandomCrops(data, crop=32, seed=0),
                                       TrainConfig(steps=2, crop=32, device="cpu"), recipe_config=TINY,
                                       checkpoint=path)
    trainer.fit()
    return path


def _image(shape=(64, 80, 3), seed=0):
    return (np.random.default_rng(seed).random(shape) * 255).astype(np.uint8)


def test_model_file_is_offered_and_used(make_napari_viewer, qtbot, errors, model_file):
    from napari_nlcl import translate

    viewer = make_napari_viewer()
    w = TranslateWidget(viewer)
    data = _image()
    layer = viewer.add_image(data.copy(), name="photo", rgb=True)
    w.model_file.value = str(model_file)
    assert w.method_combo.value == str(model_file)
    worker = w.run()
    assert worker is not None
    qtbot.waitUntil(lambda: w._worker is None, timeout=60000)
    assert errors == []
    out = viewer.layers["photo translated"].data
    np.testing.assert_array_equal(out, translate(data, str(model_file), device="cpu"))
    np.testing.assert_array_equal(layer.data, data)  # input untouched


def test_a_bad_model_file_is_reported_and_not_offered(make_napari_viewer, tmp_path, errors):
    viewer = make_napari_viewer()
    w = TranslateWidget(viewer)
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not a model")
    w.model_file.value = str(bad)
    assert errors and "broken.pt" in errors[0]
    assert str(bad) not in [v for v in w.method_combo.choices]


def test_lazy_stack_gives_a_lazy_layer(make_napari_viewer, errors, model_file, qtbot):
    viewer = make_napari_viewer()
    w = TranslateWidget(viewer)
    frame = _image((48, 64, 3))
    reads: list[int] = []

    def load(i):
        reads.append(i)
        return frame

    stack = da.stack([da.from_delayed(dask.delayed(load)(i), frame.shape, np.uint8) for i in range(20)])
    viewer.add_image(stack, name="stack", rgb=True, contrast_limits=(0, 255))
    w.model_file.value = str(model_file)
    reads.clear()
    worker = w.run()  # lazy: a worker computes the plane on screen, then the layer is added
    qtbot.waitUntil(lambda: w._worker is None, timeout=60000)
    assert worker is not None and isinstance(viewer.layers["stack translated"].data, da.Array)
    assert len(set(reads)) <= 4
    assert errors == []


@pytest.mark.skipif(not DEFAULT_WEIGHTS.is_file(), reason="the shipped example translator is missing")
def test_default_model_applies_the_film_look(make_napari_viewer, qtbot, errors):
    from skimage import data as skdata

    from napari_nlcl.synth import film_look

    viewer = make_napari_viewer()
    w = TranslateWidget(viewer)
    assert w.method_combo.value == "default"
    photo = skdata.astronaut()[::2, ::2]
    viewer.add_image(photo, name="astronaut", rgb=True)
    assert w.run() is not None
    qtbot.waitUntil(lambda: w._worker is None, timeout=60000)
    assert errors == []
    out = viewer.layers["astronaut translated"].data / 255.0
    want = film_look(photo)
    assert np.abs(out - want).mean() < 0.8 * np.abs(photo / 255.0 - want).mean()


def test_train_widget_offers_translation_modes(make_napari_viewer, qtbot, errors):
    viewer = make_napari_viewer()
    w = _train.TrainWidget(viewer)
    a = viewer.add_image(_image((96, 96, 3), 1), name="A", rgb=True)
    b = viewer.add_image(_image((96, 96, 3), 2), name="B", rgb=True)
    w.task_combo.value = "translate"
    assert set(w._source_widgets) == {"source", "target"}
    assert w.start_combo.value == _train.SCRATCH  # a new pair of domains starts from scratch
    assert _train.DEFAULT in w.start_combo.choices
    assert w._advanced["mode"].choices == ("cut", "fastcut", "single")
    assert "gan_weight" in w._advanced and "num_patches" in w._advanced
    w._source_widgets["source"][0].value = a
    w._source_widgets["target"][0].value = b
    w.start_combo.value = _train.SCRATCH
    w._advanced["mode"].value = "single"
    w._advanced["preset"].value = "light"
    w._advanced["num_patches"].value = 16
    w.steps_spin.value = 2
    w.batch_spin.value = 2
    w.crop_spin.value = 32
    w.preview_combo.value = None
    worker = w.start()
    assert worker is not None, errors
    qtbot.waitUntil(lambda: w._worker is None, timeout=120000)
    assert errors == []
    assert w.trainer.recipe.config.mode == "single" and w.trainer.data.zoom == (0.25, 1.0)
    assert w.trainer.config.schedule == "linear" and w.trainer.step == 2
