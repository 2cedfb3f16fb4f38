"""The project's fixed photographic style, :func:`film_look`.

A deterministic colour matrix, S-shaped tone curve with lifted blacks and
unsharp masking: the project's own second domain for the translation sample
data and for the translation benchmark, where the model must learn it from
unpaired images.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage as ndi

from .convert import as_image

__all__ = ["FILM_CURVE", "FILM_LIFT", "FILM_MATRIX", "FILM_SHARPEN", "film_look"]


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
    x = as_image(image)
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
