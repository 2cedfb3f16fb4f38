"""Synthetic haze and depth maps: :func:`add_haze`, :func:`random_depth`, :func:`random_haze_params`.

:func:`scene_depth` lays depth out like a scene instead: a ground plane, objects standing
on it, sky far away, with depth edges on the image's own edges.

:func:`add_haze` applies the atmospheric scattering model
``I = J t + A (1 - t)`` with ``t = exp(-beta d)``.  It returns the hazy image
and the transmission map ``t`` so that the clean image can be recovered
exactly.  Without a depth map of its own it uses :func:`random_depth`.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from .convert import RNGLike, as_image, as_number

__all__ = ["add_haze", "random_depth", "random_haze_params", "scene_depth"]


# --------------------------------------------------------------------------
# haze
# --------------------------------------------------------------------------
def _resize_bilinear(a: np.ndarray, h: int, w: int) -> np.ndarray:
    """Separable bilinear resize of a 2-D array (pixel-centre aligned)."""

    def axis_coords(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        c = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
        c = np.clip(c, 0, n_in - 1)
        i0 = np.floor(c).astype(np.intp)
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, c - i0

    r0, r1, fr = axis_coords(a.shape[0], h)
    c0, c1, fc = axis_coords(a.shape[1], w)
    rows = a[r0] * (1 - fr)[:, None] + a[r1] * fr[:, None]
    return rows[:, c0] * (1 - fc)[None, :] + rows[:, c1] * fc[None, :]


def random_depth(
    shape: Sequence[int],
    *,
    rng: RNGLike = None,
    ramp: float = 0.7,
    smoothness: float = 0.15,
    sky_fraction: float = 0.0,
) -> np.ndarray:
    """A plausible relative depth map without a depth sensor.

    A vertical ramp (top row far = 1, bottom row near = 0) mixed with a
    smooth random field (Gaussian-filtered white noise with
    ``sigma = smoothness * min(H, W)``, rescaled to ``[0, 1]``):
    ``depth = ramp * vertical + (1 - ramp) * field``.  Optionally the top
    ``sky_fraction`` of the rows is set to 1 (sky is far away).

    Parameters
    ----------
    shape : sequence of int
        ``(H, W)``; an image shape ``(H, W, C)`` is accepted too (only the
        first two entries are used).
    rng : int, numpy.random.Generator or None, optional
        Seed or generator.
    ramp : float, optional
        Weight of the vertical ramp, in ``[0, 1]``.
    smoothness : float, optional
        Smoothness of the random field relative to the image size, ``> 0``.
    sky_fraction : float, optional
        Fraction of rows at the top set to maximal depth, in ``[0, 1]``.

    Returns
    -------
    numpy.ndarray
        ``float32`` ``(H, W)`` with values in ``[0, 1]``.

    Examples
    --------
    >>> d = random_depth((40, 60), rng=0, sky_fraction=0.2)
    >>> d.shape, d.dtype, float(d[:8].min())
    ((40, 60), dtype('float32'), 1.0)
    >>> bool(d[:20].mean() > d[20:].mean())
    True
    """
    try:
        dims = tuple(int(s) for s in shape)
    except TypeError:
        raise TypeError(f"shape must be a tuple like (H, W), got {shape!r}") from None
    if len(dims) not in (2, 3) or dims[0] < 1 or dims[1] < 1:
        raise ValueError(f"shape must be (H, W) or (H, W, C) with H, W >= 1, got {shape!r}")
    h, w = dims[:2]
    ramp = as_number("ramp", ramp)
    smoothness = as_number("smoothness", smoothness)
    sky_fraction = as_number("sky_fraction", sky_fraction)
    if not 0.0 <= ramp <= 1.0:
        raise ValueError(f"ramp must be in [0, 1] (weight of the vertical ramp), got {ramp:g}")
    if smoothness <= 0.0:
        raise ValueError(
            f"smoothness must be > 0 (field sigma as a fraction of min(H, W)), "
            f"got {smoothness:g}; try 0.1-0.3"
        )
    if not 0.0 <= sky_fraction <= 1.0:
        raise ValueError(f"sky_fraction must be in [0, 1], got {sky_fraction:g}")
    gen = np.random.default_rng(rng)

    vertical = np.linspace(1.0, 0.0, h) if h > 1 else np.ones(1)
    sigma = smoothness * min(h, w)
    # a large-sigma blur is computed on a coarse grid and upsampled: same
    # statistics, a fraction of the cost (sigma is >= 2 px on the coarse grid)
    f = max(1, int(sigma // 2))
    sh, sw = max(1, -(-h // f)), max(1, -(-w // f))
    noise = gen.standard_normal((sh, sw))
    field = ndi.gaussian_filter(noise, sigma / f, mode="reflect")
    if (sh, sw) != (h, w):
        field = _resize_bilinear(field, h, w)
    lo, hi = field.min(), field.max()
    field = (field - lo) / (hi - lo) if hi > lo else np.full_like(field, 0.5)

    depth = ramp * vertical[:, None] + (1.0 - ramp) * field
    n_sky = int(round(sky_fraction * h))
    if n_sky:
        depth[:n_sky] = 1.0
    return np.clip(depth, 0.0, 1.0).astype(np.float32)


def scene_depth(
    image: Any,
    *,
    rng: RNGLike = None,
    rows: Sequence[float] | None = None,
    horizon: float | None = None,
    min_area: float = 0.004,
) -> np.ndarray:
    """Relative depth (1 = far) of ``image`` as a scene: objects on a ground plane, sky far.

    The image is cut into regions of similar brightness (a few brightness levels
    of a lightly blurred copy, then connected components).  The ground plane
    runs from near (0) at the bottom of the frame to far (1) at a random
    ``horizon``; each region larger than ``min_area`` of the frame stands on it,
    at the ground's depth under its lowest pixel, so depth is constant along an
    upright object and jumps at its edges, as real depth does.  Bright, flat
    regions above the horizon that touch the top of the frame are sky (depth 1).
    Regions that reach the bottom of the frame are the ground, and smaller
    regions keep the ground plane's depth of their row too.

    Parameters
    ----------
    image : array-like
        ``(H, W)`` or ``(H, W, C)``, any dtype (scaled as :func:`to_float01` does).
    rng : int, numpy.random.Generator or None, optional
        Seed or generator (the number of levels and the horizon).
    rows : sequence of float, optional
        Vertical position of each row in the whole photo, 0 (top) to 1 (bottom);
        a crop passes its window of the photo.  Default: the image is the photo.
    horizon : float, optional
        Where the ground meets the sky, 0 (top) to 1; default uniform in [0.1, 0.5].
    min_area : float, optional
        Regions below this fraction of the frame are not objects.

    Returns
    -------
    numpy.ndarray
        ``float32`` ``(H, W)`` with values in ``[0, 1]``.

    Examples
    --------
    >>> img = np.zeros((60, 40)); img[:20] = 0.9; img[30:50, 10:20] = 0.5
    >>> d = scene_depth(img, rng=0, horizon=0.3)
    >>> float(d[5, 5]), bool(d[35, 15] == d[49, 15]), bool(d[55, 5] < d[25, 5])
    (1.0, True, True)
    """
    x = as_image(image)
    grey = x.mean(-1) if x.ndim == 3 else x
    h, w = grey.shape
    gen = np.random.default_rng(rng)
    v = np.linspace(0.0, 1.0, h) if rows is None else np.asarray(rows, dtype=np.float64)
    if v.shape != (h,):
        raise ValueError(f"rows must give one position per image row ({h}), got shape {v.shape}")
    hz = gen.uniform(0.1, 0.5) if horizon is None else as_number("horizon", horizon)
    if not 0.0 <= hz < 1.0:
        raise ValueError(f"horizon must be in [0, 1) (0 = the top of the photo), got {hz:g}")
    levels = int(gen.integers(3, 7))

    def ground(pos):
        return np.clip((1.0 - pos) / max(1.0 - hz, 1e-6), 0.0, 1.0)

    depth = np.repeat(ground(v)[:, None], w, 1)
    smooth = ndi.gaussian_filter(grey.astype(np.float64), 1.5)
    cuts = np.quantile(smooth, np.linspace(0, 1, levels + 1)[1:-1])
    q = np.digitize(smooth, cuts)
    labels = np.zeros((h, w), np.int64)
    n = 0
    for level in range(levels):  # every pixel has a level, so n >= 1
        lab, k = ndi.label(q == level)
        inside = lab > 0
        labels[inside] = lab[inside] + n
        n += k
    flat = labels.ravel()
    vgrid = np.repeat(v[:, None], w, 1).ravel()
    area = np.bincount(flat, minlength=n + 1)[1:]
    bottom = np.full(n + 1, -np.inf)
    np.maximum.at(bottom, flat, vgrid)
    top = np.full(n + 1, np.inf)
    np.minimum.at(top, flat, vgrid)
    bottom, top = bottom[1:], top[1:]
    g = grey.ravel().astype(np.float64)
    safe = np.maximum(area, 1)
    mean = np.bincount(flat, g, n + 1)[1:] / safe
    std = np.sqrt(np.maximum(np.bincount(flat, g * g, n + 1)[1:] / safe - mean ** 2, 0.0))
    region_depth = ground(bottom)
    sky = (top <= v[0] + 1e-9) & (top < hz) & (mean > 0.55) & (std < 0.1)
    region_depth[sky] = 1.0
    # regions that reach the bottom of the frame are the ground itself (depth by row)
    big = (area >= min_area * h * w) & (bottom < v[-1] - 1e-9)
    lut = np.concatenate([[np.nan], np.where(big, region_depth, np.nan)])
    per_pixel = lut[labels]
    keep = np.isfinite(per_pixel)
    depth[keep] = per_pixel[keep]
    return np.clip(depth, 0.0, 1.0).astype(np.float32)


def _airlight_values(airlight: Any, n_ch: int) -> np.ndarray:
    """Check ``airlight`` of :func:`add_haze`: 1 or ``n_ch`` values in ``[0, 1]``, as an array."""
    if isinstance(airlight, np.ndarray) and airlight.ndim == 0:
        airlight = airlight.item()
    if isinstance(airlight, numbers.Number):
        a = np.array([as_number("airlight", airlight)])
    elif isinstance(airlight, (Sequence, np.ndarray)) and not isinstance(airlight, (str, bytes)):
        values = np.ravel(np.asarray(airlight, dtype=object)).tolist()
        a = np.array([as_number(f"airlight[{i}]", v) for i, v in enumerate(values)])
        if a.size == 1:
            pass
        elif a.size != n_ch:
            raise ValueError(
                f"airlight has {a.size} values but the image has {n_ch} channel(s); "
                "pass a scalar"
                + (" or a length-3 sequence (R, G, B)" if n_ch == 3 else " for grayscale images")
            )
    else:
        raise TypeError(
            f"airlight must be a float or a length-3 sequence, got {type(airlight).__name__}"
        )
    if np.any(a < 0) or np.any(a > 1):
        raise ValueError(f"airlight must lie in [0, 1], got {a.tolist()}")
    return a


def add_haze(
    image: Any,
    *,
    beta: float = 1.0,
    airlight: float | Sequence[float] = 0.9,
    depth: Any = None,
    rng: RNGLike = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Add haze with the atmospheric scattering model.

    ``I = J t + A (1 - t)`` with transmission ``t = exp(-beta * depth)``.

    Parameters
    ----------
    image : array_like
        Clean image ``J``: grayscale ``(H, W)`` or RGB ``(H, W, 3)``;
        ``uint8``, ``uint16`` or float in ``[0, 1]``.
    beta : float, optional
        Scattering coefficient, ``>= 0`` (0 means no haze).
    airlight : float or sequence of float, optional
        Atmospheric light ``A`` in ``[0, 1]``: a scalar, or for RGB images a
        length-3 sequence (per-channel ``A``).
    depth : array_like, optional
        ``(H, W)`` non-negative relative depths, used as given (not
        rescaled).  When ``None``, ``random_depth(image.shape, rng=rng)`` is
        used.
    rng : int, numpy.random.Generator or None, optional
        Seed or generator, only used when ``depth`` is ``None``.

    Returns
    -------
    hazy : numpy.ndarray
        ``float32``, same shape as ``image``, values in ``[0, 1]``.
    transmission : numpy.ndarray
        ``float32`` ``(H, W)``, ``exp(-beta * depth)`` in ``(0, 1]``.  The
        clean image is recovered as ``(hazy - A * (1 - t)) / t``.

    Raises
    ------
    ValueError
        Wrong image or depth shape, non-finite/out-of-range values, negative
        ``beta``, or ``airlight`` of the wrong length or outside ``[0, 1]``.
    TypeError
        Unsupported dtype or wrongly typed parameter.

    Examples
    --------
    >>> import numpy as np
    >>> img = np.full((16, 16, 3), 0.2, dtype=np.float32)
    >>> hazy, t = add_haze(img, beta=2.0, airlight=(0.9, 0.9, 0.95),
    ...                    depth=np.ones((16, 16)))
    >>> round(float(t[0, 0]), 4), round(float(hazy[0, 0, 0]), 4)
    (0.1353, 0.8053)
    """
    clean = as_image(image)
    h, w = clean.shape[:2]
    beta = as_number("beta", beta)
    if beta < 0:
        raise ValueError(
            f"beta must be >= 0 (0 = no haze), got {beta:g}; typical values are 0.5-2.5"
        )

    a = _airlight_values(airlight, 1 if clean.ndim == 2 else 3)

    if depth is None:
        d = random_depth((h, w), rng=rng)
    else:
        d = np.asarray(depth)
        if d.shape != (h, w):
            raise ValueError(
                f"depth must have shape (H, W) = {(h, w)} matching the image, got {d.shape}"
            )
        if d.dtype == bool or not (
            np.issubdtype(d.dtype, np.floating) or np.issubdtype(d.dtype, np.integer)
        ):
            raise TypeError(f"depth must be a real-valued numeric array, got dtype {d.dtype}")
        if not np.all(np.isfinite(d)):
            raise ValueError("depth contains NaN or infinite values; replace them first")
        if d.size and d.min() < 0:
            raise ValueError(
                f"depth must be non-negative, got minimum {float(d.min()):g}; "
                "shift it, e.g. depth - depth.min()"
            )

    t = np.exp(-beta * d.astype(np.float64)).astype(np.float32)
    a32 = a.astype(np.float32)
    if clean.ndim == 2:
        hazy = clean * t + a32[0] * (1.0 - t)
    else:
        t3 = t[..., None]
        hazy = clean * t3 + a32 * (1.0 - t3)
    np.clip(hazy, 0.0, 1.0, out=hazy)
    return hazy.astype(np.float32, copy=False), t


