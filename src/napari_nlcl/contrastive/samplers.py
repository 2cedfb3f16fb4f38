"""Positive / negative samplers for contrastive learning.

Every sampler is a pure function of tensors (kornia style): explicit shape
checks with messages that say what to pass, randomness only through an
explicit ``generator: torch.Generator`` (never the global RNG), no hard-coded
device, and correct for any batch size (each batch element is sampled from
its own image).

Conventions
-----------
* Feature maps and guide images are ``(B, C, H, W)`` tensors.
* Patch coordinates are integer **top-left** ``(y, x)`` = ``(row, column)``
  pairs, shaped ``(B, M, 2)``; a patch of size ``p`` at ``(y, x)`` covers
  ``[y, y + p) x [x, x + p)`` and fits when ``0 <= y <= H - p`` and
  ``0 <= x <= W - p``.
* Random draws happen on the generator's device (a CPU generator may serve
  CUDA features) and the indices are then moved to the features' device.
* Selection (which patch / which negative) is not differentiable and runs
  under ``torch.no_grad``; gathering (:func:`sample_locations`,
  :func:`extract_patches`, :func:`patch_embeddings`,
  :func:`image_level_pairs`) is, so gradients reach the features.

What is here
------------
==================================  =====================================================
:func:`sample_locations`            CUT / PatchNCE random locations shared by query and key
:func:`nonlocal_positives`          NLCL non-local self-similar positives (+ next-nearest)
:func:`reverse_nonlocal`            NLCL reverse non-local: least similar patches
:func:`extract_patches`             gather ``(B, M, C, p, p)`` patches at coordinates
:func:`patch_embeddings`            mean-pooled patch vectors ``(B, M, C)``
:func:`scale_coords`                map coordinates between resolutions
:func:`image_level_pairs`           AECR-Net CR positive / negatives (+ batch negatives)
:func:`domain_negative_mask`        DCoDR: negatives only from the anchor's own domain
:func:`cross_domain_negative_mask`  ablation: negatives only from other domains
:func:`kmeans`                      small seeded spherical k-means (k-means++ init)
:func:`prototype_negative_mask`     HCSC-style prototype-aware negative selection
==================================  =====================================================
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "ImagePairs",
    "KMeansResult",
    "NonLocalSample",
    "PrototypeSelection",
    "cross_domain_negative_mask",
    "domain_negative_mask",
    "extract_patches",
    "image_level_pairs",
    "kmeans",
    "nonlocal_positives",
    "patch_embeddings",
    "prototype_negative_mask",
    "reverse_nonlocal",
    "sample_locations",
    "scale_coords",
]


# --------------------------------------------------------------------------
# return types
# --------------------------------------------------------------------------


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


class ImagePairs(NamedTuple):
    """Output of :func:`image_level_pairs` (unpacks as ``positive, negatives``)."""

    positive: Tensor
    negatives: Tensor


@dataclass(frozen=True)
class KMeansResult:
    """Output of :func:`kmeans`.

    Attributes
    ----------
    labels : Tensor
        ``(N,)`` long cluster index of each row, in ``[0, k)``.
    centroids : Tensor
        ``(k, D)`` unit-norm cluster centres (``k`` after clamping to ``N``).
    """

    labels: Tensor
    centroids: Tensor


@dataclass(frozen=True)
class PrototypeSelection:
    """Output of :func:`prototype_negative_mask`.

    Attributes
    ----------
    negative_mask : Tensor
        ``(M, N)`` bool, True where column ``j`` is a kept negative for anchor
        row ``m`` (never the anchor itself, never a positive).
    positive_mask : Tensor
        ``(M, N)`` bool, True where ``j`` is a positive of anchor ``m``: its
        ``positive_index`` and, with ``enrich_positives=True``, the other
        members of its finest-level prototype. Never the anchor itself.
    assignments : Tensor
        ``(G, N)`` long cluster labels, one row per granularity, in the
        order of ``num_clusters``.
    num_clusters : tuple of int
        Effective number of clusters per granularity (clamped to ``N``).
    anchors : Tensor
        ``(M,)`` long row index (into the embeddings) of each anchor.
    """

    negative_mask: Tensor
    positive_mask: Tensor
    assignments: Tensor
    num_clusters: tuple[int, ...]
    anchors: Tensor


# --------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------


def _check_int(value: Any, name: str, fn: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{fn}: {name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{fn}: {name} must be >= {minimum}, got {value}")
    return int(value)


def _check_generator(generator: Any, fn: str, why: str = "") -> torch.Generator:
    if generator is None:
        raise TypeError(
            f"{fn}: pass generator=torch.Generator().manual_seed(seed){why}; "
            "samplers never use the global random state"
        )
    if not isinstance(generator, torch.Generator):
        raise TypeError(
            f"{fn}: generator must be a torch.Generator (e.g. torch.Generator().manual_seed(0)), "
            f"got {type(generator).__name__}"
        )
    return generator


def _check_maps(x: Any, name: str, fn: str, *, floating: bool = False) -> None:
    """``x`` must be a ``(B, C, H, W)`` tensor (floating point if asked)."""
    if not isinstance(x, Tensor):
        raise TypeError(
            f"{fn}: {name} must be a torch.Tensor of shape (B, C, H, W), got {type(x).__name__}"
        )
    if x.ndim != 4:
        raise ValueError(
            f"{fn}: {name} must have shape (B, C, H, W), got shape {tuple(x.shape)}; "
            "add a batch axis with x[None] or a channel axis with x[:, None]"
        )
    if floating and not x.is_floating_point():
        raise TypeError(f"{fn}: {name} must be a floating point tensor, got dtype {x.dtype}; "
                        "pass x.float()")
    if min(x.shape) < 1:
        raise ValueError(f"{fn}: {name} must not be empty, got shape {tuple(x.shape)}")


def _is_integer_dtype(t: Tensor) -> bool:
    return not (t.is_floating_point() or t.is_complex() or t.dtype == torch.bool)


def _check_index_tensor(t: Any, name: str, fn: str, shape_doc: str) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"{fn}: {name} must be an integer torch.Tensor {shape_doc}, "
                        f"got {type(t).__name__}")
    if not _is_integer_dtype(t):
        raise TypeError(f"{fn}: {name} must have an integer dtype (e.g. torch.long), "
                        f"got {t.dtype}; pass {name}.long()")


def _check_coords(coords: Any, fn: str, batch: int, name: str = "coords") -> Tensor:
    _check_index_tensor(coords, name, fn, "of shape (B, M, 2)")
    if coords.ndim != 3 or coords.shape[-1] != 2 or coords.shape[0] != batch:
        raise ValueError(
            f"{fn}: {name} must have shape (B, M, 2) = ({batch}, M, 2) with top-left (y, x) per "
            f"patch, got shape {tuple(coords.shape)}; for one patch per element use {name}[:, None]"
        )
    return coords


def _check_in_range(coords: Tensor, h_max: int, w_max: int, fn: str, name: str, hint: str) -> None:
    """All ``coords[..., 0]`` in ``[0, h_max]`` and ``coords[..., 1]`` in ``[0, w_max]``."""
    if coords.numel() == 0:
        return
    y, x = coords[..., 0], coords[..., 1]
    bad = (y < 0) | (y > h_max) | (x < 0) | (x > w_max)
    if bool(bad.any()):
        first = coords[bad][0].tolist()
        raise ValueError(
            f"{fn}: {name} out of range: top-left (y, x) must satisfy 0 <= y <= {h_max} and "
            f"0 <= x <= {w_max} so that the patch fits, got e.g. {tuple(first)}{hint}"
        )


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


def _check_positive_index(
    positive_index: Any, anchors: Tensor, n: int, fn: str
) -> Tensor:
    """``positive_index`` ``(M,)`` long in ``[0, n)``, never equal to its anchor."""
    _check_index_tensor(positive_index, "positive_index", fn, "of shape (M,)")
    m = anchors.shape[0]
    if positive_index.shape != (m,):
        raise ValueError(
            f"{fn}: positive_index must have shape ({m},), one column per anchor row, "
            f"got shape {tuple(positive_index.shape)}"
        )
    pos = positive_index.to(device=anchors.device, dtype=torch.long)
    if m and (bool((pos < 0).any()) or bool((pos >= n).any())):
        raise ValueError(f"{fn}: positive_index values must lie in [0, {n}), "
                         f"got min {int(pos.min())} and max {int(pos.max())}")
    if m and bool((pos == anchors).any()):
        raise ValueError(f"{fn}: positive_index[i] must differ from anchor i (an anchor is not "
                         "its own positive); with two views stacked as N = 2B rows use "
                         "positive_index = (arange(2B) + B) % 2B")
    return pos


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
    _check_maps(feats, "feats", fn)
    h, w = feats.shape[-2:]
    hw = h * w
    if ids is None:
        n = _check_int(num_patches, "num_patches", fn, minimum=0)
        gen = _check_generator(generator, fn, " to draw locations, or ids= from the query layer")
        if n == 0 or n >= hw:
            ids = torch.arange(hw, device=feats.device)
        else:
            ids = torch.randperm(hw, generator=gen, device=gen.device)[:n].to(feats.device)
    else:
        _check_index_tensor(ids, "ids", fn, "of shape (N,)")
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
    _check_maps(guide, "guide", fn, floating=True)
    patch = _check_int(patch, "patch", fn, minimum=1)
    window = _check_int(window, "window", fn, minimum=1)
    stride = _check_int(stride, "stride", fn, minimum=1)
    b, _, h, w = guide.shape
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

    if centers is None:
        gen = _check_generator(generator, fn, " to draw the anchor patches, or centers=")
        ay = torch.randint(h - patch + 1, (b,), generator=gen, device=gen.device)
        ax = torch.randint(w - patch + 1, (b,), generator=gen, device=gen.device)
        anchor = torch.stack([ay, ax], dim=1).to(device)
    else:
        _check_index_tensor(centers, "centers", fn, "of shape (B, 2)")
        if centers.shape != (b, 2):
            raise ValueError(f"{fn}: centers must have shape (B, 2) = ({b}, 2), the top-left "
                             f"(y, x) of one anchor patch per element, got {tuple(centers.shape)}")
        anchor = centers.to(device=device, dtype=torch.long)
        _check_in_range(anchor[:, None], h - patch, w - patch, fn, "centers", "")

    # Window: window x window px centred on the anchor patch, shifted (not
    # shrunk) to lie inside the image; the whole axis if the image is smaller.
    y0 = (anchor[:, 0] + patch // 2 - window // 2).clamp(0, h - wy)
    x0 = (anchor[:, 1] + patch // 2 - window // 2).clamp(0, w - wx)
    origin = torch.stack([y0, x0], dim=1)  # (B, 2)
    gy = torch.arange(ny, device=device) * stride
    gx = torch.arange(nx, device=device) * stride
    offsets = torch.stack(torch.meshgrid(gy, gx, indexing="ij"), dim=-1).reshape(-1, 2)
    cand = origin[:, None, :] + offsets[None]  # (B, L, 2), raster order like F.unfold

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
    return anchor, coords, picked


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
    >>> patch_embeddings(img, s.positives, s.patch).shape
    torch.Size([2, 8, 3])
    """
    fn = "nonlocal_positives"
    k = _check_int(k, "k", fn, minimum=1)
    num_negatives = _check_int(num_negatives, "num_negatives", fn, minimum=0)
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
    k = _check_int(k, "k", fn, minimum=1)
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


