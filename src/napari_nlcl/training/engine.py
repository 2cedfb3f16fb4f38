"""Training engine: recipes, a generator-based trainer and safe checkpoints.

A *recipe* (NLCL deraining, contrastive dehazing, CUT translation, ...) owns
its networks, optimisers and losses and implements one training step; the
:class:`Trainer` owns everything around it: the data, the step loop,
learning-rate schedules, mixed precision, gradient clipping, seeds,
checkpoints and progress events.

``Trainer.fit_iter()`` is a generator of :class:`TrainEvent`: the CLI wraps it
in a progress bar, napari in a ``thread_worker`` (Stop = ``worker.quit()``
takes effect at the next yield, and a checkpoint is written on the way out),
tests call ``next()``.

Checkpoints are one file holding only tensors and plain Python values
(weights, optimiser and scheduler states, RNG states, step, the full config as
JSON), written atomically and read back with ``torch.load(...,
weights_only=True)``, so a model file cannot run code.  A recipe is rebuilt
from the file alone, by name from the recipe registry.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import importlib
import json
import math
import os
import platform
import time
import uuid
import warnings
from collections.abc import Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from napari_nlcl import __version__
from napari_nlcl.inference import select_device
from napari_nlcl.inference.precision import resolve as resolve_precision

CHECKPOINT_FORMAT = "napari-nlcl-checkpoint"
CHECKPOINT_VERSION = 1
SCHEDULES = ("constant", "linear", "cosine")


# --------------------------------------------------------------------------- config
@dataclass
class TrainConfig:
    """Settings of a training run (not of the networks: those live in the recipe config).

    ``schedule``: ``"constant"``; ``"linear"`` keeps the rate until
    ``decay_start`` (a fraction of ``steps``) and then decays it linearly to
    zero (CUT); ``"cosine"`` decays along a half cosine from ``decay_start``.
    ``ema`` > 0 keeps an exponential moving average of every network's weights
    (decay ``ema`` per step, e.g. 0.999: about the last 1,000 steps; warmed up
    as ``min(ema, (1 + n) / (10 + n))``).  The average is saved beside the
    trained weights and is what a model file gives at inference, what
    :func:`export_model` keeps and what fine-tuning starts from; training and
    resuming continue the trained weights.  Averaging smooths the step-to-step
    noise of the last weights (Polyak averaging; Izmailov et al.'s SWA).
    """

    steps: int = 1000
    batch_size: int = 1
    crop: int = 128
    lr: float = 2e-4
    seed: int = 0
    schedule: str = "constant"
    decay_start: float = 0.5
    grad_clip: float | None = None
    amp: bool = False
    device: str = "auto"
    #: arithmetic of the training steps (:mod:`napari_nlcl.inference.precision`): "auto" is bfloat16
    #: autocast on CPUs with native bfloat16 (about twice the steps per second), else float32;
    #: "float16" (CUDA) adds loss scaling; the weights and optimiser state stay float32
    precision: str = "auto"
    checkpoint_every: int = 0
    preview_every: int = 0
    ema: float = 0.0
    #: score the model with the recipe's quality monitor every this many steps (0: never);
    #: recipes without a monitor for their mode ignore it
    monitor_every: int = 0
    #: model files give the weights of the best monitored step (the last ones stay in the file)
    keep_best: bool = True
    #: stop when this many monitor evaluations in a row did not improve on the best (0: never)
    patience: int = 0
    #: time budget in minutes (0: none): the run plans its steps (and so its learning-rate
    #: schedule) to end within it, measured from its first steps, and stops at it in any case
    minutes: float = 0.0

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "crop"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if not 0.0 <= self.decay_start <= 1.0:
            raise ValueError(f"decay_start is a fraction of the steps in [0, 1], got {self.decay_start}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be positive or None, got {self.grad_clip!r}")
        for name in ("checkpoint_every", "preview_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0 (0 = never)")
        if not (isinstance(self.ema, (int, float)) and 0.0 <= self.ema < 1.0):
            raise ValueError(f"ema is a decay in [0, 1) (0 = no weight average, 0.999 typical), got {self.ema!r}")
        for name in ("monitor_every", "patience"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 0:
                raise ValueError(f"{name} must be an integer >= 0 (0 = off), got {v!r}")
        if not (isinstance(self.minutes, (int, float)) and self.minutes >= 0 and math.isfinite(self.minutes)):
            raise ValueError(f"minutes is a time budget >= 0 (0 = none), got {self.minutes!r}")
        from napari_nlcl.inference.precision import check as check_precision

        self.precision = check_precision(self.precision)


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


# --------------------------------------------------------------------------- recipes
class Recipe:
    """Base class of a training recipe.

    Subclasses set ``name``, ``version`` and ``Config`` (a dataclass), build
    their networks in ``__init__(config, *, device, generator)`` and register
    them with :meth:`add_network` / :meth:`add_optimizer`, and implement
    :meth:`training_step` (which calls :meth:`backward_step` for each
    optimiser) and :meth:`inference_model`.  ``data_sources`` names the
    sources a batch must contain.
    """

    name: ClassVar[str] = "recipe"
    #: what its models do (``ModelInfo.task``): widgets list models by task
    task: ClassVar[str] = "identity"
    version: ClassVar[int] = 1
    Config: ClassVar[type] = object
    data_sources: ClassVar[tuple[str, ...]] = ("image",)
    #: all source names the recipe understands (several modes may use different subsets)
    accepted_sources: ClassVar[tuple[str, ...]] = ()
    #: whether the sources are aligned pairs (same crop everywhere)
    paired: ClassVar[bool] = False
    #: model file that ``--from default`` starts from, if the package ships one
    default_weights: ClassVar[str | None] = None
    #: whether the front ends offer the shipped model as the starting point first (fine-tuning
    #: a derainer makes sense; a translator is usually trained anew for each pair of domains)
    fine_tune_by_default: ClassVar[bool] = True
    #: learning-rate schedule the front ends use unless told otherwise (see TrainConfig)
    schedule: ClassVar[str] = "constant"
    #: learning rate the front ends propose when they start from a trained model (None: their
    #: general default); a well-trained model can need a much gentler rate than a new one
    fine_tune_lr: ClassVar[float | None] = None
    #: the settings a user may want to change, ``name -> (label, help)`` in the order the Train
    #: widget shows them; the others (sampling sizes, banks, architecture) sit behind its
    #: "every setting" switch under their field names
    user_settings: ClassVar[dict[str, tuple[str, str]]] = {}

    @classmethod
    def proposed_lr(cls, fine_tuning: bool, general: float) -> float:
        """The learning rate a front end proposes: ``fine_tune_lr`` when fine-tuning, else ``general``."""
        return cls.fine_tune_lr if fine_tuning and cls.fine_tune_lr is not None else general

    @classmethod
    def plan_data(cls, given: Iterable[str]) -> tuple[dict[str, Any], bool]:
        """Recipe-config overrides and the ``paired`` flag for the data sources a user gave.

        The default accepts exactly ``data_sources``; recipes with several modes
        (e.g. dehazing with or without clear images) override this.
        """
        given = sorted(given)
        if given != sorted(cls.data_sources):
            raise ValueError(f"recipe {cls.name!r} takes data {list(cls.data_sources)}, got {given}")
        return {}, cls.paired

    @classmethod
    def data_options(cls, settings: Mapping[str, Any]) -> dict[str, Any]:
        """Extra :class:`~napari_nlcl.training.data.RandomCrops` arguments for recipe settings ``settings``
        (e.g. random zooms in single-image translation); none by default."""
        return {}

    @classmethod
    def check_sources(cls, given: Iterable[str], what: str) -> set[str]:
        """``given`` as a set, refused when empty or naming a source outside ``accepted_sources``."""
        given = set(given)
        if not given or given - set(cls.accepted_sources):
            raise ValueError(f"{cls.name} training takes {what}, got {sorted(given)}")
        return given

    def __init__(self, config: Any, *, device: Any = "cpu", generator: torch.Generator | None = None):
        self.config = config
        self.device = torch.device(device)
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)
        self.networks: dict[str, nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.grad_clip: float | None = None
        self.scaler: torch.amp.GradScaler | None = None

    # building ----------------------------------------------------------------
    def add_network(self, name: str, net: nn.Module) -> nn.Module:
        self.networks[name] = net.to(self.device)
        return self.networks[name]

    def add_optimizer(self, name: str, params: Iterable, *, lr: float, betas=(0.5, 0.999)):
        params = list(params)
        if not params:
            raise ValueError(f"optimizer {name!r} has no parameters")
        self.optimizers[name] = torch.optim.Adam(params, lr=lr, betas=betas)
        return self.optimizers[name]

    # training ------------------------------------------------------------------
    def backward_step(self, loss: torch.Tensor, optimizer: str) -> None:
        """Backward ``loss`` and step ``optimizer`` (AMP scaling and clipping included)."""
        opt = self.optimizers[optimizer]
        opt.zero_grad(set_to_none=True)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"{self.name}: loss became {loss.item()} at this step; lower the learning rate "
                "or turn off mixed precision"
            )
        scaler = self.scaler
        if scaler is not None and scaler.is_enabled():
            scaler.scale(loss).backward()
            if self.grad_clip:
                scaler.unscale_(opt)
                self._clip(opt)
            scaler.step(opt)
        else:
            loss.backward()
            if self.grad_clip:
                self._clip(opt)
            opt.step()

    def _clip(self, opt: torch.optim.Optimizer) -> None:
        params = [p for g in opt.param_groups for p in g["params"] if p.grad is not None]
        torch.nn.utils.clip_grad_norm_(params, self.grad_clip)

    def train(self, mode: bool = True) -> None:
        for net in self.networks.values():
            net.train(mode)

    def training_step(self, batch: Mapping[str, torch.Tensor], step: int) -> dict[str, float]:
        raise NotImplementedError

    def inference_model(self) -> nn.Module:
        """The network used at inference (with an ``info: ModelInfo``)."""
        raise NotImplementedError

    def build_monitor(self, data: Any, *, seed: int = 0) -> Any:
        """A quality monitor (``score(net) -> float``, higher is better; see
        :mod:`napari_nlcl.training.monitor`) built from ``data`` and the current networks at the
        start of a run, or None when the recipe has none for its mode."""
        return None

    @torch.no_grad()
    def preview(self, image: np.ndarray) -> np.ndarray:
        """Apply the current model to one image (numpy in, numpy out)."""
        from napari_nlcl.inference import predict

        model = self.inference_model()
        was_training = model.training
        try:
            return predict(image, model, device=self.device)
        finally:
            model.train(was_training)

    def start_from(self, networks: Mapping[str, Mapping[str, torch.Tensor]]) -> None:
        """Initialise from another model's weights before fine-tuning (matching names only)."""
        loaded = 0
        for name, state in networks.items():
            if name in self.networks:
                self.networks[name].load_state_dict(state)
                loaded += 1
        if not loaded:
            raise ValueError(f"none of the networks {sorted(networks)} belong to recipe {self.name!r}")

    # state ---------------------------------------------------------------------
    def extra_state(self) -> dict[str, Any]:
        """Recipe-specific tensors/values to checkpoint (override when needed)."""
        return {}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        pass


_RECIPES: dict[str, str] = {}


def register_recipe(name: str, path: str) -> None:
    """Register recipe class ``"module:Class"`` under ``name`` (checkpoints refer to it)."""
    if ":" not in path:
        raise ValueError(f"recipe path must look like 'module:Class', got {path!r}")
    _RECIPES[name] = path


def recipe_config_of(path: str | os.PathLike) -> tuple[str, dict[str, Any]]:
    """(recipe name, recipe config dict) stored in a model file, e.g. to fine-tune it."""
    payload = read_checkpoint(path)
    return payload["recipe"], json.loads(payload["config"])["recipe"]


def recipe_names() -> list[str]:
    return sorted(_RECIPES)


def recipe_class(name: str) -> type[Recipe]:
    if name not in _RECIPES:
        known = ", ".join(sorted(_RECIPES)) or "none"
        raise ValueError(f"unknown recipe {name!r} (known: {known}); is the plugin up to date?")
    module, attr = _RECIPES[name].split(":")
    cls = getattr(importlib.import_module(module), attr)
    if not (isinstance(cls, type) and issubclass(cls, Recipe)):
        raise TypeError(f"registered recipe {name!r} is not a Recipe subclass")
    return cls


def build_recipe(name: str, config: Any = None, *, device: Any = "cpu", seed: int = 0) -> Recipe:
    cls = recipe_class(name)
    if config is None:
        config = cls.Config()
    elif isinstance(config, Mapping):
        config = config_from_dict(cls.Config, config)
    torch_gen = torch.Generator().manual_seed(int(seed))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))  # network initialisation is seeded too
        return cls(config, device=device, generator=torch_gen)


