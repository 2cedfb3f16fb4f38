"""Local image filters shared by the classical methods (and some networks).

Pure, vectorised torch functions on ``(B, C, H, W)`` tensors that work on
whatever device and dtype their input lives on; half precision inputs are
computed in float32 and cast back.  Borders are replicate-padded, so a tile
cut out of a larger image with enough context gives the untiled result.

* :func:`box_filter`: mean over a square window (running sums, any radius);
* :func:`min_filter`: minimum over a square window (window doubling);
* :func:`guided_filter`: He et al.'s edge-preserving guided filter;
* :func:`upcast_half`: the float16/bfloat16 -> float32 upcast they all use.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from napari_nlcl.checks import check_float, check_int, check_tensor_image

__all__ = ["box_filter", "guided_filter", "min_filter", "upcast_half"]


def upcast_half(x: Tensor) -> Tensor:
    """Upcast half precision to float32 (pooling and variances need it)."""
    if x.dtype in (torch.float16, torch.bfloat16):
        return x.float()
    return x


def box_filter(x: Tensor, radius: int) -> Tensor:
    """Mean over a ``(2 r + 1) x (2 r + 1)`` window, replicate-padded borders.

    Parameters
    ----------
    x
        Float tensor ``(B, C, H, W)``.
    radius
        Window radius ``r >= 0``; any size works, including windows larger
        than the image (replicate padding has no size limit).

    Returns
    -------
    Tensor
        ``(B, C, H, W)``, same dtype as ``x``.

    Notes
    -----
    Separable running sums: the replicate-padded input is cumulatively
    summed along each axis in float64 (float32 on Apple MPS, which has no
    float64) and differenced ``2 r + 1`` apart, so the cost does not depend
    on the radius.  Accumulating in float64 keeps the rounding error
    (~1e-12) far below float32 resolution, so the result for a pixel does not
    depend on where the image was cropped, which keeps tiled inference exact.
    """
    check_tensor_image(x)
    radius = check_int(radius, "radius", 0)
    if radius == 0:
        return x.clone()
    k = 2 * radius + 1
    acc = torch.float32 if x.device.type == "mps" else torch.float64
    # one extra leading row/column of padding: the running sum then starts
    # with the value just *before* each window, and window sums are
    # differences of running sums k apart
    w = F.pad(upcast_half(x), (radius + 1, radius, radius + 1, radius), mode="replicate").to(acc)
    w = w.cumsum(dim=-2)
    w = w[..., k:, :] - w[..., :-k, :]
    w = w.cumsum(dim=-1)
    w = w[..., k:] - w[..., :-k]
    return (w / (k * k)).to(x.dtype)


def min_filter(x: Tensor, size: int) -> Tensor:
    """Per-channel minimum over a ``size x size`` window, replicate padding.

    For even ``size`` the window extends ``size // 2`` pixels up/left and
    ``size // 2 - 1`` down/right.  Separable, and each pass takes ``log2(size) + 1``
    element-wise minima of shifted views (window doubling), several times faster on the
    CPU than ``max_pool2d`` (which also computes indices) and exactly the same minimum.
    """
    check_tensor_image(x)
    size = check_int(size, "size", 1)
    if size == 1:
        return x.clone()
    w = upcast_half(x)
    lo, hi = size // 2, (size - 1) // 2
    w = F.pad(w, (lo, hi, lo, hi), mode="replicate")
    w = _running_min(w, size, -2)
    w = _running_min(w, size, -1)
    return w.to(x.dtype)


def _running_min(w: Tensor, size: int, dim: int) -> Tensor:
    """``out[i] = min(w[i : i + size])`` along ``dim`` (length shrinks by ``size - 1``)."""
    span = 1
    while 2 * span <= size:  # out[i] = min(w[i : i + span])
        n = w.shape[dim] - span
        w = torch.minimum(w.narrow(dim, 0, n), w.narrow(dim, span, n))
        span *= 2
    if span < size:  # two overlapping windows of ``span`` cover ``size``
        n = w.shape[dim] - (size - span)
        w = torch.minimum(w.narrow(dim, 0, n), w.narrow(dim, size - span, n))
    return w



def guided_filter(guide: Tensor, src: Tensor, radius: int, eps: float) -> Tensor:
    """Edge-preserving guided filter (He, Sun & Tang, ECCV 2010 / TPAMI 2013).

    Parameters
    ----------
    guide
        Grayscale guidance image ``(B, 1, H, W)``.
    src
        Image to filter, ``(B, C, H, W)`` with the same ``B, H, W``; each
        channel is filtered with the same guide.
    radius
        Box radius ``r >= 0``.  The output depends on ``2 r`` pixels each side.
    eps
        Regularisation ``> 0`` (in squared intensity units); larger is
        smoother, smaller follows the guide's edges more closely.

    Returns
    -------
    Tensor
        ``q = mean(a) * guide + mean(b)``, shape and dtype of ``src``.
    """
    check_tensor_image(guide, "guide", channels=1)
    check_tensor_image(src, "src")
    if guide.shape[0] != src.shape[0] or guide.shape[-2:] != src.shape[-2:]:
        raise ValueError(
            "guide and src must share batch size, height and width, got "
            f"guide {tuple(guide.shape)} and src {tuple(src.shape)}"
        )
    radius = check_int(radius, "radius", 0)
    eps = check_float(eps, "eps", 0.0, math.inf, lo_open=True)
    out_dtype = src.dtype
    g, p = upcast_half(guide), upcast_half(src)
    common = torch.promote_types(g.dtype, p.dtype)
    g, p = g.to(common), p.to(common)
    c = p.shape[1]
    # all window statistics in one box-filter call: [I, I*I, p, I*p]
    stats = box_filter(torch.cat([g, g * g, p, g * p], dim=1), radius)
    mean_i, corr_ii = stats[:, 0:1], stats[:, 1:2]
    mean_p, corr_ip = stats[:, 2 : 2 + c], stats[:, 2 + c :]
    var_i = corr_ii - mean_i * mean_i
    cov_ip = corr_ip - mean_i * mean_p
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    mean_ab = box_filter(torch.cat([a, b], dim=1), radius)
    q = mean_ab[:, :c] * g + mean_ab[:, c:]
    return q.to(out_dtype)
