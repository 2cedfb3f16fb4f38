"""Intensity and channels: image values to the model's range and back, image channels to the model's."""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_nlcl.model import ModelInfo


def plane_range(plane: np.ndarray, value_range: Any) -> tuple[float, float]:
    if value_range is not None and value_range != "plane":
        lo, hi = (float(v) for v in value_range)
        if not hi > lo:
            raise ValueError(f"value_range must be (low, high) with low < high, got {value_range}")
        return lo, hi
    if value_range is None and plane.dtype.kind in "ui":
        limits = np.iinfo(plane.dtype)
        return float(limits.min), float(limits.max)
    lo, hi = float(plane.min()), float(plane.max())
    if value_range is None and lo >= 0.0 and hi <= 1.0:
        return 0.0, 1.0
    if hi <= lo:
        hi = lo + 1.0  # constant plane: any range maps it back to itself
    return lo, hi


def from_unit(x: np.ndarray, lo: float, hi: float, dtype: np.dtype) -> np.ndarray:
    y = np.clip(x, 0.0, 1.0) * (hi - lo) + lo
    if dtype.kind in "ui":
        return np.rint(y).astype(dtype)
    return y.astype(dtype)


def to_model_channels(x, info: ModelInfo):
    """``(C, H, W)`` image tensor -> ``(N, C_model, H, W)`` batch, plus how to undo it."""
    c = x.shape[0]
    want = info.in_channels
    if want is None or want == c:
        return x[None], "same"
    if want == 3 and c == 1:
        return x.expand(3, -1, -1)[None], "gray_from_rgb"
    if want == 1:
        return x[:, None], "per_channel"
    raise ValueError(f"{info.name} expects {want} channels, the image has {c}")


def from_model_channels(y, mode: str, c: int):
    if mode == "same":
        y = y[0]
    elif mode == "gray_from_rgb":
        y = y[0].mean(dim=0, keepdim=True)
    else:  # per_channel
        y = y[:, 0]
    if y.shape[0] != c:  # e.g. a translator that outputs RGB for a gray image
        if c == 1:
            y = y.mean(dim=0, keepdim=True)
        else:
            raise ValueError(f"model returned {y.shape[0]} channels for a {c}-channel image")
    return y


def residual(image: Any, background: Any):
    """``image - background`` in the image's dtype (integers clipped at 0), lazily for dask: the rain layer."""
    import numpy as np

    dtype = np.dtype(image.dtype)
    is_dask = type(image).__module__.startswith("dask")
    if is_dask:
        import dask.array as xp
    else:
        xp = np
        image = np.asarray(image)
    diff = image.astype(np.float32) - background.astype(np.float32)
    if np.issubdtype(dtype, np.integer):
        diff = xp.clip(diff, 0, np.iinfo(dtype).max).astype(dtype)
    elif dtype != np.float32:
        diff = diff.astype(dtype)
    return diff
