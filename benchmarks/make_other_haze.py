"""A dense-haze test set whose depth is laid out like a scene's, not like the training haze.

The shipped dehazer was trained on haze over a vertical ramp mixed with a smooth random field
(``synth.random_depth``).  Here each clean photo is cut into superpixels (SLIC); each segment is
an object standing on a ground plane, at the depth of its lowest pixel (nearer the bottom of the
frame = nearer the camera), so depth jumps at object edges as real depth does; bright, flat
segments touching the top of the frame are sky, at the far depth.  ``beta`` is 0.8-2.0 on
depths in [0, 1], under a grey airlight of 0.75-0.95 with a slight tint: most of a frame is
far, so the haze is dense (input 11.6 dB on Kodak, the shipped dehazer only 0.7 dB above DCP).
Writes ``hazy/N.png`` and ``clear/N.png``.

    python benchmarks/make_other_haze.py runs/data/other_haze_kodak ../shared/data/clean/kodak
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def scene_depth(clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Relative depth in [0, 1] (1 = far) of objects on a ground plane, sky far."""
    from skimage.segmentation import slic

    h, w = clean.shape[:2]
    labels = slic(clean, n_segments=int(rng.integers(40, 120)), compactness=10, start_label=0)
    rows = np.arange(h, dtype=np.float64)[:, None].repeat(w, 1)
    horizon = rng.uniform(0.15, 0.45) * h  # the ground plane meets the sky here
    depth = np.zeros((h, w))
    grey = clean.mean(-1)
    for lab in range(labels.max() + 1):
        m = labels == lab
        if not m.any():
            continue
        bottom = rows[m].max()
        # ground-plane depth of the contact row: far near the horizon, near at the frame's bottom
        d = np.clip((h - bottom) / max(h - horizon, 1.0), 0.0, 1.0) ** 0.7
        if rows[m].min() == 0 and grey[m].mean() > 0.6 and grey[m].std() < 0.08:
            d = 1.0  # sky
        depth[m] = d
    return depth


def main(out: str, clean_dir: str) -> int:
    from napari_nlcl.io import list_images, read_file, write_image

    out = Path(out)
    (out / "hazy").mkdir(parents=True, exist_ok=True)
    (out / "clear").mkdir(parents=True, exist_ok=True)
    files = list_images(Path(clean_dir))
    for i, f in enumerate(files):
        rng = np.random.default_rng(9000 + i)
        clean = np.asarray(read_file(f))[..., :3].astype(np.float64) / 255
        t = np.exp(-rng.uniform(0.8, 2.0) * scene_depth(clean, rng))[..., None]
        a = rng.uniform(0.75, 0.95) + rng.uniform(-0.03, 0.03, 3)
        hazy = clean * t + a * (1 - t)
        write_image(out / "hazy" / f"{i + 1}.png", np.round(np.clip(hazy, 0, 1) * 255).astype(np.uint8))
        write_image(out / "clear" / f"{i + 1}.png", np.round(clean * 255).astype(np.uint8))
    print(out, len(files), "pairs")
    return 0


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("clean_dir")
    a = ap.parse_args()
    raise SystemExit(main(a.out, a.clean_dir))
