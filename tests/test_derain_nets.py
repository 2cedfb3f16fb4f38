"""The deraining networks (napari_nlcl.nets.derain): generators, receptive fields, exact tiling,
the dark cue and veil branch, growing a trained network, the patch discriminator."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from napari_nlcl.nets.derain import (
    DerainNet,
    build,
    grow_stem,
    load_grown,
    preset,
)
from napari_nlcl.nets.discriminators import PatchDiscriminator


@pytest.mark.parametrize("name", ["fast", "rain", "paper"])
@pytest.mark.parametrize("channels", [1, 3])
def test_generators_keep_shape_and_start_as_identity(name, channels):
    net = build(name, in_channels=channels).eval()
    x = torch.rand(2, channels, 40, 56)
    with torch.no_grad():
        out = net(x)
    assert out.shape == x.shape
    assert torch.allclose(out, x)  # zero-initialised head: nothing removed yet
    rain = DerainNet(preset(name, in_channels=channels), output="rain").eval()
    with torch.no_grad():
        assert torch.count_nonzero(rain(x)) == 0


def test_paper_preset_matches_the_released_generator_cost():
    fast, paper = build("fast"), build("paper")
    n_paper = sum(p.numel() for p in paper.parameters())
    assert 0.28e6 < n_paper < 0.31e6  # "about 0.3 M parameters"
    assert 550 < paper.gflop_per_mp() < 650  # "about 0.6 TFLOP per megapixel"
    assert fast.gflop_per_mp() < paper.gflop_per_mp() / 3  # the speed target's budget


def test_receptive_field_bounds_the_true_dependency():
    net = build("fast", channels=(8, 16, 32))
    for p in net.parameters():  # random weights so that every path carries gradient
        torch.nn.init.normal_(p, 0, 0.1)
    x = torch.rand(1, 3, 160, 160, requires_grad=True)
    net(x)[0, 0, 80, 80].backward()
    ys, xs = torch.nonzero(x.grad.abs().sum((0, 1)), as_tuple=True)
    extent = max(ys.max() - ys.min(), xs.max() - xs.min()).item() + 1
    assert extent <= net.info.receptive_field


@pytest.mark.parametrize("dark_radius", [0, 7])
def test_tiled_inference_equals_whole_image(dark_radius):
    from napari_nlcl.inference import predict

    net = build("fast", channels=(8, 16, 32), dark_radius=dark_radius)
    g = torch.Generator().manual_seed(0)
    for p in net.parameters():
        with torch.no_grad():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    net.eval()
    image = np.random.default_rng(0).random((300, 420, 3)).astype(np.float32)
    whole = predict(image, net, tile=1024, device="cpu")
    tiled = predict(image, net, tile=256, device="cpu")
    assert np.abs(whole - tiled).max() < 1e-4


def test_dark_cue_is_in_the_receptive_field_and_sees_a_veil():
    net = build("fast", channels=(8, 16, 32), dark_radius=5)
    assert net.info.receptive_field == build("fast", channels=(8, 16, 32)).info.receptive_field + 20
    for p in net.parameters():
        torch.nn.init.normal_(p, 0, 0.1)
    x = torch.rand(1, 3, 200, 200, requires_grad=True)
    net(x)[0, 0, 100, 100].backward()
    g = x.grad.abs().sum((0, 1))
    # the box filter's running sums leave ~1e-17 of rounding in gradients outside its window
    ys, xs = torch.nonzero(g > 1e-9 * g.max(), as_tuple=True)
    assert max(ys.max() - ys.min(), xs.max() - xs.min()).item() + 1 <= net.info.receptive_field
    # the cue: a scene with dark pixels has a low dark channel; an additive veil raises it by its amount
    scene = torch.rand(1, 3, 64, 64) * 0.6
    scene[..., ::6, ::6] = 0.0
    cue = net.dark_cue(scene)
    assert cue.max() < 0.05
    assert torch.allclose(net.dark_cue(scene + 0.25), cue + 0.25, atol=1e-5)


def _randomise(net, scale=0.05, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)


def test_veil_branch_is_removed_first_and_tiles_share_the_plane_veil():
    from napari_nlcl.inference import predict

    net = build("fast", channels=(8, 16, 32), veil=True).eval()
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        out, veil = net.split(x)
        assert veil.shape == (1, 1, 64, 96) and 0 < veil.max() < 0.05  # starts with almost no veil
        given = torch.full((1, 1, 64, 96), 0.2)
        assert torch.allclose(net(x, veil=given), (x - 0.2).clamp(0, 1))  # identity U-Net: O - veil
        rain = DerainNet(net.config, output="rain").eval()
        assert torch.allclose(rain(x, veil=given), given.expand_as(x))  # the rain layer carries the veil
    _randomise(net)
    image = np.random.default_rng(1).random((300, 420, 3)).astype(np.float32)
    whole = predict(image, net, tile=1024, device="cpu")
    tiled = predict(image, net, tile=256, device="cpu")
    assert np.abs(whole - tiled).max() < 1e-4  # the veil is estimated once per plane, cut per tile
    with torch.no_grad():
        v = net.estimate_globals(torch.from_numpy(image).permute(2, 0, 1)[None])["veil"]
    assert v.shape == (1, 1, 300, 420)


def test_engine_cuts_plane_sized_globals_per_tile():
    from napari_nlcl.inference import predict
    from napari_nlcl.model import ModelInfo

    class AddMap(torch.nn.Module):  # y = x + a map estimated on the whole plane
        info = ModelInfo(task="derain", name="map", in_channels=1, out_channels=1, value_range=(0.0, 1.0),
                         min_size=8, size_multiple=8, receptive_field=1, exact_tiling=True)

        def estimate_globals(self, x):
            h, w = x.shape[-2:]
            return {"m": torch.linspace(0, 1, w).view(1, 1, 1, w).expand(1, 1, h, w).clone()}

        def forward(self, x, m=None):
            assert m is not None and m.shape == x.shape
            return x + m

    image = np.zeros((50, 70), np.float32)
    out = predict(image, AddMap(), tile=16, overlap=8, device="cpu", value_range=(0, 1))
    assert np.allclose(out, np.linspace(0, 1, 70)[None].repeat(50, 0), atol=1e-5)  # not restarted per tile


def test_grow_stem_keeps_the_old_function_and_refuses_a_mismatch():
    old = build("fast", channels=(8, 16)).eval()
    torch.nn.init.normal_(old.head.weight, 0, 0.05)
    new = build("fast", channels=(8, 16), dark_radius=3).eval()
    new.load_state_dict(grow_stem(old.state_dict(), new))
    x = torch.rand(2, 3, 48, 64)
    with torch.no_grad():
        assert torch.allclose(old(x), new(x), atol=1e-6)
        assert not torch.allclose(old(x), x)  # a non-trivial function was carried over
    same = new.state_dict()
    assert torch.equal(grow_stem(same, new)["stem.weight"], same["stem.weight"])  # already grown: unchanged
    with pytest.raises(ValueError, match="cannot grow"):
        grow_stem(build("fast", channels=(4, 16)).state_dict(), new)
    # load_grown: the cue and an untrained veil branch may be added; nothing else may be missing
    veiled = build("fast", channels=(8, 16), dark_radius=3, veil=True).eval()
    load_grown(veiled, old.state_dict())
    assert torch.equal(veiled.stem.weight[:, :12], old.stem.weight)
    partial = {k: v for k, v in old.state_dict().items() if not k.startswith("head.")}
    with pytest.raises(ValueError, match="do not fit"):
        load_grown(new, partial)


def test_a_deepened_unet_keeps_the_old_function_then_learns_from_farther_away():
    old = build("fast", channels=(8, 16), dark_radius=2).eval()
    torch.nn.init.normal_(old.head.weight, 0, 0.05)
    deep = build("fast", channels=(8, 16, 32), dark_radius=2).eval()
    load_grown(deep, old.state_dict())
    x = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        assert torch.allclose(old(x), deep(x), atol=1e-6)
    assert deep.info.receptive_field > old.info.receptive_field and torch.count_nonzero(deep.up[1].weight) == 0
    # the new level is trainable: one step moves the output
    deep.train()
    opt = torch.optim.SGD(deep.parameters(), lr=0.1)
    loss = (deep(x) - x * 0.5).abs().mean()
    loss.backward()
    assert deep.up[1].weight.grad.abs().sum() > 0
    opt.step()
    with torch.no_grad():
        assert not torch.allclose(old(x), deep.eval()(x), atol=1e-6)
    with pytest.raises(ValueError, match="do not fit"):  # the old bottom is not as wide as that level
        load_grown(build("fast", channels=(8, 24, 32), dark_radius=2), old.state_dict())


def test_discriminator_gives_a_patch_map_and_named_contrast_layers():
    d = PatchDiscriminator(3, ndf=8)
    out = d(torch.rand(2, 3, 64, 64))
    assert out.shape[:2] == (2, 1) and out.shape[-1] > 1
    names = dict(d.named_modules())
    assert all(n == "input" or n in names for n, _, _ in d.contrast_layers())
