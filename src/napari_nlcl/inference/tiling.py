"""Overlapping tiles with blended seams.

The plan is computed without torch (:func:`plan_tiles`, :func:`blend_window`);
:func:`iter_tiled_apply` runs a network over one image plane tile by tile and
is a generator, so callers can report progress and stop between tiles.

Exactness: a tile's pixels closer than ``margin`` to an edge it shares with
another tile get zero weight, and weights ramp up linearly over the rest of
the overlap.  If ``margin`` is at least the network's halo (half its receptive
field), every pixel that contributes to the blend was computed with its full
context, so the tiled result equals the untiled one up to float rounding.
Tiles start on multiples of ``size_multiple`` so that strided networks see the
same sampling phase as on the whole image.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass

import numpy as np

from napari_nlcl.model import ModelInfo


@dataclass(frozen=True)
class Tile:
    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def shape(self) -> tuple[int, int]:
        return (self.y1 - self.y0, self.x1 - self.x0)


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def tile_starts(length: int, tile: int, overlap: int, multiple: int = 1) -> list[int]:
    """Start offsets of tiles of size ``tile`` covering ``range(length)``.

    Consecutive tiles overlap by at least ``overlap`` pixels; every start is a
    multiple of ``multiple``.  The last tile ends at ``length`` (it may be up to
    ``multiple - 1`` pixels longer than ``tile`` to keep its start aligned).
    """
    if length < 1 or tile < 1:
        raise ValueError(f"length and tile must be positive, got {length} and {tile}")
    if tile >= length:
        return [0]
    step = ((tile - overlap) // multiple) * multiple
    if step < multiple:
        raise ValueError(
            f"tile size {tile} leaves no room to advance past an overlap of {overlap} px; "
            f"use a tile of at least {overlap + multiple} px or a smaller overlap"
        )
    last = ((length - tile) // multiple) * multiple
    starts = list(range(0, last, step))
    starts.append(last)
    return starts


def plan_tiles(
    height: int, width: int, *, tile: int, overlap: int, multiple: int = 1
) -> list[Tile]:
    """Row-major list of tiles covering a ``height x width`` plane."""
    tiles = []
    ys = tile_starts(height, tile, overlap, multiple)
    xs = tile_starts(width, tile, overlap, multiple)
    for i, y0 in enumerate(ys):
        y1 = height if i == len(ys) - 1 else y0 + tile
        for j, x0 in enumerate(xs):
            x1 = width if j == len(xs) - 1 else x0 + tile
            tiles.append(Tile(y0, y1, x0, x1))
    return tiles


def _ramp(n: int, margin: int, width: int) -> np.ndarray:
    """Weights rising from 0 (first ``margin`` pixels) to 1 over ``width - 2 margin``."""
    i = np.arange(n, dtype=np.float64)
    span = max(width - 2 * margin + 1, 1)
    return np.clip((i + 1 - margin) / span, 0.0, 1.0)


def blend_window(
    tile: Tile, height: int, width: int, *, overlap: int, margin: int
) -> np.ndarray:
    """2-D blending weights of ``tile`` (float32, ``tile.shape``).

    Edges on the image border keep weight 1; edges shared with another tile
    ramp from 0 to 1.
    """
    h, w = tile.shape
    wy = np.ones(h)
    wx = np.ones(w)
    if tile.y0 > 0:
        wy = np.minimum(wy, _ramp(h, margin, overlap))
    if tile.y1 < height:
        wy = np.minimum(wy, _ramp(h, margin, overlap)[::-1])
    if tile.x0 > 0:
        wx = np.minimum(wx, _ramp(w, margin, overlap))
    if tile.x1 < width:
        wx = np.minimum(wx, _ramp(w, margin, overlap)[::-1])
    return np.outer(wy, wx).astype(np.float32)


def pad_to_multiple(x, multiple: int):
    """Pad the last two axes of a tensor at the bottom/right to a multiple (reflect)."""
    import torch.nn.functional as F

    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


def iter_tiled_apply(
    x,
    fn: Callable,
    *,
    tile: int,
    overlap: int,
    margin: int,
    multiple: int = 1,
    batch_size: int = 1,
    pass_tiles: bool = False,
) -> Generator[int, None, object]:
    """Apply ``fn`` to a ``(C, H, W)`` tensor in overlapping tiles.

    ``fn`` maps a ``(B, C, h, w)`` batch (h, w multiples of ``multiple``) to a
    ``(B, C', h, w)`` batch; with ``pass_tiles`` it is called as
    ``fn(batch, tiles)`` with the batch's :class:`Tile` s (to cut matching
    windows from other plane-sized maps).  Yields the number of tiles done after each batch
    and returns the blended ``(C', H, W)`` float32 tensor on the CPU.

    Use as ``out = yield from iter_tiled_apply(...)`` inside another generator.
    """
    import torch

    if x.ndim != 3:
        raise ValueError(f"expected a (C, H, W) tensor, got shape {tuple(x.shape)}")
    _, height, width = x.shape
    tile = _round_up(max(tile, multiple), multiple)
    tiles = plan_tiles(height, width, tile=tile, overlap=overlap, multiple=multiple)

    # group tiles of equal shape so they can be batched
    groups: dict[tuple[int, int], list[Tile]] = {}
    for t in tiles:
        groups.setdefault(t.shape, []).append(t)

    out = None
    weight = torch.zeros((1, height, width), dtype=torch.float32)
    done = 0
    for shape, members in groups.items():
        for k in range(0, len(members), batch_size):
            batch_tiles: Sequence[Tile] = members[k : k + batch_size]
            batch = torch.stack([x[:, t.y0 : t.y1, t.x0 : t.x1] for t in batch_tiles])
            padded = pad_to_multiple(batch, multiple)
            result = fn(padded, batch_tiles) if pass_tiles else fn(padded)
            result = result[..., : shape[0], : shape[1]].detach().to("cpu", torch.float32)
            if out is None:
                out = torch.zeros((result.shape[1], height, width), dtype=torch.float32)
            for t, r in zip(batch_tiles, result):
                wgt = torch.from_numpy(
                    blend_window(t, height, width, overlap=overlap, margin=margin)
                )
                out[:, t.y0 : t.y1, t.x0 : t.x1] += r * wgt
                weight[:, t.y0 : t.y1, t.x0 : t.x1] += wgt
            done += len(batch_tiles)
            yield done
    assert out is not None
    return out / weight.clamp_min(1e-12)


def count_tiles(height: int, width: int, *, tile: int, overlap: int, multiple: int = 1) -> int:
    tile = _round_up(max(tile, multiple), multiple)
    return len(plan_tiles(height, width, tile=tile, overlap=overlap, multiple=multiple))


def default_overlap(info: ModelInfo) -> int:
    """Overlap that makes tiling exact for ``info``: twice the halo plus slack."""
    m = info.size_multiple
    return -(-(2 * info.halo + 8) // m) * m


def check_tiling_args(
    info: ModelInfo, tile: int, overlap: int | None, batch_size: int,
    plane_hw: tuple[int, int] | None = None,
):
    if not isinstance(tile, (int, np.integer)) or tile < 1:
        raise ValueError(f"tile must be a positive integer (pixels), got {tile!r}")
    if overlap is None:
        overlap = default_overlap(info)
    if not isinstance(overlap, (int, np.integer)) or overlap < 0:
        raise ValueError(f"overlap must be a non-negative integer, got {overlap!r}")
    needs_tiles = plane_hw is None or max(plane_hw) > tile
    if tile <= overlap and needs_tiles:
        raise ValueError(
            f"tile ({tile} px) must be larger than the overlap ({overlap} px); "
            f"{info.name} needs an overlap of {default_overlap(info)} px for seamless tiles"
        )
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    return int(tile), int(overlap), int(batch_size)
