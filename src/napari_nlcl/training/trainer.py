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
import json
import os
import time
import warnings
from collections.abc import Generator, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from napari_nlcl.inference import select_device
from napari_nlcl.inference.precision import resolve as resolve_precision
from napari_nlcl.modelfile import (
    WHICH,
    config_from_dict,
    model_networks,
    read_checkpoint,
    save_checkpoint,
)
from napari_nlcl.training.checkpoints import load_recipe, restore_training_state, training_payload
from napari_nlcl.training.config import TrainConfig, TrainEvent
from napari_nlcl.training.data import check_data_fits
from napari_nlcl.training.recipe import Recipe, build_recipe
from napari_nlcl.training.weights import holding, snapshot, update_average

# --------------------------------------------------------------------------- events


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
        self._want_channels = check_data_fits(recipe, data)
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
        self.ema_updates = 0  # how many steps the average has taken in
        if self.config.ema:
            self.restart_average()

    def _snapshot(self, names: Iterable[str] | None = None) -> dict[str, dict[str, torch.Tensor]]:
        return snapshot(self.recipe.networks, names)

    def _holding(self, states: Mapping[str, Mapping[str, torch.Tensor]] | None):
        return holding(self.recipe.networks, states)

    def restart_average(self) -> None:
        """Start the weight average again from the current weights (after loading other weights)."""
        self.ema = self._snapshot()
        self.ema_updates = 0

    def _update_ema(self) -> None:
        update_average(self.ema, self.recipe.networks, self.config.ema, self.ema_updates)
        self.ema_updates += 1

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
        """The network being trained, as used at inference (``dehaze(x, model=trainer.model)``).

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
        from napari_nlcl.training.monitor import MonitorScore, replaces_best

        with self.averaged_weights():
            score = float(self.monitor.score(self.recipe.inference_model(), precision=self.precision))
            if replaces_best(score, None if self.best is None else self.best["score"],
                             best_is_start=self.best is not None and self.best["step"] == self._start_step(),
                             min_gain=self._min_gain()):
                self.best = {"step": self.step, "score": score, "networks": self._snapshot()}
        self.monitor_history.append((self.step, score))
        return MonitorScore(self.step, score, self.best["step"], self.best["score"])

    def _start_step(self) -> int | None:
        """The step of the first monitor evaluation of the run (its starting weights)."""
        return self.monitor_history[0][0] if self.monitor_history else None

    def _min_gain(self) -> float:
        """The monitor's margin over the start (``ProxyPairs.min_gain``; 0 for monitors without one)."""
        return float(getattr(self.monitor, "min_gain", 0.0) or 0.0)

    def _margin_kept_the_start(self) -> float:
        """The monitor's margin where it is why the start is still kept (scored steps followed
        and none cleared it), else 0."""
        margin = self._min_gain()
        if margin and self.best["step"] == self._start_step() and len(self.monitor_history) > 1:
            return margin
        return 0.0

    def _unit(self) -> str:
        return f" {self.monitor.unit}" if getattr(self.monitor, "unit", "") else ""

    def evaluations_since_best(self) -> int:
        """Monitor evaluations since the best one (in this ``fit_iter`` call: Continue starts afresh)."""
        if self.best is None:
            return 0
        since = max(self.best["step"], self._patience_from)
        return sum(1 for step, _ in self.monitor_history if step > since)

    def kept_summary(self) -> str:
        """One line for a status bar: which step the model file gives, and its score."""
        if not (self.best and self.config.keep_best):
            return "keeps the last step"
        unit = self._unit()
        text = f"keeps step {self.best['step']} ({self.best['score']:.2f}{unit})"
        if margin := self._margin_kept_the_start():
            text += f": the start, no step beat it by the monitor's margin of {margin:.2f}{unit}"
        return text

    def kept_reason(self) -> str:
        """Why the model file gives the weights it gives (stored in the checkpoint's metadata)."""
        if not (self.best and self.config.keep_best):
            return "last step"
        name = getattr(self.monitor, "name", "monitor")
        unit = self._unit()
        last = self.monitor_history[-1] if self.monitor_history else (self.best["step"], self.best["score"])
        text = (f"best {name} ({self.best['score']:.2f}{unit}) of {len(self.monitor_history)} "
                f"evaluations up to step {last[0]}")
        if last[0] != self.best["step"]:
            text += f"; the last scored {last[1]:.2f}{unit}"
        if margin := self._margin_kept_the_start():
            top_step, top = max(self.monitor_history[1:], key=lambda sv: sv[1])
            text += (f"; no step beat the start by the monitor's margin of {margin:.2f}{unit} "
                     f"(closest: step {top_step}, {top - self.best['score']:+.2f}{unit})")
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
        restore_training_state(trainer, payload)
        if trainer.checkpoint is not None and Path(trainer.checkpoint) == Path(path):
            trainer.saved_step = trainer.step
        return trainer

    # schedule ------------------------------------------------------------------
    def _lr_factor(self, step: int) -> float:
        return self.config.lr_factor(step)

    @property
    def lr(self) -> float:
        opt = next(iter(self.recipe.optimizers.values()))
        return float(opt.param_groups[0]["lr"])

    # state ---------------------------------------------------------------------
    def state_payload(self) -> dict[str, Any]:
        """Everything a checkpoint holds (:func:`~napari_nlcl.training.checkpoints.training_payload`)."""
        return training_payload(self)

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

    def _train_step(self) -> dict[str, Any]:
        """One step of the recipe, its weight average and schedules; returns its losses."""
        r = self.recipe
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
        return losses

    def _periodic_events(self) -> Generator[TrainEvent, None, None]:
        """The preview and the quality monitor where this step is due for them (and patience)."""
        cfg, r = self.config, self.recipe
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
                losses = self._train_step()
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
                yield from self._periodic_events()
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
