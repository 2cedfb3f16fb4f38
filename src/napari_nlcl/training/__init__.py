"""Training: the trainer, recipes (one module per task), data streams and the quality monitor.

* :mod:`~napari_nlcl.training.trainer`: :class:`Trainer` (the step loop, schedules,
  precision, weight averages, keep-best, checkpoints) and :class:`TrainEvent`;
* :mod:`~napari_nlcl.training.config`: :class:`TrainConfig`;
* :mod:`~napari_nlcl.training.recipe`: the :class:`Recipe` base class and the recipe registry;
* :mod:`~napari_nlcl.training.checkpoints`: rebuilding a recipe from a file, exporting models;
* :mod:`~napari_nlcl.training.plan`: :func:`plan_run`, the one way a run is set up
  (``finetune()``, the CLI and the Train widget all call it);
* :mod:`~napari_nlcl.training.data` and :mod:`~napari_nlcl.training.monitor`;
* one module per recipe: :mod:`~napari_nlcl.training.derain` (its settings in
  :mod:`~napari_nlcl.training.derain_config`), :mod:`~napari_nlcl.training.dehaze`,
  :mod:`~napari_nlcl.training.translate`.

Applying a model never imports this package (:mod:`napari_nlcl.inference` builds
networks from a model file's inference block).
"""

from napari_nlcl.training.checkpoints import export_model, load_recipe, recipe_config_of
from napari_nlcl.training.config import TrainConfig, TrainEvent
from napari_nlcl.training.recipe import (
           Recipe,
           build_recipe,
           recipe_class,
           recipe_names,
           register_recipe,
)
from napari_nlcl.training.trainer import Trainer

__all__ = ["Recipe", "TrainConfig", "TrainEvent", "Trainer", "build_recipe", "export_model", "load_recipe",
           "recipe_class", "recipe_config_of", "recipe_names", "register_recipe"]
