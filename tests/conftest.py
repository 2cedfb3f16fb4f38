"""Shared fixtures: tiny torch models that follow the Model protocol, the toy recipe, synthetic
examples and small model files used by more than one test module.

(The model library every test gets is the autouse ``model_library`` fixture of the
repository's root conftest.py, shared with the docstring examples.)
"""

from __future__ import annotations

import numpy as np
import pytest


def _conv_model(*, in_channels=3, seed=0, down=False):
    """A small random CNN with a known receptive field and no global statistics."""
    import torch
    from torch import nn

    from napari_nlcl.model import ModelInfo

    class TinyNet(nn.Module):
        def __init__(self):
            super().__init__()
            g = torch.Generator().manual_seed(seed)
            c = in_channels
            if down:  # stride-2 down and up: needs size_multiple 2
                self.body = nn.Sequential(
                    nn.Conv2d(c, 8, 3, padding=1), nn.ReLU(),
                    nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU(),
                    nn.ConvTranspose2d(8, 8, 2, stride=2), nn.ReLU(),
                    nn.Conv2d(8, c, 3, padding=1),
                )
                rf, mult = 19, 2
            else:
                self.body = nn.Sequential(
                    nn.Conv2d(c, 8, 3, padding=1), nn.ReLU(),
                    nn.Conv2d(8, 8, 5, padding=2), nn.ReLU(),
                    nn.Conv2d(8, c, 3, padding=1),
                )
                rf, mult = 9, 1
            for p in self.parameters():
                with torch.no_grad():
                    p.copy_(torch.randn(p.shape, generator=g) * 0.2)
            self.info = ModelInfo(
                task="identity", name="TinyNet", in_channels=c, value_range=(-1.0, 1.0),
                min_size=8, size_multiple=mult, receptive_field=rf,
            )

        def forward(self, x):
            return torch.tanh(x + 0.3 * self.body(x))

    return TinyNet()


def _identity_model(in_channels=None):
    from torch import nn

    from napari_nlcl.model import ModelInfo

    class Identity(nn.Module):
        def __init__(self):
            super().__init__()
            self.calls = 0
            self.info = ModelInfo(task="identity", name="identity", in_channels=in_channels)

        def forward(self, x):
            self.calls += 1
            return x.clone()

    return Identity()


@pytest.fixture
def make_conv_model():
    """``make_conv_model(*, in_channels=3, seed=0, down=False)``: a small random CNN (see above)."""
    return _conv_model


@pytest.fixture
def make_identity_model():
    """``make_identity_model(in_channels=None)``: an identity model that counts its calls."""
    return _identity_model


@pytest.fixture
def conv_model():
    return _conv_model()


@pytest.fixture
def identity_model():
    return _identity_model()


@pytest.fixture
def make_rgb_stack():
    """``make_rgb_stack(n=3, h=40, w=50)``: ``n`` random uint8 RGB frames (seeded)."""

    def make(n=3, h=40, w=50):
        rng = np.random.default_rng(0)
        return (rng.random((n, h, w, 3)) * 255).astype(np.uint8)

    return make


@pytest.fixture
def rgb_image():
    rng = np.random.default_rng(0)
    return (rng.random((70, 90, 3)) * 255).astype(np.uint8)


@pytest.fixture
def errors(monkeypatch):
    """Error notifications of the widgets, collected instead of shown (napari tests)."""
    from napari_nlcl._napari import _library, _task, _train, _translate

    seen: list[str] = []
    for module in (_task, _translate, _train, _library):  # each widget module that reports errors
        monkeypatch.setattr(module, "notify_error", seen.append)
    return seen


@pytest.fixture
def main_thread_only(monkeypatch):
    """napari's check that plugin code touches layers from the main thread only."""
    monkeypatch.setenv("NAPARI_ENSURE_PLUGIN_MAIN_THREAD", "1")


# ----------------------------------------------------------------------------- the toy recipe
@pytest.fixture
def toy_recipe(monkeypatch):
    """The recipe of tests/toy_recipe.py, registered as ``"toy"`` for one test (then removed again)."""
    from napari_nlcl.training import recipe

    monkeypatch.setitem(recipe._RECIPES, "toy", "toy_recipe:ToyRecipe")
    return "toy"


@pytest.fixture
def fill_toy_run(toy_recipe):
    """``fill_toy_run(viewer, w, *, steps=30, preview_every=0)``: set the Train widget ``w`` up for a
    short toy run from scratch on a new 80 x 96 RGB layer "frames" (returned)."""
    from napari_nlcl._napari import _train

    def fill(viewer, w, *, steps=30, preview_every=0):
        image = (np.random.default_rng(0).random((80, 96, 3)) * 255).astype(np.uint8)
        layer = viewer.add_image(image, name="frames", rgb=True)
        w.task_combo.value = "toy"
        combo, _folder = w._source_widgets["image"]
        combo.value = layer
        w.start_combo.value = _train.SCRATCH
        w.steps_spin.value = steps
        w.crop_spin.value = 32
        w.batch_spin.value = 2
        w.lr_spin.value = 1e-2
        w.preview_spin.value = preview_every
        w.preview_combo.value = layer if preview_every else None
        return layer

    return fill


# ----------------------------------------------------------------------------- synthetic examples
@pytest.fixture
def hazy_example():
    """``(clear, hazy)``: the astronaut (256 x 256, float in [0, 1]) under synthetic haze with sky."""
    from skimage import data

    from napari_nlcl import synth

    clear = data.astronaut()[::2, ::2].astype(np.float32) / 255  # 256 x 256
    depth = synth.random_depth(clear.shape, rng=3, sky_fraction=0.1)
    hazy, _ = synth.add_haze(clear, beta=1.4, airlight=(0.86, 0.88, 0.9), depth=depth)
    return clear, hazy


@pytest.fixture
def rainy_example():
    """``(clean, rainy)``: the coffee photo (256 x 384, float in [0, 1]) under two layers of rain."""
    from skimage import data
    from skimage.transform import resize

    from napari_nlcl import synth

    clean = resize(data.coffee(), (256, 384), anti_aliasing=True).astype(np.float32)
    rainy, _ = synth.add_rain(clean, density=0.02, angle=-8, length=30, width=1.0, opacity=0.6,
                             layers=2, rng=0)
    return clean, rainy


@pytest.fixture
def tiny_dehaze_model(tmp_path):
    """A dehaze model file ``tmp_path / "tiny.pt"``: a small AECR-Net trained 3 steps on three photos."""
    from skimage import data

    from napari_nlcl.training import TrainConfig, Trainer
    from napari_nlcl.training.data import RandomCrops

    path = tmp_path / "tiny.pt"
    crops = RandomCrops({"clear": [data.astronaut(), data.chelsea(), data.coffee()]}, crop=32, batch_size=2,
                        seed=0)
    Trainer.from_recipe_name(
        "dehaze", crops, TrainConfig(steps=3, batch_size=2, crop=32),
        recipe_config={"net": {"channels": [8, 8, 16, 16], "blocks": 1}, "cr_weight": 0.0},
        checkpoint=path,
    ).fit()
    return path
