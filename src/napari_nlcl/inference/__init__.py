"""Applying a model: whole images and stacks, tiles, intensity ranges, devices, precision.

:func:`predict` runs any model (a ``torch.nn.Module`` with a
:class:`~napari_nlcl.model.ModelInfo`) over a numpy or dask array
(:mod:`napari_nlcl.inference.apply`); :mod:`~napari_nlcl.inference.tiling`
cuts planes into overlapping tiles, :mod:`~napari_nlcl.inference.precision`
picks float32 or bfloat16, :mod:`~napari_nlcl.inference.cluster` carries models
to dask.distributed workers and :mod:`~napari_nlcl.inference.loading` builds
networks from model files.  Nothing here imports the training code.

The names below are imported on first use, so ``import napari_nlcl.inference``
stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> the module that defines it
_NAMES = {
    **dict.fromkeys(("DEFAULT_TILE", "Plan", "Progress", "iter_plan", "iter_predict", "plan_inference", "predict",
                     "run_plan"), "apply"),
    "shared_planes": "lazy",
    **dict.fromkeys(("available_devices", "select_device"), "devices"),
    "default_overlap": "tiling",
}

__all__ = sorted(_NAMES)


def __getattr__(name: str) -> Any:
    if name in _NAMES:
        return getattr(importlib.import_module(f"napari_nlcl.inference.{_NAMES[name]}"), name)
    raise AttributeError(f"module 'napari_nlcl.inference' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