# --------------------------------------------------------------------------
# 4. gathering patches at coordinates
# --------------------------------------------------------------------------


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
    _check_maps(feats, "feats", fn)
    patch = _check_int(patch, "patch", fn, minimum=1)
    b, c, h, w = feats.shape
    _check_coords(coords, fn, b)
    if patch > h or patch > w:
        raise ValueError(f"{fn}: patch ({patch}) is larger than the {h}x{w} map; "
                         "scale it with the map (see scale_coords)")
    coords = coords.to(device=feats.device, dtype=torch.long)
    _check_in_range(coords, h - patch, w - patch, fn, "coords",
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
    _check_maps(feats, "feats", fn, floating=True)
    return extract_patches(feats, coords, patch).mean(dim=(-2, -1))


def _check_hw(hw: Any, name: str, fn: str) -> tuple[int, int]:
    if not isinstance(hw, Sequence) or len(hw) != 2:
        raise TypeError(f"{fn}: {name} must be a (height, width) pair, got {hw!r}")
    return (_check_int(hw[0], f"{name}[0]", fn, minimum=1),
            _check_int(hw[1], f"{name}[1]", fn, minimum=1))


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
    _check_index_tensor(coords, "coords", fn, "of shape (..., 2)")
    if coords.ndim < 1 or coords.shape[-1] != 2:
        raise ValueError(f"{fn}: coords must have a last axis of size 2 holding (y, x), "
                         f"got shape {tuple(coords.shape)}")
    fh, fw = _check_hw(from_hw, "from_hw", fn)
    th, tw = _check_hw(to_hw, "to_hw", fn)
    c = coords.long()
    y = torch.div(c[..., 0] * th, fh, rounding_mode="floor")
    x = torch.div(c[..., 1] * tw, fw, rounding_mode="floor")
    if patch is not None:
        patch = _check_int(patch, "patch", fn, minimum=1)
        if patch > th or patch > tw:
            raise ValueError(f"{fn}: patch ({patch}) does not fit in the target {th}x{tw} map")
        y = y.clamp(0, th - patch)
        x = x.clamp(0, tw - patch)
    return torch.stack([y, x], dim=-1)


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


# --------------------------------------------------------------------------
# 6. DCoDR domain-wise negatives
# --------------------------------------------------------------------------


def _finish_mask(mask: Tensor, positive_index: Tensor | None, fn: str) -> Tensor:
    n = mask.shape[0]
    ar = torch.arange(n, device=mask.device)
    mask[ar, ar] = False
    if positive_index is not None:
        pos = _check_positive_index(positive_index, ar, n, fn)
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


# --------------------------------------------------------------------------
# 7. HCSC prototype-aware selection
# --------------------------------------------------------------------------


def _check_embeddings(x: Any, fn: str) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{fn}: embeddings must be a torch.Tensor of shape (N, D), "
                        f"got {type(x).__name__}")
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"{fn}: embeddings must have shape (N, D) with N, D >= 1, got "
                         f"{tuple(x.shape)}; flatten patch embeddings with x.reshape(-1, D)")
    if not x.is_floating_point():
        raise TypeError(f"{fn}: embeddings must be floating point, got {x.dtype}; pass x.float()")


