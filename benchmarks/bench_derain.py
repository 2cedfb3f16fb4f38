"""Deraining benchmark: quality on the synthetic validation set, speed, size and cost.

Validation set: ``../shared/data/rain/synthetic_val_sirr`` (20 pairs
``rain/inputN.png`` <-> ``norain/norainN.png``, 481x321), never used for
training or model selection.  Y-PSNR and SSIM are computed on the luma
(ITU-R BT.601 Y, as in the deraining literature); the rainy inputs score
22.29 dB.

    python benchmarks/bench_derain.py                      # input, directional baseline, default model
    python benchmarks/bench_derain.py --model runs/x.pt    # add any model file (repeatable)
    python benchmarks/bench_derain.py --speed              # 1024x1024 timings, params, GFLOP/MP
    python benchmarks/bench_derain.py --memory             # peak memory growth, 1024 and 2048 px

Prints a Markdown table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import _speed
import numpy as np
import torch

VAL_DIR = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "rain" / "synthetic_val_sirr"


def validation_set(folder: Path = VAL_DIR, limit: int | None = None):
    """[(name, clean, rainy)] as float32 RGB in [0, 1], ordered by number."""
    from napari_nlcl.io import read_file

    pairs = []
    for i in range(1, 21)[:limit]:
        rainy = np.asarray(read_file(folder / "rain" / f"input{i}.png"))[..., :3].astype(np.float32) / 255
        clean = np.asarray(read_file(folder / "norain" / f"norain{i}.png"))[..., :3].astype(np.float32) / 255
        pairs.append((f"input{i}", clean, rainy))
    return pairs


def luma(x: np.ndarray) -> np.ndarray:
    return (np.asarray(x, np.float64)[..., :3] @ np.array([65.481, 128.553, 24.966]) + 16) / 255


def scores(pred: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    from skimage.metrics import structural_similarity

    from napari_nlcl.metrics import y_psnr

    pred = np.clip(pred, 0, 1)
    return y_psnr(pred, ref), structural_similarity(luma(ref), luma(pred), data_range=1.0)


def evaluate(method, pairs, **kw) -> tuple[float, float]:
    import napari_nlcl

    ps, ss = [], []
    for _, clean, rainy in pairs:
        out = rainy if method is None else napari_nlcl.derain(rainy, model=method, device="cpu", **kw)
        p, s = scores(out, clean)
        ps.append(p)
        ss.append(s)
    return float(np.mean(ps)), float(np.mean(ss))


def speed_table() -> None:
    """Seconds for a 1024x1024 RGB image through the engine (best of 3), parameters, GFLOP/MP.

    The released-code generator (16 residual blocks at full resolution) is
    timed once on 512x512 and its 1024x1024 time extrapolated from its MP/s.
    """
    import napari_nlcl
    from napari_nlcl.nets.derain import build

    paper = build("paper").eval()
    rows = [("NLCL U-Net fast (default)", "default", build("fast"), 1024, 3),
            ("NLCL released generator, 16 blocks (untrained weights)", paper, paper, 512, 1),
            ("directional baseline", "directional", None, 1024, 3)]
    _speed.speed_table(lambda img, m: napari_nlcl.derain(img, model=m, device="cpu"), rows)


def memory_table() -> None:
    """Growth of peak resident memory deraining one 1024x1024 and then one 2048x2048 RGB image
    with the default model (1024 px tiles); Linux ``ru_maxrss``."""
    import napari_nlcl

    _speed.memory_table(lambda img: napari_nlcl.derain(img, device="cpu"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", default=[], help="extra model file(s) to score")
    ap.add_argument("--no-default", action="store_true", help="skip the shipped default model")
    ap.add_argument("--no-baseline", action="store_true", help="skip the directional baseline")
    ap.add_argument("--limit", type=int, default=None, help="use only the first N validation pairs")
    ap.add_argument("--speed", action="store_true", help="print the speed table instead")
    ap.add_argument("--memory", action="store_true", help="print peak memory growth instead")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.speed:
        speed_table()
        return 0
    if args.memory:
        memory_table()
        return 0
    pairs = validation_set(limit=args.limit)
    print(f"{len(pairs)} validation pairs (synthetic_val_sirr)\n")
    print("| method | Y-PSNR (dB) | SSIM (Y) |")
    print("|---|---|---|")
    methods = [("rainy input", None)]
    if not args.no_baseline:
        methods.append(("directional baseline (no training)", "directional"))
    if not args.no_default:
        methods.append(("default model", "default"))
    methods += [(m, m) for m in args.model]
    for label, method in methods:
        p, s = evaluate(method, pairs)
        print(f"| {label} | {p:.2f} | {s:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
