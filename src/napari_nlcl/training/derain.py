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

import copy
from dataclasses import asdict
from functools import cached_property
from typing import Any

import torch
import torch.nn.functional as F

from napari_nlcl.contrastive.encoders import FeatureExtractor, ProjectionHeads
from napari_nlcl.contrastive.losses import lsgan_loss
from napari_nlcl.nets.derain import DEFAULT_WEIGHTS, DerainNet, preset
from napari_nlcl.nets.discriminators import PatchDiscriminator
from napari_nlcl.synth.banks import add_bank_rain, gaussian_blur, make_rain_bank
from napari_nlcl.training import Recipe
from napari_nlcl.training.derain_config import USER_SETTINGS, DerainConfig
from napari_nlcl.training.derain_contrast import NonLocalContrast
from napari_nlcl.training.monitor import bundled_photos, derain_proxy_pairs, luma
from napari_nlcl.training.weights import update_average

#: photos bundled with scikit-image that stand in for clean images in NLCL mode when the user gives none
FALLBACK_CLEAN = ("astronaut", "chelsea", "coffee", "rocket", "camera", "grass", "gravel", "brick", "clock")


class DerainRecipe(NonLocalContrast, Recipe):
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
    user_settings = USER_SETTINGS

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
            self.nce_layers = self.gen_b_nce_layers()
            with torch.no_grad():
                probe = torch.zeros(1, gcfg.in_channels, 64, 64, device=self.device)
                chans = [f.shape[1] for f in FeatureExtractor(self.gen_b, self.nce_layers, detach=True)(probe)]
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
        self.rain_teacher = None
        if cfg.mode == "nlcl" and (cfg.anchor_weight or cfg.transplant_from == "start"):
            self.teacher = self.add_network("teacher", copy.deepcopy(self.gen_b))
            self.teacher.requires_grad_(False)
        if cfg.mode == "nlcl" and cfg.transplant_from == "ema":
            self.rain_teacher = self.add_network("rain_teacher", copy.deepcopy(self.gen_b))
            self.rain_teacher.requires_grad_(False)

    def train(self, mode: bool = True) -> None:
        super().train(mode)
        for net in (self.teacher, self.rain_teacher):
            if net is not None:
                net.eval()

    def start_from(self, networks) -> None:
        """Initialise from a trained model (fine-tuning); the frozen teacher copies its background
        generator (not any teacher the file has: that was the start of an earlier run)."""
        networks = {k: v for k, v in networks.items() if k not in ("teacher", "rain_teacher")}
        super().start_from(networks)
        self.fine_tuning = True
        for net in (self.teacher, self.rain_teacher):
            if net is not None:
                net.load_state_dict(self.gen_b.state_dict())
        self.has_teacher = self.teacher is not None

    def extra_state(self) -> dict[str, Any]:
        return {"has_teacher": self.has_teacher, "fine_tuning": self.fine_tuning}

    def load_extra_state(self, state) -> None:
        self.has_teacher = bool(state.get("has_teacher", False))
        self.fine_tuning = bool(state.get("fine_tuning", self.has_teacher))

    # ------------------------------------------------------------------ pieces
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
            self._fallback = [torch.from_numpy(im).permute(2, 0, 1) for im in bundled_photos(FALLBACK_CLEAN)]
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
        if cfg.grey and clean.shape[1] == 3:
            pick = torch.rand(clean.shape[0], 1, 1, 1, generator=self.generator).to(clean) < cfg.grey
            clean = torch.where(pick, luma(clean).expand_as(clean), clean)
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
        bg = self.gen_b(rainy)
        rain = self.gen_r(rainy)
        clean = self._nlcl_clean(batch, rainy, bg)
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

        # the generators' terms, computed (only where weighted) and added in this order
        terms = (
            ("consistency", cfg.consistency_weight, lambda: F.mse_loss(bg + rain, rainy)),
            ("sparsity", cfg.sparsity_weight, lambda: rain.abs().mean()),
            ("gan", cfg.gan_weight, lambda: lsgan_loss(self.disc(bg), True)),
            ("layer_nce", cfg.layer_weight, lambda: self.layer_contrast(bg, rain)),
            ("location_nce", cfg.location_weight, lambda: self.location_contrast(bg, rainy)),
            ("transplant", cfg.transplant_weight, lambda: self.transplant_loss(rainy, bg, start_bg, clean)),
            ("anchor", cfg.anchor_weight if start_bg is not None else 0.0, lambda: self.anchor_loss(bg, start_bg)),
        )
        loss = bg.new_zeros(())
        for name, weight, term in terms:
            if weight:
                value = term()
                loss = loss + weight * value
                losses[name] = value.detach()
        if cfg.sup_weight:
            sup, sup_losses = self._supervised(clean)
            loss = loss + cfg.sup_weight * sup
            losses.update(sup_losses)
        self.backward_step(loss, "gen")
        if self.rain_teacher is not None:  # the transplant teacher's average moves toward the model
            update_average({"gen_b": self.rain_teacher.state_dict()}, {"gen_b": self.gen_b},
                           self.config.transplant_decay, 0, warmup=False)
        losses["total"] = loss.detach()
        return losses

    def _nlcl_clean(self, batch, rainy: torch.Tensor, bg: torch.Tensor) -> torch.Tensor:
        """The clean images of an NLCL step: the user's, the model's own backgrounds
        (``pseudo_clean``) or crops of the bundled photos."""
        cfg = self.config
        if "clean" in batch:
            return batch["clean"]
        if cfg.pseudo_clean and float(torch.rand((), generator=self.generator)) < cfg.pseudo_clean:
            # the user's own scenes, as the model now cleans them: synthetic rain and transplants
            # on these adapt the model to the user's content (and, with transplant_gain > 1, to
            # heavier copies of the user's rain) where nine bundled photos cannot
            return bg.detach().clamp(0.0, 1.0)
        b, _, h, w = rainy.shape
        return self._clean_crops(b, h, w)

    def anchor_loss(self, bg: torch.Tensor, start_bg: torch.Tensor) -> torch.Tensor:
        """L1 of the background to the frozen start's, both smoothed at ``anchor_scale`` px (when
        set): brightness, colour and large structures stay near the start; fine changes that
        average out over that scale (texture, noise) are left free.  A change of one sign, such as
        a streak removed, still counts in full: L1 keeps its sum under the blur."""
        s = self.config.anchor_scale
        return F.l1_loss(_smooth(bg, s), _smooth(start_bg, s))

    @torch.no_grad()
    def found_rain(self, rainy: torch.Tensor, bg: torch.Tensor, start_bg: torch.Tensor | None) -> torch.Tensor:
        """The rain layer transplants carry: ``O - B`` (at least 0) with ``B`` from the frozen
        start model (``transplant_from="start"``, when there is one), a slow average of the
        model (``"ema"``) or the model being trained; with ``transplant_highpass`` (px), less
        the variation over the crop of its smooth part."""
        cfg = self.config
        if cfg.transplant_from == "start" and start_bg is not None:
            source = start_bg
        elif self.rain_teacher is not None:
            source = self.rain_teacher(rainy).clamp(0.0, 1.0)
        else:
            source = bg.detach()
        found = (rainy - source).clamp(min=0.0)
        if cfg.transplant_highpass:
            # the smooth part's variation over the crop goes (a dark patch the model wrongly
            # found); its level over the whole crop, a uniform veil, stays
            smooth = _smooth(found, cfg.transplant_highpass)
            floor = smooth.flatten(2).amin(2)[..., None, None]
            found = (found - (smooth - floor)).clamp(min=0.0)
        return found

    def transplant_loss(self, rainy: torch.Tensor, bg: torch.Tensor, start_bg: torch.Tensor | None,
                        clean: torch.Tensor) -> torch.Tensor:
        """L1 on rain transplants: the rain found in the user's images (:meth:`found_rain`), added
        to clean photos, gives pairs in the user's own rain style (streak shape, blur, veil)
        without any ground truth."""
        cfg = self.config
        found = self.found_rain(rainy, bg, start_bg)
        lo, hi = cfg.transplant_gain
        if hi > lo or lo != 1.0:  # heavier copies of the user's rain: remove all of it
            b = rainy.shape[0]
            found = found * (lo + (hi - lo) * torch.rand(b, 1, 1, 1, generator=self.generator)).to(found)
        return F.l1_loss(self.gen_b((clean + found).clamp(0.0, 1.0)), clean)

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


def _smooth(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """``x`` (B, C, H, W) blurred by a Gaussian of ``sigma`` px on each channel (``x`` if 0)."""
    if not sigma:
        return x
    b, c, h, w = x.shape
    return gaussian_blur(x.reshape(b * c, 1, h, w), sigma).reshape(b, c, h, w)
