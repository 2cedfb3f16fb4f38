"""Building blocks of AECR-Net (:mod:`napari_nlcl.nets.aecr`).

* :class:`FABlock`, the feature-attention block of FFA-Net, with its
  :class:`ChannelAttention` (over a local window, :func:`local_mean`, or the
  whole image) and :class:`PixelAttention`;
* :class:`Mixup`, the adaptive mixup of a skip and the up-sampled features,
  and :func:`upsampler`, the decoder's x2 up-sampling;
* :class:`AirlightNet`, the physics output's global branch that estimates the
  airlight from a :func:`thumbnail` of the whole image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from napari_nlcl.classical.dcp import dark_channel, estimate_airlight


def local_mean(x: torch.Tensor, window: int) -> torch.Tensor:
    """Mean over a ``window`` x ``window`` neighbourhood (same size, borders averaged over what exists)."""
    if window <= 1:
        return x
    p = window // 2
    x = F.avg_pool2d(x, (window, 1), stride=1, padding=(p, 0), count_include_pad=False)
    return F.avg_pool2d(x, (1, window), stride=1, padding=(0, p), count_include_pad=False)


class ChannelAttention(nn.Module):
    def __init__(self, channels: int, pool: int, reduction: int = 8):
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.pool = pool
        self.fc = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True),
                                nn.Conv2d(hidden, channels, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stats = x.mean((2, 3), keepdim=True) if self.pool == 0 else local_mean(x, self.pool)
        return x * self.fc(stats)


class PixelAttention(nn.Module):
    def __init__(self, channels: int, reduction: int = 8):
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.fc = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True),
                                nn.Conv2d(hidden, 1, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.fc(x)


class FABlock(nn.Module):
    """Feature-attention block: conv, ReLU, local skip, conv, channel and pixel attention, skip."""

    def __init__(self, channels: int, pool: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.ca = ChannelAttention(channels, pool)
        self.pa = PixelAttention(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = F.relu(self.conv1(x)) + x
        r = self.pa(self.ca(self.conv2(r)))
        return r + x


class Mixup(nn.Module):
    """Adaptive mixup ``sigmoid(w) * skip + (1 - sigmoid(w)) * up`` (one learned scalar)."""

    def __init__(self, init: float):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(float(init)))

    @property
    def factor(self) -> torch.Tensor:
        return torch.sigmoid(self.w)

    def forward(self, skip: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        f = self.factor
        return f * skip + (1.0 - f) * up


def upsampler(cin: int, cout: int, mode: str) -> nn.Module:
    """x2 up-sampling.  Stride-2 transposed 3x3 convs (the paper) overlap unevenly and
    print a 2-px checkerboard on flat regions such as skies; bilinear resizing
    followed by a 3x3 conv does not (Odena et al., Distill 2016)."""
    if mode == "transpose":
        return nn.Sequential(nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1),
                             nn.ReLU(inplace=True))
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                         nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True))


def thumbnail(x: torch.Tensor, size: int) -> torch.Tensor:
    """Area-downsampled copy whose short side is ``size`` px (unchanged if already smaller)."""
    h, w = x.shape[-2:]
    s = size / min(h, w)
    if s >= 1.0:
        return x
    return F.adaptive_avg_pool2d(x, (max(1, round(h * s)), max(1, round(w * s))))


class AirlightNet(nn.Module):
    """Global atmospheric light ``A`` (B, C) from a thumbnail of the whole image.

    The Dark Channel Prior's estimate (mean colour of the haziest 0.5 % of
    the thumbnail) is the starting point; a small CNN with global mean and
    max pooling, fed also with the image's mean and brightest colours, learns
    a bounded correction (``+-0.5``; zero at initialisation).  Whole-image
    statistics are what tell airlight apart from a bright object, which is why
    the engine calls :meth:`AECRNet.estimate_globals` on the whole plane and
    gives the result to every tile.
    """

    def __init__(self, channels: int, size: int = 64, width: int = 32):
        super().__init__()
        self.size = int(size)
        self.features = nn.Sequential(
            nn.Conv2d(channels, 16, 3, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(32, width, 3, padding=1), nn.ReLU(inplace=True),
        )
        self.fc = nn.Sequential(nn.Linear(2 * width + 3 * channels, 64), nn.ReLU(inplace=True),
                                nn.Linear(64, channels))
        nn.init.zeros_(self.fc[2].weight)
        nn.init.zeros_(self.fc[2].bias)

    @staticmethod
    def prior(x: torch.Tensor, top: float = 0.005) -> torch.Tensor:
        """Mean colour of the ``top`` fraction of pixels with the brightest 3x3 dark channel."""
        return estimate_airlight(x, dark_channel(x, 3), top)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        th = thumbnail(x, self.size)
        prior = self.prior(th)
        f = self.features(th)
        stats = torch.cat([f.mean((2, 3)), f.amax((2, 3)), prior, th.mean((2, 3)), th.amax((2, 3))], 1)
        return (prior + 0.5 * torch.tanh(self.fc(stats))).clamp(0.05, 1.0)

    def flops(self, channels: int) -> float:
        """FLOPs for one thumbnail of ``size`` x ``size`` px (a constant per image)."""
        a = self.size * self.size
        return 2 * 9 * (channels * 16 * a / 4 + 16 * 32 * a / 16 + 32 * self.features[4].out_channels * a / 16)



__all__ = ["AirlightNet", "ChannelAttention", "FABlock", "Mixup", "PixelAttention", "local_mean", "thumbnail",
           "upsampler"]
