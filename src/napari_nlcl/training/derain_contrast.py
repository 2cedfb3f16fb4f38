"""The contrastive terms of the NLCL derain recipe (:mod:`napari_nlcl.training.derain`):
the non-local layer contrast between background and rain, and the location contrast
(PatchNCE) between background and input.  A mixin of :class:`DerainRecipe`: it uses the
recipe's ``config``, ``gen_b``, ``disc``, ``layer_heads``, ``nce_heads`` and ``generator``."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from napari_nlcl.contrastive.encoders import FeatureExtractor
from napari_nlcl.contrastive.losses import asymmetric_layer_contrast, patch_nce
from napari_nlcl.contrastive.samplers import (
    extract_patches,
    nonlocal_positives,
    patch_embeddings,
    reverse_nonlocal,
    sample_locations,
    scale_coords,
)


class NonLocalContrast:
    """NLCL's layer and location contrasts, for a recipe with the attributes named above."""

    def gen_b_nce_layers(self) -> list[str]:
        """Layers of the background generator used by the location contrast (PatchNCE)."""
        if self.gen_b.config.arch == "resnet":
            n = self.gen_b.config.blocks
            return ["input", "stem", f"body.{n // 4}", f"body.{n // 2}"]
        names = ["input", "stem", "enc.0"] + [f"down.{i}" for i in range(len(self.gen_b.down))]
        return names

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
        names = self.nce_layers
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
