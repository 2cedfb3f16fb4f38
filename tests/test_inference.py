"""Properties of the inference engine (napari_nlcl.inference / tiling)."""

from __future__ import annotations

import subprocess
import sys
import warnings

import dask
import dask.array as da
import numpy as np
import pytest
import torch

from napari_nlcl.checks import resolve_channel_axis
from napari_nlcl.inference import (
    Progress,
    iter_predict,
    predict,
    select_device,
)
from napari_nlcl.inference.tiling import blend_window, plan_tiles, tile_starts
from napari_nlcl.model import Model, ModelInfo


def test_import_is_light():
    code = (
        "import sys, napari_nlcl; napari_nlcl.synth; napari_nlcl.samples; "
        "bad=[m for m in sys.modules if m.split('.')[0] in ('torch','qtpy','PyQt5','PySide6','napari')];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_model_protocol(conv_model):
    assert isinstance(conv_model, Model)
    assert not isinstance(object(), Model)


def test_model_info_validation():
    with pytest.raises(ValueError, match="task must be one of"):
        ModelInfo(task="deblur", name="x")
    with pytest.raises(ValueError, match="min_size"):
        ModelInfo(task="dehaze", name="x", min_size=0)
    with pytest.raises(ValueError, match="value_range"):
        ModelInfo(task="dehaze", name="x", value_range=(1.0, 0.0))


# ----------------------------------------------------------------- tiling plan
@pytest.mark.parametrize("length,tile,overlap,mult", [(100, 32, 8, 1), (257, 64, 20, 4), (64, 64, 8, 1), (30, 64, 8, 1)])
def test_tile_starts_cover(length, tile, overlap, mult):
    starts = tile_starts(length, tile, overlap, mult)
    assert starts[0] == 0
    assert all(s % mult == 0 for s in starts)
    ends = [s + tile for s in starts[:-1]] + [length]
    covered = np.zeros(length, bool)
    for s, e in zip(starts, ends):
        covered[s:e] = True
    assert covered.all()
    for s0, e0, s1 in zip(starts, ends, starts[1:]):
        assert e0 - s1 >= overlap  # consecutive tiles overlap enough


def test_tile_too_small_for_overlap():
    with pytest.raises(ValueError, match="tile size"):
        tile_starts(100, 10, 10)


def test_blend_weights_sum_positive():
    tiles = plan_tiles(90, 130, tile=40, overlap=16)
    total = np.zeros((90, 130))
    for t in tiles:
        total[t.y0:t.y1, t.x0:t.x1] += blend_window(t, 90, 130, overlap=16, margin=4)
    assert total.min() > 0


# ----------------------------------------------------------------- numpy path
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.float32, np.float64])
def test_identity_preserves_dtype_shape_values(dtype, identity_model):
    rng = np.random.default_rng(1)
    if np.dtype(dtype).kind == "f":
        x = rng.random((33, 47, 3)).astype(dtype)
    else:
        info = np.iinfo(dtype)
        x = rng.integers(info.min, info.max, (33, 47, 3), endpoint=True).astype(dtype)
    y = predict(x, identity_model, device="cpu")
    assert y.shape == x.shape and y.dtype == x.dtype
    np.testing.assert_allclose(y.astype(np.float64), x.astype(np.float64), atol=1e-5 * (np.abs(x).max() or 1))


def test_arbitrary_float_range_is_preserved(identity_model):
    x = np.linspace(-500.0, 3000.0, 40 * 50).reshape(40, 50)
    y = predict(x, identity_model, device="cpu")
    np.testing.assert_allclose(y, x, rtol=1e-5, atol=1e-3)
    assert y.dtype == np.float64


def test_value_range_options(conv_model, make_conv_model):
    x = (np.random.default_rng(2).random((40, 40)) * 1000).astype(np.uint16)
    m = make_conv_model(in_channels=1)
    by_plane = predict(x, m, value_range="plane", device="cpu")
    fixed = predict(x, m, value_range=(int(x.min()), int(x.max())), device="cpu")
    np.testing.assert_array_equal(by_plane, fixed)
    assert not np.array_equal(by_plane, predict(x, m, device="cpu"))  # dtype range differs
    with pytest.raises(ValueError, match="low < high"):
        predict(x, m, value_range=(5, 5), device="cpu")


@pytest.mark.parametrize("down", [False, True])
@pytest.mark.parametrize("shape", [(150, 201, 3), (97, 64, 3)])
def test_tiled_equals_untiled(down, shape, make_conv_model):
    m = make_conv_model(down=down)
    x = np.random.default_rng(3).random(shape).astype(np.float32)
    whole = predict(x, m, tile=4096, device="cpu")
    tiled = predict(x, m, tile=48, device="cpu")
    assert np.abs(whole - tiled).max() < 1e-4
    batched = predict(x, m, tile=48, batch_size=3, device="cpu")
    assert np.abs(whole - batched).max() < 1e-4


