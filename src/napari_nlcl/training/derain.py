"""Training recipe of the NLCL derainer: synthetic warm start and unsupervised NLCL.

Two generators split a rainy image ``O`` into a background ``B = G_B(O)`` and
a rain layer ``R = G_R(O)`` (:mod:`napari_nlcl.nets.derain`).  Modes
(``DerainConfig.mode``), chosen from the data the user gives:

``"synthetic"`` (source ``clean``)
    Rain is synthesised on every clean crop (a bank of streak maps made by
    :func:`napari_nlcl.synth.add_rain`, several layers of similar angle added
    or screen-blended at random opacities, sometimes under a smooth veil), and
    both generators are trained with L1 to the known layers.  The shipped default starts this way.
``"nlcl"`` (source ``rainy``; ``clean`` optional and unpaired)
    Unsupervised non-local contrastive learning (Ye et al., CVPR 2022, with
    the asymmetric layer contrast of Chang et al., TPAMI 2024).  Generator loss:

    * ``consistency_weight * ||B + R - O||^2`` (1) and ``sparsity_weight * |R|_1`` (0.1);
    * ``gan_weight *`` LSGAN: a PatchGAN judges ``B`` against clean images
      (the user's, or a small set of scikit-image photos bundled with
      scikit-image when none are given); nothing judges ``R``;
    * ``layer_weight *`` layer contrast: around a random anchor, the
      self-similar 16 x 16 patches of ``B`` in a 40 x 40 window are positives
      of ``B``'s anchor and ``R``'s self-similar patches its negatives, and
      vice versa; features are the discriminator's input and first two
      stages, each patch flattened into one vector (``patch_features``), through
      MLP heads.  ``asymmetric`` gives the rain anchor fewer
      positives and a lower temperature (rain patches lie in a
      lower-dimensional set); ``asymmetric=False`` is the CVPR version;
    * ``location_weight *`` PatchNCE between ``B`` and ``O`` at 256 shared
      locations through ``G_B``'s own encoder layers; ``hard_negatives``
      adds, for the background, the least similar patches of ``O`` in the
      anchor's window (reverse non-local) as extra negatives;
    * ``transplant_weight *`` L1 on "rain transplants": the rain layer the
      model currently finds in the user's images, ``O - B`` (detached),
      added to clean photos, with the clean photo as the target.  The pairs
      carry the user's own rain style (streak shape, blur, veil) and need no
      ground truth;
    * ``sup_weight *`` the synthetic-rain L1 terms on the clean images
      (0 = pure NLCL; the shipped default keeps 1 so that fine-tuning on
      real rain cannot drift away from what it learnt).

Images are in [0, 1] (the networks map them to [-1, 1] inside).  Every MLP
head is created before the optimiser and stepped with the generators.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from napari_nlcl.synth.banks import add_bank_rain, make_rain_bank
from napari_nlcl.contrastive.encoders import FeatureExtractor, ProjectionHeads
from napari_nlcl.contrastive.losses import asymmetric_layer_contrast, lsgan_loss, patch_nce
from napari_nlcl.contrastive.samplers import (
    extract_patches,
    nonlocal_positives,
    patch_embeddings,
    reverse_nonlocal,
    sample_locations,
    scale_coords,
)
from napari_nlcl.training import Recipe
from napari_nlcl.nets.derain import DEFAULT_WEIGHTS, DerainNet, PatchDiscriminator, preset

MODES = ("synthetic", "nlcl")
FALLBACK_CLEAN = ("astronaut", "chelsea", "coffee", "rocket", "camera", "grass", "gravel", "brick", "clock")


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
                     "pseudo_clean", "downpour_sheets", "anchor_weight", "drizzle"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and v >= 0 and math.isfinite(v)):
                raise ValueError(f"{name} must be a number >= 0, got {v!r}")
        for name in ("patch", "window", "nl_patches", "nce_patches", "disc_ndf", "rain_bank", "rain_bank_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if self.transplant_from not in ("current", "start"):
            raise ValueError(f"transplant_from must be 'current' or 'start', got {self.transplant_from!r}")
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
        for name in ("downpour", "pseudo_clean", "downpour_sheets", "drizzle"):
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


# ----------------------------------------------------------------------------- rain synthesis


def _fallback_clean_images() -> list[np.ndarray]:
    import skimage.data

    images = []
    for name in FALLBACK_CLEAN:
        im = np.asarray(getattr(skimage.data, name)(), dtype=np.float32) / 255.0
        if im.ndim == 2:
            im = np.repeat(im[..., None], 3, axis=-1)
        images.append(np.ascontiguousarray(im[..., :3]))
    return images


@torch.no_grad()
def derain_proxy_pairs(net: DerainNet, source: Any, *, pairs: int = 16, size: int = 160, seed: int = 0,
                       gains: tuple = (1.0,)):
    """:class:`~napari_nlcl.training.monitor.ProxyPairs` of clean photo crops carrying the rain ``net``
    finds (``O - B``, clipped at 0) in crops of the user's rainy frames ``source``, scaled by
    each of ``gains`` in turn (a gain below 1 makes light-rain pairs, where removing scene
    detail shows)."""
    from napari_nlcl.training.monitor import ProxyPairs, frame_crops, photo_crops

    rng = np.random.default_rng(seed)
    device = next(net.parameters()).device
    was_training = net.training
    net.eval()
    try:
        inputs, targets = [], []
        m = max(int(net.info.size_multiple or 1), 1)
        for k, crop in enumerate(frame_crops(source, pairs, size, rng)):
            h, w = crop.shape[-2:]
            crop = crop[..., : h - h % m or h, : w - w % m or w]  # the network's size multiple
            o = crop[None].to(device)
            if o.shape[1] == 1 and (net.info.in_channels or 1) > 1:  # grey frames, colour network
                o = o.repeat(1, net.info.in_channels, 1, 1)
            rain = (o - net(o).clamp(0.0, 1.0)).clamp(min=0.0).cpu()[0] * float(gains[k % len(gains)])
            clean = photo_crops(1, tuple(rain.shape[-2:]), rain.shape[0], rng)[0]
            inputs.append((clean + rain).clamp(0.0, 1.0))
            targets.append(clean)
    finally:
        net.train(was_training)
    shapes = {t.shape for t in inputs}
    if len(shapes) > 1:  # frames of different sizes: crop all to the smallest
        h = min(s[-2] for s in shapes)
        w = min(s[-1] for s in shapes)
        inputs = [t[..., :h, :w] for t in inputs]
        targets = [t[..., :h, :w] for t in targets]
    return ProxyPairs(torch.stack(inputs), torch.stack(targets),
                      description=f"{len(inputs)} clean photo crops carrying the rain the start model "
                      "finds in the user's frames")


# ----------------------------------------------------------------------------- recipe
class DerainRecipe(Recipe):
    name = "derain"
    task = "derain"
    version = 1
    Config = DerainConfig
    data_sources = ("clean",)
    accepted_sources = ("rainy", "clean")
    default_weights = str(DEFAULT_WEIGHTS)

    # Fine-tuning the shipped model at 5e-5 lowered its validation PSNR by 0.4-0.6 dB in 100
    # steps (Adam's first steps move every weight by about the rate); at 1e-5, with the
    # pseudo-clean images stored in the default, it rose by 0.2 dB (README, fine-tuning).
    fine_tune_lr = 1e-5
    user_settings = {
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

    @classmethod
    def plan_data(cls, given):
        given = cls.check_sources(given, "rainy and/or clean images")
        if given == {"clean"}:
            return {"mode": "synthetic"}, False
        return {"mode": "nlcl"}, False  # rainy (+ unpaired clean)

    def __init__(self, config: DerainConfig, *, device: Any = "cpu", generator=None):
        super().__init__(config, device=device, generator=generator)
        cfg = config
        self.data_sources = ("clean",) if cfg.mode == "synthetic" else ("rainy",)
        gcfg = preset(cfg.preset, **cfg.net)
        self.gen_b = self.add_network("gen_b", DerainNet(gcfg, output="background",
                                                         name=f"NLCL {cfg.preset}"))
        rcfg = preset(cfg.rain_preset, in_channels=gcfg.in_channels)
        self.gen_r = self.add_network("gen_r", DerainNet(rcfg, output="rain", name="NLCL rain"))
        g_params = list(self.gen_b.parameters()) + list(self.gen_r.parameters())
        self.disc = None
        if cfg.mode == "nlcl":
            self.disc = self.add_network("disc", PatchDiscriminator(gcfg.in_channels, cfg.disc_ndf))
            layers = self.disc.contrast_layers()
            if cfg.patch_features == "flatten":  # a patch of C x p x p features is one vector
                dims = [c * max(cfg.patch // f, 1) ** 2 for _, c, f in layers]
            else:  # mean over the patch: C values
                dims = [c for _, c, _ in layers]
            self.layer_heads = self.add_network(
                "layer_heads", ProjectionHeads(dims, out_dim=256, generator=self.generator))
            self._nce_layers = self.gen_b_nce_layers()
            with torch.no_grad():
                probe = torch.zeros(1, gcfg.in_channels, 64, 64, device=self.device)
                chans = [f.shape[1] for f in FeatureExtractor(self.gen_b, self._nce_layers, detach=True)(probe)]
            self.nce_heads = self.add_network(
                "nce_heads", ProjectionHeads(chans, out_dim=256, generator=self.generator))
            g_params += list(self.layer_heads.parameters()) + list(self.nce_heads.parameters())
            self.add_optimizer("disc", self.disc.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.add_optimizer("gen", g_params, lr=2e-4, betas=(0.5, 0.999) if cfg.mode == "nlcl" else (0.9, 0.999))
        self._fallback: list[torch.Tensor] | None = None
        # the frozen starting model, for the anchor and start-model transplants (loaded by
        # start_from; a run from scratch has no starting model, so neither is used)
        self.teacher = None
        self.has_teacher = False
        self.fine_tuning = False  # started from a trained model (start_from): the monitor needs one
        if cfg.mode == "nlcl" and (cfg.anchor_weight or cfg.transplant_from == "start"):
            import copy

            self.teacher = self.add_network("teacher", copy.deepcopy(self.gen_b))
            self.teacher.requires_grad_(False)

    def train(self, mode: bool = True) -> None:
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()

    def start_from(self, networks) -> None:
        """Initialise from a trained model (fine-tuning); the frozen teacher copies its background
        generator (not any teacher the file has: that was the start of an earlier run)."""
        networks = {k: v for k, v in networks.items() if k != "teacher"}
        super().start_from(networks)
        self.fine_tuning = True
        if self.teacher is not None:
            self.teacher.load_state_dict(self.gen_b.state_dict())
            self.has_teacher = True

    def extra_state(self) -> dict[str, Any]:
        return {"has_teacher": self.has_teacher, "fine_tuning": self.fine_tuning}

    def load_extra_state(self, state) -> None:
        self.has_teacher = bool(state.get("has_teacher", False))
        self.fine_tuning = bool(state.get("fine_tuning", self.has_teacher))

    # ------------------------------------------------------------------ pieces
    def gen_b_nce_layers(self) -> list[str]:
        """Layers of the background generator used by the location contrast (PatchNCE)."""
        if self.gen_b.config.arch == "resnet":
            n = self.gen_b.config.blocks
            return ["input", "stem", f"body.{n // 4}", f"body.{n // 2}"]
        names = ["input", "stem", "enc.0"] + [f"down.{i}" for i in range(len(self.gen_b.down))]
        return names

    @cached_property
    def rain_bank(self) -> torch.Tensor:
        bank, _ = make_rain_bank(self.config.rain_bank, self.config.rain_bank_size, self.config.bank_seed)
        return bank

    def _side_bank(self, used: float, kind: str, seed_offset: int) -> torch.Tensor | None:
        """A second streak bank of ``kind`` (half the size of the main one), if ``used``."""
        if not used:
            return None
        bank, _ = make_rain_bank(max(self.config.rain_bank // 2, 1), self.config.rain_bank_size,
                                 self.config.bank_seed + seed_offset, kind=kind)
        return bank

    @cached_property
    def sheet_bank(self) -> torch.Tensor | None:
        return self._side_bank(self.config.downpour_sheets, "sheets", 1)

    @cached_property
    def drizzle_bank(self) -> torch.Tensor | None:
        return self._side_bank(self.config.drizzle, "drizzle", 2)

    def synthesize(self, clean: torch.Tensor, return_veil: bool = False):
        return add_bank_rain(clean, self.rain_bank, self.generator, **self.config.synthesis_kwargs(),
                             sheet_bank=self.sheet_bank, drizzle_bank=self.drizzle_bank,
                             return_veil=return_veil)

    def _clean_crops(self, b: int, h: int, w: int) -> torch.Tensor:
        """Random crops of the bundled fallback clean photos (used when the user gives none)."""
        if self._fallback is None:
            self._fallback = [torch.from_numpy(im).permute(2, 0, 1) for im in _fallback_clean_images()]
        crops = []
        for _ in range(b):
            im = self._fallback[int(torch.randint(len(self._fallback), (), generator=self.generator))]
            if im.shape[-2] < h or im.shape[-1] < w:
                im = F.interpolate(im[None], size=(max(h, im.shape[-2]), max(w, im.shape[-1])),
                                   mode="bilinear", align_corners=False)[0]
            y = int(torch.randint(im.shape[-2] - h + 1, (), generator=self.generator))
            x = int(torch.randint(im.shape[-1] - w + 1, (), generator=self.generator))
            c = im[:, y:y + h, x:x + w]
            if float(torch.rand((), generator=self.generator)) < 0.5:
                c = c.flip(-1)
            crops.append(c)
        return torch.stack(crops).to(self.device)

    def _supervised(self, clean: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        cfg = self.config
        rainy, veil = self.synthesize(clean, return_veil=True)
        bg, found = self.gen_b.split(rainy)
        l1 = F.l1_loss(bg, clean)
        loss = l1
        losses = {"l1": l1.detach()}
        if found is not None and cfg.veil_weight:
            lv = F.mse_loss(found, veil)
            loss = loss + cfg.veil_weight * lv
            losses["mse_veil"] = lv.detach()
        if cfg.rain_weight:
            lr_ = F.l1_loss(self.gen_r(rainy), rainy - clean)
            loss = loss + cfg.rain_weight * lr_
            losses["l1_rain"] = lr_.detach()
        return loss, losses

    # ------------------------------------------------------------------ steps
    def training_step(self, batch, step: int) -> dict[str, torch.Tensor]:
        cfg = self.config
        if cfg.mode == "synthetic":
            clean = batch["clean"]
            self._check_crop(clean)
            loss, losses = self._supervised(clean)
            self.backward_step(loss, "gen")
            losses["total"] = loss.detach()
            return losses
        return self._nlcl_step(batch, step)

    def _check_crop(self, x: torch.Tensor) -> None:
        need = max(self.config.min_crop, self.gen_b.info.min_size)
        if min(x.shape[-2:]) < need:
            raise ValueError(f"derain training needs crops of at least {need} px, got "
                             f"{tuple(x.shape[-2:])}; raise the crop size")

    def _nlcl_step(self, batch, step: int) -> dict[str, torch.Tensor]:
        cfg = self.config
        rainy = batch["rainy"]
        self._check_crop(rainy)
        b, _, h, w = rainy.shape
        bg = self.gen_b(rainy)
        rain = self.gen_r(rainy)
        if "clean" in batch:
            clean = batch["clean"]
        elif cfg.pseudo_clean and float(torch.rand((), generator=self.generator)) < cfg.pseudo_clean:
            # the user's own scenes, as the model now cleans them: synthetic rain and transplants
            # on these adapt the model to the user's content (and, with transplant_gain > 1, to
            # heavier copies of the user's rain) where nine bundled photos cannot
            clean = bg.detach().clamp(0.0, 1.0)
        else:
            clean = self._clean_crops(b, h, w)
        losses: dict[str, torch.Tensor] = {}
        start_bg = None
        if self.teacher is not None and self.has_teacher:
            with torch.no_grad():
                start_bg = self.teacher(rainy).clamp(0.0, 1.0)

        # discriminator: clean photos are real, backgrounds fake (LSGAN)
        if cfg.gan_weight:
            d_loss = 0.5 * (lsgan_loss(self.disc(clean), True) + lsgan_loss(self.disc(bg.detach()), False))
            self.backward_step(d_loss, "disc")
            losses["disc"] = d_loss.detach()

        loss = bg.new_zeros(())
        if cfg.consistency_weight:
            cons = F.mse_loss(bg + rain, rainy)
            loss = loss + cfg.consistency_weight * cons
            losses["consistency"] = cons.detach()
        if cfg.sparsity_weight:
            sp = rain.abs().mean()
            loss = loss + cfg.sparsity_weight * sp
            losses["sparsity"] = sp.detach()
        if cfg.gan_weight:
            g = lsgan_loss(self.disc(bg), True)
            loss = loss + cfg.gan_weight * g
            losses["gan"] = g.detach()
        if cfg.layer_weight:
            lc = self.layer_contrast(bg, rain)
            loss = loss + cfg.layer_weight * lc
            losses["layer_nce"] = lc.detach()
        if cfg.location_weight:
            nce = self.location_contrast(bg, rainy)
            loss = loss + cfg.location_weight * nce
            losses["location_nce"] = nce.detach()
        if cfg.transplant_weight:
            # the rain the model finds in the user's images, added to clean photos: pairs in the
            # user's own rain style (streak shape, blur, veil) without any ground truth
            with torch.no_grad():
                source = start_bg if (cfg.transplant_from == "start" and start_bg is not None) else bg.detach()
                found = (rainy - source).clamp(min=0.0)
                lo, hi = cfg.transplant_gain
                if hi > lo or lo != 1.0:  # heavier copies of the user's rain: remove all of it
                    found = found * (lo + (hi - lo) * torch.rand(b, 1, 1, 1, generator=self.generator)).to(found)
            tr = F.l1_loss(self.gen_b((clean + found).clamp(0.0, 1.0)), clean)
            loss = loss + cfg.transplant_weight * tr
            losses["transplant"] = tr.detach()
        if cfg.anchor_weight and start_bg is not None:
            an = F.l1_loss(bg, start_bg)
            loss = loss + cfg.anchor_weight * an
            losses["anchor"] = an.detach()
        if cfg.sup_weight:
            sup, sup_losses = self._supervised(clean)
            loss = loss + cfg.sup_weight * sup
            losses.update(sup_losses)
        self.backward_step(loss, "gen")
        losses["total"] = loss.detach()
        return losses

    def layer_contrast(self, bg: torch.Tensor, rain: torch.Tensor) -> torch.Tensor:
        """NLCL layer contrast with non-local self-similar positives (per batch element)."""
        cfg = self.config
        _, _, h, w = bg.shape
        k = cfg.nl_patches
        s_b = nonlocal_positives(bg.detach(), patch=cfg.patch, window=cfg.window, k=k,
                                 num_negatives=0, generator=self.generator)
        s_r = nonlocal_positives(rain.detach(), patch=cfg.patch, window=cfg.window, k=k,
                                 num_negatives=0, centers=s_b.anchor)
        coords_b = torch.cat([s_b.anchor[:, None], s_b.positives], 1)
        coords_r = torch.cat([s_r.anchor[:, None], s_r.positives], 1)
        layers = self.disc.contrast_layers()
        tap = FeatureExtractor(self.disc, [n for n, _, _ in layers], stop_at_last=True)
        try:
            f_b, f_r = tap(bg), tap(rain)
        finally:
            tap.remove()
        k_rain, tau_rain = (4, 0.05) if cfg.asymmetric else (8, 0.07)
        total = bg.new_zeros(())
        for (_, _, factor), fb, fr, head in zip(layers, f_b, f_r, self.layer_heads):
            p = max(cfg.patch // factor, 1)
            hw = tuple(fb.shape[-2:])
            cb = scale_coords(coords_b, (h, w), hw, patch=p)
            cr = scale_coords(coords_r, (h, w), hw, patch=p)
            eb = head(self._patch_vectors(fb, cb, p))
            er = head(self._patch_vectors(fr, cr, p))
            total = total + asymmetric_layer_contrast(eb, er, k_bg=8, k_rain=k_rain, tau_bg=0.07,
                                                      tau_rain=tau_rain)
        return total / len(layers)

    def _patch_vectors(self, feats: torch.Tensor, coords: torch.Tensor, p: int) -> torch.Tensor:
        if self.config.patch_features == "flatten":
            return extract_patches(feats, coords, p).flatten(2)  # (B, M, C * p * p)
        return patch_embeddings(feats, coords, p)  # (B, M, C)

    def location_contrast(self, bg: torch.Tensor, rainy: torch.Tensor) -> torch.Tensor:
        """PatchNCE between background and input at the same locations (G_B's own layers)."""
        cfg = self.config
        names = self._nce_layers
        tap_k = FeatureExtractor(self.gen_b, names, detach=True, stop_at_last=True)
        tap_q = FeatureExtractor(self.gen_b, names, stop_at_last=True)
        try:
            f_k = tap_k(rainy)
            f_q = tap_q(bg)
        finally:
            tap_k.remove()
            tap_q.remove()
        total = bg.new_zeros(())
        for i, (fq, fk, head) in enumerate(zip(f_q, f_k, self.nce_heads)):
            q, ids = sample_locations(fq, cfg.nce_patches, generator=self.generator)
            k, _ = sample_locations(fk, ids=ids)
            q, k = head(q), head(k)
            if cfg.hard_negatives and i == 0:
                total = total + self._hard_nce(q, k, fk, head, rainy)
            else:
                total = total + patch_nce(q, k)
        return total / len(f_q)

    def _hard_nce(self, q, k, fk, head, rainy, tau: float = 0.07) -> torch.Tensor:
        """PatchNCE whose negatives also include the patches of ``O`` least similar to a random
        anchor (reverse non-local, NLCL's hard negatives), on the input layer."""
        cfg = self.config
        rn = reverse_nonlocal(rainy, patch=cfg.patch, window=cfg.window, k=16, generator=self.generator)
        hard = head(patch_embeddings(fk, rn.negatives, cfg.patch)).detach()  # (B, 16, D)
        k = k.detach()
        n = q.shape[1]
        same = torch.bmm(q, k.transpose(1, 2)) / tau  # (B, n, n): diagonal = positives
        extra = torch.bmm(q, hard.transpose(1, 2)) / tau  # (B, n, 16)
        logits = torch.cat([same, extra], 2).flatten(0, 1)
        target = torch.arange(n, device=q.device).repeat(q.shape[0])
        return F.cross_entropy(logits, target)

    def inference_model(self) -> DerainNet:
        return self.gen_b

    def build_monitor(self, data: Any, *, seed: int = 0):
        """Proxy pairs for the quality monitor (NLCL fine-tuning only): the rain the current
        (starting) background generator finds in the user's rainy frames, added to clean photos."""
        sources = getattr(data, "sources", {})
        if self.config.mode != "nlcl" or "rainy" not in sources or not self.fine_tuning:
            return None  # from scratch, the start finds no rain worth scoring against
        return derain_proxy_pairs(self.gen_b, sources["rainy"], seed=seed)

    def describe(self) -> dict[str, Any]:
        return {"mode": self.config.mode, "net": asdict(self.gen_b.config)}
