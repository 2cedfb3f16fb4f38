"""Function API and method registry."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from skimage import data
from skimage.metrics import peak_signal_noise_ratio as psnr

import napari_nlcl
from napari_nlcl import registry, synth


def _hazy_astronaut():
    clean = data.astronaut()[::2, ::2]
    depth = synth.random_depth(clean.shape[:2], rng=3)
    hazy, t = synth.add_haze(clean, beta=1.5, airlight=0.88, depth=depth)
    return clean, (hazy * 255).round().astype(np.uint8)


def test_dehaze_raises_psnr_on_uint8():
    clean, hazy = _hazy_astronaut()
    out = napari_nlcl.dehaze(hazy, model="dcp", device="cpu")
    assert out.dtype == np.uint8 and out.shape == hazy.shape
    before, after = psnr(clean, hazy), psnr(clean, out)
    assert after > before + 5, (before, after)


def test_dehaze_dask_equals_numpy_and_tiling_is_seamless():
    _, hazy = _hazy_astronaut()
    stack = np.stack([hazy, hazy[::-1]])
    lazy = napari_nlcl.dehaze(da.from_array(stack, chunks=(1, 64, 64, 3)), model="dcp", device="cpu")
    eager = napari_nlcl.dehaze(stack, model="dcp", device="cpu", tile=4096)
    tiled = napari_nlcl.dehaze(stack, model="dcp", device="cpu", tile=160)
    assert isinstance(lazy, da.Array)
    np.testing.assert_array_equal(lazy.compute(), eager)
    assert np.abs(tiled.astype(int) - eager).max() <= 1  # rounding only


def test_method_options_reach_the_model():
    _, hazy = _hazy_astronaut()
    strong = napari_nlcl.dehaze(hazy, model="dcp", omega=0.95, device="cpu")
    weak = napari_nlcl.dehaze(hazy, model="dcp", omega=0.6, device="cpu")
    assert strong.std() > weak.std()
    with pytest.raises(TypeError, match=r"method 'dcp' \(dehaze\) has no option 'colour'"):
        napari_nlcl.dehaze(hazy, model="dcp", colour="red")


def test_registry_defaults_match_the_models():
    for spec in registry.methods():
        model = registry.build(spec.name, spec.task)
        for opt in spec.options:
            assert model.info.config[opt.name] == pytest.approx(opt.default), (spec.name, opt.name)
            assert opt.minimum <= opt.default <= opt.maximum


def test_load_model_checks():
    assert "dcp" in napari_nlcl.available_methods("dehaze")
    model = napari_nlcl.load_model("dcp")
    assert napari_nlcl.load_model(model) is model
    with pytest.raises(ValueError, match="unknown dehaze method 'nope'; available: 'default', 'dcp'"):
        napari_nlcl.load_model("nope", task="dehaze")
    with pytest.raises(TypeError, match="method name"):
        napari_nlcl.load_model(42)
    with pytest.raises(ValueError, match="not a derain model"):
        napari_nlcl.load_model(model, task="derain")


def test_unknown_method_options_are_refused_for_every_method():
    import napari_nlcl
    from napari_nlcl import registry

    img = np.random.default_rng(0).random((32, 32, 3)).astype(np.float32)
    for spec in registry.methods():
        with pytest.raises(TypeError, match="has no option 'foo'"):
            registry.build(spec.name, spec.task, foo=1)
    with pytest.raises(TypeError, match="its options: none"):
        napari_nlcl.derain(img, foo=1, device="cpu")
    with pytest.raises(TypeError, match="omega"):
        napari_nlcl.dehaze(img, model="dcp", omegaa=0.9, device="cpu")
    assert napari_nlcl.dehaze(img, model="dcp", omega=0.9, device="cpu").shape == img.shape


@pytest.mark.parametrize("shape", [(64, 64, 2), (96, 96, 16), (40, 48, 5)])
def test_a_short_trailing_axis_is_never_guessed(shape):
    import napari_nlcl

    img = np.random.default_rng(0).random(shape).astype(np.float32)
    with pytest.raises(ValueError, match="channel_axis=-1"):
        napari_nlcl.dehaze(img, model="dcp", device="cpu")
    out = napari_nlcl.dehaze(img, model="dcp", channel_axis=-1, device="cpu")
    assert out.shape == shape
    # a stack of planes (short leading axis) and RGB stay automatic
    assert napari_nlcl.dehaze(np.moveaxis(img, -1, 0), model="dcp", device="cpu").shape[0] == shape[-1]


def test_dehaze_takes_model_like_the_other_tasks_and_method_still_works_with_a_warning():
    hazy = np.full((32, 32, 3), 0.6, dtype=np.float32)
    new = napari_nlcl.dehaze(hazy, model="dcp", omega=0.9, device="cpu")
    with pytest.warns(DeprecationWarning, match="use model="):
        old = napari_nlcl.dehaze(hazy, method="dcp", omega=0.9, device="cpu")
    np.testing.assert_array_equal(new, old)