# --------------------------------------------------------------------------
# random parameter sets
# --------------------------------------------------------------------------
def random_haze_params(rng: RNGLike = None, *, channels: int = 3) -> dict[str, Any]:
    """Sample a realistic set of :func:`add_haze` keyword arguments.

    Parameters
    ----------
    rng : int, numpy.random.Generator or None
        Seed or generator.
    channels : {3, 1}, optional
        3 (default) gives a per-channel ``airlight`` tuple (grey with a small
        tint, each channel within +-0.03 of a common level); 1 gives a scalar
        ``airlight`` for grayscale images.

    Returns
    -------
    dict
        ``beta`` (0.5..2.5) and ``airlight`` (level 0.7..1.0), ready for
        ``add_haze(image, **params, rng=rng)``.

    Examples
    --------
    >>> p = random_haze_params(0)
    >>> sorted(p), len(p["airlight"])
    (['airlight', 'beta'], 3)
    >>> isinstance(random_haze_params(0, channels=1)["airlight"], float)
    True
    """
    if channels not in (1, 3) or isinstance(channels, bool):
        raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels!r}")
    gen = np.random.default_rng(rng)
    beta = float(gen.uniform(0.5, 2.5))
    level = float(gen.uniform(0.7, 1.0))
    tint = gen.uniform(-0.03, 0.03, size=3)
    if channels == 1:
        return {"beta": beta, "airlight": level}
    airlight = tuple(float(v) for v in np.clip(level + tint, 0.0, 1.0))
    return {"beta": beta, "airlight": airlight}
