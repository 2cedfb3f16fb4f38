"""The training scripts' shared loops: run a Trainer, or fit one branch; print mean losses as JSON lines."""

from __future__ import annotations

import json
import time


def run_logged(trainer, every: int = 50) -> None:
    """Train to the end, printing the mean of every loss term over each ``every`` steps."""
    started = time.perf_counter()
    running: dict[str, float] = {}
    count = 0
    for ev in trainer.fit_iter():
        if ev.kind != "step":
            continue
        for k, v in ev.losses.items():
            running[k] = running.get(k, 0.0) + v
        count += 1
        if ev.step % every == 0 or ev.step == ev.total:
            mean = {k: round(v / count, 4) for k, v in running.items()}
            running.clear()
            count = 0
            print(json.dumps({"step": ev.step, "minutes": round((time.perf_counter() - started) / 60, 2),
                              "lr": f"{ev.lr:.2e}", **mean}), flush=True)
    print(f"done in {(time.perf_counter() - started) / 60:.1f} min -> {trainer.checkpoint}", flush=True)


def fit_branch(params, loss_at, steps: int, lr: float, *, stage: str, every: int, report) -> float:
    """Fit ``params`` with Adam and a cosine decay for ``steps``, minimising ``loss_at(step)``.

    Every ``every`` steps (and at the end) prints ``{"<stage>_step": step, "minutes": ...,
    **report(mean loss)}`` as a JSON line.  Returns the start time (``time.perf_counter()``).
    """
    import numpy as np
    import torch

    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    started, running = time.perf_counter(), []
    for step in range(1, steps + 1):
        loss = loss_at(step)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        running.append(loss.item())
        if step % every == 0 or step == steps:
            print(json.dumps({f"{stage}_step": step, "minutes": round((time.perf_counter() - started) / 60, 2),
                              **report(float(np.mean(running)))}), flush=True)
            running.clear()
    return started
