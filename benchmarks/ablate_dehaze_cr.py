"""Ablation: does contrastive regularisation help?  L1 only vs L1 + CR, same budget and seed.

Trains the recipe's default network (preset ``physics``) from scratch twice on synthetic haze over the
training photos (as ``scripts/train_dehaze_default.py``), identical except for
``cr_weight``, then scores both on the held-out set of ``bench_dehaze.py``.

    python benchmarks/ablate_dehaze_cr.py --steps 1500
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "scripts"))
from bench_dehaze import evaluate, validation_set  # noqa: E402
from train_dehaze_default import CLEAN, training_images  # noqa: E402


def main(argv=None) -> int:
    from napari_nlcl.training import TrainConfig, Trainer
    from napari_nlcl.training.data import RandomCrops

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--variants", default="0,0.1", help="comma-separated cr_weight values")
    ap.add_argument("--normalize", default="true", help="cr_normalize for the CR runs")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    images = training_images(CLEAN)
    pairs = validation_set()
    print("| loss | steps | minutes | PSNR (dB) | SSIM |\n|---|---|---|---|---|")
    for w in (float(v) for v in args.variants.split(",")):
        crops = RandomCrops({"clear": images}, crop=args.crop, batch_size=args.batch_size, seed=0)
        config = TrainConfig(steps=args.steps, batch_size=args.batch_size, crop=args.crop, lr=args.lr,
                             seed=0, schedule="cosine", decay_start=0.2)
        norm = args.normalize.lower() in {"1", "true", "yes"}
        trainer = Trainer.from_recipe_name("dehaze", crops, config, recipe_config={
            "mode": "synthetic", "cr_weight": w, "cr_normalize": norm})
        t = time.perf_counter()
        trainer.fit()
        minutes = (time.perf_counter() - t) / 60
        p, s = evaluate(trainer.recipe.inference_model().eval(), pairs)
        label = "L1 only" if w == 0 else f"L1 + {w:g} CR" + (" (bounded ratio)" if norm else " (raw ratio)")
        print(f"| {label} | {args.steps} | {minutes:.1f} | {p:.2f} | {s:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
