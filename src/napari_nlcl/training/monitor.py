"""Quality monitors: how good the model being trained is, on the user's data, without ground truth.

Unsupervised fine-tuning has no clean images to score against, and its
losses do not say whether the output is getting better (a run can climb and
then fall below the model it started from while every loss looks settled).
A monitor gives a score the trainer can keep the best model by and stop on.

:class:`ProxyPairs` is the one used by the shipped recipes: pairs whose clean
image is known, built once at the start of a run from the user's own data.
The degradation the *starting* model finds in the user's frames (the rain
layer ``O - B``, the haze over the scene) is put onto clean photos bundled
with scikit-image that no recipe trains on, so the pairs carry the user's
rain or haze style; the
score is the PSNR of the model's output against the clean photo.  A model
that starts removing scene structure, shifting colours or leaving the
user's kind of rain behind loses PSNR here.  How well this follows the true
PSNR over the checkpoints of long runs is measured in
``benchmarks/monitor_study.py`` (README, fine-tuning).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn


@dataclass
class MonitorScore:
    """One evaluation: ``score`` (higher is better) of the model at ``step``."""

    step: int
    score: float
    best_step: int
    best_score: float

    @property
    def improved(self) -> bool:
        return self.best_step == self.step


class ProxyPairs:
    """Mean PSNR (dB) of a network on fixed (input, clean) pairs; inputs and targets in [0, 1].

    ``inputs`` and ``targets`` are ``(N, C, H, W)`` tensors; the network takes
    and returns images in [0, 1] (the recipes' convention).
    """

    name = "proxy PSNR"
    unit = "dB"

    def __init__(self, inputs: torch.Tensor, targets: torch.Tensor, *, batch: int = 4,
                 description: str = ""):
        if inputs.shape != targets.shape or inputs.ndim != 4 or len(inputs) == 0:
            raise ValueError(f"proxy pairs need inputs and targets of one (N, C, H, W) shape, got "
                             f"{tuple(inputs.shape)} and {tuple(targets.shape)}")
        self.inputs, self.targets = inputs.float().cpu(), targets.float().cpu()
        self.batch = int(batch)
        self.description = description

    def __len__(self) -> int:
        return len(self.inputs)

    @torch.no_grad()
    def score(self, net: nn.Module, precision: Any = None) -> float:
        """Mean PSNR (dB) of ``net`` on the pairs; ``precision`` (a resolved
        :class:`napari_nlcl.inference.precision.Precision`, e.g. the trainer's) sets autocast and layout."""
        import contextlib

        device = next((p.device for p in net.parameters()), torch.device("cpu"))
        was_training = net.training
        net.eval()
        autocast = precision.autocast if precision is not None else contextlib.nullcontext
        layout = precision.tensor if precision is not None else (lambda t: t)
        try:
            total = 0.0
            for i in range(0, len(self.inputs), self.batch):
                x = layout(self.inputs[i:i + self.batch].to(device))
                with autocast():
                    out = net(x)
                out = out.float().clamp(0.0, 1.0).cpu()
                mse = ((out - self.targets[i:i + self.batch]) ** 2).flatten(1).mean(1)
                total += float((10 * torch.log10(1.0 / mse.clamp(min=1e-10))).sum())
            return total / len(self.inputs)
        finally:
            net.train(was_training)


def frame_crops(source, count: int, size: int, rng: np.random.Generator) -> list[torch.Tensor]:
    """``count`` crops of at most ``size`` px from frames spread over ``source`` (an ImageSource)."""
    n = len(source)
    picks = np.unique(np.linspace(0, n - 1, num=min(count, n)).round().astype(int))
    crops = []
    for k in range(count):
        frame = source.frame(int(picks[k % len(picks)]))
        _, h, w = frame.shape
        ch, cw = min(size, h), min(size, w)
        y = int(rng.integers(0, h - ch + 1))
        x = int(rng.integers(0, w - cw + 1))
        crops.append(torch.from_numpy(np.ascontiguousarray(frame[:, y:y + ch, x:x + cw])))
    return crops


#: photos bundled with scikit-image (no download) that no training recipe uses: the derain
#: recipe trains on its fallback photos (``recipes.derain.FALLBACK_CLEAN``), and a monitor scored
#: on the photos a run trains on rises as the run learns those photos, not the user's rain
MONITOR_PHOTOS = ("stereo_motorcycle",)


def monitor_photos() -> list[np.ndarray]:
    """The :data:`MONITOR_PHOTOS` (and the second view of the stereo pair) as float32 RGB in [0, 1]."""
    import skimage.data

    images = []
    for name in MONITOR_PHOTOS:
        data = getattr(skimage.data, name)()
        for im in (data[:2] if isinstance(data, tuple) else (data,)):
            im = np.asarray(im, dtype=np.float32) / 255.0
            if im.ndim == 2:
                im = np.repeat(im[..., None], 3, axis=-1)
            images.append(np.ascontiguousarray(im[..., :3]))
    return images


_PHOTOS: list[np.ndarray] | None = None


def photo_crops(count: int, size: tuple[int, int], channels: int, rng: np.random.Generator) -> list[torch.Tensor]:
    """``count`` random crops of :func:`monitor_photos` (grey when ``channels`` is 1)."""
    global _PHOTOS
    if _PHOTOS is None:
        _PHOTOS = monitor_photos()
    photos = _PHOTOS
    h, w = size
    crops = []
    for _ in range(count):
        im = photos[int(rng.integers(len(photos)))]
        ph, pw = im.shape[:2]
        if ph < h or pw < w:
            scale = max(h / ph, w / pw)
            t = torch.from_numpy(im).permute(2, 0, 1)[None]
            t = torch.nn.functional.interpolate(t, size=(math.ceil(ph * scale), math.ceil(pw * scale)),
                                                mode="bilinear", align_corners=False)[0]
            im = t.permute(1, 2, 0).numpy()
            ph, pw = im.shape[:2]
        y = int(rng.integers(0, ph - h + 1))
        x = int(rng.integers(0, pw - w + 1))
        c = torch.from_numpy(np.ascontiguousarray(im[y:y + h, x:x + w])).permute(2, 0, 1)
        if channels == 1:
            c = (c * torch.tensor([0.299, 0.587, 0.114])[:, None, None]).sum(0, keepdim=True)
        elif channels != 3:
            c = c.mean(0, keepdim=True).expand(channels, h, w).clone()
        crops.append(c)
    return crops
