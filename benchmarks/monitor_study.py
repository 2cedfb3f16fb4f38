"""Does the quality monitor follow the true PSNR?  Scored over the checkpoints of traced runs.

Reads the checkpoints ``step_NNNNN.pt`` and the true scores ``trace.jsonl``
written by ``benchmarks/finetune_trace.py``, builds the monitor exactly as a
training run does (from the starting model, ``step_00000.pt``, and the
user's frames only), scores every checkpoint with it and prints the Spearman
rank correlation between monitor and true PSNR, and whether the checkpoint
the monitor picks is within 0.2 dB of the truly best one.

    python benchmarks/monitor_study.py runs/trace_derain
    python benchmarks/monitor_study.py runs/trace_dehaze
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def study(trace: Path, *, seed: int = 0, verbose: bool = True, pairs: int | None = None,
          gains: tuple | None = None, scenes: str | None = None, size: int = 160) -> dict:
    from scipy.stats import spearmanr

    from napari_nlcl.training import load_recipe
    from napari_nlcl.training.data import RandomCrops
    from napari_nlcl.training.monitor import kept_index

    rows = [json.loads(line) for line in (trace / "trace.jsonl").open()]
    steps = sorted({r["step"] for r in rows})
    truth = {r["step"]: r["psnr"] for r in rows}
    # the run's own settings (stored in its checkpoints) and the user's frames only
    recipe, _ = load_recipe(trace / f"step_{steps[0]:05d}.pt")
    # a fine-tuning run starts from this model (an exported step file does not say so itself)
    recipe.start_from({name: net.state_dict() for name, net in recipe.networks.items()})
    if (trace / "data.json").is_file():  # written by finetune_trace.py
        sources = json.loads((trace / "data.json").read_text())
    elif recipe.task == "derain":
        from bench_derain import VAL_DIR

        sources = {"rainy": str(VAL_DIR / "rain")}
    else:
        sources = {"hazy": str(trace.parent / "data" / "dehaze_val_hazy")}
    data = RandomCrops(sources, crop=64)
    if recipe.task == "derain" and (pairs or gains):  # a variant of the shipped monitor
        from napari_nlcl.training.monitor import derain_proxy_pairs

        monitor = derain_proxy_pairs(recipe.gen_b, data.sources["rainy"], seed=seed, pairs=pairs or 16,
                                     gains=gains or (1.0,))
    elif recipe.task == "dehaze" and scenes:  # a variant of the shipped monitor
        from napari_nlcl.training.monitor import dehaze_proxy_pairs

        monitor = dehaze_proxy_pairs(recipe.net, data.sources["hazy"], seed=seed, pairs=pairs or 16, scenes=scenes,
                                     size=size)
    else:
        monitor = recipe.build_monitor(data, seed=seed)
    scores = {}
    for step in steps:
        r, _ = load_recipe(trace / f"step_{step:05d}.pt")
        scores[step] = monitor.score(r.inference_model())
        if verbose:
            print(f"| {step} | {truth[step]:.2f} | {scores[step]:.3f} |", flush=True)
    m = np.array([scores[s] for s in steps])
    t = np.array([truth[s] for s in steps])
    rho = float(spearmanr(m, t).statistic)
    # the step a run keeps: the trainer's rule, the monitor's margin over the start included
    picked = steps[kept_index(list(m), getattr(monitor, "min_gain", 0.0))]
    best = steps[int(np.argmax(t))]
    return {"trace": str(trace), "checkpoints": len(steps), "spearman": round(rho, 3),
            "monitor": [round(float(v), 3) for v in m], "truth": [float(v) for v in t],
            "picked_step": picked, "picked_psnr": truth[picked], "best_step": best,
            "best_psnr": truth[best], "within_0.2dB": bool(truth[best] - truth[picked] <= 0.2),
            "start_psnr": truth[steps[0]]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("traces", nargs="+", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--pairs", type=int, default=None, help="derain: number of proxy pairs (variant)")
    ap.add_argument("--gains", type=float, nargs="+", default=None, help="derain: rain gains (variant)")
    ap.add_argument("--size", type=int, default=160, help="dehaze: crop size of the pairs (variant, with --scenes)")
    ap.add_argument("--scenes", choices=["photos", "own"], default=None,
                    help="dehaze: clean crops of bundled photos or of the user's frames as the start dehazes them (variant)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from scipy.stats import spearmanr

    results = []
    for trace in args.traces:
        print(f"{trace}\n| step | true PSNR (dB) | monitor (dB) |\n|---|---|---|")
        r = study(trace, seed=args.seed, pairs=args.pairs, gains=tuple(args.gains) if args.gains else None,
                  scenes=args.scenes, size=args.size)
        results.append(r)
        print(json.dumps({k: v for k, v in r.items() if k not in ("monitor", "truth")}))
    if len(results) > 1:  # runs from the same start on the same data share one monitor
        m = [v for r in results for v in r["monitor"]]
        t = [v for r in results for v in r["truth"]]
        picks = sum(r["within_0.2dB"] for r in results)
        print(json.dumps({"pooled_checkpoints": len(m), "pooled_spearman": round(float(spearmanr(m, t).statistic), 3),
                          "picks_within_0.2dB": f"{picks}/{len(results)}"}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
