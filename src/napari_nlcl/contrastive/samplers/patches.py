"""Patch locations and gathering: CUT random locations, patches and patch vectors at coordinates."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ._checks import check_generator, check_in_range, check_index_tensor, check_int, check_maps

__all__ = ["extract_patches", "patch_embeddings", "sample_locations", "scale_coords"]


# --------------------------------------------------------------------------
# 1. CUT / PatchNCE random locations
# --------------------------------------------------------------------------


def sample_locations(
    feats: Tensor,
    num_patches: int = 256,
    *,
    generator: torch.Generator | None = None,
    ids: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Gather feature vectors at random spatial locations (CUT PatchNCE).

    Call it once on the query layer to draw the locations, then again with
    ``ids=`` on the key layer so that both gather the *same* positions: the
    vector at the same location is the positive, the other locations of the
    same image are the negatives. The locations are shared by all batch
    elements (as in CUT); every element gathers from its own map.

    Parameters
    ----------
    feats : Tensor
        ``(B, C, H, W)`` feature map.
    num_patches : int, optional
        Number of locations to draw. ``0`` or any value ``>= H * W`` takes
        all ``H * W`` locations in raster order (no randomness). Ignored when
        ``ids`` is given.
    generator : torch.Generator
        Source of randomness; required unless ``ids`` is given. Draws happen
        on the generator's device and the indices are moved to
        ``feats.device``.
    ids : Tensor, optional
        ``(N,)`` integer flat indices into ``H * W`` returned by an earlier
        call; reuses those locations.

    Returns
    -------
    patches : Tensor
        ``(B, N, C)`` feature vectors, differentiable w.r.t. ``feats``.
    ids : Tensor
        ``(N,)`` long flat indices (``y * W + x``) on ``feats.device``.

    Raises
    ------
    TypeError
        If ``feats`` or ``ids`` is not a tensor of the right kind, or no
        generator is given when one is needed.
    ValueError
        If ``feats`` is not 4-D, ``num_patches < 0``, or ``ids`` is not 1-D
        or points outside ``H * W``.

    Examples
    --------
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> q, k = torch.randn(2, 8, 16, 16), torch.randn(2, 8, 16, 16)
    >>> q_patches, ids = sample_locations(q, 64, generator=g)
    >>> k_patches, _ = sample_locations(k, ids=ids)
    >>> q_patches.shape, k_patches.shape, ids.shape
    (torch.Size([2, 64, 8]), torch.Size([2, 64, 8]), torch.Size([64]))
    """
    fn = "sample_locations"
    check_maps(feats, "feats", fn)
    h, w = feats.shape[-2:]
    hw = h * w
    if ids is None:
        n = check_int(num_patches, "num_patches", fn, minimum=0)
        gen = check_generator(generator, fn, " to draw locations, or ids= from the query layer")
        if n == 0 or n >= hw:
            ids = torch.arange(hw, device=feats.device)
        else:
            ids = torch.randperm(hw, generator=gen, device=gen.device)[:n].to(feats.device)
    else:
        check_index_tensor(ids, "ids", fn, "of shape (N,)")
        if ids.ndim != 1:
            raise ValueError(f"{fn}: ids must have shape (N,) (as returned by a previous call), "
                             f"got shape {tuple(ids.shape)}")
        ids = ids.to(device=feats.device, dtype=torch.long)
        if ids.numel() and (bool((ids < 0).any()) or bool((ids >= hw).any())):
            raise ValueError(
                f"{fn}: ids must lie in [0, H * W) = [0, {hw}) for this {h}x{w} map, got min "
                f"{int(ids.min())} and max {int(ids.max())}; ids drawn on a layer of another "
                "size cannot be reused here"
            )
    patches = feats.flatten(2).index_select(2, ids).transpose(1, 2).contiguous()
    return patches, ids


# --------------------------------------------------------------------------
# 4. gathering patches at coordinates
# --------------------------------------------------------------------------


def _check_coords(coords: Any, fn: str, batch: int, name: str = "coords") -> Tensor:
    check_index_tensor(coords, name, fn, "of shape (B, M, 2)")
    if coords.ndim != 3 or coords.shape[-1] != 2 or coords.shape[0] != batch:
        raise ValueError(
            f"{fn}: {name} must have shape (B, M, 2) = ({batch}, M, 2) with top-left (y, x) per "
            f"patch, got shape {tuple(coords.shape)}; for one patch per element use {name}[:, None]"
        )
    return coords