# --------------------------------------------------------------------------- events
@dataclass
class TrainEvent:
    """What :meth:`Trainer.fit_iter` yields.

    ``kind`` is ``"step"`` (after every step: ``losses``, ``lr``,
    ``images_per_s``, ``seconds_left``), ``"preview"`` (``preview`` holds the
    model applied to the preview image), ``"monitor"`` (``monitor``: the
    quality score of this step and the best so far), ``"checkpoint"``
    (``path`` was written) or ``"done"`` (``message`` says why it ended).
    """

    kind: str
    step: int
    total: int
    losses: dict[str, float] = field(default_factory=dict)
    lr: float = 0.0
    images_per_s: float = 0.0
    seconds_left: float = 0.0
    preview: np.ndarray | None = None
    path: Path | None = None
    monitor: Any = None
    message: str = ""


# --------------------------------------------------------------------------- checkpoints
def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {k: _jsonable(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, Path):
        return str(value)
    return value


def save_checkpoint(path: str | os.PathLike, payload: Mapping[str, Any]) -> Path:
    """Write ``payload`` atomically (temporary file + rename)."""
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
            "config", "metadata", "step")
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


def load_shipped_model(path: str | os.PathLike, *, name: str, what: str) -> nn.Module:
    """The inference network of a model file shipped in the package, renamed, in eval mode."""
    from dataclasses import replace

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"the default {what} weights are missing ({path}); reinstall napari-nlcl or pass a model file"
        )
    recipe, _ = load_recipe(path, device="cpu")
    model = recipe.inference_model()
    model.info = replace(model.info, name=name)
    return model.eval()


