"""Property tests for napari_nlcl.synth (rain and haze synthesis)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_nlcl import synth
from napari_nlcl.synth import (
    add_haze,
    add_rain,
    random_depth,
    random_haze_params,
    random_rain_params,
    to_float01,
)


# --------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rgb() -> np.ndarray:
    """Smooth-ish float RGB image in [0, 1], shape (64, 80, 3)."""
    g = np.random.default_rng(123)
    yy, xx = np.mgrid[0:64, 0:80] / 80.0
    base = np.stack([yy, xx, 0.5 * (yy + xx)], axis=-1)
    img = 0.8 * base + 0.1 * g.random((64, 80, 3))
    return np.clip(img, 0, 1).astype(np.float32)


@pytest.fixture(scope="module")
def gray(rgb: np.ndarray) -> np.ndarray:
    return rgb.mean(axis=-1)


def _grad_energy(r: np.ndarray) -> tuple[float, float]:
    """(energy of d/dx, energy of d/dy) of a 2-D map."""
    gx = np.diff(r, axis=1)
    gy = np.diff(r, axis=0)
    return float((gx**2).mean()), float((gy**2).mean())


# --------------------------------------------------------------------------
# to_float01
# --------------------------------------------------------------------------
def test_to_float01_dtypes():
    u8 = np.array([0, 51, 255], dtype=np.uint8)
    u16 = np.array([0, 13107, 65535], dtype=np.uint16)
    np.testing.assert_allclose(to_float01(u8), [0, 0.2, 1], atol=1e-7)
    np.testing.assert_allclose(to_float01(u16), [0, 0.2, 1], atol=1e-7)
    for dt in (np.float16, np.float32, np.float64):
        out = to_float01(np.array([0.0, 0.5, 1.0], dtype=dt))
        assert out.dtype == np.float32
        np.testing.assert_array_equal(out, [0, 0.5, 1])
    assert to_float01(u8).dtype == np.float32


def test_to_float01_returns_copy():
    a = np.full((4, 4), 0.5, dtype=np.float32)
    b = to_float01(a)
    b[:] = 0
    assert a[0, 0] == 0.5


@pytest.mark.parametrize(
    "bad",
    [
        np.array([True, False]),
        np.array([1, 2], dtype=np.int64),
        np.array([1, 2], dtype=np.int8),
        np.array([0.5 + 0j]),
    ],
)
def test_to_float01_unsupported_dtype(bad):
    with pytest.raises(TypeError, match="uint8, uint16, or a float"):
        to_float01(bad)


def test_to_float01_out_of_range_and_nonfinite():
    with pytest.raises(ValueError, match=r"\[0, 1\].*rescale first"):
        to_float01(np.array([0.0, 2.0]))
    with pytest.raises(ValueError, match=r"rescale first"):
        to_float01(np.array([-0.1, 0.5]))
    with pytest.raises(ValueError, match="NaN or infinite"):
        to_float01(np.array([0.0, np.nan]))
    with pytest.raises(ValueError, match="NaN or infinite"):
        to_float01(np.array([0.0, np.inf]))


# --------------------------------------------------------------------------
# add_rain
# --------------------------------------------------------------------------
def test_rain_outputs_and_decomposition(rgb):
    rainy, rain = add_rain(rgb, rng=0)
    assert rainy.shape == rgb.shape and rain.shape == rgb.shape
    assert rainy.dtype == np.float32 and rain.dtype == np.float32
    assert rain.min() >= 0.0
    assert 0.0 <= rainy.min() and rainy.max() <= 1.0
    np.testing.assert_allclose(rainy, rgb + rain, atol=1e-6, rtol=0)
    np.testing.assert_allclose(rain, rainy - rgb, atol=1e-7, rtol=0)
    assert rain.max() > 0.3  # there are visible streaks
    assert (rain.max(axis=-1) == 0).mean() > 0.2  # and rain-free background


def test_rain_is_grey(rgb):
    # streaks are white: on a uniform grey image the rain is equal per channel
    flat = np.full((48, 48, 3), 0.3, dtype=np.float32)
    _, rain = add_rain(flat, rng=5, layers=2)
    np.testing.assert_allclose(rain[..., 0], rain[..., 1], atol=1e-7)
    np.testing.assert_allclose(rain[..., 0], rain[..., 2], atol=1e-7)


def test_rain_grayscale(gray):
    rainy, rain = add_rain(gray, rng=1)
    assert rainy.shape == gray.shape == rain.shape
    np.testing.assert_allclose(rainy, gray + rain, atol=1e-6, rtol=0)


def test_rain_screen_blend_formula():
    # single layer on black: rainy == opacity * S; on grey 0.5: 1-(1-I)(1-oS)
    black = np.zeros((40, 40), dtype=np.float32)
    half = np.full((40, 40), 0.5, dtype=np.float32)
    kw = dict(density=0.03, opacity=0.6, rng=4)
    r0, _ = add_rain(black, **kw)
    s = r0 / 0.6
    assert s.max() <= 1.0 + 1e-6
    r1, _ = add_rain(half, **kw)
    np.testing.assert_allclose(r1, 1 - (1 - half) * (1 - 0.6 * s), atol=1e-6)


def test_rain_seed_reproducible(rgb):
    a = add_rain(rgb, rng=42, layers=3)
    b = add_rain(rgb, rng=42, layers=3)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    c = add_rain(rgb, rng=43, layers=3)
    assert not np.array_equal(a[1], c[1])


def test_rain_accepts_generator_and_leaves_global_rng(rgb):
    state = np.random.get_state()
    a = add_rain(rgb, rng=np.random.default_rng(7))[1]
    b = add_rain(rgb, rng=np.random.default_rng(7))[1]
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(add_rain(rgb, rng=7)[1], a)
    after = np.random.get_state()
    assert state[0] == after[0] and np.array_equal(state[1], after[1])


def test_rain_density_increases_energy():
    img = np.zeros((96, 96), dtype=np.float32)
    energies = [
        float((add_rain(img, density=d, rng=3)[1] ** 2).mean()) for d in (0.002, 0.01, 0.05)
    ]
    assert energies[0] < energies[1] < energies[2]


def test_rain_opacity_scales():
    img = np.zeros((48, 48), dtype=np.float32)
    r_lo = add_rain(img, opacity=0.3, rng=2)[1]
    r_hi = add_rain(img, opacity=0.9, rng=2)[1]
    np.testing.assert_allclose(r_lo * 3, r_hi, atol=1e-5)
    assert add_rain(img, opacity=0.0, rng=2)[1].max() == 0


def test_rain_angle_orientation():
    img = np.zeros((96, 96), dtype=np.float32)
    kw = dict(density=0.01, length=25, rng=11)
    gx0, gy0 = _grad_energy(add_rain(img, angle=0, **kw)[1])
    gx90, gy90 = _grad_energy(add_rain(img, angle=90, **kw)[1])
    # vertical streaks: strong horizontal gradients, weak vertical ones
    assert gx0 > 3 * gy0
    assert gy90 > 3 * gx90


def test_rain_positive_angle_is_clockwise():
    # positive angle tilts the top end to the right ("/"), negative gives "\"
    img = np.zeros((96, 96), dtype=np.float32)

    def slash_vs_backslash(r):
        slash = (r[1:, :-1] * r[:-1, 1:]).mean()  # neighbour at (+1 row, -1 col)
        back = (r[1:, 1:] * r[:-1, :-1]).mean()  # neighbour at (+1 row, +1 col)
        return slash, back

    s, b = slash_vs_backslash(add_rain(img, angle=45, density=0.01, rng=0)[1])
    assert s > 1.5 * b
    s, b = slash_vs_backslash(add_rain(img, angle=-45, density=0.01, rng=0)[1])
    assert b > 1.5 * s


def test_rain_length_increases_anisotropy():
    img = np.zeros((96, 96), dtype=np.float32)
    ratios = []
    for length in (3, 30):
        gx, gy = _grad_energy(add_rain(img, angle=0, length=length, density=0.01, rng=8)[1])
        ratios.append(gx / gy)
    assert ratios[1] > 2 * ratios[0]


def test_rain_layers_int_and_dicts(gray):
    one = add_rain(gray, rng=0, layers=1)[1]
    three = add_rain(gray, rng=0, layers=3)[1]
    assert three.sum() > one.sum()
    # a list with a single empty dict == the default single layer
    np.testing.assert_array_equal(add_rain(gray, rng=0, layers=[{}])[1], one)
    custom = add_rain(
        gray,
        rng=0,
        layers=[{"density": 0.01, "angle": 20}, {"length": 5, "width": 0.5, "opacity": 0.4}],
    )
    assert custom[0].shape == gray.shape
    np.testing.assert_allclose(custom[0], gray + custom[1], atol=1e-6)


def test_rain_dtype_equivalence(rgb):
    u8 = (rgb * 255).round().astype(np.uint8)
    u16 = (rgb * 65535).round().astype(np.uint16)
    a8 = add_rain(u8, rng=9)
    b8 = add_rain(u8 / 255.0, rng=9)
    np.testing.assert_allclose(a8[0], b8[0], atol=1e-6)
    np.testing.assert_allclose(a8[1], b8[1], atol=1e-6)
    a16 = add_rain(u16, rng=9)
    b16 = add_rain((u16 / 65535.0).astype(np.float32), rng=9)
    np.testing.assert_allclose(a16[0], b16[0], atol=1e-6)
    np.testing.assert_allclose(a16[1], b16[1], atol=1e-6)


def test_rain_tiny_image():
    rainy, rain = add_rain(np.zeros((1, 1)), rng=0)
    assert rainy.shape == (1, 1) and rain.min() >= 0


@pytest.mark.parametrize(
    "image, exc, match",
    [
        (np.zeros(10), ValueError, r"\(H, W\) or RGB \(H, W, 3\)"),
        (np.zeros((2, 8, 8, 3)), ValueError, r"\(H, W\) or RGB \(H, W, 3\)"),
        (np.zeros((8, 8, 4)), ValueError, r"image\[\.\.\., :3\]"),
        (np.zeros((8, 8, 1)), ValueError, r"image\[\.\.\., 0\]"),
        (np.zeros((3, 8, 8)), ValueError, "moveaxis"),
        (np.full((8, 8), np.nan), ValueError, "NaN or infinite"),
        (np.full((8, 8), 3.0), ValueError, "rescale first"),
        (np.zeros((8, 8), dtype=bool), TypeError, "uint8, uint16"),
        (np.zeros((8, 8), dtype=np.int32), TypeError, "uint8, uint16"),
    ],
)
def test_rain_bad_images(image, exc, match):
    with pytest.raises(exc, match=match):
        add_rain(image, rng=0)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"density": 0.0}, ValueError, r"density must be in \(0, 1\]"),
        ({"density": 1.5}, ValueError, r"density must be in \(0, 1\]"),
        ({"length": 0.5}, ValueError, "length must be >= 1"),
        ({"width": 0.0}, ValueError, "width must be > 0"),
        ({"opacity": -0.1}, ValueError, r"opacity must be in \[0, 1\]"),
        ({"opacity": 1.1}, ValueError, r"opacity must be in \[0, 1\]"),
        ({"angle": float("nan")}, ValueError, "angle must be finite"),
        ({"density": "lots"}, TypeError, "density must be a real number"),
        ({"layers": 0}, ValueError, "layers must be >= 1"),
        ({"layers": True}, TypeError, "layers must be an int"),
        ({"layers": "two"}, TypeError, "sequence of dicts"),
        ({"layers": {"density": 0.1}}, TypeError, r"wrap a single dict in a list"),
        ({"layers": []}, ValueError, "empty sequence"),
        ({"layers": [3]}, TypeError, r"layers\[0\] must be a dict"),
        ({"layers": [{"speed": 3}]}, ValueError, r"unknown key.*allowed keys"),
        ({"layers": [{}, {"width": -1}]}, ValueError, "width must be > 0"),
    ],
)
def test_rain_bad_params(gray, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        add_rain(gray, rng=0, **kwargs)


def test_rain_keyword_only(gray):
    with pytest.raises(TypeError):
        add_rain(gray, 0.02)  # type: ignore[misc]


# --------------------------------------------------------------------------
# random_depth
# --------------------------------------------------------------------------
def test_random_depth_range_and_ramp():
    d = random_depth((60, 90), rng=0)
    assert d.shape == (60, 90) and d.dtype == np.float32
    assert d.min() >= 0 and d.max() <= 1
    assert d[:20].mean() > d[-20:].mean() + 0.2
    # image shapes are accepted, only (H, W) is used
    assert random_depth((60, 90, 3), rng=0).shape == (60, 90)
    np.testing.assert_array_equal(random_depth((60, 90, 3), rng=0), d)


def test_random_depth_seed_and_generator():
    a = random_depth((50, 50), rng=1)
    np.testing.assert_array_equal(a, random_depth((50, 50), rng=np.random.default_rng(1)))
    assert not np.array_equal(a, random_depth((50, 50), rng=2))


def test_random_depth_parameters():
    pure_ramp = random_depth((30, 40), rng=0, ramp=1.0)
    np.testing.assert_allclose(pure_ramp[:, 0], np.linspace(1, 0, 30), atol=1e-6)
    assert np.ptp(pure_ramp, axis=1).max() < 1e-6
    pure_field = random_depth((30, 40), rng=0, ramp=0.0)
    assert pure_field.min() == 0 and pure_field.max() == 1
    sky = random_depth((100, 40), rng=0, sky_fraction=0.25)
    assert np.all(sky[:25] == 1.0) and sky[25:].min() < 1.0
    # smoother field -> smaller local differences
    rough = random_depth((128, 128), rng=0, ramp=0.0, smoothness=0.02)
    smooth = random_depth((128, 128), rng=0, ramp=0.0, smoothness=0.3)
    assert np.abs(np.diff(smooth, axis=1)).mean() < np.abs(np.diff(rough, axis=1)).mean()


def test_random_depth_large_is_fast_enough():
    d = random_depth((512, 512), rng=0, smoothness=0.3)
    assert d.shape == (512, 512) and 0 <= d.min() and d.max() <= 1


@pytest.mark.parametrize(
    "shape, kwargs, exc, match",
    [
        ((10,), {}, ValueError, r"shape must be \(H, W\)"),
        ((0, 10), {}, ValueError, r"H, W >= 1"),
        (5, {}, TypeError, "shape must be a tuple"),
        ((10, 10), {"ramp": 1.5}, ValueError, r"ramp must be in \[0, 1\]"),
        ((10, 10), {"smoothness": 0}, ValueError, "smoothness must be > 0"),
        ((10, 10), {"sky_fraction": -0.1}, ValueError, r"sky_fraction must be in \[0, 1\]"),
    ],
)
def test_random_depth_errors(shape, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        random_depth(shape, rng=0, **kwargs)


# --------------------------------------------------------------------------
# add_haze
# --------------------------------------------------------------------------
def test_haze_outputs_and_inversion(rgb):
    a = np.array([0.85, 0.9, 0.95], dtype=np.float32)
    hazy, t = add_haze(rgb, beta=1.5, airlight=tuple(a), rng=0)
    assert hazy.shape == rgb.shape and hazy.dtype == np.float32
    assert t.shape == rgb.shape[:2] and t.dtype == np.float32
    assert 0 <= hazy.min() and hazy.max() <= 1
    assert 0 < t.min() and t.max() <= 1
    t3 = t[..., None]
    recovered = (hazy - a * (1 - t3)) / t3
    np.testing.assert_allclose(recovered, rgb, atol=1e-4)


def test_haze_grayscale_inversion(gray):
    hazy, t = add_haze(gray, beta=2.0, airlight=0.8, rng=3)
    assert hazy.shape == gray.shape
    np.testing.assert_allclose((hazy - 0.8 * (1 - t)) / t, gray, atol=1e-4)
    # a length-1 sequence is fine for grayscale
    np.testing.assert_array_equal(add_haze(gray, beta=2.0, airlight=[0.8], rng=3)[0], hazy)


def test_haze_beta_lowers_transmission(rgb):
    means = [float(add_haze(rgb, beta=b, rng=0)[1].mean()) for b in (0.5, 1.0, 2.5)]
    assert means[0] > means[1] > means[2]
    hazy0, t0 = add_haze(rgb, beta=0.0, rng=0)
    assert np.all(t0 == 1)
    np.testing.assert_allclose(hazy0, rgb, atol=1e-7)


def test_haze_depth_respected(rgb):
    depth = np.linspace(0, 3, rgb.shape[0] * rgb.shape[1]).reshape(rgb.shape[:2])
    hazy, t = add_haze(rgb, beta=0.7, depth=depth, rng=0)
    np.testing.assert_allclose(t, np.exp(-0.7 * depth), rtol=1e-6)
    # rng is irrelevant when depth is given
    np.testing.assert_array_equal(add_haze(rgb, beta=0.7, depth=depth, rng=99)[0], hazy)
    # integer depths are fine too
    t_int = add_haze(rgb, beta=0.5, depth=np.ones(rgb.shape[:2], dtype=np.int64))[1]
    np.testing.assert_allclose(t_int, np.exp(-0.5), rtol=1e-6)


def test_haze_random_depth_used_when_none(rgb):
    _, t = add_haze(rgb, beta=1.2, rng=5)
    d = random_depth(rgb.shape[:2], rng=5)
    np.testing.assert_allclose(t, np.exp(-1.2 * d), rtol=1e-6)
    # far (top) rows are hazier than near (bottom) rows
    assert t[:10].mean() < t[-10:].mean()


def test_haze_seed_and_generator(rgb):
    a = add_haze(rgb, rng=4)
    b = add_haze(rgb, rng=np.random.default_rng(4))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], add_haze(rgb, rng=5)[1])


def test_haze_dtype_equivalence(rgb):
    u8 = (rgb * 255).round().astype(np.uint8)
    u16 = (rgb * 65535).round().astype(np.uint16)
    np.testing.assert_allclose(add_haze(u8, rng=1)[0], add_haze(u8 / 255.0, rng=1)[0], atol=1e-6)
    np.testing.assert_allclose(
        add_haze(u16, rng=1)[0], add_haze(u16 / 65535.0, rng=1)[0], atol=1e-6
    )


def test_haze_airlight_per_channel():
    black = np.zeros((8, 8, 3))
    hazy, t = add_haze(black, beta=50.0, airlight=(0.2, 0.5, 0.9), depth=np.ones((8, 8)))
    np.testing.assert_allclose(hazy[0, 0], [0.2, 0.5, 0.9], atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"beta": -1.0}, ValueError, "beta must be >= 0"),
        ({"beta": float("inf")}, ValueError, "beta must be finite"),
        ({"airlight": 1.2}, ValueError, r"airlight must lie in \[0, 1\]"),
        ({"airlight": (0.9, 0.9)}, ValueError, "length-3 sequence"),
        ({"airlight": "white"}, TypeError, "airlight must be a float or a length-3"),
        ({"depth": np.ones((5, 5))}, ValueError, r"depth must have shape \(H, W\)"),
        ({"depth": -np.ones((64, 80))}, ValueError, "non-negative.*depth - depth.min"),
        ({"depth": np.full((64, 80), np.nan)}, ValueError, "NaN or infinite"),
        ({"depth": np.ones((64, 80), dtype=bool)}, TypeError, "real-valued numeric"),
    ],
)
def test_haze_bad_params(rgb, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        add_haze(rgb, rng=0, **kwargs)


def test_haze_rgb_airlight_on_gray(gray):
    with pytest.raises(ValueError, match="scalar for grayscale"):
        add_haze(gray, airlight=(0.9, 0.9, 0.9), rng=0)


def test_haze_bad_image():
    with pytest.raises(ValueError, match=r"RGB \(H, W, 3\)"):
        add_haze(np.zeros((8, 8, 4)), rng=0)


# --------------------------------------------------------------------------
# random parameter sets
# --------------------------------------------------------------------------
def test_random_rain_params_ranges_and_usable():
    g = np.random.default_rng(0)
    samples = [random_rain_params(g) for _ in range(200)]
    for p in samples:
        assert set(p) == {"density", "angle", "length", "width", "opacity", "layers"}
        assert 0.005 <= p["density"] <= 0.05
        assert -30 <= p["angle"] <= 30
        assert 10 <= p["length"] <= 40 and isinstance(p["length"], int)
        assert 0.5 <= p["width"] <= 2.5
        assert 0.5 <= p["opacity"] <= 1.0
        assert p["layers"] in (1, 2, 3)
    assert {p["layers"] for p in samples} == {1, 2, 3}
    assert random_rain_params(3) == random_rain_params(3)
    assert random_rain_params(3) != random_rain_params(4)
    rainy, rain = add_rain(np.zeros((32, 32, 3)), **samples[0], rng=0)
    assert rainy.shape == (32, 32, 3)


def test_random_haze_params_ranges_and_usable(rgb, gray):
    g = np.random.default_rng(0)
    for _ in range(200):
        p = random_haze_params(g)
        assert set(p) == {"beta", "airlight"}
        assert 0.5 <= p["beta"] <= 2.5
        a = np.asarray(p["airlight"])
        assert a.shape == (3,)
        assert np.all(a >= 0.67) and np.all(a <= 1.0)
        assert np.ptp(a) <= 0.06  # grey-ish
    assert random_haze_params(1) == random_haze_params(1)
    assert random_haze_params(1) != random_haze_params(2)
    add_haze(rgb, **random_haze_params(0), rng=0)
    p1 = random_haze_params(0, channels=1)
    assert isinstance(p1["airlight"], float) and 0.7 <= p1["airlight"] <= 1.0
    add_haze(gray, **p1, rng=0)
    with pytest.raises(ValueError, match="channels must be 1"):
        random_haze_params(0, channels=4)


def test_public_api():
    assert set(synth.__all__) == {
        "add_haze",
        "add_rain",
        "random_depth",
        "random_haze_params",
        "random_rain_params",
        "scene_depth",
        "to_float01",
    }


def _imports(path):
    """Top-level packages a module imports, and the modules of ``napari_nlcl.synth`` it imports."""
    import ast

    packages, synth_modules = set(), set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            full = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ["napari_nlcl", "synth"][: 3 - node.level] if node.level else []
            source = ".".join(base + ([node.module] if node.module else []))
            # from napari_nlcl.synth import banks / from . import banks: a name may be a module
            full = [f"{source}.{a.name}" for a in node.names] if source == "napari_nlcl.synth" else [source]
        else:
            continue
        for name in full:
            packages.add(name.split(".")[0])
            if name.startswith("napari_nlcl.synth."):
                synth_modules.add(name.split(".")[2])
    return packages, synth_modules


def test_no_torch_or_skimage_import():
    """Every module of the package but ``banks`` (its documented torch part) is numpy + scipy, and
    none of them imports ``banks``: ``import napari_nlcl.synth`` never pulls torch in."""
    import pkgutil
    from pathlib import Path

    folder = Path(synth.__file__).parent
    modules = {m.name: folder / f"{m.name}.py" for m in pkgutil.iter_modules(synth.__path__) if not m.ispkg}
    modules["__init__"] = folder / "__init__.py"
    assert {"__init__", "banks", "convert", "film", "haze", "rain"} <= set(modules)
    assert "torch" in _imports(modules.pop("banks"))[0]  # the check sees a torch import
    for name, path in sorted(modules.items()):
        packages, synth_modules = _imports(path)
        assert not packages & {"torch", "skimage"}, name
        assert "banks" not in synth_modules, f"{name} imports synth.banks (torch)"


def test_speed_512_rgb():
    import time

    img = np.random.default_rng(0).random((512, 512, 3)).astype(np.float32)
    add_rain(img, rng=0)  # warm-up (FFT plans, imports)
    t0 = time.perf_counter()
    add_rain(img, rng=1, length=40, width=2.5)
    assert time.perf_counter() - t0 < 0.5
