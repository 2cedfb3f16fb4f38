"""Tests for the Dark Channel Prior dehazing module (napari_nlcl.classical.dcp) and the local
filters it uses (napari_nlcl.classical.filters)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ndimage = pytest.importorskip("scipy.ndimage")
skdata = pytest.importorskip("skimage.data")

from napari_nlcl.classical.dcp import (  # noqa: E402
    DarkChannelPrior,
    dark_channel,
    dcp_receptive_field,
    dehaze_dcp,
    estimate_airlight,
    transmission,
)
from napari_nlcl.classical.filters import box_filter, guided_filter, min_filter  # noqa: E402
from napari_nlcl.model import Model  # noqa: E402

A_TRUE = np.array([0.85, 0.87, 0.90], np.float32)


@pytest.fixture(scope="module", autouse=True)
def _single_thread():
    """The images here are small: one intra-op thread is as fast, and avoids
    thread-pool stalls when the machine is busy with other test processes."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def assert_close(actual: torch.Tensor, expected: torch.Tensor, atol: float = 1e-6) -> None:
    """Same shape and max |actual - expected| <= atol (cheap; torch.testing's
    first call costs ~1 s of lazy imports)."""
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    err = float((actual.double() - expected.double()).abs().max())
    assert err <= atol, f"max abs difference {err:.3g} > {atol:.3g}"


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((np.asarray(a, np.float64) - b) ** 2)))


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """(H, W) or (H, W, C) float array -> (1, C, H, W) tensor."""
    if img.ndim == 2:
        img = img[..., None]
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32))[None]


def to_numpy(x: torch.Tensor) -> np.ndarray:
    return x[0].detach().cpu().numpy().transpose(1, 2, 0).squeeze()


def haze(clean: np.ndarray, airlight, beta: float = 1.5, seed: int = 0):
    """I = J t + A (1 - t) with t = exp(-beta d); d = vertical ramp (far at the
    top) + a smooth random field from a seeded Generator."""
    h, w = clean.shape[:2]
    rng = np.random.default_rng(seed)
    ramp = np.linspace(1.0, 0.0, h)[:, None] * np.ones((1, w))
    field = ndimage.gaussian_filter(rng.standard_normal((h, w)), sigma=20)
    field /= np.abs(field).max()
    t = np.exp(-beta * (ramp + 0.3 * field)).astype(np.float32)
    tt = t[..., None] if clean.ndim == 3 else t
    hazy = clean * tt + np.asarray(airlight, np.float32) * (1 - tt)
    return hazy.astype(np.float32), t


