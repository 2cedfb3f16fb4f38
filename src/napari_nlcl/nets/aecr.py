"""AECR-Net-style compact dehazing network (Wu et al., CVPR 2021).

Layout (the paper's, generalised to any number of scales)::

    x ─ 7x7 conv ─┬─ 3x3/2 conv ─┬─ 3x3/2 conv ─ FA blocks ─ DCN ─ up ─ mix ─ up ─ mix ─ 7x7 conv ─ + x
                  └──────────────│──────────────────────────────────────────┘ skip   │
                                 └───────────────────────────────────────── skip ────┘

* **FA block** (feature attention, from FFA-Net): ``conv-ReLU-(+x)-conv``,
  channel attention, pixel attention, ``+ x``.
* **DCN**: a modulated deformable 3x3 convolution (:mod:`napari_nlcl.nets.layers`).
* **Adaptive mixup**: ``sigmoid(w) * skip + (1 - sigmoid(w)) * up`` with one
  learned scalar ``w`` per skip, so the mixing weight stays in (0, 1).
  (These blocks and the airlight branch are in :mod:`napari_nlcl.nets.aecr_blocks`.)
* Output, two kinds (``AECRConfig.output``):

  - ``"residual"``: the input plus a predicted correction, in [0, 1]; the
    released code ends in a Tanh although its targets lie in [0, 1], which we
    do not copy.
  - ``"physics"`` (the shipped default's): the network predicts the
    transmission ``t`` (one channel, a sigmoid) from the input divided by the
    airlight and its dark channels (the Dark Channel Prior's cue: per pixel
    and over ``dark_patch`` px), a small global branch (:class:`AirlightNet`) predicts the
    airlight ``A`` from a thumbnail of the whole image, and the output inverts
    the scattering model, ``J = (I - A) / max(t, t_min) + A``.  Synthetic
    training supervises ``t`` and ``A`` too.  A local network cannot tell
    haze from a grey object; the airlight is a whole-image quantity, which
    the engine estimates once per plane (:meth:`AECRNet.estimate_globals`)
    and gives to every tile.

Two deliberate choices, both configurable:

* ``pool``: channel attention averages over a local window (``pool`` px at
  the bottleneck) instead of the whole image.  With global pooling a network
  trained on 128-256 px crops sees statistics at inference (whole megapixel
  images) that it never saw in training, and tiles of a large image disagree;
  a local window removes both problems.  ``pool=0`` gives the paper's global
  average.
* Presets: ``"fast"`` has 16-32-64-64 channels, three down-samplings and
  four unshared FA blocks at 1/8 resolution, and meets the 2 s per 1024x1024
  image target on two CPU cores; ``"physics"`` (the shipped default) is the
  same network with the physics output; ``"paper"`` is the published
  configuration (64-128-256 channels, one FA block shared six times, one DCN
  shared twice, global pooling: 2.6 M parameters, about 1 TFLOP per
  megapixel).  Parameters and GFLOP per megapixel are in the README
  (``python benchmarks/bench_dehaze.py --speed``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from napari_nlcl.classical.filters import guided_filter, min_filter
from napari_nlcl.inference.tiling import pad_to_multiple
from napari_nlcl.model import ModelInfo
from napari_nlcl.nets.aecr_blocks import AirlightNet, FABlock, Mixup, upsampler
from napari_nlcl.nets.layers import DeformConv2d, full_precision

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "dehaze_default.pt"


@dataclass
class AECRConfig:
    """Architecture of :class:`AECRNet`."""

    channels: tuple[int, ...] = (16, 32, 64, 64)
    blocks: int = 4
    share_blocks: bool = False
    dcn: int = 1
    share_dcn: bool = True
    pool: int = 15
    in_channels: int = 3
    head_kernel: int = 7
    upsample: str = "bilinear"  # "transpose": the paper's 3x3 stride-2 transposed convs
    # "residual": output = input + correction; "physics": the net predicts the
    # transmission t and a global branch the airlight A, J = (I - A) / t + A
    output: str = "residual"
    t_min: float = 0.05  # floor of the predicted transmission ("physics")
    dark_patch: int = 15  # "physics": the net also sees the dark channel of I / A over this window
    # "physics": predict t at the bottleneck (1/2^(scales-1) resolution) and resize it bilinearly
    # (a smooth transmission, like the depth it comes from) instead of through the decoder
    coarse_t: bool = False
    airlight_size: int = 64  # short side of the thumbnail the airlight branch sees
    # "physics": refine t with a guided filter of this radius (0: off), guided by the input's grey
    # image, so that t can follow depth edges (a building against the sky) instead of haloing them
    refine: int = 0
    refine_eps: float = 1e-3

    def __post_init__(self) -> None:
        self.channels = tuple(int(c) for c in self.channels)
        if len(self.channels) < 1 or any(c < 1 for c in self.channels):
            raise ValueError(f"channels must be positive integers, one per scale, got {self.channels}")
        for name in ("blocks", "dcn", "pool"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 or 3, got {self.in_channels}")
        if self.head_kernel % 2 == 0:
            raise ValueError("head_kernel must be odd")
        if self.upsample not in ("bilinear", "transpose"):
            raise ValueError(f"upsample must be 'bilinear' or 'transpose', got {self.upsample!r}")
        if self.output not in ("residual", "physics"):
            raise ValueError(f"output must be 'residual' or 'physics', got {self.output!r}")
        if not 0.0 < float(self.t_min) < 1.0:
            raise ValueError(f"t_min must be in (0, 1), got {self.t_min}")
        if int(self.dark_patch) < 1 or int(self.dark_patch) % 2 == 0:
            raise ValueError(f"dark_patch must be an odd number of pixels >= 1, got {self.dark_patch}")
        if int(self.airlight_size) < 16:
            raise ValueError(f"airlight_size must be >= 16 px, got {self.airlight_size}")
        if int(self.refine) < 0:
            raise ValueError(f"refine must be a radius >= 0 px (0: off), got {self.refine}")
        if not float(self.refine_eps) > 0:
            raise ValueError(f"refine_eps must be > 0, got {self.refine_eps}")


PRESETS: dict[str, AECRConfig] = {
    "paper": AECRConfig(channels=(64, 128, 256), blocks=6, share_blocks=True, dcn=2,
                        share_dcn=True, pool=0, upsample="transpose"),
    "fast": AECRConfig(),
    "physics": AECRConfig(output="physics", coarse_t=True, refine=16),
}


def preset(name: str, **overrides: Any) -> AECRConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return AECRConfig(**{**asdict(PRESETS[name]), **overrides})



class AECRNet(nn.Module):
    """Compact dehazing autoencoder; input and output in [0, 1], ``(B, C, H, W)``."""

    Config = AECRConfig  # the inference block stores it (napari_nlcl.nets.build)

    def __init__(self, config: AECRConfig | None = None, *, name: str = "AECR-Net"):
        super().__init__()
        cfg = config or AECRConfig()
        self.config = cfg
        ch = cfg.channels
        k = cfg.head_kernel
        extra = 2 if cfg.output == "physics" else 0  # the dark channels of I / A (1 px and dark_patch)
        self.head = nn.Sequential(nn.ReflectionPad2d(k // 2), nn.Conv2d(cfg.in_channels + extra, ch[0], k),
                                  nn.ReLU(inplace=True))
        self.down = nn.ModuleList(
            nn.Sequential(nn.Conv2d(a, b, 3, stride=2, padding=1), nn.ReLU(inplace=True))
            for a, b in zip(ch[:-1], ch[1:])
        )
        c = ch[-1]
        n_fa = 1 if cfg.share_blocks else cfg.blocks
        self.fa = nn.ModuleList(FABlock(c, cfg.pool) for _ in range(n_fa if cfg.blocks else 0))
        n_dcn = 1 if cfg.share_dcn else cfg.dcn
        self.dcn = nn.ModuleList(DeformConv2d(c, c, 3, padding=1) for _ in range(n_dcn if cfg.dcn else 0))
        self.coarse = cfg.output == "physics" and cfg.coarse_t
        self.up = nn.ModuleList(() if self.coarse else (upsampler(b, a, cfg.upsample) for a, b in zip(ch[:-1], ch[1:])))
        # the paper initialises the two mixing weights at -1 (deep) and -0.6 (shallow)
        inits = [-1.0 + 0.4 * i / max(len(ch) - 2, 1) for i in range(len(ch) - 1)][::-1]
        self.mix = nn.ModuleList(() if self.coarse else (Mixup(v) for v in inits))
        physics = cfg.output == "physics"
        if self.coarse:
            self.tail = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(ch[-1], 1, 3))
        else:
            self.tail = nn.Sequential(nn.ReflectionPad2d(k // 2),
                                      nn.Conv2d(ch[0], 1 if physics else cfg.in_channels, k))
        nn.init.zeros_(self.tail[1].weight)  # residual: start as the identity (no correction)
        nn.init.zeros_(self.tail[1].bias)
        if physics:
            nn.init.constant_(self.tail[1].bias, 2.0)  # t = sigmoid(2) = 0.88: a little haze removed
        self.airlight = AirlightNet(cfg.in_channels, cfg.airlight_size) if physics else None
        scales = 2 ** (len(ch) - 1)
        self.info = ModelInfo(
            task="dehaze", name=name, in_channels=cfg.in_channels, out_channels=cfg.in_channels,
            value_range=(0.0, 1.0), min_size=4 * scales, size_multiple=scales,
            receptive_field=self.receptive_field(), exact_tiling=False,
            config={"architecture": "aecr", **asdict(cfg)},
        )

    def receptive_field(self) -> int:
        """Width of the convolutional receptive field in input pixels.

        The local channel-attention windows are left out: they reach further
        but only modulate channel gains smoothly, so tiles that overlap by the
        convolutional field agree to about 1e-3 (tested), far below 8-bit steps.
        """
        cfg = self.config
        k = cfg.head_kernel
        rf, jump = k, 1
        for _ in cfg.channels[1:]:
            rf += 2 * jump
            jump *= 2
        rf += jump * 2 * (2 * cfg.blocks + cfg.dcn)  # 3x3 convs at the bottleneck
        dark = cfg.dark_patch - 1 if cfg.output == "physics" else 0  # the dark-channel input's window
        if cfg.output == "physics":
            dark += 4 * int(cfg.refine)  # the guided filter: two box filters of radius r in a row
        if cfg.output == "physics" and cfg.coarse_t:
            # 3x3 head at the bottleneck, then a bilinear resize (one coarse pixel either side)
            return int(rf + 2 * jump + 2 * jump + dark)
        for _ in cfg.channels[1:]:
            jump //= 2
            rf += 2 * jump
        return int(rf + k - 1 + dark)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        h = self.head(x)
        for down in self.down:
            skips.append(h)
            h = down(h)
        for i in range(self.config.blocks):
            h = self.fa[0 if self.config.share_blocks else i](h)
        for i in range(self.config.dcn):
            h = F.relu(self.dcn[0 if self.config.share_dcn else i](h))
        for up, mix, skip in zip(reversed(self.up), reversed(self.mix), reversed(skips)):
            h = mix(skip, up(h))
        return h  # at the bottleneck's resolution when there is no decoder (coarse_t)

    def estimate_globals(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"airlight": (B, C)}`` from the whole plane (the engine gives it to every tile)."""
        if self.airlight is None:
            return {}
        return {"airlight": full_precision(self.airlight, x)}

    def forward(self, x: torch.Tensor, airlight: torch.Tensor | None = None) -> torch.Tensor:
        return self.decompose(x, airlight)[0]

    def decompose(self, x: torch.Tensor, airlight: torch.Tensor | None = None):
        """``(J, t, A)``: the dehazed image, and for the physics output the transmission
        ``(B, 1, H, W)`` and airlight ``(B, C)`` (``None`` for the residual output).

        ``airlight`` (``(B, C)`` or ``(B, C, 1, 1)``) overrides the airlight branch,
        which otherwise looks at ``x`` itself.  Any size works: a plane whose sides
        are not multiples of the network's stride is reflect-padded at the bottom
        and right (as the engine pads it) and cropped back.
        """
        h, w = x.shape[-2:]
        xp = pad_to_multiple(x, self.info.size_multiple)
        if xp is not x:
            if airlight is None and self.airlight is not None:
                airlight = full_precision(self.airlight, x)  # from the plane itself, not its padding
            j, t, a = self._decompose(xp, airlight)
            return j[..., :h, :w], (None if t is None else t[..., :h, :w]), a
        return self._decompose(x, airlight)

    def _decompose(self, x: torch.Tensor, airlight: torch.Tensor | None):
        if self.airlight is None:
            out = x + self.tail(self.features(x))
            return (out if self.training else out.clamp(0.0, 1.0)), None, None
        a = full_precision(self.airlight, x) if airlight is None else airlight.reshape(x.shape[0], x.shape[1])
        a4 = a[:, :, None, None].to(x.dtype)
        xa = (x / a4).clamp(0.0, 2.0)
        d1 = xa.amin(1, keepdim=True)
        dp = min_filter(d1, self.config.dark_patch)
        # the transmission divides the image (J = (I - A) / t + A): its head runs in float32
        # under a bfloat16 autocast, where the rounding of t would be amplified
        logit = full_precision(self.tail, self.features(torch.cat([xa, d1, dp], 1)))
        if self.coarse:
            logit = F.interpolate(logit, size=x.shape[-2:], mode="bilinear", align_corners=False)
        t = self.refine_transmission(x, torch.sigmoid(logit))
        out = (x - a4) / t.clamp(min=self.config.t_min) + a4
        return (out if self.training else out.clamp(0.0, 1.0)), t, a

    def set_t_min(self, value: float) -> None:
        """Change the transmission floor used at inference (physics output only)."""
        if self.airlight is None:
            raise ValueError("t_min applies to a physics-output model (preset 'physics'), not to this one")
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"t_min must be a number in (0, 1), got {value!r}") from None
        if not 0.0 < value < 1.0:
            raise ValueError(f"t_min must be in (0, 1), got {value}")
        self.config = replace(self.config, t_min=value)
        self.info = replace(self.info, config={**self.info.config, "t_min": value})

    def refine_transmission(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Guided-filter ``t`` (``config.refine`` px, guided by the grey input), or return it as is.

        A transmission predicted at low resolution blurs across depth edges,
        which prints halos around the near object; the guided filter lets it
        follow the edges of the image where the image has them and leaves it
        smooth where it has none.
        """
        if not self.config.refine:
            return t
        return guided_filter(x.mean(1, keepdim=True), t, int(self.config.refine),
                             float(self.config.refine_eps)).clamp(0.0, 1.0)

    def flops_per_pixel(self) -> float:
        """Multiply-adds x 2 per input pixel, counted from the layers (GFLOP/MP = this / 1e3)."""
        cfg = self.config
        total = 0.0
        k = cfg.head_kernel
        physics = cfg.output == "physics"
        coarse = physics and cfg.coarse_t
        out_ch = 0 if coarse else 1 if physics else cfg.in_channels
        total += 2 * (cfg.in_channels + 2 * physics + out_ch) * cfg.channels[0] * k * k  # head + tail
        area = 1.0
        for a, b in zip(cfg.channels[:-1], cfg.channels[1:]):
            total += 2 * a * b * 9 * area / 4  # stride-2 down conv (output at 1/4 the pixels)
            # up: a transposed conv computes at the low resolution, resize-conv at the high one
            if not coarse:
                total += 2 * a * b * 9 * (area / 4 if cfg.upsample == "transpose" else area)
            area /= 4
        if coarse:
            total += 2 * cfg.channels[-1] * 9 * area  # the 3x3 transmission head at the bottleneck
        if physics and cfg.refine:
            total += 60  # guided filter: six box filters (running sums) and a few products per pixel
        c = cfg.channels[-1]
        hidden = max(c // 8, 4)
        fa = 2 * (2 * c * c * 9) + 2 * (2 * c * hidden) + 2 * (2 * c * hidden) + 2 * c * 2
        total += cfg.blocks * fa * area
        dcn = 2 * c * c * 9 + 2 * c * 27 * 9 + 4 * c * 9  # conv + offset/mask conv + bilinear taps
        total += cfg.dcn * dcn * area
        return total

    def extra_repr(self) -> str:
        n = sum(p.numel() for p in self.parameters())
        return f"params={n}, gflop_per_mp={self.flops_per_pixel() / 1e3:.1f}"


def build(preset_name: str = "fast", **overrides: Any) -> AECRNet:
    return AECRNet(preset(preset_name, **overrides))


def default_model(t_min: float | None = None) -> AECRNet:
    """The shipped default dehazer (trained by this project; see the README).

    ``t_min`` overrides the floor of the transmission (the stored one is
    :data:`~napari_nlcl.registry.DEHAZE_T_MIN`): higher keeps more haze in
    the distance and in skies, lower removes more and amplifies noise there.
    """
    from napari_nlcl.inference.loading import load_shipped_model

    model = load_shipped_model(DEFAULT_WEIGHTS, name="default (AECR-Net physics)", what="dehazing")
    if t_min is not None:
        model.set_t_min(t_min)
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["AECRConfig", "AECRNet", "PRESETS", "preset", "build", "default_model", "DEFAULT_WEIGHTS",
           "count_parameters"]
