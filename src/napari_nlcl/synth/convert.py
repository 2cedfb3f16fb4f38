"""Value conversions and checks shared by the :mod:`napari_nlcl.synth` modules.

:func:`to_float01` turns ``uint8``/``uint16``/float images into ``float32`` in
``[0, 1]``; :func:`as_image` adds the shape check (grayscale or RGB) and
:func:`as_number` the check of a scalar parameter, with the error messages all
synthesis functions share.  ``RNGLike`` is what every ``rng`` argument takes.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Union

import numpy as np

__all__ = ["RNGLike", "as_image", "as_number", "to_float01"]

RNGLike = Union[int, np.random.Generator, None]


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


def as_image(image: Any) -> np.ndarray:
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


def as_number(name: str, value: Any) -> float:
    """``value`` as a finite ``float``; ``name`` is the parameter named in the errors."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return value