def half(img: np.ndarray) -> np.ndarray:
    """uint8 image -> float32 in [0, 1], halved in size by 2x2 block means."""
    h, w = img.shape[0] // 2 * 2, img.shape[1] // 2 * 2
    a = img[:h, :w].astype(np.float32) / 255
    return a.reshape(h // 2, 2, w // 2, 2, *a.shape[2:]).mean(axis=(1, 3))


@pytest.fixture(scope="module")
def astronaut():
    """Half-size astronaut (256x256) and its hazy version with known t and A."""
    clean = half(skdata.astronaut())
    hazy, t = haze(clean, A_TRUE)
    return clean, hazy, t


@pytest.fixture(scope="module")
def big_hazy():
    """Hazy astronaut (384x384 crop) for the tiling tests."""
    clean = skdata.astronaut()[64:448, 64:448].astype(np.float32) / 255
    return to_tensor(haze(clean, A_TRUE, seed=1)[0])


# --------------------------------------------------------------------------
# (a) dehazing quality on a synthetic hazy image with known t and A
# --------------------------------------------------------------------------


def test_dehaze_raises_psnr_and_finds_airlight(astronaut):
    clean, hazy, _ = astronaut
    x = to_tensor(hazy)
    out = to_numpy(dehaze_dcp(x))
    before, after = psnr(hazy, clean), psnr(out, clean)
    # measured: 12.2 dB -> 22.6 dB (+10.4 dB) with the defaults
    assert after - before >= 7.0, (before, after)
    assert out.min() >= 0.0 and out.max() <= 1.0

    a = estimate_airlight(x, dark_channel(x)).numpy()[0]
    # measured: (0.861, 0.861, 0.878) vs (0.85, 0.87, 0.90)
    np.testing.assert_allclose(a, A_TRUE, atol=0.04)


def test_unrefined_transmission_dehazes(astronaut):
    clean, hazy, _ = astronaut
    out = to_numpy(dehaze_dcp(to_tensor(hazy), refine=False))
    # measured: 12.2 dB -> 23.4 dB (the synthetic depth has no edges for the
    # guided filter to follow, so refinement does not help PSNR here)
    assert psnr(out, clean) > psnr(hazy, clean) + 7.0


def test_transmission_map_tracks_true_transmission(astronaut):
    _, hazy, t_true = astronaut
    t = DarkChannelPrior().transmission_map(to_tensor(hazy))
    assert t.shape == (1, 1, 256, 256)
    assert float(t.min()) >= 0.0 and float(t.max()) <= 1.0
    corr = np.corrcoef(t[0, 0].numpy().ravel(), t_true.ravel())[0, 1]
    assert corr > 0.8, corr  # measured: 0.95


# --------------------------------------------------------------------------
# (b) module == function, ModelInfo
# --------------------------------------------------------------------------


def test_module_matches_function(astronaut):
    x = to_tensor(astronaut[1])
    kw = dict(patch=9, omega=0.9, t0=0.15, radius=12, eps=1e-3, top=0.002)
    model = DarkChannelPrior(**kw).eval()
    assert_close(model(x), dehaze_dcp(x, **kw), atol=0)
    glob = model.estimate_globals(x)
    assert set(glob) == {"airlight"} and glob["airlight"].shape == (1, 3)
    assert_close(glob["airlight"], estimate_airlight(x, dark_channel(x, 9), top=0.002))
    assert_close(model(x, **glob), dehaze_dcp(x, airlight=glob["airlight"], **kw))


def test_model_info_and_protocol():
    model = DarkChannelPrior()
    assert isinstance(model, Model)
    info = model.info
    assert info.task == "dehaze" and info.in_channels is None and info.out_channels is None
    assert info.value_range == (0.0, 1.0) and info.exact_tiling
    assert info.min_size == 15 and info.size_multiple == 1
    assert info.receptive_field == 15 + 4 * info.config["radius"] == dcp_receptive_field()
    assert info.halo == 7 + 2 * info.config["radius"]
    assert info.config == {
        "patch": 15, "omega": 0.95, "t0": 0.25, "radius": 30, "eps": 1e-4, "top": 0.001, "refine": True,
    }
    assert DarkChannelPrior(refine=False).info.receptive_field == 15
    assert DarkChannelPrior(patch=8, radius=3).info.receptive_field == 20


def test_estimate_globals_downsamples_large_planes(big_hazy):
    model = DarkChannelPrior()
    full = model.estimate_globals(big_hazy)["airlight"]
    model.airlight_max_pixels = 256 * 256  # force the downsampled path (factor 2)
    small = model.estimate_globals(big_hazy)["airlight"]
    assert_close(small, full, atol=0.03)


# --------------------------------------------------------------------------
# (c) batch correctness
# --------------------------------------------------------------------------


def test_batch_equals_individual(astronaut):
    a = to_tensor(astronaut[1][:192])
    coffee = half(skdata.coffee())[:192, :256]
    b = to_tensor(haze(coffee, [0.7, 0.75, 0.8], beta=1.0, seed=3)[0])
    batch = torch.cat([a, b])
    air = estimate_airlight(batch, dark_channel(batch))
    assert_close(air[0:1], estimate_airlight(a, dark_channel(a)))
    assert_close(air[1:2], estimate_airlight(b, dark_channel(b)))
    assert not torch.allclose(air[0], air[1], atol=0.02)  # the images really differ
    model = DarkChannelPrior()
    out = model(batch)
    assert_close(out[0:1], model(a), atol=1e-6)
    assert_close(out[1:2], model(b), atol=1e-6)


# --------------------------------------------------------------------------
# (d) tiling invariance: receptive_field is exact
# --------------------------------------------------------------------------


def _tile_error(x, full, airlight, top, left, halo, **kw):
    """Max |untiled - tiled| over a 96x128 crop dehazed from a window with
    ``halo`` pixels of context (clipped at the image border); ``full`` is
    the untiled result."""
    h, w = x.shape[-2:]
    full = full[..., top : top + 96, left : left + 128]
    y0, x0 = max(0, top - halo), max(0, left - halo)
    y1, x1 = min(h, top + 96 + halo), min(w, left + 128 + halo)
    part = dehaze_dcp(x[..., y0:y1, x0:x1], airlight=airlight, **kw)
    part = part[..., top - y0 : top - y0 + 96, left - x0 : left - x0 + 128]
    return float((full - part).abs().max())


@pytest.mark.parametrize(
    "kw",
    [
        {},  # defaults: patch 15, radius 30
        {"patch": 7, "radius": 5},
        {"patch": 8, "radius": 4},  # even patch: asymmetric window
        {"refine": False},
    ],
)
def test_tiling_is_exact_with_receptive_field_context(big_hazy, kw):
    x = big_hazy
    airlight = DarkChannelPrior(**kw).estimate_globals(x)["airlight"]
    halo = DarkChannelPrior(**kw).info.receptive_field // 2
    full = dehaze_dcp(x, airlight=airlight, **kw)
    h, w = x.shape[-2:]
    for top, left in [(140, 120), (0, 0), (h - 96, w - 128)]:  # interior and image corners
        assert _tile_error(x, full, airlight, top, left, halo, **kw) <= 1e-5
    # one pixel less context is not enough: the receptive field is tight
    # (measured: exactly 0 with `halo`, 5e-6 .. 0.1 with `halo - 1`)
    assert _tile_error(x, full, airlight, 140, 120, halo - 1, **kw) > 1e-6


def test_module_tiles_with_global_airlight(big_hazy):
    model = DarkChannelPrior()
    glob = model.estimate_globals(big_hazy)
    halo = model.info.halo
    full = model(big_hazy, **glob)[..., 140:236, 120:248]
    tile = model(big_hazy[..., 140 - halo : 236 + halo, 120 - halo : 248 + halo], **glob)
    assert_close(tile[..., halo:-halo, halo:-halo], full, atol=1e-5)


def test_tiles_smaller_than_the_windows():
    x = torch.rand(1, 3, 15, 20, generator=torch.Generator().manual_seed(0))
    out = DarkChannelPrior()(x)  # radius 30 box windows > image
    assert out.shape == x.shape and torch.isfinite(out).all()


# --------------------------------------------------------------------------
# (e) grayscale, other channel counts and dtypes
# --------------------------------------------------------------------------


def test_grayscale_dehazes():
    clean = half(skdata.camera())[32:224, 32:224]
    hazy, _ = haze(clean, 0.9, beta=1.2, seed=2)
    x = to_tensor(hazy)
    assert x.shape == (1, 1, 192, 192)
    out = DarkChannelPrior()(x)
    assert out.shape == x.shape
    a = DarkChannelPrior().estimate_globals(x)["airlight"]
    assert a.shape == (1, 1) and abs(float(a) - 0.9) < 0.05
    # grey images are darker than colour ones (no min over channels), so
    # the prior is weaker; it must still help (measured: 12.4 -> 19.5 dB)
    assert psnr(to_numpy(out), clean) > psnr(hazy, clean) + 4.0


@pytest.mark.parametrize("channels", [2, 4])
def test_any_channel_count(channels):
    x = torch.rand(2, channels, 40, 48, generator=torch.Generator().manual_seed(1))
    out = dehaze_dcp(x)
    assert out.shape == x.shape
    assert estimate_airlight(x, dark_channel(x)).shape == (2, channels)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_dtypes_round_trip(astronaut, dtype):
    x = to_tensor(astronaut[1][:96, :128])
    ref = dehaze_dcp(x)
    out = dehaze_dcp(x.to(dtype))
    assert out.dtype == dtype
    tol = {torch.float16: 2e-2, torch.bfloat16: 8e-2, torch.float64: 1e-5}[dtype]
    assert_close(out.float(), ref, atol=tol)
    assert DarkChannelPrior().transmission_map(x.to(dtype)).dtype == dtype


def test_airlight_forms_are_equivalent(astronaut):
    x = to_tensor(astronaut[1][:64, :64])
    a = [0.8, 0.85, 0.9]
    ref = dehaze_dcp(x, airlight=torch.tensor([a]))
    for form in (a, torch.tensor(a), torch.tensor(a).view(1, 3, 1, 1)):
        assert_close(dehaze_dcp(x, airlight=form), ref)
    assert_close(dehaze_dcp(x, airlight=0.9), dehaze_dcp(x, airlight=[0.9, 0.9, 0.9]))


# --------------------------------------------------------------------------
# (f) bad inputs
# --------------------------------------------------------------------------


def test_bad_inputs_raise():
    x = torch.rand(1, 3, 32, 32)
    with pytest.raises(TypeError, match="torch.Tensor"):
        dehaze_dcp(np.zeros((1, 3, 32, 32), np.float32))
    with pytest.raises(TypeError, match="floating point"):
        dehaze_dcp(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        dehaze_dcp(torch.rand(3, 32, 32))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        DarkChannelPrior()(torch.rand(32, 32))
    with pytest.raises(ValueError, match="radius"):
        box_filter(x, -1)
    with pytest.raises(ValueError, match="size"):
        min_filter(x, 0)
    with pytest.raises(ValueError, match="guide must have 1 channel"):
        guided_filter(x, x, 4, 1e-3)
    with pytest.raises(ValueError, match="share batch size"):
        guided_filter(x[:, :1], torch.rand(1, 1, 16, 16), 4, 1e-3)
    with pytest.raises(ValueError, match="eps"):
        guided_filter(x[:, :1], x, 4, 0.0)
    with pytest.raises(ValueError, match="top"):
        estimate_airlight(x, dark_channel(x), top=0.0)
    with pytest.raises(ValueError, match="dark must have"):
        estimate_airlight(x, torch.rand(1, 1, 16, 16))
    with pytest.raises(ValueError, match="airlight"):
        dehaze_dcp(x, airlight=torch.rand(2, 3))
    with pytest.raises(ValueError, match="airlight"):
        transmission(x, [0.9, 0.9])
    with pytest.raises(TypeError, match="airlight"):
        dehaze_dcp(x, airlight="bright")
    with pytest.raises(ValueError, match="omega"):
        DarkChannelPrior(omega=1.5)
    with pytest.raises(ValueError, match="t0"):
        DarkChannelPrior(t0=0)
    with pytest.raises(ValueError, match="patch"):
        DarkChannelPrior(patch=0)
    with pytest.raises(TypeError):
        DarkChannelPrior(15)  # keyword-only


# --------------------------------------------------------------------------
# (g) filters against brute force / scipy
# --------------------------------------------------------------------------


@pytest.mark.parametrize("radius", [0, 1, 2, 4])
def test_box_filter_brute_force(radius):
    rng = np.random.default_rng(4)
    a = rng.random((2, 2, 5, 6)).astype(np.float32)  # radius 4: window 9x9 > image
    padded = np.pad(a, ((0, 0), (0, 0), (radius, radius), (radius, radius)), mode="edge")
    k = 2 * radius + 1
    ref = np.empty_like(a)
    for i in range(a.shape[2]):
        for j in range(a.shape[3]):
            ref[:, :, i, j] = padded[:, :, i : i + k, j : j + k].mean(axis=(2, 3))
    out = box_filter(torch.from_numpy(a), radius).numpy()
    np.testing.assert_allclose(out, ref, atol=1e-6)


@pytest.mark.parametrize("size", [1, 3, 4, 7, 15])
def test_min_filter_matches_scipy(size):
    rng = np.random.default_rng(5)
    a = rng.random((2, 3, 9, 11)).astype(np.float32)  # size 15 > image
    ref = ndimage.minimum_filter(a, size=(1, 1, size, size), mode="nearest")
    np.testing.assert_array_equal(min_filter(torch.from_numpy(a), size).numpy(), ref)


def test_dark_channel_and_transmission():
    rng = np.random.default_rng(6)
    a = rng.random((1, 3, 20, 24)).astype(np.float32)
    ref = ndimage.minimum_filter(a.min(axis=1, keepdims=True), size=(1, 1, 5, 5), mode="nearest")
    x = torch.from_numpy(a)
    np.testing.assert_array_equal(dark_channel(x, 5).numpy(), ref)
    t = transmission(x, [0.5, 1.0, 1.0], patch=5, omega=0.9)
    scaled = a / np.array([0.5, 1.0, 1.0], np.float32)[None, :, None, None]
    ref_t = 1 - 0.9 * ndimage.minimum_filter(scaled.min(axis=1, keepdims=True), size=(1, 1, 5, 5), mode="nearest")
    np.testing.assert_allclose(t.numpy(), ref_t, atol=1e-6)


def test_estimate_airlight_is_mean_of_brightest_dark_pixels():
    rng = np.random.default_rng(7)
    a = rng.random((2, 3, 10, 10)).astype(np.float32)
    x = torch.from_numpy(a)
    dark = torch.from_numpy(rng.permutation(200).reshape(2, 1, 10, 10).astype(np.float32))
    out = estimate_airlight(x, dark, top=0.05).numpy()  # 5 pixels per image
    for i in range(2):
        idx = np.argsort(dark[i, 0].numpy().ravel())[-5:]
        np.testing.assert_allclose(out[i], a[i].reshape(3, -1)[:, idx].mean(axis=1), rtol=1e-6)


def test_guided_filter_properties():
    rng = np.random.default_rng(8)
    guide = torch.from_numpy(rng.random((1, 1, 30, 30)).astype(np.float32))
    const = torch.full((1, 2, 30, 30), 0.3)
    assert_close(guided_filter(guide, const, 3, 1e-3), const)
    # with a tiny eps, filtering the guide by itself preserves it
    assert_close(guided_filter(guide, guide, 3, 1e-8), guide, atol=1e-3)
    # with a huge eps it degenerates to a double box filter of the source
    src = torch.from_numpy(rng.random((1, 1, 30, 30)).astype(np.float32))
    assert_close(
        guided_filter(guide, src, 3, 1e6), box_filter(box_filter(src, 3), 3), atol=1e-5
    )


_ACCELERATORS = [
    d
    for d, ok in (
        ("cuda", torch.cuda.is_available()),
        ("mps", getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()),
    )
    if ok
]


@pytest.mark.skipif(not _ACCELERATORS, reason="no GPU")
@pytest.mark.parametrize("device", _ACCELERATORS or ["none"])
def test_runs_on_accelerator(astronaut, device):
    x = to_tensor(astronaut[1])
    model = DarkChannelPrior().to(device)
    out = model(x.to(device))
    assert out.device.type == device
    assert_close(out.cpu(), model.cpu()(x), atol=1e-3)
    assert model(x.to(device).half()).dtype == torch.float16
