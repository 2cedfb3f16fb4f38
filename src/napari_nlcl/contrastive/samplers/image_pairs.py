"""AECR-Net's image-level pairs: positive and negatives (plus batch negatives) for CR."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["ImagePairs", "image_level_pairs"]


class ImagePairs(NamedTuple):
    """Output of :func:`image_level_pairs` (unpacks as ``positive, negatives``)."""

    positive: Tensor
    negatives: Tensor


# --------------------------------------------------------------------------
# 5. AECR-Net image-level pairs
# --------------------------------------------------------------------------


def image_level_pairs(
    anchor: Tensor,
    positive: Tensor,
    negatives: Tensor,
    *,
    batch_negatives: bool = True,
) -> ImagePairs:
    """Positive and negatives for image-level contrastive regularisation.

    In AECR-Net's CR the anchor is the restored output, the positive the
    clear image and the negative the hazy input (features of each, at one
    encoder layer). With ``batch_negatives=True`` every element also uses the
    hazy inputs of the other batch elements as negatives.

    Parameters
    ----------
    anchor : Tensor
        ``(B, ...)`` features of the outputs (used for shape checks).
    positive : Tensor
        ``(B, ...)`` features of the clear images, same shape as ``anchor``.
    negatives : Tensor
        ``(B, ...)`` one negative per element, or ``(B, K, ...)`` ``K`` per
        element (a tensor shaped exactly like ``anchor`` is read as ``K=1``).
    batch_negatives : bool, optional
        Add the other elements' negatives.

    Returns
    -------
    ImagePairs
        ``positive`` (unchanged) and ``negatives`` of shape ``(B, K', ...)``:
        ``K' = K`` without batch negatives; with them ``K' = K * B``, ordered
        as element ``i``'s own ``K`` negatives first, then the ``K``
        negatives of every other element ``j != i`` in increasing ``j``.
        Differentiable (pure indexing).

    Raises
    ------
    ValueError
        If shapes disagree.

    Examples
    --------
    >>> import torch
    >>> out, clear, hazy = torch.randn(3, 8), torch.randn(3, 8), torch.randn(3, 8)
    >>> pos, neg = image_level_pairs(out, clear, hazy)
    >>> neg.shape, bool((neg[1, 0] == hazy[1]).all()), bool((neg[1, 1] == hazy[0]).all())
    (torch.Size([3, 3, 8]), True, True)
    """
    fn = "image_level_pairs"
    for name, t in (("anchor", anchor), ("positive", positive), ("negatives", negatives)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{fn}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if anchor.ndim < 1 or anchor.shape[0] < 1:
        raise ValueError(f"{fn}: anchor must have a non-empty batch axis, got shape "
                         f"{tuple(anchor.shape)}")
    if positive.shape != anchor.shape:
        raise ValueError(f"{fn}: positive must have the anchor's shape {tuple(anchor.shape)}, "
                         f"got {tuple(positive.shape)}")
    b = anchor.shape[0]
    if negatives.shape == anchor.shape:
        negs = negatives.unsqueeze(1)
    elif (negatives.ndim == anchor.ndim + 1 and negatives.shape[0] == b
          and negatives.shape[2:] == anchor.shape[1:]):
        negs = negatives
    else:
        raise ValueError(
            f"{fn}: negatives must have shape (B, ...) = {tuple(anchor.shape)} (one per element) "
            f"or (B, K, ...) = ({b}, K, {', '.join(map(str, anchor.shape[1:]))}), "
            f"got {tuple(negatives.shape)}"
        )
    if not bool(batch_negatives) or b == 1:
        return ImagePairs(positive, negs)
    kk = negs.shape[1]
    dev = negs.device
    ar = torch.arange(b, device=dev)
    others = ar.expand(b, b)[~torch.eye(b, dtype=torch.bool, device=dev)].reshape(b, b - 1)
    order = torch.cat([ar[:, None], others], dim=1)  # (B, B): own element first
    idx = (order[:, :, None] * kk + torch.arange(kk, device=dev)).reshape(b, b * kk)
    flat = negs.reshape(b * kk, *negs.shape[2:])
    return ImagePairs(positive, flat[idx])
