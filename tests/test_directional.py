"""Tests for the classical directional derainer (napari_nlcl.classical.directional) and its
streak filters and angle estimator (napari_nlcl.classical.streaks)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
skdata = pytest.importorskip("skimage.data")

from napari_nlcl.classical.directional import (  # noqa: E402
    DirectionalDerain,
    classic_derainer,
    derain_directional,
    directional_receptive_field,
    rain_layer,
)
from napari_nlcl.classical.streaks import (  # noqa: E402
    estimate_rain_angle,
    horizontal_opening,
    line_mean,
    line_opening,
)
from napari_nlcl.inference import predict  # noqa: E402
from napari_nlcl.model import Model  # noqa: E402
from napari_nlcl.synth import add_rain  # noqa: E402

#: Tiled and untiled results differ only by float rounding (the filters are
#: translation invariant and the angle is estimated once per plane); observed
#: differences are ~2e-7, allow 1e-5.
TILE_ATOL = 1e-5


@pytest.fixture(scope="module", autouse=True)
def _single_thread():
    """Small images: one intra-op thread is as fast and keeps the machine free."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def coffee() -> np.ndarray:
    """``skimage.data.coffee()`` at half size (2 x 2 means): (200, 300, 3) float32 in [0, 1]."""
    img = skdata.coffee().astype(np.float32) / 255.0
    return img.reshape(200, 2, 300, 2, 3).mean(axis=(1, 3))


@pytest.fixture(scope="module")
def model() -> DirectionalDerain:
    return DirectionalDerain()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((np.asarray(a, np.float64) - b) ** 2)))


def to_tensor(img: np.ndarray) -> torch.Tensor:
    if img.ndim == 2:
        img = img[..., None]
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32))[None]


def rainy(clean: np.ndarray, angle: float = -10.0, seed: int = 0) -> np.ndarray:
    out, _ = add_rain(clean, density=0.02, angle=angle, length=20, rng=seed)
    return out


# ----------------------------------------------------------------------------- quality


def test_raises_psnr_on_synthetic_rain(coffee, model):
    o = rainy(coffee)
    y = predict(o, model, device="cpu")
    before, after = psnr(o, coffee), psnr(y, coffee)
    assert after > before + 3.0, (before, after)


@pytest.mark.parametrize("angle", [-25.0, 0.0, 15.0, 30.0])
def test_angle_estimate(coffee, angle):
    # add_rain's convention: 0 vertical, positive = top end to the right
    est = float(estimate_rain_angle(to_tensor(rainy(coffee, angle=angle, seed=3))))
    assert abs(est - angle) <= 2.0, (angle, est)


def test_angle_estimate_mirror_symmetric(coffee):
    """Mirroring the image left-right mirrors the angle (sign convention)."""
    x = to_tensor(rainy(coffee, angle=20.0, seed=1))
    a, b = float(estimate_rain_angle(x)), float(estimate_rain_angle(x.flip(-1)))
    assert a == pytest.approx(-b, abs=0.5)
    assert a > 15.0


def test_clean_image_changed_little(coffee, model):
    y = predict(coffee, model, device="cpu")
    assert psnr(y, coffee) > 30.0


def test_grayscale_plane_through_predict(coffee, model):
    clean = coffee.mean(axis=-1)
    o = rainy(clean, angle=5.0, seed=2)
    y = predict(o, model, device="cpu")
    assert y.shape == o.shape and y.dtype == np.float32
    assert psnr(y, clean) > psnr(o, clean) + 2.0


# ----------------------------------------------------------------------------- contract


def test_model_contract(model):
    assert isinstance(model, Model)
    info = model.info
    assert info.task == "derain" and info.in_channels is None and info.value_range == (0.0, 1.0)
    assert info.exact_tiling
    assert info.receptive_field == directional_receptive_field(model.width, model.length) == 49


