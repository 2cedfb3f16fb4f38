"""``napari-nlcl train``: a training run from the command line, set up by :func:`~napari_nlcl.training.plan.plan_run`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from napari_nlcl.cli.args import parse_option


def add_train_parser(sub: argparse._SubParsersAction) -> None:
    """The ``train`` subcommand."""
    t = sub.add_parser(
        "train", help="train or fine-tune a model with a registered recipe",
        description="Train RECIPE on image data (files, folders, multi-page TIFF, zarr; read lazily) "
        "and save a model file usable with -m/--method and in the napari widgets. "
        "Ctrl+C stops after the current step and saves it (a second Ctrl+C stops at once, keeping "
        "the last saved step); --resume continues it.  Fine-tuning scores the model every "
        "--monitor-every steps on pairs built from your data and the file gives the best-scoring "
        "step (--keep last: the last).",
    )
    t.add_argument("recipe", help="recipe name (see `napari-nlcl methods`)")
    t.add_argument("--data", action="append", default=[], metavar="[SOURCE=]PATH",
                   help="training data; SOURCE names the recipe's input when it has several")
    for name, what in SOURCE_FLAGS.items():
        t.add_argument(f"--{name}", metavar="PATH", help=f"{what} (same as --data {name}=PATH)")
    t.add_argument("-o", "--output", required=True, help="model file to write (.pt)")
    t.add_argument("--resume", action="store_true", help="continue the run saved in --output")
    t.add_argument("--overwrite", action="store_true",
                   help="replace an existing --output file with a new run (default: refuse)")
    t.add_argument("--from", dest="start_from", metavar="MODEL",
                   help="fine-tune: start from 'default' (the shipped model) or a model file")
    t.add_argument("--steps", type=int, default=None,
                   help="training steps (default 1000; with --minutes, as many as the budget allows)")
    t.add_argument("--minutes", type=float, default=0.0, metavar="M",
                   help="time budget: plan the run (and its schedule) to end within M minutes")
    t.add_argument("--monitor-every", type=int, default=100, metavar="N",
                   help="score the model on proxy pairs built from your data every N steps "
                   "(fine-tuning; 0: off) and keep the best; shown as q= in the progress bar")
    t.add_argument("--patience", type=int, default=10, metavar="K",
                   help="stop when the score has not improved for K evaluations in a row (0: never)")
    t.add_argument("--keep", choices=["best", "last"], default="best",
                   help="which weights the model file gives: the best scored step (default) or the last")
    t.add_argument("--crop", type=int, default=128, help="crop size in pixels")
    t.add_argument("--batch-size", type=int, default=1)
    t.add_argument("--lr", type=float, default=None,
                   help="learning rate (default 2e-4; with --from, the recipe's fine-tuning rate if it has one)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--schedule", default=None, choices=["constant", "linear", "cosine"],
                   help="learning-rate schedule (default: the recipe's; translate decays linearly "
                   "over the second half)")
    t.add_argument("--device", default="auto")
    t.add_argument("--amp", action="store_true", help="mixed precision on CUDA (= --precision float16)")
    t.add_argument("--precision", choices=["auto", "float32", "bfloat16", "float16"], default="auto",
                   help="arithmetic: auto (bfloat16 on CPUs with native bfloat16, else float32), float32, "
                   "bfloat16, float16 (CUDA)")
    t.add_argument("--checkpoint-every", type=int, default=100, help="steps between saves (0: end only)")
    t.add_argument("--ema", type=float, default=0.0, metavar="DECAY",
                   help="keep a moving average of the weights (e.g. 0.999); the model file then gives the average")
    t.add_argument("--mode", help="recipe mode (translate: cut, fastcut or single; dehaze and derain "
                   "choose theirs from the data given)")
    t.add_argument("-S", "--set", action="append", type=parse_option, default=[], metavar="KEY=VALUE",
                   help="recipe setting, e.g. -S width=32 (repeatable)")



SOURCE_FLAGS = {
    "hazy": "hazy images (dehaze: alone = unsupervised fine-tuning; with --clear = aligned pairs)",
    "clear": "haze-free images (dehaze: alone = haze is synthesised on them)",
    "rainy": "rainy images (derain: unsupervised NLCL; clean images from --clean or bundled photos)",
    "clean": "rain-free images, unpaired (derain: alone = rain is synthesised on them)",
    "source": "domain A images (translate)",
    "target": "domain B images, unpaired (translate)",
}


def parse_data(items: list[str], sources: tuple[str, ...]) -> dict[str, str]:
    data: dict[str, str] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep:
            if len(sources) != 1:
                raise ValueError(f"this recipe takes several inputs {list(sources)}; use --data NAME=PATH")
            name, path = sources[0], item
        if name not in sources:
            raise ValueError(f"unknown data source {name!r}; this recipe takes {list(sources)}")
        data[name] = path
    if not data:
        raise ValueError("give training data: " + " / ".join(f"--{s} PATH" for s in sources))
    return data


def build_trainer(args: argparse.Namespace):
    """The Trainer that ``napari-nlcl train ARGS`` runs (also used by the benchmarks)."""
    from napari_nlcl.training import Trainer, recipe_class, recipe_config_of
    from napari_nlcl.training.plan import plan_crops, plan_run

    out = Path(args.output)
    if out.suffix.lower() not in {".pt", ".pth", ".ckpt"}:
        raise ValueError(f"model files end in .pt, got {out.name!r}")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"output folder {out.parent} does not exist; create it first")
    if args.resume and not out.is_file():
        raise FileNotFoundError(f"--resume continues the run saved in {out}, which does not exist")
    if out.is_dir():
        raise ValueError(f"{out} is a folder; -o names the model file to write")
    cls = recipe_class(args.recipe)
    items = list(args.data) + [f"{n}={getattr(args, n)}" for n in SOURCE_FLAGS if getattr(args, n)]
    sources = parse_data(items, cls.accepted_sources or cls.data_sources)
    if out.exists() and not args.resume and not args.overwrite:
        raise ValueError(f"{out} exists; --resume continues that run, --overwrite replaces it "
                         "with a new one, or choose another -o")
    settings = {**({"mode": args.mode} if args.mode else {}), **dict(args.set)}
    if args.resume and args.start_from:
        raise ValueError("--resume continues --output; --from starts a new run: use one of them")
    if args.resume:  # the stored settings (e.g. single-image mode) decide the data options too
        data, _ = plan_crops(args.recipe, sources, settings=settings, stored=recipe_config_of(out)[1],
                            crop=args.crop, batch_size=args.batch_size, seed=args.seed)
        return Trainer.resume(out, data, steps=args.steps,
                              precision=None if args.precision == "auto" else args.precision)
    return plan_run(
        args.recipe, sources, start=args.start_from, settings=settings, steps=args.steps, crop=args.crop,
        batch_size=args.batch_size, lr=args.lr, scratch_lr=2e-4, seed=args.seed, schedule=args.schedule,
        checkpoint=out, metadata={"command": "napari-nlcl train"}, device=args.device, amp=args.amp,
        precision=args.precision, checkpoint_every=args.checkpoint_every, ema=args.ema,
        monitor_every=args.monitor_every, patience=args.patience, keep_best=args.keep == "best",
        minutes=args.minutes)


class TrainingInterrupted(Exception):
    """Ctrl+C ended a training run; the message says what the output file holds."""


def run_train(args: argparse.Namespace) -> Path:
    from tqdm.auto import tqdm

    from napari_nlcl import io

    out = Path(args.output)
    trainer = build_trainer(args)
    gen = trainer.fit_iter()
    aborted = False
    stopping = "\nstopping after this step (Ctrl+C again to stop at once, without saving it)"
    with tqdm(total=trainer.config.steps, initial=trainer.step, unit="step", disable=None,
              file=sys.stderr) as bar, io.deferred_interrupt(raise_after=False, message=stopping) as flag:
        try:
            quality: dict[str, str] = {}
            for event in gen:
                if event.kind == "step":
                    if bar.total != event.total:  # a time budget planned the steps
                        bar.total = event.total
                    bar.update(event.step - bar.n)
                    bar.set_postfix({**quality, **{k: f"{v:.4g}" for k, v in event.losses.items()}},
                                    refresh=False)
                elif event.kind == "monitor":
                    m = event.monitor
                    quality = {"q": f"{m.score:.2f}dB", "best": f"{m.best_score:.2f}@{m.best_step}"}
                    if not sys.stderr.isatty():  # no live bar: one line per evaluation
                        print(f"step {m.step}: quality {m.score:.2f} dB (best {m.best_score:.2f} "
                              f"at step {m.best_step})", file=sys.stderr, flush=True)
                elif event.kind == "done" and event.message:
                    print(event.message, file=sys.stderr)
                if flag["stop"]:
                    break
            gen.close()  # stopped between steps: saves the step just completed
        except KeyboardInterrupt:  # the second Ctrl+C, inside a step: that step is lost
            aborted = True
    if trainer.best is not None and trainer.config.keep_best:
        print(f"{out}: keeps step {trainer.best['step']} ({trainer.kept_reason()})", file=sys.stderr)
    if not (flag["stop"] or aborted):
        return out
    saved = trainer.saved_step
    if saved is None:
        raise TrainingInterrupted(f"interrupted at step {trainer.step}; no checkpoint was written, "
                                  f"{out} does not exist")
    note = "" if saved == trainer.step else f" (steps after {saved} were lost)"
    raise TrainingInterrupted(f"stopped: {out} holds step {saved} of {trainer.config.steps}{note}; "
                              "continue with the same command and --resume")
