"""Training checkpoints: what a run saves and restores, rebuilding a recipe from a file, exporting models."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_nlcl import __version__
from napari_nlcl.modelfile import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    config_from_dict,
    jsonable,
    kept_step,
    model_networks,
    read_checkpoint,
    save_checkpoint,
)
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


def training_payload(trainer: Any) -> dict[str, Any]:
    """Everything a training checkpoint holds: weights, optimiser, schedule and RNG states, settings."""
    r = trainer.recipe
    data_state = trainer.data.get_state() if hasattr(trainer.data, "get_state") else None
    config = {"recipe": jsonable(r.config), "train": jsonable(trainer.config)}
    meta = {
        **trainer.metadata,
        "data": trainer.data.describe() if hasattr(trainer.data, "describe") else trainer.metadata.get("data"),
        "versions": {"napari_nlcl": __version__, "torch": torch.__version__,
                     "numpy": np.__version__, "python": platform.python_version()},
        "saved": time.strftime("%Y-%m-%d %H:%M:%S"),
        "kept": {"step": int(trainer.best["step"]) if trainer.best and trainer.config.keep_best else trainer.step,
                 "reason": trainer.kept_reason()},
        **({"stop_reason": trainer.stop_reason} if trainer.stop_reason else {}),
    }
    return {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "recipe": r.name,
        "recipe_version": r.version,
        "package_version": __version__,
        "config": json.dumps(config),
        "metadata": json.dumps(jsonable(meta)),
        "step": trainer.step,
        "networks": {k: v.state_dict() for k, v in r.networks.items()},
        "optimizers": {k: v.state_dict() for k, v in r.optimizers.items()},
        "schedulers": {k: v.state_dict() for k, v in trainer.schedulers.items()},
        "scaler": r.scaler.state_dict() if r.scaler is not None else {},
        "rng": {
            "recipe": r.generator.get_state(),
            "torch": torch.get_rng_state(),
            "data": json.dumps(jsonable(data_state)) if data_state is not None else "",
        },
        "extra": r.extra_state(),
        **({"inference": block} if (block := r.inference_block()) else {}),
        **({"ema": {k: dict(v) for k, v in trainer.ema.items()}, "ema_updates": trainer.ema_updates}
           if trainer.ema else {}),
        **_monitor_payload(trainer),
        "elapsed": float(trainer.elapsed),
    }

def _monitor_payload(trainer: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if trainer.monitor is not None and hasattr(trainer.monitor, "inputs"):
        def q(t: torch.Tensor) -> torch.Tensor:  # 8 bits, as images are
            return (t.clamp(0, 1) * 255).round().to(torch.uint8)

        out["monitor"] = {"inputs": q(trainer.monitor.inputs), "targets": q(trainer.monitor.targets),
                          "history": json.dumps(trainer.monitor_history),
                          "min_gain": float(getattr(trainer.monitor, "min_gain", 0.0))}
    if trainer.best is not None and trainer.config.keep_best:
        out["best"] = {"step": int(trainer.best["step"]), "score": float(trainer.best["score"]),
                       "reason": trainer.kept_reason(), "networks": trainer.best["networks"]}
    return out

def restore_training_state(trainer: Any, payload: Mapping[str, Any]) -> None:
    """Put a checkpoint's optimiser, schedule, RNG, monitor and average states into ``trainer``."""
    r = trainer.recipe
    for name, state in payload["optimizers"].items():
        r.optimizers[name].load_state_dict(state)
    for name, state in payload["schedulers"].items():
        trainer.schedulers[name].load_state_dict(state)
    if r.scaler is not None and payload.get("scaler"):
        r.scaler.load_state_dict(payload["scaler"])
    rng = payload["rng"]
    r.generator.set_state(rng["recipe"])
    torch.set_rng_state(rng["torch"])
    if rng.get("data") and hasattr(trainer.data, "set_state"):
        trainer.data.set_state(json.loads(rng["data"]))
    trainer.step = int(payload["step"])
    trainer.elapsed = float(payload.get("elapsed", 0.0))
    stored = payload.get("monitor")
    if stored:
        from napari_nlcl.training.monitor import ProxyPairs

        trainer.monitor = ProxyPairs(stored["inputs"].float() / 255, stored["targets"].float() / 255,
                                     min_gain=float(stored.get("min_gain", 0.0)))
        trainer.monitor_history = [tuple(x) for x in json.loads(stored["history"])]
    best = payload.get("best")
    if best:
        trainer.best = {"step": int(best["step"]), "score": float(best["score"]),
                     "networks": best["networks"]}
    if trainer.ema is not None and payload.get("ema"):
        for name, state in payload["ema"].items():
            for k, v in state.items():
                trainer.ema[name][k].copy_(v)
        trainer.ema_updates = int(payload.get("ema_updates", 0))
    for sched in trainer.schedulers.values():  # LambdaLR lr follows its own counter
        for g, lr in zip(sched.optimizer.param_groups, sched.get_last_lr()):
            g["lr"] = lr
