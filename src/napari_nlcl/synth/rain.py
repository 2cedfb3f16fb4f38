"""Synthetic rain: :func:`add_rain` and :func:`random_rain_params`.

:func:`add_rain` adds rain streaks.  The result obeys the decomposition
``O = B + R`` used by the deraining model: it returns the rainy image ``O``
*and* the rain layer ``R = O - B`` (``R >= 0``).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import fft as _fft
from scipy import ndimage as ndi

from .convert import RNGLike, as_image, as_number

__all__ = ["add_rain", "random_rain_params"]

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
def _check_rain_params(p: Mapping[str, Any]) -> dict[str, float]:
    out = {k: as_number(k, p[k]) for k in _RAIN_KEYS}
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
    clean = as_image(image)
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
