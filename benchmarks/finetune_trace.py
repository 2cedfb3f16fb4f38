"""Trace a fine-tuning run as the CLI runs it: every N steps keep the model, its losses and its true score.

The run is built exactly as ``napari-nlcl train ...`` builds it (same defaults);
the clean images are used for scoring only.  Each checkpoint's weights go to
``OUT/step_NNNNN.pt`` (what a model file at that step would give), and one JSON
line per checkpoint to ``OUT/trace.jsonl`` (step, wall-clock, mean losses since
the previous checkpoint, true PSNR/SSIM on the validation set).  The monitor
study (``benchmarks/monitor_study.py``) reads these.

    # derain: the 20 rainy inputs of synthetic_val_sirr are the user's data
    python benchmarks/finetune_trace.py derain --every 250 --out runs/trace_derain -- \\
        --from default --steps 3000
    # derain, your own pairs (e.g. benchmarks/make_light_rain.py) as the user's data
    python benchmarks/finetune_trace.py derain --pairs runs/data/light_rain --every 250 \\
        --out runs/trace_light -- --from default --steps 3000
    # dehaze: the 24 hazy validation images of bench_dehaze.py (written once as PNG)
    python benchmarks/finetune_trace.py dehaze --every 250 --out runs/trace_dehaze -- \\
        --from default --steps 3000
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def task_data(task: str, scratch: Path, folder: Path | None = None):
    """(validation pairs, evaluate function, CLI data flags) of one task; ``folder``: pairs of
    ``rain/inputN.png`` and ``norain/norainN.png`` (derain) or ``hazy/N.png`` and ``clear/N.png``
    (dehaze) instead of the task's validation set (``score_model.pair_folder``)."""
    if task == "derain":
        from bench_derain import VAL_DIR, evaluate, validation_set

        if folder is not None:
            from score_model import pair_folder

            return pair_folder(folder), evaluate, ["--rainy", str(folder / "rain")]
        return validation_set(), evaluate, ["--rainy", str(VAL_DIR / "rain")]
    from bench_dehaze import evaluate, validation_set

    from napari_nlcl.io import write_image

    if folder is not None:
        from score_model import pair_folder

        return pair_folder(folder), evaluate, ["--hazy", str(folder / "hazy")]

    pairs = validation_set()
    folder = scratch / "dehaze_val_hazy"
    if not folder.is_dir():
        folder.mkdir(parents=True)
        for name, _, hazy in pairs:
            write_image(folder / (Path(name).stem + ".png"), (hazy * 255).round().astype(np.uint8))
    return pairs, evaluate, ["--hazy", str(folder)]


def main(argv=None) -> int:
    from napari_nlcl import cli
    from napari_nlcl.training import export_model

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("task", choices=["derain", "dehaze"])
    ap.add_argument("--every", type=int, default=250)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--pairs", type=Path, default=None,
                    help="the user's frames and their truth: rain/ + norain/ (derain) or hazy/ + clear/ (dehaze)")
    argv = list(sys.argv[1:] if argv is None else argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    args = ap.parse_args(argv[:cut])
    args.train_args = argv[cut + 1:]  # after --: the arguments of `napari-nlcl train TASK`
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    pairs, evaluate, data_flags = task_data(args.task, args.out.parent / "data", args.pairs)
    ckpt = args.out / "run.pt"
    # the user's frames of this run, for monitor_study.py: {"rainy": folder} or {"hazy": folder}
    (args.out / "data.json").write_text(json.dumps({data_flags[0].lstrip("-"): data_flags[1]}))
    train_args = cli.build_parser().parse_args(
        ["train", args.task, *data_flags, "-o", str(ckpt), "--checkpoint-every", "0", *args.train_args])
    trainer = cli.train.build_trainer(train_args)
    log = (args.out / "trace.jsonl").open("a")

    def record(step: int, minutes: float, losses: dict) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            trainer.save(Path(tmp) / "state.pt")
            # this step's weights (their average, with --ema), not the best kept so far
            export_model(Path(tmp) / "state.pt", args.out / f"step_{step:05d}.pt", which="last")
        p, s = evaluate(trainer.last_model().eval(), pairs)
        trainer.recipe.train(True)
        row = {"step": step, "minutes": round(minutes, 2), "psnr": round(p, 4), "ssim": round(s, 4),
               "losses": {k: round(float(np.mean(v)), 5) for k, v in losses.items()}}
        log.write(json.dumps(row) + "\n")
        log.flush()
        print(json.dumps(row), flush=True)

    print(f"{args.task}: {' '.join(args.train_args)}; lr {trainer.config.lr}, schedule "
          f"{trainer.config.schedule}, batch {trainer.config.batch_size}", flush=True)
    record(0, 0.0, {})
    losses: dict[str, list[float]] = defaultdict(list)
    spent, t = 0.0, time.perf_counter()
    for ev in trainer.fit_iter():
        if ev.kind == "step":
            for k, v in ev.losses.items():
                losses[k].append(v)
        if ev.kind == "step" and (ev.step % args.every == 0 or ev.step == ev.total):
            spent += time.perf_counter() - t
            record(ev.step, spent / 60, losses)
            losses.clear()
            t = time.perf_counter()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
