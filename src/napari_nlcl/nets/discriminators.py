"""Discriminators: the networks that judge generators' outputs while they train.

Only the training recipes build them; applying a model never needs one.
:class:`PatchDiscriminator` is the LSGAN PatchGAN (Isola et al. 2017): the
derain recipe's judges backgrounds against clean images, and its early layers
also provide the features of NLCL's layer contrast; :func:`discriminator` sizes
CUT's (the 70x70 PatchGAN of pix2pix/CUT) for a translation preset.
"""

from __future__ import annotations

import torch
from torch import nn

#: discriminator width per translation generator preset (:data:`napari_nlcl.nets.translate.PRESETS`)
DISC_NDF = {"full": 64, "light": 32}


class PatchDiscriminator(nn.Module):
    """PatchGAN (Isola et al. 2017): 4x4 convs, ``n_layers`` stride-2 stages, LSGAN logits map.

    ``contrast_layers()`` names the modules whose outputs feed NLCL's layer contrast.
    """

    def __init__(self, in_channels: int = 3, ndf: int = 32, n_layers: int = 3):
        super().__init__()
        seq: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2 ** n, 8)
            stride = 2 if n < n_layers else 1
            seq += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=stride, padding=1),
                    nn.InstanceNorm2d(ndf * mult), nn.LeakyReLU(0.2)]
        seq += [nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1)]
        self.model = nn.Sequential(*seq)
        self.in_channels = in_channels
        self.ndf = ndf

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x * 2.0 - 1.0)

    def contrast_layers(self) -> tuple[tuple[str, int, int], ...]:
        """``(name, channels, down-sampling factor)`` of the raw input and the first two stages."""
        return (("input", self.in_channels, 1), ("model.1", self.ndf, 2), ("model.4", 2 * self.ndf, 4))


def discriminator(preset_name: str, in_channels: int, ndf: int | None = None) -> PatchDiscriminator:
    """CUT's PatchGAN (3 stride-2 layers, LSGAN) sized for translation preset ``preset_name``."""
    return PatchDiscriminator(in_channels, ndf or DISC_NDF[preset_name], n_layers=3)


__all__ = ["DISC_NDF", "PatchDiscriminator", "discriminator"]
