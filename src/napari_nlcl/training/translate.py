"""Training recipe for unpaired translation: CUT, FastCUT and single-image mode (Park et al., ECCV 2020).

Data: ``source`` (domain A) and ``target`` (domain B), unpaired.  Each step

1. translates the source crops (and, with identity NCE, the target crops)
   with the generator ``G`` (flipped left-right half of the time with flip
   equivariance);
2. steps the PatchGAN ``D`` with LSGAN on real target crops vs translations;
3. steps ``G`` and the MLP heads with ``gan_weight * LSGAN(D(G(a)), real)
   + nce_weight * PatchNCE``.  PatchNCE taps ``G``'s encoder at the input,
   both down-sampling convs and residual blocks 1 and 5, samples
   ``num_patches`` locations per layer, projects them with 2-layer MLP heads
   to 256-d unit vectors and contrasts each query (from ``G(a)``) with the
   key at the same location of ``a`` (detached) against the keys at other
   locations (tau 0.07).  With identity NCE the same is done between
   ``G(b)`` and ``b`` and the two losses are averaged.

Modes (``TranslateConfig.mode``; the settings left at ``None`` follow it):

=========  ==========  ============  ================  ==========================
mode       nce_weight  identity NCE  flip equivariance negatives
=========  ==========  ============  ================  ==========================
cut        1           yes           no                other locations of the image
fastcut    10          no            yes               other locations of the image
single     1           yes           no                the whole batch
=========  ==========  ============  ================  ==========================

Single-image mode is meant for one image per domain (a painting and a
photo): the data loader draws crops at random zooms (``zoom``: a crop covers
``crop / zoom`` pixels), and negatives come from every crop of the batch
(CUT's ``nce_includes_all_negatives_from_minibatch``), so use a batch of 4 or
more.  ``negatives="domain"`` draws them from the batch's crops *of the
anchor's own domain only* (after DCoDR, Kahana & Hoshen 2022): with identity
NCE the queries of ``G(a)`` never meet keys of target images, so the
contrast cannot be won by telling the domains apart.  ``negatives="prototype"``
keeps CUT's per-image negatives but leaves out those that share the key's
prototypes (HCSC, Guo et al. 2022: k-means of the image's keys at 4 and 8
clusters; a patch in the same cluster at both is likely the same stuff, a
false negative); see :func:`~napari_nlcl.contrastive.samplers.prototype_negative_mask`.

Fixes of what users of the released code hit: the MLP heads exist before
the optimiser (they are built from a probe pass, not on the first batch), any
number of channels in and out, whole large images at inference through the
tiled engine (see :mod:`napari_nlcl.nets.translate` for how instance norm
is kept seamless), and inference needs only the source domain.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from napari_nlcl.contrastive.encoders import FeatureExtractor, ProjectionHeads
from napari_nlcl.contrastive.losses import lsgan_loss, patch_nce
from napari_nlcl.contrastive.samplers import sample_locations
from napari_nlcl.nets.discriminators import discriminator
from napari_nlcl.nets.translate import DEFAULT_WEIGHTS, TranslateNet, preset
from napari_nlcl.training import Recipe

MODES = ("cut", "fastcut", "single")
NEGATIVES = ("auto", "image", "batch", "domain", "prototype")
MODE_DEFAULTS = {
    "cut": {"nce_weight": 1.0, "nce_idt": True, "flip_equivariance": False, "negatives": "image"},
    "fastcut": {"nce_weight": 10.0, "nce_idt": False, "flip_equivariance": True, "negatives": "image"},
    "single": {"nce_weight": 1.0, "nce_idt": True, "flip_equivariance": False, "negatives": "batch"},
}
MIN_CROP = 32


@dataclass
class TranslateConfig:
    """Network and loss settings of the translate recipe (``-S key=value`` on the CLI)."""

    mode: str = field(default="cut", metadata={"choices": MODES})
    preset: str = field(default="light", metadata={"choices": ("light", "full")})
    net: dict = field(default_factory=dict)  # overrides of the preset (TranslateNetConfig fields)
    in_channels: int = 3  # set from the data by plan_data
    out_channels: int = 0  # 0: as many as in_channels (the front ends keep the count)
    disc_ndf: int = 0  # 0: the preset's
    gan_weight: float = 1.0
    nce_weight: float | None = None  # None: from the mode
    nce_idt: bool | None = None
    flip_equivariance: bool | None = None
    negatives: str = field(default="auto", metadata={"choices": NEGATIVES})
    num_patches: int = 256
    nce_temperature: float = 0.07
    nce_layers: tuple = ()  # () = the generator's nce_layers()
    zoom: tuple = (0.25, 1.0)  # single mode: range of crop zooms

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.negatives not in NEGATIVES:
            raise ValueError(f"negatives must be one of {NEGATIVES}, got {self.negatives!r}")
        defaults = MODE_DEFAULTS[self.mode]
        for name in ("nce_weight", "nce_idt", "flip_equivariance"):
            if getattr(self, name) is None:
                setattr(self, name, defaults[name])
        if self.negatives == "auto":
            self.negatives = defaults["negatives"]
        for name in ("gan_weight", "nce_weight"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and v >= 0 and math.isfinite(v)):
                raise ValueError(f"{name} must be a number >= 0, got {v!r}")
        if not self.nce_temperature > 0:
            raise ValueError(f"nce_temperature must be > 0, got {self.nce_temperature!r}")
        if not isinstance(self.num_patches, int) or self.num_patches < 1:
            raise ValueError(f"num_patches must be a positive integer, got {self.num_patches!r}")
        if not isinstance(self.net, Mapping):
            raise TypeError(f"net must be a mapping of generator settings such as {{'ngf': 32}}, got {self.net!r}")
        self.nce_layers = tuple(self.nce_layers)
        self.zoom = tuple(float(z) for z in self.zoom)
        if len(self.zoom) != 2 or not 0 < self.zoom[0] <= self.zoom[1]:
            raise ValueError(f"zoom must be (low, high) with 0 < low <= high, got {self.zoom}")
        self.net_config()  # validates the architecture now, with a clear message

    def net_config(self):
        return preset(self.preset, in_channels=self.in_channels, out_channels=self.out_channels, **self.net)


def _channels(data: Any, name: str) -> int:
    from napari_nlcl.training.data import ImageSource

    src = data if isinstance(data, ImageSource) else ImageSource(data, name=name)
    return src.channels


class TranslateRecipe(Recipe):
    name = "translate"
    task = "translate"
    version = 1
    Config = TranslateConfig
    data_sources = ("source", "target")
    accepted_sources = ("source", "target")
    default_weights = str(DEFAULT_WEIGHTS)
    schedule = "linear"  # CUT: constant for the first half, then linear decay to zero
    fine_tune_by_default = False  # the shipped example is one style; new domains start from scratch
    user_settings = {
        "mode": ("mode", "cut: CUT (two directions of PatchNCE, identity term); fastcut: faster, bolder; "
                 "single: one image per domain"),
        "preset": ("generator size", "light: a small residual generator for CPUs; full: CUT's generator"),
        "gan_weight": ("realism (GAN)", "How much the discriminator's judgement of the target style counts"),
        "negatives": ("negatives", "Which patches PatchNCE contrasts against (see the README)"),
    }

    @classmethod
    def plan_data(cls, given):
        names = cls.check_sources(given, "source (domain A) and target (domain B) images")
        if names != {"source", "target"}:
            raise ValueError("translation training needs both source (domain A) and target (domain B) images")
        overrides: dict[str, Any] = {}
        if isinstance(given, Mapping):  # the channel count comes from the data itself
            c_in, c_out = _channels(given["source"], "source"), _channels(given["target"], "target")
            if c_in != c_out:
                raise ValueError(
                    f"the source images have {c_in} channel(s) and the target images {c_out}; translation "
                    "keeps the channel count: convert one set first (e.g. grayscale to RGB)"
                )
            overrides["in_channels"] = c_in
        return overrides, False

    @classmethod
    def data_options(cls, settings: Mapping[str, Any]) -> dict[str, Any]:
        if settings.get("mode") == "single":
            return {"zoom": tuple(settings.get("zoom", TranslateConfig.zoom))}
        return {}

    def __init__(self, config: TranslateConfig, *, device: Any = "cpu", generator=None):
        super().__init__(config, device=device, generator=generator)
        cfg = config
        ncfg = cfg.net_config()
        self.G = self.add_network("G", TranslateNet(ncfg, name=f"CUT {cfg.preset} ({cfg.mode})"))
        self.D = self.add_network("D", discriminator(cfg.preset, ncfg.channels_out, cfg.disc_ndf or None))
        self.nce_names = list(cfg.nce_layers) or self.G.nce_layers()
        # identity NCE translates target images, so it needs as many channels in as out
        self.use_idt = bool(cfg.nce_idt) and ncfg.channels_out == ncfg.in_channels
        with torch.no_grad():  # heads are built now, before the optimiser (not on the first batch)
            probe = torch.zeros(1, ncfg.in_channels, 64, 64, device=self.device)
            tap = FeatureExtractor(self.G, self.nce_names, detach=True, stop_at_last=True)
            chans = [f.shape[1] for f in tap(probe)]
            tap.remove()
        self.heads = self.add_network("heads", ProjectionHeads(chans, out_dim=256, hidden=256,
                                                               generator=self.generator))
        self.add_optimizer("G", list(self.G.parameters()) + list(self.heads.parameters()), lr=2e-4)
        self.add_optimizer("D", self.D.parameters(), lr=2e-4)

    # ------------------------------------------------------------------ PatchNCE
    def _features(self, x: torch.Tensor, *, detach: bool) -> list[torch.Tensor]:
        tap = FeatureExtractor(self.G, self.nce_names, detach=detach, stop_at_last=True)
        try:
            return tap(x)
        finally:
            tap.remove()

    def nce_loss(self, pairs: list[tuple[torch.Tensor, torch.Tensor]], flipped: bool = False) -> torch.Tensor:
        """PatchNCE averaged over layers; ``pairs`` are ``(source, translation)`` per domain.

        With ``flipped`` the translations were made from left-right flipped
        sources: their features are flipped back before matching locations.
        """
        cfg = self.config
        keys = [self._features(src, detach=True) for src, _ in pairs]
        queries = []
        for _, out in pairs:
            f = self._features(out, detach=False)
            queries.append([t.flip(3) for t in f] if flipped else f)
        total = pairs[0][1].new_zeros(())
        for layer, head in enumerate(self.heads):
            qs, ks = [], []
            for fk, fq in zip(keys, queries):
                k, ids = sample_locations(fk[layer], cfg.num_patches, generator=self.generator)
                q, _ = sample_locations(fq[layer], ids=ids)
                qs.append(head(q))
                ks.append(head(k))
            kw = {"temperature": cfg.nce_temperature}
            if cfg.negatives == "batch":  # every crop of the batch, both domains
                loss = patch_nce(torch.cat(qs), torch.cat(ks), negatives="batch", **kw)
            elif cfg.negatives == "prototype":  # own image, without the keys of the anchor's prototypes
                loss = sum(patch_nce(q, k, keep=self._prototype_keep(k), **kw) for q, k in zip(qs, ks)) / len(qs)
            else:  # "image": own image only; "domain": own domain's crops only
                neg = "image" if cfg.negatives == "image" else "batch"
                loss = sum(patch_nce(q, k, negatives=neg, **kw) for q, k in zip(qs, ks)) / len(qs)
            total = total + loss
        return total / len(self.heads)

    def _prototype_keep(self, keys: torch.Tensor) -> torch.Tensor:
        """``(B, N, N)`` negatives to keep for each image's ``(N, D)`` keys (HCSC-style selection)."""
        from napari_nlcl.contrastive.samplers import prototype_negative_mask

        rows = []
        for k in keys.detach().float().cpu():  # k-means on the CPU, with the recipe's generator
            # the anchors are the keys themselves; key i is query i's positive and never a negative
            rows.append(prototype_negative_mask(k, num_clusters=(4, 8), generator=self.generator).negative_mask)
        return torch.stack(rows).to(keys.device)

    # ------------------------------------------------------------------ one step
    def _check_crop(self, x: torch.Tensor) -> None:
        h, w = x.shape[-2:]
        if h < MIN_CROP or w < MIN_CROP or h % 4 or w % 4:
            raise ValueError(f"translation training needs crops of at least {MIN_CROP} px, a multiple of 4; "
                             f"got {h}x{w}")

    def training_step(self, batch, step: int) -> dict[str, torch.Tensor]:
        cfg = self.config
        real_a, real_b = batch["source"], batch["target"]
        self._check_crop(real_a)
        b = real_a.shape[0]
        x = torch.cat([real_a, real_b]) if self.use_idt else real_a
        flipped = bool(cfg.flip_equivariance) and bool(torch.rand((), generator=self.generator) < 0.5)
        if flipped:
            x = x.flip(3)
        out = self.G(x)
        fake_b = out[:b]
        # discriminator
        loss_d = 0.5 * (lsgan_loss(self.D(fake_b.detach()), False) + lsgan_loss(self.D(real_b), True))
        self.backward_step(loss_d, "D")
        # generator and heads
        self.D.requires_grad_(False)
        try:
            losses: dict[str, torch.Tensor] = {"d": loss_d.detach()}
            loss = fake_b.new_zeros(())
            if cfg.gan_weight:
                gan = lsgan_loss(self.D(fake_b), True)
                loss = loss + cfg.gan_weight * gan
                losses["gan"] = gan.detach()
            if cfg.nce_weight:
                pairs = [(real_a, fake_b)] + ([(real_b, out[b:])] if self.use_idt else [])
                nce = self.nce_loss(pairs, flipped)
                loss = loss + cfg.nce_weight * nce
                losses["nce"] = nce.detach()
            self.backward_step(loss, "G")
        finally:
            self.D.requires_grad_(True)
        losses["total"] = loss.detach()
        return losses

    def inference_model(self) -> TranslateNet:
        return self.G

    def describe(self) -> dict[str, Any]:
        return {"mode": self.config.mode, "net": asdict(self.G.config), "identity_nce": self.use_idt}
