"""Unsupervised per-dataset fine-tuning of the default dehazer, measured on held-out synthetic haze.

The 24 hazy validation images of ``bench_dehaze.py`` play the user's data:
the model is fine-tuned on the hazy images alone (``mode="unsupervised"``:
teacher anchor + dark-channel energy + contrastive regularisation with the
hazy inputs as negatives) and then scored against the clear images it never
saw.

    python benchmarks/bench_dehaze_finetune.py --steps 300
    python benchmarks/bench_dehaze_finetune.py --steps 300 -S dark_weight=0.1 -S cr_weight=0
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_dehaze import evaluate, validation_set  # noqa: E402


def main(argv=None) -> int:
    from napari_nlcl.cli.args import parse_option as _parse_option
    from napari_nlcl.nets.aecr import DEFAULT_WEIGHTS
    from napari_nlcl.training import TrainConfig, Trainer
    from napari_nlcl.training.data import RandomCrops

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--start", default=str(DEFAULT_WEIGHTS))
    ap.add_argument("-S", "--set", action="append", type=_parse_option, default=[])
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    pairs = validation_set()
    hazy = [(h * 255).round().astype(np.uint8) for _, _, h in pairs]  # what a user would load
    crops = RandomCrops({"hazy": hazy}, crop=args.crop, batch_size=args.batch_size, seed=0)
    config = TrainConfig(steps=args.steps, batch_size=args.batch_size, crop=args.crop, lr=args.lr)
    settings = {"mode": "unsupervised", **dict(args.set)}
    trainer = Trainer.from_model(args.start, crops, config, recipe_config=settings)
    print(f"settings: {settings}, lr {args.lr}, batch {args.batch_size}, crop {args.crop}")
    model = trainer.recipe.inference_model()
    p0, s0 = evaluate(model.eval(), pairs)
    print("| steps | minutes | PSNR (dB) | SSIM |\n|---|---|---|---|")
    print(f"| 0 | 0 | {p0:.2f} | {s0:.3f} |", flush=True)
    started = time.perf_counter()
    trained = 0.0
    for ev in trainer.fit_iter():
        if ev.kind == "step" and (ev.step % args.eval_every == 0 or ev.step == ev.total):
            trained = time.perf_counter() - started
            p, s = evaluate(model.eval(), pairs)
            model.train()
            print(f"| {ev.step} | {trained / 60:.1f} | {p:.2f} ({p - p0:+.2f}) | {s:.3f} |", flush=True)
            started = time.perf_counter() - trained  # evaluation time is not training time
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
