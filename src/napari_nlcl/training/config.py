"""The settings of a training run, and the events it yields."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SCHEDULES = ("constant", "linear", "cosine")


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

    def lr_factor(self, step: int) -> float:
        """The learning rate's factor at ``step`` under :attr:`schedule` (1 before ``decay_start``)."""
        start = int(self.decay_start * self.steps)
        if self.schedule == "constant" or step < start:
            return 1.0
        frac = (step - start) / max(self.steps - start, 1)
        frac = min(max(frac, 0.0), 1.0)
        if self.schedule == "linear":
            return 1.0 - frac
        return 0.5 * (1.0 + math.cos(math.pi * frac))


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
