"""Synthetic rain and haze, for training pairs and sample data.

Everything here is plain numpy + :mod:`scipy` (no torch, no scikit-image), so
it can be used to build training sets on machines without a GPU stack.

Two degradations and one style are provided:

* :func:`add_rain` -- additive rain streaks.  The result obeys the
  decomposition ``O = B + R`` used by the deraining model: it returns the rainy
  image ``O`` *and* the rain layer ``R = O - B`` (``R >= 0``).
* :func:`add_haze` -- the atmospheric scattering model
  ``I = J t + A (1 - t)`` with ``t = exp(-beta d)``.  It returns the hazy image
  and the transmission map ``t`` so that the clean image can be recovered
  exactly.
* :func:`film_look` -- a fixed, deterministic photographic style (colour
  matrix, S-shaped tone curve with lifted blacks, unsharp masking): the
  project's own second domain for the translation sample data and for the
  translation benchmark, where the model must learn it from unpaired images.

All randomness goes through an explicit ``rng`` argument (an ``int`` seed,
``None`` or a :class:`numpy.random.Generator`); the global numpy RNG is never
touched, and the same seed always gives the same output.

Examples
--------
>>> import numpy as np
>>> from napari_nlcl import synth
>>> clean = np.full((64, 64, 3), 0.4, dtype=np.float32)
>>> rainy, rain = synth.add_rain(clean, density=0.03, rng=0)
>>> bool(np.allclose(rainy, clean + rain, atol=1e-6))
True
>>> hazy, t = synth.add_haze(clean, beta=1.5, rng=0)
>>> hazy.shape, t.shape
((64, 64, 3), (64, 64))
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any, Union

import numpy as np
from scipy import fft as _fft
from scipy import ndimage as ndi

__all__ = [
    "add_haze",
    "add_rain",
    "random_depth",
    "random_haze_params",
    "random_rain_params",
    "to_float01",
]

RNGLike = Union[int, np.random.Generator, None]

_RAIN_KEYS = ("density", "angle", "length", "width", "opacity")

# "Levels" applied to the normalised streak map: values below the black point
# (at least _LEVELS_BLACK; kills FFT round-off and faint tails so the
# background is exactly 0) become 0, the rest is stretched to [0, 1] and
# brightened with a gamma < 1.
_LEVELS_BLACK = 0.04
# robust "max" of the streak map used for normalisation
_NORM_QUANTILE = 0.995
_LEVELS_GAMMA = 0.8
# Seed brightness is drawn uniformly from [_SEED_MIN, 1].
_SEED_MIN = 0.25


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------
def to_float01(image: Any) -> np.ndarray:
    """Convert an image to ``float32`` with values in ``[0, 1]``.

    Parameters
    ----------
    image : array_like
        ``uint8`` (divided by 255), ``uint16`` (divided by 65535) or a float
        array (``float16``/``float32``/``float64``) already in ``[0, 1]``.
        Any shape is accepted.

    Returns
    -------
    numpy.ndarray
        A new ``float32`` array of the same shape, values in ``[0, 1]``.

    Raises
    ------
    TypeError
        For any other dtype (bool, signed/other integers, complex, object).
    ValueError
        For float input containing NaN/inf or values outside ``[0, 1]``.

    Examples
    --------
    >>> import numpy as np
    >>> to_float01(np.array([0, 255], dtype=np.uint8)).tolist()
    [0.0, 1.0]
    >>> to_float01(np.array([0.25, 0.5])).dtype
    dtype('float32')
    """
    arr = np.asarray(image)
    dt = arr.dtype
    if dt == np.uint8:
        # divide in float64 then round once, so uint8 input and the equivalent
        # float image (x / 255) give bit-identical results
        return (arr / 255.0).astype(np.float32)
    if dt == np.uint16:
        return (arr / 65535.0).astype(np.float32)
    if dt in (np.float16, np.float32, np.float64):
        if arr.size and not np.all(np.isfinite(arr)):
            raise ValueError(
                "image contains NaN or infinite values; replace them first, "
                "e.g. np.nan_to_num(image)"
            )
        if arr.size:
            lo, hi = float(arr.min()), float(arr.max())
            if lo < 0.0 or hi > 1.0:
                raise ValueError(
                    f"float image values must lie in [0, 1], got range "
                    f"[{lo:g}, {hi:g}]; rescale first, e.g. "
                    "(image - image.min()) / (image.max() - image.min()), "
                    "or pass the original uint8/uint16 array"
                )
        return arr.astype(np.float32, copy=True)
    raise TypeError(
        f"unsupported image dtype {dt}; pass uint8, uint16, or a float array "
        "(float16/float32/float64) with values in [0, 1], e.g. "
        "image.astype(np.float32) / image.max()"
    )


def _as_image(image: Any) -> np.ndarray:
    """Validate shape, then convert with :func:`to_float01`."""
    arr = np.asarray(image)
    if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] == 3):
        if arr.shape[0] < 1 or arr.shape[1] < 1:
            raise ValueError(f"image must not be empty, got shape {arr.shape}")
        return to_float01(arr)
    hint = ""
    if arr.ndim == 3 and arr.shape[-1] == 4:
        hint = "; for RGBA drop the alpha channel with image[..., :3]"
    elif arr.ndim == 3 and arr.shape[-1] == 1:
        hint = "; squeeze the channel axis with image[..., 0]"
    elif arr.ndim == 3 and arr.shape[0] == 3:
        hint = "; for channel-first data use np.moveaxis(image, 0, -1)"
    raise ValueError(
        f"image must be 2-D grayscale (H, W) or RGB (H, W, 3), got shape "
        f"{arr.shape}{hint}"
    )


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return value


def _check_rain_params(p: Mapping[str, Any]) -> dict[str, float]:
    out = {k: _number(k, p[k]) for k in _RAIN_KEYS}
    if not 0.0 < out["density"] <= 1.0:
        raise ValueError(
            f"density must be in (0, 1] (fraction of pixels that seed a "
            f"streak), got {out['density']:g}; typical values are 0.005-0.05"
        )
    if out["length"] < 1.0:
        raise ValueError(
            f"length must be >= 1 (streak length in pixels), got {out['length']:g}"
        )
    if out["width"] <= 0.0:
        raise ValueError(
            f"width must be > 0 (streak width in pixels), got {out['width']:g}; "
            "typical values are 0.5-2.5"
        )
    if not 0.0 <= out["opacity"] <= 1.0:
        raise ValueError(f"opacity must be in [0, 1], got {out['opacity']:g}")
    return out


def _line_kernel(length: float, angle: float, sigma: float) -> np.ndarray:
    """Anti-aliased motion-blur line convolved with a Gaussian of ``sigma``.

    The line is ``length`` px long through the kernel centre; angle 0 is
    vertical, positive angles rotate it clockwise on screen (top end to the
    right, like ``/``).  The returned kernel has odd size and sums to 1.
    """
    theta = math.radians(angle)
    dr, dc = math.cos(theta), -math.sin(theta)  # unit vector along the streak
    half_len = length / 2.0
    pad = int(math.ceil(4.0 * sigma)) + 1
    half = int(math.ceil(half_len)) + pad
    r = np.arange(-half, half + 1, dtype=np.float64)
    rr, cc = np.meshgrid(r, r, indexing="ij")
    along = rr * dr + cc * dc
    across = np.abs(-rr * dc + cc * dr)
    # Wu-style coverage: 1 px wide line with soft ends
    w = np.clip(1.0 - across, 0.0, 1.0) * np.clip(half_len + 0.5 - np.abs(along), 0.0, 1.0)
    if w.sum() <= 0:  # cannot happen for length >= 1, but stay safe
        w[half, half] = 1.0
    w /= w.sum()
    if sigma > 0:
        w = ndi.gaussian_filter(w, sigma, mode="constant", truncate=4.0)
        w /= w.sum()
    return w


def _streak_map(
    shape: tuple[int, int], p: Mapping[str, float], rng: np.random.Generator
) -> np.ndarray:
    """One layer of rain streaks, float32 (H, W) in [0, 1] with 0 background."""
    h, w = shape
    kernel = _line_kernel(p["length"], p["angle"], p["width"] / 2.0)
    k = kernel.shape[0]
    pad = k // 2
    # seeds are drawn on a canvas larger than the image so that streaks enter
    # from outside and the border is as rainy as the centre
    ph, pw = h + 2 * pad, w + 2 * pad
    u = rng.random((ph, pw), dtype=np.float32)
    density = p["density"]
    seeds = np.where(
        u < density, _SEED_MIN + (1.0 - _SEED_MIN) * (u / np.float32(density)), 0.0
    ).astype(np.float32)
    # linear convolution via FFT; the 'valid' part is exactly the image area
    fh, fw = _fft.next_fast_len(ph, real=True), _fft.next_fast_len(pw, real=True)
    spec = _fft.rfft2(seeds, s=(fh, fw)) * _fft.rfft2(kernel.astype(np.float32), s=(fh, fw))
    full = _fft.irfft2(spec, s=(fh, fw))
    s = full[2 * pad : 2 * pad + h, 2 * pad : 2 * pad + w]
    # "levels".  Normalise to the map's (robust) max, but never by less than
    # the peak of one full-brightness streak, so sparse rain keeps a fixed
    # brightness while dense rain does not saturate to a white sheet.  The
    # black point (at least the mean level, i.e. the diffuse veil of
    # overlapping streaks) sets the background to exactly 0; gamma < 1
    # brightens what is left.
    peak = float(kernel.max())
    norm = max(peak, float(np.quantile(s[::2, ::2], _NORM_QUANTILE)))
    veil = float(s.mean()) / norm
    black = max(_LEVELS_BLACK, veil)
    s = s * (1.0 / norm)
    s = np.clip((s - black) / (1.0 - black), 0.0, 1.0)
    return np.power(s, _LEVELS_GAMMA, dtype=np.float32).astype(np.float32, copy=False)


def _layer_params(
    layers: Any, base: dict[str, float], rng: np.random.Generator
) -> list[dict[str, float]]:
    if isinstance(layers, bool):
        raise TypeError("layers must be an int >= 1 or a sequence of dicts, got a bool")
    if isinstance(layers, numbers.Integral):
        n = int(layers)
        if n < 1:
            raise ValueError(
                f"layers must be >= 1, got {n}; pass an int >= 1 or a sequence "
                "of dicts with keys " + ", ".join(_RAIN_KEYS)
            )
        out = [dict(base)]
        for _ in range(n - 1):
            j = rng.uniform(size=5)
            out.append(
                {
                    "density": float(min(1.0, base["density"] * (0.5 + j[0]))),
                    "angle": base["angle"] + (j[1] * 10.0 - 5.0),
                    "length": max(1.0, base["length"] * (0.6 + 0.8 * j[2])),
                    "width": max(0.05, base["width"] * (0.6 + 0.8 * j[3])),
                    "opacity": float(min(1.0, base["opacity"] * (0.6 + 0.5 * j[4]))),
                }
            )
        return out
    if isinstance(layers, (str, bytes, Mapping)) or not isinstance(layers, Sequence):
        raise TypeError(
            f"layers must be an int >= 1 or a sequence of dicts with keys "
            f"{', '.join(_RAIN_KEYS)}, got {type(layers).__name__}; wrap a single "
            "dict in a list: layers=[{...}]"
        )
    if len(layers) == 0:
        raise ValueError("layers is an empty sequence; pass at least one dict or an int >= 1")
    out = []
    for i, spec in enumerate(layers):
        if not isinstance(spec, Mapping):
            raise TypeError(
                f"layers[{i}] must be a dict with any of the keys "
                f"{', '.join(_RAIN_KEYS)}, got {type(spec).__name__}"
            )
        unknown = set(spec) - set(_RAIN_KEYS)
        if unknown:
            raise ValueError(
                f"layers[{i}] has unknown key(s) {sorted(map(str, unknown))}; "
                f"allowed keys are {', '.join(_RAIN_KEYS)}"
            )
        merged = dict(base)
        merged.update(spec)
        out.append(merged)
    return out


# --------------------------------------------------------------------------
# rain
# --------------------------------------------------------------------------
def add_rain(
    image: Any,
    *,
    density: float = 0.02,
    angle: float = -10.0,
    length: float = 20,
    width: float = 1.0,
    opacity: float = 0.8,
    layers: int | Sequence[Mapping[str, float]] = 1,
    rng: RNGLike = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Add synthetic rain streaks to an image.

    Each layer is made the classic way: sparse noise (about ``density`` of
    the pixels become seeds of random brightness), a small Gaussian blur
    (``sigma = width / 2``) for the streak width, a motion blur with an
    anti-aliased line kernel of ``length`` px at ``angle`` degrees, "levels"
    (normalise to the map's 99.5th percentile, floored at the peak of a single
    streak; black point at the mean level; gamma 0.8) so that streaks are
    bright, the background is exactly 0 and dense rain does not turn into a
    white sheet, and finally a
    screen blend onto the image, ``out = 1 - (1 - I) (1 - opacity * S)``.
    Streaks are grey/white (identical on every channel).

    Parameters
    ----------
    image : array_like
        Grayscale ``(H, W)`` or RGB ``(H, W, 3)``; ``uint8``, ``uint16`` or
        float in ``[0, 1]``.
    density : float, optional
        Fraction of pixels seeding a streak, in ``(0, 1]``.
    angle : float, optional
        Streak direction in degrees: 0 is vertical (rain falling straight
        down), positive values tilt the streaks clockwise (top end to the
        right, like ``/``), 90 is horizontal.
    length : float, optional
        Streak length in pixels, ``>= 1``.
    width : float, optional
        Streak width in pixels, ``> 0`` (Gaussian ``sigma = width / 2``).
    opacity : float, optional
        Strength of the screen blend, in ``[0, 1]``.
    layers : int or sequence of dict, optional
        An int ``n`` gives ``n`` layers: the first uses the parameters above
        exactly, each further one jitters them (density x0.5-1.5, angle
        +-5 deg, length x0.6-1.4, width x0.6-1.4, opacity x0.6-1.1, clipped to
        the valid ranges).  A sequence of dicts (keys among ``density``,
        ``angle``, ``length``, ``width``, ``opacity``; missing keys take the
        values above) gives one layer per dict, blended in order.
    rng : int, numpy.random.Generator or None, optional
        Seed or generator; the same seed gives the same output.

    Returns
    -------
    rainy : numpy.ndarray
        ``float32``, same shape as ``image``, values in ``[0, 1]``.
    rain : numpy.ndarray
        ``float32``, same shape, ``rain = rainy - clean >= 0`` so that
        ``rainy == clean + rain`` (up to float rounding), where ``clean`` is
        ``to_float01(image)``.

    Raises
    ------
    ValueError
        Wrong image shape, non-finite or out-of-range values, or a parameter
        out of range.
    TypeError
        Unsupported dtype or wrongly typed parameter.

    Examples
    --------
    >>> import numpy as np
    >>> img = np.zeros((32, 48, 3), dtype=np.uint8)
    >>> rainy, rain = add_rain(img, density=0.05, angle=0, length=10, rng=1)
    >>> rainy.shape, rainy.dtype
    ((32, 48, 3), dtype('float32'))
    >>> bool(rain.min() >= 0 and rainy.max() <= 1)
    True
    """
    clean = _as_image(image)
    base = _check_rain_params(
        {"density": density, "angle": angle, "length": length, "width": width, "opacity": opacity}
    )
    gen = np.random.default_rng(rng)
    specs = [_check_rain_params(p) for p in _layer_params(layers, base, gen)]

    h, w = clean.shape[:2]
    out = clean.copy()
    for p in specs:
        s = _streak_map((h, w), p, gen)
        if p["opacity"] != 1.0:
            s *= np.float32(p["opacity"])
        if out.ndim == 3:
            s = s[..., None]
        # screen blend written as I + (1 - I) * a: algebraically identical to
        # 1 - (1 - I)(1 - a) but never rounds below I, so rain stays >= 0
        out += (1.0 - out) * s
    rainy = np.clip(out, 0.0, 1.0, out=out)
    rain = rainy - clean
    np.maximum(rain, 0.0, out=rain)
    return rainy, rain


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
    ramp = _number("ramp", ramp)
    smoothness = _number("smoothness", smoothness)
    sky_fraction = _number("sky_fraction", sky_fraction)
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
    clean = _as_image(image)
    h, w = clean.shape[:2]
    beta = _number("beta", beta)
    if beta < 0:
        raise ValueError(
            f"beta must be >= 0 (0 = no haze), got {beta:g}; typical values are 0.5-2.5"
        )

    if isinstance(airlight, np.ndarray) and airlight.ndim == 0:
        airlight = airlight.item()
    if isinstance(airlight, numbers.Number):
        a = np.array([_number("airlight", airlight)])
    elif isinstance(airlight, (Sequence, np.ndarray)) and not isinstance(airlight, (str, bytes)):
        values = np.ravel(np.asarray(airlight, dtype=object)).tolist()
        a = np.array([_number(f"airlight[{i}]", v) for i, v in enumerate(values)])
        n_ch = 1 if clean.ndim == 2 else 3
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
def random_rain_params(rng: RNGLike = None) -> dict[str, Any]:
    """Sample a realistic set of :func:`add_rain` keyword arguments.

    Parameters
    ----------
    rng : int, numpy.random.Generator or None
        Seed or generator.

    Returns
    -------
    dict
        Keys ``density`` (log-uniform in 0.005-0.05), ``angle`` (-30..30),
        ``length`` (int, 10..40), ``width`` (0.5..2.5), ``opacity``
        (0.5..1.0) and ``layers`` (int, 1..3), ready for
        ``add_rain(image, **params, rng=rng)``.

    Examples
    --------
    >>> import numpy as np
    >>> p = random_rain_params(0)
    >>> sorted(p)
    ['angle', 'density', 'layers', 'length', 'opacity', 'width']
    >>> rainy, rain = add_rain(np.zeros((32, 32)), **p, rng=0)
    """
    gen = np.random.default_rng(rng)
    return {
        "density": float(math.exp(gen.uniform(math.log(0.005), math.log(0.05)))),
        "angle": float(gen.uniform(-30.0, 30.0)),
        "length": int(gen.integers(10, 41)),
        "width": float(gen.uniform(0.5, 2.5)),
        "opacity": float(gen.uniform(0.5, 1.0)),
        "layers": int(gen.integers(1, 4)),
    }


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


