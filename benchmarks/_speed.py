"""The speed table shared by the task benchmarks (Markdown, through the engine, best of N)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


def speed_table(run: Callable[[np.ndarray, Any], Any], rows: Sequence[tuple]) -> None:
    """Print one row per ``(label, method, net, size, repeats)``.

    ``run(image, method)`` processes one float RGB image. ``net`` (or None) gives the
    parameter count and GFLOP/MP (``flops_per_pixel``). A model timed on a ``size`` other
    than 1024 has its 1024x1024 time extrapolated from its MP/s.
    """
    rng = np.random.default_rng(0)
    print("| model | parameters | GFLOP / MP | 1024x1024 RGB (s) | MP/s |")
    print("|---|---|---|---|---|")
    for label, method, net, size, repeats in rows:
        img = rng.random((size, size, 3)).astype(np.float32)
        run(img[:128, :128], method)  # warm up
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            run(img, method)
            times.append(time.perf_counter() - t)
        rate = size * size / 1e6 / min(times)
        params = f"{sum(p.numel() for p in net.parameters()) / 1e6:.2f} M" if net is not None else "-"
        gflop = f"{net.flops_per_pixel() / 1e3:.0f}" if net is not None else "-"
        secs = f"{1.048576 / rate:.2f}" + ("" if size == 1024 else f" (from {size}x{size})")
        print(f"| {label} | {params} | {gflop} | {secs} | {rate:.2f} |", flush=True)


def memory_table(run: Callable[[np.ndarray], Any], sizes: Sequence[int] = (1024, 2048)) -> None:
    """Growth of peak resident memory (Linux ``ru_maxrss``) processing one float RGB image of
    each size in turn through ``run(image)``; each row is over the previous peak."""
    import resource

    print("| image | peak memory growth (MB) |")
    print("|---|---|")
    rng = np.random.default_rng(0)
    for size in sizes:
        img = rng.random((size, size, 3)).astype(np.float32)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        run(img)
        grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
        print(f"| {size}x{size} RGB float32 (over the previous peak) | {grown:.0f} |", flush=True)
