"""Synthetic rain and haze, for training pairs and sample data.

Everything here is plain numpy + :mod:`scipy` (no torch, no scikit-image), so
it can be used to build training sets on machines without a GPU stack.

Two degradations and one style are provided:

* :func:`add_rain` (:mod:`~napari_nlcl.synth.rain`) -- additive rain streaks,
  returning the rainy image and the rain layer.
* :func:`add_haze` (:mod:`~napari_nlcl.synth.haze`, with the depth maps of
  :func:`random_depth`) -- the atmospheric scattering model, returning the
  hazy image and the transmission map.
* :func:`film_look` (:mod:`~napari_nlcl.synth.film`) -- a fixed, deterministic
  photographic style, the second domain of the translation data.

:mod:`~napari_nlcl.synth.convert` holds :func:`to_float01` and the input
checks they share.

All randomness goes through an explicit ``rng`` argument (an ``int`` seed,
``None`` or a :class:`numpy.random.Generator`); the global numpy RNG is never
touched, and the same seed always gives the same output.

Examples
--------
>>> import numpy as np
>>> from napari_nlcl import synth
>>> clean = np.full((64, 64, 3), 0.4, dtype=np.float32)
>>> rainy, rain = synth.add_rain(clean, density=0.03, rng=0)
>>> bool(np.allclose(rainy, clean + rain, atol=1e-6))
True
>>> hazy, t = synth.add_haze(clean, beta=1.5, rng=0)
>>> hazy.shape, t.shape
((64, 64, 3), (64, 64))
"""

from __future__ import annotations

# RNGLike, film_look and the FILM_* constants are public too (as they were in the
# single module this package replaced) but, as there, not in ``__all__``
from .convert import RNGLike, to_float01  # noqa: F401
from .film import FILM_CURVE, FILM_LIFT, FILM_MATRIX, FILM_SHARPEN, film_look  # noqa: F401
from .haze import add_haze, random_depth, random_haze_params, scene_depth
from .rain import add_rain, random_rain_params

__all__ = [
    "add_haze",
    "add_rain",
    "random_depth",
    "random_haze_params",
    "scene_depth",
    "random_rain_params",
    "to_float01",
]
