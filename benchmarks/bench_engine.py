"""Engine and Dark Channel Prior benchmarks.

    python benchmarks/bench_engine.py            # all figures (about 2-4 minutes on 2 CPU cores)
    python benchmarks/bench_engine.py --quick    # smaller, for a smoke test

Prints megapixels per second on a 2048x2048 RGB image (DCP and an identity
model, through the tiled engine) and the peak resident memory of processing
a lazily generated 1024x1024 RGB stack of 20 and of 200 frames plane by plane
into a zarr file; each stack runs in a fresh process so the peaks are not
mixed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _identity():
    from torch import nn

    from napari_nlcl.model import ModelInfo

    class Identity(nn.Module):
        info = ModelInfo(task="identity", name="identity", in_channels=3)

        def forward(self, x):
            return x

    return Identity()


def throughput(size: int, repeats: int, tile: int) -> dict:
    import torch

    from napari_nlcl import load_model, predict

    rng = np.random.default_rng(0)
    image = (rng.random((size, size, 3)) * 255).astype(np.uint8)
    results = {}
    for name, model in (("identity", _identity()), ("dcp", load_model("dcp"))):
        predict(image[:256, :256], model, device="cpu")  # warm-up
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            predict(image, model, tile=tile, device="cpu")
            times.append(time.perf_counter() - t0)
        best = min(times)
        results[name] = {"seconds": round(best, 3), "MP/s": round(size * size / 1e6 / best, 2)}
    results["torch_threads"] = torch.get_num_threads()
    return results


def stack_memory(frames: int, size: int) -> dict:
    """Run in a child process: peak RSS while processing a lazy stack to zarr."""
    import dask
    import dask.array as da

    from napari_nlcl import predict
    from napari_nlcl.io import write_image

    def frame(i):
        return np.random.default_rng(i).integers(0, 255, (size, size, 3), dtype=np.uint8)

    stack = da.stack(
        [da.from_delayed(dask.delayed(frame)(i), (size, size, 3), np.uint8) for i in range(frames)]
    )
    import threading

    import psutil

    proc = psutil.Process()
    # warm up (imports, first allocations) on one plane so the baseline is fair
    predict(stack[:1], _identity(), device="cpu").compute()
    base = proc.memory_info().rss
    peak = [base]
    running = True

    def sample() -> None:
        while running:
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.005)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        lazy = predict(stack, _identity(), device="cpu")
        write_image(Path(tmp) / "out.zarr", lazy)
    seconds = time.perf_counter() - t0
    running = False
    thread.join()
    return {
        "frames": frames, "stack_MB": round(stack.nbytes / 1e6),
        "rss_before_MB": round(base / 2**20), "peak_rss_MB": round(peak[0] / 2**20),
        "growth_MB": round((peak[0] - base) / 2**20), "seconds": round(seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child-stack", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=1024, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_stack:
        print(json.dumps(stack_memory(args.child_stack, args.size)))
        return
    size, repeats, frames, plane = (512, 1, (4, 8), 256) if args.quick else (2048, 3, (20, 200), 1024)
    for tile in (512, 1024, size):
        print(f"throughput on a {size}x{size} RGB uint8 image, tile {tile}, CPU:")
        for name, r in throughput(size, repeats, tile).items():
            print(f"  {name:10s} {r}")
    print(f"peak memory, lazy {plane}x{plane} RGB stack -> zarr, identity model:")
    for n in frames:
        out = subprocess.run(
            [sys.executable, __file__, "--child-stack", str(n), "--size", str(plane)],
            capture_output=True, text=True, check=True,
        )
        print("  ", out.stdout.strip())


if __name__ == "__main__":
    main()
