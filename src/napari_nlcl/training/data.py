"""Training data: random crops read lazily from arrays, stacks or folders.

An :class:`ImageSource` gives access to the frames of one data set (a numpy
or dask stack, a single image, a folder of files) one frame at a time, so a
1,000-frame lazy stack is never loaded whole; a few recently read frames are
kept in a small cache.  :class:`RandomCrops` draws batches of random crops
(optionally with zooms, flips and 90-degree rotations) from one or more named
sources, either *paired* (same frame and crop in every source, for
ground-truth pairs) or *unpaired* (independent draws per source, for
unsupervised and translation training).  All randomness comes from one
seedable :class:`numpy.random.Generator` whose state is saved in checkpoints,
so a resumed run draws exactly the crops an uninterrupted run would have.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

#: the smallest crop worth training on (the Train widget's minimum)
MIN_CROP = 16


def _to_float01(plane: np.ndarray, keep_all: bool = False) -> np.ndarray:
    """Frame -> float32 (C, H, W) in [0, 1] (dtype range for integers, min/max otherwise).

    A fourth channel is taken as alpha and dropped unless ``keep_all``.
    """
    from napari_nlcl.checks import check_finite_plane
    from napari_nlcl.inference.intensity import plane_range

    check_finite_plane(plane)
    lo, hi = plane_range(plane, None)
    out = (plane.astype(np.float32) - lo) / (hi - lo)
    if out.ndim == 2:
        out = out[None]
    else:
        out = np.moveaxis(out, -1, 0)
    if out.shape[0] == 4 and not keep_all:  # RGBA: alpha is not image content
        out = out[:3]
    return np.ascontiguousarray(out)


def _channels_last(data: Any, channel_axis: int, name: str) -> Any:
    """``data`` (numpy or dask) with its ``channel_axis`` moved last, after checking it."""
    if not hasattr(data, "ndim") or data.ndim < 3:
        raise ValueError(f"{name}: channel_axis needs an array with channels and 2 spatial axes")
    if not -data.ndim <= channel_axis < data.ndim:
        raise ValueError(f"{name}: channel_axis {channel_axis} is out of range for {data.ndim} axes")
    if hasattr(data, "dask"):
        import dask.array as da

        return da.moveaxis(data, channel_axis, -1)
    return np.moveaxis(np.asarray(data), channel_axis, -1)


class ImageSource:
    """Frames of one data set, read one at a time.

    Parameters
    ----------
    data : numpy array, dask array, path to a folder/file, or list of arrays
        ``(H, W)``, ``(H, W, C)`` (a single image) or ``(N, H, W[, C])`` (a
        stack); a trailing axis of 3 or 4 is taken as colour.  Leading axes
        beyond the first are flattened.
    rgb : bool, optional
        Whether the last axis is colour; guessed when ``None``.
    channel_axis : int, optional
        For arrays with any number of channels (multi-channel microscopy):
        the axis that holds them.  All channels are kept (a fourth one is
        not taken as alpha); the frames are the remaining leading axes.
    cache : int
        How many decoded frames to keep.
    name : str
        Used in messages.
    """

    def __init__(self, data: Any, *, rgb: bool | None = None, channel_axis: int | None = None,
                 cache: int = 4, name: str = "data"):
        self.name = name
        self.multichannel = channel_axis is not None
        if self.multichannel:
            data, rgb = _channels_last(data, channel_axis, name), True
        self.reads = 0  # frames actually read (tests and benchmarks count them)
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cache_size = max(int(cache), 0)
        self._paths = None
        if isinstance(data, (list, tuple)) and data and all(isinstance(d, (str, os.PathLike)) for d in data):
            self._init_files([Path(d) for d in data], rgb, f"{name}: {len(data)} image files")
            return
        if isinstance(data, (str, os.PathLike)) and Path(data).is_dir():
            from napari_nlcl.io import list_images

            files = list_images(data)
            if not files:
                raise ValueError(f"{name}: folder {data} holds no images")
            # a folder of photos may mix sizes: read file by file instead of as one stack
            self._init_files(files, rgb, f"{name}: {Path(data)} ({len(files)} images)")
            return
        if isinstance(data, (str, os.PathLike)):
            from napari_nlcl.io import read_image

            self.description = f"{name}: {Path(data)}"
            data = read_image(data)
        elif isinstance(data, (list, tuple)):
            self._init_list(data, rgb)
            return
        else:
            self.description = f"{name}: {type(data).__name__} {tuple(getattr(data, 'shape', ()))}"
        self._init_array(data, rgb)

    def _init_list(self, data: list | tuple, rgb: bool | None) -> None:
        """A list of arrays: frames of possibly different sizes."""
        from napari_nlcl.checks import SUPPORTED_DTYPES

        if not data:
            raise ValueError(f"{self.name}: the list of images is empty")
        self.description = f"{self.name}: list of {len(data)} images"
        self._list = [np.asarray(d) if not hasattr(d, "dask") else d for d in data]
        first = self._list[0]
        self.rgb = rgb if rgb is not None else (first.ndim == 3 and first.shape[-1] in (3, 4))
        self._frames = None
        self._blocks = None
        self._check_dtype(first.dtype, SUPPORTED_DTYPES)
        self.frame_shape = tuple(first.shape[:2])

    def _init_array(self, data: Any, rgb: bool | None) -> None:
        """One numpy or dask array: an image, or a stack along its leading axes."""
        from napari_nlcl.checks import SUPPORTED_DTYPES

        name = self.name
        if not hasattr(data, "shape") or not hasattr(data, "dtype"):
            raise TypeError(
                f"{name}: expected a numpy or dask array, a list of arrays or a path, "
                f"got {type(data).__name__}"
            )
        self._check_dtype(data.dtype, SUPPORTED_DTYPES)
        if data.ndim < 2 or any(s == 0 for s in data.shape):
            raise ValueError(f"{name}: expected an image or a stack of images, got shape {data.shape}")
        self.rgb = rgb if rgb is not None else (data.ndim >= 3 and data.shape[-1] in (3, 4))
        plane_ndim = 3 if self.rgb else 2
        if data.ndim == plane_ndim:
            data = data[None]
        lead = data.shape[: data.ndim - plane_ndim]
        self._frames = data.reshape((int(np.prod(lead)),) + tuple(data.shape[-plane_ndim:]))
        self._list = None
        self._blocks = None
        if hasattr(self._frames, "dask"):
            # One delayed task per frame: computing a slice of a long dask stack
            # culls the whole graph every time (~0.1 s for 1,000 frames); a
            # frame's own task computes in a few ms.
            frames = self._frames.rechunk((1,) + tuple(self._frames.shape[1:]))
            self._blocks = frames.to_delayed(optimize_graph=True).ravel()
        self.frame_shape = tuple(self._frames.shape[1:3])

    def _init_files(self, files: list[Path], rgb: bool | None, description: str) -> None:
        from napari_nlcl.checks import SUPPORTED_DTYPES
        from napari_nlcl.io import read_file

        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise FileNotFoundError(f"{self.name}: image file(s) not found: {', '.join(missing[:3])}")
        self.description = description
        self._paths = list(files)
        self._list = None
        self._frames = None
        self._blocks = None
        first = np.asarray(read_file(files[0]))
        self._check_dtype(first.dtype, SUPPORTED_DTYPES)
        if rgb is None:  # decided now, the same for every order of the files: colour if any is
            rgb = (first.ndim == 3 and first.shape[-1] in (3, 4)) or any(_is_colour_file(f) for f in files[1:])
        self.rgb = rgb
        self._first_shape = first.shape if not (rgb and first.ndim == 2) else first.shape + (3,)
        self.frame_shape = tuple(first.shape[:2])

    @staticmethod
    def _check_dtype(dtype: Any, supported: tuple) -> None:
        if np.dtype(dtype).type not in supported:
            raise TypeError(
                f"unsupported dtype {np.dtype(dtype)}; use uint8, uint16, int16 or float images"
            )

    def __len__(self) -> int:
        if self._paths is not None:
            return len(self._paths)
        return len(self._list) if self._list is not None else int(self._frames.shape[0])

    @property
    def channels(self) -> int:
        if not self.rgb:
            return 1
        if self._paths is not None:
            shape = self._first_shape
        else:
            shape = self._list[0].shape if self._list is not None else self._frames.shape
        return int(shape[-1]) if self.multichannel else min(int(shape[-1]), 3)

    def frame(self, index: int) -> np.ndarray:
        """Frame ``index`` as float32 ``(C, H, W)`` in [0, 1]."""
        if index in self._cache:
            self._cache.move_to_end(index)
            return self._cache[index]
        if self._paths is not None:
            from napari_nlcl.io import read_file

            raw = read_file(self._paths[index])
            if self.rgb and (raw.ndim != 3 or raw.shape[-1] not in (3, 4)):
                raw = np.repeat(raw[..., None], 3, -1) if raw.ndim == 2 else raw
            elif not self.rgb and raw.ndim == 3:
                raise ValueError(f"{self.name}: {self._paths[index]} is a colour image in a grayscale set")
        elif self._blocks is not None:
            raw = self._blocks[index].compute(scheduler="sync")[0]
        elif self._list is not None:
            raw = self._list[index]
        else:
            raw = self._frames[index]
        arr = _to_float01(np.asarray(raw), keep_all=self.multichannel)
        self.reads += 1
        if self._cache_size:
            self._cache[index] = arr
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return arr


_GREY_MODES = {"1", "L", "I", "I;16", "I;16B", "I;16L", "F"}
_COLOUR_MODES = {"RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"}


def _is_colour_file(path: Path) -> bool:
    """Whether an image file holds colour, from its header where PIL knows the format."""
    try:
        from PIL import Image

        with Image.open(path) as im:
            if im.mode in _GREY_MODES:
                return False
            if im.mode in _COLOUR_MODES:
                return True
    except Exception:  # noqa: BLE001 - a format PIL cannot open (many TIFFs): read it instead
        pass
    from napari_nlcl.io import read_file

    arr = np.asarray(read_file(path))
    return arr.ndim == 3 and arr.shape[-1] in (3, 4)


def _crop_from(frame: np.ndarray, size: int, zoom: float, rng: np.random.Generator) -> np.ndarray:
    """A random crop covering ``size / zoom`` px, returned at ``size`` px (bilinear)."""
    _, h, w = frame.shape
    extent = max(1, int(round(size / zoom)))
    extent = min(extent, h, w)
    y = int(rng.integers(0, h - extent + 1))
    x = int(rng.integers(0, w - extent + 1))
    crop = frame[:, y : y + extent, x : x + extent]
    if extent != size:
        import torch
        import torch.nn.functional as F

        t = torch.from_numpy(np.ascontiguousarray(crop))[None]
        crop = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)[0].numpy()
    return crop


def _augment(crop: np.ndarray, code: int) -> np.ndarray:
    """One of the 8 flips/rotations of the square (code 0-7)."""
    if code & 4:
        crop = crop[:, :, ::-1]
    return np.rot90(crop, k=code & 3, axes=(1, 2))


class RandomCrops:
    """Endless batches of random crops from named sources.

    Parameters
    ----------
    sources : mapping of name -> ImageSource or anything ImageSource accepts
    crop : int
        Crop size in pixels (square).
    batch_size : int
    paired : bool
        Same frame, crop and augmentation in every source (ground-truth pairs).
    augment : bool
        Random flips and 90-degree rotations.
    zoom : (float, float)
        Range of zoom factors; a crop covers ``crop / zoom`` pixels and is
        resized to ``crop`` (single-image mode uses e.g. ``(0.5, 2.0)``).
    seed : int or numpy.random.Generator
    """

    def __init__(
        self,
        sources: Mapping[str, Any],
        *,
        crop: int = 128,
        batch_size: int = 1,
        paired: bool = False,
        augment: bool = True,
        zoom: tuple[float, float] = (1.0, 1.0),
        seed: Any = 0,
    ):
        if not sources:
            raise ValueError("give at least one data source")
        if not isinstance(crop, (int, np.integer)) or crop < 8:
            raise ValueError(f"crop must be an integer of at least 8 px, got {crop!r}")
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        lo, hi = zoom
        if not 0 < lo <= hi:
            raise ValueError(f"zoom must be (low, high) with 0 < low <= high, got {zoom}")
        self.sources = {
            k: v if isinstance(v, ImageSource) else ImageSource(v, name=k) for k, v in sources.items()
        }
        self.crop, self.batch_size, self.paired = int(crop), int(batch_size), paired
        self.augment, self.zoom = augment, (float(lo), float(hi))
        for name, src in self.sources.items():
            h, w = src.frame_shape
            smallest = int(np.ceil(self.crop / hi))
            if min(h, w) < smallest:
                largest = int(min(h, w) * hi)  # the largest crop these images allow
                advice = (f"use a crop of at most {largest} px" if largest >= MIN_CROP else
                          f"they are too small to train on (crops start at {MIN_CROP} px); use larger images")
                raise ValueError(
                    f"{name}: images are {h}x{w} px, smaller than the {self.crop} px crop; {advice}")
        if paired:
            lengths = {len(s) for s in self.sources.values()}
            shapes = {s.frame_shape for s in self.sources.values()}
            if len(lengths) > 1 or len(shapes) > 1:
                raise ValueError("paired sources need the same number of frames and the same frame size")
        self.rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)

    def describe(self) -> dict[str, Any]:
        return {
            name: {"frames": len(s), "frame_shape": list(s.frame_shape), "channels": s.channels,
                   "description": s.description}
            for name, s in self.sources.items()
        }

    # checkpoint support -------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        return {"bit_generator": self.rng.bit_generator.state}

    def set_state(self, state: Mapping[str, Any]) -> None:
        self.rng.bit_generator.state = dict(state["bit_generator"])

    # sampling ---------------------------------------------------------------
    def _one(self, source: ImageSource, index: int, zoom: float, code: int, rng) -> np.ndarray:
        crop = _crop_from(source.frame(index), self.crop, zoom, rng)
        return _augment(crop, code) if self.augment else crop

    def sample(self) -> dict[str, Any]:
        import torch

        batch: dict[str, list[np.ndarray]] = {k: [] for k in self.sources}
        for _ in range(self.batch_size):
            if self.paired:
                first = next(iter(self.sources.values()))
                index = int(self.rng.integers(len(first)))
                zoom = float(self.rng.uniform(*self.zoom))
                code = int(self.rng.integers(8))
                state = self.rng.bit_generator.state
                for name, src in self.sources.items():
                    self.rng.bit_generator.state = state  # same crop position everywhere
                    batch[name].append(self._one(src, index, zoom, code, self.rng))
            else:
                for name, src in self.sources.items():
                    index = int(self.rng.integers(len(src)))
                    zoom = float(self.rng.uniform(*self.zoom))
                    code = int(self.rng.integers(8))
                    batch[name].append(self._one(src, index, zoom, code, self.rng))
        return {k: torch.from_numpy(np.ascontiguousarray(np.stack(v))) for k, v in batch.items()}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        while True:
            yield self.sample()


def check_data_fits(recipe: Any, data: Any) -> int | None:
    """Refuse data that ``recipe`` cannot train on (a missing source, a channel count its network
    does not take) before the first step; returns the channels the network takes (None: any).

    Grey data on a colour network is fine: it is replicated to the network's channels, as
    inference does.
    """
    missing = [s for s in recipe.data_sources if hasattr(data, "sources") and s not in data.sources]
    if missing:
        raise ValueError(f"recipe {recipe.name!r} needs data sources {list(recipe.data_sources)}; missing {missing}")
    want = getattr(getattr(recipe.inference_model(), "info", None), "in_channels", None)
    for name, src in (data.sources.items() if hasattr(data, "sources") else ()):
        c = getattr(src, "channels", None)
        if want and c and c != want and c != 1:
            raise ValueError(
                f"{name}: the images have {c} channels but the {recipe.name} network takes "
                f"{want}; choose {want} channels (or one) of the data")
    return want
