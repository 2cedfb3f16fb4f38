"""True score of model files on a task's validation set (the benchmark's clean images).

    python benchmarks/score_model.py derain runs/exact/derain.pt [--last]
    python benchmarks/score_model.py dehaze runs/exact/dehaze.pt

``--last`` also scores the last step's weights of a training checkpoint (its
file gives the best-scoring step by default).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main(argv=None) -> int:
    from napari_nlcl.modelfile import kept_step, read_checkpoint
    from napari_nlcl.training import load_recipe

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("task", choices=["derain", "dehaze"])
    ap.add_argument("models", nargs="+", help="model files, or 'default'")
    ap.add_argument("--last", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--pairs", type=Path, default=None,
                    help="a folder of rain/inputN.png and norain/norainN.png (derain; default: synthetic_val_sirr) "
                         "or of hazy/N.png and clear/N.png (dehaze; default: bench_dehaze.py's)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.task == "derain":
        from bench_derain import evaluate, validation_set
    else:
        from bench_dehaze import evaluate, validation_set
    if args.pairs is not None:
        pairs = pair_folder(args.pairs)
    else:
        pairs = validation_set()
    for path in args.models:
        if path == "default":
            print(json.dumps({"model": "default", "psnr": round(evaluate("default", pairs)[0], 3)}))
            continue
        kept = kept_step(read_checkpoint(path))
        for which in (["best", "last"] if args.last else ["best"]):
            net = load_recipe(path, which=which)[0].inference_model().eval()
            p, s = evaluate(net, pairs)
            print(json.dumps({"model": path, "weights": which, "kept": kept if which == "best" else None,
                              "psnr": round(p, 3), "ssim": round(s, 4)}), flush=True)
    return 0


def pair_folder(folder: Path):
    """[(name, clean, degraded)] of a folder of ``rain/inputN.png`` and ``norain/norainN.png``
    (``make_light_rain.py``) or of ``hazy/N.png`` and ``clear/N.png`` (``make_other_haze.py``)."""
    import numpy as np

    from napari_nlcl.io import read_file

    def load(p):
        return np.asarray(read_file(p))[..., :3].astype(np.float32) / 255

    if (folder / "hazy").is_dir():
        n = len(list((folder / "hazy").glob("*.png")))
        return [(f"{i}", load(folder / "clear" / f"{i}.png"), load(folder / "hazy" / f"{i}.png"))
                for i in range(1, n + 1)]
    n = len(list((folder / "rain").glob("input*.png")))
    return [(f"input{i}", load(folder / "norain" / f"norain{i}.png"), load(folder / "rain" / f"input{i}.png"))
            for i in range(1, n + 1)]


if __name__ == "__main__":
    raise SystemExit(main())
