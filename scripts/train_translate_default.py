"""Train the shipped example translator: photos -> the project's film look (CUT, light preset).

Domain A: the left halves of scikit-image's ``astronaut``, ``rocket``,
``coffee`` and ``chelsea`` photos; domain B: their right halves passed through
:func:`napari_nlcl.synth.film_look` (``napari_nlcl.samples.translation_domains``,
the "Translation pair" sample).  Everything is redistributable, so the
weights may ship in the package.

    python scripts/train_translate_default.py --steps 1500 -o runs/translate_default.pt
    python scripts/train_translate_default.py --export runs/translate_default.pt   # -> package weights

Logs one line every 50 steps; a checkpoint every 250 steps.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from _training_log import run_logged

from napari_nlcl.nets.translate import DEFAULT_WEIGHTS
from napari_nlcl.samples import translation_domains
from napari_nlcl.training import TrainConfig, Trainer, export_model
from napari_nlcl.training.data import RandomCrops


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-o", "--output", default="runs/translate_default.pt")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--crop", type=int, default=96)
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--mode", default="cut")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--resume", type=Path)
    ap.add_argument("--export", type=Path, help="copy the generator (and PatchNCE heads) of this checkpoint into the package")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.export:
        export_model(args.export, DEFAULT_WEIGHTS, networks=["G", "heads"])
        print(f"exported {args.export} -> {DEFAULT_WEIGHTS} ({DEFAULT_WEIGHTS.stat().st_size / 1e6:.2f} MB)")
        return 0
    a, b = translation_domains()
    crops = RandomCrops({"source": [a], "target": [b]}, crop=args.crop, batch_size=args.batch_size, seed=args.seed)
    if args.resume:
        trainer = Trainer.resume(args.resume, crops, steps=args.steps)
    else:
        out = Path(args.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        config = TrainConfig(steps=args.steps, batch_size=args.batch_size, crop=args.crop, lr=2e-4,
                             seed=args.seed, schedule="linear", decay_start=0.5, checkpoint_every=250)
        trainer = Trainer.from_recipe_name("translate", crops, config,
                                           recipe_config={"mode": args.mode, "preset": "light"},
                                           checkpoint=out, metadata={"command": " ".join(sys.argv)})
    run_logged(trainer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
