"""Ablation of the NLCL stage: asymmetric vs symmetric layer contrast, hard negatives, no contrast.

Every arm starts from the same model (a synthetic-rain warm start), trains
the same number of unsupervised NLCL steps on the real rainy photos of
``../shared/data/rain/real_sirr`` (no clean image of those scenes; the
unpaired clean photos of ``../shared/data/clean`` are the discriminator's
real set), with the synthetic-rain L1 term switched off (``sup_weight=0``,
pure NLCL), and is scored on ``synthetic_val_sirr``.

    python benchmarks/ablate_derain_nlcl.py --start runs/derain_syn.pt --steps 200

Prints a Markdown table (Y-PSNR / SSIM on the luma, and minutes per arm).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

ARMS = {
    "asymmetric layer contrast (default)": {},
    "symmetric layer contrast (CVPR 2022)": {"asymmetric": False},
    "asymmetric + hard negatives": {"hard_negatives": True},
    "no contrast (GAN + consistency + sparsity)": {"layer_weight": 0.0, "location_weight": 0.0},
}


def main(argv=None) -> int:
    from bench_derain import evaluate, validation_set
    from train_derain_default import DATA, clean_photos, photos

    from napari_nlcl.training import TrainConfig, Trainer
    from napari_nlcl.training.data import RandomCrops

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--start", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--arms", default=",".join(str(i) for i in range(len(ARMS))),
                    help="comma-separated arm numbers to run")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    pairs = validation_set()
    sources = {"rainy": photos([DATA / "rain" / "real_sirr" / "real_input"]), "clean": clean_photos(DATA / "clean")}
    p0, s0 = evaluate(str(args.start), pairs)
    print(f"\nstart {args.start}: {p0:.2f} dB / {s0:.3f}; {args.steps} NLCL steps per arm, batch {args.batch_size}\n")
    print("| NLCL stage | Y-PSNR (dB) | SSIM (Y) | minutes |")
    print("|---|---|---|---|")
    print(f"| (start) | {p0:.2f} | {s0:.3f} | - |", flush=True)
    chosen = [int(i) for i in args.arms.split(",")]
    for i, (label, over) in enumerate(ARMS.items()):
        if i not in chosen:
            continue
        crops = RandomCrops(sources, crop=128, batch_size=args.batch_size, seed=0)
        config = TrainConfig(steps=args.steps, batch_size=args.batch_size, crop=128, lr=args.lr, seed=0,
                             device="cpu")
        trainer = Trainer.from_model(args.start, crops, config,
                                     recipe_config={"mode": "nlcl", "sup_weight": 0.0, "rain_bank": 8, **over})
        t = time.perf_counter()
        trainer.fit()
        minutes = (time.perf_counter() - t) / 60
        p, s = evaluate(trainer.model.eval(), pairs)
        print(f"| {label} | {p:.2f} | {s:.3f} | {minutes:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
