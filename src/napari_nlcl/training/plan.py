"""One way to set up a training run: :func:`plan_run` (``finetune()``, the CLI and the Train widget call it).

>>> import numpy as np
>>> from napari_nlcl.training.plan import plan_run
>>> frames = np.random.default_rng(0).random((4, 64, 64, 3)).astype(np.float32)
>>> trainer = plan_run("dehaze", {"hazy": frames}, start=None, steps=2, crop=32, batch_size=1,
...                    monitor_every=0, device="cpu")
>>> trainer.recipe.config.mode, trainer.config.steps
('unsupervised', 2)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from napari_nlcl.training.checkpoints import recipe_config_of
from napari_nlcl.training.config import TrainConfig
from napari_nlcl.training.data import RandomCrops
from napari_nlcl.training.recipe import recipe_class
from napari_nlcl.training.trainer import Trainer

#: steps of a run with a time budget and no step count: the budget ends it
UNBOUNDED_STEPS = 1_000_000


def plan_crops(recipe: str, data: Mapping[str, Any], *, settings: Mapping[str, Any] | None = None,
              stored: Mapping[str, Any] | None = None, crop: int = 128, batch_size: int = 4,
              seed: int = 0) -> tuple[RandomCrops, dict[str, Any]]:
    """The crop stream for ``recipe`` from ``data`` (source name -> array, layer data, folder or file).

    Which sources are given decides the recipe's mode (``Recipe.plan_data``);
    returns the stream and the recipe settings (those overrides, then
    ``settings``).  ``stored``: the settings of the model a run starts from or
    resumes, which decide the data options too (e.g. single-image translation).
    """
    cls = recipe_class(recipe)
    overrides, paired = cls.plan_data(data)
    merged = {**overrides, **(settings or {})}
    crops = RandomCrops(data, crop=crop, batch_size=batch_size, paired=paired, seed=seed,
                        **cls.data_options({**(stored or {}), **merged}))
    return crops, merged


def start_weights(recipe: str, start: Any) -> Any:
    """``"default"`` -> the recipe's shipped model file; a path or ``None`` as given."""
    if isinstance(start, str) and start == "default":
        cls = recipe_class(recipe)
        if not cls.default_weights:
            raise ValueError(f"recipe {recipe!r} ships no default model; train from scratch or give a model file")
        return cls.default_weights
    return start


def plan_run(recipe: str, data: Mapping[str, Any], *, start: Any = "auto",
             settings: Mapping[str, Any] | None = None, steps: int | None = None, crop: int = 128,
             batch_size: int = 4, lr: float | None = None, scratch_lr: float = 2e-4, seed: int = 0,
             schedule: str | None = None, checkpoint: str | os.PathLike | None = None,
             metadata: Mapping[str, Any] | None = None, preview_image: Any = None,
             **train: Any) -> Trainer:
    """A ready :class:`~napari_nlcl.training.Trainer` for a new run.

    ``start``: ``"auto"`` (the shipped model where the recipe fine-tunes by default,
    else scratch), ``"default"``, a model file, or ``None`` (from scratch).
    ``steps=None``: 1000, or as many as a time budget (``minutes=``) allows.
    ``lr=None``: the recipe's fine-tuning rate when starting from a model, else
    ``scratch_lr``; ``schedule=None``: the recipe's.  Other keywords
    (``device``, ``precision``, ``monitor_every``, ``patience``, ``keep_best``,
    ``minutes``, ``checkpoint_every``, ``ema``, ``preview_every``, ``amp``) go to
    :class:`~napari_nlcl.training.TrainConfig`.
    """
    cls = recipe_class(recipe)
    if isinstance(start, str) and start == "auto":
        start = "default" if cls.fine_tune_by_default else None
    start = start_weights(recipe, start)
    stored = recipe_config_of(start)[1] if start is not None else {}
    crops, merged = plan_crops(recipe, data, settings=settings, stored=stored, crop=crop,
                              batch_size=batch_size, seed=seed)
    if steps is None:
        steps = UNBOUNDED_STEPS if train.get("minutes") else 1000
    config = TrainConfig(steps=steps, batch_size=batch_size, crop=crop, seed=seed,
                         lr=cls.proposed_lr(start is not None, scratch_lr) if lr is None else lr,
                         schedule=schedule or cls.schedule, **train)
    kwargs = {"checkpoint": checkpoint, "metadata": metadata, "preview_image": preview_image}
    if start is None:
        return Trainer.from_recipe_name(recipe, crops, config, recipe_config=merged, **kwargs)
    return Trainer.from_model(start, crops, config, recipe_config=merged, **kwargs)


__all__ = ["UNBOUNDED_STEPS", "plan_crops", "plan_run", "start_weights"]