def extract_patches(feats: Tensor, coords: Tensor, patch: int) -> Tensor:
    """Gather ``patch x patch`` patches at top-left coordinates.

    Parameters
    ----------
    feats : Tensor
        ``(B, C, H, W)`` feature map.
    coords : Tensor
        ``(B, M, 2)`` integer top-left ``(y, x)``; each element reads its own
        map. Coordinates from another resolution: see :func:`scale_coords`.
    patch : int
        Patch side in pixels of ``feats``.

    Returns
    -------
    Tensor
        ``(B, M, C, patch, patch)``, differentiable w.r.t. ``feats``.

    Raises
    ------
    ValueError
        If shapes disagree or a patch does not fit inside the map.
    TypeError
        If ``coords`` is not an integer tensor.

    Examples
    --------
    >>> import torch
    >>> x = torch.arange(16.).reshape(1, 1, 4, 4)
    >>> extract_patches(x, torch.tensor([[[1, 2]]]), 2)[0, 0, 0]
    tensor([[ 6.,  7.],
            [10., 11.]])
    """
    fn = "extract_patches"
    check_maps(feats, "feats", fn)
    patch = check_int(patch, "patch", fn, minimum=1)
    b, c, h, w = feats.shape
    _check_coords(coords, fn, b)
    if patch > h or patch > w:
        raise ValueError(f"{fn}: patch ({patch}) is larger than the {h}x{w} map; "
                         "scale it with the map (see scale_coords)")
    coords = coords.to(device=feats.device, dtype=torch.long)
    check_in_range(coords, h - patch, w - patch, fn, "coords",
                    "; coordinates from a larger image? map them with scale_coords")
    m = coords.shape[1]
    r = torch.arange(patch, device=feats.device)
    ys = coords[..., 0, None, None] + r[:, None]  # (B, M, p, 1)
    xs = coords[..., 1, None, None] + r[None, :]  # (B, M, 1, p)
    flat = (ys * w + xs).reshape(b, 1, m * patch * patch).expand(b, c, -1)
    out = feats.flatten(2).gather(2, flat)  # (B, C, M*p*p)
    return out.reshape(b, c, m, patch, patch).permute(0, 2, 1, 3, 4)


def patch_embeddings(feats: Tensor, coords: Tensor, patch: int) -> Tensor:
    """Mean-pooled patch vectors at top-left coordinates (what losses consume).

    Parameters
    ----------
    feats : Tensor
        ``(B, C, H, W)`` floating point feature map.
    coords : Tensor
        ``(B, M, 2)`` integer top-left ``(y, x)``.
    patch : int
        Patch side in pixels of ``feats`` (``1`` reads single locations).

    Returns
    -------
    Tensor
        ``(B, M, C)`` = ``extract_patches(feats, coords, patch).mean((-2, -1))``,
        differentiable w.r.t. ``feats``.

    Examples
    --------
    >>> import torch
    >>> x = torch.arange(16.).reshape(1, 1, 4, 4)
    >>> patch_embeddings(x, torch.tensor([[[0, 0], [2, 2]]]), 2)
    tensor([[[ 2.5000],
             [12.5000]]])
    """
    fn = "patch_embeddings"
    check_maps(feats, "feats", fn, floating=True)
    return extract_patches(feats, coords, patch).mean(dim=(-2, -1))


def _check_hw(hw: Any, name: str, fn: str) -> tuple[int, int]:
    if not isinstance(hw, Sequence) or len(hw) != 2:
        raise TypeError(f"{fn}: {name} must be a (height, width) pair, got {hw!r}")
    return (check_int(hw[0], f"{name}[0]", fn, minimum=1),
            check_int(hw[1], f"{name}[1]", fn, minimum=1))


def scale_coords(
    coords: Tensor,
    from_hw: tuple[int, int],
    to_hw: tuple[int, int],
    *,
    patch: int | None = None,
) -> Tensor:
    """Map top-left coordinates from one resolution to another.

    ``y' = floor(y * to_h / from_h)`` and ``x' = floor(x * to_w / from_w)``
    in exact integer arithmetic. The matching patch size at the target
    resolution is about ``round(patch * to_h / from_h)`` (at least 1).

    Parameters
    ----------
    coords : Tensor
        ``(..., 2)`` integer ``(y, x)`` at resolution ``from_hw``.
    from_hw, to_hw : tuple of int
        ``(H, W)`` of the source and target maps.
    patch : int, optional
        Patch side at the target resolution; when given, the result is
        clamped to ``[0, to_h - patch] x [0, to_w - patch]`` so that the
        patch fits (non-integer ratios can otherwise push it over the edge).

    Returns
    -------
    Tensor
        Long tensor of the same shape, on ``coords.device``.

    Examples
    --------
    >>> import torch
    >>> scale_coords(torch.tensor([[[12, 63]]]), (64, 64), (16, 16))
    tensor([[[ 3, 15]]])
    >>> scale_coords(torch.tensor([[[12, 63]]]), (64, 64), (16, 16), patch=4)
    tensor([[[ 3, 12]]])
    """
    fn = "scale_coords"
    check_index_tensor(coords, "coords", fn, "of shape (..., 2)")
    if coords.ndim < 1 or coords.shape[-1] != 2:
        raise ValueError(f"{fn}: coords must have a last axis of size 2 holding (y, x), "
                         f"got shape {tuple(coords.shape)}")
    fh, fw = _check_hw(from_hw, "from_hw", fn)
    th, tw = _check_hw(to_hw, "to_hw", fn)
    c = coords.long()
    y = torch.div(c[..., 0] * th, fh, rounding_mode="floor")
    x = torch.div(c[..., 1] * tw, fw, rounding_mode="floor")
    if patch is not None:
        patch = check_int(patch, "patch", fn, minimum=1)
        if patch > th or patch > tw:
            raise ValueError(f"{fn}: patch ({patch}) does not fit in the target {th}x{tw} map")
        y = y.clamp(0, th - patch)
        x = x.clamp(0, tw - patch)
    return torch.stack([y, x], dim=-1)
