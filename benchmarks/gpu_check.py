"""Every GPU-specific path in one run (under 5 minutes on one GPU): a pass/fail table.

    python benchmarks/gpu_check.py            # on a machine with CUDA
    python benchmarks/gpu_check.py --quick    # smaller images and fewer steps

Checks: ``device="auto"`` picks CUDA; each shipped model on CUDA in float32 agrees with the
CPU; float16 and bfloat16 autocast on CUDA agree with float32 (PSNR of the difference); a
real out-of-memory error (the process's CUDA memory capped with
``torch.cuda.set_per_process_memory_fraction``) makes the engine retry with smaller tiles and
still give the right result; training steps of each recipe in float16 (with loss scaling)
and bfloat16 stay finite and change the weights; and the speed of each task (s/MP) per
precision.  Exits 1 if a check fails, 2 without a CUDA device.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ROWS: list[tuple[str, bool, str]] = []


def check(name: str, ok: bool, detail: str = "") -> None:
    ROWS.append((name, bool(ok), detail))
    print(f"{'PASS' if ok else 'FAIL'}  {name}  {detail}", flush=True)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = 255.0 if a.max() > 1.5 else 1.0
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(scale ** 2 / mse)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)

    import torch

    import napari_nlcl
    from napari_nlcl import cli
    from napari_nlcl.inference import select_device

    if not torch.cuda.is_available():
        print("no CUDA device here: nothing to check")
        return 2
    size = 512 if args.quick else 1024
    rng = np.random.default_rng(0)
    from skimage import data, transform

    photo = (transform.resize(data.astronaut(), (size, size)) * 255).astype(np.uint8)
    print(f"# {torch.cuda.get_device_name(0)}, torch {torch.__version__}, {size}x{size} images\n")

    check("device='auto' picks CUDA", select_device("auto").type == "cuda", str(select_device("auto")))

    tasks = {"derain": napari_nlcl.derain, "dehaze": napari_nlcl.dehaze, "translate": napari_nlcl.translate}
    speed: dict[str, dict[str, float]] = {}
    for task, fn in tasks.items():
        cpu = fn(photo, device="cpu", precision="float32")
        gpu = fn(photo, device="cuda", precision="float32")
        p = psnr(cpu, gpu)
        check(f"{task}: CUDA float32 equals the CPU", p > 45, f"PSNR of the difference {p:.1f} dB")
        for prec in ("float16", "bfloat16"):
            out = fn(photo, device="cuda", precision=prec)
            p = psnr(gpu, out)
            check(f"{task}: CUDA {prec} close to float32", p > 38, f"{p:.1f} dB")
        speed[task] = {}
        for prec in ("float32", "float16", "bfloat16"):
            img = rng.random((2048, 2048, 3)).astype(np.float32)
            fn(img[:256, :256], device="cuda", precision=prec)
            torch.cuda.synchronize()
            t = time.perf_counter()
            for _ in range(3):
                fn(img, device="cuda", precision=prec)
            torch.cuda.synchronize()
            speed[task][prec] = (time.perf_counter() - t) / 3 / 4.194304

    # a real allocation failure: cap this process's CUDA memory so that one 4096 px tile cannot fit
    big = rng.random((4096, 4096, 3)).astype(np.float32)
    want = napari_nlcl.derain(big[:1024, :1024], device="cuda", precision="float32")
    torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, 3e9 / total))
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            got = napari_nlcl.derain(big, device="cuda", precision="float32", tile=4096)
        retried = [w for w in caught if "retrying with" in str(w.message)]
        check("out of memory -> smaller tiles, same result", bool(retried) and psnr(want, got[:1024, :1024]) > 40,
              str(retried[0].message) if retried else "no retry warning (the tile fitted: raise the image size)")
    except MemoryError as exc:
        check("out of memory -> smaller tiles, same result", False, f"gave up: {exc}")
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        torch.cuda.empty_cache()

    steps = 5 if args.quick else 20
    runs = {
        "derain fine-tune": ["derain", "--rainy", str(DATA / "rain" / "synthetic_val_sirr" / "rain"), "--from", "default"],
        "dehaze fine-tune": ["dehaze", "--hazy", str(DATA / "haze" / "real"), "--from", "default"],
        "translate CUT": ["translate", "--source", str(DATA / "translate" / "monet_etretat" / "trainA"),
                          "--target", str(DATA / "translate" / "monet_etretat" / "trainB")],
    }
    steps_per_s: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, argv in runs.items():
            steps_per_s[label] = {}
            for prec in ("float32", "float16", "bfloat16"):
                a = cli.build_parser().parse_args(
                    ["train", *argv, "-o", str(Path(tmp) / f"{prec}.pt"), "--device", "cuda", "--steps", str(steps),
                     "--checkpoint-every", "0", "--monitor-every", "0", "--precision", prec, "--overwrite",
                     "--batch-size", "4"])
                try:
                    trainer = cli.train.build_trainer(a)
                    net = next(iter(trainer.recipe.networks.values()))
                    before = [p.detach().clone() for p in net.parameters()]
                    t = time.perf_counter()
                    losses = [e.losses for e in trainer.fit() if e.kind == "step"]
                    torch.cuda.synchronize()
                    steps_per_s[label][prec] = steps / (time.perf_counter() - t)
                    finite = all(np.isfinite(v) for row in losses for v in row.values())
                    moved = any(not torch.equal(b, p.detach()) for b, p in zip(before, net.parameters()))
                    check(f"{label}: {steps} CUDA steps in {prec}", finite and moved,
                          f"last losses {', '.join(f'{k} {v:.3g}' for k, v in list(losses[-1].items())[:3])}")
                except Exception as exc:  # noqa: BLE001 - reported in the table
                    check(f"{label}: {steps} CUDA steps in {prec}", False, f"{type(exc).__name__}: {exc}")

    print("\n| check | result | detail |\n|---|---|---|")
    for name, ok, detail in ROWS:
        print(f"| {name} | {'pass' if ok else '**FAIL**'} | {detail} |")
    print("\n| task | float32 (s/MP) | float16 | bfloat16 |\n|---|---|---|---|")
    for task, row in speed.items():
        print(f"| {task} default | " + " | ".join(f"{row[p]:.4f}" for p in ("float32", "float16", "bfloat16")) + " |")
    print("\n| recipe (batch 4) | float32 (steps/s) | float16 | bfloat16 |\n|---|---|---|---|")
    for label, row in steps_per_s.items():
        print(f"| {label} | " + " | ".join(f"{row.get(p, float('nan')):.1f}" for p in ("float32", "float16", "bfloat16")) + " |")
    return 0 if all(ok for _, ok, _ in ROWS) else 1


if __name__ == "__main__":
    sys.exit(main())