def test_model_really_changes_image(conv_model, rgb_image):
    y = predict(rgb_image, conv_model, device="cpu")
    assert np.abs(y.astype(int) - rgb_image).mean() > 1


def test_leading_axes_are_iterated(conv_model, make_conv_model):
    rng = np.random.default_rng(4)
    stack = rng.random((2, 3, 40, 30, 3)).astype(np.float32)
    out = predict(stack, conv_model, device="cpu")
    assert out.shape == stack.shape
    np.testing.assert_allclose(out[1, 2], predict(stack[1, 2], conv_model, device="cpu"), atol=1e-6)
    gray = rng.random((4, 40, 30)).astype(np.float32)
    m1 = make_conv_model(in_channels=1)
    out = predict(gray, m1, device="cpu")
    np.testing.assert_allclose(out[3], predict(gray[3], m1, device="cpu"), atol=1e-6)


def test_channel_axis_first(conv_model):
    x = np.random.default_rng(5).random((40, 30, 3)).astype(np.float32)
    last = predict(x, conv_model, device="cpu")
    first = predict(np.moveaxis(x, -1, 0), conv_model, channel_axis=0, device="cpu")
    np.testing.assert_allclose(np.moveaxis(first, 0, -1), last, atol=1e-6)


def test_rgba_alpha_passes_through(conv_model):
    rng = np.random.default_rng(6)
    x = (rng.random((40, 30, 4)) * 255).astype(np.uint8)
    y = predict(x, conv_model, device="cpu")
    np.testing.assert_array_equal(y[..., 3], x[..., 3])
    np.testing.assert_array_equal(y[..., :3], predict(x[..., :3], conv_model, device="cpu"))


def test_gray_through_rgb_model_and_rgb_through_gray_model(conv_model, make_conv_model):
    rng = np.random.default_rng(7)
    gray = rng.random((40, 30)).astype(np.float32)
    assert predict(gray, conv_model, device="cpu").shape == gray.shape
    m1 = make_conv_model(in_channels=1)
    rgb = rng.random((40, 30, 3)).astype(np.float32)
    y = predict(rgb, m1, device="cpu")
    np.testing.assert_allclose(y[..., 1], predict(rgb[..., 1], m1, device="cpu"), atol=1e-6)


def test_progress_events(conv_model):
    x = np.random.default_rng(8).random((2, 100, 100, 3)).astype(np.float32)
    events: list[Progress] = []
    predict(x, conv_model, tile=40, device="cpu", progress=events.append)
    assert events[0].done == 0 and events[-1].done == events[-1].total
    assert [e.done for e in events] == sorted(e.done for e in events)
    assert events[-1].total == 2 * len(plan_tiles(100, 100, tile=40, overlap=16))


def test_iter_predict_can_stop_early(conv_model):
    x = np.random.default_rng(9).random((3, 100, 100, 3)).astype(np.float32)
    gen = iter_predict(x, conv_model, tile=40, device="cpu")
    first = [next(gen) for _ in range(3)]
    gen.close()  # what a GUI Stop does: no further work, no error
    assert first[-1].done == 2


# ----------------------------------------------------------------- dask path
def _counted_stack(n, shape, counter):
    def make(i):
        counter.append(i)
        return np.full(shape, 0.1 * (i + 1), dtype=np.float32)

    return da.stack([da.from_delayed(dask.delayed(make)(i), shape, np.float32) for i in range(n)])


def test_dask_is_lazy_and_matches_numpy(conv_model):
    reads: list[int] = []
    stack = _counted_stack(6, (40, 50, 3), reads)
    out = predict(stack, conv_model, device="cpu")
    assert isinstance(out, da.Array) and out.shape == stack.shape and out.dtype == stack.dtype
    assert reads == []
    plane = out[4].compute()
    assert reads == [4]
    np.testing.assert_allclose(plane, predict(stack[4].compute(), conv_model, device="cpu"), atol=1e-6)
    np.testing.assert_allclose(out.compute(), predict(stack.compute(), conv_model, device="cpu"), atol=1e-6)


def test_dask_model_called_only_for_requested_plane(make_identity_model):
    model = make_identity_model(in_channels=3)
    stack = da.random.random((10, 64, 64, 3), chunks=(5, 64, 64, 3)).astype(np.float32)
    out = predict(stack, model, device="cpu", tile=512)
    assert model.calls == 0
    out[7].compute()
    assert model.calls == 1  # one tile of one plane


