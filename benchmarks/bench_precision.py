"""The CPU fast path: bfloat16 autocast and ``channels_last`` against float32, per shipped model.

Quality: each task's validation set scored with ``precision="float32"`` and
``"bfloat16"`` (derain: ``synthetic_val_sirr``, Y-PSNR; dehaze: the Kodak haze set of
``bench_dehaze.py``, RGB PSNR; translate: the Kodak film-look set of
``bench_translate.py``, RGB PSNR).  The default (``precision="auto"``) may be bfloat16
only where the cost is at most 0.05 dB.

Speed: one 1024x1024 RGB image through the engine, the three arms interleaved in one run
(best of ``--repeat``): float32 in NCHW (the engine before the fast path), float32 with
``channels_last`` (``precision="float32"`` now) and bfloat16 with ``channels_last``.

    python benchmarks/bench_precision.py                 # both tables
    python benchmarks/bench_precision.py --speed-only
    python benchmarks/bench_precision.py --quality-only --limit 5
    python benchmarks/bench_precision.py --training      # steps/s of each recipe, float32 vs bfloat16
    python benchmarks/bench_precision.py --memory        # peak memory per precision, 2048x2048

Training: each recipe is built as ``napari-nlcl train ...`` builds it (its default crop
128 and batch 1 unless given, no monitor), once per precision; the two runs alternate in
chunks of steps so that they share the machine's load, and steps/s is the best chunk.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from unittest import mock

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

TASKS = [("derain", "default"), ("derain", "directional"), ("dehaze", "default"), ("dehaze", "dcp"),
         ("translate", "default")]
ARMS = [("float32, NCHW (before)", "float32", False), ("float32, channels_last", "float32", True),
        ("bfloat16, channels_last", "bfloat16", True)]


def _layout(channels_last: bool, where: str = "napari_nlcl.inference.apply.resolve_precision"):
    """Run the engine with (or without) channels_last whatever the precision decides."""
    import dataclasses

    from napari_nlcl.inference import precision

    real = precision.resolve

    def resolve(*a, **k):
        p = real(*a, **k)
        return dataclasses.replace(p, channels_last=channels_last and p.channels_last)

    return mock.patch(where, resolve)


def quality(limit: int | None) -> None:
    import bench_dehaze
    import bench_derain
    import bench_translate

    import napari_nlcl
    from napari_nlcl.synth import to_float01

    def derain_psnr(prec):
        pairs = bench_derain.validation_set(limit=limit)
        return np.mean([bench_derain.scores(napari_nlcl.derain(r, device="cpu", precision=prec), c)[0]
                        for _, c, r in pairs])

    def dehaze_psnr(prec):
        pairs = bench_dehaze.validation_set(limit=limit)
        return np.mean([bench_dehaze.scores(napari_nlcl.dehaze(h, device="cpu", precision=prec), c)[0]
                        for _, c, h in pairs])

    def translate_psnr(prec):
        from skimage.metrics import peak_signal_noise_ratio

        from napari_nlcl.synth import film_look
        images = bench_translate.test_set()[:limit]
        return np.mean([peak_signal_noise_ratio(film_look(a), to_float01(
            napari_nlcl.translate(a, device="cpu", precision=prec)), data_range=1.0) for a in images])

    print("| model | validation set | float32 (dB) | bfloat16 (dB) | cost (dB) | default |")
    print("|---|---|---|---|---|---|")
    for label, fn, info in [("derain default", derain_psnr, "synthetic_val_sirr, Y-PSNR"),
                            ("dehaze default", dehaze_psnr, "Kodak haze, PSNR"),
                            ("translate default", translate_psnr, "Kodak film look, PSNR")]:
        a, b = fn("float32"), fn("bfloat16")
        cost = a - b
        print(f"| {label} | {info} | {a:.3f} | {b:.3f} | {cost:+.3f} | "
              f"{'bfloat16' if cost <= 0.05 else 'float32'} |", flush=True)


def speed(repeat: int) -> None:
    import napari_nlcl

    img = np.random.default_rng(0).random((1024, 1024, 3)).astype(np.float32)
    fns = {"derain": napari_nlcl.derain, "dehaze": napari_nlcl.dehaze, "translate": napari_nlcl.translate}
    print("| model | " + " | ".join(f"{a[0]} (s/MP)" for a in ARMS) + " | speed-up |")
    print("|---|" + "---|" * (len(ARMS) + 1))
    for task, name in TASKS:
        model = napari_nlcl.load_model(name, task=task)
        best = [float("inf")] * len(ARMS)
        for _ in range(repeat):  # interleaved, so the arms share the machine's load
            for i, (_, prec, cl) in enumerate(ARMS):
                net = napari_nlcl.load_model(name, task=task) if cl != ARMS[0][2] else model
                with _layout(cl):
                    fns[task](img[:128, :128], net, device="cpu", precision=prec)  # warm up, layout set
                    t = time.perf_counter()
                    fns[task](img, net, device="cpu", precision=prec)
                    best[i] = min(best[i], (time.perf_counter() - t) / 1.048576)
        cells = " | ".join(f"{b:.3f}" for b in best)
        print(f"| {task} {name} | {cells} | {best[0] / min(best):.1f}x |", flush=True)


DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TRAIN_RUNS = [
    ("derain fine-tune (NLCL, --from default)",
     ["derain", "--rainy", str(DATA / "rain" / "synthetic_val_sirr" / "rain"), "--from", "default"]),
    ("derain synthetic, batch 8",
     ["derain", "--clean", str(DATA / "clean" / "bsds"), "--from", "default", "--batch-size", "8"]),
    ("dehaze fine-tune (--from default)", ["dehaze", "--hazy", str(DATA / "haze" / "real"), "--from", "default"]),
    ("translate CUT light, 256 px",
     ["translate", "--source", str(DATA / "translate" / "monet_etretat" / "trainA"),
      "--target", str(DATA / "translate" / "monet_etretat" / "trainB"), "--crop", "256"]),
]


def training(chunks: int, chunk: int) -> None:
    import tempfile

    from napari_nlcl import cli
    from napari_nlcl.cli.train import build_trainer

    print("| recipe | " + " | ".join(f"{a[0]} (steps/s)" for a in ARMS) + " | speed-up |")
    print("|---|" + "---|" * (len(ARMS) + 1))
    with tempfile.TemporaryDirectory() as tmp:
        for label, argv in TRAIN_RUNS:
            runs = []
            for i, (_, prec, cl) in enumerate(ARMS):
                args = cli.build_parser().parse_args(
                    ["train", *argv, "-o", str(Path(tmp) / f"{i}.pt"), "--checkpoint-every", "0",
                     "--monitor-every", "0", "--steps", "100000", "--precision", prec, "--overwrite"])
                with _layout(cl, "napari_nlcl.training.trainer.resolve_precision"):
                    runs.append(build_trainer(args).fit_iter())
            best = [0.0] * len(runs)

            def steps(gen, n):
                done = 0
                while done < n:
                    if next(gen).kind == "step":
                        done += 1

            for gen in runs:
                steps(gen, 2)  # warm up
            for _ in range(chunks):
                for i, gen in enumerate(runs):
                    t = time.perf_counter()
                    steps(gen, chunk)
                    best[i] = max(best[i], chunk / (time.perf_counter() - t))
            for gen in runs:
                gen.close()
            cells = " | ".join(f"{b:.2f}" for b in best)
            print(f"| {label} | {cells} | {max(best) / best[0]:.1f}x |", flush=True)


MEMORY_CODE = """
import resource, sys, numpy as np, torch, napari_nlcl
torch.set_num_threads({threads})
img = np.random.default_rng(0).random((2048, 2048, 3)).astype(np.float32)
fn = getattr(napari_nlcl, "{task}")
fn(img[:64, :64], device="cpu", precision="{prec}")
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
fn(img, device="cpu", precision="{prec}", tile=1024)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
"""


def memory(threads: int) -> None:
    """Peak resident memory growth of one 2048x2048 image (1024 px tiles), each run in a fresh
    process (``ru_maxrss`` only grows)."""
    import subprocess

    print("| model | " + " | ".join(f"{p} (MB)" for p in ("float32", "bfloat16")) + " |")
    print("|---|---|---|")
    for task in ("derain", "dehaze", "translate"):
        cells = []
        for prec in ("float32", "bfloat16"):
            code = MEMORY_CODE.format(threads=threads, task=task, prec=prec)
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
            cells.append(f"{float(out.stdout.strip().splitlines()[-1]):.0f}")
        print(f"| {task} default | " + " | ".join(cells) + " |", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--speed-only", action="store_true")
    ap.add_argument("--quality-only", action="store_true")
    ap.add_argument("--limit", type=int, default=None, help="first N images of each validation set")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--training", action="store_true", help="training steps/s instead")
    ap.add_argument("--memory", action="store_true", help="peak memory per precision instead")
    ap.add_argument("--chunks", type=int, default=3)
    ap.add_argument("--chunk", type=int, default=5, help="steps per timed chunk")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from napari_nlcl.inference.precision import cpu_has_fast_bf16

    print(f"CPU with native bfloat16: {cpu_has_fast_bf16()}; torch {torch.__version__}, "
          f"{args.threads} threads\n")
    if args.training:
        training(args.chunks, args.chunk)
        return 0
    if args.memory:
        memory(args.threads)
        return 0
    if not args.speed_only:
        quality(args.limit)
        print()
    if not args.quality_only:
        speed(args.repeat)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
