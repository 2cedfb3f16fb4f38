"""A tiny recipe for engine tests: learn to undo a fixed contrast loss."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from napari_nlcl.model import ModelInfo
from napari_nlcl.training import Recipe


@dataclass
class ToyConfig:
    channels: int = 3
    width: int = 8
    delay: float = 0.0  # seconds slept inside each step (interrupt tests: a signal lands mid-step)
    sabotage_from: int = 0  # > 0: from this step on, each step also adds noise to the weights
    monitor: bool = True  # build_monitor gives proxy pairs (the known degradation of the frames)
    monitor_min_gain: float = 0.0  # the monitor's margin over the start (ProxyPairs.min_gain)


class ToyNet(nn.Module):
    def __init__(self, channels: int, width: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, channels, 1)
        )
        self.info = ModelInfo(task="identity", name="toy", in_channels=channels,
                              receptive_field=3, config={})

    def forward(self, x):
        return x + self.body(x)


class ToyRecipe(Recipe):
    name = "toy"
    version = 1
    Config = ToyConfig
    data_sources = ("image",)

    def __init__(self, config, *, device="cpu", generator=None):
        super().__init__(config, device=device, generator=generator)
        self.net = self.add_network("net", ToyNet(config.channels, config.width))
        self.add_optimizer("net", self.net.parameters(), lr=1e-2, betas=(0.9, 0.999))

    def training_step(self, batch, step):
        clean = batch["image"]
        degraded = 0.5 * clean + 0.2
        # a random (seeded) noise term exercises the recipe generator in resume tests
        noise = torch.randn(clean.shape, generator=self.generator) * 0.01
        loss = F.l1_loss(self.net(degraded + noise.to(clean.device)), clean)
        if self.config.delay:
            import time

            time.sleep(self.config.delay)
        self.backward_step(loss, "net")
        if self.config.sabotage_from and step >= self.config.sabotage_from:
            with torch.no_grad():
                for p in self.net.parameters():
                    p.add_(torch.randn(p.shape, generator=self.generator) * 0.05)
        return {"l1": loss.detach()}

    def build_monitor(self, data, *, seed=0):
        """The frames' own known degradation: a monitor whose optimum is the undone contrast loss."""
        from napari_nlcl.training.monitor import ProxyPairs

        if not self.config.monitor or not hasattr(data, "sources"):
            return None
        src = data.sources["image"]
        clean = torch.stack([torch.from_numpy(src.frame(i)) for i in range(len(src))])
        return ProxyPairs(0.5 * clean + 0.2, clean, min_gain=self.config.monitor_min_gain)

    def inference_model(self):
        return self.net