def test_dask_channel_first_and_nan_at_compute(conv_model):
    x = da.from_array(np.random.default_rng(0).random((2, 3, 30, 40)).astype(np.float32))
    out = predict(x, conv_model, channel_axis=1, device="cpu")
    assert out.shape == x.shape
    bad = x.copy()
    bad = da.where(da.arange(2)[:, None, None, None] == 1, np.nan, bad)
    lazy = predict(bad, conv_model, channel_axis=1, device="cpu")
    lazy[0].compute()  # the clean plane works
    with pytest.raises(ValueError, match="NaN"):
        lazy[1].compute()


# ----------------------------------------------------------------- device & OOM
def test_select_device():
    assert select_device("cpu").type == "cpu"
    expected = "cuda" if torch.cuda.is_available() else (
        "mps" if torch.backends.mps.is_available() else "cpu")
    assert select_device("auto").type == expected
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            select_device("cuda")
    with pytest.raises(ValueError, match="unknown device"):
        select_device("gpu please")


def test_out_of_memory_retries_with_smaller_tiles(make_conv_model):
    base = make_conv_model()

    class Greedy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = base
            self.info = base.info

        def forward(self, x):
            if x.shape[-1] * x.shape[-2] > 100 * 100:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
            return self.net(x)

    x = np.random.default_rng(1).random((150, 150, 3)).astype(np.float32)
    with pytest.warns(RuntimeWarning, match="retrying with 128 px tiles"):
        y = predict(x, Greedy(), tile=256, device="cpu")
    np.testing.assert_allclose(y, predict(x, base, tile=4096, device="cpu"), atol=1e-4)

    class Hopeless(Greedy):
        def forward(self, x):
            raise torch.OutOfMemoryError("CUDA out of memory")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(MemoryError, match="even with"):
            predict(x, Hopeless(), tile=256, device="cpu")


def test_other_errors_are_not_swallowed():
    class Broken(torch.nn.Module):
        info = ModelInfo(task="identity", name="broken")

        def forward(self, x):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        predict(np.zeros((20, 20, 3), np.float32), Broken(), device="cpu")


# ----------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "image,kwargs,exc,match",
    [
        (np.zeros(10, np.float32), {}, ValueError, "at least 2 dimensions"),
        (np.zeros((0, 10), np.float32), {}, ValueError, "empty"),
        (np.full((20, 20), np.nan, np.float32), {}, ValueError, "NaN or infinite"),
        (np.full((20, 20), np.inf), {}, ValueError, "NaN or infinite"),
        (np.zeros((20, 20), bool), {}, TypeError, "unsupported dtype"),
        (np.zeros((20, 20), np.int64), {}, TypeError, "astype"),
        (np.zeros((4, 4, 3), np.float32), {}, ValueError, "at least 8x8"),
        ([np.zeros((20, 20))], {}, TypeError, "multiscale"),
        ("image.png", {}, TypeError, "numpy or dask array"),
        (np.zeros((20, 20), np.float32), {"channel_axis": 5}, ValueError, "out of range"),
        (np.zeros((20, 20, 3), np.float32), {"tile": 16, "overlap": 16}, ValueError, "larger than the overlap"),
        (np.zeros((20, 20, 3), np.float32), {"batch_size": 0}, ValueError, "batch_size"),
        (np.zeros((20, 20, 3), np.float32), {"device": "tpu:7"}, ValueError, "device"),
        (np.zeros((20, 20, 2), np.float32), {"channel_axis": -1}, ValueError, "expects 3 channels"),
    ],
)
def test_bad_input_messages(image, kwargs, exc, match, conv_model):
    with pytest.raises(exc, match=match):
        predict(image, conv_model, **{"device": "cpu", **kwargs})


def test_not_a_model():
    with pytest.raises(TypeError, match="info: ModelInfo"):
        predict(np.zeros((20, 20)), lambda x: x)


def test_resolve_channel_axis():
    assert resolve_channel_axis((10, 10, 3), "auto") == 2
    assert resolve_channel_axis((10, 10, 5), "auto") is None
    assert resolve_channel_axis((10, 10), "auto") is None
    assert resolve_channel_axis((3, 10, 10), -3) == 0


def test_a_call_checks_its_input_once_however_many_planes_and_blocks():
    """Validation and tile planning run once per call (the plan), not again per plane or dask block."""
    from unittest import mock

    import dask.array as da

    from napari_nlcl import load_model
    from napari_nlcl.inference import apply

    stack = da.from_array(np.random.default_rng(0).random((3, 48, 48, 3), dtype=np.float32), chunks=(1, 48, 48, 3))
    model = load_model("dcp")
    with mock.patch.object(apply, "check_inputs", wraps=apply.check_inputs) as checked:
        lazy = predict(stack, model, device="cpu")
        assert checked.call_count == 1
        out = lazy.compute(scheduler="sync")
    assert checked.call_count == 1 and out.shape == stack.shape
    with mock.patch.object(apply, "check_inputs", wraps=apply.check_inputs) as checked:
        predict(np.asarray(stack), model, device="cpu")
    assert checked.call_count == 1
