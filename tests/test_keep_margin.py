"""Keep-best with a monitor's margin over the start, and the haze-on-haze augmentation of dehaze."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from napari_nlcl.modelfile import read_checkpoint
from napari_nlcl.training import TrainConfig, Trainer
from napari_nlcl.training.data import RandomCrops
from napari_nlcl.training.monitor import ProxyPairs, kept_index, replaces_best


def _data():
    rng = np.random.default_rng(0)
    base = rng.random((4, 12, 12, 3)).astype(np.float32)
    return RandomCrops({"image": np.repeat(np.repeat(base, 4, axis=1), 4, axis=2)}, crop=32,
                       batch_size=2, seed=0)


def _run(tmp_path, min_gain, steps=24, **config):
    cfg = TrainConfig(steps=steps, batch_size=2, crop=32, lr=1e-2, seed=0, device="cpu", monitor_every=2,
                      **config)
    t = Trainer.from_recipe_name("toy", _data(), cfg, recipe_config={"monitor_min_gain": min_gain},
                                 checkpoint=tmp_path / f"toy_{min_gain}.pt")
    events = list(t.fit_iter())
    return t, events


def test_the_margin_rule():
    assert replaces_best(1.0, None, best_is_start=True, min_gain=5)
    assert not replaces_best(10.05, 10.0, best_is_start=True, min_gain=0.1)
    assert replaces_best(10.15, 10.0, best_is_start=True, min_gain=0.1)
    assert replaces_best(10.05, 10.0, best_is_start=False, min_gain=0.1)  # only the start has a margin
    # the start stays kept through small gains; once a step clears the margin, any gain counts
    assert kept_index([10.0, 10.05, 10.08, 10.2, 10.21, 10.1], 0.1) == 4
    assert kept_index([10.0, 10.05, 10.08, 10.02], 0.1) == 0
    assert kept_index([10.0, 10.05, 10.08, 10.02], 0.0) == 2
    with pytest.raises(ValueError, match="min_gain"):
        ProxyPairs(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4), min_gain=-1)


@pytest.mark.usefixtures("toy_recipe")
def test_keep_best_needs_the_margin_over_the_start(tmp_path):
    free, _ = _run(tmp_path, 0.0)
    scores = [s for _, s in free.monitor_history]
    assert max(scores) > scores[0] + 1  # the toy run learns
    # a margin just above the first step's gain: that step no longer replaces the start
    first_gain = scores[1] - scores[0]
    assert first_gain > 0
    margin = first_gain + 1e-3
    held, _ = _run(tmp_path, margin)
    # the monitor does not steer training: the same steps score the same
    assert [s for _, s in held.monitor_history] == pytest.approx(scores)
    expected = kept_index(scores, margin)
    assert expected != 1 and held.best["step"] == free.monitor_history[expected][0]
    # a margin no step clears: the start is kept, the file and its metadata say so
    t, _ = _run(tmp_path, 1000.0)
    assert t.best["step"] == 0
    meta = json.loads(read_checkpoint(tmp_path / "toy_1000.0.pt")["metadata"])
    assert meta["kept"]["step"] == 0
    assert "no step beat the start by the monitor's margin of 1000.00 dB" in meta["kept"]["reason"]
    assert t.kept_summary().endswith("the start, no step beat it by the monitor's margin of 1000.00 dB")
    assert free.kept_summary() == f"keeps step {free.best['step']} ({free.best['score']:.2f} dB)"
    start = t.monitor.score(t.model, precision=t.precision)
    assert start == pytest.approx(scores[0], abs=1e-5)


@pytest.mark.usefixtures("toy_recipe")
def test_patience_counts_from_the_start_while_no_step_clears_the_margin(tmp_path):
    t, events = _run(tmp_path, 1000.0, steps=200, patience=3)
    assert t.step == 6 and t.best["step"] == 0
    assert "not improved for 3 evaluations" in events[-1].message


@pytest.mark.usefixtures("toy_recipe")
def test_resume_keeps_the_margin(tmp_path):
    _run(tmp_path, 1000.0, steps=8)
    r = Trainer.resume(tmp_path / "toy_1000.0.pt", _data())
    assert r.monitor.min_gain == 1000.0 and r.best["step"] == 0


def test_rehaze_is_the_same_scene_under_denser_haze():
    from napari_nlcl.training.dehaze import rehaze

    g = torch.Generator().manual_seed(0)
    clear = torch.rand(2, 3, 16, 16, generator=g)
    t = 0.3 + 0.6 * torch.rand(2, 1, 16, 16, generator=g)
    a = torch.tensor([[0.9, 0.85, 0.8], [0.7, 0.7, 0.75]])
    hazy = clear * t + a[:, :, None, None] * (1 - t)
    power = torch.tensor([0.5, 1.0]).view(2, 1, 1, 1)
    denser, t_total = rehaze(hazy, t, a, power)
    torch.testing.assert_close(t_total, t ** (1 + power))
    assert (denser - a[:, :, None, None]).abs().mean() < (hazy - a[:, :, None, None]).abs().mean()
    # the scattering model inverted with the total transmission gives the clear image back
    recovered = (denser - a[:, :, None, None]) / t_total + a[:, :, None, None]
    torch.testing.assert_close(recovered, clear, atol=1e-5, rtol=0)


def test_rehaze_term_trains_a_physics_dehazer(tmp_path):
    """`rehaze_weight` adds its loss to an unsupervised fine-tuning step from a physics model."""
    from napari_nlcl.training.dehaze import DehazeConfig, DehazeRecipe

    with pytest.raises(ValueError, match="rehaze_range"):
        DehazeConfig(rehaze_range=(0.0, 1.0))
    cfg = DehazeConfig(mode="unsupervised", net={"channels": [4, 8, 8, 8], "blocks": 1, "refine": 0},
                       rehaze_weight=1.0, cr_weight=0.0)
    r = DehazeRecipe(cfg, generator=torch.Generator().manual_seed(0))
    r.start_from({"net": r.net.state_dict()})
    hazy = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 0.5 + 0.4
    losses = r.training_step({"hazy": hazy}, 0)
    assert "rehaze" in losses and float(losses["rehaze"]) > 0
    assert torch.isfinite(losses["total"])


class _KnownHaze(torch.nn.Module):
    """A stand-in physics dehazer: its result is the frame itself, under a known flat haze."""

    def __init__(self, t=0.6, a=0.9):
        super().__init__()
        from napari_nlcl.model import ModelInfo

        self.w = torch.nn.Parameter(torch.zeros(()))
        self.t, self.a = t, a
        self.info = ModelInfo(task="dehaze", name="known haze", in_channels=3, receptive_field=1, config={})

    def decompose(self, x, airlight=None):
        t = torch.full_like(x[:, :1], self.t)
        return x + 0 * self.w, t, torch.full(x.shape[:2], self.a)


def test_dehaze_monitor_on_own_scenes_puts_the_found_haze_over_the_starts_results():
    from napari_nlcl.training.data import ImageSource
    from napari_nlcl.training.monitor import dehaze_proxy_pairs

    levels = [0.1, 0.3, 0.5, 0.7]
    frames = np.stack([np.full((40, 50, 3), v, np.float32) for v in levels])
    source = ImageSource(frames)
    pairs = dehaze_proxy_pairs(_KnownHaze(), source, pairs=4, size=32, scenes="own")
    assert pairs.min_gain > 0
    assert tuple(pairs.targets.shape) == (4, 3, 32, 32)
    # the targets are the start's results on the user's own frames (here the frames themselves)
    seen = sorted({round(float(t.mean()), 4) for t in pairs.targets})
    assert seen == pytest.approx(levels)
    torch.testing.assert_close(pairs.inputs, pairs.targets * 0.6 + 0.9 * 0.4, atol=1e-6, rtol=0)

    class Undo(torch.nn.Module):  # removes a fraction of that haze
        def __init__(self, frac):
            super().__init__()
            self.frac = torch.nn.Parameter(torch.tensor(float(frac)))

        def forward(self, x):
            return x + self.frac * (((x - 0.9 * 0.4) / 0.6) - x)

    scores = [pairs.score(Undo(f)) for f in (0.0, 0.5, 0.9, 1.0)]
    assert scores == sorted(scores)
    photos = dehaze_proxy_pairs(_KnownHaze(), source, pairs=4, size=32, scenes="photos")
    assert not any(torch.allclose(t, photos.targets[0]) for t in pairs.targets)
    with pytest.raises(ValueError, match="scenes"):
        dehaze_proxy_pairs(_KnownHaze(), source, scenes="mine")


def test_dehaze_monitor_from_a_single_large_frame_gives_distinct_small_pairs():
    from napari_nlcl.training.data import ImageSource
    from napari_nlcl.training.monitor import dehaze_proxy_pairs

    frame = np.random.default_rng(0).random((300, 400, 3)).astype(np.float32)
    for scenes in ("own", "photos"):
        pairs = dehaze_proxy_pairs(_KnownHaze(), ImageSource(frame), pairs=6, size=48, scenes=scenes)
        assert tuple(pairs.inputs.shape) == (6, 3, 48, 48)
        flat = pairs.inputs.flatten(1)
        assert all(not torch.equal(flat[i], flat[j]) for i in range(6) for j in range(i))
