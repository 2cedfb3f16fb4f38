"""Devices: which exist, which one ``"auto"`` means, and what to do when one runs out of memory."""

from __future__ import annotations

import logging
import warnings
from typing import Any

from napari_nlcl.model import ModelInfo

log = logging.getLogger("napari_nlcl.inference")

#: the smallest tile an out-of-memory retry shrinks to
MIN_TILE = 64


def available_devices() -> list[str]:
    """Device strings usable here, best first, always ending with ``"cpu"``."""
    import torch

    devices = [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        devices.append("mps")
    devices.append("cpu")
    return devices


def select_device(device: Any = "auto"):
    """Resolve ``"auto"`` (CUDA, then Apple MPS, then CPU) or honour an explicit device."""
    import torch

    if device is None or device == "auto":
        return torch.device(available_devices()[0])
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"unknown device {device!r}; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"
        ) from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for but CUDA is not available; use 'auto' or 'cpu'")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(
            f"device {device!r} does not exist: {torch.cuda.device_count()} CUDA device(s) found"
        )
    if dev.type == "mps" and not (
        getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    ):
        raise ValueError(f"device {device!r} was asked for but Apple MPS is not available; use 'auto' or 'cpu'")
    return dev


def is_oom(exc: BaseException) -> bool:
    import torch

    if isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def shrink_tile_after_oom(exc: BaseException, dev, tile: int, overlap: int, info: ModelInfo) -> int:
    import torch

    if dev.type == "cuda":
        torch.cuda.empty_cache()
    new_tile = -(-(tile // 2) // info.size_multiple) * info.size_multiple
    floor = max(MIN_TILE, overlap + info.size_multiple, info.min_size)
    if tile <= floor or new_tile < floor:
        raise MemoryError(
            f"out of memory on {dev} even with {tile} px tiles; use device='cpu', "
            "a smaller batch_size or a smaller model"
        ) from exc
    msg = f"out of memory on {dev} with {tile} px tiles; retrying with {new_tile} px tiles"
    warnings.warn(msg, RuntimeWarning, stacklevel=3)
    log.warning(msg)
    return new_tile
