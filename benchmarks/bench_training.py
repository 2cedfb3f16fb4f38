"""Training-engine benchmarks.

    python benchmarks/bench_training.py           # about 2-3 minutes on 2 CPU cores
    python benchmarks/bench_training.py --quick

1. Steps per second on the CPU of
   * a tiny recipe (2-layer CNN, L1; tests' toy size), 64 px crops, batch 4, and
   * a realistic contrastive recipe: a CUT-sized ResNet generator (ngf 32, 2
     down-samplings, 6 residual blocks) trained with PatchNCE over 4 of its own
     layers (256 patches, 2-layer MLP heads to 256-d, tau 0.07) plus L1, built
     only from the contrastive toolkit, 128 px crops, batch 1.
2. Memory of the data loader drawing 2,000 crops from a lazily generated
   1,000-frame 512x512 RGB stack: resident memory must stay flat (a few cached
   frames), not grow with the stack (750 MB if it were loaded).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from napari_nlcl.contrastive.encoders import FeatureExtractor, ProjectionHeads, infer_channels  # noqa: E402
from napari_nlcl.contrastive.losses import patch_nce  # noqa: E402
from napari_nlcl.contrastive.samplers import sample_locations  # noqa: E402
from napari_nlcl.model import ModelInfo  # noqa: E402
from napari_nlcl.training import Recipe, TrainConfig, Trainer, register_recipe  # noqa: E402
from napari_nlcl.training.data import RandomCrops  # noqa: E402


class ResBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3), nn.InstanceNorm2d(c), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3), nn.InstanceNorm2d(c),
        )

    def forward(self, x):
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    def __init__(self, c=3, ngf=32, blocks=6):
        super().__init__()
        layers = [nn.ReflectionPad2d(3), nn.Conv2d(c, ngf, 7), nn.InstanceNorm2d(ngf), nn.ReLU(True),
                  nn.Conv2d(ngf, ngf * 2, 3, 2, 1), nn.InstanceNorm2d(ngf * 2), nn.ReLU(True),
                  nn.Conv2d(ngf * 2, ngf * 4, 3, 2, 1), nn.InstanceNorm2d(ngf * 4), nn.ReLU(True)]
        layers += [ResBlock(ngf * 4) for _ in range(blocks)]
        layers += [nn.ConvTranspose2d(ngf * 4, ngf * 2, 3, 2, 1, output_padding=1), nn.InstanceNorm2d(ngf * 2), nn.ReLU(True),
                   nn.ConvTranspose2d(ngf * 2, ngf, 3, 2, 1, output_padding=1), nn.InstanceNorm2d(ngf), nn.ReLU(True),
                   nn.ReflectionPad2d(3), nn.Conv2d(ngf, c, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)
        self.info = ModelInfo(task="identity", name="resnet", in_channels=c, value_range=(-1.0, 1.0),
                              size_multiple=4, receptive_field=99, exact_tiling=False)

    def forward(self, x):
        return self.model(x)


@dataclass
class PatchNCEConfig:
    ngf: int = 32
    blocks: int = 6
    num_patches: int = 256


class PatchNCERecipe(Recipe):
    name = "bench_patchnce"
    Config = PatchNCEConfig
    data_sources = ("image",)

    def __init__(self, config, *, device="cpu", generator=None):
        super().__init__(config, device=device, generator=generator)
        self.G = self.add_network("G", ResnetGenerator(ngf=config.ngf, blocks=config.blocks))
        self.taps = FeatureExtractor(self.G, ["model.0", "model.4", "model.7", "model.11"], stop_at_last=True)
        chans = infer_channels(self.taps, (1, 3, 64, 64))
        self.heads = self.add_network("heads", ProjectionHeads(chans, out_dim=256))
        self.add_optimizer("G", list(self.G.parameters()) + list(self.heads.parameters()), lr=2e-4)

    def training_step(self, batch, step):
        x = batch["image"] * 2 - 1
        y = self.G(x)
        fq, fk = self.taps(y), self.taps(x)
        nce = 0.0
        for q, k, head in zip(fq, fk, self.heads):
            pk, ids = sample_locations(k, self.config.num_patches, generator=self.generator)
            pq, _ = sample_locations(q, ids=ids)
            nce = nce + patch_nce(head(pq), head(pk))
        loss = nce / len(fq) + F.l1_loss(y, x)
        self.backward_step(loss, "G")
        return {"nce": nce.detach() / len(fq), "total": loss.detach()}

    def inference_model(self):
        return self.G


register_recipe("bench_patchnce", f"{__name__}:PatchNCERecipe")
register_recipe("toy", "toy_recipe:ToyRecipe")


def steps_per_second(name: str, crop: int, batch: int, steps: int) -> dict:
    images = np.random.default_rng(0).random((4, 256, 256, 3)).astype(np.float32)
    data = RandomCrops({"image": images}, crop=crop, batch_size=batch, seed=0)
    cfg = TrainConfig(steps=steps + 2, batch_size=batch, crop=crop, device="cpu")
    trainer = Trainer.from_recipe_name(name, data, cfg)
    gen = trainer.fit_iter()
    next(gen), next(gen)  # warm-up
    t0 = time.perf_counter()
    for _ in range(steps):
        next(gen)
    dt = time.perf_counter() - t0
    gen.close()
    params = sum(p.numel() for n in trainer.recipe.networks.values() for p in n.parameters())
    return {"recipe": name, "crop": crop, "batch": batch, "params": params,
            "steps/s": round(steps / dt, 2), "s/step": round(dt / steps, 3)}


def loader_memory(frames: int, size: int, draws: int) -> dict:
    import dask
    import dask.array as da
    import psutil

    def frame(i):
        return np.random.default_rng(i).integers(0, 255, (size, size, 3), dtype=np.uint8)

    stack = da.stack([da.from_delayed(dask.delayed(frame)(i), (size, size, 3), np.uint8)
                      for i in range(frames)])
    crops = RandomCrops({"image": stack}, crop=128, batch_size=4, seed=0)
    proc = psutil.Process()
    crops.sample()
    base = proc.memory_info().rss
    rss = []
    t0 = time.perf_counter()
    for i in range(draws // 4):
        crops.sample()
        if i % 50 == 0:
            rss.append(proc.memory_info().rss)
    return {"frames": frames, "stack_MB": round(stack.nbytes / 1e6),
            "frames_read": crops.sources["image"].reads,
            "rss_start_MB": round(base / 2**20), "rss_max_MB": round(max(rss) / 2**20),
            "rss_end_MB": round(rss[-1] / 2**20),
            "ms_per_crop": round(1000 * (time.perf_counter() - t0) / draws, 1)}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    n = 3 if args.quick else 20
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(steps_per_second("toy", 64, 4, n * 5))
    print(steps_per_second("bench_patchnce", 128, 1, n))
    if not args.quick:
        print(steps_per_second("bench_patchnce", 256, 1, 5))
    print(loader_memory(1000, 512 if not args.quick else 128, 2000 if not args.quick else 200))


if __name__ == "__main__":
    main()
