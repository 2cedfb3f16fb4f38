"""Training recipe for the AECR-Net-style dehazer: supervised, synthetic and unsupervised modes.

Modes (``DehazeConfig.mode``), chosen from the data the user has:

``"synthetic"`` (data source ``clear``)
    Haze is synthesised on every clear crop with the atmospheric scattering
    model ``I = J t + A (1 - t)``, ``t = exp(-beta d)``: ``beta`` in
    [0.5, 2.5], airlight level in [0.7, 1.0] with a small colour tint, depth a
    vertical ramp (far at the top) mixed with a smooth random field.  This is
    how the shipped default was trained.
``"paired"`` (sources ``hazy`` and ``clear``, aligned)
    Real or pre-made pairs.
``"unsupervised"`` (source ``hazy`` only)
    Per-dataset fine-tuning without ground truth.  The loss is

    * ``anchor_weight * L1(out, anchor)``, where the anchor is the frozen
      starting model's output (``anchor="teacher"``: keeps what the model
      already does well) or the Dark Channel Prior's output (``"dcp"``, for
      training from scratch);
    * ``dark_weight *`` the mean dark channel of the output (haze-free
      patches have a dark channel near 0: the DCP energy);
    * ``tv_weight *`` total variation of the output (smoothness);
    * ``cr_weight *`` contrastive regularisation with the anchor as the
      positive and the hazy input plus the other hazy crops of the batch as
      negatives.

In the supervised modes the loss is ``L1(out, clear) + cr_weight * CR(out,
clear, hazy)`` (Wu et al. 2021).  The CR term uses the bounded ratio
``D(out, pos) / (D(out, pos) + D(out, neg))`` by default (``cr_normalize``)
and is ramped up over ``cr_warmup`` steps: the paper's raw ratio has a
denominator near zero while the output still equals the hazy input, which
makes CR dwarf L1 (reported by users of the released code).
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from napari_nlcl.contrastive.losses import ContrastiveRegularization, cr_warmup_weight
from napari_nlcl.nets.aecr import DEFAULT_WEIGHTS, AECRNet, preset
from napari_nlcl.training import Recipe
from napari_nlcl.training.monitor import MONITOR_SCENES, dehaze_proxy_pairs

MODES = ("synthetic", "paired", "unsupervised")
ANCHORS = ("auto", "teacher", "dcp")


@dataclass
class DehazeConfig:
    """Network and loss settings of the dehaze recipe (``-S key=value`` on the CLI)."""

    mode: str = "synthetic"
    preset: str = "physics"
    net: dict = field(default_factory=dict)  # overrides of the preset (AECRConfig fields)
    cr_weight: float = 0.1
    cr_normalize: bool = True
    cr_warmup: int = 200
    encoder: str = "default"  # "default": VGG19 when its ImageNet weights are cached, else "tiny"
    # unsupervised fine-tuning
    anchor: str = "auto"  # "teacher" when fine-tuning a model, "dcp" when training from scratch
    anchor_weight: float = 1.0
    dark_weight: float = 0.05
    dark_patch: int = 15
    tv_weight: float = 0.0
    # haze on haze: the user's frames under more of the haze the start finds in them (its own
    # transmission raised to a power in rehaze_range, its airlight) must dehaze to the start's
    # result on the frames themselves; the added haze is known exactly (physics output only)
    rehaze_weight: float = 0.0
    rehaze_range: tuple = (0.3, 1.0)
    # the quality monitor's clean crops: "own" (the user's frames as the start dehazes them) or
    # "photos" (scikit-image's bundled photos), each under the haze the start finds in the frames
    monitor_scenes: str = "photos"
    # physics output, synthetic haze: supervise the transmission and airlight too
    t_weight: float = 1.0
    airlight_weight: float = 1.0
    airlight_noise: float = 0.04  # the t-net trains with the true airlight plus this much noise
    airlight_repeats: int = 4  # hazes per crop for the airlight branch (cheap: it sees thumbnails)
    # synthetic haze
    beta_range: tuple = (0.5, 2.5)
    airlight_range: tuple = (0.7, 1.0)
    scene_depth: float = 0.0  # share of crops hazed over scene-like depth (synth.scene_depth)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.monitor_scenes not in MONITOR_SCENES:
            raise ValueError(f"monitor_scenes must be one of {MONITOR_SCENES}, got {self.monitor_scenes!r}")
        if self.anchor not in ANCHORS:
            raise ValueError(f"anchor must be one of {ANCHORS}, got {self.anchor!r}")
        if not 0.0 <= float(self.scene_depth) <= 1.0:
            raise ValueError(f"scene_depth must be a share in [0, 1], got {self.scene_depth!r}")
        if int(self.airlight_repeats) < 1:
            raise ValueError(f"airlight_repeats must be >= 1, got {self.airlight_repeats}")
        for name in ("cr_weight", "anchor_weight", "dark_weight", "tv_weight", "t_weight", "airlight_weight",
                     "airlight_noise", "rehaze_weight"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and v >= 0 and math.isfinite(v)):
                raise ValueError(f"{name} must be a number >= 0, got {v!r}")
        self.beta_range = tuple(float(v) for v in self.beta_range)
        self.airlight_range = tuple(float(v) for v in self.airlight_range)
        self.rehaze_range = tuple(float(v) for v in self.rehaze_range)
        if len(self.rehaze_range) != 2 or not 0.0 < self.rehaze_range[0] <= self.rehaze_range[1]:
            raise ValueError(f"rehaze_range must be two powers 0 < low <= high, got {self.rehaze_range!r}")
        preset(self.preset, **self.net)  # validates the architecture now, with a clear message


SOURCES = {"synthetic": ("clear",), "paired": ("hazy", "clear"), "unsupervised": ("hazy",)}


def synthesize_haze(clear: torch.Tensor, generator: torch.Generator, *,
                    beta_range=(0.5, 2.5), airlight_range=(0.7, 1.0), scene: float = 0.0,
                    return_parts: bool = False):
    """Hazy versions of a batch of clear crops ``(B, C, H, W)`` in [0, 1] (seeded by ``generator``).

    ``scene``: the share of crops whose depth is laid out as a scene (``synth.scene_depth``:
    objects on a ground plane, sky far, depth edges on image edges) instead of a ramp and a
    smooth field.  With ``return_parts`` also the transmission ``(B, 1, H, W)`` and airlight
    ``(B, C)``.
    """
    b, c, h, w = clear.shape
    dev = clear.device

    def u(lo, hi, *shape):
        return (torch.rand(shape, generator=generator) * (hi - lo) + lo).to(dev)

    beta = u(*beta_range, b, 1, 1, 1)
    level = u(*airlight_range, b, 1, 1, 1)
    tint = u(-0.03, 0.03, b, c, 1, 1) if c > 1 else torch.zeros(b, 1, 1, 1, device=dev)
    airlight = (level + tint).clamp(0.0, 1.0)
    # depth as in a whole photo (``synth.random_depth``): a vertical ramp, far at the top, plus
    # a smooth random field.  The crop is a window of a taller virtual photo: ``share`` of its
    # height, starting at ``pos``.  Hazing each crop as if it were the whole photo instead puts a
    # full far-to-near ramp inside 128 px, which photos do not have; a network trained that way
    # learnt it (it got worse on whole validation photos as its training loss fell).
    share = torch.exp(u(math.log(1 / 6), 0.0, b, 1, 1, 1))
    pos = u(0.0, 1.0, b, 1, 1, 1) * (1 - share)
    rows = pos + share * torch.linspace(0, 1, h, device=dev).view(1, 1, h, 1)
    vertical = 1.0 - rows
    n = 2 + int(torch.randint(0, 3, (1,), generator=generator))  # 2-4 coarse nodes: smooth at this scale
    coarse = torch.randn((b, 1, n, n), generator=generator).to(dev)
    field_ = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True)
    lo = field_.amin((2, 3), keepdim=True)
    hi = field_.amax((2, 3), keepdim=True)
    span = (share * 2).clamp(max=1.0) * u(0.5, 1.0, b, 1, 1, 1)  # a small window sees part of the range
    field_ = u(0.0, 1.0, b, 1, 1, 1) * (1 - span) + span * (field_ - lo) / (hi - lo + 1e-6)
    ramp = u(0.4, 0.9, b, 1, 1, 1)
    depth = ramp * vertical + (1 - ramp) * field_
    if scene > 0:
        from napari_nlcl.synth import scene_depth

        pick = torch.rand(b, generator=generator) < scene
        seeds = torch.randint(0, 2**31 - 1, (b,), generator=generator)
        for i in torch.nonzero(pick).flatten().tolist():
            img = clear[i].detach().float().mean(0).cpu().numpy()
            d = scene_depth(img, rng=int(seeds[i]), rows=rows[i, 0, :, 0].cpu().numpy())
            depth[i, 0] = torch.from_numpy(d).to(depth)
    t = torch.exp(-beta * depth)
    hazy = (clear * t + airlight * (1 - t)).clamp(0.0, 1.0)
    if return_parts:
        return hazy, t, airlight.expand(b, c, 1, 1)[:, :, 0, 0]
    return hazy


def rehaze(hazy: torch.Tensor, t: torch.Tensor, airlight: torch.Tensor, power) -> tuple[torch.Tensor, torch.Tensor]:
    """``hazy`` under more of its own haze: ``(hazy * s + A (1 - s), t * s)`` with ``s = t ** power``.

    ``t`` ``(B, 1, H, W)`` and ``airlight`` ``(B, C)`` are the haze of ``hazy`` (``J t + A (1 - t)``);
    the result is ``J (t s) + A (1 - t s)``, the same clear image under a transmission of ``t s``
    (the depth scaled by ``1 + power``), returned beside it."""
    a4 = airlight.reshape(hazy.shape[0], -1, 1, 1).to(hazy)
    t = t.to(hazy)
    s = t ** power
    return hazy * s + a4 * (1 - s), t * s


def dark_channel(x: torch.Tensor, patch: int) -> torch.Tensor:
    """Minimum over channels and a ``patch`` x ``patch`` window (differentiable)."""
    m = x.amin(1, keepdim=True)
    return -F.max_pool2d(-m, patch, stride=1, padding=patch // 2)


def total_variation(x: torch.Tensor) -> torch.Tensor:
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean()


class DehazeRecipe(Recipe):
    name = "dehaze"
    task = "dehaze"
    version = 1
    Config = DehazeConfig
    data_sources = ("clear",)
    accepted_sources = ("hazy", "clear")
    default_weights = str(DEFAULT_WEIGHTS)
    # `napari-nlcl train dehaze --hazy DIR --from default` (batch 1) at 2e-4 fell 3.5 dB below the
    # start within 750 steps; at 2e-5 every checkpoint of 3,000 steps stayed within -0.12/+0.06 dB
    # (README, fine-tuning you can trust)
    fine_tune_lr = 2e-5
    user_settings = {
        "anchor_weight": ("stay close to the start", "Unsupervised fine-tuning: how strongly the result is "
                          "kept near the starting model's output (higher is safer, lower adapts more)"),
        "dark_weight": ("haze removal push", "Weight of the dark-channel prior: haze-free images have dark "
                        "pixels nearby; higher removes more haze, and can darken bright surfaces"),
        "cr_weight": ("contrastive regularisation", "Pulls the result towards clear images and away from "
                      "the hazy input in a feature space (AECR-Net's term)"),
        "tv_weight": ("smoothness", "Total variation of the result: above 0 it smooths noise and fine detail"),
    }

    @classmethod
    def plan_data(cls, given):
        given = cls.check_sources(given, "hazy and/or clear images")
        if given == {"hazy", "clear"}:
            return {"mode": "paired"}, True
        if given == {"clear"}:
            return {"mode": "synthetic"}, False
        return {"mode": "unsupervised"}, False

    def __init__(self, config: DehazeConfig, *, device: Any = "cpu", generator=None):
        super().__init__(config, device=device, generator=generator)
        self.data_sources = SOURCES[config.mode]
        net_cfg = preset(config.preset, **config.net)
        self.net = self.add_network("net", AECRNet(net_cfg, name=f"AECR-Net {config.preset}"))
        self.add_optimizer("net", self.net.parameters(), lr=2e-4, betas=(0.9, 0.999))
        self.teacher = None
        self.has_teacher = False  # set when weights were loaded with start_from
        if config.mode == "unsupervised" and config.anchor != "dcp":
            self.teacher = self.add_network("teacher", copy.deepcopy(self.net))
            self.teacher.requires_grad_(False)
        self._cr = None
        self._dcp = None

    # networks that do not train -------------------------------------------------
    def train(self, mode: bool = True) -> None:
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()

    def start_from(self, networks: dict[str, dict]) -> None:
        """Initialise from another model's weights (fine-tuning); the teacher copies them too."""
        if "net" not in networks:
            raise ValueError(f"not a dehazing model (networks {sorted(networks)})")
        self.net.load_state_dict(networks["net"])
        if self.teacher is not None:
            self.teacher.load_state_dict(networks["net"])
            self.has_teacher = True

    def extra_state(self) -> dict[str, Any]:
        return {"has_teacher": self.has_teacher}

    def load_extra_state(self, state) -> None:
        self.has_teacher = bool(state.get("has_teacher", False))

    @property
    def cr(self) -> ContrastiveRegularization:
        if self._cr is None:
            from napari_nlcl.contrastive.encoders import load_encoder

            enc = load_encoder(self.config.encoder).to(self.device)
            self._cr = ContrastiveRegularization(enc, normalize=self.config.cr_normalize).to(self.device)
            self.encoder_name = getattr(enc, "name", self.config.encoder)
        return self._cr

    def _dcp_target(self, hazy: torch.Tensor) -> torch.Tensor:
        if self._dcp is None:
            from napari_nlcl.classical.dcp import DarkChannelPrior

            self._dcp = DarkChannelPrior().to(self.device).eval()
        with torch.no_grad():
            return self._dcp(hazy).clamp(0, 1)

    # one step ---------------------------------------------------------------------
    def training_step(self, batch, step: int) -> dict[str, torch.Tensor]:
        cfg = self.config
        t_true = a_true = None
        if cfg.mode == "synthetic":
            clear = batch["clear"]
            hazy, t_true, a_true = synthesize_haze(clear, self.generator, beta_range=cfg.beta_range,
                                                   airlight_range=cfg.airlight_range, scene=cfg.scene_depth,
                                                   return_parts=True)
        elif cfg.mode == "paired":
            clear, hazy = batch["clear"], batch["hazy"]
        else:
            return self._unsupervised_step(batch["hazy"], step)
        physics = self.net.airlight is not None and t_true is not None
        if physics:
            # the known haze parameters supervise both parts: the transmission network works
            # from the true airlight plus noise (the branch's error at inference), and the
            # airlight branch learns on its own from several hazes of the same crops
            noise = torch.randn(a_true.shape, generator=self.generator).to(a_true) * cfg.airlight_noise
            out, t, _ = self.net.decompose(hazy, airlight=(a_true + noise).clamp(0.05, 1.0))
        else:
            out, t, _ = self.net.decompose(hazy)
        l1 = F.l1_loss(out, clear)
        losses = {"l1": l1.detach()}
        loss = l1
        if physics and cfg.t_weight:
            lt = F.l1_loss(t, t_true)
            loss = loss + cfg.t_weight * lt
            losses["t"] = lt.detach()
        if physics and cfg.airlight_weight:
            hz, a_all = [hazy], [a_true]
            for _ in range(max(cfg.airlight_repeats, 1) - 1):
                h2, _, a2 = synthesize_haze(clear, self.generator, beta_range=cfg.beta_range,
                                            airlight_range=cfg.airlight_range, return_parts=True)
                hz.append(h2)
                a_all.append(a2)
            la = F.l1_loss(self.net.airlight(torch.cat(hz)), torch.cat(a_all))
            loss = loss + cfg.airlight_weight * la
            losses["airlight"] = la.detach()
        w = cr_warmup_weight(step, cfg.cr_warmup, cfg.cr_weight) if cfg.cr_weight else 0.0
        if w > 0:
            cr = self.cr(out, clear, hazy)
            loss = loss + w * cr
            losses["cr"] = cr.detach()
        self.backward_step(loss, "net")
        losses["total"] = loss.detach()
        return losses

    def _unsupervised_step(self, hazy: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        cfg = self.config
        out = self.net(hazy)
        t0 = a0 = None
        if self.teacher is not None and self.has_teacher:
            with torch.no_grad():
                anchor, t0, a0 = self.teacher.decompose(hazy)
                anchor = anchor.clamp(0, 1)
        elif cfg.anchor == "teacher":
            raise ValueError("anchor='teacher' needs a starting model: fine-tune from one (--from)")
        else:
            anchor = self._dcp_target(hazy)
        losses = {}
        loss = out.new_zeros(())
        if cfg.anchor_weight:
            a = F.l1_loss(out, anchor)
            loss = loss + cfg.anchor_weight * a
            losses["anchor"] = a.detach()
        if cfg.dark_weight:
            d = dark_channel(out.clamp(0, 1), cfg.dark_patch).mean()
            loss = loss + cfg.dark_weight * d
            losses["dark"] = d.detach()
        if cfg.tv_weight:
            tv = total_variation(out)
            loss = loss + cfg.tv_weight * tv
            losses["tv"] = tv.detach()
        if cfg.rehaze_weight and t0 is not None:
            r = self._rehaze_loss(hazy, anchor, t0, a0)
            loss = loss + cfg.rehaze_weight * r
            losses["rehaze"] = r.detach()
        w = cr_warmup_weight(step, cfg.cr_warmup, cfg.cr_weight) if cfg.cr_weight else 0.0
        if w > 0:
            negs = [hazy] + ([hazy.roll(1, 0)] if hazy.shape[0] > 1 else [])
            cr = self.cr(out, anchor, torch.stack(negs, 1))
            loss = loss + w * cr
            losses["cr"] = cr.detach()
        self.backward_step(loss, "net")
        losses["total"] = loss.detach()
        return losses

    def _rehaze_loss(self, hazy: torch.Tensor, anchor: torch.Tensor, t0: torch.Tensor,
                     a0: torch.Tensor) -> torch.Tensor:
        """L1 between the network's result on ``hazy`` under more haze and ``anchor`` (the start's
        result on ``hazy`` itself).

        The added haze follows the scattering model over the start's own depth: transmission
        ``s = t0 ** k`` (``k`` drawn per crop from ``rehaze_range``), airlight ``a0``, so the frame
        under it, ``hazy * s + a0 (1 - s)``, is the same scene with its true transmission times
        ``s``: whatever the true haze, the clear image is unchanged.  A model that leaves dense
        haze behind (its transmission too high where the haze is thick) is corrected by what it
        does on the lighter haze of the frame itself.  Pixels where the total transmission would
        fall under the network's floor ``t_min`` (the result cannot match there) do not count.
        """
        lo, hi = self.config.rehaze_range
        b = hazy.shape[0]
        k = (torch.rand(b, 1, 1, 1, generator=self.generator) * (hi - lo) + lo).to(hazy)
        with torch.no_grad():
            t0 = t0.float().clamp(0.05, 1.0)
            denser, t_total = rehaze(hazy, t0, a0, k)
            valid = (t_total >= float(self.net.config.t_min) + 0.02).to(hazy)
        out = self.net(denser)
        err = (out - anchor).abs().mean(1, keepdim=True) * valid
        return err.sum() / valid.sum().clamp(min=1.0)

    def inference_model(self) -> AECRNet:
        return self.net

    def build_monitor(self, data: Any, *, seed: int = 0):
        """Proxy pairs for the quality monitor (unsupervised fine-tuning only): the haze the current
        (starting) network finds in the user's hazy frames, laid over clean photos."""
        sources = getattr(data, "sources", {})
        if self.config.mode != "unsupervised" or "hazy" not in sources or not self.has_teacher:
            return None  # from scratch (DCP anchor) there is no trained start to take the haze from
        return dehaze_proxy_pairs(self.net, sources["hazy"], seed=seed, scenes=self.config.monitor_scenes)

    def describe(self) -> dict[str, Any]:
        return {"mode": self.config.mode, "net": asdict(self.net.config)}

