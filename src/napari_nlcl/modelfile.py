"""The model file: one ``.pt`` holding tensors and plain values only, read with ``weights_only=True``.

A file holds the recipe that trained it (name, version, settings as JSON), the
networks' weights (``networks``; ``best`` and ``ema`` where the run kept them),
metadata, and, for inference, an *inference block*
(:func:`napari_nlcl.nets.inference_block`): the architecture by registered name,
its config and which of the networks it is.  Training checkpoints add the
optimiser, scheduler and RNG states.  This module reads and writes the
format; it imports torch only when a file is read or written, and never the
training code.
"""

from __future__ import annotations

import dataclasses
import json
import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

CHECKPOINT_FORMAT = "napari-nlcl-checkpoint"


CHECKPOINT_VERSION = 1


def config_from_dict(cls: type, values: Mapping[str, Any]) -> Any:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys clearly."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} setting(s) {unknown}; known: {sorted(names)}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in values:
            v = values[f.name]
            kwargs[f.name] = tuple(v) if isinstance(v, list) else v
    return cls(**kwargs)


def jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {k: jsonable(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, Path):
        return str(value)
    return value


def save_checkpoint(path: str | os.PathLike, payload: Mapping[str, Any]) -> Path:
    """Write ``payload`` atomically (temporary file + rename)."""
    import torch

    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"checkpoint folder {path.parent} does not exist; create it first")
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.partial")
    try:
        torch.save(dict(payload), tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint safely (``weights_only=True``) and check it is ours."""
    import pickle

    import torch

    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not a model file; give the .pt file (e.g. one that "
                         "napari-nlcl train wrote)")
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if "unsupported global" not in text.lower():  # not a refused object: damaged bytes
            raise ValueError(f"{path} is not a readable checkpoint (corrupt or truncated?)") from exc
        raise ValueError(
            f"{path} contains Python objects other than tensors and plain values; it was "
            "refused because loading it could run code. Only load model files you trust, and "
            "re-save them with napari-nlcl."
        ) from exc
    except Exception as exc:  # noqa: BLE001 - zip/EOF/format errors of a damaged file
        raise ValueError(f"{path} is not a readable checkpoint (corrupt or truncated?): {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a napari-nlcl model file (foreign checkpoint?)")
    if int(payload.get("format_version", 0)) > CHECKPOINT_VERSION:
        raise ValueError(
            f"{path} was written by a newer napari-nlcl (format {payload['format_version']}); upgrade"
        )
    missing = [k for k in ("recipe", "config", "networks") if k not in payload]
    if missing or not isinstance(payload.get("networks"), dict):
        raise ValueError(f"{path} is a damaged napari-nlcl model file (no {', '.join(missing) or 'networks'}); "
                         "use another copy or train it again")
    try:
        config = json.loads(payload["config"])
        config["recipe"], config["train"]
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"{path} is a damaged napari-nlcl model file (its settings do not read: {exc})") from None
    return payload


WHICH = ("best", "last")


def model_networks(payload: Mapping[str, Any], which: str = "best") -> dict[str, Any]:
    """A checkpoint's weights for use.

    ``"best"``: those of the step the quality monitor scored best, where the
    run kept one (``TrainConfig.keep_best``); otherwise, and with ``"last"``,
    the last step's, as moving averages where the run keeps them (``TrainConfig.ema``).
    """
    if which not in WHICH:
        raise ValueError(f"which must be one of {WHICH}, got {which!r}")
    last = {**payload["networks"], **(payload.get("ema") or {})}
    best = payload.get("best")
    if which == "best" and best:
        return {**last, **best["networks"]}
    return last


def kept_step(payload: Mapping[str, Any]) -> dict[str, Any]:
    """Which step a model file's weights come from and why (``{"step", "reason"}``)."""
    best = payload.get("best")
    if best:
        return {"step": int(best["step"]), "reason": best.get("reason", "best monitored step")}
    return {"step": int(payload.get("step", 0)), "reason": "last step"}
