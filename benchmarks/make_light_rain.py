"""A light-rain test set of our own: thin, dense, short streaks over whole frames.

The shipped derainer was tuned on heavier rain (``synthetic_val_sirr``); fine-tuning should
gain most where the rain differs from what it learnt.  Clean LIVE1 photos
(``../shared/data/clean/live1``, 29 images, research terms: generated under ``runs/``, never
committed) get one or two layers of light streaks each (``synth.add_rain``: density 0.01-0.03,
width 0.6-1.2 px, length 8-18 px, opacity 0.25-0.5, angles within 8 degrees of each other).

    python benchmarks/make_light_rain.py runs/data/light_rain
    python benchmarks/make_light_rain.py runs/data/light_rain_kodak ../shared/data/clean/kodak
    python benchmarks/make_light_rain.py runs/data/other_rain_kodak ../shared/data/clean/kodak --style other

``--style other`` draws the rain with a second generator that shares no code with
``synth``: binary seeds, a hard-edged line kernel, *additive* blending (``O = B + S``, clipped)
and longer, brighter streaks of one direction per image.  The shipped derainer was never
trained on rain made this way, so it gains far less there (as on benchmark rain made by
other people's tools), and fine-tuning has something to adapt to.

LIVE1 photos are among the clean photos the shipped derainer was trained on (every clean
folder but Kodak); the Kodak set (24 photos, never trained on) is the held-out one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

CLEAN = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "clean" / "live1"


def other_rain(clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Additive rain of a generator independent of ``synth`` (float image in [0, 1])."""
    from scipy import ndimage
    from skimage.draw import line

    h, w = clean.shape[:2]
    angle = np.deg2rad(rng.uniform(-30, 30))
    rain = np.zeros((h, w))
    for _ in range(int(rng.integers(1, 3))):
        seeds = (rng.random((h, w)) < rng.uniform(0.003, 0.009)) * rng.uniform(0.5, 1.0, (h, w))
        length = int(rng.integers(14, 36))
        k = np.zeros((length, length))
        c = (length - 1) / 2
        dy, dx = np.cos(angle) * c, np.sin(angle) * c
        rr, cc = line(round(c - dy), round(c - dx), round(c + dy), round(c + dx))
        k[rr, cc] = 1.0
        streaks = ndimage.convolve(ndimage.gaussian_filter(seeds, 0.6), k / k.sum() * 6.0, mode="wrap")
        rain += np.clip(streaks, 0, 1) * rng.uniform(0.5, 0.9)
    return np.clip(clean + rain[..., None], 0.0, 1.0)


def main(out: str = "runs/data/light_rain", clean_dir: str | None = None, style: str = "light") -> int:
    from napari_nlcl import synth
    from napari_nlcl.io import list_images, read_file, write_image

    out = Path(out)
    (out / "rain").mkdir(parents=True, exist_ok=True)
    (out / "norain").mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(list_images(Path(clean_dir) if clean_dir else CLEAN)):
        rng = np.random.default_rng(7000 + i)
        clean = np.asarray(read_file(f))[..., :3]
        angle = float(rng.uniform(-25, 25))
        layers = [dict(density=float(rng.uniform(0.01, 0.03)), angle=angle + float(rng.uniform(-8, 8)),
                       length=float(rng.uniform(8, 18)), width=float(rng.uniform(0.6, 1.2)),
                       opacity=float(rng.uniform(0.25, 0.5))) for _ in range(int(rng.integers(1, 3)))]
        if style == "other":
            rainy = np.round(other_rain(clean / 255.0, rng) * 255).astype(np.uint8)
        else:
            rainy, _ = synth.add_rain(clean, layers=layers, rng=7000 + i)
        write_image(out / "rain" / f"input{i + 1}.png", np.asarray(rainy))
        write_image(out / "norain" / f"norain{i + 1}.png", clean)
    print(out, len(list_images(out / "rain")), "pairs")
    return 0


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", nargs="?", default="runs/data/light_rain")
    ap.add_argument("clean_dir", nargs="?", default=None)
    ap.add_argument("--style", choices=["light", "other"], default="light")
    a = ap.parse_args()
    raise SystemExit(main(a.out, a.clean_dir, a.style))
