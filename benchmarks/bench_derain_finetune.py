"""Unsupervised per-dataset fine-tuning of the derainer: does NLCL on the user's rainy images help?

The user's data are the 20 *rainy* inputs of ``synthetic_val_sirr`` only; their
clean images are used for scoring and never for training.  Fine-tuning is
the Train widget's / ``napari-nlcl train derain --rainy DIR --from default``
NLCL mode with no clean images given, so the discriminator's real set is
the small set of scikit-image photos bundled with scikit-image (and the
synthetic-rain L1 term runs on those too).

    python benchmarks/bench_derain_finetune.py --steps 200 --every 50

Prints Y-PSNR / SSIM (luma) on the 20 pairs before and every ``--every`` steps.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main(argv=None) -> int:
    from bench_derain import evaluate, validation_set

    from napari_nlcl.training import TrainConfig, Trainer
    from napari_nlcl.training.data import RandomCrops
    from napari_nlcl.training.derain import DerainRecipe

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--start", default=None, help="model file (default: the shipped default)")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--every", type=int, default=50)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--lr", type=float, default=None, help="default: the recipe's fine-tuning rate (1e-5)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("-S", "--set", action="append", default=[], metavar="KEY=VALUE",
                    help="recipe setting, e.g. -S sup_weight=0")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from napari_nlcl.cli.args import parse_option as _parse_option

    settings = dict(_parse_option(s) for s in args.set)
    pairs = validation_set()
    rainy = [r for _, _, r in pairs]
    start = args.start or DerainRecipe.default_weights
    crops = RandomCrops({"rainy": rainy}, crop=args.crop, batch_size=args.batch_size, seed=0)
    lr = DerainRecipe.proposed_lr(True, 5e-5) if args.lr is None else args.lr
    config = TrainConfig(steps=args.steps, batch_size=args.batch_size, crop=args.crop, lr=lr, seed=0,
                         device="cpu")
    trainer = Trainer.from_model(start, crops, config, recipe_config={"mode": "nlcl", **settings})
    print(f"fine-tuning {start} on the 20 rainy inputs (no ground truth), batch {args.batch_size}, "
          f"crop {args.crop}, lr {lr}, settings {settings}\n")
    print("| steps | minutes | Y-PSNR (dB) | SSIM (Y) |")
    print("|---|---|---|---|")
    p, s = evaluate(trainer.model.eval(), pairs)
    print(f"| 0 | 0 | {p:.2f} | {s:.3f} |", flush=True)
    spent = 0.0
    t = time.perf_counter()
    for ev in trainer.fit_iter():
        if ev.kind == "step" and (ev.step % args.every == 0 or ev.step == args.steps):
            spent += time.perf_counter() - t
            p, s = evaluate(trainer.model.eval(), pairs)
            trainer.model.train()
            print(f"| {ev.step} | {spent / 60:.1f} | {p:.2f} | {s:.3f} |", flush=True)
            t = time.perf_counter()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
