"""Adversarial terms of the recipes: the least-squares GAN loss."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._common import check_tensor, shape_of

__all__ = ["LSGANLoss", "lsgan_loss"]


# --------------------------------------------------------------------------- LSGAN
def lsgan_loss(pred: Tensor | Sequence[Tensor], target_is_real: bool) -> Tensor:
    r"""Least-squares GAN loss (Mao et al. 2017): ``mean((pred - c)^2)``, ``c = 1`` or ``0``.

    Parameters
    ----------
    pred : Tensor or sequence of Tensor
        Discriminator output(s) of any shape; for a list (multi-scale
        discriminators) the mean of the per-output losses.
    target_is_real : bool
        ``True``: target 1 (real, or the generator's term); ``False``: target 0.

    Returns
    -------
    Tensor
        Scalar.

    Examples
    --------
    >>> float(lsgan_loss(torch.zeros(2, 1, 4, 4), True))
    1.0
    """
    fn = "lsgan_loss"
    if not isinstance(target_is_real, bool):
        raise TypeError(f"{fn}: target_is_real must be a bool, got {type(target_is_real).__name__}")
    if isinstance(pred, Tensor):
        preds = [pred]
    elif isinstance(pred, Sequence) and len(pred) > 0:
        preds = list(pred)
    else:
        raise TypeError(f"{fn}: pred must be a tensor or a non-empty list of tensors")
    losses = []
    for i, p in enumerate(preds):
        check_tensor(p, f"pred[{i}]", fn)
        if p.numel() == 0:
            raise ValueError(f"{fn}: pred[{i}] is empty, shape {shape_of(p)}")
        target = torch.ones_like(p) if target_is_real else torch.zeros_like(p)
        losses.append(F.mse_loss(p, target))
    return losses[0] if len(losses) == 1 else torch.stack(losses).mean()


class LSGANLoss(nn.Module):
    """Module form of :func:`lsgan_loss`; ``forward(pred, target_is_real)``."""

    def forward(self, pred: Tensor | Sequence[Tensor], target_is_real: bool) -> Tensor:
        return lsgan_loss(pred, target_is_real)
