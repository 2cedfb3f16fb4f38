"""Training checkpoints: rebuild a recipe from a file, export weights-only model files."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any


from napari_nlcl.modelfile import config_from_dict, kept_step, model_networks, read_checkpoint, save_checkpoint
from napari_nlcl.training.recipe import Recipe, build_recipe, recipe_class

def export_model(src: str | os.PathLike, dst: str | os.PathLike, *,
                 networks: Iterable[str] | None = None, settings: dict[str, Any] | None = None,
                 which: str = "best") -> Path:
    """Write the weights-only copy of a training checkpoint (no optimiser or RNG state).

    The result loads everywhere a model file is accepted and can be fine-tuned
    (``--from``), but not resumed: a third of the size for Adam-trained models.
    A run with a weight average (``TrainConfig.ema``) exports the average.
    ``networks`` keeps only those networks (e.g. drop a discriminator that
    fine-tuning can re-learn); the others start fresh when the file is loaded.
    ``settings`` replace stored recipe settings (those fine-tuning from the
    file starts with; validated here, recorded in the metadata).  ``which``:
    the best monitored step's weights (default, where the run kept one) or the
    last step's (:func:`model_networks`); the metadata's ``kept`` says which.
    """
    payload = read_checkpoint(src)
    keep = ("format", "format_version", "recipe", "recipe_version", "package_version",
            "config", "metadata", "step", "inference")
    out = {**{k: payload[k] for k in keep if k in payload}, "networks": model_networks(payload, which),
           "exported": True}
    kept = kept_step(payload) if which == "best" else {"step": int(payload.get("step", 0)), "reason": "last step"}
    meta = json.loads(payload.get("metadata") or "{}")
    meta["kept"] = kept
    out["metadata"] = json.dumps(meta)
    if settings:
        config = json.loads(payload["config"])
        config["recipe"] = {**config["recipe"], **settings}
        config_from_dict(recipe_class(payload["recipe"]).Config, config["recipe"])  # refuses bad ones
        out["config"] = json.dumps(config)
        block = build_recipe(payload["recipe"], config["recipe"]).inference_block()  # e.g. a new t_min
        out.pop("inference", None)
        if block:
            out["inference"] = block
        meta["export_settings"] = settings
        out["metadata"] = json.dumps(meta)
    if networks is not None:
        networks = list(networks)
        missing = sorted(set(networks) - set(payload["networks"]))
        if missing:
            raise ValueError(f"{src} has no network(s) {missing}; it has {sorted(payload['networks'])}")
        out["networks"] = {k: out["networks"][k] for k in networks}
    return save_checkpoint(dst, out)


def load_recipe(path: str | os.PathLike, *, device: Any = "cpu",
                averaged: bool = True, which: str = "best") -> tuple[Recipe, dict[str, Any]]:
    """Rebuild the recipe stored in a checkpoint with its weights; returns (recipe, payload).

    ``averaged``: the weights for use (:func:`model_networks` with ``which``: the
    best monitored step's, else the weight averages, else the last); ``False``
    gives the trained weights of the last step (to resume).
    """
    payload = read_checkpoint(path)
    config = json.loads(payload["config"])
    cls = recipe_class(payload["recipe"])
    if int(payload.get("recipe_version", 1)) > cls.version:
        raise ValueError(
            f"{path} holds a {payload['recipe']} model of version {payload['recipe_version']}, "
            f"newer than this napari-nlcl supports ({cls.version}); upgrade"
        )
    recipe = build_recipe(payload["recipe"], config["recipe"], device=device,
                          seed=config["train"].get("seed", 0))
    for name, state in (model_networks(payload, which) if averaged else payload["networks"]).items():
        if name not in recipe.networks:
            raise ValueError(f"{path}: network {name!r} is not part of recipe {payload['recipe']!r}")
        try:
            recipe.networks[name].load_state_dict(state)
        except RuntimeError as exc:
            raise ValueError(f"{path}: weights of {name!r} do not fit the network: {exc}") from exc
    recipe.load_extra_state(payload.get("extra", {}))
    return recipe, payload


def recipe_config_of(path: str | os.PathLike) -> tuple[str, dict[str, Any]]:
    """(recipe name, recipe config dict) stored in a model file, e.g. to fine-tune it."""
    payload = read_checkpoint(path)
    return payload["recipe"], json.loads(payload["config"])["recipe"]


def add_inference_block(path: str | os.PathLike) -> bool:
    """Give a model file from before inference blocks one, in place (atomically); False if it had one.

    Afterwards the file is applied without importing the training code
    (:func:`napari_nlcl.inference.loading.load_model_file`); it still trains,
    resumes and fine-tunes as before.
    """
    payload = read_checkpoint(path)
    if payload.get("inference"):
        return False
    recipe, _ = load_recipe(path, device="cpu")
    block = recipe.inference_block()
    if block is None:
        raise ValueError(f"{path}: the {payload['recipe']} recipe's network is not a registered architecture "
                         "(napari_nlcl.nets.register_arch), so it has no inference block")
    save_checkpoint(path, {**payload, "inference": block})
    return True
