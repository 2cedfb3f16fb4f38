"""A light-rain test set of our own: thin, dense, short streaks over whole frames.

The shipped derainer was tuned on heavier rain (``synthetic_val_sirr``); fine-tuning should
gain most where the rain differs from what it learnt.  Clean LIVE1 photos
(``../shared/data/clean/live1``, 29 images, research terms: generated under ``runs/``, never
committed) get one or two layers of light streaks each (``synth.add_rain``: density 0.01-0.03,
width 0.6-1.2 px, length 8-18 px, opacity 0.25-0.5, angles within 8 degrees of each other).

    python benchmarks/make_light_rain.py runs/data/light_rain
    python benchmarks/make_light_rain.py runs/data/light_rain_kodak ../shared/data/clean/kodak

LIVE1 photos are among the clean photos the shipped derainer was trained on (every clean
folder but Kodak); the Kodak set (24 photos, never trained on) is the held-out one.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

CLEAN = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "clean" / "live1"


def main(out: str = "runs/data/light_rain", clean_dir: str | None = None) -> int:
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
        rainy, _ = synth.add_rain(clean, layers=layers, rng=7000 + i)
        write_image(out / "rain" / f"input{i + 1}.png", np.asarray(rainy))
        write_image(out / "norain" / f"norain{i + 1}.png", clean)
    print(out, len(list_images(out / "rain")), "pairs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:]))
