"""Input checks shared by every front end, the inference engine and the classical methods.

Each check raises ``TypeError`` or ``ValueError`` with a message that says
what to do; none imports torch (tensor checks take any tensor-like object).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from napari_nlcl.model import ModelInfo

SUPPORTED_DTYPES = (np.uint8, np.uint16, np.int16, np.float16, np.float32, np.float64)


def is_dask(image: Any) -> bool:
    try:
        import dask.array as da
    except ImportError:  # pragma: no cover - dask is a dependency
        return False
    return isinstance(image, da.Array)


def check_model(model: Any) -> ModelInfo:
    info = getattr(model, "info", None)
    if not isinstance(info, ModelInfo) or not callable(model):
        raise TypeError(
            "model must be a torch module with an `info: ModelInfo` attribute "
            "(for example napari_nlcl.load_model('dcp')), "
            f"got {type(model).__name__}"
        )
    return info


#: with channel_axis="auto", a trailing axis this short (and not 3 or 4) is refused as ambiguous
AMBIGUOUS_TRAILING = 16


def resolve_channel_axis(shape: tuple[int, ...], channel_axis: Any) -> int | None:
    """Normalise ``channel_axis``; ``"auto"`` means a trailing axis of 3 or 4 is RGB(A).

    A short trailing axis of another length (2, 5, ... 16 entries, much shorter
    than the axis before it) is refused with ``"auto"``: it is far more likely
    channels than an image a few pixels wide, and guessing either way would
    process the data along the wrong axis.
    """
    ndim = len(shape)
    if isinstance(channel_axis, str) and channel_axis == "auto":
        if ndim >= 3 and shape[-1] in (3, 4):
            return ndim - 1
        if ndim >= 3 and shape[-1] <= AMBIGUOUS_TRAILING and shape[-2] >= 4 * shape[-1]:
            # (H, W, 2), (96, 96, 16): channels, or planes a few pixels wide? never guess
            raise ValueError(
                f"the last axis of shape {tuple(shape)} has only {shape[-1]} entries: if these are "
                "channels, pass channel_axis=-1; if they really are image columns, pass channel_axis=None"
            )
        return None
    if channel_axis is None:
        return None
    if not isinstance(channel_axis, (int, np.integer)):
        raise TypeError(f"channel_axis must be an int, None or 'auto', got {channel_axis!r}")
    if not -ndim <= channel_axis < ndim:
        raise ValueError(f"channel_axis={channel_axis} is out of range for an image with {ndim} axes")
    return int(channel_axis) % ndim


def validate_image(image: Any, info: ModelInfo, channel_axis: Any) -> int | None:
    """Check type, dtype, shape and size; return the resolved channel axis."""
    if not (isinstance(image, np.ndarray) or is_dask(image)):
        if isinstance(image, (list, tuple)) and image and all(
                isinstance(level, np.ndarray) or is_dask(level) for level in image):
            raise TypeError(
                "got a list of arrays (a multiscale image?); pass a single numpy or dask array, "
                "e.g. the first (full-resolution) level"
            )
        if isinstance(image, (list, tuple)):
            raise TypeError(f"got a Python {type(image).__name__}; pass a numpy or dask array, "
                            "e.g. numpy.asarray(your_data, dtype=numpy.float32)")
        raise TypeError(f"image must be a numpy or dask array, got {type(image).__name__}")
    dtype = np.dtype(image.dtype)
    if dtype.type not in SUPPORTED_DTYPES:
        raise TypeError(
            f"unsupported dtype {dtype}; supported: uint8, uint16, int16, float16/32/64. "
            f"Convert first, e.g. image.astype(np.float32)"
        )
    if image.ndim < 2:
        raise ValueError(f"image must have at least 2 dimensions (height, width), got shape {image.shape}")
    if any(s == 0 for s in image.shape):
        raise ValueError(f"image is empty (shape {image.shape})")
    axis = resolve_channel_axis(tuple(image.shape), channel_axis)
    if image.ndim - (axis is not None) < 2:
        raise ValueError(
            f"image of shape {image.shape} with channel_axis={axis} has no 2-D plane; "
            "pass channel_axis=None for a grayscale image"
        )
    h, w = plane_hw(image.shape, axis)
    if min(h, w) < info.min_size:
        raise ValueError(
            f"image planes are {h}x{w} px but {info.name} needs at least "
            f"{info.min_size}x{info.min_size}; upscale or pad the image"
        )
    if axis is not None:
        c = image.shape[axis]
        if info.in_channels not in (None, 1, c) and not (info.in_channels == 3 and c in (1, 4)):
            raise ValueError(
                f"{info.name} expects {info.in_channels} channels but the image has {c} "
                f"along axis {axis}; select channels or set channel_axis"
            )
    return axis


def plane_hw(shape: tuple[int, ...], axis: int | None) -> tuple[int, int]:
    spatial = [s for i, s in enumerate(shape) if i != axis]
    return spatial[-2], spatial[-1]


def check_finite_plane(plane: np.ndarray) -> None:
    if plane.dtype.kind == "f" and not np.isfinite(plane).all():
        raise ValueError("image contains NaN or infinite values; replace them first (e.g. np.nan_to_num)")


def check_tensor_image(x: Any, name: str = "x", channels: int | None = None) -> None:
    """Raise a clear error unless ``x`` is a float tensor ``(B, C, H, W)``."""
    from torch import Tensor

    if not isinstance(x, Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor of shape (B, C, H, W), got {type(x).__name__}; "
            "convert numpy arrays with torch.from_numpy(a).float() and add batch/channel axes"
        )
    if not x.is_floating_point():
        raise TypeError(
            f"{name} must be a floating point tensor with values in [0, 1], got dtype {x.dtype}; "
            "pass e.g. x.float() / 255 for uint8 images"
        )
    if x.ndim != 4:
        raise ValueError(
            f"{name} must have shape (B, C, H, W), got shape {tuple(x.shape)}; "
            "add missing axes with x[None] (batch) or x[:, None] (channel)"
        )
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"{name} must have {channels} channel(s), got shape {tuple(x.shape)}")
    if x.shape[-1] < 1 or x.shape[-2] < 1:
        raise ValueError(f"{name} must have non-empty height and width, got shape {tuple(x.shape)}")


def check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def check_float(value: Any, name: str, lo: float, hi: float, lo_open: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    ok = (lo < v if lo_open else lo <= v) and v <= hi
    if not ok or math.isnan(v):
        bracket = "(" if lo_open else "["
        raise ValueError(f"{name} must lie in {bracket}{lo}, {hi}], got {value!r}")
    return v


def check_finite_tensor(x: Any, name: str = "x") -> None:
    import torch

    if not bool(torch.isfinite(x).all()):
        raise ValueError(
            f"{name} contains NaN or infinite values; replace them first (e.g. torch.nan_to_num)"
        )
