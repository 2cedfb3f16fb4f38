"""Shared fixtures: tiny torch models that follow the Model protocol."""

from __future__ import annotations

import numpy as np
import pytest


def make_conv_model(*, in_channels=3, seed=0, down=False):
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


def make_identity_model(in_channels=None):
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


@pytest.fixture(autouse=True)
def model_library(tmp_path_factory, monkeypatch):
    """Every test gets its own empty model library (never the user's real one)."""
    path = tmp_path_factory.mktemp("model_library")
    monkeypatch.setenv("NAPARI_NLCL_MODELS", str(path))
    return path


@pytest.fixture
def conv_model():
    return make_conv_model()


@pytest.fixture
def identity_model():
    return make_identity_model()


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
