"""Rain banks for training: streak, sheet and drizzle maps made once, then laid over clean crops in torch.

Unlike the rest of :mod:`napari_nlcl.synth` (numpy only), this module uses
torch; ``import napari_nlcl.synth`` does not import it.  The derain recipe
(:mod:`napari_nlcl.training.derain`) and ``scripts/train_derain_default.py``
draw their synthetic rain from here.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def streak_params(rng: np.random.Generator) -> dict[str, float]:
    """One streak layer's :func:`napari_nlcl.synth.add_rain` parameters (opacity applied later)."""
    return {
        "density": float(math.exp(rng.uniform(math.log(0.002), math.log(0.06)))),
        # half near vertical, half blown by wind anywhere up to 40 degrees either way
        "angle": float(np.clip(rng.normal(0.0, 8.0), -40.0, 40.0) if rng.random() < 0.5 else rng.uniform(-40.0, 40.0)),
        "length": float(math.exp(rng.uniform(math.log(6.0), math.log(120.0)))),
        "width": float(rng.uniform(0.4, 2.5)),
    }


def sheet_params(rng: np.random.Generator) -> dict[str, float]:
    """A downpour's sheet layer: long, wide, soft streaks (heavy rain falling close to the camera).

    Dense rain near the lens is defocused and motion-blurred into bands several
    pixels wide and tens to hundreds long, mostly near vertical; thin short
    streaks (:func:`streak_params`) never add up to that texture.
    """
    return {
        "density": float(math.exp(rng.uniform(math.log(0.004), math.log(0.04)))),
        "angle": float(np.clip(rng.normal(0.0, 6.0), -30.0, 30.0) if rng.random() < 0.7 else rng.uniform(-30.0, 30.0)),
        "length": float(math.exp(rng.uniform(math.log(30.0), math.log(200.0)))),
        "width": float(rng.uniform(2.5, 8.0)),
    }


def drizzle_params(rng: np.random.Generator) -> dict[str, float]:
    """A light-rain layer: thin, short, dense streaks over the whole frame (a drizzle, or rain
    far from the camera), near vertical or gently blown."""
    return {
        "density": float(math.exp(rng.uniform(math.log(0.01), math.log(0.05)))),
        "angle": float(np.clip(rng.normal(0.0, 8.0), -30.0, 30.0) if rng.random() < 0.6 else rng.uniform(-30.0, 30.0)),
        "length": float(math.exp(rng.uniform(math.log(4.0), math.log(24.0)))),
        "width": float(rng.uniform(0.4, 1.2)),
    }


