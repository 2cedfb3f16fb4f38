"""Layer-name checks and listings shared by the taps and the frozen trunks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["check_layer_names", "format_names"]


def format_names(names: Sequence[str], limit: int = 60) -> str:
    names = list(names)
    shown = ", ".join(repr(n) for n in names[:limit])
    if len(names) > limit:
        shown += f", ... ({len(names) - limit} more)"
    return shown


def check_layer_names(layers: Any) -> list[str]:
    if isinstance(layers, str):
        raise TypeError(
            f"layers must be a sequence of layer names, got the string {layers!r}; "
            f"write [{layers!r}]"
        )
    try:
        layers = list(layers)
    except TypeError:
        raise TypeError(
            f"layers must be a sequence of layer names, got {type(layers).__name__}"
        ) from None
    if not layers:
        raise ValueError("layers is empty: name at least one layer to extract")
    bad = [n for n in layers if not isinstance(n, str)]
    if bad:
        raise TypeError(f"layer names must be strings, got {bad!r}")
    return layers
