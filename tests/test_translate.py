"""CUT / FastCUT / single-image translation: networks, PatchNCE, modes, tiling, checkpoints, front ends."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from napari_nlcl.nets.discriminators import discriminator
from napari_nlcl.nets.translate import TranslateNet, TranslateNetConfig, build
from napari_nlcl.training import TrainConfig, Trainer, build_recipe, load_recipe
from napari_nlcl.training.translate import TranslateConfig, TranslateRecipe

TINY = {"net": {"ngf": 4, "blocks": 2}, "disc_ndf": 8, "num_patches": 32}


def _tiny_recipe(**settings):
    return build_recipe("translate", {**TINY, **settings}, seed=0)


def _net(seed=0, **overrides):
    """A small random translator (plain tanh output, so that it is not the identity), seeded."""
    torch.manual_seed(seed)
    return build("light", **{"ngf": 4, "blocks": 2, "residual": False, **overrides}).eval()


def _batch(b=1, c=3, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"source": torch.rand(b, c, size, size, generator=g), "target": torch.rand(b, c, size, size, generator=g)}


# ----------------------------------------------------------------------------- networks
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_generator_and_discriminator_shapes(channels):
    g = build("light", in_channels=channels).eval()
    x = torch.rand(2, channels, 36, 44)
    y = g(x)
    assert y.shape == x.shape and 0 <= float(y.detach().min()) and float(y.detach().max()) <= 1
    d = discriminator("light", channels)
    assert d(y).shape[:2] == (2, 1)
    assert g.info.in_channels == channels and g.info.out_channels == channels
    other = TranslateNet(TranslateNetConfig(in_channels=channels, out_channels=2, ngf=4, blocks=1))
    assert other(x).shape == (2, 2, 36, 44)


def test_generator_refuses_sizes_it_cannot_take():
    g = build("light")
    with pytest.raises(ValueError, match="multiples of 4"):
        g(torch.rand(1, 3, 33, 32))
    with pytest.raises(ValueError, match=r"expects \(B, 3, H, W\)"):
        g(torch.rand(1, 1, 32, 32))


def test_presets_match_cut_and_report_cost():
    full = build("full")
    assert sum(p.numel() for p in full.parameters()) == 11_378_179  # CUT's ResNet-9, ngf 64
    light = build("light")
    assert light.gflop_per_mp() < full.gflop_per_mp() / 15
    assert full.nce_layers() == ["inp", "down1.conv", "down2.conv", "blocks.0", "blocks.4"]


def test_receptive_field_bounds_the_gradient_extent():
    g = _net(blocks=3)
    x = torch.rand(1, 3, 240, 240, requires_grad=True)
    stats = g.estimate_globals(x.detach())["norm_stats"]
    g(x, norm_stats=stats)[0, :, 120, 120].sum().backward()
    rows = (x.grad.abs().sum((0, 1, 3)) > 0).nonzero()
    extent = int(rows.max() - rows.min() + 1)
    assert extent <= g.receptive_field() <= extent + 16


def test_fixed_norm_statistics_reproduce_instance_norm():
    g = _net()
    x = torch.rand(2, 3, 64, 48)
    with torch.no_grad():
        stats = g.estimate_globals(x[:1])["norm_stats"]
        np.testing.assert_allclose(g(x[:1], norm_stats=stats), g(x[:1]), atol=1e-5)
        # the statistics of one image applied to another change the result
        assert (g(x[1:], norm_stats=stats) - g(x[1:])).abs().max() > 1e-3
    with pytest.raises(ValueError, match="norm_stats must have shape"):
        g(x[:1], norm_stats=stats[:, :-1])


# ----------------------------------------------------------------------------- tiling
def test_tiled_inference_equals_whole_image_inference():
    """Documented tolerance: 1e-4 in [0, 1] (float32), for planes up to ``stats_pixels``."""
    from napari_nlcl.inference import predict

    g = _net()
    rng = np.random.default_rng(0)
    image = rng.random((181, 203, 3)).astype(np.float32)  # odd sizes: padded by the engine
    whole = predict(image, g, tile=4096, device="cpu", precision="float32")
    tiled = predict(image, g, tile=128, device="cpu", precision="float32")
    assert whole.shape == image.shape
    np.testing.assert_allclose(tiled, whole, atol=1e-4)
    # and it equals the network on the whole (padded) image with its own instance norm
    x = torch.from_numpy(np.pad(image, ((0, 3), (0, 1), (0, 0)), mode="reflect")).permute(2, 0, 1)[None]
    with torch.no_grad():
        direct = g(x)[0].permute(1, 2, 0).numpy()[:181, :203]
    np.testing.assert_allclose(whole, direct, atol=1e-4)  # the engine pads as estimate_globals does


def test_one_tile_planes_skip_the_statistics_pass(monkeypatch):
    from napari_nlcl.inference import predict

    g = _net()
    calls = []
    real = g.estimate_globals
    monkeypatch.setattr(g, "estimate_globals", lambda x: calls.append(tuple(x.shape)) or real(x))
    stack = np.random.default_rng(0).random((2, 160, 176, 3)).astype(np.float32)
    one_tile = predict(stack, g, tile=4096, device="cpu", precision="float32")
    assert calls == []  # the network normalises each whole plane by itself
    tiled = predict(stack, g, tile=128, device="cpu", precision="float32")
    assert len(calls) == 2  # once per plane
    np.testing.assert_allclose(tiled, one_tile, atol=1e-4)


def test_thumbnail_statistics_on_large_planes_stay_close():
    """Planes above ``stats_pixels`` take their norm statistics from a down-sampled copy: close to the
    exact result (mean difference below 5 % of the range at 2x down-sampling for this random net; 1.2 %
    for the shipped model on the astronaut), and seamless."""
    from napari_nlcl.inference import predict

    g = _net()
    rng = np.random.default_rng(1)
    smooth = np.cumsum(np.cumsum(rng.random((256, 256, 3)), 0), 1)
    image = (smooth / smooth.max()).astype(np.float32)
    exact = predict(image, g, tile=128, device="cpu", precision="float32")
    g.stats_pixels = 128 * 128
    approx = predict(image, g, tile=128, device="cpu", precision="float32")
    other_tiles = predict(image, g, tile=192, device="cpu", precision="float32")
    np.testing.assert_allclose(approx, other_tiles, atol=1e-4)  # seamless: same statistics everywhere
    assert 0 < np.abs(approx - exact).mean() < 0.05


# ----------------------------------------------------------------------------- recipe
def test_mode_defaults():
    cut, fast, single = (TranslateConfig(mode=m) for m in ("cut", "fastcut", "single"))
    assert (cut.nce_weight, cut.nce_idt, cut.flip_equivariance, cut.negatives) == (1.0, True, False, "image")
    assert (fast.nce_weight, fast.nce_idt, fast.flip_equivariance) == (10.0, False, True)
    assert single.negatives == "batch"
    assert TranslateConfig(mode="fastcut", nce_weight=2.0).nce_weight == 2.0
    assert TranslateRecipe.data_options({"mode": "single"}) == {"zoom": (0.25, 1.0)}
    assert TranslateRecipe.data_options({"mode": "cut"}) == {}
    with pytest.raises(ValueError, match="mode must be one of"):
        TranslateConfig(mode="cyclegan")
    with pytest.raises(ValueError, match="negatives must be one of"):
        TranslateConfig(negatives="all")


def test_plan_data_reads_channels_and_refuses_bad_sources():
    gray = np.zeros((2, 40, 40), np.uint8)
    rgb = np.zeros((2, 40, 40, 3), np.uint8)
    assert TranslateRecipe.plan_data({"source": gray, "target": gray}) == ({"in_channels": 1}, False)
    with pytest.raises(ValueError, match="keeps the channel count"):
        TranslateRecipe.plan_data({"source": gray, "target": rgb})
    with pytest.raises(ValueError, match="needs both source"):
        TranslateRecipe.plan_data({"source": rgb})
    with pytest.raises(ValueError, match="translate training takes"):
        TranslateRecipe.plan_data({"hazy": rgb})


def test_heads_and_nce_layers_receive_gradients_and_are_stepped():
    r = _tiny_recipe(gan_weight=0.0)
    heads_before = [p.detach().clone() for p in r.heads.parameters()]
    batch = _batch(b=2)
    out = r.G(torch.cat([batch["source"], batch["target"]]))
    nce = r.nce_loss([(batch["source"], out[:2]), (batch["target"], out[2:])])
    r.optimizers["G"].zero_grad()
    nce.backward()
    for p in r.heads.parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0
    for name in ("stem", "down1.conv", "down2.conv", "blocks.0.conv1"):
        w = dict(r.G.named_modules())[name].weight
        assert w.grad is not None and w.grad.abs().sum() > 0, name
    r.training_step(batch, 0)
    assert all(not torch.equal(a, b) for a, b in zip(heads_before, r.heads.parameters()))
    assert set(r.optimizers) == {"G", "D"}
    g_params = {id(p) for p in r.optimizers["G"].param_groups[0]["params"]}
    assert all(id(p) in g_params for p in r.heads.parameters())


@pytest.mark.parametrize("mode,negatives", [("cut", "auto"), ("fastcut", "auto"), ("single", "auto"),
                                            ("cut", "domain"), ("cut", "batch")])
def test_every_mode_trains_with_batch_two(mode, negatives):
    r = _tiny_recipe(mode=mode, negatives=negatives)
    losses = r.training_step(_batch(b=2), 0)
    assert {"d", "gan", "nce", "total"} <= set(losses)
    assert all(torch.isfinite(torch.as_tensor(v)) for v in losses.values())


def test_domain_negatives_differ_from_batch_negatives():
    r = _tiny_recipe()
    batch = _batch(b=2)
    with torch.no_grad():
        out = r.G(torch.cat([batch["source"], batch["target"]]))
    pairs = [(batch["source"], out[:2]), (batch["target"], out[2:])]
    values = {}
    for neg in ("image", "domain", "batch"):
        r.config.negatives = neg
        r.generator.manual_seed(5)
        values[neg] = float(r.nce_loss(pairs).detach())
    # more negatives -> larger loss at initialisation: image (N) < domain (2N) < batch (4N)
    assert values["image"] < values["domain"] < values["batch"]


def test_flip_equivariance_matches_locations(monkeypatch):
    """With flip equivariance the translation is made from a flipped input; its query features are
    flipped back before they meet the source's keys.  With per-pixel (exactly flip-equivariant)
    features, the loss of a flipped translation must equal the unflipped loss, and forgetting the
    flip-back must not."""
    r = _tiny_recipe()
    g = torch.Generator().manual_seed(0)
    projections = [torch.randn(h.in_channels, 3, generator=g) for h in r.heads]

    def per_pixel_features(x, *, detach):
        return [torch.einsum("oc,bchw->bohw", w, x) for w in projections]

    monkeypatch.setattr(r, "_features", per_pixel_features)
    x = _batch()["source"]
    out = torch.rand(x.shape, generator=g)

    def loss(o, flipped):
        r.generator.manual_seed(3)
        with torch.no_grad():
            return float(r.nce_loss([(x, o)], flipped))

    plain = loss(out, False)
    assert loss(out.flip(3), True) == pytest.approx(plain, rel=1e-5)
    assert abs(loss(out.flip(3), False) - plain) > 1e-2


def test_a_few_iterations_lower_the_nce_loss():
    r = _tiny_recipe(gan_weight=0.0, nce_idt=False)
    batch = _batch(b=1, size=48, seed=1)

    def nce():
        r.generator.manual_seed(11)
        with torch.no_grad():
            return float(r.nce_loss([(batch["source"], r.G(batch["source"]))]))

    before = nce()
    for step in range(40):
        r.training_step(batch, step)
    assert nce() < 0.8 * before


def test_checkpoint_round_trip_and_export(tmp_path):
    from napari_nlcl.training import export_model
    from napari_nlcl.training.data import RandomCrops

    rng = np.random.default_rng(0)
    data = {"source": rng.random((3, 48, 48, 3)).astype(np.float32),
            "target": rng.random((3, 48, 48, 3)).astype(np.float32)}
    crops = RandomCrops(data, crop=32, batch_size=1, seed=0)
    ckpt = tmp_path / "cut.pt"
    trainer = Trainer.from_recipe_name("translate", crops, TrainConfig(steps=3, crop=32, device="cpu"),
                                       recipe_config=TINY, checkpoint=ckpt)
    trainer.fit()
    recipe, payload = load_recipe(ckpt)
    x = torch.rand(1, 3, 40, 40)
    same_layout = trainer.precision.prepare  # the trainer's networks are channels_last on the CPU
    with torch.no_grad():
        np.testing.assert_array_equal(same_layout(recipe.G.eval())(x), trainer.model.eval()(x))
    assert json.loads(payload["config"])["recipe"]["mode"] == "cut"
    small = export_model(ckpt, tmp_path / "g.pt", networks=["G", "heads"])
    exported, _ = load_recipe(small)
    with torch.no_grad():
        np.testing.assert_array_equal(same_layout(exported.G.eval())(x), trainer.model.eval()(x))


def test_grayscale_training_and_inference(tmp_path):
    from napari_nlcl import translate
    from napari_nlcl.training.data import RandomCrops

    rng = np.random.default_rng(0)
    data = {"source": (rng.random((2, 48, 48)) * 255).astype(np.uint8),
            "target": (rng.random((2, 48, 48)) * 255).astype(np.uint8)}
    overrides, _ = TranslateRecipe.plan_data(data)
    crops = RandomCrops(data, crop=32, seed=0)
    trainer = Trainer.from_recipe_name("translate", crops, TrainConfig(steps=2, crop=32, device="cpu"),
                                       recipe_config={**TINY, **overrides})
    trainer.fit()
    out = translate(data["source"], trainer.model.eval(), device="cpu")  # a 2-frame stack
    assert out.shape == data["source"].shape and out.dtype == np.uint8


def test_single_mode_zooms_crops_of_one_image_per_domain():
    from napari_nlcl.api import finetune

    rng = np.random.default_rng(0)
    a = (rng.random((200, 240, 3)) * 255).astype(np.uint8)
    b = (rng.random((180, 200, 3)) * 255).astype(np.uint8)
    trainer = finetune("translate", {"source": a, "target": b}, steps=2, crop=32, batch_size=2,
                       device="cpu", mode="single", **TINY)  # start="auto": scratch for translation
    assert "started_from" not in trainer.metadata
    assert trainer.data.zoom == (0.25, 1.0) and trainer.config.schedule == "linear"
    assert trainer.recipe.config.negatives == "batch"
    trainer.fit()


def test_crop_too_small_is_refused_clearly():
    r = _tiny_recipe()
    with pytest.raises(ValueError, match="crops of at least 32 px"):
        r.training_step(_batch(size=24), 0)


# ----------------------------------------------------------------------------- front ends
def test_translate_api_numpy_and_dask_and_bad_input():
    import dask.array as da

    from napari_nlcl import translate

    g = _net(blocks=1)
    image = (np.random.default_rng(0).random((2, 50, 70, 3)) * 255).astype(np.uint8)
    eager = translate(image, g, device="cpu")
    lazy = translate(da.from_array(image, chunks=(1, 50, 70, 3)), g, device="cpu")
    assert isinstance(lazy, da.Array)
    np.testing.assert_array_equal(lazy.compute(), eager)
    with pytest.raises(ValueError, match="needs at least 16x16"):
        translate(image[0, :8, :8], g, device="cpu")
    with pytest.raises(ValueError, match="NaN"):
        translate(np.full((32, 32, 3), np.nan, np.float32), g, device="cpu")
    from napari_nlcl.nets.derain import build as build_derainer

    with pytest.raises(ValueError, match="is a derain model, not a translate model"):
        translate(image[0], build_derainer())
    with pytest.raises(ValueError, match="unknown translate method 'directional'"):
        translate(image[0], "directional")


def test_cli_train_and_translate(tmp_path):
    from napari_nlcl.cli import main
    from napari_nlcl.io import read_image, write_image

    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for i in range(2):
            write_image(tmp_path / name / f"{i}.png", (rng.random((48, 56, 3)) * 255).astype(np.uint8))
    model = tmp_path / "m.pt"
    args = ["train", "translate", "--source", str(tmp_path / "a"), "--target", str(tmp_path / "b"),
            "--mode", "fastcut", "--steps", "2", "--crop", "32", "-o", str(model), "--device", "cpu",
            "-S", "net={'ngf': 4, 'blocks': 1}".replace("'", '"')]
    assert main(args) == 2  # a dict cannot be given with -S: clear error, nothing written
    assert not model.exists()
    args = args[:-2] + ["-S", "preset=light", "-S", "num_patches=16"]
    assert main(args) == 0 and model.is_file()
    recipe, payload = load_recipe(model)
    assert recipe.config.mode == "fastcut" and json.loads(payload["config"])["train"]["schedule"] == "linear"
    out = tmp_path / "out.png"
    assert main(["translate", str(tmp_path / "a" / "0.png"), "-o", str(out), "--model", str(model),
                 "--device", "cpu"]) == 0
    assert read_image(out).shape == (48, 56, 3)
    assert main(["translate", str(tmp_path / "a" / "0.png"), "-o", str(tmp_path / "x.png"),
                 "--model", str(tmp_path / "missing.pt")]) == 2


def test_four_channel_microscopy_stack_trains_and_translates():
    """(T, C, H, W) multi-channel data: ImageSource(channel_axis=1) keeps every channel (a fourth
    one is not alpha), the recipe takes 4 channels, and the engine translates with channel_axis=1."""
    from napari_nlcl import translate
    from napari_nlcl.training.data import ImageSource, RandomCrops

    rng = np.random.default_rng(0)
    stack = (rng.random((3, 4, 40, 44)) * 65535).astype(np.uint16)
    src = ImageSource(stack, channel_axis=1, name="source")
    tgt = ImageSource(stack[::-1].copy(), channel_axis=1, name="target")
    assert src.channels == 4 and len(src) == 3 and src.frame(0).shape == (4, 40, 44)
    overrides, _ = TranslateRecipe.plan_data({"source": src, "target": tgt})
    assert overrides == {"in_channels": 4}
    trainer = Trainer.from_recipe_name("translate", RandomCrops({"source": src, "target": tgt}, crop=32, seed=0),
                                       TrainConfig(steps=2, crop=32, device="cpu"),
                                       recipe_config={**TINY, **overrides})
    trainer.fit()
    out = translate(stack, trainer.model.eval(), channel_axis=1, device="cpu")
    assert out.shape == stack.shape and out.dtype == np.uint16
    with pytest.raises(ValueError, match="channel_axis needs an array"):
        ImageSource("folder", channel_axis=0)


def test_prototype_negatives_train_and_drop_some_negatives():
    """negatives="prototype" (HCSC-style selection in PatchNCE) runs and leaves negatives out."""
    import torch

    from napari_nlcl.training import build_recipe

    recipe = build_recipe("translate", {"mode": "cut", "preset": "light", "negatives": "prototype",
                                        "num_patches": 32})
    keys = torch.randn(2, 32, 16)
    keep = recipe._prototype_keep(keys)
    assert keep.shape == (2, 32, 32) and keep.dtype == torch.bool
    assert not keep.all() and keep.any(dim=-1).all()  # some dropped, every query keeps negatives
    assert not keep.diagonal(dim1=1, dim2=2).any()  # the positive is not a negative
    x = torch.rand(2, 3, 64, 64)
    losses = recipe.training_step({"source": x, "target": torch.rand(2, 3, 64, 64)}, 0)
    assert all(torch.isfinite(torch.as_tensor(v)) for v in losses.values())
