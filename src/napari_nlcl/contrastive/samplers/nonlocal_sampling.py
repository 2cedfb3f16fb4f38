"""NLCL non-local sampling: self-similar positives, reverse non-local (least similar) patches."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ._checks import check_generator, check_in_range, check_index_tensor, check_int, check_maps

__all__ = ["NonLocalSample", "nonlocal_positives", "reverse_nonlocal"]


@dataclass(frozen=True)
class NonLocalSample:
    """Patches chosen around one anchor patch per batch element.

    All coordinates are top-left ``(y, x)`` at the guide's resolution, as
    ``torch.long`` tensors on the guide's device.

    Attributes
    ----------
    anchor : Tensor
        ``(B, 2)`` the anchor (centre) patch of each batch element.
    positives : Tensor
        ``(B, k, 2)`` most similar patches, nearest first
        (:func:`nonlocal_positives`); ``(B, 0, 2)`` for
        :func:`reverse_nonlocal`.
    negatives : Tensor
        ``(B, n, 2)``: for :func:`nonlocal_positives` the next most similar
        patches after the positives (nearest first); for
        :func:`reverse_nonlocal` the ``k`` least similar patches (least
        similar first).
    distances : Tensor
        ``(B, k)`` L2 distance between each positive and the anchor on the
        guide (detached).
    negative_distances : Tensor
        ``(B, n)`` the same for the negatives.
    patch : int
        Patch size in pixels (at the guide's resolution).
    """

    anchor: Tensor
    positives: Tensor
    negatives: Tensor
    distances: Tensor
    negative_distances: Tensor
    patch: int

    @property
    def coords(self) -> Tensor:
        """``(B, 1 + k + n, 2)``: anchor, positives, negatives in one tensor
        (for one :func:`patch_embeddings` call)."""
        return torch.cat([self.anchor[:, None], self.positives, self.negatives], dim=1)


# --------------------------------------------------------------------------
# 2./3. NLCL non-local (self-similar) and reverse non-local sampling
# --------------------------------------------------------------------------


def _grid_size(h: int, w: int, patch: int, window: int, stride: int) -> tuple[int, int, int, int]:
    """Window extent (clipped to the image) and candidate grid size."""
    wy, wx = min(window, h), min(window, w)
    return wy, wx, (wy - patch) // stride + 1, (wx - patch) // stride + 1


def _smallest_window(h: int, w: int, patch: int, stride: int, need: int) -> int | None:
    for win in range(patch, max(h, w) + 1):
        _, _, ny, nx = _grid_size(h, w, patch, win, stride)
        if ny * nx - 1 >= need:
            return win
    return None


def _nonlocal_search(
    guide: Tensor,
    *,
    patch: int,
    window: int,
    stride: int,
    count: int,
    generator: torch.Generator | None,
    centers: Tensor | None,
    least_similar: bool,
    fn: str,
    count_doc: str,
) -> tuple[Tensor, Tensor, Tensor]:
    """Shared engine of :func:`nonlocal_positives` and :func:`reverse_nonlocal`.

    Returns ``anchor (B, 2)``, ``coords (B, count, 2)`` and ``dist (B, count)``
    sorted by similarity (most similar first, or least similar first).
    """
    check_maps(guide, "guide", fn, floating=True)
    patch = check_int(patch, "patch", fn, minimum=1)
    window = check_int(window, "window", fn, minimum=1)
    stride = check_int(stride, "stride", fn, minimum=1)
    _, _, h, w = guide.shape
    if h < patch or w < patch:
        raise ValueError(f"{fn}: the guide ({h}x{w}) is smaller than one {patch}x{patch} patch; "
                         "pass a smaller patch or a larger image")
    if window < patch:
        raise ValueError(f"{fn}: window ({window}) must be >= patch ({patch}) so that the search "
                         "window holds whole patches")
    wy, wx, ny, nx = _grid_size(h, w, patch, window, stride)
    available = ny * nx - 1  # one grid point may be the anchor itself
    if count > available:
        smallest = _smallest_window(h, w, patch, stride, count)
        fix = (f"use window >= {smallest}" if smallest is not None
               else f"the {h}x{w} image is too small for that many; use a larger image")
        raise ValueError(
            f"{fn}: the {wy}x{wx} search window (window={window} clipped to the {h}x{w} image) "
            f"holds {ny}x{nx} = {ny * nx} candidate {patch}x{patch} patches at stride {stride}, "
            f"one of which may be the anchor, but {count_doc} = {count} are needed; {fix}, "
            "a smaller stride, or ask for fewer patches"
        )
    device = guide.device
    anchor = _anchors(guide, patch, generator, centers, fn)

    # Window: window x window px centred on the anchor patch, shifted (not
    # shrunk) to lie inside the image; the whole axis if the image is smaller.
    y0 = (anchor[:, 0] + patch // 2 - window // 2).clamp(0, h - wy)
    x0 = (anchor[:, 1] + patch // 2 - window // 2).clamp(0, w - wx)
    origin = torch.stack([y0, x0], dim=1)  # (B, 2)
    gy = torch.arange(ny, device=device) * stride
    gx = torch.arange(nx, device=device) * stride
    offsets = torch.stack(torch.meshgrid(gy, gx, indexing="ij"), dim=-1).reshape(-1, 2)
    cand = origin[:, None, :] + offsets[None]  # (B, L, 2), raster order like F.unfold
    coords, picked = _rank_candidates(
        guide, anchor, origin, cand, window=(wy, wx), patch=patch, stride=stride, count=count,
        least_similar=least_similar,
    )
    return anchor, coords, picked


def _anchors(
    guide: Tensor,
    patch: int,
    generator: torch.Generator | None,
    centers: Tensor | None,
    fn: str,
) -> Tensor:
    """``(B, 2)`` top-left anchor patches: drawn from ``generator``, or the checked ``centers``."""
    b, _, h, w = guide.shape
    device = guide.device
    if centers is None:
        gen = check_generator(generator, fn, " to draw the anchor patches, or centers=")
        ay = torch.randint(h - patch + 1, (b,), generator=gen, device=gen.device)
        ax = torch.randint(w - patch + 1, (b,), generator=gen, device=gen.device)
        anchor = torch.stack([ay, ax], dim=1).to(device)
    else:
        check_index_tensor(centers, "centers", fn, "of shape (B, 2)")
        if centers.shape != (b, 2):
            raise ValueError(f"{fn}: centers must have shape (B, 2) = ({b}, 2), the top-left "
                             f"(y, x) of one anchor patch per element, got {tuple(centers.shape)}")
        anchor = centers.to(device=device, dtype=torch.long)
        check_in_range(anchor[:, None], h - patch, w - patch, fn, "centers", "")
    return anchor


def _rank_candidates(
    guide: Tensor,
    anchor: Tensor,
    origin: Tensor,
    cand: Tensor,
    *,
    window: tuple[int, int],
    patch: int,
    stride: int,
    count: int,
    least_similar: bool,
) -> tuple[Tensor, Tensor]:
    """The ``count`` candidates nearest to (or farthest from) each anchor on ``guide``.

    ``origin (B, 2)`` is the top-left of each element's search window of
    size ``window = (wy, wx)``, ``cand (B, L, 2)`` its candidate grid in
    raster order.  Returns ``coords (B, count, 2)`` and their L2 distances
    ``(B, count)`` to the anchor, sorted (ties in raster order).
    """
    wy, wx = window
    work = guide.dtype if guide.element_size() >= 4 else torch.float32
    rows = []
    with torch.no_grad():
        g = guide.detach()
        for i, ((oy, ox), (py, px)) in enumerate(zip(origin.tolist(), anchor.tolist())):
            crop = g[i : i + 1, :, oy : oy + wy, ox : ox + wx].to(work)
            cols = F.unfold(crop, kernel_size=patch, stride=stride)[0]  # (C*p*p, L)
            ref = g[i, :, py : py + patch, px : px + patch].to(work).reshape(-1, 1)
            rows.append((cols - ref).square().sum(0).sqrt())
        dist = torch.stack(rows)  # (B, L)
        is_anchor = (cand == anchor[:, None, :]).all(-1)
        key = -dist if least_similar else dist
        key = key.masked_fill(is_anchor, float("inf"))
        order = torch.sort(key, dim=1, stable=True).indices[:, :count]
        coords = cand.gather(1, order[..., None].expand(-1, -1, 2))
        picked = dist.gather(1, order)
    return coords, picked


def nonlocal_positives(
    guide: Tensor,
    *,
    patch: int = 16,
    window: int = 40,
    k: int = 8,
    num_negatives: int = 128,
    stride: int = 1,
    generator: torch.Generator | None = None,
    centers: Tensor | None = None,
) -> NonLocalSample:
    """NLCL non-local self-similar sampling around a random anchor patch.

    For each batch element an anchor patch is drawn (or taken from
    ``centers``); every ``patch x patch`` candidate in a ``window x window``
    search window around it is compared with the anchor by L2 distance on
    ``guide``, using that element's own image. The ``k`` nearest candidates
    (the anchor itself excluded) are the positives; the next
    ``num_negatives`` are returned as ``negatives`` -- the self-similar set
    that NLCL uses as negatives when the same coordinates are read from the
    *other* layer (rain vs. background).

    Parameters
    ----------
    guide : Tensor
        ``(B, C, H, W)`` floating point image or early features on which
        similarity is measured (half precision is compared in float32).
    patch : int, optional
        Patch side in pixels.
    window : int, optional
        Side of the search window in pixels. The window is centred on the
        anchor patch and *shifted* (not shrunk) to lie inside the image, so
        every element has the same number of candidates; an image smaller
        than the window along an axis is searched whole along that axis.
    k : int, optional
        Number of positives (``>= 1``).
    num_negatives : int, optional
        Number of next-most-similar patches after the positives (``>= 0``).
    stride : int, optional
        Step of the candidate grid, which starts at the window's top-left
        corner. ``1`` (default) compares every position; the default sizes
        give ``25 x 25 = 625`` candidates, cheap to compare.
    generator : torch.Generator
        Source of randomness for the anchors; required unless ``centers`` is
        given.
    centers : Tensor, optional
        ``(B, 2)`` integer top-left ``(y, x)`` of the anchor patches.

    Returns
    -------
    NonLocalSample
        ``anchor (B, 2)``, ``positives (B, k, 2)`` nearest first,
        ``negatives (B, num_negatives, 2)``, ``distances (B, k)``,
        ``negative_distances (B, num_negatives)``, ``patch``.

    Raises
    ------
    ValueError
        If the window holds fewer than ``k + num_negatives + 1`` candidate
        patches (the message gives the smallest window that works), if the
        image is smaller than a patch, or on bad shapes. Counts are never
        clamped silently.
    TypeError
        On non-tensor inputs, integer guides, float ``centers`` or a missing
        generator.

    Notes
    -----
    Ties (e.g. exact copies in a periodic texture) are broken in raster order
    of the candidate grid. The anchor is excluded by position only, so
    candidates overlapping it (shifted by a few pixels) can be positives,
    as in NLCL. Memory is ``C * patch**2 * (#candidates)`` per batch element
    (elements are processed one at a time).

    Examples
    --------
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> img = torch.rand(2, 3, 64, 64)
    >>> s = nonlocal_positives(img, k=8, num_negatives=32, generator=g)
    >>> s.anchor.shape, s.positives.shape, s.negatives.shape, s.distances.shape
    (torch.Size([2, 2]), torch.Size([2, 8, 2]), torch.Size([2, 32, 2]), torch.Size([2, 8]))
    >>> from napari_nlcl.contrastive.samplers import patch_embeddings
    >>> patch_embeddings(img, s.positives, s.patch).shape
    torch.Size([2, 8, 3])
    """
    fn = "nonlocal_positives"
    k = check_int(k, "k", fn, minimum=1)
    num_negatives = check_int(num_negatives, "num_negatives", fn, minimum=0)
    anchor, coords, dist = _nonlocal_search(
        guide, patch=patch, window=window, stride=stride, count=k + num_negatives,
        generator=generator, centers=centers, least_similar=False, fn=fn,
        count_doc="k + num_negatives",
    )
    return NonLocalSample(
        anchor=anchor,
        positives=coords[:, :k],
        negatives=coords[:, k:],
        distances=dist[:, :k],
        negative_distances=dist[:, k:],
        patch=int(patch),
    )


def reverse_nonlocal(
    guide: Tensor,
    *,
    patch: int = 16,
    window: int = 40,
    k: int = 128,
    stride: int = 1,
    generator: torch.Generator | None = None,
    centers: Tensor | None = None,
) -> NonLocalSample:
    """NLCL reverse non-local sampling: the ``k`` *least* similar patches.

    Same search as :func:`nonlocal_positives` (same window, grid and
    distance), but the ``k`` candidates farthest from the anchor are
    returned as hard negatives (e.g. from the rainy input). Pass
    ``centers=sample.anchor`` to search around the anchors of an earlier
    :func:`nonlocal_positives` call.

    Parameters
    ----------
    guide : Tensor
        ``(B, C, H, W)`` floating point image or features.
    patch, window, stride, generator, centers
        As in :func:`nonlocal_positives`.
    k : int, optional
        Number of least similar patches (``>= 1``); the window must hold at
        least ``k + 1`` candidates.

    Returns
    -------
    NonLocalSample
        ``negatives (B, k, 2)`` least similar first, ``negative_distances
        (B, k)`` (non-increasing), ``anchor (B, 2)``; ``positives`` is
        ``(B, 0, 2)`` and ``distances`` ``(B, 0)``.

    Raises
    ------
    ValueError, TypeError
        As in :func:`nonlocal_positives`.

    Examples
    --------
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> img = torch.rand(1, 3, 64, 64)
    >>> near = nonlocal_positives(img, num_negatives=0, generator=g)
    >>> far = reverse_nonlocal(img, k=16, centers=near.anchor)
    >>> far.negatives.shape, bool((far.anchor == near.anchor).all())
    (torch.Size([1, 16, 2]), True)
    """
    fn = "reverse_nonlocal"
    k = check_int(k, "k", fn, minimum=1)
    anchor, coords, dist = _nonlocal_search(
        guide, patch=patch, window=window, stride=stride, count=k, generator=generator,
        centers=centers, least_similar=True, fn=fn, count_doc="k",
    )
    return NonLocalSample(
        anchor=anchor,
        positives=coords[:, :0],
        negatives=coords,
        distances=dist[:, :0],
        negative_distances=dist,
        patch=int(patch),
    )
