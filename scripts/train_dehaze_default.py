"""Train the shipped default dehazer (AECR-Net "fast" preset) on synthetic haze.

Clear photos: every folder of ``../shared/data/clean`` except ``kodak``, which
is held out as the validation set (``benchmarks/bench_dehaze.py``).  Haze is
synthesised on every crop (``DehazeConfig(mode="synthetic")``).

    python scripts/train_dehaze_default.py --steps 6000 -o runs/dehaze.pt
    python scripts/train_dehaze_default.py --resume runs/dehaze.pt --steps 6000  # after a stop
    python scripts/train_dehaze_default.py --export runs/dehaze.pt          # -> package weights

Logs one line every 50 steps; a checkpoint every 250 steps.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from _training_log import run_logged

from napari_nlcl.data import RandomCrops
from napari_nlcl.engine import TrainConfig, Trainer, export_model
from napari_nlcl.io import _imread, list_images
from napari_nlcl.methods.aecr import DEFAULT_WEIGHTS

CLEAN = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "clean"
VALIDATION = ("kodak",)


def training_images(root: Path) -> list[np.ndarray]:
    folders = sorted(p for p in root.iterdir() if p.is_dir() and p.name not in VALIDATION)
    images = []
    for folder in folders:
        for f in list_images(folder):
            im = np.asarray(_imread(f))
            if im.ndim == 3 and im.shape[-1] >= 3 and min(im.shape[:2]) >= 128:
                images.append(np.ascontiguousarray(im[..., :3]))
    print(f"{len(images)} training photos from {[p.name for p in folders]}", flush=True)
    return images


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-o", "--output", default="runs/dehaze_default.pt")
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--cr-weight", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--recipe-json", default="{}", help='more recipe settings, e.g. \'{"net": {"head": "residual"}}\'')
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--clean", type=Path, default=CLEAN)
    ap.add_argument("--resume", type=Path)
    ap.add_argument("--export", type=Path, help="copy the weights of this checkpoint into the package")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.export:
        export_model(args.export, DEFAULT_WEIGHTS)
        print(f"exported {args.export} -> {DEFAULT_WEIGHTS} ({DEFAULT_WEIGHTS.stat().st_size / 1e6:.2f} MB)")
        return 0
    crops = RandomCrops({"clear": training_images(args.clean)}, crop=args.crop,
                        batch_size=args.batch_size, seed=args.seed)
    if args.resume:
        trainer = Trainer.resume(args.resume, crops, steps=args.steps)
    else:
        out = Path(args.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        config = TrainConfig(steps=args.steps, batch_size=args.batch_size, crop=args.crop, lr=args.lr,
                             seed=args.seed, schedule="cosine", decay_start=0.2, checkpoint_every=250)
        trainer = Trainer.from_recipe_name(
            "dehaze", crops, config, recipe_config={"mode": "synthetic", "cr_weight": args.cr_weight,
                                              **json.loads(args.recipe_json)},
            checkpoint=out, metadata={"command": " ".join(sys.argv)},
        )
    run_logged(trainer)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
