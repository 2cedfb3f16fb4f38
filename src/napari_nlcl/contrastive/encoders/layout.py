"""VGG-style trunk configurations and the ``features`` layout (names, channels, strides)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["TINY_CFG", "VGG19_CFG", "trunk_layout", "trunk_state_shapes"]


VGG19_CFG: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
    512, 512, 512, 512, "M", 512, 512, 512, 512, "M",
)  # fmt: skip
TINY_CFG: tuple[int | str, ...] = (16, "M", 32, "M", 64, "M", 96, "M", 128)


def trunk_layout(cfg: Sequence[int | str], in_channels: int = 3) -> list[dict[str, Any]]:
    """Describe the ``features`` sequence a VGG-style config builds.

    One dict per module, at its torchvision ``features`` index, with keys
    ``name`` (``convB_K``, ``reluB_K`` or ``poolB``), ``kind`` (``conv``,
    ``relu``, ``pool``), ``channels`` (output channels), ``stride`` (w.r.t.
    the input) and, for convolutions, ``in_channels``.
    """
    layout: list[dict[str, Any]] = []
    block, k, c, stride = 1, 0, in_channels, 1
    for v in cfg:
        if v == "M":
            stride *= 2
            layout.append({"name": f"pool{block}", "kind": "pool", "channels": c, "stride": stride})
            block, k = block + 1, 0
        else:
            k += 1
            layout.append(
                {"name": f"conv{block}_{k}", "kind": "conv", "channels": int(v),
                 "in_channels": c, "stride": stride}
            )  # fmt: skip
            layout.append(
                {"name": f"relu{block}_{k}", "kind": "relu", "channels": int(v), "stride": stride}
            )
            c = int(v)
    return layout


def trunk_state_shapes(
    cfg: Sequence[int | str], in_channels: int = 3
) -> dict[str, tuple[int, ...]]:
    """``{"features.N.weight": shape, "features.N.bias": shape}`` of the full trunk."""
    shapes: dict[str, tuple[int, ...]] = {}
    for i, entry in enumerate(trunk_layout(cfg, in_channels)):
        if entry["kind"] == "conv":
            shapes[f"features.{i}.weight"] = (entry["channels"], entry["in_channels"], 3, 3)
            shapes[f"features.{i}.bias"] = (entry["channels"],)
    return shapes
