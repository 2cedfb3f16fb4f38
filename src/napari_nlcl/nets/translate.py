"""Networks of CUT / FastCUT unpaired translation (Park et al., ECCV 2020).

:class:`TranslateNet` is CUT's ResNet generator::

    7x7 conv (ngf) ─ down(2 ngf) ─ down(4 ngf) ─ residual blocks ─ up(2 ngf) ─ up(ngf) ─ 7x7 conv ─ tanh

(or, with ``residual=True``, the light preset's choice, ``x +`` the last conv's output)

with instance normalisation, reflection padding and anti-aliased resampling:
a down-sampling step is a stride-1 3x3 conv, norm, ReLU and a [1, 2, 1] x
[1, 2, 1] blur-pool of stride 2; an up-sampling step is a linear (bilinear)
x2 up-sampling, which is a blurred transposed convolution with a symmetric
kernel, followed by a 3x3 conv, norm and ReLU.  (CUT's own up-sampler
convolves with a [1, 2, 1] kernel and shifts the result by half an input
pixel; bilinear interpolation is the same kind of linear filter, without the
shift.)  The number of channels in and out is free: grayscale, RGB and
multi-channel images all work.

Instance norm and tiles
    Instance normalisation makes every output pixel depend on statistics of
    the whole input, so a large image cut into tiles would be normalised tile
    by tile and show seams.  The engine calls :meth:`TranslateNet.estimate_globals`
    on the whole plane first: it runs the network once on the plane (or, when
    the plane has more than ``stats_pixels`` pixels, on an area-down-sampled
    copy of it, as in "thumbnail instance normalisation", Chen et al., AAAI
    2022) and records the mean and variance of every norm layer.  The tiles
    are then normalised with those fixed statistics, so tiled inference equals
    whole-image inference with the same statistics to float precision, and
    whole-image inference with the network's own statistics exactly for
    planes up to ``stats_pixels`` (tested).

The discriminator that trains it (the 70x70 PatchGAN of pix2pix/CUT, LSGAN)
is :func:`napari_nlcl.nets.discriminators.discriminator`.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from napari_nlcl.inference.tiling import pad_to_multiple
from napari_nlcl.model import ModelInfo
from napari_nlcl.nets.layers import ReflectConv2d, full_precision, reflect_pad

DEFAULT_WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "translate_default.pt"


@dataclass
class TranslateNetConfig:
    """Architecture of :class:`TranslateNet`.

    ``out_channels=0`` means "as many as ``in_channels``".  ``residual``: the
    network predicts a correction added to its input (head initialised to
    zero, so an untrained network is the identity) instead of CUT's tanh
    image; it needs as many channels out as in.
    """

    in_channels: int = 3
    out_channels: int = 0
    ngf: int = 64
    blocks: int = 9
    antialias: bool = True
    residual: bool = False

    def __post_init__(self) -> None:
        for name in ("in_channels", "ngf", "blocks"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if not isinstance(self.out_channels, int) or self.out_channels < 0:
            raise ValueError(f"out_channels must be an integer >= 0 (0: same as in), got {self.out_channels!r}")
        if self.residual and self.channels_out != self.in_channels:
            raise ValueError("a residual translator needs as many output channels as input channels")

    @property
    def channels_out(self) -> int:
        return self.out_channels or self.in_channels


PRESETS: dict[str, dict[str, Any]] = {
    # CUT's generator: ngf 64, 9 residual blocks (11.4 M parameters at 3 channels, 1.95 TFLOP/MP)
    "full": {"ngf": 64, "blocks": 9, "residual": False},
    # for CPUs: a quarter of the filters, 6 blocks (0.49 M parameters, 19x fewer FLOPs), and a
    # residual output that starts as the identity (learns in far fewer steps; see the README)
    "light": {"ngf": 16, "blocks": 6, "residual": True},
}


def preset(name: str, **overrides: Any) -> TranslateNetConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown translation preset {name!r}; available: {sorted(PRESETS)}")
    return TranslateNetConfig(**{**PRESETS[name], **overrides})


# --------------------------------------------------------------------------- layers
#: per-thread normalisation mode of the running forward pass (``None``, ``"record"`` or ``"fixed"``);
#: thread-local, because dask and the napari workers run one model in several threads at once
_NORM = threading.local()


@contextmanager
def _norm_mode(mode: str, stats: Any) -> Iterator[Any]:
    previous = getattr(_NORM, "mode", None), getattr(_NORM, "stats", None)
    _NORM.mode, _NORM.stats = mode, stats
    try:
        yield stats
    finally:
        _NORM.mode, _NORM.stats = previous


class Norm(nn.Module):
    """Instance norm (no affine, as CUT) that can record or use fixed statistics.

    Outside :func:`_norm_mode` it normalises each image by its own statistics.
    In ``"record"`` mode it does the same and stores its mean and variance
    under its ``index``; in ``"fixed"`` mode it normalises with the slice
    ``[offset, offset + 2C)`` of the given ``(B or 1, N)`` statistics (mean
    then variance).  :class:`TranslateNet` numbers its norms.
    """

    eps = 1e-5

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        self.index = 0
        self.offset = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mode = getattr(_NORM, "mode", None)
        if mode is None:
            if x.shape[0] == 1:
                # for one image, batch norm over (N, H, W) is instance norm, and its CPU kernel
                # keeps channels_last (instance_norm returns NCHW: two layout copies more)
                return F.batch_norm(x, None, None, training=True, eps=self.eps)
            return F.instance_norm(x, eps=self.eps)
        if mode == "fixed":
            s = _NORM.stats[:, self.offset : self.offset + 2 * self.channels].float()[..., None, None]
            mean, var = s[:, : self.channels], s[:, self.channels :]
        else:
            # pooled over the batch: equal-sized crops of one plane give that plane's statistics
            var, mean = torch.var_mean(x.float(), dim=(0, 2, 3), keepdim=True, correction=0)
            _NORM.stats[self.index] = torch.cat([mean, var], 1).flatten(1)
        # one pass over x, x * scale + shift, that keeps x's memory layout (channels_last on
        # the CPU; F.instance_norm returns NCHW, and the next convolution converts it back)
        scale = torch.rsqrt(var + self.eps)
        return torch.addcmul((-mean * scale).to(x.dtype), x, scale.to(x.dtype))


class BlurPool(nn.Module):
    """Anti-aliased stride-2 down-sampling: reflect pad, [1, 2, 1] x [1, 2, 1] / 16 blur, every 2nd pixel."""

    def __init__(self, channels: int):
        super().__init__()
        k = torch.tensor([1.0, 2.0, 1.0])
        self.register_buffer("kernel", (k[:, None] * k[None, :] / 16).expand(channels, 1, 3, 3).clone(),
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = reflect_pad(x, 1)
        return F.conv2d(x, self.kernel.to(x.dtype), stride=2, groups=x.shape[1])


class Down(nn.Module):
    def __init__(self, c_in: int, c_out: int, antialias: bool):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, stride=1 if antialias else 2, padding=1)
        self.norm = Norm(c_out)
        self.pool = BlurPool(c_out) if antialias else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(F.relu(self.norm(self.conv(x))))


class Up(nn.Module):
    def __init__(self, c_in: int, c_out: int, antialias: bool):
        super().__init__()
        self.antialias = antialias
        if antialias:
            self.conv = ReflectConv2d(c_in, c_out, 3, padding=1)
        else:
            self.conv = nn.ConvTranspose2d(c_in, c_out, 3, stride=2, padding=1, output_padding=1)
        self.norm = Norm(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.antialias:
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        return F.relu(self.norm(self.conv(x)))


class ResBlock(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv1 = ReflectConv2d(c, c, 3, padding=1)
        self.norm1 = Norm(c)
        self.conv2 = ReflectConv2d(c, c, 3, padding=1)
        self.norm2 = Norm(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.norm2(self.conv2(F.relu(self.norm1(self.conv1(x)))))


# --------------------------------------------------------------------------- generator
class TranslateNet(nn.Module):
    """CUT's ResNet generator; ``(B, C_in, H, W)`` in [0, 1] -> ``(B, C_out, H, W)`` in [0, 1].

    ``nce_layers()`` names the modules whose outputs feed PatchNCE (CUT's
    layers 0, 4, 8, 12 and 16: the input, the two down-sampling convs and
    residual blocks 1 and 5).  Height and width must be multiples of 4 (the
    engine pads).
    """

    #: planes up to this many pixels get exact whole-plane norm statistics;
    #: larger ones get them from an area-down-sampled copy of this size
    stats_pixels: int = 2**21
    #: without ``norm_stats`` the network normalises by its input's own statistics, so the
    #: engine may skip :meth:`estimate_globals` for a plane it runs as one tile
    globals_from_input: bool = True

    Config = TranslateNetConfig  # the inference block stores it (napari_nlcl.nets.build)

    def __init__(self, config: TranslateNetConfig | None = None, *, name: str = "CUT generator"):
        super().__init__()
        cfg = config or TranslateNetConfig()
        self.config = cfg
        c, g, aa = cfg.in_channels, cfg.ngf, cfg.antialias
        self.inp = nn.Identity()  # tap point for the raw input (CUT's layer 0)
        self.stem = ReflectConv2d(c, g, 7, padding=3)
        self.stem_norm = Norm(g)
        self.down1 = Down(g, 2 * g, aa)
        self.down2 = Down(2 * g, 4 * g, aa)
        self.blocks = nn.Sequential(*[ResBlock(4 * g) for _ in range(cfg.blocks)])
        self.up1 = Up(4 * g, 2 * g, aa)
        self.up2 = Up(2 * g, g, aa)
        self.head = ReflectConv2d(g, cfg.channels_out, 7, padding=3)
        if cfg.residual:  # start as the identity
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)
        offset = 0
        for i, m in enumerate(m for m in self.modules() if isinstance(m, Norm)):
            m.index, m.offset = i, offset
            offset += 2 * m.channels
        self.n_norm_stats = offset
        self.info = ModelInfo(
            task="translate", name=name, in_channels=c, out_channels=cfg.channels_out,
            value_range=(0.0, 1.0), min_size=16, size_multiple=4,
            receptive_field=self.receptive_field(), exact_tiling=True,
            config={"architecture": "cut-resnet", **asdict(cfg)},
        )

    # ------------------------------------------------------------------ layers
    def nce_layers(self) -> list[str]:
        """Module names tapped by PatchNCE: input, both down-sampling convs, blocks 1 and 5."""
        late = min(4, self.config.blocks - 1)
        names = ["inp", "down1.conv", "down2.conv", "blocks.0"]
        if late > 0:
            names.append(f"blocks.{late}")
        return names

    def receptive_field(self) -> int:
        """Width in input pixels of the region that influences one output pixel (given fixed norms)."""
        rf, jump = 7, 1  # stem
        for _ in range(2):  # 3x3 conv, then the 3-tap blur at stride 2 (or a strided 3x3 conv)
            rf += 2 * jump
            if self.config.antialias:
                rf += 2 * jump
            jump *= 2
        rf += 2 * 2 * jump * self.config.blocks
        for _ in range(2):  # x2 linear up-sampling reaches one low-res pixel each side, then 3x3 conv
            rf += 2 * jump
            jump //= 2
            rf += 2 * jump
        rf += 6  # head 7x7
        return int(rf)

    def flops_per_pixel(self) -> float:
        """Multiply-adds x 2 per input pixel of the convolutions (GFLOP/MP = this / 1e3)."""
        # output resolution of each conv, relative to the input's pixel count
        aa = self.config.antialias
        area = {"stem": 1.0, "down1": 1.0 if aa else 1 / 4, "down2": 1 / 4 if aa else 1 / 16,
                "blocks": 1 / 16, "up1": 1 / 4, "up2": 1.0, "head": 1.0}
        total = 0.0
        for name, m in self.named_modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                k = m.kernel_size[0] * m.kernel_size[1]
                total += 2 * m.in_channels * m.out_channels * k * area[name.split(".")[0]]
        return total

    def gflop_per_mp(self) -> float:
        return self.flops_per_pixel() / 1e3

    # ------------------------------------------------------------------ forward
    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.stem_norm(self.stem(self.inp(x * 2.0 - 1.0))))
        h = self.down2(self.down1(h))
        h = self.blocks(h)
        h = self.up2(self.up1(h))
        out = full_precision(self.head, h)  # float32 under autocast: the output is the image
        if self.config.residual:  # x + correction, in [0, 1] units; clipped at inference only
            y = x + 0.5 * out
            return y if self.training else y.clamp(0.0, 1.0)
        return torch.tanh(out) * 0.5 + 0.5

    def forward(self, x: torch.Tensor, norm_stats: torch.Tensor | None = None) -> torch.Tensor:
        """Translate ``x``; with ``norm_stats`` (from :meth:`estimate_globals`) the norms use them."""
        if x.ndim != 4 or x.shape[1] != self.config.in_channels:
            raise ValueError(
                f"{self.info.name} expects (B, {self.config.in_channels}, H, W) images, got {tuple(x.shape)}"
            )
        if x.shape[-1] % 4 or x.shape[-2] % 4:
            raise ValueError(f"height and width must be multiples of 4 (pad the image), got {tuple(x.shape[-2:])}")
        if norm_stats is None:
            return self._forward(x)
        if norm_stats.ndim != 2 or norm_stats.shape[1] != self.n_norm_stats:
            raise ValueError(f"norm_stats must have shape (B, {self.n_norm_stats}), got {tuple(norm_stats.shape)}")
        with _norm_mode("fixed", norm_stats):
            return self._forward(x)

    @torch.no_grad()
    def estimate_globals(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"norm_stats": (B, N)}``: every norm layer's mean and variance on plane ``x``.

        Planes above ``stats_pixels`` pixels are area-down-sampled to about
        that many pixels first (thumbnail instance normalisation).
        """
        h, w = x.shape[-2:]
        if h * w > self.stats_pixels:
            s = math.sqrt(self.stats_pixels / (h * w))
            size = (max(16, round(h * s)), max(16, round(w * s)))
            x = F.interpolate(x, size=size, mode="area")
        x = pad_to_multiple(x, self.info.size_multiple)  # as the engine pads its tiles
        with _norm_mode("record", {}) as stats:
            self._forward(x)
        return {"norm_stats": torch.cat([stats[i] for i in sorted(stats)], 1).float()}

    def extra_repr(self) -> str:
        n = sum(p.numel() for p in self.parameters())
        return f"params={n}, gflop_per_mp={self.gflop_per_mp():.1f}"


def build(preset_name: str = "light", **overrides: Any) -> TranslateNet:
    return TranslateNet(preset(preset_name, **overrides))


def default_model(**_ignored: Any) -> TranslateNet:
    """The shipped example translator (photo -> the project's "film" style, see the README)."""
    from napari_nlcl.inference.loading import load_shipped_model

    return load_shipped_model(DEFAULT_WEIGHTS, name="default (photo to film look)", what="translation")


__all__ = [
    "DEFAULT_WEIGHTS",
    "PRESETS",
    "TranslateNet",
    "TranslateNetConfig",
    "build",
    "default_model",
    "preset",
]
