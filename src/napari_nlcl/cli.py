"""Command line: ``napari-nlcl dehaze IN -o OUT`` and friends.

Inputs: an image file, a multi-page TIFF, a folder of images or a zarr array;
``--sample NAME`` uses a built-in sample instead.  Outputs: TIFF, PNG/JPEG
(single images) or zarr; stacks are processed and written one plane at a
time with a progress bar.  Exit status 2 and a one-line message on bad input.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Any

DEFAULT_SUFFIX = {"dehaze": "_dehazed", "derain": "_derained", "translate": "_translated"}
SOURCE_FLAGS = {
    "hazy": "hazy images (dehaze: alone = unsupervised fine-tuning; with --clear = aligned pairs)",
    "clear": "haze-free images (dehaze: alone = haze is synthesised on them)",
    "rainy": "rainy images (derain: unsupervised NLCL; clean images from --clean or bundled photos)",
    "clean": "rain-free images, unpaired (derain: alone = rain is synthesised on them)",
    "source": "domain A images (translate)",
    "target": "domain B images, unpaired (translate)",
}


def _parse_value(text: str) -> Any:
    low = text.lower()
    if low in {"true", "yes", "on"}:
        return True
    if low in {"false", "no", "off"}:
        return False
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    if "," in text:  # a pair or list of values: -S rain_opacity=0.1,0.5
        return [_parse_value(part.strip()) for part in text.strip("[]()").split(",")]
    return text


def _parse_option(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    return key.strip().replace("-", "_"), _parse_value(value.strip())


def _parse_channel_axis(text: str) -> Any:
    if text.lower() == "auto":
        return "auto"
    if text.lower() == "none":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("channel axis must be 'auto', 'none' or an integer") from None


def _parse_range(text: str) -> Any:
    if text == "plane":
        return "plane"
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError("value range must be 'plane' or LOW,HIGH") from None
    return (lo, hi)


def _add_engine_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("engine")
    g.add_argument("--tile", type=int, default=1024, help="tile size in pixels (default 1024)")
    g.add_argument("--overlap", type=int, default=None, help="tile overlap (default: from the model)")
    g.add_argument("--device", default="auto", help="auto (CUDA, MPS, CPU), cpu, cuda, cuda:N or mps")
    g.add_argument("--batch-size", type=int, default=1, help="tiles per forward pass")
    g.add_argument("--amp", action="store_true", help="half-precision autocast on CUDA (= --precision float16)")
    g.add_argument("--precision", choices=["auto", "float32", "bfloat16", "float16"], default="auto",
                   help="arithmetic: auto (bfloat16 on CPUs with native bfloat16, else float32), float32, "
                   "bfloat16, float16 (CUDA)")
    g.add_argument("--scheduler", metavar="ADDRESS", default=None,
                   help="compute a stack (TIFF/zarr input) on a dask.distributed cluster, e.g. "
                   "tcp://host:8786 (needs the distributed package; files on a shared file system)")
    g.add_argument("--channel-axis", type=_parse_channel_axis, default="auto",
                   help="'auto' (trailing axis of 3 or 4 is RGB), 'none' (grayscale) or an axis")
    g.add_argument("--value-range", type=_parse_range, default=None,
                   help="intensity normalisation: 'plane' or LOW,HIGH (default: by dtype)")


def build_parser() -> argparse.ArgumentParser:
    from napari_nlcl import __version__
    from napari_nlcl import registry

    parser = argparse.ArgumentParser(
        prog="napari-nlcl",
        description="Remove rain and haze from images and stacks (napari-nlcl).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    tasks = (("dehaze", "remove haze from"), ("derain", "remove rain streaks from"),
             ("translate", "translate (domain A to B) with a trained model"))
    for task, what in tasks:
        d = sub.add_parser(task, help=f"{what} an image, a stack or a folder")
        src = d.add_mutually_exclusive_group(required=True)
        src.add_argument("input", nargs="?", help="image file, multi-page TIFF, folder of images or .zarr")
        src.add_argument("--sample", choices=_sample_names(), help="use a built-in sample image instead")
        d.add_argument("-o", "--output", help="output .tif, .png, .jpg or .zarr (default: next to the input)")
        d.add_argument("-m", "--method", "--model", default="default", metavar="METHOD_OR_MODEL",
                       help="a method (" + ", ".join(s.name for s in registry.methods(task))
                       + ") or a model file trained with `napari-nlcl train`")
        if task == "translate":  # translators have no method options
            d.set_defaults(option=[])
        else:
            d.add_argument("-O", "--option", action="append", type=_parse_option, default=[],
                           metavar="KEY=VALUE", help="method option (repeatable; see `napari-nlcl methods`)")
        if task == "derain":
            d.add_argument("--rain-layer", metavar="OUT2",
                           help="also write the rain layer (input - background) to this file")
        _add_engine_args(d)

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
    t.add_argument("-S", "--set", action="append", type=_parse_option, default=[], metavar="KEY=VALUE",
                   help="recipe setting, e.g. -S width=32 (repeatable)")

    m = sub.add_parser("methods", help="list the available methods and training recipes")
    m.add_argument("task", nargs="?", help="only this task (dehaze, derain, translate)")

    s = sub.add_parser("samples", help="write the built-in sample images to a folder")
    s.add_argument("folder", help="folder to write to (created if missing)")
    return parser


def _sample_names() -> list[str]:
    from napari_nlcl.samples import SAMPLES

    return list(SAMPLES)


def _default_output(inp: Path, task: str) -> Path:
    suffix = DEFAULT_SUFFIX[task]
    if inp.is_dir():
        return inp.with_name(inp.name.removesuffix(".zarr") + suffix + ".zarr")
    if inp.suffix.lower() in {".tif", ".tiff", ".png"}:
        return inp.with_name(inp.stem + suffix + inp.suffix)
    return inp.with_name(inp.stem + suffix + ".png")


def _progress_bar(desc: str):
    from tqdm.auto import tqdm

    return tqdm(desc=desc, unit="tile", disable=None, file=sys.stderr, leave=False)


def _run_task(args: argparse.Namespace) -> Path:
    from napari_nlcl import api, io, samples
    from napari_nlcl.inference.intensity import residual

    task = args.command
    if args.sample:
        image = samples.SAMPLES[args.sample]().data
        ext = ".tif" if image.ndim == 4 else ".png"
        default_out = Path.cwd() / f"{args.sample}{DEFAULT_SUFFIX[task]}{ext}"
    else:
        inp = Path(args.input)
        image = io.read_image(inp)
        default_out = _default_output(inp, task)
    out_path = Path(args.output) if args.output is not None else default_out
    rain_path = Path(args.rain_layer) if getattr(args, "rain_layer", None) else None
    outputs = [out_path] + ([rain_path] if rain_path is not None else [])
    inputs = [] if args.sample else [inp]
    io.check_targets(outputs, inputs)  # every target, before computing anything

    options = dict(args.option)
    engine = dict(
        channel_axis=args.channel_axis, tile=args.tile, overlap=args.overlap, device=args.device,
        batch_size=args.batch_size, amp=args.amp, value_range=args.value_range,
        precision=args.precision,
    )
    func = getattr(api, task)
    lazy = hasattr(image, "dask") or type(image).__module__.startswith("dask")
    if lazy:
        result = func(image, args.method, **engine, **options)
    else:
        with _progress_bar(task) as bar:

            def on_progress(p) -> None:
                bar.total = p.total
                bar.n = p.done
                bar.refresh()

            result = func(image, args.method, progress=on_progress, **engine, **options)
    targets = [(out_path, result)]
    if rain_path is not None:  # from the same pass: a lazy background is computed once per plane
        targets.append((rain_path, residual(image, result)))
    with _progress_bar(f"{task} (planes)" if lazy else "writing") as bar:
        bar.unit = "plane"

        def update(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        io.write_images(targets, progress=update, inputs=inputs)
    return out_path


@contextlib.contextmanager
def _cluster(address: str | None):
    """A dask.distributed client for ``--scheduler ADDRESS`` while the task runs (else nothing)."""
    if not address:
        yield None
        return
    try:
        from distributed import Client
    except ImportError:
        raise ValueError("--scheduler needs the 'distributed' package: pip install distributed") from None
    try:
        client = Client(address, timeout="20s")
    except OSError as exc:
        raise OSError(f"cannot reach the dask scheduler at {address}: {exc}") from None
    with client:
        yield client


def _parse_data(items: list[str], sources: tuple[str, ...]) -> dict[str, str]:
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


def _build_trainer(args: argparse.Namespace):
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
    sources = _parse_data(items, cls.accepted_sources or cls.data_sources)
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


def _run_train(args: argparse.Namespace) -> Path:
    from tqdm.auto import tqdm

    from napari_nlcl import io

    out = Path(args.output)
    trainer = _build_trainer(args)
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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "methods":
            from napari_nlcl import registry

            for spec in registry.methods(args.task):
                print(f"{spec.task:10s} {spec.name:12s} {spec.description}")
            from napari_nlcl.training import recipe_names

            for name in recipe_names():
                print(f"{'train':10s} {name:12s} training recipe")
            return 0
        if args.command == "samples":
            from napari_nlcl.samples import write_samples

            for path in write_samples(args.folder):
                print(path)
            return 0
        if args.command == "train":
            out = _run_train(args)
        else:
            with _cluster(args.scheduler):
                out = _run_task(args)
    except (ValueError, TypeError, OSError, MemoryError) as exc:
        print(f"napari-nlcl: error: {exc}", file=sys.stderr)
        return 2
    except TrainingInterrupted as exc:
        print(f"napari-nlcl: {exc}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("napari-nlcl: interrupted; nothing was written", file=sys.stderr)
        return 130
    print(out)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
