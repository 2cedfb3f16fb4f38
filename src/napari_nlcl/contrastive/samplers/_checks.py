"""Argument checks shared by the samplers (messages name the function and say what to pass)."""

from __future__ import annotations

import numbers
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "check_generator",
    "check_in_range",
    "check_index_tensor",
    "check_int",
    "check_maps",
    "check_positive_index",
]


def check_int(value: Any, name: str, fn: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{fn}: {name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{fn}: {name} must be >= {minimum}, got {value}")
    return int(value)


def check_generator(generator: Any, fn: str, why: str = "") -> torch.Generator:
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


def check_maps(x: Any, name: str, fn: str, *, floating: bool = False) -> None:
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


def check_index_tensor(t: Any, name: str, fn: str, shape_doc: str) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"{fn}: {name} must be an integer torch.Tensor {shape_doc}, "
                        f"got {type(t).__name__}")
    if not _is_integer_dtype(t):
        raise TypeError(f"{fn}: {name} must have an integer dtype (e.g. torch.long), "
                        f"got {t.dtype}; pass {name}.long()")


def check_in_range(coords: Tensor, h_max: int, w_max: int, fn: str, name: str, hint: str) -> None:
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


def check_positive_index(
    positive_index: Any, anchors: Tensor, n: int, fn: str
) -> Tensor:
    """``positive_index`` ``(M,)`` long in ``[0, n)``, never equal to its anchor."""
    check_index_tensor(positive_index, "positive_index", fn, "of shape (M,)")
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