def kmeans(
    x: Tensor,
    k: int,
    *,
    generator: torch.Generator,
    iters: int = 10,
) -> KMeansResult:
    """Seeded spherical k-means (cosine similarity on L2-normalised rows).

    k-means++ initialisation (the first centre uniform, each next one drawn
    with probability proportional to the squared cosine distance
    ``(1 - cos)^2`` to the nearest chosen centre; uniformly among the
    remaining rows when all of them coincide with a centre), then Lloyd
    iterations: assign each row to the most similar centre, set each centre
    to the normalised mean of its members (an empty cluster keeps its
    centre). Stops early when the assignment no longer changes.

    Parameters
    ----------
    x : Tensor
        ``(N, D)`` floating point rows (half precision runs in float32).
        Not differentiated (runs on detached values).
    k : int
        Number of clusters, ``>= 1``. ``k > N`` is clamped to ``N`` (every
        row can then be its own cluster).
    generator : torch.Generator
        Source of randomness for the initialisation.
    iters : int, optional
        Maximum number of Lloyd iterations (``0``: assign to the initial
        centres).

    Returns
    -------
    KMeansResult
        ``labels (N,)`` long, ``centroids (min(k, N), D)`` unit norm.

    Examples
    --------
    >>> import torch
    >>> x = torch.tensor([[1., 0.], [1., .01], [0., 1.], [.01, 1.]])
    >>> lab = kmeans(x, 2, generator=torch.Generator().manual_seed(0)).labels
    >>> bool(lab[0] == lab[1]), bool(lab[2] == lab[3]), bool(lab[0] != lab[2])
    (True, True, True)
    """
    fn = "kmeans"
    _check_embeddings(x, fn)
    k = _check_int(k, "k", fn, minimum=1)
    iters = _check_int(iters, "iters", fn, minimum=0)
    gen = _check_generator(generator, fn)
    n = x.shape[0]
    k = min(k, n)
    with torch.no_grad():
        work = x.dtype if x.element_size() >= 4 else torch.float32
        z = F.normalize(x.detach().to(work), dim=1)
        # k-means++ initialisation
        first = torch.randint(n, (1,), generator=gen, device=gen.device).to(z.device)
        chosen = [first]
        taken = torch.zeros(n, dtype=torch.bool, device=z.device)
        taken[first] = True
        d2 = (1 - z @ z[first].T).squeeze(1).clamp_min(0).square()
        for _ in range(1, k):
            weights = d2.masked_fill(taken, 0)
            if not bool(weights.sum() > 0):
                weights = (~taken).to(work)
            nxt = torch.multinomial(weights.to(gen.device), 1, generator=gen).to(z.device)
            chosen.append(nxt)
            taken[nxt] = True
            d2 = torch.minimum(d2, (1 - z @ z[nxt].T).squeeze(1).clamp_min(0).square())
        centroids = z[torch.cat(chosen)]
        labels = (z @ centroids.T).argmax(1)
        for _ in range(iters):
            sums = torch.zeros_like(centroids).index_add_(0, labels, z)
            counts = torch.bincount(labels, minlength=k)
            centroids = torch.where((counts > 0)[:, None], F.normalize(sums, dim=1), centroids)
            new = (z @ centroids.T).argmax(1)
            if torch.equal(new, labels):
                break
            labels = new
    return KMeansResult(labels=labels, centroids=centroids)


