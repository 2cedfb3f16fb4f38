"""What a drifting derain fine-tune does to the output: brightness bias, rain left, per-image PSNR.

Reads the checkpoints of a run traced by ``benchmarks/finetune_trace.py`` and
scores chosen steps on ``synthetic_val_sirr`` (clean images used for scoring
only):

* ``bias``: mean of output - clean (x 255): negative = the output is darker;
* ``PSNR if unbiased``: Y-PSNR after removing each image's mean colour error
  (what is left is structure: rain left behind or scene detail removed);
* ``rain left``: the share of the true rain layer still in the output
  (regression of the error on the true rain; 0 = all removed);
* per-image Y-PSNR (images 14-20 carry little rain).

    python benchmarks/finetune_drift.py runs/trace_derain --steps 0 1000 3000
    python benchmarks/finetune_drift.py runs/trace_light_default --pairs runs/data/light_rain --steps 0 250 3000
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main(argv=None) -> int:
    from bench_derain import validation_set

    import napari_nlcl
    from napari_nlcl.metrics import y_psnr
    from napari_nlcl.training import load_recipe

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("trace", type=Path)
    ap.add_argument("--steps", type=int, nargs="+", default=[0, 1000, 3000])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--pairs", type=Path, default=None,
                    help="a folder of rain/inputN.png and norain/norainN.png (default: synthetic_val_sirr)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.pairs is not None:
        from score_model import pair_folder

        pairs = pair_folder(args.pairs)
    else:
        pairs = validation_set()
    print("| step | Y-PSNR | bias (/255) | Y-PSNR if unbiased | rain left | per image |\n|---|---|---|---|---|---|")
    for step in args.steps:
        net = load_recipe(args.trace / f"step_{step:05d}.pt")[0].inference_model().eval()
        ps, bias, unbiased, left = [], [], [], []
        for _, clean, rainy in pairs:
            out = np.clip(napari_nlcl.derain(rainy, model=net, device="cpu"), 0, 1)
            err = out - clean
            ps.append(y_psnr(out, clean))
            bias.append(err.mean() * 255)
            unbiased.append(y_psnr(np.clip(out - err.mean((0, 1)), 0, 1), clean))
            rain = (rainy - clean).ravel()
            left.append(float(err.ravel() @ rain / (rain @ rain)))
        print(f"| {step} | {np.mean(ps):.2f} | {np.mean(bias):+.1f} | {np.mean(unbiased):.2f} | "
              f"{np.mean(left):.2f} | {' '.join(f'{p:.1f}' for p in ps)} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
