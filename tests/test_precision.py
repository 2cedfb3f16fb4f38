"""The CPU fast path: precision choice, channels_last layout helpers, and their equivalence."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import napari_nlcl
from napari_nlcl.inference import precision
from napari_nlcl.nets.layers import ReflectConv2d, reflect_pad

CL = torch.channels_last


# ----------------------------------------------------------------------------- choosing
def test_check_names_aliases_and_errors():
    assert precision.check("bf16") == "bfloat16"
    assert precision.check("fp32") == "float32"
    assert precision.check(None) == "auto"
    with pytest.raises(ValueError, match="unknown precision 'double'.*'auto', 'float32'"):
        precision.check("double")


@pytest.mark.parametrize("fast", [True, False])
def test_auto_follows_the_cpu(monkeypatch, fast):
    monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda: fast)
    p = precision.resolve("auto", "cpu")
    assert p.name == ("bfloat16" if fast else "float32")
    assert p.channels_last  # the CPU layout whatever the arithmetic
    assert precision.resolve("auto", "cpu", auto_bfloat16=False).name == "float32"
    assert precision.resolve("bfloat16", "cpu", auto_bfloat16=False).name == "bfloat16"  # asked for


def test_float16_needs_cuda():
    with pytest.raises(ValueError, match="float16' needs a CUDA device.*'bfloat16'"):
        precision.resolve("float16", "cpu")
    assert precision.resolve("auto", "cpu", amp=True).name in ("bfloat16", "float32")  # amp: CUDA only


def test_for_model_keeps_filters_in_nchw():
    p = precision.resolve("float32", "cpu")
    assert not p.for_model(napari_nlcl.load_model("dcp")).channels_last
    assert p.for_model(nn.Conv2d(3, 3, 3)).channels_last


# ----------------------------------------------------------------------------- layout helpers
@pytest.mark.parametrize("pad", [1, 3])
@pytest.mark.parametrize("layout", [torch.contiguous_format, CL])
def test_reflect_pad_equals_torch_values_and_gradients(pad, layout):
    x = torch.randn(2, 5, 9, 11).contiguous(memory_format=layout).requires_grad_(True)
    w = torch.randn(2, 5, 9 + 2 * pad, 11 + 2 * pad)
    ours = reflect_pad(x, pad)
    ref = F.pad(x, (pad,) * 4, mode="reflect")
    torch.testing.assert_close(ours, ref, rtol=0, atol=0)
    assert ours.is_contiguous(memory_format=layout)
    (g1,) = torch.autograd.grad((ours * w).sum(), x)
    (g2,) = torch.autograd.grad((ref * w).sum(), x)
    torch.testing.assert_close(g1, g2)


def test_reflect_conv_is_a_reflect_padded_conv():
    torch.manual_seed(0)
    ref = nn.Conv2d(4, 6, 7, padding=3, padding_mode="reflect")
    ours = ReflectConv2d(4, 6, 7, padding=3)
    ours.load_state_dict(ref.state_dict())  # same parameters, same state dict
    x = torch.randn(1, 4, 20, 24)
    torch.testing.assert_close(ours(x.contiguous(memory_format=CL)), ref(x), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="one integer padding"):
        ReflectConv2d(4, 6, 3, padding=(1, 2))


def test_translate_norm_keeps_the_layout_and_equals_instance_norm():
    from napari_nlcl.nets.translate import Norm

    norm = Norm(8)
    for b in (1, 3):
        x = torch.randn(b, 8, 16, 12) * 3 + 1
        ref = F.instance_norm(x, eps=norm.eps)
        torch.testing.assert_close(norm(x), ref, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(norm(x.contiguous(memory_format=CL)), ref, rtol=1e-4, atol=1e-4)
    assert norm(torch.randn(1, 8, 16, 12).contiguous(memory_format=CL)).is_contiguous(memory_format=CL)


def test_dehaze_transmission_head_stays_float32_under_bfloat16():
    from napari_nlcl.nets.layers import full_precision

    conv = nn.Conv2d(4, 1, 3, padding=1)
    x = torch.randn(1, 4, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert conv(x).dtype == torch.bfloat16
        assert full_precision(conv, x).dtype == torch.float32


# ----------------------------------------------------------------------------- through the engine
@pytest.fixture(scope="module")
def photo():
    from skimage import data

    return data.astronaut()[:160, :192]


@pytest.mark.parametrize("task", ["derain", "dehaze", "translate"])
def test_bfloat16_is_close_to_float32_for_every_shipped_model(photo, task):
    fn = getattr(napari_nlcl, task)
    ref = fn(photo, device="cpu", precision="float32").astype(np.float32)
    fast = fn(photo, device="cpu", precision="bfloat16").astype(np.float32)
    assert fast.dtype == ref.dtype and fast.shape == photo.shape
    diff = np.abs(fast - ref)
    assert diff.mean() < 0.6 and np.percentile(diff, 99) <= 4  # uint8 levels
    assert not np.array_equal(fast, ref)  # bfloat16 really ran


def test_float32_channels_last_matches_nchw(photo):
    """channels_last changes the layout, not the maths."""
    from unittest import mock

    net = napari_nlcl.load_model("default", task="derain")
    cl = napari_nlcl.predict(photo.astype(np.float32) / 255, net, device="cpu", precision="float32")
    real = precision.resolve

    def nchw(*a, **k):
        import dataclasses

        return dataclasses.replace(real(*a, **k), channels_last=False)

    other = napari_nlcl.load_model("default", task="derain")
    with mock.patch("napari_nlcl.inference.apply.resolve_precision", nchw):
        plain = napari_nlcl.predict(photo.astype(np.float32) / 255, other, device="cpu", precision="float32")
    np.testing.assert_allclose(cl, plain, atol=1e-5)
    assert all(p.dtype == torch.float32 for p in net.parameters())  # weights stay float32


def test_bfloat16_tiles_still_join():
    """Tiles of a bfloat16 run differ from the whole image only by rounding, not by seams."""
    from skimage import data

    img = data.astronaut()[:, :448].astype(np.float32) / 255
    whole = napari_nlcl.derain(img, device="cpu", precision="bfloat16")
    tiled = napari_nlcl.derain(img, device="cpu", precision="bfloat16", tile=256)
    assert np.abs(whole - tiled).max() < 0.02


def test_bad_precision_is_refused_before_computing(photo):
    import dask.array as da

    with pytest.raises(ValueError, match="unknown precision"):
        napari_nlcl.derain(photo, device="cpu", precision="half-ish")
    with pytest.raises(ValueError, match="float16' needs a CUDA"):
        napari_nlcl.dehaze(da.from_array(photo[None]), device="cpu", precision="float16")


def test_grey_uint16_stack_runs_in_bfloat16():
    stack = (np.random.default_rng(0).random((2, 48, 64)) * 4000).astype(np.uint16)
    out = napari_nlcl.derain(stack, device="cpu", precision="bfloat16", channel_axis=None)
    ref = napari_nlcl.derain(stack, device="cpu", precision="float32", channel_axis=None)
    assert out.dtype == np.uint16 and out.shape == stack.shape
    assert np.abs(out.astype(np.int64) - ref).mean() < 0.005 * 65535


def test_the_quality_monitor_scores_in_the_trainers_precision():
    from napari_nlcl.training.monitor import ProxyPairs

    torch.manual_seed(0)
    targets = torch.rand(4, 3, 48, 48)
    pairs = ProxyPairs((targets + 0.1 * torch.rand_like(targets)).clamp(0, 1), targets)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 3, padding=1))
    fp32 = pairs.score(net)
    assert pairs.score(net, precision=precision.resolve("float32", "cpu")) == pytest.approx(fp32, abs=1e-4)
    bf16 = pairs.score(precision.resolve("bfloat16", "cpu").prepare(net), precision=precision.resolve("bfloat16", "cpu"))
    assert bf16 != fp32 and abs(bf16 - fp32) < 0.1