def prototype_negative_mask(
    embeddings: Tensor,
    *,
    num_clusters: int | Sequence[int] = (4, 8),
    generator: torch.Generator,
    iters: int = 10,
    rule: Literal["all", "any"] = "all",
    anchors: Tensor | None = None,
    positive_index: Tensor | None = None,
    enrich_positives: bool = False,
) -> PrototypeSelection:
    """Prototype-aware negative selection (simplified HCSC).

    HCSC (Guo et al., CVPR 2022) clusters the embeddings hierarchically and
    avoids using as negatives the candidates that share the anchor's
    prototypes (likely the same semantic class: false negatives). Here:
    :func:`kmeans` runs once per granularity in ``num_clusters`` on the
    L2-normalised embeddings, and candidate ``j`` is dropped as a negative of
    anchor ``i`` when it shares ``i``'s cluster at **every** granularity
    (``rule="all"``: near-duplicates only) or at **any** granularity
    (``rule="any"``: everything in the anchor's coarsest prototypes). HCSC's
    soft, probability-based selection is replaced by this hard rule.

    Parameters
    ----------
    embeddings : Tensor
        ``(N, D)`` floating point candidate embeddings (anchors are rows of
        it). Not differentiated.
    num_clusters : int or sequence of int, optional
        Clusters per granularity; each is clamped to ``N``.
    generator : torch.Generator
        Randomness for the k-means initialisations (consumed in order).
    iters : int, optional
        Lloyd iterations per granularity.
    rule : {"all", "any"}, optional
        When a shared prototype drops a negative (see above).
    anchors : Tensor, optional
        ``(M,)`` integer rows that are anchors; default all ``N`` rows.
    positive_index : Tensor, optional
        ``(M,)`` column of each anchor's positive (e.g. its other view);
        it is never dropped as a positive: it is always in ``positive_mask``
        and never in ``negative_mask``, whatever the clusters say.
    enrich_positives : bool, optional
        Also mark as positives the other members of the anchor's prototype at
        the finest granularity (the largest effective ``num_clusters``).

    Returns
    -------
    PrototypeSelection
        ``negative_mask (M, N)``, ``positive_mask (M, N)``, ``assignments
        (G, N)``, effective ``num_clusters`` and ``anchors (M,)``. The anchor
        itself is in neither mask; positives take precedence over negatives.

    Raises
    ------
    ValueError
        On bad shapes, an empty ``num_clusters``, an unknown ``rule``, or
        out-of-range indices.
    TypeError
        On non-tensor / non-integer inputs or a missing generator.

    Examples
    --------
    >>> import torch
    >>> e = torch.tensor([[1., 0.], [1., .01], [0., 1.], [.01, 1.]])
    >>> g = torch.Generator().manual_seed(0)
    >>> sel = prototype_negative_mask(e, num_clusters=(2,), generator=g)
    >>> sel.negative_mask[0]
    tensor([False, False,  True,  True])
    """
    fn = "prototype_negative_mask"
    _check_embeddings(embeddings, fn)
    _check_generator(generator, fn)
    if rule not in ("all", "any"):
        raise ValueError(f"{fn}: rule must be 'all' (drop near-duplicates) or 'any' (drop the "
                         f"anchor's whole prototype), got {rule!r}")
    if isinstance(num_clusters, numbers.Integral) and not isinstance(num_clusters, bool):
        num_clusters = (num_clusters,)
    if not isinstance(num_clusters, Sequence) or len(num_clusters) == 0:
        raise ValueError(f"{fn}: num_clusters must be an int or a non-empty sequence of ints, "
                         f"e.g. (4, 8), got {num_clusters!r}")
    ks = [_check_int(kk, "num_clusters[i]", fn, minimum=1) for kk in num_clusters]
    n = embeddings.shape[0]
    dev = embeddings.device
    if anchors is None:
        anchors_t = torch.arange(n, device=dev)
    else:
        _check_index_tensor(anchors, "anchors", fn, "of shape (M,)")
        if anchors.ndim != 1:
            raise ValueError(f"{fn}: anchors must have shape (M,), got {tuple(anchors.shape)}")
        anchors_t = anchors.to(device=dev, dtype=torch.long)
        if anchors_t.numel() and (bool((anchors_t < 0).any()) or bool((anchors_t >= n).any())):
            raise ValueError(f"{fn}: anchors must lie in [0, {n})")
    pos_idx = (None if positive_index is None
               else _check_positive_index(positive_index, anchors_t, n, fn))

    results = [kmeans(embeddings, kk, generator=generator, iters=iters) for kk in ks]
    assignments = torch.stack([r.labels for r in results])  # (G, N)
    effective = tuple(r.centroids.shape[0] for r in results)
    m = anchors_t.shape[0]
    rows = torch.arange(m, device=dev)
    same = assignments[:, anchors_t, None] == assignments[:, None, :]  # (G, M, N)
    drop = same.all(0) if rule == "all" else same.any(0)
    negative = ~drop
    positive = torch.zeros(m, n, dtype=torch.bool, device=dev)
    if enrich_positives:
        finest = max(range(len(effective)), key=lambda g: (effective[g], g))
        positive |= same[finest]
    if pos_idx is not None:
        positive[rows, pos_idx] = True
    positive[rows, anchors_t] = False
    negative[rows, anchors_t] = False
    negative &= ~positive
    return PrototypeSelection(
        negative_mask=negative,
        positive_mask=positive,
        assignments=assignments,
        num_clusters=effective,
        anchors=anchors_t,
    )
