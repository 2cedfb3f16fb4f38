"""Small derain recipes and rainy batches shared by the derain tests."""

from __future__ import annotations

import numpy as np
import torch

from napari_nlcl.training import build_recipe

# a recipe small enough to take a few dozen steps in seconds
TINY = {"net": {"channels": (8, 16)}, "rain_preset": "rain", "rain_bank": 8, "rain_bank_size": 64,
        "disc_ndf": 8, "nl_patches": 8, "nce_patches": 32, "window": 24, "patch": 8}


def tiny(mode="nlcl", seed=0, **over):
    return build_recipe("derain", {**TINY, "mode": mode, **over}, seed=seed)


def perturb_heads(recipe, scale=0.02):
    """The generators start as the identity (zero last layer); give them a non-trivial start."""
    g = torch.Generator().manual_seed(1)
    for net in (recipe.gen_b, recipe.gen_r):
        with torch.no_grad():
            net.head.weight.copy_(torch.randn(net.head.weight.shape, generator=g) * scale)


def rainy_batch(b=2, size=48, seed=0):
    from napari_nlcl import synth

    g = np.random.default_rng(seed)
    frames = []
    for i in range(b):
        clean = g.uniform(0.1, 0.6, (size, size, 3)).astype(np.float32)
        clean = np.repeat(np.repeat(clean[::8, ::8], 8, 0), 8, 1)[:size, :size]  # blocky background
        rainy, _ = synth.add_rain(clean, density=0.03, angle=5, length=12, rng=seed + i)
        frames.append(rainy)
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).contiguous()
