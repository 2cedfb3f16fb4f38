"""Does unpaired translation learn the mapping?  A benchmark with a hidden ground truth.

Domain A: the even-numbered BSDS500 photos of ``../shared/data/clean/bsds``.
Domain B: the odd-numbered ones passed through :func:`napari_nlcl.synth.film_look`
(a colour matrix, an S-shaped tone curve with lifted blacks and an unsharp
mask), which the model is never told.  A and B hold different photos, so
nothing is paired.  After training, the 24 Kodak images (never used in
training) are translated and compared with ``film_look`` of themselves:
PSNR and SSIM on RGB.  "identity" is the untranslated input.

    python benchmarks/bench_translate.py --mode cut --steps 1500 --eval-at 250,500,1000,1500
    python benchmarks/bench_translate.py --mode fastcut --steps 1500 --eval-at 250,500,1000,1500
    python benchmarks/bench_translate.py --mode cut --net '{"residual": false}'   # CUT's tanh output
    python benchmarks/bench_translate.py --speed          # s/iteration and inference MP/s

The evaluations at intermediate budgets are snapshots of one run (the
learning rate decays linearly over the second half of ``--steps``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(Path(__file__).resolve().parent))


def _read(path: Path) -> np.ndarray:
    from napari_nlcl.io import read_image

    return np.asarray(read_image(path))


def domains() -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(A: photos, B: other photos in the film look), uint8 / float32 RGB."""
    from napari_nlcl.io import list_images
    from napari_nlcl.synth import film_look

    files = list_images(DATA / "clean" / "bsds")
    if not files:
        raise SystemExit(f"no photos in {DATA / 'clean' / 'bsds'}")
    a = [_read(f) for f in files[0::2]]
    b = [film_look(_read(f)) for f in files[1::2]]
    return a, b


def test_set() -> list[np.ndarray]:
    from napari_nlcl.io import list_images

    return [_read(f) for f in list_images(DATA / "clean" / "kodak")]


def score(model, images: list[np.ndarray]) -> tuple[float, float]:
    """Mean PSNR / SSIM of model(a) (or a itself for ``None``) against film_look(a)."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    from napari_nlcl.inference import predict
    from napari_nlcl.synth import film_look, to_float01

    ps, ss = [], []
    for a in images:
        want = film_look(a)
        got = to_float01(a) if model is None else to_float01(predict(a, model, device="cpu"))
        ps.append(peak_signal_noise_ratio(want, got, data_range=1.0))
        ss.append(structural_similarity(want, got, data_range=1.0, channel_axis=-1))
    return float(np.mean(ps)), float(np.mean(ss))


def train(args) -> None:
    from napari_nlcl.cli.args import parse_option as _parse_option
    from napari_nlcl.training import TrainConfig, Trainer, recipe_class
    from napari_nlcl.training.data import RandomCrops

    settings = {"mode": args.mode, "preset": args.preset, **dict(_parse_option(s) for s in args.set)}
    if args.net:
        settings["net"] = json.loads(args.net)
    a, b = domains()
    tests = test_set()
    cls = recipe_class("translate")
    crops = RandomCrops({"source": a, "target": b}, crop=args.crop, batch_size=args.batch_size, seed=args.seed,
                        **cls.data_options(settings))
    out = Path(args.output) if args.output else None
    cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, crop=args.crop, lr=2e-4, seed=args.seed,
                      schedule="linear", decay_start=0.5, device="cpu",
                      checkpoint_every=250 if out is not None else 0, ema=args.ema)
    if args.resume:
        if out is None or not out.exists():
            raise SystemExit("--resume needs the -o checkpoint of an earlier run")
        trainer = Trainer.resume(out, crops, steps=args.steps)
    else:
        trainer = Trainer.from_recipe_name("translate", crops, cfg, recipe_config=settings, checkpoint=out)
    budgets = sorted({int(s) for s in args.eval_at.split(",") if s} | {args.steps})
    print(f"# translate {settings}, crop {args.crop}, batch {args.batch_size}, {len(a)} A / {len(b)} B photos, "
          f"{len(tests)} Kodak test images", flush=True)
    p0, s0 = score(None, tests)
    rows = [{"steps": 0, "minutes": 0.0, "psnr": p0, "ssim": s0, "what": "identity"}]
    print(json.dumps(rows[0]), flush=True)
    started = time.perf_counter()
    train_s = 0.0
    t0 = time.perf_counter()
    for ev in trainer.fit_iter():
        if ev.kind == "step" and ev.step in budgets:
            train_s += time.perf_counter() - t0
            p, s = score(trainer.model.eval(), tests)
            trainer.model.train()
            row = {"steps": ev.step, "minutes": round(train_s / 60, 2), "psnr": p, "ssim": s,
                   "what": args.mode, **{k: round(v, 4) for k, v in ev.losses.items()}}
            rows.append(row)
            print(json.dumps(row), flush=True)
            t0 = time.perf_counter()
    print(f"# wall {(time.perf_counter() - started) / 60:.1f} min", flush=True)
    print("\n| steps | train minutes | PSNR (dB) | SSIM |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['steps']} | {r['minutes']:.1f} | {r['psnr']:.2f} | {r['ssim']:.3f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"settings": settings, "crop": args.crop,
                                               "batch_size": args.batch_size, "rows": rows}, indent=1))


def best_time(fn, repeat: int) -> float:
    """Best wall time of ``repeat`` calls of ``fn`` after one warm-up call."""
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def speed(args) -> None:
    from napari_nlcl.inference import predict
    from napari_nlcl.training import build_recipe

    print("| preset | parameters | GFLOP/MP | s / training iteration, CUT (256 px, batch 1) | "
          "same, FastCUT | 1024x1024 RGB inference (s) | MP/s |")
    print("|---|---|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    image = (rng.random((1024, 1024, 3)) * 255).astype(np.uint8)
    batch = {"source": torch.rand(1, 3, 256, 256), "target": torch.rand(1, 3, 256, 256)}
    for name in ("light", "full"):
        repeat = 1 if name == "full" else args.repeat
        per_mode = []
        for mode in ("cut", "fastcut"):
            recipe = build_recipe("translate", {"mode": mode, "preset": name})
            per_mode.append(best_time(lambda r=recipe: r.training_step(batch, 0), repeat))
        g = recipe.G.eval()
        n = sum(p.numel() for p in g.parameters())
        t = best_time(lambda g=g: predict(image, g, device="cpu"), repeat)
        print(f"| {name} | {n / 1e6:.2f} M | {g.gflop_per_mp():.0f} | {per_mode[0]:.2f} | {per_mode[1]:.2f} | "
              f"{t:.2f} | {1.048576 / t:.2f} |", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", default="cut", choices=["cut", "fastcut", "single"])
    ap.add_argument("--preset", default="light", choices=["light", "full"])
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--eval-at", default="250,500,1000")
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("-S", "--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--net", help='generator overrides as JSON, e.g. \'{"residual": false}\'')
    ap.add_argument("-o", "--output", help="checkpoint file to keep (.pt)")
    ap.add_argument("--json", help="write the rows to this file")
    ap.add_argument("--ema", type=float, default=0.0, metavar="DECAY",
                    help="score a moving average of the weights (e.g. 0.999) instead of the last ones")
    ap.add_argument("--resume", action="store_true", help="continue the run saved in -o (checkpoints every 250 steps)")
    ap.add_argument("--speed", action="store_true", help="time training iterations and inference instead")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if not (DATA / "clean").is_dir():
        print(f"needs the development data in {DATA}", file=sys.stderr)
        return 1
    speed(args) if args.speed else train(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
