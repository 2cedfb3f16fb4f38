"""The training scripts' shared loop: run a Trainer, print mean losses as JSON lines."""

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
