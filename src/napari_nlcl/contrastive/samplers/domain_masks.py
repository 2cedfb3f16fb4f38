"""DCoDR's domain-wise negatives (and the cross-domain ablation) as boolean masks."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ._checks import check_positive_index

__all__ = ["cross_domain_negative_mask", "domain_negative_mask"]


# --------------------------------------------------------------------------
# 6. DCoDR domain-wise negatives
# --------------------------------------------------------------------------


def _check_labels(t: Any, name: str, fn: str) -> Tensor:
    if not isinstance(t, Tensor):
        raise TypeError(f"{fn}: {name} must be a 1-D integer torch.Tensor of shape (N,), "
                        f"got {type(t).__name__}")
    if t.is_floating_point() or t.is_complex():
        raise TypeError(f"{fn}: {name} must have an integer or bool dtype, got {t.dtype}; "
                        f"pass {name}.long()")
    if t.ndim != 1:
        raise ValueError(f"{fn}: {name} must have shape (N,), got shape {tuple(t.shape)}; "
                         f"flatten it with {name}.reshape(-1)")
    return t


def _finish_mask(mask: Tensor, positive_index: Tensor | None, fn: str) -> Tensor:
    n = mask.shape[0]
    ar = torch.arange(n, device=mask.device)
    mask[ar, ar] = False
    if positive_index is not None:
        pos = check_positive_index(positive_index, ar, n, fn)
        mask[ar, pos] = False
    return mask


def domain_negative_mask(domains: Tensor, *, positive_index: Tensor | None = None) -> Tensor:
    """Negatives drawn only from the anchor's own domain (DCoDR).

    Kahana & Hoshen (ECCV 2022) take the negatives of an anchor only from
    images of the same domain, so that the contrastive loss cannot be lowered
    by encoding the domain, and the features become domain invariant.

    Parameters
    ----------
    domains : Tensor
        ``(N,)`` integer (or bool) domain label of each embedding.
    positive_index : Tensor, optional
        ``(N,)`` column of each row's positive (e.g. its other augmented
        view), which is never a negative.

    Returns
    -------
    Tensor
        ``(N, N)`` bool, True where ``j`` is a valid negative for anchor
        ``i``: same domain, ``j != i`` and ``j != positive_index[i]``.

    Examples
    --------
    >>> import torch
    >>> domain_negative_mask(torch.tensor([0, 0, 1]))
    tensor([[False,  True, False],
            [ True, False, False],
            [False, False, False]])
    """
    fn = "domain_negative_mask"
    d = _check_labels(domains, "domains", fn)
    return _finish_mask(d[:, None] == d[None, :], positive_index, fn)


def cross_domain_negative_mask(domains: Tensor, *, positive_index: Tensor | None = None) -> Tensor:
    """Negatives drawn only from *other* domains (ablation of DCoDR).

    Parameters
    ----------
    domains : Tensor
        ``(N,)`` integer (or bool) domain labels.
    positive_index : Tensor, optional
        ``(N,)`` column of each row's positive, never a negative.

    Returns
    -------
    Tensor
        ``(N, N)`` bool, True where ``domains[j] != domains[i]`` (and ``j`` is
        not the positive).

    Examples
    --------
    >>> import torch
    >>> cross_domain_negative_mask(torch.tensor([0, 0, 1]))
    tensor([[False, False,  True],
            [False, False,  True],
            [ True,  True, False]])
    """
    fn = "cross_domain_negative_mask"
    d = _check_labels(domains, "domains", fn)
    return _finish_mask(d[:, None] != d[None, :], positive_index, fn)
