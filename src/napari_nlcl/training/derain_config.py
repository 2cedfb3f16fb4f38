"""Settings of the NLCL derain recipe (:mod:`napari_nlcl.training.derain`): the network, loss
and rain-synthesis settings with their validation, and the labels the Train widget shows."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from napari_nlcl.nets.derain import preset

MODES = ("synthetic", "nlcl")


@dataclass
class DerainConfig:
    """Network and loss settings of the derain recipe (``-S key=value`` on the CLI)."""

    mode: str = "synthetic"
    preset: str = "fast"
    rain_preset: str = "rain"
    net: dict = field(default_factory=dict)  # overrides of the background generator preset
    # supervised terms on synthetic rain
    sup_weight: float = 1.0
    rain_weight: float = 0.5  # L1 of the rain generator to the synthetic rain layer
    transplant_weight: float = 1.0  # L1 on clean images + the rain layers found in the user's images
    transplant_gain: tuple = (1.0, 1.0)  # the found rain is scaled by a random factor in this range
    # without clean images given: the probability that a step uses the model's own backgrounds of
    # the user's images (detached) as the clean images, instead of the bundled photos
    pseudo_clean: float = 0.0
    # fine-tuning (nlcl mode from a trained model): L1 of the background to the frozen starting
    # model's background of the same crop, and where transplants take their rain from: the
    # model being trained ("current": a darker background means more "rain" to learn to remove,
    # the loop that made long runs drift) or the frozen starting model ("start").  Measured over
    # 3,000 steps (README, fine-tuning you can trust): 0 / "current" ended 1.2 dB below the start;
    # with "start", anchors of 0.3 and 1 never fell below it (0.3 gained a little more)
    anchor_weight: float = 0.3
    transplant_from: str = "start"
    # "ema": transplants from a slowly updated average of the model (this decay per step), a
    # teacher that improves with the run but cannot follow one step's drift
    transplant_decay: float = 0.999
    # > 0: the anchor compares the backgrounds smoothed by a Gaussian of this sigma (px): it holds
    # brightness, colour and large structures to the start, and leaves free the fine changes that
    # average out over that scale (texture, noise, the rims of streaks)
    anchor_scale: float = 0.0
    # > 0: transplanted rain loses the variation over the crop of its part smoother than this
    # sigma (px): a dark patch the model wrongly finds (beside a bright cloud) is not taught back
    # to it; a uniform veil stays.  +0.5-0.8 dB on light rain, -0.2-0.4 dB on veiled heavy rain
    # (docs/finetuning.md), so off by default
    transplant_highpass: float = 0.0
    # NLCL
    consistency_weight: float = 1.0
    sparsity_weight: float = 0.1
    gan_weight: float = 1.0
    layer_weight: float = 1.0
    location_weight: float = 1.0
    asymmetric: bool = True
    patch_features: str = "flatten"  # layer-contrast patch vectors: "flatten" (C*p*p) or "mean" (C)
    hard_negatives: bool = False
    patch: int = 16
    window: int = 40
    nl_patches: int = 32  # self-similar patches drawn per layer (positives + the other layer's negatives)
    nce_patches: int = 256
    disc_ndf: int = 32
    # rain synthesis
    rain_bank: int = 128
    rain_bank_size: int = 256
    rain_layers: tuple = (1, 3)
    rain_opacity: tuple = (0.1, 0.7)
    veil: float = 0.5  # probability of a smooth veil (0 to veil_max, see veil_field) over the rain
    veil_max: float = 0.2
    additive: float = 0.0  # probability that rain is added (O = B + R) instead of screen-blended
    veil_ref: float = 0.0  # > 0: the veil scales with the streaks' mean light, full range from this
    downpour: float = 0.0  # probability of heavy rain: faint dense streaks over a strong added veil
    downpour_veil: tuple = (0.1, 0.4)  # the range of a downpour's veil (before veil_field's variation)
    # probability that a downpour's streak layer is a sheet: long (30-200 px), wide (2.5-8 px),
    # soft streaks, how heavy rain close to the camera looks (see sheet_params)
    downpour_sheets: float = 0.0
    # probability of light rain instead: two or three layers of thin (0.4-1.2 px), short
    # (4-24 px), dense streaks (drizzle_params) at different defocus (depths), opacity 0.15-0.5
    drizzle: float = 0.0
    # probability that a clean crop of the synthetic term is made grey (its luma on every
    # channel) before the rain: grey frames (microscopy, night cameras) are in the training range
    grey: float = 0.0
    # squared error of a veil branch (net={"veil": True}) to the synthetic veil: its mean, not
    # its median (L1's choice, which is "no veil" while half of the crops have none)
    veil_weight: float = 10.0
    blur: float = 1.5  # streaks are defocused by a Gaussian of sigma up to this (px)
    bank_seed: int = 0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        for name in ("sup_weight", "rain_weight", "transplant_weight", "consistency_weight", "sparsity_weight", "gan_weight",
                     "layer_weight", "location_weight", "veil", "veil_max", "blur", "additive", "veil_ref", "veil_weight", "downpour",
                     "pseudo_clean", "downpour_sheets", "anchor_weight", "drizzle", "anchor_scale",
                     "transplant_highpass", "grey"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and v >= 0 and math.isfinite(v)):
                raise ValueError(f"{name} must be a number >= 0, got {v!r}")
        for name in ("patch", "window", "nl_patches", "nce_patches", "disc_ndf", "rain_bank", "rain_bank_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if self.transplant_from not in ("current", "start", "ema"):
            raise ValueError(f"transplant_from must be 'current', 'start' or 'ema', got {self.transplant_from!r}")
        if not 0.0 <= self.transplant_decay < 1.0:
            raise ValueError(f"transplant_decay must be in [0, 1), got {self.transplant_decay!r}")
        if self.patch_features not in ("flatten", "mean"):
            raise ValueError(f"patch_features must be 'flatten' or 'mean', got {self.patch_features!r}")
        if self.window <= self.patch:
            raise ValueError(f"window ({self.window}) must be larger than patch ({self.patch})")
        if self.nl_patches < 8:
            raise ValueError("nl_patches must be >= 8 (the background anchor uses 8 positives)")
        self.rain_layers = tuple(int(v) for v in self.rain_layers)
        self.rain_opacity = tuple(float(v) for v in self.rain_opacity)
        self.downpour_veil = tuple(float(v) for v in self.downpour_veil)
        self.transplant_gain = tuple(float(v) for v in self.transplant_gain)
        if len(self.transplant_gain) != 2 or not 0 < self.transplant_gain[0] <= self.transplant_gain[1] <= 4:
            raise ValueError(f"transplant_gain must be (low, high) with 0 < low <= high <= 4, got {self.transplant_gain}")
        for name in ("downpour", "pseudo_clean", "downpour_sheets", "drizzle", "grey"):
            if getattr(self, name) > 1:
                raise ValueError(f"{name} is a probability in [0, 1], got {getattr(self, name)}")
        if len(self.downpour_veil) != 2 or not 0 <= self.downpour_veil[0] <= self.downpour_veil[1] <= 1:
            raise ValueError(f"downpour_veil must be (low, high) in [0, 1], got {self.downpour_veil}")
        if len(self.rain_layers) != 2 or not 1 <= self.rain_layers[0] <= self.rain_layers[1]:
            raise ValueError(f"rain_layers must be (min, max) with 1 <= min <= max, got {self.rain_layers}")
        lo, hi = self.rain_opacity
        if not 0 <= lo <= hi <= 1:
            raise ValueError(f"rain_opacity must be (low, high) in [0, 1], got {self.rain_opacity}")
        preset(self.preset, **self.net)  # validates the architecture now, with a clear message
        preset(self.rain_preset)

    def synthesis_kwargs(self) -> dict[str, Any]:
        """The :func:`add_bank_rain` settings of this recipe (its rain synthesis)."""
        return {"layers": self.rain_layers, "opacity": self.rain_opacity, "veil": self.veil,
                "veil_max": self.veil_max, "blur": self.blur, "additive": self.additive,
                "veil_ref": self.veil_ref, "downpour": self.downpour, "downpour_veil": self.downpour_veil,
                "sheets": self.downpour_sheets, "drizzle": self.drizzle}

    @property
    def min_crop(self) -> int:
        return max(self.window, 32)


#: the settings the Train widget shows: ``name: (label, tooltip)`` (``DerainRecipe.user_settings``)
USER_SETTINGS: dict[str, tuple[str, str]] = {
    "anchor_weight": ("stay close to the start", "Fine-tuning: how strongly the background is kept "
                      "near the starting model's (higher is safer, lower adapts more to your rain)"),
    "transplant_weight": ("learn from your rain", "Weight of the rain found in your frames laid over "
                          "clean photos, which the model learns to remove again"),
    "gan_weight": ("realism (GAN)", "How much a discriminator's judgement that the background looks "
                   "like a clean photo counts"),
    "layer_weight": ("rain / background contrast", "NLCL's layer contrast: background and rain patches "
                     "are pushed apart in feature space"),
    "sparsity_weight": ("rain sparsity", "Prefers a rain layer with few strong streaks over a faint veil"),
    "sup_weight": ("synthetic rain", "Weight of rain synthesised on clean photos, whose answer is known"),
}