def test_output_shape_dtype_range_and_grey_rain(coffee, model):
    x = to_tensor(rainy(coffee))
    y = model(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    # only rain is removed: never brighter, and the same amount in every channel
    removed = x - y
    assert float(removed.min()) >= -1e-6
    assert float((removed - removed[:, :1]).abs().max()) < 1e-6
    assert float(removed.mean()) > 0.005


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_other_float_dtypes(coffee, model, dtype):
    x = to_tensor(rainy(coffee))[..., :64, :64]
    y = model(x.to(dtype))
    assert y.dtype == dtype and y.shape == x.shape
    assert float((y.float() - model(x)).abs().max()) < 5e-3


def test_uint8_rgb_through_predict(coffee, model):
    o = (rainy(coffee) * 255).round().astype(np.uint8)
    y = predict(o, model, device="cpu")
    assert y.shape == o.shape and y.dtype == np.uint8
    assert psnr(y / 255.0, coffee) > psnr(o / 255.0, coffee) + 3.0


def test_tiled_equals_whole(coffee, model):
    o = rainy(coffee, angle=12.0)
    whole = predict(o, model, device="cpu")
    for tile in (100, 128):
        tiled = predict(o, model, device="cpu", tile=tile)
        assert np.abs(tiled - whole).max() <= TILE_ATOL, tile
    g = o.mean(axis=-1)
    diff = np.abs(predict(g, model, device="cpu", tile=80) - predict(g, model, device="cpu"))
    assert diff.max() <= TILE_ATOL


def test_estimate_globals_is_what_forward_uses(coffee, model):
    x = to_tensor(rainy(coffee, angle=-20.0))
    g = model.estimate_globals(x)
    assert set(g) == {"angle"} and g["angle"].shape == (1,)
    assert torch.equal(model(x), model(x, angle=g["angle"]))
    assert torch.equal(model(x), model(x, angle=float(g["angle"])))


def test_receptive_field_is_an_upper_bound(model):
    """A changed input pixel changes no output pixel farther than the halo."""
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 81, 81, generator=gen)
    halo = model.info.halo
    for angle in (-45.0, -20.0, 0.0, 7.3, 35.0):
        base = model(x, angle=angle)
        x2 = x.clone()
        x2[..., 40, 40] = 1.0 - x2[..., 40, 40]
        changed = torch.nonzero((model(x2, angle=angle) - base).abs().amax(dim=1)[0] > 0)
        assert len(changed) > 0
        assert int((changed - 40).abs().max()) <= halo, angle


def test_batch_with_per_element_angles(coffee, model):
    a = to_tensor(rainy(coffee, angle=-15.0, seed=4))
    b = to_tensor(rainy(coffee, angle=25.0, seed=5))
    both = model(torch.cat([a, b]), angle=torch.tensor([-15.0, 25.0]))
    assert torch.equal(both[:1], model(a, angle=-15.0))
    assert torch.equal(both[1:], model(b, angle=25.0))


def test_deterministic_and_options(coffee):
    x = to_tensor(rainy(coffee))
    m = classic_derainer(strength=0.5, width=7.0, length=21)
    assert m.width == 7 and isinstance(m.width, int)
    assert torch.equal(m(x), m(x))
    assert torch.equal(DirectionalDerain(strength=0.0)(x), x)
    full, half = DirectionalDerain()(x), DirectionalDerain(strength=0.5)(x)
    assert torch.allclose(x - half, 0.5 * (x - full), atol=1e-6)


def test_flat_image_is_unchanged():
    x = torch.full((1, 3, 40, 50), 0.3)
    assert float(estimate_rain_angle(x)) == 0.0
    assert torch.equal(DirectionalDerain()(x), x)


# ----------------------------------------------------------------------------- building blocks


def test_filters_on_a_synthetic_streak():
    """A thin vertical line is removed by the top-hat and kept by the line filters."""
    x = torch.zeros(1, 1, 40, 40)
    x[..., 5:35, 20] = 1.0
    opened = horizontal_opening(x, 5)
    assert float(opened.abs().max()) == 0.0
    assert float(line_mean(x, 11, 0.0)[0, 0, 20, 20]) == pytest.approx(1.0)
    assert float(line_opening(x, 11, 0.0)[0, 0, 20, 20]) == pytest.approx(1.0)
    # a horizontal line of the same size is not rain
    xh = x.transpose(-1, -2).contiguous()
    assert float(rain_layer(xh, 0.0, width=5, length=21).max()) < 0.2
    assert float(rain_layer(x, 0.0, width=5, length=21)[0, 0, 20, 20]) == pytest.approx(1.0)
    assert float(derain_directional(x, 0.0, width=5, length=21).max()) < 0.05


# ----------------------------------------------------------------------------- errors


def test_bad_input_raises(coffee, model):
    o = rainy(coffee)
    o[10, 10, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        predict(o, model, device="cpu")
    x = to_tensor(coffee)
    x[0, 0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        model(x)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        model(torch.rand(3, 32, 32))
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        predict(np.zeros(10, np.float32), model, device="cpu")
    with pytest.raises(TypeError, match="floating point"):
        model(torch.zeros(1, 3, 16, 16, dtype=torch.uint8))
    with pytest.raises(ValueError, match="angle"):
        model(to_tensor(coffee), angle=60.0)
    with pytest.raises(ValueError, match="angle"):
        model(torch.cat([to_tensor(coffee)] * 2), angle=[1.0, 2.0, 3.0])


@pytest.mark.parametrize(
    "options",
    [{"strength": 1.5}, {"width": 0}, {"width": 2.5}, {"length": 1}, {"contrast": -1}, {"max_angle": 50}],
)
def test_bad_options_raise(options):
    with pytest.raises(ValueError, match=next(iter(options))):
        classic_derainer(**options)
