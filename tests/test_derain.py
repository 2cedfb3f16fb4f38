"""NLCL deraining: the derain recipe and its losses, default weights, API and CLI.

(The networks: test_derain_nets.py; the rain banks it trains on: test_synth_banks.py;
fine-tuning from a trained model: test_derain_finetune.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from derain_helpers import TINY, perturb_heads, rainy_batch, tiny

from napari_nlcl.metrics import y_psnr
from napari_nlcl.nets.derain import DEFAULT_WEIGHTS
from napari_nlcl.synth.banks import add_bank_rain
from napari_nlcl.training import TrainConfig, Trainer, build_recipe, load_recipe
from napari_nlcl.training.derain import DerainRecipe
from napari_nlcl.training.derain_config import DerainConfig

# ----------------------------------------------------------------------------- recipe


def test_veil_branch_learns_from_the_synthetic_veil():
    torch.manual_seed(0)  # the networks' initial weights
    r = tiny(mode="synthetic", net={"channels": (8, 16), "veil": True}, veil=1.0, veil_max=0.4, additive=1.0)
    clean = torch.rand(2, 3, 48, 48) * 0.5
    _, losses = r._supervised(clean)
    assert "mse_veil" in losses
    opt = torch.optim.Adam(r.gen_b.veil_net.parameters(), lr=3e-3)
    first = None
    for _ in range(60):
        r.generator.manual_seed(0)  # the same rain every step: the loss then measures learning
        loss, losses = r._supervised(clean)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first if first is not None else float(losses["mse_veil"])
    assert float(losses["mse_veil"]) < 0.7 * first


def test_recipe_builds_a_sheet_bank_only_when_downpours_use_sheets():
    small = {"rain_bank": 8, "rain_bank_size": 64}
    assert build_recipe("derain", DerainConfig(**small), device="cpu").sheet_bank is None
    recipe = build_recipe("derain", DerainConfig(**small, downpour=1.0, downpour_sheets=1.0), device="cpu")
    assert recipe.sheet_bank.shape == (4, 1, 64, 64)
    rainy = recipe.synthesize(torch.rand(2, 3, 64, 64) * 0.3)
    assert rainy.shape == (2, 3, 64, 64) and torch.isfinite(rainy).all()


def test_plan_data_picks_the_mode():
    assert DerainRecipe.plan_data(["clean"]) == ({"mode": "synthetic"}, False)
    assert DerainRecipe.plan_data(["rainy"]) == ({"mode": "nlcl"}, False)
    assert DerainRecipe.plan_data(["rainy", "clean"]) == ({"mode": "nlcl"}, False)
    with pytest.raises(ValueError, match="rainy and/or clean"):
        DerainRecipe.plan_data(["hazy"])


@pytest.mark.parametrize("bad, match", [
    ({"mode": "paired"}, "mode must be"),
    ({"gan_weight": -1}, "gan_weight"),
    ({"window": 8, "patch": 16}, "window"),
    ({"nl_patches": 4}, "nl_patches"),
    ({"rain_opacity": (0.5, 0.2)}, "rain_opacity"),
    ({"preset": "huge"}, "unknown generator preset"),
])
def test_bad_settings_are_refused_clearly(bad, match):
    with pytest.raises(ValueError, match=match):
        DerainConfig(**bad)


def test_small_crops_are_refused_with_a_hint():
    r = tiny()
    with pytest.raises(ValueError, match="raise the crop size"):
        r.training_step({"rainy": torch.rand(1, 3, 16, 16)}, 0)


def _run(recipe, batch, steps):
    history = []
    for step in range(steps):
        losses = recipe.training_step(batch, step)
        history.append({k: float(v) for k, v in losses.items()})
    return history


@pytest.mark.parametrize("term, key", [
    ("consistency_weight", "consistency"),
    ("sparsity_weight", "sparsity"),
    ("layer_weight", "layer_nce"),
    ("location_weight", "location_nce"),
    ("transplant_weight", "transplant"),
])
def test_each_nlcl_term_decreases_when_trained_alone(term, key):
    torch.manual_seed(0)
    off = {k: 0.0 for k in ("consistency_weight", "sparsity_weight", "gan_weight", "layer_weight",
                            "location_weight", "sup_weight", "transplant_weight")}
    r = tiny(**{**off, term: 1.0})
    perturb_heads(r)
    batch = {"rainy": rainy_batch(2, 48), "clean": rainy_batch(2, 48, seed=7).clamp(0, 0.5)}
    h = _run(r, batch, 30)
    first = np.mean([x[key] for x in h[:3]])
    last = np.mean([x[key] for x in h[-3:]])
    assert last < first, (first, last)


def test_transplant_gain_adds_heavier_copies_of_the_found_rain():
    off = {k: 0.0 for k in ("consistency_weight", "sparsity_weight", "gan_weight", "layer_weight",
                            "location_weight", "sup_weight")}
    batch = {"rainy": rainy_batch(2, 48), "clean": rainy_batch(2, 48, seed=7).clamp(0, 0.4)}
    added = {}
    for gain in ((1.0, 1.0), (2.0, 2.0)):
        r = tiny(**off, transplant_weight=1.0, transplant_gain=gain)
        perturb_heads(r, 0.05)
        with torch.no_grad():
            found = (batch["rainy"] - r.gen_b(batch["rainy"])).clamp(min=0.0)
        seen = []
        r.gen_b.register_forward_pre_hook(lambda m, a: seen.append(a[0].detach().clone()))
        r.training_step(batch, 0)
        added[gain] = seen[-1] - batch["clean"]  # the transplant pair's input, less its clean image
        expected = (batch["clean"] + gain[0] * found).clamp(0.0, 1.0) - batch["clean"]
        assert torch.allclose(added[gain], expected, atol=1e-5)
    assert found.mean() > 1e-3 and added[(2.0, 2.0)].mean() > 1.5 * added[(1.0, 1.0)].mean()
    with pytest.raises(ValueError, match="transplant_gain"):
        DerainConfig(transplant_gain=(2.0, 1.0))


def test_gan_terms_train_the_discriminator():
    torch.manual_seed(0)
    off = {k: 0.0 for k in ("consistency_weight", "sparsity_weight", "layer_weight", "location_weight",
                            "sup_weight", "transplant_weight")}
    r = tiny(**off, gan_weight=1.0)
    clean = rainy_batch(2, 48, seed=5) * 0 + torch.linspace(0, 1, 48).view(1, 1, 1, 48)  # smooth ramps
    batch = {"rainy": rainy_batch(2, 48), "clean": clean}
    h = _run(r, batch, 30)
    assert np.mean([x["disc"] for x in h[-5:]]) < np.mean([x["disc"] for x in h[:3]])
    assert all(np.isfinite(x["gan"]) for x in h)


def test_supervised_mode_lowers_the_l1():
    torch.manual_seed(0)
    r = tiny(mode="synthetic")
    for g in r.optimizers["gen"].param_groups:
        g["lr"] = 1e-3
    from skimage import data
    from skimage.transform import resize

    clean = torch.from_numpy(resize(data.coffee(), (64, 96), anti_aliasing=True).astype(np.float32))
    clean = clean.permute(2, 0, 1)[None].repeat(2, 1, 1, 1)
    held_out = add_bank_rain(clean, r.rain_bank, torch.Generator().manual_seed(42))

    def l1():
        r.gen_b.eval()
        with torch.no_grad():
            value = float((r.gen_b(held_out) - clean).abs().mean())
        r.gen_b.train()
        return value

    before = l1()
    _run(r, {"clean": clean}, 100)
    assert l1() < 0.9 * before


def test_every_head_and_network_is_stepped():
    r = tiny(hard_negatives=True)
    perturb_heads(r)
    before = {n: [p.detach().clone() for p in net.parameters()] for n, net in r.networks.items()}
    r.training_step({"rainy": rainy_batch(2, 48)}, 0)
    for name, net in r.networks.items():
        if name == "teacher":  # the frozen starting model of fine-tuning is never trained
            assert not any(p.requires_grad for p in net.parameters())
            assert all(torch.equal(p, old) for p, old in zip(net.parameters(), before[name]))
            continue
        for p, old in zip(net.parameters(), before[name]):
            assert p.grad is not None, name
            assert not torch.equal(p.detach(), old), f"a parameter of {name} was not stepped"
    assert {"gen_b", "gen_r", "disc", "layer_heads", "nce_heads"} <= set(r.networks)


def test_batch_of_two_samples_each_image_separately():
    from napari_nlcl.contrastive.samplers import nonlocal_positives

    r = tiny()
    x = rainy_batch(2, 48)
    x[1] = x[1].flip(-1)  # different images: different self-similar sets
    s = nonlocal_positives(x, patch=8, window=24, k=8, num_negatives=0,
                           generator=torch.Generator().manual_seed(0))
    assert s.positives.shape == (2, 8, 2)
    losses = r.training_step({"rainy": x}, 0)
    assert all(np.isfinite(float(v)) for v in losses.values())


def test_asymmetry_changes_the_layer_contrast():
    x = rainy_batch(2, 48)
    vals = []
    for asym in (True, False):
        r = tiny(asymmetric=asym, seed=0)
        perturb_heads(r)
        torch.manual_seed(0)
        with torch.no_grad():
            r.generator.manual_seed(0)
            vals.append(float(r.layer_contrast(r.gen_b(x), r.gen_r(x))))
    assert np.isfinite(vals).all() and vals[0] != pytest.approx(vals[1])


def test_nlcl_without_clean_images_uses_the_bundled_photos():
    r = tiny()
    crops = r._clean_crops(2, 40, 50)
    assert crops.shape == (2, 3, 40, 50) and 0 <= crops.min() and crops.max() <= 1
    assert crops.std() > 0.05


def test_pseudo_clean_uses_the_models_own_backgrounds_instead_of_the_bundled_photos(monkeypatch):
    batch = {"rainy": rainy_batch(2, 48)}
    bundled = []
    monkeypatch.setattr(DerainRecipe, "_clean_crops", lambda self, b, h, w: bundled.append(b) or torch.rand(b, 3, h, w))
    r = tiny(pseudo_clean=1.0)
    perturb_heads(r)
    with torch.no_grad():
        expected = r.gen_b(batch["rainy"]).clamp(0, 1)
    real = []
    r.disc.register_forward_pre_hook(lambda m, a: real.append(a[0].detach().clone()))
    losses = r.training_step(batch, 0)
    assert not bundled and all(torch.isfinite(v) for v in losses.values())
    assert torch.allclose(real[0], expected, atol=1e-6)  # the discriminator's real set: the backgrounds
    tiny(pseudo_clean=0.0).training_step(batch, 0)
    assert bundled == [2]
    with pytest.raises(ValueError, match="pseudo_clean is a probability"):
        DerainConfig(pseudo_clean=2.0)


def test_grey_makes_that_share_of_the_synthetic_clean_crops_grey(monkeypatch):
    seen = []
    real = DerainRecipe.synthesize
    monkeypatch.setattr(DerainRecipe, "synthesize", lambda self, c, **kw: seen.append(c.clone()) or real(self, c, **kw))
    clean = torch.rand(8, 3, 48, 48)
    tiny("synthetic", grey=1.0).training_step({"clean": clean}, 0)
    tiny("synthetic", grey=0.5, seed=3).training_step({"clean": clean}, 0)
    tiny("synthetic").training_step({"clean": clean}, 0)
    all_grey, half, colour = seen
    assert torch.allclose(all_grey[:, 0], all_grey[:, 1]) and torch.allclose(all_grey[:, 1], all_grey[:, 2])
    luma = 0.299 * clean[:, 0] + 0.587 * clean[:, 1] + 0.114 * clean[:, 2]
    assert torch.allclose(all_grey[:, 0], luma, atol=1e-6)  # brightness kept
    grey_rows = [bool(torch.equal(h[0], h[1]) and torch.equal(h[1], h[2])) for h in half]
    assert 0 < sum(grey_rows) < 8 and all(torch.equal(half[i], clean[i]) for i in range(8) if not grey_rows[i])
    assert torch.equal(colour, clean)
    with pytest.raises(ValueError, match="grey is a probability"):
        DerainConfig(grey=1.5)


def test_checkpoint_round_trip_is_identical(tmp_path):
    r = tiny()
    trainer = Trainer(r, [{"rainy": rainy_batch(1, 48)}] * 3, TrainConfig(steps=3, crop=48),
                      checkpoint=tmp_path / "m.pt")
    trainer.fit()
    loaded, _ = load_recipe(tmp_path / "m.pt")
    x = torch.rand(1, 3, 48, 64)
    r.gen_b.eval(), loaded.gen_b.eval()
    # the trainer keeps its networks channels_last on the CPU: compare in one memory layout
    # (the same weights in two layouts differ by float rounding)
    trainer.precision.prepare(loaded.gen_b)
    with torch.no_grad():
        assert torch.equal(r.gen_b(x), loaded.gen_b(x))
        for name in r.networks:
            for a, b in zip(r.networks[name].state_dict().values(),
                            loaded.networks[name].state_dict().values()):
                assert torch.equal(a, b)
    # an export can store the settings fine-tuning from it should use; bad ones are refused
    from napari_nlcl.training import export_model, recipe_config_of

    small = export_model(tmp_path / "m.pt", tmp_path / "s.pt", networks=["gen_b", "gen_r"],
                         settings={"pseudo_clean": 0.5, "transplant_gain": [1, 2]})
    stored = recipe_config_of(small)[1]
    assert stored["pseudo_clean"] == 0.5 and list(stored["transplant_gain"]) == [1, 2]
    assert stored["nl_patches"] == TINY["nl_patches"]  # the rest is kept
    with torch.no_grad():
        assert torch.equal(trainer.precision.prepare(load_recipe(small)[0].gen_b.eval())(x), r.gen_b(x))
    with pytest.raises(ValueError, match="pseudo_clean"):
        export_model(tmp_path / "m.pt", tmp_path / "bad.pt", settings={"pseudo_clean": 3})
    assert not (tmp_path / "bad.pt").exists()


# ----------------------------------------------------------------------------- default weights
def test_default_weights_load_offline_and_split_the_image(monkeypatch, rainy_example):
    monkeypatch.setenv("TORCH_HOME", "/nonexistent")  # nothing may be downloaded
    assert DEFAULT_WEIGHTS.is_file() and DEFAULT_WEIGHTS.stat().st_size < 8e6
    recipe, payload = load_recipe(DEFAULT_WEIGHTS)
    assert payload.get("exported")
    _, rainy = rainy_example
    x = torch.from_numpy(rainy).permute(2, 0, 1)[None]
    recipe.gen_b.eval(), recipe.gen_r.eval()
    with torch.no_grad():
        b, r = recipe.gen_b(x), recipe.gen_r(x)
    # the two generators split O into B + R: the rain generator explains what the background
    # generator removed (trained with L1 to both layers and the consistency term)
    removed = (x - b).abs().mean()
    assert removed > 0.01
    assert (b + r - x).abs().mean() < 0.5 * removed


def test_default_derain_raises_psnr(rainy_example):
    from napari_nlcl import derain

    clean, rainy = rainy_example
    out = derain(rainy, device="cpu")
    assert y_psnr(out, clean) > y_psnr(rainy, clean) + 3


def test_default_model_on_a_lazy_stack_and_grayscale(rainy_example):
    import dask.array as da

    from napari_nlcl import derain

    _, rainy = rainy_example
    stack = da.from_array(np.stack([rainy[:128, :128]] * 3), chunks=(1, 128, 128, 3))
    lazy, rain = derain(stack, rain_layer=True, device="cpu")
    assert isinstance(lazy, da.Array) and isinstance(rain, da.Array)
    first = lazy[0].compute()
    assert np.allclose(first + rain[0].compute(), rainy[:128, :128], atol=1e-6)
    grey = derain(rainy[..., 0], model="default", device="cpu")  # 1 channel through the RGB net
    assert grey.shape == rainy.shape[:2]


def test_rain_layer_in_the_input_dtype(rainy_example):
    from napari_nlcl import derain

    _, rainy = rainy_example
    u8 = (rainy * 255).round().astype(np.uint8)
    background, rain = derain(u8, rain_layer=True, device="cpu")
    assert background.dtype == rain.dtype == np.uint8
    assert np.all(rain.astype(int) == np.clip(u8.astype(int) - background.astype(int), 0, 255))


def test_method_names_are_per_task():
    from napari_nlcl import available_methods, load_model

    assert "default" in available_methods("derain") and "default" in available_methods("dehaze")
    assert load_model("default", task="derain").info.task == "derain"
    with pytest.raises(ValueError, match="several tasks"):
        load_model("default")
    with pytest.raises(ValueError, match="unknown derain method 'dcp'"):
        load_model("dcp", task="derain")


def test_a_dehazing_model_is_refused_for_deraining():
    from napari_nlcl import derain

    with pytest.raises(ValueError, match="not a derain model"):
        derain(np.zeros((64, 64, 3), np.float32), model=load_dehazer())


def load_dehazer():
    from napari_nlcl import load_model

    return load_model("dcp", task="dehaze")


# ----------------------------------------------------------------------------- CLI
def test_cli_derain_writes_background_and_rain_layer(tmp_path, rainy_example):
    import imageio.v3 as iio

    from napari_nlcl.cli import main

    _, rainy = rainy_example
    src = tmp_path / "rainy.png"
    iio.imwrite(src, (rainy * 255).round().astype(np.uint8))
    out, rain = tmp_path / "bg.png", tmp_path / "rain.png"
    assert main(["derain", str(src), "-o", str(out), "--rain-layer", str(rain), "--device", "cpu"]) == 0
    b, r, o = iio.imread(out).astype(int), iio.imread(rain).astype(int), iio.imread(src).astype(int)
    assert b.shape == o.shape and np.all(r == np.clip(o - b, 0, 255))
    assert main(["derain", str(src), "-o", str(out), "--rain-layer", str(out)]) == 2


def test_cli_trains_from_clean_then_finetunes_on_rainy(tmp_path, rainy_example):
    import imageio.v3 as iio

    from napari_nlcl.cli import main

    clean_dir, rainy_dir = tmp_path / "clean", tmp_path / "rainy"
    clean_dir.mkdir(), rainy_dir.mkdir()
    clean, rainy = rainy_example
    for i in range(2):
        iio.imwrite(clean_dir / f"{i}.png", (np.roll(clean, 40 * i, 1) * 255).astype(np.uint8))
        iio.imwrite(rainy_dir / f"{i}.png", (np.roll(rainy, 40 * i, 1) * 255).astype(np.uint8))
    tiny_args = ["-S", "rain_bank=4", "-S", "rain_bank_size=64", "-S", "nl_patches=8", "-S", "nce_patches=32",
                 "-S", "disc_ndf=8", "--crop", "64", "--device", "cpu"]
    m1 = tmp_path / "syn.pt"
    assert main(["train", "derain", "--clean", str(clean_dir), "--steps", "2", "-o", str(m1), *tiny_args]) == 0
    m2 = tmp_path / "ft.pt"
    assert main(["train", "derain", "--rainy", str(rainy_dir), "--from", str(m1), "--steps", "2",
                 "-o", str(m2), *tiny_args]) == 0
    recipe, payload = load_recipe(m2)
    assert recipe.config.mode == "nlcl" and payload["step"] == 2
    # without --lr: the general rate from scratch, the recipe's gentler fine-tuning rate with --from
    lrs = [json.loads(load_recipe(m)[1]["config"])["train"]["lr"] for m in (m1, m2)]
    assert lrs == [2e-4, DerainRecipe.fine_tune_lr] and DerainRecipe.fine_tune_lr < 2e-4
    out = tmp_path / "out.png"
    assert main(["derain", str(rainy_dir / "0.png"), "-m", str(m2), "-o", str(out), "--device", "cpu"]) == 0
    assert main(["train", "derain", "--hazy", str(rainy_dir), "--steps", "1", "-o", str(m2)]) == 2


VAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "rain" / "synthetic_val_sirr"


@pytest.mark.skipif(not VAL.is_dir(), reason="development data ../shared/data is not here")
@pytest.mark.xfail(reason="open target of issue #4: the shipped default scores 26.14 dB, not 29 dB, "
                   "on synthetic_val_sirr; see the README", strict=False)
def test_default_reaches_the_issue_target_on_the_validation_set():
    from napari_nlcl import derain
    from napari_nlcl.io import read_file

    scores, inputs = [], []
    for i in range(1, 21):
        rainy = np.asarray(read_file(VAL / "rain" / f"input{i}.png"))[..., :3] / 255.0
        clean = np.asarray(read_file(VAL / "norain" / f"norain{i}.png"))[..., :3] / 255.0
        scores.append(y_psnr(derain(rainy.astype(np.float32), device="cpu"), clean))
        inputs.append(y_psnr(rainy, clean))
    assert np.mean(inputs) == pytest.approx(22.29, abs=0.01)  # the set the README reports on
    assert np.mean(scores) >= 29.0
