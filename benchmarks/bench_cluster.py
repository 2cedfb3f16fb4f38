"""A stack to zarr on a dask.distributed cluster against one local process.

A lazily generated stack of ``--frames`` 1024x1024 RGB float32 frames (``dask.array.random``,
so the frames are made where they are computed and no pixels travel from this process) is
derained (the shipped default, ``precision="auto"``) and written to zarr plane by plane with
:func:`napari_nlcl.io.write_image`:

* local: no client, this process, torch on ``--threads`` threads;
* cluster: ``LocalCluster(n_workers=--workers, threads_per_worker=1, processes=True)``; each
  worker builds the model once from its name (``napari_nlcl.inference.cluster``); the time includes
  that, not the start of the cluster.

Local runs before and after the cluster run; the better local time is the reference.

    python benchmarks/bench_cluster.py                 # 40 frames, 2 workers x 1 thread vs 1 x 2
    python benchmarks/bench_cluster.py --frames 12
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def _stack(frames: int):
    import dask.array as da
    import numpy as np

    rng = da.random.default_rng(0)
    return rng.random((frames, 1024, 1024, 3), chunks=(1, 1024, 1024, 3), dtype=np.float32)


def _run(out: Path, frames: int, task: str) -> float:
    import napari_nlcl
    from napari_nlcl import io

    fn = getattr(napari_nlcl, task)
    t = time.perf_counter()
    io.write_image(out, fn(_stack(frames), device="cpu"))
    return time.perf_counter() - t


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the local run")
    ap.add_argument("--task", default="derain", choices=["derain", "dehaze"])
    args = ap.parse_args(argv)

    import torch
    from distributed import Client, LocalCluster

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        _run(tmp / "warm.zarr", 1, args.task)  # imports and the first model load
        local = [_run(tmp / "local1.zarr", args.frames, args.task)]
        with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                          dashboard_address=None) as lc, Client(lc):
            clustered = _run(tmp / "cluster.zarr", args.frames, args.task)
        local.append(_run(tmp / "local2.zarr", args.frames, args.task))
    best = min(local)
    print(f"| {args.task}, {args.frames} frames 1024x1024 to zarr | s | frames/s |")
    print("|---|---|---|")
    print(f"| one process, {args.threads} torch threads (best of {len(local)}) | {best:.1f} | "
          f"{args.frames / best:.2f} |")
    print(f"| LocalCluster, {args.workers} processes x 1 thread | {clustered:.1f} | "
          f"{args.frames / clustered:.2f} |")
    print(f"\ncluster throughput / local: {best / clustered:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
