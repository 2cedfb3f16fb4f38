"""Networks of the NLCL deraining model (Ye et al., CVPR 2022; Chang et al., TPAMI 2024).

A rainy image is split into two layers, ``O = B + R``: a background generator
predicts ``B`` and a rain generator predicts ``R``; only the background
generator is needed at inference.  Both are :class:`DerainNet` s:

``arch="unet"`` (the shipped "fast" preset)
    The image is folded into ``unshuffle x unshuffle`` pixel blocks
    (space-to-depth), so no convolution runs at full resolution, then a small
    U-Net (residual blocks, stride-2 down-sampling, 1x1 conv + bilinear
    up-sampling, additive skips) predicts the *rain residual* at full
    resolution through a depth-to-space head.  The background is
    ``O - residual``, the rain layer the residual itself.  Folding keeps thin
    streaks visible to the network (they become channels) at a quarter of the
    cost of a full-resolution layer.
``arch="resnet"`` (the "paper" preset)
    The released code's generator: 16 residual blocks of 32 channels at full
    resolution (about 0.3 M parameters, 0.6 TFLOP per megapixel), with the
    same residual output.  Offered to compare cost and quality.

Neither uses normalisation layers, so tiled inference equals whole-image
inference (``exact_tiling``).  The residual blocks and the veil branch are in
:mod:`napari_nlcl.nets.derain_blocks`; the PatchGAN that judges backgrounds
against clean images in training is :class:`napari_nlcl.nets.discriminators.PatchDiscriminator`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from napari_nlcl.model import ModelInfo
from napari_nlcl.nets.derain_blocks import VeilNet, res_blocks

ARCHS = ("unet", "resnet")
OUTPUTS = ("background", "rain")
DEFAULT_WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "derain_default.pt"


@dataclass
class DerainNetConfig:
    """Architecture of one generator.

    ``channels``: widths of the U-Net levels (after space-to-depth), or the
    single width of the ResNet; ``blocks``: residual blocks per U-Net level
    (twice that at the bottom) or in total for the ResNet; ``unshuffle``:
    space-to-depth factor (1 turns it off); ``dark_radius``: when > 0 the
    stem also sees a smoothed dark channel (the minimum over the colours and a
    ``(2 r + 1)``-pixel window, then box-averaged over the same window): an
    additive rain veil raises it everywhere, while most clean scenes have dark
    pixels nearby (He et al.'s dark channel prior), so it tells the network
    how much veil to remove where its own layers would see only local contrast;
    ``veil``: a :class:`VeilNet` estimates a smooth rain veil from a thumbnail of
    the whole image and it is subtracted before the U-Net removes the streaks.
    """

    arch: str = "unet"
    channels: tuple = (32, 64, 128)
    blocks: int = 1
    unshuffle: int = 2
    in_channels: int = 3
    dark_radius: int = 0
    veil: bool = False

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, got {self.arch!r}")
        self.channels = tuple(int(c) for c in self.channels)
        if not self.channels or any(c < 1 for c in self.channels):
            raise ValueError(f"channels must be positive integers, got {self.channels}")
        if self.arch == "resnet" and len(self.channels) != 1:
            raise ValueError("the resnet generator has one width: channels=(C,)")
        for name in ("blocks", "unshuffle", "in_channels"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        self.veil = bool(self.veil)
        if not isinstance(self.dark_radius, int) or self.dark_radius < 0:
            raise ValueError(f"dark_radius must be an integer >= 0, got {self.dark_radius!r}")


PRESETS: dict[str, dict[str, Any]] = {
    # background generator of the shipped model
    "fast": {"arch": "unet", "channels": (32, 64, 128), "blocks": 1, "unshuffle": 2},
    # a lighter rain generator: rain streaks are simpler than backgrounds
    "rain": {"arch": "unet", "channels": (16, 32, 64), "blocks": 1, "unshuffle": 2},
    # the released code's generator (16 residual blocks at full resolution)
    "paper": {"arch": "resnet", "channels": (32,), "blocks": 16, "unshuffle": 1},
}


def preset(name: str, **overrides: Any) -> DerainNetConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown generator preset {name!r}; available: {sorted(PRESETS)}")
    return DerainNetConfig(**{**PRESETS[name], **overrides})




class DerainNet(nn.Module):
    """One NLCL generator; ``(B, C, H, W)`` in [0, 1] -> background (or rain layer) in [0, 1].

    ``output="background"`` returns ``x - residual`` (clipped to [0, 1] in
    eval mode), ``output="rain"`` the residual itself (clipped to [0, 1] in
    eval mode).  :meth:`residual` gives the raw prediction.
    """

    Config = DerainNetConfig  # the inference block stores it (napari_nlcl.nets.build)

    def __init__(self, config: DerainNetConfig | None = None, *, output: str = "background",
                 name: str = "NLCL generator"):
        super().__init__()
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
        cfg = config or DerainNetConfig()
        self.config = cfg
        self.output = output
        self.build_options = {"output": output}  # constructor options the inference block keeps
        s, c_in, ch = cfg.unshuffle, cfg.in_channels, cfg.channels
        extra = 1 if cfg.dark_radius else 0  # the dark-channel cue is one more input plane
        self.stem = nn.Conv2d((c_in + extra) * s * s, ch[0], 3, padding=1)
        if cfg.arch == "unet":
            self.enc = nn.ModuleList(res_blocks(c, cfg.blocks) for c in ch[:-1])
            self.down = nn.ModuleList(nn.Conv2d(a, b, 3, stride=2, padding=1) for a, b in zip(ch[:-1], ch[1:]))
            self.bottom = res_blocks(ch[-1], 2 * cfg.blocks)
            self.up = nn.ModuleList(nn.Conv2d(b, a, 1) for a, b in zip(ch[:-1], ch[1:]))
            self.dec = nn.ModuleList(res_blocks(c, cfg.blocks) for c in ch[:-1])
        else:
            self.body = res_blocks(ch[0], cfg.blocks)
        self.head = nn.Conv2d(ch[0], c_in * s * s, 3, padding=1)
        self.veil_net = VeilNet(c_in) if cfg.veil else None
        nn.init.zeros_(self.head.weight)  # start as the identity (no rain removed)
        nn.init.zeros_(self.head.bias)
        levels = len(ch) - 1 if cfg.arch == "unet" else 0
        multiple = s * 2 ** levels
        self.info = ModelInfo(
            task="derain", name=name, in_channels=c_in, out_channels=c_in, value_range=(0.0, 1.0),
            min_size=max(4 * multiple, 16), size_multiple=multiple,
            receptive_field=self.receptive_field(), exact_tiling=True,
            config={"architecture": "nlcl-" + cfg.arch, "output": output, **asdict(cfg)},
        )

    # ------------------------------------------------------------------ geometry
    def receptive_field(self) -> int:
        """Width in input pixels of the region that influences one output pixel (upper bound)."""
        cfg = self.config
        s = cfg.unshuffle
        rf, jump = s, s  # one folded pixel covers s input pixels
        rf += 4 * cfg.dark_radius  # min filter and box average, radius r each
        rf += 2 * jump  # stem
        if cfg.arch == "resnet":
            rf += 2 * jump * 2 * cfg.blocks
        else:
            for _ in cfg.channels[:-1]:
                rf += 2 * jump * 2 * cfg.blocks  # encoder blocks
                rf += 2 * jump  # stride-2 conv
                jump *= 2
            rf += 2 * jump * 2 * 2 * cfg.blocks  # bottom
            for _ in cfg.channels[:-1]:
                rf += 2 * jump  # bilinear x2 reaches one low-res pixel each side
                jump //= 2
                rf += 2 * jump * 2 * cfg.blocks  # decoder blocks
        rf += 2 * jump  # head
        return int(rf)

    def _conv_areas(self) -> list[tuple[nn.Conv2d, float]]:
        """Every conv with the pixel count it runs at, relative to the folded resolution."""
        def convs(module: nn.Module, area: float) -> list[tuple[nn.Conv2d, float]]:
            return [(m, area) for m in module.modules() if isinstance(m, nn.Conv2d)]

        out = convs(self.stem, 1.0) + convs(self.head, 1.0)
        if self.config.arch == "resnet":
            return out + convs(self.body, 1.0)
        area = 1.0
        for enc, down, up, dec in zip(self.enc, self.down, self.up, self.dec):
            out += convs(enc, area) + convs(dec, area)
            area /= 4
            out += convs(down, area) + convs(up, area)
        return out + convs(self.bottom, area)

    def flops_per_pixel(self) -> float:
        """Multiply-adds x 2 per input pixel, counted from the conv layers (GFLOP/MP = this / 1e3)."""
        total = sum(2 * m.in_channels * m.out_channels * m.kernel_size[0] * m.kernel_size[1] * area
                    for m, area in self._conv_areas())
        return total / self.config.unshuffle ** 2  # areas are relative to the folded resolution

    # ------------------------------------------------------------------ forward
    def dark_cue(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 1, H, W)`` smoothed dark channel of ``x`` in [0, 1] (see ``dark_radius``)."""
        from napari_nlcl.classical.filters import box_filter, min_filter

        r = self.config.dark_radius
        return box_filter(min_filter(x.amin(dim=1, keepdim=True), 2 * r + 1), r)

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        s = self.config.unshuffle
        h = x * 2.0 - 1.0
        if self.config.dark_radius:
            h = torch.cat([h, self.dark_cue(x) * 2.0 - 1.0], 1)
        h = F.pixel_unshuffle(h, s) if s > 1 else h
        h = F.leaky_relu(self.stem(h), 0.2)
        if self.config.arch == "resnet":
            h = self.body(h)
        else:
            skips = []
            for enc, down in zip(self.enc, self.down):
                h = enc(h)
                skips.append(h)
                h = F.leaky_relu(down(h), 0.2)
            h = self.bottom(h)
            for up, dec, skip in zip(reversed(self.up), reversed(self.dec), reversed(skips)):
                h = F.interpolate(up(h), size=skip.shape[-2:], mode="bilinear", align_corners=False)
                h = dec(h + skip)
        r = self.head(F.leaky_relu(h, 0.2))
        return F.pixel_shuffle(r, s) if s > 1 else r

    def estimate_globals(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"veil": (B, 1, H, W)}`` of the whole plane (the engine gives each tile its window).

        Estimated on the plane before the engine pads it to the network's
        multiple, so a plane gives the same veil in one tile or many.
        """
        return {} if self.veil_net is None else {"veil": self.veil_net(x)}

    def forward(self, x: torch.Tensor, veil: torch.Tensor | None = None) -> torch.Tensor:
        return self.split(x, veil)[0]

    def split(self, x: torch.Tensor, veil: torch.Tensor | None = None):
        """``(output, veil)``: the background (or rain layer) and the veil removed first
        (``None`` without a veil branch).  ``veil`` overrides the branch's estimate."""
        if self.veil_net is not None and veil is None:
            veil = self.veil_net(x)
        inner = x if veil is None else x - veil.to(x.dtype)
        r = self.residual(inner)
        if self.output == "background":
            out = inner - r
        else:
            out = r if veil is None else r + veil
        return (out if self.training else out.clamp(0.0, 1.0)), veil

    def extra_repr(self) -> str:
        n = sum(p.numel() for p in self.parameters())
        return f"output={self.output}, params={n}, gflop_per_mp={self.gflop_per_mp():.1f}"

    def gflop_per_mp(self) -> float:
        return self.flops_per_pixel() / 1e3



def grow_stem(state: dict[str, torch.Tensor], net: DerainNet) -> dict[str, torch.Tensor]:
    """``state`` of a generator without the dark-channel cue, fitted to ``net`` which has it.

    The stem's weights for the new input plane start at zero, so the grown
    network computes exactly what the old one did until it is trained.
    """
    state = dict(state)
    w = state["stem.weight"]
    target = net.stem.weight
    if w.shape == target.shape:
        return state
    if w.shape[0] != target.shape[0] or w.shape[1] > target.shape[1] or w.shape[2:] != target.shape[2:]:
        raise ValueError(f"cannot grow a stem of shape {tuple(w.shape)} to {tuple(target.shape)}")
    grown = w.new_zeros(target.shape)
    grown[:, : w.shape[1]] = w  # pixel_unshuffle puts the extra plane's channels last
    state["stem.weight"] = grown
    return state


def deepen(state: dict[str, torch.Tensor], net: DerainNet) -> dict[str, torch.Tensor]:
    """``state`` of a U-Net with one level fewer than ``net``, fitted to ``net``.

    The old bottom (``2 * blocks`` blocks) becomes the new deepest level's
    encoder and decoder blocks, and the new level below them (a stride-2 conv,
    its bottom, a 1x1 conv up) adds the output of a zero-initialised 1x1 conv:
    the deeper network computes exactly what the old one did until it is trained,
    while it can learn context from twice the distance.
    """
    level = len(net.enc) - 1 if net.config.arch == "unet" else -1
    if level < 1 or f"enc.{level}.0.conv1.weight" in state or "bottom.0.conv1.weight" not in state:
        return state
    b = net.config.blocks
    out = {k: v for k, v in state.items() if not k.startswith("bottom.")}
    for key, value in state.items():
        if key.startswith("bottom."):
            i, rest = key[len("bottom."):].split(".", 1)
            i = int(i)
            out[f"enc.{level}.{i}.{rest}" if i < b else f"dec.{level}.{i - b}.{rest}"] = value
    for key, value in net.state_dict().items():
        if key.startswith((f"down.{level}.", "bottom.")):
            out[key] = value.clone()
        elif key.startswith(f"up.{level}."):
            out[key] = torch.zeros_like(value)
    return out


def load_grown(net: DerainNet, state: dict[str, torch.Tensor]) -> None:
    """Load a generator's ``state`` into ``net``, which may add the dark-channel cue
    (:func:`grow_stem`), one more U-Net level (:func:`deepen`) or an untrained veil branch;
    anything else that does not fit raises."""
    try:
        missing, unexpected = net.load_state_dict(deepen(grow_stem(state, net), net), strict=False)
    except RuntimeError as exc:  # shapes that differ
        raise ValueError(f"these weights do not fit the network: {exc}") from None
    if unexpected or any(not k.startswith("veil_net.") for k in missing):
        raise ValueError(f"these weights do not fit the network: missing {missing}, unexpected {unexpected}")


def build(preset_name: str = "fast", output: str = "background", **overrides: Any) -> DerainNet:
    return DerainNet(preset(preset_name, **overrides), output=output)


def default_model(**_ignored: Any) -> DerainNet:
    """The shipped default derainer's background generator (trained by this project; see the README)."""
    from napari_nlcl.inference.loading import load_shipped_model

    return load_shipped_model(DEFAULT_WEIGHTS, name="default (NLCL U-Net)", what="deraining")



__all__ = [
    "ARCHS",
    "DEFAULT_WEIGHTS",
    "PRESETS",
    "DerainNet",
    "DerainNetConfig",
    "build",
    "default_model",
    "grow_stem",
    "load_grown",
    "preset",
]
