"""napari-nlcl: remove rain and haze and translate images with contrastive-learning models.

Importing this package is cheap: torch, napari and Qt are imported only when a
function that needs them is first used.

>>> import napari_nlcl
>>> from skimage import data
>>> hazy, _ = napari_nlcl.synth.add_haze(data.astronaut(), beta=1.2, rng=0)
>>> clear = napari_nlcl.dehaze(hazy, model="dcp")
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it (imported on first access)
_LAZY = {
    "dehaze": "napari_nlcl.api",
    "derain": "napari_nlcl.api",
    "load_model": "napari_nlcl.api",
    "available_methods": "napari_nlcl.api",
    "finetune": "napari_nlcl.api",
    "translate": "napari_nlcl.api",
    "predict": "napari_nlcl.inference",
    "select_device": "napari_nlcl.inference",
    "ModelInfo": "napari_nlcl.model",
    "Model": "napari_nlcl.model",
}
_SUBMODULES = {"api", "classical", "cli", "contrastive", "inference", "io", "library", "model", "nets",
               "registry", "samples", "synth", "training"}

__all__ = [*_LAZY, *sorted(_SUBMODULES), "__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from napari_nlcl import api, inference, io, model, registry, samples, synth  # noqa: F401
    from napari_nlcl.api import available_methods, dehaze, derain, finetune, load_model, translate  # noqa: F401
    from napari_nlcl.inference import predict, select_device  # noqa: F401
    from napari_nlcl.model import Model, ModelInfo  # noqa: F401


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"napari_nlcl.{name}")
    raise AttributeError(f"module 'napari_nlcl' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
