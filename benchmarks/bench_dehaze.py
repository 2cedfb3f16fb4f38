"""Dehazing benchmark: quality on the held-out synthetic set, speed, size and cost.

Validation set (fixed, documented): the 24 ``../shared/data/clean/kodak``
photos (never used for training), each hazed once with the project's
generator: ``synth.random_haze_params(1000 + i)`` and
``synth.random_depth(shape, rng=1000 + i)``.

    python benchmarks/bench_dehaze.py                      # input, DCP, default model
    python benchmarks/bench_dehaze.py --model runs/x.pt    # add any model file (repeatable)
    python benchmarks/bench_dehaze.py --speed              # 1024x1024 timings, params, GFLOP/MP

Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

VAL_DIR = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "clean" / "kodak"


def validation_set(folder: Path = VAL_DIR, limit: int | None = None):
    """[(name, clear, hazy)] as float32 RGB in [0, 1]."""
    from napari_nlcl import synth
    from napari_nlcl.io import _imread, list_images

    files = list_images(folder)[:limit]
    out = []
    for i, f in enumerate(files):
        clear = np.asarray(_imread(f))[..., :3].astype(np.float32) / 255
        params = synth.random_haze_params(1000 + i)
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
        out = hazy if method is None else napari_nlcl.dehaze(hazy, method=method, device="cpu", **kw)
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
    from napari_nlcl.methods.aecr import AECRNet, count_parameters, preset

    rng = np.random.default_rng(0)
    print("| model | parameters | GFLOP / MP | 1024x1024 RGB (s) | MP/s |")
    print("|---|---|---|---|---|")
    rows = [("AECR-Net fast (default)", "default", AECRNet(preset("fast")), 1024, 3),
            ("AECR-Net paper preset (untrained weights)", AECRNet(preset("paper")).eval(), None, 512, 1),
            ("Dark Channel Prior", "dcp", None, 1024, 3)]
    for label, method, arch, size, repeats in rows:
        img = rng.random((size, size, 3)).astype(np.float32)
        net = arch if arch is not None else method if isinstance(method, torch.nn.Module) else None
        napari_nlcl.dehaze(img[:128, :128], method=method, device="cpu")  # warm up
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            napari_nlcl.dehaze(img, method=method, device="cpu")
            times.append(time.perf_counter() - t)
        rate = size * size / 1e6 / min(times)
        params = f"{count_parameters(net) / 1e6:.2f} M" if net is not None else "-"
        gflop = f"{net.flops_per_pixel() / 1e3:.0f}" if net is not None else "-"
        secs = f"{1.048576 / rate:.2f}" + ("" if size == 1024 else " (from 512x512)")
        print(f"| {label} | {params} | {gflop} | {secs} | {rate:.2f} |", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", default=[], help="extra model file(s) to score")
    ap.add_argument("--no-default", action="store_true", help="skip the shipped default model")
    ap.add_argument("--limit", type=int, default=None, help="use only the first N validation images")
    ap.add_argument("--speed", action="store_true", help="print the speed table instead")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.speed:
        speed_table()
        return 0
    pairs = validation_set(limit=args.limit)
    print(f"{len(pairs)} validation images (kodak, synthetic haze)\n")
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
