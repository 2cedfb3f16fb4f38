"""Building blocks of the NLCL generators (:mod:`napari_nlcl.nets.derain`).

:class:`ResBlock` is the generators' residual block (two 3x3 convs, no
normalisation, so tiles equal the whole image); :class:`VeilNet` is the
optional whole-image branch that estimates a smooth rain veil from a thumbnail.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ResBlock(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.leaky_relu(self.conv1(x), 0.2))


def res_blocks(c: int, n: int) -> nn.Sequential:
    """``n`` :class:`ResBlock` s of ``c`` channels in a row."""
    return nn.Sequential(*[ResBlock(c) for _ in range(n)])


class VeilNet(nn.Module):
    """A smooth rain veil ``(B, 1, H, W)`` (light added by rain accumulation) from the whole image.

    A veil cannot be told from a bright surface by a local window: what gives
    it away is how the dark channel and the contrast change across the whole
    scene (a veil thickening towards one side over the same grass, say).  So
    the veil is estimated on an area-downsampled thumbnail (short side
    ``size``) of the whole plane, with its dark channel and the pixel
    coordinates as extra inputs: an encoder to 1/8 of the thumbnail with
    global mean-pooled context, a decoder back to the thumbnail, and a
    bilinear resize to the image.  The output is grey (rain is white light),
    in [0, ``max_veil``] (a softplus), and starts near zero.  The engine calls
    :meth:`DerainNet.estimate_globals` on the whole plane, so every tile
    subtracts the same veil.
    """

    def __init__(self, channels: int, size: int = 96, width: int = 32, max_veil: float = 0.7):
        super().__init__()
        self.size, self.max_veil = int(size), float(max_veil)
        c_in = channels + 4  # colours, min over colours, dark channel, y, x
        w = width
        self.enc = nn.ModuleList([
            nn.Conv2d(c_in, w, 3, padding=1),
            nn.Conv2d(w, w, 3, stride=2, padding=1),
            nn.Conv2d(w, 2 * w, 3, stride=2, padding=1),
            nn.Conv2d(2 * w, 2 * w, 3, stride=2, padding=1),
        ])
        self.context = nn.Linear(2 * w, 2 * w)
        self.dec = nn.ModuleList([
            nn.Conv2d(4 * w, 2 * w, 3, padding=1),
            nn.Conv2d(2 * w + 2 * w, w, 3, padding=1),
            nn.Conv2d(w + w, w, 3, padding=1),
            nn.Conv2d(w + w, w, 3, padding=1),
        ])
        self.out = nn.Conv2d(w, 1, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.constant_(self.out.bias, -0.1)  # softplus(20 x -0.1) / 20 = 0.006: almost no veil at first

    def thumbnail_veil(self, th: torch.Tensor) -> torch.Tensor:
        """Veil at the thumbnail's resolution from the thumbnail ``(B, C, h, w)``."""
        from napari_nlcl.classical.filters import min_filter

        b, _, h, w = th.shape
        m = th.amin(1, keepdim=True)
        ys = torch.linspace(-1, 1, h, device=th.device, dtype=th.dtype).view(1, 1, h, 1).expand(b, 1, h, w)
        xs = torch.linspace(-1, 1, w, device=th.device, dtype=th.dtype).view(1, 1, 1, w).expand(b, 1, h, w)
        f = torch.cat([th * 2 - 1, m * 2 - 1, min_filter(m, 5) * 2 - 1, ys, xs], 1)
        skips = []
        for conv in self.enc:
            f = F.leaky_relu(conv(f), 0.2)
            skips.append(f)
        g = F.leaky_relu(self.context(f.mean((2, 3))), 0.2)[:, :, None, None].expand_as(f)
        f = F.leaky_relu(self.dec[0](torch.cat([f, g], 1)), 0.2)
        for conv, skip in zip(self.dec[1:], reversed(skips[:-1])):
            f = F.interpolate(f, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            f = F.leaky_relu(conv(torch.cat([f, skip], 1)), 0.2)
        # a softplus, not a sigmoid: no flat region in which the branch could stop learning
        return F.softplus(self.out(f), beta=20.0).clamp(max=self.max_veil)

    def thumbnail_size(self, h: int, w: int) -> tuple[int, int]:
        """The thumbnail a ``h x w`` image is estimated on (short side ``size``, at least 8 px)."""
        scale = min(1.0, self.size / min(h, w))
        return max(8, round(h * scale)), max(8, round(w * scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        size = self.thumbnail_size(h, w)
        th = F.adaptive_avg_pool2d(x, size) if self.size < min(h, w) else F.interpolate(
            x, size=size, mode="bilinear", align_corners=False)
        v = self.thumbnail_veil(th)
        return F.interpolate(v, size=(h, w), mode="bilinear", align_corners=False)


__all__ = ["ResBlock", "VeilNet", "res_blocks"]