def make_rain_bank(n: int, size: int, seed: int = 0, *, kind: str = "streaks") -> tuple[torch.Tensor, np.ndarray]:
    """``n`` streak maps ``(n, 1, size, size)`` in [0, 1] sorted by angle, and their angles.

    ``kind``: ``"streaks"`` (:func:`streak_params`), ``"sheets"`` (:func:`sheet_params`) or
    ``"drizzle"`` (:func:`drizzle_params`).
    """
    from napari_nlcl.synth import add_rain

    kinds = {"streaks": streak_params, "sheets": sheet_params, "drizzle": drizzle_params}
    if kind not in kinds:
        raise ValueError(f"kind must be one of {sorted(kinds)}, got {kind!r}")
    rng = np.random.default_rng(seed)
    maps, angles = [], []
    for _ in range(n):
        p = kinds[kind](rng)
        s, _ = add_rain(np.zeros((size, size), np.float32), **p, opacity=1.0, layers=1, rng=rng)
        maps.append(s)
        angles.append(p["angle"])
    order = np.argsort(angles)
    bank = torch.from_numpy(np.stack(maps)[order][:, None].copy())
    return bank, np.asarray(angles)[order]


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``(N, 1, H, W)`` (replicate borders)."""
    r = max(int(math.ceil(2.5 * sigma)), 1)
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1))


def veil_field(h: int, w: int, generator: torch.Generator, *, grid: int = 2) -> torch.Tensor:
    """A smooth random field ``(1, h, w)`` with mean about 1: where rain accumulates more or less.

    A ``grid x grid`` lattice of uniform values, bilinearly resized, mixed with
    a constant at a random ratio (0 gives a uniform veil).  Real veils follow
    the density of rain and the depth of the scene, so they vary smoothly.
    """
    lattice = torch.rand(1, 1, grid, grid, generator=generator) * 2.0
    field = F.interpolate(lattice, size=(h, w), mode="bicubic", align_corners=True)[0].clamp(min=0.0)
    mix = float(torch.rand((), generator=generator))
    return (1.0 - mix) + mix * field


def add_bank_rain(clean: torch.Tensor, bank: torch.Tensor, generator: torch.Generator, *,
                  layers=(1, 3), opacity=(0.1, 0.7), veil: float = 0.5, blur: float = 1.5,
                  veil_max: float = 0.2, additive: float = 0.0, veil_ref: float = 0.0,
                  downpour: float = 0.0, downpour_veil=(0.1, 0.4), sheets: float = 0.0,
                  sheet_bank: torch.Tensor | None = None, drizzle: float = 0.0,
                  drizzle_bank: torch.Tensor | None = None, return_veil: bool = False):
    """Rainy versions of clean crops ``(B, C, H, W)`` in [0, 1] (``rainy >= clean``).

    Per image: one to ``layers[1]`` streak maps of similar angle from
    ``bank``, each defocused by a Gaussian of sigma up to ``blur`` px (real
    streaks are rarely sharp), at a random opacity; with probability ``veil``
    a veil of up to ``veil_max`` that varies smoothly over the image
    (:func:`veil_field`; the haze of rain accumulation).  With ``veil_ref > 0``
    the veil grows with the rain: its maximum is ``veil_max`` only where the
    streaks add at least ``veil_ref`` of light on average, and proportionally
    less under lighter rain (accumulation is heavy rain's; a drizzle has none).
    With probability ``downpour`` the image gets heavy rain instead (Yang et
    al.'s rain accumulation): two to four faint streak layers (the lower half
    of the opacity range) over a strong added veil of ``downpour_veil`` times
    :func:`veil_field`, always additive; a downpour is seen through its dense
    streaks, which is what tells it from a bright, low-contrast scene.  Each
    of a downpour's layers is, with probability ``sheets``, taken from
    ``sheet_bank`` instead (long wide soft streaks, :func:`sheet_params`),
    from the same place in its angle order (a similar angle), at half the
    opacity.  With probability ``drizzle`` an image that is not a downpour gets light rain
    instead: two or three layers from ``drizzle_bank`` (:func:`drizzle_params`), each at its
    own defocus and an opacity of 0.15-0.5 (streak fields at several depths).
    With probability
    ``additive`` the rain is added, ``O = min(B + R, 1)`` (the model of the
    common synthetic rain sets, Rain100 and Rain1400, and of Yang et al.'s heavy
    rain with accumulation), otherwise screen-blended, ``O = B + (1 - B) R``
    (light rain over bright regions is hidden, as in photos).  With
    ``return_veil`` also returns the light the veil added, ``(B, 1, H, W)``
    (mean over the channels), which supervises a generator's veil branch.
    """
    b, c, h, w = clean.shape
    n, _, size, _ = bank.shape
    if sheets and sheet_bank is None:
        raise ValueError("sheets > 0 needs a sheet_bank (make_rain_bank(..., kind='sheets'))")
    if drizzle and drizzle_bank is None:
        raise ValueError("drizzle > 0 needs a drizzle_bank (make_rain_bank(..., kind='drizzle'))")

    def rand() -> float:
        return float(torch.rand((), generator=generator))

    def randint(lo: int, hi: int) -> int:  # inclusive
        return int(torch.randint(lo, hi + 1, (), generator=generator))

    out = clean.clone()
    veils = clean.new_zeros(b, 1, h, w)
    for i in range(b):
        first = randint(0, n - 1)
        flip = rand() < 0.5
        heavy = bool(downpour) and rand() < downpour
        fine = bool(drizzle) and not heavy and rand() < drizzle
        add = heavy or rand() < additive
        scale = max(1, math.ceil(max(h, w) / size))
        light = 0.0  # mean streak light added, which scales the veil when veil_ref > 0
        lo, hi = (opacity[0], (opacity[0] + opacity[1]) / 2) if heavy else (0.15, 0.5) if fine else opacity
        for _ in range(randint(2, 4) if heavy else randint(2, 3) if fine else randint(*layers)):
            j = min(max(first + randint(-max(n // 16, 1), max(n // 16, 1)), 0), n - 1)
            sheet = bool(heavy and sheets and rand() < sheets)
            source = sheet_bank if sheet else drizzle_bank if fine else bank
            if sheet or fine:  # same place in the angle order of the other bank
                j = min(round(j * (source.shape[0] - 1) / max(n - 1, 1)), source.shape[0] - 1)
            s = source[j:j + 1].to(clean.device, clean.dtype)
            if scale > 1:
                s = F.interpolate(s, scale_factor=scale, mode="bilinear", align_corners=False)
            y, x = randint(0, s.shape[-2] - h), randint(0, s.shape[-1] - w)
            s = s[:, :, y:y + h, x:x + w]
            sigma = blur * rand()
            if sigma > 0.3:
                s = gaussian_blur(s, sigma)
            s = s[0]
            if flip:
                s = s.flip(-1)
            a = (lo + (hi - lo) * rand()) * (0.5 if sheet else 1.0)  # sheets are soft: half as bright
            out[i] = out[i] + (1.0 if add else 1.0 - out[i]) * (a * s)
            light += a * float(s.mean())
        if heavy or (veil and rand() < veil):
            if heavy:
                amount = downpour_veil[0] + (downpour_veil[1] - downpour_veil[0]) * rand()
            else:
                amount = veil_max * rand() * (min(1.0, light / veil_ref) if veil_ref > 0 else 1.0)
            v = amount * veil_field(h, w, generator).to(clean.device, clean.dtype)
            before = out[i].clamp(max=1.0)
            out[i] = out[i] + (1.0 if add else 1.0 - out[i]) * v
            veils[i] = (out[i].clamp(max=1.0) - before).mean(0, keepdim=True)
    out = out.clamp(0.0, 1.0)
    return (out, veils) if return_veil else out