# --------------------------------------------------------------------------- style
#: colour matrix of :func:`film_look` (rows: output R, G, B): warmer, a little desaturated
FILM_MATRIX = np.array([[0.98, 0.16, -0.04], [0.06, 0.84, 0.06], [-0.10, 0.16, 0.70]], np.float32)
FILM_LIFT = 0.08  # black level
FILM_CURVE = 0.6  # share of the smoothstep S-curve in the tone curve
FILM_SHARPEN = (2.0, 0.6)  # unsharp mask: Gaussian sigma (px), amount


def film_look(image: Any) -> np.ndarray:
    """The project's fixed "film" style: colour matrix, S-shaped tone curve, unsharp mask.

    ``y = lift + (1 - lift) * ((1 - a) c + a * smoothstep(c))`` with
    ``c = clip(M @ rgb)``, then ``y + amount * (y - gaussian(y, sigma))``,
    clipped to ``[0, 1]``.  Deterministic and local (a pixel depends on its
    ``~4 sigma`` neighbourhood), so crops of the styled image are styled
    crops.  Grayscale images get the tone curve and sharpening only.

    Parameters
    ----------
    image : array_like
        ``(H, W)`` or ``(H, W, 3)``, uint8/uint16 or float in ``[0, 1]``.

    Returns
    -------
    numpy.ndarray
        ``float32`` in ``[0, 1]``, same shape.

    Examples
    --------
    >>> import numpy as np
    >>> y = film_look(np.full((8, 8, 3), 0.5, np.float32))
    >>> y.shape, y.dtype, bool(np.allclose(y, y[0, 0]))
    ((8, 8, 3), dtype('float32'), True)
    """
    x = _as_image(image)
    if x.ndim == 3:
        if x.shape[-1] != 3:
            raise ValueError(f"film_look takes grayscale or RGB images, got {x.shape[-1]} channels")
        x = x @ FILM_MATRIX.T
    c = np.clip(x, 0.0, 1.0)
    smooth = c * c * (3.0 - 2.0 * c)
    y = FILM_LIFT + (1.0 - FILM_LIFT) * ((1.0 - FILM_CURVE) * c + FILM_CURVE * smooth)
    sigma, amount = FILM_SHARPEN
    sig = (sigma, sigma, 0) if y.ndim == 3 else sigma
    y = y + amount * (y - ndi.gaussian_filter(y, sig, mode="reflect"))
    return np.clip(y, 0.0, 1.0).astype(np.float32)