# --------------------------------------------------------------------------- trainer
class Trainer:
    """Runs a recipe on a data stream.

    Parameters
    ----------
    recipe : Recipe
    data : RandomCrops or an iterable of batch dicts
        A :class:`napari_nlcl.training.data.RandomCrops` is checkpointed with its RNG
        state, so resuming draws the same crops.
    config : TrainConfig
    checkpoint : path, optional
        Where checkpoints go (every ``checkpoint_every`` steps, at the end,
        and when the run is stopped early).
    preview_image : array, optional
        Shown through ``recipe.preview`` every ``preview_every`` steps.
    metadata : dict, optional
        Stored in the checkpoint (e.g. a description of the training data).
    """

    def __init__(
        self,
        recipe: Recipe,
        data: Any,
        config: TrainConfig | None = None,
        *,
        checkpoint: str | os.PathLike | None = None,
        preview_image: np.ndarray | None = None,
        metadata: Mapping[str, Any] | None = None,
    ):
        self.recipe = recipe
        self.config = config or TrainConfig()
        self.data = data
        self._stream: Iterator | None = None
        self.checkpoint = Path(checkpoint) if checkpoint else None
        self.preview_image = preview_image
        self.metadata = dict(metadata or {})
        self.step = 0
        #: the step that ``checkpoint`` holds, as written by this trainer (or resumed from); None: none
        self.saved_step: int | None = None
        # quality monitor (TrainConfig.monitor_every): built from the data and the starting
        # networks when the run starts; best = {"step", "score", "networks"} of the best score
        self.monitor: Any = None
        self.best: dict[str, Any] | None = None
        self.monitor_history: list[tuple[int, float]] = []
        self.stop_reason = ""
        self.elapsed = 0.0  # seconds trained, over all fit_iter calls (the time budget counts them)
        self._patience_from = 0
        self._clock = time.perf_counter
        self.device = recipe.device
        missing = [s for s in recipe.data_sources if hasattr(data, "sources") and s not in data.sources]
        if missing:
            raise ValueError(f"recipe {recipe.name!r} needs data sources {list(recipe.data_sources)}; missing {missing}")
        # grey data on a colour network is replicated to its channels (as inference does);
        # other channel counts are refused here, not by torch inside the first step
        info = getattr(recipe.inference_model(), "info", None)
        self._want_channels = getattr(info, "in_channels", None)
        for name, src in (data.sources.items() if hasattr(data, "sources") else ()):
            c = getattr(src, "channels", None)
            if self._want_channels and c and c != self._want_channels and c != 1:
                raise ValueError(
                    f"{name}: the images have {c} channels but the {recipe.name} network takes "
                    f"{self._want_channels}; choose {self._want_channels} channels (or one) of the data")
        #: the resolved precision of the training steps; on the CPU the networks and batches
        #: are channels_last (oneDNN's fast layout)
        self.precision = resolve_precision(self.config.precision, self.device, amp=self.config.amp)
        for net in recipe.networks.values():
            self.precision.prepare(net)
        half = self.precision.name == "float16"
        recipe.scaler = torch.amp.GradScaler("cuda", enabled=True) if half else None
        recipe.grad_clip = self.config.grad_clip
        for opt in recipe.optimizers.values():
            for g in opt.param_groups:
                g["lr"] = self.config.lr * g.get("lr_scale", 1.0)
                g.setdefault("initial_lr", g["lr"])
        self.schedulers = {
            name: torch.optim.lr_scheduler.LambdaLR(opt, self._lr_factor)
            for name, opt in recipe.optimizers.items()
        }
        # weight averages: name -> state dict (floating tensors averaged, others copied)
        self.ema: dict[str, dict[str, torch.Tensor]] | None = None
        self._ema_updates = 0
        if self.config.ema:
            self.restart_average()

    def _snapshot(self, names: Iterable[str] | None = None) -> dict[str, dict[str, torch.Tensor]]:
        """Copies of the state dicts of the recipe's networks (all, or those in ``names``)."""
        nets = self.recipe.networks
        return {name: {k: v.detach().clone() for k, v in nets[name].state_dict().items()}
                for name in (nets if names is None else names)}

    @contextlib.contextmanager
    def _holding(self, states: Mapping[str, Mapping[str, torch.Tensor]] | None) -> Iterator[None]:
        """Within the block the networks named in ``states`` hold those weights (None: no change)."""
        if not states:
            yield
            return
        nets = self.recipe.networks
        current = self._snapshot(states)
        try:
            for name, state in states.items():
                nets[name].load_state_dict(state)
            yield
        finally:
            for name, state in current.items():
                nets[name].load_state_dict(state)

    def restart_average(self) -> None:
        """Start the weight average again from the current weights (after loading other weights)."""
        self.ema = self._snapshot()
        self._ema_updates = 0

    def _update_ema(self) -> None:
        decay = min(self.config.ema, (1 + self._ema_updates) / (10 + self._ema_updates))
        self._ema_updates += 1
        with torch.no_grad():
            for name, net in self.recipe.networks.items():
                avg = self.ema[name]
                for k, v in net.state_dict().items():
                    if v.is_floating_point():
                        avg[k].lerp_(v, 1.0 - decay)
                    else:
                        avg[k].copy_(v)

    @contextlib.contextmanager
    def averaged_weights(self) -> Iterator[None]:
        """Within the block the recipe's networks hold the weight averages (if any)."""
        with self._holding(self.ema):
            yield

    @contextlib.contextmanager
    def usable_weights(self, which: str = "best") -> Iterator[None]:
        """Within the block the networks hold the weights a model file gives (:func:`model_networks`):
        the best monitored step's (``which="best"``, when the run keeps one), else the average, else the last."""
        if which not in WHICH:
            raise ValueError(f"which must be one of {WHICH}, got {which!r}")
        best = self.best if (which == "best" and self.config.keep_best) else None
        with self.averaged_weights(), self._holding(best["networks"] if best else None):
            yield

    @property
    def model(self) -> nn.Module:
        """The network being trained, as used at inference (``dehaze(x, method=trainer.model)``).

        With a quality monitor and ``keep_best``: a copy holding the best monitored
        step's weights; with a weight average (``TrainConfig.ema``): a copy holding
        the average; otherwise the network itself.  :meth:`last_model` gives the last.
        """
        if not self.ema and not (self.best and self.config.keep_best):
            return self.recipe.inference_model()
        with self.usable_weights("best"):
            return copy.deepcopy(self.recipe.inference_model())

    def last_model(self) -> nn.Module:
        """A copy of the inference network at the last step (its weight average, if kept)."""
        with self.usable_weights("last"):
            return copy.deepcopy(self.recipe.inference_model())

    # monitor ---------------------------------------------------------------------
    def _evaluate(self) -> Any:
        """Score the current weights (their average, if kept) and update the best; returns a MonitorScore."""
        from napari_nlcl.training.monitor import MonitorScore

        with self.averaged_weights():
            score = float(self.monitor.score(self.recipe.inference_model(), precision=self.precision))
            if self.best is None or score > self.best["score"]:
                self.best = {"step": self.step, "score": score, "networks": self._snapshot()}
        self.monitor_history.append((self.step, score))
        return MonitorScore(self.step, score, self.best["step"], self.best["score"])

    def evaluations_since_best(self) -> int:
        """Monitor evaluations since the best one (in this ``fit_iter`` call: Continue starts afresh)."""
        if self.best is None:
            return 0
        since = max(self.best["step"], self._patience_from)
        return sum(1 for step, _ in self.monitor_history if step > since)

    def kept_reason(self) -> str:
        """Why the model file gives the weights it gives (stored in the checkpoint's metadata)."""
        if not (self.best and self.config.keep_best):
            return "last step"
        name = getattr(self.monitor, "name", "monitor")
        unit = f" {self.monitor.unit}" if getattr(self.monitor, "unit", "") else ""
        last = self.monitor_history[-1] if self.monitor_history else (self.best["step"], self.best["score"])
        text = (f"best {name} ({self.best['score']:.2f}{unit}) of {len(self.monitor_history)} "
                f"evaluations up to step {last[0]}")
        if last[0] != self.best["step"]:
            text += f"; the last scored {last[1]:.2f}{unit}"
        return text

    @classmethod
    def from_recipe_name(
        cls, name: str, data: Any, config: TrainConfig | None = None, *,
        recipe_config: Any = None, **kwargs: Any,
    ) -> Trainer:
        config = config or TrainConfig()
        device = select_device(config.device)
        recipe = build_recipe(name, recipe_config, device=device, seed=config.seed)
        return cls(recipe, data, config, **kwargs)

    @classmethod
    def from_model(
        cls, source: str | os.PathLike, data: Any, config: TrainConfig | None = None, *,
        recipe_config: Mapping[str, Any] | None = None, **kwargs: Any,
    ) -> Trainer:
        """A new run (fresh optimiser, step 0) whose networks start from model file ``source``.

        The architecture comes from ``source``; ``recipe_config`` overrides the
        other settings (mode, loss weights).
        """
        config = config or TrainConfig()
        payload = read_checkpoint(source)
        stored = json.loads(payload["config"])["recipe"]
        merged = {**stored, **dict(recipe_config or {})}
        recipe = build_recipe(payload["recipe"], merged, device=select_device(config.device),
                              seed=config.seed)
        try:
            recipe.start_from(model_networks(payload))
        except RuntimeError as exc:
            raise ValueError(f"{source}: its weights do not fit the requested network: {exc}") from exc
        meta = dict(kwargs.pop("metadata", None) or {})
        meta.setdefault("started_from", str(source))
        return cls(recipe, data, config, metadata=meta, **kwargs)

    @classmethod
    def resume(cls, path: str | os.PathLike, data: Any, *, steps: int | None = None,
               device: Any = None, precision: str | None = None, **kwargs: Any) -> Trainer:
        """Continue the run saved in ``path`` exactly where it stopped.

        ``steps`` raises the total number of steps (continue training further);
        ``device`` and ``precision`` replace the stored ones (the weights are float32
        whatever the precision, so a run may change it).
        """
        payload = read_checkpoint(path)
        if payload.get("exported") or "optimizers" not in payload:
            raise ValueError(
                f"{path} holds exported weights only, without the training state needed to "
                "resume; start a new run from it instead (CLI: --from, Python: start_from)"
            )
        cfg = json.loads(payload["config"])
        train_cfg = config_from_dict(TrainConfig, cfg["train"])
        if steps is not None:
            train_cfg.steps = int(steps)
        if device is not None:
            train_cfg.device = device
        if precision is not None:
            from napari_nlcl.inference.precision import check as check_precision

            train_cfg.precision = check_precision(precision)
        recipe, _ = load_recipe(path, device=select_device(train_cfg.device), averaged=False)
        kwargs.setdefault("checkpoint", path)
        kwargs.setdefault("metadata", json.loads(payload.get("metadata", "{}")))
        trainer = cls(recipe, data, train_cfg, **kwargs)
        trainer._load_training_state(payload)
        if trainer.checkpoint is not None and Path(trainer.checkpoint) == Path(path):
            trainer.saved_step = trainer.step
        return trainer

    # schedule ------------------------------------------------------------------
    def _lr_factor(self, step: int) -> float:
        cfg = self.config
        start = int(cfg.decay_start * cfg.steps)
        if cfg.schedule == "constant" or step < start:
            return 1.0
        frac = (step - start) / max(cfg.steps - start, 1)
        frac = min(max(frac, 0.0), 1.0)
        if cfg.schedule == "linear":
            return 1.0 - frac
        return 0.5 * (1.0 + math.cos(math.pi * frac))

    @property
    def lr(self) -> float:
        opt = next(iter(self.recipe.optimizers.values()))
        return float(opt.param_groups[0]["lr"])

    # state ---------------------------------------------------------------------
    def state_payload(self) -> dict[str, Any]:
        r = self.recipe
        data_state = self.data.get_state() if hasattr(self.data, "get_state") else None
        config = {"recipe": _jsonable(r.config), "train": _jsonable(self.config)}
        meta = {
            **self.metadata,
            "data": self.data.describe() if hasattr(self.data, "describe") else self.metadata.get("data"),
            "versions": {"napari_nlcl": __version__, "torch": torch.__version__,
                         "numpy": np.__version__, "python": platform.python_version()},
            "saved": time.strftime("%Y-%m-%d %H:%M:%S"),
            "kept": {"step": int(self.best["step"]) if self.best and self.config.keep_best else self.step,
                     "reason": self.kept_reason()},
            **({"stop_reason": self.stop_reason} if self.stop_reason else {}),
        }
        return {
            "format": CHECKPOINT_FORMAT,
            "format_version": CHECKPOINT_VERSION,
            "recipe": r.name,
            "recipe_version": r.version,
            "package_version": __version__,
            "config": json.dumps(config),
            "metadata": json.dumps(_jsonable(meta)),
            "step": self.step,
            "networks": {k: v.state_dict() for k, v in r.networks.items()},
            "optimizers": {k: v.state_dict() for k, v in r.optimizers.items()},
            "schedulers": {k: v.state_dict() for k, v in self.schedulers.items()},
            "scaler": r.scaler.state_dict() if r.scaler is not None else {},
            "rng": {
                "recipe": r.generator.get_state(),
                "torch": torch.get_rng_state(),
                "data": json.dumps(_jsonable(data_state)) if data_state is not None else "",
            },
            "extra": r.extra_state(),
            **({"ema": {k: dict(v) for k, v in self.ema.items()}, "ema_updates": self._ema_updates}
               if self.ema else {}),
            **self._monitor_payload(),
            "elapsed": float(self.elapsed),
        }

    def _monitor_payload(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.monitor is not None and hasattr(self.monitor, "inputs"):
            def q(t: torch.Tensor) -> torch.Tensor:  # 8 bits, as images are
                return (t.clamp(0, 1) * 255).round().to(torch.uint8)

            out["monitor"] = {"inputs": q(self.monitor.inputs), "targets": q(self.monitor.targets),
                              "history": json.dumps(self.monitor_history)}
        if self.best is not None and self.config.keep_best:
            out["best"] = {"step": int(self.best["step"]), "score": float(self.best["score"]),
                           "reason": self.kept_reason(), "networks": self.best["networks"]}
        return out

    def _load_training_state(self, payload: Mapping[str, Any]) -> None:
        r = self.recipe
        for name, state in payload["optimizers"].items():
            r.optimizers[name].load_state_dict(state)
        for name, state in payload["schedulers"].items():
            self.schedulers[name].load_state_dict(state)
        if r.scaler is not None and payload.get("scaler"):
            r.scaler.load_state_dict(payload["scaler"])
        rng = payload["rng"]
        r.generator.set_state(rng["recipe"])
        torch.set_rng_state(rng["torch"])
        if rng.get("data") and hasattr(self.data, "set_state"):
            self.data.set_state(json.loads(rng["data"]))
        self.step = int(payload["step"])
        self.elapsed = float(payload.get("elapsed", 0.0))
        stored = payload.get("monitor")
        if stored:
            from napari_nlcl.training.monitor import ProxyPairs

            self.monitor = ProxyPairs(stored["inputs"].float() / 255, stored["targets"].float() / 255)
            self.monitor_history = [tuple(x) for x in json.loads(stored["history"])]
        best = payload.get("best")
        if best:
            self.best = {"step": int(best["step"]), "score": float(best["score"]),
                         "networks": best["networks"]}
        if self.ema is not None and payload.get("ema"):
            for name, state in payload["ema"].items():
                for k, v in state.items():
                    self.ema[name][k].copy_(v)
            self._ema_updates = int(payload.get("ema_updates", 0))
        for sched in self.schedulers.values():  # LambdaLR lr follows its own counter
            for g, lr in zip(sched.optimizer.param_groups, sched.get_last_lr()):
                g["lr"] = lr

    def save(self, path: str | os.PathLike | None = None) -> Path:
        target = Path(path) if path else self.checkpoint
        if target is None:
            raise ValueError("no checkpoint path: pass one to save() or to the Trainer")
        written = save_checkpoint(target, self.state_payload())
        if self.checkpoint is not None and target == Path(self.checkpoint):
            self.saved_step = self.step
        return written

    # loop ----------------------------------------------------------------------
    def _next_batch(self) -> dict[str, torch.Tensor]:
        if self._stream is None:
            self._stream = iter(self.data)
        batch = next(self._stream)
        want = self._want_channels
        return {k: self.precision.tensor(
                    (v.repeat(1, want, 1, 1) if want and want > 1 and v.ndim == 4 and v.shape[1] == 1 else v)
                    .to(self.device, non_blocking=True)) for k, v in batch.items()}

    def fit_iter(self) -> Generator[TrainEvent, None, None]:
        """Train to ``config.steps``, yielding a :class:`TrainEvent` after every step.

        Closing the generator early (Stop) saves a checkpoint at the current
        step when a checkpoint path is set; ``Trainer.resume`` continues from it.
        The generator is only ever closed between steps (at a ``yield``), so that
        checkpoint is always a completed step.  An exception raised *inside* a
        step (an error, or ``KeyboardInterrupt`` delivered mid-step) saves
        nothing, since the networks may be half-updated; ``saved_step`` then
        says which step the checkpoint file holds.

        With ``monitor_every`` and a recipe monitor, the starting weights are
        scored first and every ``monitor_every`` steps after ("monitor"
        events); ``patience`` stops the run when the score has not improved
        that many evaluations in a row, and ``minutes`` plans the steps from
        the speed of the first ones and stops at the budget.  ``stop_reason``
        and the "done" event's ``message`` say why a run ended early.
        """
        cfg = self.config
        r = self.recipe
        r.train(True)
        clock = self._clock
        started = clock()
        elapsed_before = self.elapsed
        first_step = self.step
        self.stop_reason = ""
        self._patience_from = first_step
        if cfg.monitor_every and self.monitor is None:
            self.monitor = r.build_monitor(self.data, seed=cfg.seed)
        planned = not cfg.minutes
        try:
            if self.monitor is not None and cfg.monitor_every and self.best is None:
                yield TrainEvent("monitor", self.step, cfg.steps, monitor=self._evaluate())  # the start
                r.train(True)
            while self.step < cfg.steps:
                batch = self._next_batch()
                with self.precision.autocast():
                    losses = r.training_step(batch, self.step)
                if r.scaler is not None:
                    r.scaler.update()
                if self.ema is not None:
                    self._update_ema()
                with warnings.catch_warnings():
                    # an optimiser a recipe leaves idle (e.g. the discriminator's when its loss
                    # weight is 0) still follows the schedule; torch warns about that
                    warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
                    for sched in self.schedulers.values():
                        sched.step()
                self.step += 1
                now = clock()
                self.elapsed = elapsed_before + (now - started)
                rate = (self.step - first_step) / max(now - started, 1e-9)
                if not planned and self.step - first_step >= min(10, max(cfg.steps - first_step, 1)):
                    # the budget decides the number of steps (and so the schedule): plan it once
                    # from the speed so far, with the monitor's cost included
                    left = cfg.minutes * 60 - self.elapsed
                    cfg.steps = max(self.step, min(cfg.steps, self.step + int(left * rate * 0.97)))
                    planned = True
                yield TrainEvent(
                    "step", self.step, cfg.steps, {k: float(v) for k, v in losses.items()},
                    lr=self.lr, images_per_s=rate * cfg.batch_size,
                    seconds_left=(cfg.steps - self.step) / max(rate, 1e-9),
                )
                if cfg.preview_every and self.preview_image is not None and (
                    self.step % cfg.preview_every == 0 or self.step == cfg.steps
                ):
                    preview = r.preview(self.preview_image)
                    r.train(True)
                    yield TrainEvent("preview", self.step, cfg.steps, preview=preview)
                if self.monitor is not None and cfg.monitor_every and (
                    self.step % cfg.monitor_every == 0 or self.step == cfg.steps
                ):
                    result = self._evaluate()
                    r.train(True)
                    yield TrainEvent("monitor", self.step, cfg.steps, monitor=result)
                    if cfg.patience and self.evaluations_since_best() >= cfg.patience:
                        self.stop_reason = (
                            f"stopped early at step {self.step}: the quality monitor has not improved "
                            f"for {cfg.patience} evaluations (best at step {self.best['step']})")
                if cfg.minutes and not self.stop_reason and clock() - started + elapsed_before >= cfg.minutes * 60:
                    self.stop_reason = f"time budget of {cfg.minutes:g} min reached at step {self.step}"
                if self.checkpoint and cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                    yield TrainEvent("checkpoint", self.step, cfg.steps, path=self.save())
                if self.stop_reason:
                    break
            if self.checkpoint and self.saved_step != self.step:
                yield TrainEvent("checkpoint", self.step, cfg.steps, path=self.save())
            yield TrainEvent("done", self.step, cfg.steps, message=self.stop_reason)
        except GeneratorExit:  # closed at a yield: the state is that of a completed step
            if self.checkpoint and self.saved_step != self.step:
                self.save()
            raise
        finally:
            r.train(False)

    def fit(self, callback: Any = None) -> list[TrainEvent]:
        """Run :meth:`fit_iter` to the end; returns the step events (loss history)."""
        history = []
        for event in self.fit_iter():
            if event.kind == "step":
                history.append(event)
            if callback is not None:
                callback(event)
        return history


register_recipe("dehaze", "napari_nlcl.training.dehaze:DehazeRecipe")
register_recipe("derain", "napari_nlcl.training.derain:DerainRecipe")
register_recipe("translate", "napari_nlcl.training.translate:TranslateRecipe")
