"""Built-in sample data, generated from scikit-image's bundled images.

Everything is made on the fly from photos bundled with scikit-image
(``rocket``: a SpaceX launch photo released into the public domain; the
translation pair uses ``astronaut``, ``rocket``, ``coffee`` and ``chelsea``,
all under scikit-image's data licence, which allows redistribution) with the
project's own synthesis and style (:mod:`napari_nlcl.synth`), with fixed
seeds, so nothing is downloaded and the results are reproducible.  ``sample_data/`` in the repository holds PNG copies
written by :func:`write_samples` (``python sample_data/generate.py``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

STACK_FRAMES = 20


@dataclass
class Sample:
    data: Any
    name: str
    description: str
    layer_kwargs: dict[str, Any] = field(default_factory=dict)


def _rocket() -> np.ndarray:
    from skimage import data

    return data.rocket()  # (427, 640, 3) uint8


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(x, 0.0, 1.0) * 255).astype(np.uint8)


def hazy_scene() -> Sample:
    """The launch pad under synthetic haze (depth: sky far, ground near)."""
    from napari_nlcl.synth import add_haze, random_depth

    clean = _rocket()
    depth = random_depth(clean.shape[:2], rng=7, ramp=0.8, smoothness=0.2)
    hazy, _ = add_haze(clean, beta=1.8, airlight=(0.86, 0.87, 0.9), depth=depth, rng=7)
    return Sample(_to_uint8(hazy), "hazy scene", "synthetic haze, beta 1.8", {"rgb": True})


def _rain_frame(index: int) -> np.ndarray:
    from napari_nlcl.synth import add_rain

    rainy, _ = add_rain(
        _rocket(), density=0.012, angle=-12.0, length=22, width=1.0, opacity=0.6, layers=2,
        rng=1000 + index,
    )
    return _to_uint8(rainy)


def rainy_scene() -> Sample:
    """The launch pad in synthetic rain (two streak layers)."""
    return Sample(_rain_frame(0), "rainy scene", "synthetic rain, two layers", {"rgb": True})


def rainy_stack(n_frames: int = STACK_FRAMES) -> Sample:
    """A lazily generated rainy time series: fixed scene, new rain every frame.

    Each frame is synthesised only when napari (or ``.compute()``) asks for it.
    """
    import dask
    import dask.array as da

    shape = _rocket().shape
    frames = [
        da.from_delayed(dask.delayed(_rain_frame)(i), shape=shape, dtype=np.uint8)
        for i in range(n_frames)
    ]
    return Sample(
        da.stack(frames), "rainy stack", f"{n_frames} lazily generated rainy frames",
        {"rgb": True, "contrast_limits": (0, 255)},
    )


#: photos of the translation sample: domain A is their left halves, domain B their right halves
#: in the film look (the same kind of content in both domains, only the style differs)
TRANSLATION_PHOTOS = ("astronaut", "rocket", "coffee", "chelsea")
TRANSLATION_HEIGHT = 300


def translation_domains() -> tuple[np.ndarray, np.ndarray]:
    """(domain A, domain B) as two uint8 RGB mosaics, ``TRANSLATION_HEIGHT`` px high.

    A: the left halves of four scikit-image photos side by side; B: their
    right halves in :func:`~napari_nlcl.synth.film_look`.  No pixel of A has
    its styled twin in B, so the pair is unpaired.  The shipped example
    translator (``translate`` method ``"default"``) was trained on exactly
    these (``scripts/train_translate_default.py``).
    """
    from skimage import data

    from napari_nlcl.synth import film_look

    left, right = [], []
    for name in TRANSLATION_PHOTOS:
        im = getattr(data, name)()[..., :3]
        top = (im.shape[0] - TRANSLATION_HEIGHT) // 2
        im = im[top : top + TRANSLATION_HEIGHT]
        half = im.shape[1] // 2
        left.append(im[:, :half])
        right.append(im[:, half:])
    return np.concatenate(left, 1), _to_uint8(film_look(np.concatenate(right, 1)))


def translation_source() -> Sample:
    """Domain A of the translation pair: plain photos."""
    return Sample(translation_domains()[0], "photos (domain A)", "domain A: plain photos", {"rgb": True})


def translation_target() -> Sample:
    """Domain B of the translation pair: other photos in the project's film look."""
    return Sample(translation_domains()[1], "film look (domain B)",
                  "domain B: other photos in the film look (colour matrix, tone curve, sharpening)",
                  {"rgb": True})


SAMPLES: dict[str, Callable[[], Sample]] = {
    "hazy_scene": hazy_scene,
    "rainy_scene": rainy_scene,
    "rainy_stack": rainy_stack,
    "translation_source": translation_source,
    "translation_target": translation_target,
}


def write_samples(folder: str | os.PathLike) -> list[Path]:
    """Write the single-image samples as PNG files into ``folder``."""
    from napari_nlcl.io import write_image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for key in ("hazy_scene", "rainy_scene", "translation_source", "translation_target"):
        paths.append(write_image(folder / f"{key}.png", SAMPLES[key]().data))
    return paths
