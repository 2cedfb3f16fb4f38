"""Dehazing benchmark: quality on the held-out synthetic set, speed, size and cost.

Validation set (fixed, documented): the 24 ``../shared/data/clean/kodak``
photos (never used for training), each hazed once with the project's
generator: ``synth.random_haze_params(1000 + i)`` and
``synth.random_depth(shape, rng=1000 + i)``.

    python benchmarks/bench_dehaze.py                      # input, DCP, default model
    python benchmarks/bench_dehaze.py --model runs/x.pt    # add any model file (repeatable)
    python benchmarks/bench_dehaze.py --beta-scale 1.6     # the denser variant: every beta x 1.6
    python benchmarks/bench_dehaze.py --pairs DIR          # hazy/N.png + clear/N.png instead
    python benchmarks/bench_dehaze.py --speed              # 1024x1024 timings, params, GFLOP/MP
    python benchmarks/bench_dehaze.py --memory             # peak memory growth, 1024 and 2048 px

Prints a Markdown table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import _speed
import numpy as np
import torch

VAL_DIR = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "clean" / "kodak"


def validation_set(folder: Path = VAL_DIR, limit: int | None = None, beta_scale: float = 1.0):
    """[(name, clear, hazy)] as float32 RGB in [0, 1]; ``beta_scale`` > 1 makes the haze denser."""
    from napari_nlcl import synth
    from napari_nlcl.io import list_images, read_file

    files = list_images(folder)[:limit]
    out = []
    for i, f in enumerate(files):
        clear = np.asarray(read_file(f))[..., :3].astype(np.float32) / 255
        params = synth.random_haze_params(1000 + i)
        params["beta"] *= beta_scale
        depth = synth.random_depth(clear.shape, rng=1000 + i)
        hazy, _ = synth.add_haze(clear, **params, depth=depth)
        out.append((f.name, clear, hazy))
    return out


def scores(pred: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    pred = np.clip(pred, 0, 1)
    return (peak_signal_noise_ratio(ref, pred, data_range=1.0),
            structural_similarity(ref, pred, channel_axis=-1, data_range=1.0))


def evaluate(method, pairs, **kw) -> tuple[float, float]:
    import napari_nlcl

    ps, ss = [], []
    for _, clear, hazy in pairs:
        out = hazy if method is None else napari_nlcl.dehaze(hazy, model=method, device="cpu", **kw)
        p, s = scores(out, clear)
        ps.append(p)
        ss.append(s)
    return float(np.mean(ps)), float(np.mean(ss))


def speed_table() -> None:
    """Seconds for a 1024x1024 RGB image through the engine (best of 3), parameters, GFLOP/MP.

    The paper preset is timed on 512x512 (once) and its MP/s is reported; its
    1024x1024 time is that rate extrapolated.
    """
    import napari_nlcl
    from napari_nlcl.nets.aecr import AECRNet, preset

    paper = AECRNet(preset("paper")).eval()
    fast = AECRNet(preset("fast")).eval()
    rows = [("AECR-Net physics (default)", "default", AECRNet(preset("physics")), 1024, 3),
            ("AECR-Net fast, residual output (untrained weights)", fast, fast, 1024, 3),
            ("AECR-Net paper preset (untrained weights)", paper, paper, 512, 1),
            ("Dark Channel Prior", "dcp", None, 1024, 3)]
    _speed.speed_table(lambda img, m: napari_nlcl.dehaze(img, model=m, device="cpu"), rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", default=[], help="extra model file(s) to score")
    ap.add_argument("--no-default", action="store_true", help="skip the shipped default model")
    ap.add_argument("--limit", type=int, default=None, help="use only the first N validation images")
    ap.add_argument("--speed", action="store_true", help="print the speed table instead")
    ap.add_argument("--memory", action="store_true", help="print peak memory growth instead")
    ap.add_argument("--beta-scale", type=float, default=1.0,
                    help="multiply every image's beta (1.6: the denser variant)")
    ap.add_argument("--pairs", type=Path, default=None,
                    help="score on a folder of hazy/N.png and clear/N.png instead (make_other_haze.py)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.speed:
        speed_table()
        return 0
    if args.memory:
        import napari_nlcl

        _speed.memory_table(lambda img: napari_nlcl.dehaze(img, device="cpu"))
        return 0
    if args.pairs:
        from score_model import pair_folder

        pairs = pair_folder(args.pairs)
        print(f"{len(pairs)} pairs from {args.pairs}\n")
    else:
        pairs = validation_set(limit=args.limit, beta_scale=args.beta_scale)
        print(f"{len(pairs)} validation images (kodak, synthetic haze, beta x {args.beta_scale:g})\n")
    print("| method | PSNR (dB) | SSIM |")
    print("|---|---|---|")
    methods = [("hazy input", None), ("Dark Channel Prior", "dcp")]
    if not args.no_default:
        methods.append(("default model", "default"))
    methods += [(m, m) for m in args.model]
    for label, method in methods:
        p, s = evaluate(method, pairs)
        print(f"| {label} | {p:.2f} | {s:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
